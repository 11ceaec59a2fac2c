//! Depthwise convolution (`groups == in_c == out_c`), vectorised along W.
//!
//! Each task handles a band of output rows of one channel plane. The needed input
//! rows are first copied into a zero-padded, per-thread band buffer so the inner
//! loops have no border cases; vector tails use masked stores.

use crate::conv::Conv2dParams;
use crate::gemm::{act_bounds, clamp_nan};
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch, SyncPtr};
use crate::{isa, Activation, Isa};

/// Geometry shared by the row kernels.
#[derive(Clone, Copy)]
pub(crate) struct DwGeom {
    /// Padded band row stride.
    pub(crate) wp: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    pub(crate) ow: usize,
    pub(crate) rows: usize,
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
    input: &[f32],
    output: &mut [f32],
) {
    let c = p.in_c;
    let planes = p.batch * c;
    if planes == 0 || oh == 0 || ow == 0 {
        return;
    }
    let threads = num_threads();
    let bands = if threads > 1 {
        div_ceil(threads * 4, planes).clamp(1, oh)
    } else {
        1
    };
    let band_rows = div_ceil(oh, bands);
    let bands = div_ceil(oh, band_rows);
    let (h, w) = (p.in_h, p.in_w);
    let (kh, kw) = (p.k_h, p.k_w);
    let (sh, sw) = p.stride;
    let (ph, pw) = p.padding;
    let (dh, dw) = p.dilation;
    let wp = w + 2 * pw;
    let bounds = act_bounds(act);
    let (lo, hi) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    let use_avx = isa() == Isa::Avx2Fma;
    let op = SyncPtr(output.as_mut_ptr());
    let total_flops = planes * oh * ow * kh * kw * 2;
    let task = |t: usize| {
        let plane = t / bands;
        let band = t % bands;
        let ch = plane % c;
        let oy0 = band * band_rows;
        let oy1 = (oy0 + band_rows).min(oh);
        let rows = oy1 - oy0;
        let in_rows = (rows - 1) * sh + (kh - 1) * dh + 1;
        let x = &input[plane * h * w..(plane + 1) * h * w];
        let wts = &weight[ch * kh * kw..(ch + 1) * kh * kw];
        // SAFETY: (plane, band) tasks write disjoint row ranges oy0..oy1 of
        // disjoint planes; the output length was checked by the caller.
        let out = unsafe {
            std::slice::from_raw_parts_mut(op.get().add(plane * oh * ow + oy0 * ow), rows * ow)
        };
        // Slack after the band keeps vector reads of discarded tail lanes in bounds.
        let slack = 8 * sw + 16;
        with_scratch(in_rows * wp + slack, |buf| {
            // Build the zero-padded band: padded row r = input row (oy0*sh + r - ph).
            for r in 0..in_rows {
                let dst = &mut buf[r * wp..(r + 1) * wp];
                let iy = (oy0 * sh + r) as isize - ph as isize;
                if iy < 0 || iy >= h as isize {
                    dst.fill(0.0);
                } else {
                    dst[..pw].fill(0.0);
                    dst[pw..pw + w].copy_from_slice(&x[iy as usize * w..(iy as usize + 1) * w]);
                    dst[pw + w..].fill(0.0);
                }
            }
            buf[in_rows * wp..].fill(0.0);
            let g = DwGeom {
                wp,
                kh,
                kw,
                sh,
                sw,
                dh,
                dw,
                ow,
                rows,
                lo,
                hi,
                act: bounds.is_some(),
            };
            if use_avx {
                #[cfg(target_arch = "x86_64")]
                {
                    // SAFETY: the AVX2 tier is only reported by isa() when the CPU
                    // supports AVX2+FMA. The band holds every padded input pixel the
                    // rows need plus SLACK floats for discarded tail lanes, and `out`
                    // has rows*ow elements.
                    unsafe { x86::dw_rows_dispatch(buf, wts, bias[ch], &g, out) };
                    return;
                }
            }
            dw_rows_scalar(buf, wts, bias[ch], &g, out);
        });
    };
    let ntasks = planes * bands;
    if threads > 1 && total_flops > 200_000 {
        parallel_for(ntasks, task);
    } else {
        (0..ntasks).for_each(task);
    }
}

/// Portable row kernel over a padded band.
pub(crate) fn dw_rows_scalar(buf: &[f32], wts: &[f32], bias: f32, g: &DwGeom, out: &mut [f32]) {
    for r in 0..g.rows {
        let orow = &mut out[r * g.ow..(r + 1) * g.ow];
        for (ox, o) in orow.iter_mut().enumerate() {
            let mut acc = bias;
            for ky in 0..g.kh {
                let base = (r * g.sh + ky * g.dh) * g.wp + ox * g.sw;
                for kx in 0..g.kw {
                    acc += buf[base + kx * g.dw] * wts[ky * g.kw + kx];
                }
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

    /// Pick the specialised kernel for the geometry.
    ///
    /// # Safety
    /// AVX2+FMA available; `buf` covers all padded rows/cols the band reads plus
    /// slack for vector over-reads (≤ 8*sw + 8 floats past the last needed one);
    /// `out.len() >= rows*ow`; `wts.len() >= kh*kw`.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn dw_rows_dispatch(
        buf: &[f32],
        wts: &[f32],
        bias: f32,
        g: &DwGeom,
        out: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe {
            match (g.kh, g.kw, g.sw) {
                (3, 3, 1) => f32_dwconv_3x3s1__avx2_fma(buf, wts, bias, g, out),
                (3, 3, 2) => f32_dwconv_3x3s2__avx2_fma(buf, wts, bias, g, out),
                (5, 5, 1) => f32_dwconv_5x5s1__avx2_fma(buf, wts, bias, g, out),
                (5, 5, 2) => f32_dwconv_5x5s2__avx2_fma(buf, wts, bias, g, out),
                (_, _, 1) => dw_rows::<0, 1>(buf, wts, bias, g, out),
                (_, _, 2) => dw_rows::<0, 2>(buf, wts, bias, g, out),
                _ => dw_rows::<0, 0>(buf, wts, bias, g, out),
            }
        }
    }

    /// 3×3 stride-1 depthwise rows.
    ///
    /// # Safety
    /// As [`dw_rows_dispatch`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_3x3s1__avx2_fma(
        buf: &[f32],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_rows::<3, 1>(buf, w, b, g, o) }
    }

    /// 3×3 stride-2 depthwise rows.
    ///
    /// # Safety
    /// As [`dw_rows_dispatch`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_3x3s2__avx2_fma(
        buf: &[f32],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_rows::<3, 2>(buf, w, b, g, o) }
    }

    /// 5×5 stride-1 depthwise rows.
    ///
    /// # Safety
    /// As [`dw_rows_dispatch`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_5x5s1__avx2_fma(
        buf: &[f32],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_rows::<5, 1>(buf, w, b, g, o) }
    }

    /// 5×5 stride-2 depthwise rows.
    ///
    /// # Safety
    /// As [`dw_rows_dispatch`].
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn f32_dwconv_5x5s2__avx2_fma(
        buf: &[f32],
        w: &[f32],
        b: f32,
        g: &DwGeom,
        o: &mut [f32],
    ) {
        // SAFETY: forwarded contract.
        unsafe { dw_rows::<5, 2>(buf, w, b, g, o) }
    }

    /// Load 8 outputs' worth of input starting at `p` with stride `S` (0 = runtime `sw`).
    ///
    /// # Safety
    /// `p .. p + 8*stride` (stride 1: 8 floats; stride 2: 16 floats) readable.
    #[inline(always)]
    unsafe fn load_strided<const S: usize>(p: *const f32, sw: usize) -> __m256 {
        // SAFETY: per the function contract.
        unsafe {
            match S {
                1 => _mm256_loadu_ps(p),
                2 => {
                    let a = _mm256_loadu_ps(p);
                    let b = _mm256_loadu_ps(p.add(8));
                    let t = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
                    _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(t)))
                }
                _ => _mm256_setr_ps(
                    *p,
                    *p.add(sw),
                    *p.add(2 * sw),
                    *p.add(3 * sw),
                    *p.add(4 * sw),
                    *p.add(5 * sw),
                    *p.add(6 * sw),
                    *p.add(7 * sw),
                ),
            }
        }
    }

    /// Generic row kernel; `K` = square kernel size (0 = runtime kh×kw), `S` = stride
    /// along W (0 = runtime). Processes 4 vectors (32 outputs) per step for ILP,
    /// then single (possibly masked) vectors.
    ///
    /// # Safety
    /// As [`dw_rows_dispatch`].
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn dw_rows<const K: usize, const S: usize>(
        buf: &[f32],
        wts: &[f32],
        bias: f32,
        g: &DwGeom,
        out: &mut [f32],
    ) {
        let kh = if K > 0 { K } else { g.kh };
        let kw = if K > 0 { K } else { g.kw };
        let sw = if S > 0 { S } else { g.sw };
        let (wp, ow) = (g.wp, g.ow);
        assert!(wts.len() >= kh * kw && out.len() >= g.rows * ow);
        let need = if g.rows == 0 {
            0
        } else {
            ((g.rows - 1) * g.sh + (kh - 1) * g.dh) * wp
                + (ow.div_ceil(8) * 8 - 1) * sw
                + (kw - 1) * g.dw
                + 1
        };
        assert!(buf.len() >= need + sw);
        let vb = _mm256_set1_ps(bias);
        let lo = _mm256_set1_ps(g.lo);
        let hi = _mm256_set1_ps(g.hi);
        let bp = buf.as_ptr();
        let op = out.as_mut_ptr();
        let ox_main = ow / 32 * 32;
        let mut r0 = 0;
        while r0 < g.rows {
            let nrow = (g.rows - r0).min(4);
            for r in r0..r0 + nrow {
                let row0 = r * g.sh * wp;
                let orow = r * ow;
                let mut ox = 0;
                while ox + 32 <= ow {
                    let mut a0 = vb;
                    let mut a1 = vb;
                    let mut a2 = vb;
                    let mut a3 = vb;
                    for ky in 0..kh {
                        let rb = row0 + ky * g.dh * wp + ox * sw;
                        for kx in 0..kw {
                            let wv = _mm256_set1_ps(wts[ky * kw + kx]);
                            // SAFETY: rb + kx*dw + 31*sw (+ sw for the stride-2 pair
                            // read) is within `need + sw` (asserted).
                            unsafe {
                                let q = bp.add(rb + kx * g.dw);
                                a0 = _mm256_fmadd_ps(load_strided::<S>(q, sw), wv, a0);
                                a1 = _mm256_fmadd_ps(load_strided::<S>(q.add(8 * sw), sw), wv, a1);
                                a2 = _mm256_fmadd_ps(load_strided::<S>(q.add(16 * sw), sw), wv, a2);
                                a3 = _mm256_fmadd_ps(load_strided::<S>(q.add(24 * sw), sw), wv, a3);
                            }
                        }
                    }
                    if g.act {
                        a0 = _mm256_min_ps(hi, _mm256_max_ps(lo, a0));
                        a1 = _mm256_min_ps(hi, _mm256_max_ps(lo, a1));
                        a2 = _mm256_min_ps(hi, _mm256_max_ps(lo, a2));
                        a3 = _mm256_min_ps(hi, _mm256_max_ps(lo, a3));
                    }
                    // SAFETY: ox + 32 <= ow, inside output row r.
                    unsafe {
                        let d = op.add(orow + ox);
                        _mm256_storeu_ps(d, a0);
                        _mm256_storeu_ps(d.add(8), a1);
                        _mm256_storeu_ps(d.add(16), a2);
                        _mm256_storeu_ps(d.add(24), a3);
                    }
                    ox += 32;
                }
            }
            // Tail columns: four output rows at once for independent FMA chains
            // (rows past the band end are recomputed from the last row, not stored).
            let rr = [
                r0,
                r0 + 1.min(nrow - 1),
                r0 + 2.min(nrow - 1),
                r0 + 3.min(nrow - 1),
            ];
            let mut ox = ox_main;
            while ox < ow {
                let mut acc = [vb; 4];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let wv = _mm256_set1_ps(wts[ky * kw + kx]);
                        for q in 0..4 {
                            let rb = (rr[q] * g.sh + ky * g.dh) * wp + ox * sw + kx * g.dw;
                            // SAFETY: rr[q] < rows and ox+7 <= round_up(ow, 8) - 1,
                            // covered by `need + sw` (asserted).
                            unsafe {
                                acc[q] =
                                    _mm256_fmadd_ps(load_strided::<S>(bp.add(rb), sw), wv, acc[q]);
                            }
                        }
                    }
                }
                let rem = ow - ox;
                for (q, &a) in acc.iter().enumerate().take(nrow) {
                    let a = if g.act {
                        _mm256_min_ps(hi, _mm256_max_ps(lo, a))
                    } else {
                        a
                    };
                    // SAFETY: row r0+q < rows; full store when 8 outputs remain,
                    // else masked to `rem`.
                    unsafe {
                        let d = op.add((r0 + q) * ow + ox);
                        if rem >= 8 {
                            _mm256_storeu_ps(d, a);
                        } else {
                            _mm256_maskstore_ps(d, tail_mask(rem), a);
                        }
                    }
                }
                ox += 8;
            }
            r0 += nrow;
        }
    }
}
