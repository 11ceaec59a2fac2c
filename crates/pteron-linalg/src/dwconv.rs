//! Depthwise convolution (`groups == in_c == out_c`), vectorised along W.
//!
//! The work is split into (plane, row band) units; a task runs a contiguous range
//! of units (so small planes are batched several per task) with one per-thread
//! scratch band. The input rows a band needs are first written into that band in
//! a *phase-split* layout: each zero-padded input row is stored as `sw` phase rows
//! of `hp = ceil(wp / sw)` floats, phase `q` holding padded columns `q, q+sw,
//! q+2sw, ...`. Output column `ox` then reads tap `kx` from phase `(kx*dw) % sw` at
//! index `ox + (kx*dw) / sw`, so every tap of every stride is one contiguous vector
//! load (for stride 2 this is an even/odd column split done once per input row,
//! instead of a gather per tap). The row kernels process up to 8 output vectors
//! (from one or several rows) per step for independent FMA chains.

use crate::conv::Conv2dParams;
use crate::gemm::{act_bounds, clamp_nan};
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch, SyncPtr};
use crate::{isa, Activation, Isa};

/// Floats of slack after a band: vector reads of discarded tail lanes may run up
/// to 7 floats past the last band row.
const SLACK: usize = 16;
/// Cap on band buffer size (floats) for large planes.
const BAND_FLOATS: usize = 8192;

/// Geometry of the phase-split band.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BandLayout {
    /// Input row width.
    pub(crate) w: usize,
    /// Left padding.
    pub(crate) pw: usize,
    /// Stride along W (number of phases).
    pub(crate) sw: usize,
    /// Floats per phase row.
    pub(crate) hp: usize,
}

impl BandLayout {
    pub(crate) fn new(w: usize, pw: usize, sw: usize) -> Self {
        let wp = w + 2 * pw;
        BandLayout {
            w,
            pw,
            sw,
            hp: div_ceil(wp, sw),
        }
    }

    /// Floats per padded input row (all phases).
    pub(crate) fn rs(&self) -> usize {
        self.sw * self.hp
    }

    /// Phase `q`: indices `[lo, hi)` hold input data, the rest is padding.
    fn data_range(&self, q: usize) -> (usize, usize) {
        let lo = self.pw.saturating_sub(q).div_ceil(self.sw);
        let hi = (self.pw + self.w).saturating_sub(q).div_ceil(self.sw);
        (lo, hi.max(lo))
    }

    /// Offsets (within a band row) where the even / odd input columns start
    /// (stride 1: the whole row starts at the first).
    pub(crate) fn data_offsets(&self) -> (usize, usize) {
        if self.sw == 1 {
            (self.pw, 0)
        } else {
            let qe = self.pw % self.sw;
            let qo = (self.pw + 1) % self.sw;
            (
                qe * self.hp + self.data_range(qe).0,
                qo * self.hp + self.data_range(qo).0,
            )
        }
    }

    /// Write the data columns of one padded input row (`src`, `w` floats) into
    /// `dst` (`rs()` floats); the padding positions are left untouched.
    pub(crate) fn fill_row_scalar(&self, src: &[f32], dst: &mut [f32]) {
        let (hp, sw) = (self.hp, self.sw);
        for q in 0..sw {
            let (lo, hi) = self.data_range(q);
            let ph = &mut dst[q * hp..(q + 1) * hp];
            for (i, d) in ph[lo..hi].iter_mut().enumerate() {
                *d = src[(lo + i) * sw + q - self.pw];
            }
        }
    }
}

/// Fill band rows `r_lo..r_hi` (band row `r` = input row `iy0 + r`) of `buf`:
/// rows outside the input are zeroed, others get their data columns. The padding
/// columns of `buf` must already be zero (they are never written here).
#[allow(clippy::too_many_arguments)]
fn fill_rows(
    lay: &BandLayout,
    offs: (usize, usize),
    x: &[f32],
    h: usize,
    iy0: isize,
    r_lo: usize,
    r_hi: usize,
    buf: &mut [f32],
    use_avx: bool,
) {
    let (w, rs) = (lay.w, lay.rs());
    assert!(x.len() >= h * w && buf.len() >= r_hi * rs + 8);
    for r in r_lo..r_hi {
        let iy = iy0 + r as isize;
        if iy < 0 || iy >= h as isize {
            buf[r * rs..(r + 1) * rs].fill(0.0);
            continue;
        }
        let src = &x[iy as usize * w..(iy as usize + 1) * w];
        #[cfg(target_arch = "x86_64")]
        if use_avx && lay.sw <= 2 {
            // SAFETY: AVX2 is available when `use_avx` is set (it mirrors isa()).
            // The data ranges of a row (sw == 1: [pw, pw+w) plus at most 7 zeroed
            // floats after it, covered by the asserted `+ 8`; sw == 2: ceil(w/2)
            // evens at offs.0 and w/2 odds at offs.1, inside their phase rows)
            // lie inside `buf`.
            let dst = &mut buf[r * rs..];
            unsafe {
                if lay.sw == 1 {
                    // Zeros written past the row's data land in its right
                    // padding, the next row (filled later, in order) or SLACK.
                    x86::copy_zero_tail(src.as_ptr(), dst.as_mut_ptr().add(offs.0), w);
                } else {
                    x86::deinterleave(
                        src.as_ptr(),
                        w,
                        dst.as_mut_ptr().add(offs.0),
                        dst.as_mut_ptr().add(offs.1),
                    );
                }
            }
            continue;
        }
        let _ = (use_avx, offs);
        lay.fill_row_scalar(src, &mut buf[r * rs..(r + 1) * rs]);
    }
}

/// Largest band buffer (floats per thread) a depthwise convolution may need.
const MAX_BAND_FLOATS: u128 = 1 << 28;
/// Largest padded input height a depthwise convolution accepts.
const MAX_PADDED_ROWS: u128 = 1 << 40;

/// Prepares a depthwise convolution: the offset of every tap (`ky`-major) within a
/// band, or `None` when one output row's band would not fit in `MAX_BAND_FLOATS`
/// (sizes read from a file can be absurd: huge padding or dilation).
pub(crate) fn prepare(p: &Conv2dParams) -> Option<Vec<usize>> {
    let (kh, kw) = (p.k_h as u128, p.k_w as u128);
    let (dh, sw) = (p.dilation.0 as u128, p.stride.1.max(1) as u128);
    let wp = p.in_w as u128 + 2 * p.padding.1 as u128;
    let rs = sw * wp.div_ceil(sw);
    let rows = (kh.checked_sub(1)?) * dh + 1;
    let sh = p.stride.0 as u128;
    let hp = p.in_h as u128 + 2 * p.padding.0 as u128;
    // One output row's band, one row step (`sh * rs`, the kernels' pitch), the window,
    // and the padded height (row offsets are computed as `oy * sh - ph`) all bounded.
    if rows * rs > MAX_BAND_FLOATS
        || sh * rs > MAX_BAND_FLOATS
        || kh * kw > MAX_BAND_FLOATS
        || hp > MAX_PADDED_ROWS
    {
        return None;
    }
    let lay = BandLayout::new(p.in_w, p.padding.1, p.stride.1);
    let mut offs = vec![0usize; p.k_h * p.k_w];
    tap_offsets(p, &lay, &mut offs);
    Some(offs)
}

/// Offsets of every tap (`ky`-major) relative to an output row's band position.
fn tap_offsets(p: &Conv2dParams, lay: &BandLayout, out: &mut [usize]) {
    let rs = lay.rs();
    for ky in 0..p.k_h {
        for kx in 0..p.k_w {
            let c = kx * p.dilation.1;
            out[ky * p.k_w + kx] = ky * p.dilation.0 * rs + (c % lay.sw) * lay.hp + c / lay.sw;
        }
    }
}

/// Per-band kernel parameters.
#[derive(Clone, Copy)]
pub(crate) struct DwGeom {
    /// Band floats between consecutive output rows (`sh * rs`).
    pub(crate) pitch: usize,
    pub(crate) rows: usize,
    pub(crate) ow: usize,
    pub(crate) lo: f32,
    pub(crate) hi: f32,
    pub(crate) act: bool,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    p: &Conv2dParams,
    oh: usize,
    ow: usize,
    weight: &[f32],
    bias: &[f32],
    act: Activation,
    offs: &[usize],
    input: &[f32],
    output: &mut [f32],
) {
    let c = p.in_c;
    let planes = p.batch * c;
    if planes == 0 || oh == 0 || ow == 0 {
        return;
    }
    let (h, w) = (p.in_h, p.in_w);
    let (kh, sh, ph, dh) = (p.k_h, p.stride.0, p.padding.0, p.dilation.0);
    let lay = BandLayout::new(w, p.padding.1, p.stride.1);
    let rs = lay.rs();
    // `prepare` bounded `(kh - 1) * dh + 1` and `rs`; huge vertical padding can still
    // make whole-map bands absurd, hence the saturation.
    let in_rows_for = |rows: usize| {
        (rows - 1)
            .saturating_mul(sh)
            .saturating_add((kh - 1) * dh + 1)
    };
    // Bands: keep the buffer bounded, and give every thread enough units.
    let mut band_rows = oh;
    while band_rows > 1 && in_rows_for(band_rows).saturating_mul(rs) > BAND_FLOATS {
        band_rows = div_ceil(band_rows, 2);
    }
    let threads = num_threads();
    let taps = kh * p.k_w;
    let flops = planes
        .saturating_mul(oh)
        .saturating_mul(ow)
        .saturating_mul(taps)
        .saturating_mul(2);
    let parallel = threads > 1 && flops > 400_000;
    let want_tasks = threads * 6;
    if parallel && planes * div_ceil(oh, band_rows) < want_tasks {
        let bands = div_ceil(want_tasks, planes).min(oh);
        band_rows = band_rows.min(div_ceil(oh, bands));
    }
    let bands = div_ceil(oh, band_rows);
    let units = planes * bands;
    let ntasks = if parallel { units.min(want_tasks) } else { 1 };
    let bounds = act_bounds(act);
    let (lo, hi) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let use_avx = isa() == Isa::Avx2Fma;
    let op = SyncPtr(output.as_mut_ptr());
    let out_len = output.len();
    let buf_len = in_rows_for(band_rows) * rs + SLACK;
    assert!(offs.len() == taps, "dwconv: tap offsets do not match");
    let data_offs = lay.data_offsets();
    // Output rows per kernel call: band filling and compute are interleaved so
    // the input streams in while earlier rows are computed.
    let chunk_rows = 8;
    let task = |t: usize| {
        let u0 = t * units / ntasks;
        let u1 = (t + 1) * units / ntasks;
        with_scratch(buf_len, |buf| {
            // Padding columns are never written afterwards, so zero them once.
            buf.fill(0.0);
            for u in u0..u1 {
                // Band-major order: consecutive units share the band geometry.
                let band = u / planes;
                let plane = u % planes;
                let ch = plane % c;
                let oy0 = band * band_rows;
                let rows = band_rows.min(oh - oy0);
                let x = &input[plane * h * w..(plane + 1) * h * w];
                let iy0 = (oy0 * sh) as isize - ph as isize;
                let start = plane * oh * ow + oy0 * ow;
                assert!(start + rows * ow <= out_len);
                // SAFETY: units map to disjoint row ranges oy0..oy0+rows of disjoint
                // planes, each unit is run by exactly one task, and the range is
                // inside `output` (asserted).
                let out = unsafe { std::slice::from_raw_parts_mut(op.get().add(start), rows * ow) };
                let wts = &weight[ch * taps..(ch + 1) * taps];
                let mut filled = 0;
                let mut r0 = 0;
                while r0 < rows {
                    let r1 = (r0 + chunk_rows).min(rows);
                    let need = in_rows_for(r1);
                    fill_rows(&lay, data_offs, x, h, iy0, filled, need, buf, use_avx);
                    filled = need;
                    let g = DwGeom {
                        pitch: sh * rs,
                        rows: r1 - r0,
                        ow,
                        lo,
                        hi,
                        act: bounds.is_some(),
                    };
                    let src = &buf[r0 * sh * rs..];
                    let dst = &mut out[r0 * ow..r1 * ow];
                    if use_avx {
                        #[cfg(target_arch = "x86_64")]
                        {
                            // SAFETY: the AVX2 tier is only reported by isa() when the
                            // CPU supports AVX2+FMA; the kernel checks its bounds.
                            unsafe { x86::dw_dispatch(src, offs, wts, bias[ch], &g, dst) };
                            r0 = r1;
                            continue;
                        }
                    }
                    dw_rows_scalar(src, offs, wts, bias[ch], &g, dst);
                    r0 = r1;
                }
            }
        });
    };
    if ntasks > 1 {
        parallel_for(ntasks, task);
    } else {
        task(0);
    }
}

/// Portable kernel over a phase-split band.
pub(crate) fn dw_rows_scalar(
    buf: &[f32],
    offs: &[usize],
    wts: &[f32],
    bias: f32,
    g: &DwGeom,
    out: &mut [f32],
) {
    for r in 0..g.rows {
        let orow = &mut out[r * g.ow..(r + 1) * g.ow];
        let base = &buf[r * g.pitch..];
        for (ox, o) in orow.iter_mut().enumerate() {
            let mut acc = bias;
            for (&off, &wt) in offs.iter().zip(wts) {
                acc += base[off + ox] * wt;
            }
            *o = if g.act {
                clamp_nan(acc, g.lo, g.hi)
            } else {
                acc
            };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
pub(crate) mod x86 {
    use super::DwGeom;
    use crate::gemm::x86::tail_mask;
    use std::arch::x86_64::*;

    /// Copy `n` floats from `src` to `dst`; the last vector is completed with
    /// zeros, so up to 7 floats past `dst + n` are overwritten with `0.0`.
    ///
    /// # Safety
    /// AVX2 available; `src[..n]` readable, `dst[..round_up(n, 8)]` writable.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn copy_zero_tail(src: *const f32, dst: *mut f32, n: usize) {
        let mut i = 0;
        // SAFETY: reads stay inside [0, n) (masked for the tail), writes inside
        // [0, round_up(n, 8)).
        unsafe {
            while i + 8 <= n {
                _mm256_storeu_ps(dst.add(i), _mm256_loadu_ps(src.add(i)));
                i += 8;
            }
            if i < n {
                let v = _mm256_maskload_ps(src.add(i), tail_mask(n - i));
                _mm256_storeu_ps(dst.add(i), v);
            }
        }
    }

    /// Store the first `n` (< 8) lanes of `v` without touching `d[n..]` (plain
    /// narrow stores: masked 256-bit stores are slow on some AMD cores).
    ///
    /// # Safety
    /// AVX2 available; `d[..n]` writable.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) unsafe fn store_partial(d: *mut f32, v: __m256, n: usize) {
        let mut x = _mm256_castps256_ps128(v);
        let mut p = d;
        let mut n = n;
        // SAFETY: each store writes lanes below the original `n`.
        unsafe {
            if n >= 4 {
                _mm_storeu_ps(p, x);
                x = _mm256_extractf128_ps::<1>(v);
                p = p.add(4);
                n -= 4;
            }
            if n >= 2 {
                _mm_storel_pd(p as *mut f64, _mm_castps_pd(x));
                x = _mm_movehl_ps(x, x);
                p = p.add(2);
                n -= 2;
            }
            if n == 1 {
                _mm_store_ss(p, x);
            }
        }
    }

    /// `ev[i] = src[2i]`, `od[i] = src[2i+1]` for all in-range `i`.
    ///
    /// # Safety
    /// AVX2 available; `src[..n]` readable, `ev[..ceil(n/2)]`, `od[..n/2]` writable.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn deinterleave(src: *const f32, n: usize, ev: *mut f32, od: *mut f32) {
        let mut i = 0;
        // SAFETY: the vector loop reads src[2i..2i+16] with 2i+16 <= n and writes
        // 8 floats at ev+i / od+i (i+8 <= n/2); the tail stays in range.
        unsafe {
            while 2 * i + 16 <= n {
                let a = _mm256_loadu_ps(src.add(2 * i));
                let b = _mm256_loadu_ps(src.add(2 * i + 8));
                let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
                let e =
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e)));
                let o =
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o)));
                _mm256_storeu_ps(ev.add(i), e);
                _mm256_storeu_ps(od.add(i), o);
                i += 8;
            }
            while 2 * i + 1 < n {
                *ev.add(i) = *src.add(2 * i);
                *od.add(i) = *src.add(2 * i + 1);
                i += 1;
            }
            if 2 * i < n {
                *ev.add(i) = *src.add(2 * i);
            }
        }
    }

    /// Pick the tap-count specialisation.
    ///
    /// # Safety
    /// AVX2+FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn dw_dispatch(
        buf: &[f32],
        offs: &[usize],
        wts: &[f32],
        bias: f32,
        g: &DwGeom,
        out: &mut [f32],
    ) {
        // SAFETY: forwarded contract (the kernel checks bounds itself).
        unsafe {
            match offs.len() {
                9 => f32_dwconv_3x3__avx2_fma(buf, offs, wts, bias, g, out),
                25 => f32_dwconv_5x5__avx2_fma(buf, offs, wts, bias, g, out),
                _ => dw_kernel::<0>(buf, offs, wts, bias, g, out),
            }
        }
    }

    /// 9-tap (3×3, any stride/dilation) depthwise kernel.
    ///
    /// # Safety
    /// AVX2+FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_3x3__avx2_fma(
        buf: &[f32],
        offs: &[usize],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_kernel::<9>(buf, offs, w, b, g, o) }
    }

    /// 25-tap (5×5, any stride/dilation) depthwise kernel.
    ///
    /// # Safety
    /// AVX2+FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_5x5__avx2_fma(
        buf: &[f32],
        offs: &[usize],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_kernel::<25>(buf, offs, w, b, g, o) }
    }

    /// Kernel over a phase-split band: output `(r, ox)` is
    /// `bias + sum_t buf[r*pitch + offs[t] + ox] * wts[t]` (`T` taps, 0 = runtime).
    /// Full 32-column runs use 4 accumulators along the row; the remaining columns
    /// are done for 4 rows at once (rows past the end are recomputed from the
    /// last row, not stored).
    ///
    /// # Safety
    /// AVX2+FMA available (bounds are asserted here).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dw_kernel<const T: usize>(
        buf: &[f32],
        offs: &[usize],
        wts: &[f32],
        bias: f32,
        g: &DwGeom,
        out: &mut [f32],
    ) {
        let (rows, ow, pitch) = (g.rows, g.ow, g.pitch);
        if rows == 0 || ow == 0 {
            return;
        }
        let taps = if T > 0 { T } else { offs.len() };
        assert!(offs.len() == taps && wts.len() >= taps && out.len() >= rows * ow);
        let offs = &offs[..taps];
        let wts = &wts[..taps];
        let max_off = offs.iter().copied().max().unwrap_or(0);
        assert!((rows - 1) * pitch + max_off + ow.div_ceil(8) * 8 <= buf.len());
        let vb = _mm256_set1_ps(bias);
        let lo = _mm256_set1_ps(g.lo);
        let hi = _mm256_set1_ps(g.hi);
        let bp = buf.as_ptr();
        let op = out.as_mut_ptr();
        let ox_main = ow / 32 * 32;
        let mut r0 = 0;
        while r0 < rows {
            let nrow = (rows - r0).min(4);
            for r in r0..r0 + nrow {
                let mut ox = 0;
                while ox < ox_main {
                    let base = r * pitch + ox;
                    let mut a = [vb; 4];
                    for t in 0..taps {
                        let wv = _mm256_set1_ps(wts[t]);
                        // SAFETY: base + offs[t] + 32 <= (rows-1)*pitch + max_off
                        // + round_up(ow, 8) <= buf.len() (asserted).
                        unsafe {
                            let q = bp.add(base + offs[t]);
                            a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(q), wv, a[0]);
                            a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(8)), wv, a[1]);
                            a[2] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(16)), wv, a[2]);
                            a[3] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(24)), wv, a[3]);
                        }
                    }
                    for (i, v) in a.into_iter().enumerate() {
                        let v = if g.act {
                            _mm256_min_ps(hi, _mm256_max_ps(lo, v))
                        } else {
                            v
                        };
                        // SAFETY: ox + 32 <= ow, inside output row r.
                        unsafe { _mm256_storeu_ps(op.add(r * ow + ox + 8 * i), v) };
                    }
                    ox += 32;
                }
            }
            let rr = [
                r0 * pitch,
                (r0 + 1.min(nrow - 1)) * pitch,
                (r0 + 2.min(nrow - 1)) * pitch,
                (r0 + 3.min(nrow - 1)) * pitch,
            ];
            let mut ox = ox_main;
            while ox < ow {
                let mut a = [vb; 4];
                for t in 0..taps {
                    let wv = _mm256_set1_ps(wts[t]);
                    let o = offs[t] + ox;
                    // SAFETY: rr[q] <= (rows-1)*pitch and o + 8 <= max_off +
                    // round_up(ow, 8), inside buf (asserted).
                    unsafe {
                        a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(bp.add(rr[0] + o)), wv, a[0]);
                        a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(bp.add(rr[1] + o)), wv, a[1]);
                        a[2] = _mm256_fmadd_ps(_mm256_loadu_ps(bp.add(rr[2] + o)), wv, a[2]);
                        a[3] = _mm256_fmadd_ps(_mm256_loadu_ps(bp.add(rr[3] + o)), wv, a[3]);
                    }
                }
                let rem = ow - ox;
                for (q, &v) in a.iter().enumerate().take(nrow) {
                    let v = if g.act {
                        _mm256_min_ps(hi, _mm256_max_ps(lo, v))
                    } else {
                        v
                    };
                    // SAFETY: row r0+q < rows; full store when 8 outputs remain,
                    // else masked to `rem`.
                    unsafe {
                        let d = op.add((r0 + q) * ow + ox);
                        if rem >= 8 {
                            _mm256_storeu_ps(d, v);
                        } else {
                            store_partial(d, v, rem);
                        }
                    }
                }
                ox += 8;
            }
            r0 += nrow;
        }
    }
}
