//! Max / average 2-D pooling over NCHW tensors (PyTorch semantics: padding,
//! dilation (max only), `ceil_mode`, `count_include_pad`, `divisor_override`).
//!
//! Parallelised over ranges of channel planes. The AVX2 path is separable: per
//! output row, a vertical max/sum over the window's input rows (contiguous
//! vectors), written into a padded, phase-split row (as in the depthwise conv, so
//! strided windows become contiguous loads), then a horizontal max/sum over the
//! kernel columns. The scalar tier evaluates each window directly.

use crate::dwconv::BandLayout;
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch, SyncPtr};
use crate::{isa, Isa, LinalgError};

/// Pooling parameters; `stride`, `padding`, `dilation` are `(h, w)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Used by max pooling only (avg pooling requires `(1, 1)`).
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
    /// Avg only: count padded positions in the divisor.
    pub count_include_pad: bool,
    /// Avg only: fixed divisor.
    pub divisor_override: Option<usize>,
}

impl Pool2dParams {
    /// Simple constructor: no padding, dilation 1, floor mode, count_include_pad = true.
    pub fn new(
        batch: usize,
        channels: usize,
        in_hw: (usize, usize),
        k: (usize, usize),
        stride: (usize, usize),
    ) -> Self {
        Pool2dParams {
            batch,
            channels,
            in_h: in_hw.0,
            in_w: in_hw.1,
            k_h: k.0,
            k_w: k.1,
            stride,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }

    /// Output `(h, w)` or `None` if invalid (zero sizes, padding above half the
    /// kernel, window larger than the padded input, zero divisor override).
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        if self.divisor_override == Some(0) {
            return None;
        }
        let oh = pool_out(
            self.in_h,
            self.k_h,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
            self.ceil_mode,
        )?;
        let ow = pool_out(
            self.in_w,
            self.k_w,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
            self.ceil_mode,
        )?;
        Some((oh, ow))
    }
}

fn pool_out(inp: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    if inp == 0 || k == 0 || s == 0 || d == 0 || p > k / 2 {
        return None;
    }
    let eff = d * (k - 1) + 1;
    let padded = inp + 2 * p;
    if padded < eff {
        return None;
    }
    let num = padded - eff;
    let mut out = if ceil { num.div_ceil(s) } else { num / s } + 1;
    // The last window must start inside the input or the left padding.
    if ceil && (out - 1) * s >= inp + p {
        out -= 1;
    }
    Some(out)
}

fn check(p: &Pool2dParams, input: &[f32], output: &[f32]) -> Result<(usize, usize), LinalgError> {
    let (oh, ow) = p
        .out_hw()
        .ok_or_else(|| LinalgError(format!("invalid pool2d parameters {p:?}")))?;
    if input.len() < p.batch * p.channels * p.in_h * p.in_w {
        return Err(LinalgError("pool2d: input too short".into()));
    }
    if output.len() < p.batch * p.channels * oh * ow {
        return Err(LinalgError("pool2d: output too short".into()));
    }
    Ok((oh, ow))
}

/// Run `f(first_plane, planes, out)` over ranges of planes (in parallel when the
/// work is large enough); `out` is the output of those planes.
fn for_planes(
    p: &Pool2dParams,
    oh: usize,
    ow: usize,
    output: &mut [f32],
    f: impl Fn(usize, usize, &mut [f32]) + Sync,
) {
    let planes = p.batch * p.channels;
    let plane_out = oh * ow;
    if planes == 0 || plane_out == 0 {
        return;
    }
    let op = SyncPtr(output.as_mut_ptr());
    let out_len = output.len();
    let work = planes * (plane_out * p.k_h * p.k_w + p.in_h * p.in_w);
    let threads = num_threads();
    let ntasks = if threads > 1 && work > 200_000 {
        planes.min(threads * 4)
    } else {
        1
    };
    let run = |t: usize| {
        let p0 = t * planes / ntasks;
        let p1 = (t + 1) * planes / ntasks;
        assert!(p1 * plane_out <= out_len);
        // SAFETY: tasks cover disjoint plane ranges, i.e. disjoint ranges of
        // `output`, inside its length (asserted).
        let out = unsafe {
            std::slice::from_raw_parts_mut(op.get().add(p0 * plane_out), (p1 - p0) * plane_out)
        };
        f(p0, p1 - p0, out);
    };
    if ntasks > 1 {
        parallel_for(ntasks, run);
    } else {
        run(0);
    }
}

/// Phase-split row layout for the horizontal pass: wide enough for every window
/// (ceil mode may reach past the right padding).
fn row_layout(p: &Pool2dParams, ow: usize, dil_w: usize) -> BandLayout {
    let (w, pw, sw) = (p.in_w, p.padding.1, p.stride.1);
    let len = (w + 2 * pw).max((ow - 1) * sw + (p.k_w - 1) * dil_w + 1);
    BandLayout {
        w,
        pw,
        sw,
        hp: div_ceil(len, sw),
    }
}

/// Offset in a phase-split row of kernel column `kx`.
fn col_offset(lay: &BandLayout, kx: usize, dil_w: usize) -> usize {
    let c = kx * dil_w;
    (c % lay.sw) * lay.hp + c / lay.sw
}

/// Write the vertical reduction `t` (`w` floats) into the data columns of `row`.
fn scatter_row(lay: &BandLayout, t: &[f32], row: &mut [f32], use_avx: bool) {
    if lay.sw == 1 {
        row[lay.pw..lay.pw + lay.w].copy_from_slice(&t[..lay.w]);
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if use_avx && lay.sw == 2 {
        let (oe, oo) = lay.data_offsets();
        assert!(t.len() >= lay.w && row.len() >= 2 * lay.hp);
        // SAFETY: AVX2 available (use_avx mirrors isa()); the evens/odds ranges
        // (ceil(w/2) at oe, w/2 at oo) lie inside their phase rows of `row`.
        unsafe {
            crate::dwconv::x86::deinterleave(
                t.as_ptr(),
                lay.w,
                row.as_mut_ptr().add(oe),
                row.as_mut_ptr().add(oo),
            )
        };
        return;
    }
    let _ = use_avx;
    lay.fill_row_scalar(t, row);
}

/// Max pooling. NaN inputs propagate; windows entirely in padding give `-inf`.
pub fn max_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) -> Result<(), LinalgError> {
    let (oh, ow) = check(p, input, output)?;
    if isa() == Isa::Avx2Fma {
        #[cfg(target_arch = "x86_64")]
        {
            max_pool_avx2(p, oh, ow, input, output);
            return Ok(());
        }
    }
    let (h, w) = (p.in_h, p.in_w);
    for_planes(p, oh, ow, output, |pl0, npl, outs| {
        for i in 0..npl {
            let pl = pl0 + i;
            let out = &mut outs[i * oh * ow..(i + 1) * oh * ow];
            let x = &input[pl * h * w..(pl + 1) * h * w];
            for oy in 0..oh {
                // Valid ky range for this output row.
                let y0 = (oy * p.stride.0) as isize - p.padding.0 as isize;
                for ox in 0..ow {
                    let x0 = (ox * p.stride.1) as isize - p.padding.1 as isize;
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..p.k_h {
                        let iy = y0 + (ky * p.dilation.0) as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        let row = &x[iy as usize * w..(iy as usize + 1) * w];
                        for kx in 0..p.k_w {
                            let ix = x0 + (kx * p.dilation.1) as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let v = row[ix as usize];
                            if v > m || v.is_nan() {
                                m = v;
                            }
                        }
                    }
                    out[oy * ow + ox] = m;
                }
            }
        }
    });
    Ok(())
}

/// Average pooling (`dilation` must be `(1, 1)`).
pub fn avg_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) -> Result<(), LinalgError> {
    if p.dilation != (1, 1) {
        return Err(LinalgError("avg_pool2d: dilation must be 1".into()));
    }
    let (oh, ow) = check(p, input, output)?;
    if isa() == Isa::Avx2Fma {
        #[cfg(target_arch = "x86_64")]
        {
            avg_pool_avx2(p, oh, ow, input, output);
            return Ok(());
        }
    }
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let (ph, pw) = (p.padding.0 as isize, p.padding.1 as isize);
    for_planes(p, oh, ow, output, |pl0, npl, outs| {
        for i in 0..npl {
            let pl = pl0 + i;
            let out = &mut outs[i * oh * ow..(i + 1) * oh * ow];
            let x = &input[pl * p.in_h * p.in_w..(pl + 1) * p.in_h * p.in_w];
            for oy in 0..oh {
                let hs = oy as isize * p.stride.0 as isize - ph;
                let he = (hs + p.k_h as isize).min(h + ph);
                for ox in 0..ow {
                    let ws = ox as isize * p.stride.1 as isize - pw;
                    let we = (ws + p.k_w as isize).min(w + pw);
                    let pool_size = (he - hs) * (we - ws);
                    let (hs, ws, he, we) = (hs.max(0), ws.max(0), he.min(h), we.min(w));
                    if hs >= he || ws >= we {
                        out[oy * ow + ox] = 0.0;
                        continue;
                    }
                    let mut s = 0.0f32;
                    for iy in hs..he {
                        let row = &x[iy as usize * p.in_w..];
                        s += row[ws as usize..we as usize].iter().sum::<f32>();
                    }
                    let div = match p.divisor_override {
                        Some(d) => d as f32,
                        None if p.count_include_pad => pool_size as f32,
                        None => ((he - hs) * (we - ws)) as f32,
                    };
                    out[oy * ow + ox] = s / div;
                }
            }
        }
    });
    Ok(())
}

/// Global average pooling over NCHW planes: `out[c] = mean(input[c*hw..(c+1)*hw])`
/// for `c < n_c` (`n_c` = batch × channels). Vectorised (AVX2, scalar fallback)
/// and parallel over channels for large inputs. `hw == 0` gives NaN (0/0).
///
/// # Panics
/// If `input.len() < n_c * hw` or `out.len() < n_c`.
pub fn global_avg_pool_nchw(input: &[f32], n_c: usize, hw: usize, out: &mut [f32]) {
    assert!(
        input.len() >= n_c * hw,
        "global_avg_pool_nchw: input too short"
    );
    assert!(out.len() >= n_c, "global_avg_pool_nchw: output too short");
    let use_avx = isa() == Isa::Avx2Fma;
    let n_f = hw as f32;
    let op = SyncPtr(out.as_mut_ptr());
    let threads = num_threads();
    let ntasks = if threads > 1 && n_c * hw >= 1 << 17 {
        n_c.min(threads * 4)
    } else {
        1
    };
    let run = |t: usize| {
        let c0 = t * n_c / ntasks;
        let c1 = (t + 1) * n_c / ntasks;
        for c in c0..c1 {
            let x = &input[c * hw..(c + 1) * hw];
            let sum = if use_avx {
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: isa() reports AVX2 only when the CPU supports it.
                    unsafe { x86::sum(x) }
                }
                #[cfg(not(target_arch = "x86_64"))]
                x.iter().sum::<f32>()
            } else {
                x.iter().sum::<f32>()
            };
            // SAFETY: c < n_c <= out.len(); each channel is written by one task.
            unsafe { *op.get().add(c) = sum / n_f };
        }
    };
    if ntasks > 1 {
        parallel_for(ntasks, run);
    } else {
        run(0);
    }
}

/// Valid input rows `[lo, hi)` of output row/column `o` (dilation `d`) and the
/// kernel taps they correspond to: returns `(first_tap, n_taps)`.
fn valid_taps(o: usize, s: usize, pad: usize, k: usize, d: usize, n: usize) -> (usize, usize) {
    let start = (o * s) as isize - pad as isize;
    let mut first = 0;
    while first < k && start + ((first * d) as isize) < 0 {
        first += 1;
    }
    let mut last = k;
    while last > first && start + (((last - 1) * d) as isize) >= n as isize {
        last -= 1;
    }
    (first, last - first)
}

#[cfg(target_arch = "x86_64")]
fn max_pool_avx2(p: &Pool2dParams, oh: usize, ow: usize, input: &[f32], output: &mut [f32]) {
    let (h, w) = (p.in_h, p.in_w);
    let (dh, dw) = p.dilation;
    let lay = row_layout(p, ow, dw);
    let row_len = lay.rs() + 8;
    for_planes(p, oh, ow, output, |pl0, npl, outs| {
        with_scratch(row_len + w + 8, |buf| {
            let (row, t) = buf.split_at_mut(row_len);
            // Padding columns stay -inf: only data columns are written below.
            row.fill(f32::NEG_INFINITY);
            for i in 0..npl {
                let x = &input[(pl0 + i) * h * w..(pl0 + i + 1) * h * w];
                let out = &mut outs[i * oh * ow..(i + 1) * oh * ow];
                for oy in 0..oh {
                    let (k0, nk) = valid_taps(oy, p.stride.0, p.padding.0, p.k_h, dh, h);
                    let iy0 = if nk == 0 {
                        0
                    } else {
                        oy * p.stride.0 + k0 * dh - p.padding.0
                    };
                    let dst = if lay.sw == 1 {
                        &mut row[lay.pw..lay.pw + w]
                    } else {
                        &mut t[..w]
                    };
                    // SAFETY: AVX2 is available (isa() checked by the caller); rows
                    // iy0 + j*dh for j < nk are inside the plane (valid_taps).
                    unsafe { x86::vmax_rows(x, w, iy0, dh * w, nk, dst) };
                    if lay.sw != 1 {
                        scatter_row(&lay, t, row, true);
                    }
                    // SAFETY: as above; the row buffer has rs() + 8 floats.
                    unsafe {
                        x86::hmax_row(row, &lay, p.k_w, dw, &mut out[oy * ow..(oy + 1) * ow])
                    };
                }
            }
        });
    });
}

#[cfg(target_arch = "x86_64")]
fn avg_pool_avx2(p: &Pool2dParams, oh: usize, ow: usize, input: &[f32], output: &mut [f32]) {
    let (h, w) = (p.in_h, p.in_w);
    let lay = row_layout(p, ow, 1);
    let row_len = lay.rs() + 8;
    // Divisor = row factor * column factor (both window extents factorise).
    let factor = |o: usize, s: usize, pad: usize, k: usize, n: usize| -> f32 {
        let start = (o * s) as isize - pad as isize;
        let end = (start + k as isize).min((n + pad) as isize);
        if p.divisor_override.is_some() {
            1.0
        } else if p.count_include_pad {
            (end - start) as f32
        } else {
            let v = end.min(n as isize) - start.max(0);
            if v <= 0 {
                1.0
            } else {
                v as f32
            }
        }
    };
    for_planes(p, oh, ow, output, |pl0, npl, outs| {
        with_scratch(row_len + w + 8 + ow, |buf| {
            let (row, rest) = buf.split_at_mut(row_len);
            let (t, colf) = rest.split_at_mut(w + 8);
            row.fill(0.0);
            for (ox, c) in colf[..ow].iter_mut().enumerate() {
                *c = factor(ox, p.stride.1, p.padding.1, p.k_w, w);
            }
            for i in 0..npl {
                let x = &input[(pl0 + i) * h * w..(pl0 + i + 1) * h * w];
                let out = &mut outs[i * oh * ow..(i + 1) * oh * ow];
                for oy in 0..oh {
                    let (k0, nk) = valid_taps(oy, p.stride.0, p.padding.0, p.k_h, 1, h);
                    let iy0 = if nk == 0 {
                        0
                    } else {
                        oy * p.stride.0 + k0 - p.padding.0
                    };
                    let rf = match p.divisor_override {
                        Some(d) => d as f32,
                        None => factor(oy, p.stride.0, p.padding.0, p.k_h, h),
                    };
                    let dst = if lay.sw == 1 {
                        &mut row[lay.pw..lay.pw + w]
                    } else {
                        &mut t[..w]
                    };
                    // SAFETY: AVX2 is available (isa() checked by the caller); rows
                    // iy0 + j for j < nk are inside the plane (valid_taps).
                    unsafe { x86::vsum_rows(x, w, iy0, w, nk, dst) };
                    if lay.sw != 1 {
                        scatter_row(&lay, t, row, true);
                    }
                    // SAFETY: as above; the row buffer has rs() + 8 floats.
                    unsafe {
                        x86::havg_row(
                            row,
                            &lay,
                            p.k_w,
                            rf,
                            &colf[..ow],
                            &mut out[oy * ow..(oy + 1) * ow],
                        )
                    };
                }
            }
        });
    });
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::col_offset;
    use crate::dwconv::x86::store_partial;
    use crate::dwconv::BandLayout;
    use crate::gemm::x86::hsum;
    use std::arch::x86_64::*;

    /// NaN-propagating max: any NaN seen in `v` is remembered in `nan`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn nmax(m: __m256, v: __m256, nan: &mut __m256) -> __m256 {
        *nan = _mm256_or_ps(*nan, _mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
        _mm256_max_ps(v, m)
    }

    /// `dst[j] = max over r < nk of x[(iy0 + r*step/w)*w + j]`, NaN-propagating;
    /// `-inf` when `nk == 0`. `step` is the float distance between rows.
    ///
    /// # Safety
    /// AVX2 available; `iy0*w + (nk-1)*step + w <= x.len()` when `nk > 0`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn vmax_rows(
        x: &[f32],
        w: usize,
        iy0: usize,
        step: usize,
        nk: usize,
        dst: &mut [f32],
    ) {
        let base = iy0 * w;
        assert!(dst.len() >= w && (nk == 0 || base + (nk - 1) * step + w <= x.len()));
        let xp = x.as_ptr();
        let mut j = 0;
        while j + 8 <= w {
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut nan = _mm256_setzero_ps();
            for r in 0..nk {
                // SAFETY: base + r*step + j + 8 <= x.len() (asserted).
                m = nmax(
                    m,
                    unsafe { _mm256_loadu_ps(xp.add(base + r * step + j)) },
                    &mut nan,
                );
            }
            // SAFETY: j + 8 <= w <= dst.len().
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(j), _mm256_or_ps(m, nan)) };
            j += 8;
        }
        for (jj, d) in dst.iter_mut().enumerate().take(w).skip(j) {
            let mut m = f32::NEG_INFINITY;
            for r in 0..nk {
                let v = x[base + r * step + jj];
                if v > m || v.is_nan() || m.is_nan() {
                    m = if m.is_nan() { m } else { v };
                }
            }
            *d = m;
        }
    }

    /// `dst[j] = sum over r < nk of x[base + r*step + j]` (0 when `nk == 0`).
    ///
    /// # Safety
    /// AVX2 available; `iy0*w + (nk-1)*step + w <= x.len()` when `nk > 0`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn vsum_rows(
        x: &[f32],
        w: usize,
        iy0: usize,
        step: usize,
        nk: usize,
        dst: &mut [f32],
    ) {
        let base = iy0 * w;
        assert!(dst.len() >= w && (nk == 0 || base + (nk - 1) * step + w <= x.len()));
        let xp = x.as_ptr();
        let mut j = 0;
        while j + 8 <= w {
            let mut s = _mm256_setzero_ps();
            for r in 0..nk {
                // SAFETY: base + r*step + j + 8 <= x.len() (asserted).
                s = _mm256_add_ps(s, unsafe { _mm256_loadu_ps(xp.add(base + r * step + j)) });
            }
            // SAFETY: j + 8 <= w <= dst.len().
            unsafe { _mm256_storeu_ps(dst.as_mut_ptr().add(j), s) };
            j += 8;
        }
        for (jj, d) in dst.iter_mut().enumerate().take(w).skip(j) {
            *d = (0..nk).map(|r| x[base + r * step + jj]).sum();
        }
    }

    /// Sum of `x` (4 vector accumulators, then a horizontal sum and a scalar tail).
    ///
    /// # Safety
    /// AVX2 available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sum(x: &[f32]) -> f32 {
        let n = x.len();
        let p = x.as_ptr();
        let mut a = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // SAFETY: every load covers [i, i + 8) with i + 8 <= n.
        unsafe {
            while i + 32 <= n {
                for (j, acc) in a.iter_mut().enumerate() {
                    *acc = _mm256_add_ps(*acc, _mm256_loadu_ps(p.add(i + 8 * j)));
                }
                i += 32;
            }
            while i + 8 <= n {
                a[0] = _mm256_add_ps(a[0], _mm256_loadu_ps(p.add(i)));
                i += 8;
            }
        }
        let v = _mm256_add_ps(_mm256_add_ps(a[0], a[1]), _mm256_add_ps(a[2], a[3]));
        // SAFETY: AVX2 available.
        let mut s = unsafe { hsum(v) };
        for &t in &x[i..] {
            s += t;
        }
        s
    }

    /// Store `v` to `out[ox..]` (full or partial vector).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn store(out: &mut [f32], ox: usize, v: __m256) {
        let rem = out.len() - ox;
        // SAFETY: lanes below `rem` are inside `out`.
        unsafe {
            if rem >= 8 {
                _mm256_storeu_ps(out.as_mut_ptr().add(ox), v);
            } else {
                store_partial(out.as_mut_ptr().add(ox), v, rem);
            }
        }
    }

    /// `out[ox] = max over kx of row[col_offset(kx) + ox]` (NaN-propagating).
    ///
    /// # Safety
    /// AVX2 available (bounds are asserted).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn hmax_row(
        row: &[f32],
        lay: &BandLayout,
        kw: usize,
        dw: usize,
        out: &mut [f32],
    ) {
        let ow = out.len();
        let max_off = (0..kw).map(|kx| col_offset(lay, kx, dw)).max().unwrap_or(0);
        assert!(max_off + ow.div_ceil(8) * 8 <= row.len());
        let rp = row.as_ptr();
        let mut ox = 0;
        while ox < ow {
            let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
            let mut nan = _mm256_setzero_ps();
            for kx in 0..kw {
                let o = col_offset(lay, kx, dw) + ox;
                // SAFETY: o + 8 <= row.len() (asserted above).
                m = nmax(m, unsafe { _mm256_loadu_ps(rp.add(o)) }, &mut nan);
            }
            store(out, ox, _mm256_or_ps(m, nan));
            ox += 8;
        }
    }

    /// `out[ox] = (sum over kx of row[col_offset(kx) + ox]) / (rf * colf[ox])`.
    ///
    /// # Safety
    /// AVX2 available (bounds are asserted).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn havg_row(
        row: &[f32],
        lay: &BandLayout,
        kw: usize,
        rf: f32,
        colf: &[f32],
        out: &mut [f32],
    ) {
        let ow = out.len();
        assert!(colf.len() >= ow);
        let max_off = (0..kw).map(|kx| col_offset(lay, kx, 1)).max().unwrap_or(0);
        assert!(max_off + ow.div_ceil(8) * 8 <= row.len());
        let rp = row.as_ptr();
        let vr = _mm256_set1_ps(rf);
        let mut ox = 0;
        while ox < ow {
            let mut s = _mm256_setzero_ps();
            for kx in 0..kw {
                let o = col_offset(lay, kx, 1) + ox;
                // SAFETY: o + 8 <= row.len() (asserted above).
                s = _mm256_add_ps(s, unsafe { _mm256_loadu_ps(rp.add(o)) });
            }
            let n = (ow - ox).min(8);
            let mut cf = [1.0f32; 8];
            cf[..n].copy_from_slice(&colf[ox..ox + n]);
            // SAFETY: `cf` has 8 floats.
            let d = _mm256_mul_ps(vr, unsafe { _mm256_loadu_ps(cf.as_ptr()) });
            store(out, ox, _mm256_div_ps(s, d));
            ox += 8;
        }
    }
}
