//! Int8 × int8 → int32 GEMM with fused per-channel `fp32` requantization
//! (XNNPACK's `qs8_qc8w_gemm_minmax_fp32` semantics).
//!
//! * Activations (`A`, `m × k`, row stride `lda`) are bytes read as signed
//!   (`qs8`) or unsigned (`qu8`) 8-bit values with one zero point.
//! * Weights are signed 8-bit with zero point 0 (per-channel `qc8w` or per-tensor),
//!   given as `n` rows of `k` (XNNPACK's `goi`/OI layout) and packed once
//!   ([`PackedQs8`]): the input zero point is folded into the int32 bias
//!   (`bias[j] - izp · Σ_k w[j][k]`, wrapping like XNNPACK's packing).
//! * Each output is `clamp(round_even(f32(acc) · scale[j]), min - zp, max - zp) + zp`
//!   with `acc` the exact int32 dot product plus bias: the same value XNNPACK's
//!   fp32 requantization produces (clamping in float before the conversion and
//!   clamping after it commute because the bounds are integers).
//!
//! The packed layout is ISA independent: panels of [`QNR`] = 16 columns, each
//! `ceil(k/2)` pairs of k-consecutive weights sign-extended to `i16`
//! (`[kpair][col][2]`), so one AVX2 `vpmaddwd` multiplies a broadcast pair of
//! activations with 8 columns and adds the two products exactly into int32. A row
//! block of [`QMR`] activation rows is widened per task to `i16` rows. The
//! scalar kernel uses the same packing and gives bit-identical results.
//!
//! On CPUs with AVX-512 VNNI ([`crate::avx512_vnni`]) the weights are also packed
//! as int8 (`ceil(k/4)` groups of 16 columns × 4 k-consecutive bytes per panel)
//! for `vpdpbusd` (unsigned × signed bytes, four products summed exactly into
//! int32). Signed activations are made unsigned by flipping the sign bit (`a + 128`)
//! and the bias absorbs it (`bias[j] - (izp + 128) · Σ_k w[j][k]`), so the int32
//! accumulators are the same as on the other paths.

use crate::isa::{avx512_vnni, isa, Isa};
use crate::pool::{num_threads, parallel_for};
use crate::qconv::QConvGeom;
use crate::util::{with_scratch, SyncPtr};

/// Columns per packed panel.
pub const QNR: usize = 16;
/// Rows per micro-tile.
pub const QMR: usize = 6;
/// Rows per AVX-512 VNNI micro-tile.
const VMR: usize = 8;

/// Output quantization of a requantizing kernel: zero point and the clamp range
/// (already intersected with the output type's range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QOut {
    /// Output zero point.
    pub zero_point: i32,
    /// Smallest output value (e.g. -128 for `qs8`, or a fused ReLU's bound).
    pub min: i32,
    /// Largest output value (e.g. 127 for `qs8`).
    pub max: i32,
    /// Outputs are unsigned bytes (`qu8`) rather than signed (`qs8`).
    pub unsigned: bool,
}

impl QOut {
    /// `qs8` output with the full range.
    pub fn qs8(zero_point: i32) -> Self {
        QOut {
            zero_point,
            min: -128,
            max: 127,
            unsigned: false,
        }
    }

    /// Clamps the range into the type's range; `None` if it is empty.
    pub fn checked(self) -> Option<Self> {
        let (tlo, thi) = if self.unsigned { (0, 255) } else { (-128, 127) };
        let (min, max) = (self.min.max(tlo), self.max.min(thi));
        (min <= max).then_some(QOut { min, max, ..self })
    }

    /// Float bounds relative to the zero point.
    #[inline(always)]
    pub(crate) fn fbounds(self) -> (f32, f32) {
        (
            (self.min - self.zero_point) as f32,
            (self.max - self.zero_point) as f32,
        )
    }
}

/// Requantizes one int32 accumulator (the scalar definition every kernel matches).
#[inline(always)]
pub fn requantize(acc: i32, scale: f32, q: QOut) -> u8 {
    let (lo, hi) = q.fbounds();
    let x = ((acc as f32) * scale).max(lo).min(hi);
    (x.round_ties_even() as i32 + q.zero_point) as u8
}

/// Reads a quantized activation byte.
#[inline(always)]
pub(crate) fn qval(b: u8, unsigned: bool) -> i32 {
    if unsigned {
        b as i32
    } else {
        b as i8 as i32
    }
}

/// Pre-packed int8 weights with folded bias, per-channel scales and the output
/// quantization of one GEMM-shaped operation.
#[derive(Clone, Debug)]
pub struct PackedQs8 {
    k: usize,
    n: usize,
    kp: usize,
    /// `ceil(n/QNR)` panels of `kp * QNR * 2` i16.
    w: Vec<i16>,
    /// Folded bias, padded to whole panels.
    bias: Vec<i32>,
    /// Requantization scale per column, padded.
    scale: Vec<f32>,
    out: QOut,
    a_unsigned: bool,
    /// `ceil(k/4)`: k groups of the VNNI layout.
    kq: usize,
    /// VNNI layout (empty unless the CPU has AVX-512 VNNI): `ceil(n/QNR)` panels
    /// of `kq * QNR * 4` bytes (`[group][col][4]`).
    w4: Vec<i8>,
    /// Bias folded for activations read as unsigned (`izp + 128` for `qs8`).
    bias4: Vec<i32>,
    /// Input channels and kernel width of the kernel-row VNNI layout (0: none).
    tap_cin: usize,
    tap_kw: usize,
    /// Kernel-row VNNI layout for convolutions with ≤ 4 input channels: per panel,
    /// `kh · ceil(kw · cin / 4)` groups of `QNR` columns × 4 bytes (a kernel row's
    /// `kw · cin` weights in input order, zero-padded to whole groups).
    wt: Vec<i8>,
}

impl PackedQs8 {
    /// Packs `n` rows of `k` int8 weights (row `j` at `w[j * ldw..]`), the optional
    /// int32 bias, the input zero point (`a_unsigned`: activations are `qu8`), one
    /// requantization scale per column (`input_scale · weight_scale[j] / output_scale`,
    /// or one for all) and the output quantization.
    ///
    /// # Panics
    /// If a slice is too short for the given sizes (callers validate first).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        k: usize,
        n: usize,
        w: &[i8],
        ldw: usize,
        bias: Option<&[i32]>,
        input_zero_point: i32,
        a_unsigned: bool,
        scales: &[f32],
        out: QOut,
    ) -> Self {
        assert!(scales.len() == n || scales.len() == 1, "scale count");
        assert!(n == 0 || w.len() >= (n - 1) * ldw + k, "weights too short");
        let kp = k.div_ceil(2);
        let panels = n.div_ceil(QNR);
        let mut pw = vec![0i16; panels * kp * QNR * 2];
        let mut pb = vec![0i32; panels * QNR];
        let mut ps = vec![0f32; panels * QNR];
        let vnni = crate::isa::vnni_detected();
        let kq = k.div_ceil(4);
        let mut w4 = vec![0i8; if vnni { panels * kq * QNR * 4 } else { 0 }];
        let mut pb4 = vec![0i32; if vnni { panels * QNR } else { 0 }];
        // Zero point of the activations as the VNNI kernel reads them (unsigned).
        let izp4 = if a_unsigned {
            input_zero_point
        } else {
            input_zero_point.wrapping_add(128)
        };
        for j in 0..n {
            let row = &w[j * ldw..j * ldw + k];
            let (p, c) = (j / QNR, j % QNR);
            let base = p * kp * QNR * 2;
            let mut ksum: i32 = 0;
            for (kk, &v) in row.iter().enumerate() {
                pw[base + (kk / 2) * QNR * 2 + c * 2 + (kk & 1)] = v as i16;
                ksum = ksum.wrapping_add(v as i32);
            }
            let b = bias.map_or(0, |b| b[j]);
            pb[j] = b.wrapping_sub(ksum.wrapping_mul(input_zero_point));
            if vnni {
                let base4 = p * kq * QNR * 4;
                for (kk, &v) in row.iter().enumerate() {
                    w4[base4 + (kk / 4) * QNR * 4 + c * 4 + (kk & 3)] = v;
                }
                pb4[j] = b.wrapping_sub(ksum.wrapping_mul(izp4));
            }
            ps[j] = if scales.len() == 1 {
                scales[0]
            } else {
                scales[j]
            };
        }
        PackedQs8 {
            k,
            n,
            kp,
            w: pw,
            bias: pb,
            scale: ps,
            out,
            a_unsigned,
            kq,
            w4,
            bias4: pb4,
            tap_cin: 0,
            tap_kw: 0,
            wt: Vec::new(),
        }
    }

    /// Adds the kernel-row layout used by convolutions with `cin ≤ 4` input
    /// channels and kernel width `kw` (rows of `k = kh · kw · cin` weights, channels
    /// fastest) on CPUs with AVX-512 VNNI: a kernel row's `kw · cin` weights are
    /// contiguous in the input too, so they are read as `ceil(kw · cin / 4)` 4-byte
    /// groups straight from a padded copy of the input (the bytes past the row
    /// meet zero weights), with no per-row packing. A no-op otherwise.
    pub fn with_conv_taps(mut self, cin: usize, kw: usize) -> Self {
        if self.w4.is_empty()
            || !(1..=4).contains(&cin)
            || kw == 0
            || !self.k.is_multiple_of(cin * kw)
        {
            return self;
        }
        let (run, kh) = (kw * cin, self.k / (kw * cin));
        let gpr = run.div_ceil(4);
        let groups = kh * gpr;
        let panels = self.n.div_ceil(QNR);
        let mut wt = vec![0i8; panels * groups * QNR * 4];
        for j in 0..self.n {
            let (p, c) = (j / QNR, j % QNR);
            let src = p * self.kp * QNR * 2;
            for kk in 0..self.k {
                let v = self.w[src + (kk / 2) * QNR * 2 + c * 2 + (kk & 1)] as i8;
                let (ky, e) = (kk / run, kk % run);
                let grp = ky * gpr + e / 4;
                wt[(p * groups + grp) * QNR * 4 + c * 4 + e % 4] = v;
            }
        }
        self.tap_cin = cin;
        self.tap_kw = kw;
        self.wt = wt;
        self
    }

    /// Inner dimension.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Number of output columns.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.w.len() * 2
            + self.w4.len()
            + self.wt.len()
            + (self.bias.len() + self.bias4.len() + self.scale.len()) * 4
    }

    /// Output quantization.
    pub fn out(&self) -> QOut {
        self.out
    }

    /// Replaces the output quantization (e.g. to fuse a following clamp).
    pub fn set_out(&mut self, out: QOut) {
        self.out = out;
    }
}

/// Where the rows of A come from: a dense matrix, or (implicit im2col) the NHWC
/// input of a convolution, one row per output pixel with `kh·kw·cg` values per
/// row (channels `c0..c0+cg`), out-of-bounds taps reading `pad` (the input zero
/// point, like XNNPACK's zero buffer).
#[derive(Clone, Copy)]
pub(crate) enum ASrc<'a> {
    Dense {
        a: &'a [u8],
        lda: usize,
    },
    Conv {
        g: &'a QConvGeom,
        x: &'a [u8],
        c0: usize,
        cg: usize,
        pad: u8,
    },
}

#[inline(always)]
fn widen(dst: &mut [i16], src: &[u8], unsigned: bool) {
    if unsigned {
        for (d, &b) in dst.iter_mut().zip(src) {
            *d = b as i16;
        }
    } else {
        for (d, &b) in dst.iter_mut().zip(src) {
            *d = b as i8 as i16;
        }
    }
}

/// Copies bytes with `flip` xor-ed in (`0x80` turns `qs8` into `qs8 + 128` as `u8`),
/// eight at a time.
#[inline(always)]
fn flip_copy(dst: &mut [u8], src: &[u8], flip: u8) {
    let f8 = u64::from_ne_bytes([flip; 8]);
    let mut dc = dst.chunks_exact_mut(8);
    let mut sc = src.chunks_exact(8);
    for (d, s) in (&mut dc).zip(&mut sc) {
        let v = u64::from_ne_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        d.copy_from_slice(&(v ^ f8).to_ne_bytes());
    }
    for (d, &b) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *d = b ^ flip;
    }
}

/// Packs rows `r0..r0+rows` (≤ `mr`) of A into `dst` as `mr` rows of `len ≥ k`
/// elements, each run of bytes converted by `conv`: padding taps of a convolution
/// hold the converted pad byte, the k tail and missing rows are zero.
#[allow(clippy::too_many_arguments)]
fn pack_a<T: Copy + Default>(
    src: ASrc<'_>,
    r0: usize,
    rows: usize,
    mr: usize,
    k: usize,
    len: usize,
    dst: &mut [T],
    conv: impl Fn(&mut [T], &[u8]),
) {
    if len == 0 {
        return;
    }
    let dst = &mut dst[..mr * len];
    // Output pixel of row r0 (convolutions), advanced row by row.
    let (mut n, mut oy, mut ox) = match src {
        ASrc::Conv { g, .. } => (
            r0 / (g.out_h * g.out_w),
            (r0 / g.out_w) % g.out_h,
            r0 % g.out_w,
        ),
        ASrc::Dense { .. } => (0, 0, 0),
    };
    let padv = match src {
        ASrc::Conv { pad, .. } => {
            let mut v = [T::default()];
            conv(&mut v, &[pad]);
            v[0]
        }
        ASrc::Dense { .. } => T::default(),
    };
    for (r, drow) in dst.chunks_exact_mut(len).enumerate() {
        if r >= rows {
            drow.fill(T::default());
            continue;
        }
        let row = r0 + r;
        match src {
            ASrc::Dense { a, lda } => conv(&mut drow[..k], &a[row * lda..row * lda + k]),
            ASrc::Conv { g, x, c0, cg, .. } => {
                let iy0 = (oy * g.sh) as isize - g.pad_top as isize;
                let ix0 = (ox * g.sw) as isize - g.pad_left as isize;
                let seg_len = g.kw * cg;
                // A whole kernel row is one contiguous input run when it is in
                // bounds, undilated and covers all channels.
                let contiguous =
                    g.dw == 1 && cg == g.in_c && ix0 >= 0 && ix0 as usize + g.kw <= g.in_w;
                for ky in 0..g.kh {
                    let seg = &mut drow[ky * seg_len..(ky + 1) * seg_len];
                    let iy = iy0 + (ky * g.dh) as isize;
                    if iy < 0 || iy as usize >= g.in_h {
                        seg.fill(padv);
                        continue;
                    }
                    let base = (n * g.in_h + iy as usize) * g.in_w;
                    if contiguous {
                        let s = (base + ix0 as usize) * g.in_c;
                        conv(seg, &x[s..s + seg_len]);
                        continue;
                    }
                    for (kx, d) in seg.chunks_exact_mut(cg).enumerate() {
                        let ix = ix0 + (kx * g.dw) as isize;
                        if ix < 0 || ix as usize >= g.in_w {
                            d.fill(padv);
                        } else {
                            let s = (base + ix as usize) * g.in_c + c0;
                            conv(d, &x[s..s + cg]);
                        }
                    }
                }
                (n, oy, ox) = g.next_pixel(n, oy, ox);
            }
        }
        drow[k..].fill(T::default());
    }
}

/// Scalar micro-kernel: one QMR × QNR tile (stores `rows × cols`).
#[allow(clippy::too_many_arguments)]
fn kernel_scalar(
    kp: usize,
    a: &[i16],
    b: &[i16],
    bias: &[i32],
    scale: &[f32],
    q: QOut,
    rows: usize,
) -> [[u8; QNR]; QMR] {
    let mut acc = [[0i32; QNR]; QMR];
    for p in 0..kp {
        let bp = &b[p * QNR * 2..(p + 1) * QNR * 2];
        for (r, accr) in acc.iter_mut().enumerate().take(rows) {
            let (a0, a1) = (
                a[r * 2 * kp + 2 * p] as i32,
                a[r * 2 * kp + 2 * p + 1] as i32,
            );
            for (j, acj) in accr.iter_mut().enumerate() {
                *acj = acj
                    .wrapping_add(a0 * bp[2 * j] as i32)
                    .wrapping_add(a1 * bp[2 * j + 1] as i32);
            }
        }
    }
    let mut out = [[0u8; QNR]; QMR];
    for (accr, orow) in acc.iter().zip(out.iter_mut()).take(rows) {
        for (j, o) in orow.iter_mut().enumerate() {
            *o = requantize(accr[j].wrapping_add(bias[j]), scale[j], q);
        }
    }
    out
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{QOut, QMR, QNR};
    use core::arch::x86_64::*;

    /// Sixteen i32 values within [-128, 255] (`lo` then `hi`, eight each) as bytes
    /// in order (exact: every packing step is in range).
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(super) fn bytes16(lo: __m256i, hi: __m256i, unsigned: bool) -> __m128i {
        let p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
        let (l, h) = (
            _mm256_castsi256_si128(p16),
            _mm256_extracti128_si256(p16, 1),
        );
        if unsigned {
            _mm_packus_epi16(l, h)
        } else {
            _mm_packs_epi16(l, h)
        }
    }

    /// `qs8_qc8w_gemm_6x16c2__avx2`: one QMR × QNR tile.
    ///
    /// # Safety
    /// AVX2 must be available; `a` holds `QMR` rows of `2·kp` i16, `b` `kp * QNR * 2` i16,
    /// `bias`/`scale` QNR values; `c` is valid for `rows` rows of `cols` bytes at
    /// stride `ldc` (rows ≤ QMR, cols ≤ QNR).
    #[target_feature(enable = "avx2")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel(
        kp: usize,
        a: *const i16,
        b: *const i16,
        bias: *const i32,
        scale: *const f32,
        q: QOut,
        c: *mut u8,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        let z = _mm256_setzero_si256();
        let mut acc = [[z; 2]; QMR];
        let mut ap = a;
        let mut bp = b;
        let rs = 2 * kp;
        for _ in 0..kp {
            let b0 = _mm256_loadu_si256(bp as *const __m256i);
            let b1 = _mm256_loadu_si256(bp.add(16) as *const __m256i);
            for (r, accr) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_epi32((ap.add(r * rs) as *const i32).read_unaligned());
                accr[0] = _mm256_add_epi32(accr[0], _mm256_madd_epi16(av, b0));
                accr[1] = _mm256_add_epi32(accr[1], _mm256_madd_epi16(av, b1));
            }
            ap = ap.add(2);
            bp = bp.add(QNR * 2);
        }
        let bias0 = _mm256_loadu_si256(bias as *const __m256i);
        let bias1 = _mm256_loadu_si256(bias.add(8) as *const __m256i);
        let s0 = _mm256_loadu_ps(scale);
        let s1 = _mm256_loadu_ps(scale.add(8));
        let (lo, hi) = q.fbounds();
        let vlo = _mm256_set1_ps(lo);
        let vhi = _mm256_set1_ps(hi);
        let vzp = _mm256_set1_epi32(q.zero_point);
        for (r, accr) in acc.iter().enumerate().take(rows) {
            let f0 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(accr[0], bias0)), s0);
            let f1 = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(accr[1], bias1)), s1);
            let f0 = _mm256_min_ps(_mm256_max_ps(f0, vlo), vhi);
            let f1 = _mm256_min_ps(_mm256_max_ps(f1, vlo), vhi);
            // Round to nearest even (the default MXCSR mode) and re-centre.
            let i0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), vzp);
            let i1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), vzp);
            let bytes = bytes16(i0, i1, q.unsigned);
            let dst = c.add(r * ldc);
            if cols == QNR {
                _mm_storeu_si128(dst as *mut __m128i, bytes);
            } else {
                let mut tmp = [0u8; QNR];
                _mm_storeu_si128(tmp.as_mut_ptr() as *mut __m128i, bytes);
                core::ptr::copy_nonoverlapping(tmp.as_ptr(), dst, cols);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{QOut, QNR, VMR};
    use core::arch::x86_64::*;

    /// Where a VNNI tile reads its activations.
    #[derive(Clone, Copy)]
    pub(super) enum AView {
        /// `rows` rows of `4·kq` bytes at stride `lda` (`flip`: xor each byte with
        /// 0x80 after loading it).
        Rows {
            a: *const u8,
            lda: usize,
            flip: bool,
        },
        /// Row `r`'s k group `q` is the u32 at `rows[r] + offs[q]` (implicit
        /// convolution over a padded input).
        Taps {
            rows: [*const u8; VMR],
            offs: *const usize,
        },
        /// Implicit convolution (XNNPACK's indirect GEMM): tap `t` of row `r` is
        /// the run of `4·gpt` bytes at `ptrs[t·VMR + r]` (an input pixel's channels
        /// or a row of pad bytes); the sign bit is flipped in registers when `flip`.
        Indirect {
            ptrs: *const *const u8,
            gpt: usize,
            flip: bool,
        },
    }

    /// `qs8_qc8w_gemm_{1..8}x{16,32}c4__avx512vnni`: `rows ≤ VMR` rows times
    /// `np ∈ {1, 2}` panels (`cols` valid columns in them).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI must be available; `a` gives `rows` rows of `kq`
    /// readable 4-byte groups; `b` holds `np` panels of `kq · QNR · 4` bytes at
    /// stride `bstride`; `bias`/`scale` hold `np · QNR` values; `c` is valid for
    /// `rows` rows of `cols` bytes at stride `ldc`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    pub(super) unsafe fn tile(
        np: usize,
        kq: usize,
        a: AView,
        b: *const i8,
        bstride: usize,
        bias: *const i32,
        scale: *const f32,
        q: QOut,
        c: *mut u8,
        ldc: usize,
        rows: usize,
        cols: usize,
    ) {
        let (ptrs, lda, offs, mode) = match a {
            AView::Rows { a, lda, flip } => ([a; VMR], lda, core::ptr::null(), flip as u8),
            AView::Taps { rows, offs } => (rows, 0, offs, 2),
            AView::Indirect { ptrs, gpt, flip } => {
                macro_rules! ind {
                    ($($mr:literal)*) => {
                        match (np, rows) {
                            $((1, $mr) => tile_ind::<1, $mr>(kq, ptrs, gpt, flip, b, bstride, bias, scale, q, c, ldc, cols),
                              (_, $mr) => tile_ind::<2, $mr>(kq, ptrs, gpt, flip, b, bstride, bias, scale, q, c, ldc, cols),)*
                            _ => unreachable!("rows ≤ VMR"),
                        }
                    };
                }
                debug_assert!(rows <= VMR);
                return ind!(1 2 3 4 5 6 7 8);
            }
        };
        macro_rules! go {
            ($($mr:literal)*) => {
                match (np, rows, mode) {
                    $((1, $mr, 0) => tile_n::<1, $mr, 0>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),
                      (_, $mr, 0) => tile_n::<2, $mr, 0>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),
                      (1, $mr, 1) => tile_n::<1, $mr, 1>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),
                      (_, $mr, 1) => tile_n::<2, $mr, 1>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),
                      (1, $mr, _) => tile_n::<1, $mr, 2>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),
                      (_, $mr, _) => tile_n::<2, $mr, 2>(kq, &ptrs, lda, offs, b, bstride, bias, scale, q, c, ldc, cols),)*
                    _ => unreachable!("rows ≤ VMR"),
                }
            };
        }
        debug_assert!(rows <= VMR);
        go!(1 2 3 4 5 6 7 8)
    }

    /// MODE 0: row `r` at `rows[0] + r·lda`, read as is; 1: the same with the sign
    /// bit flipped in registers; 2: row `r`'s group `q` at `rows[r] + offs[q]`.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_n<const NP: usize, const MR: usize, const MODE: u8>(
        kq: usize,
        rows: &[*const u8; VMR],
        lda: usize,
        offs: *const usize,
        b: *const i8,
        bstride: usize,
        bias: *const i32,
        scale: *const f32,
        q: QOut,
        c: *mut u8,
        ldc: usize,
        cols: usize,
    ) {
        let mut acc = bias_acc::<NP, MR>(bias);
        let mut bp = b;
        let mut ap = rows[0];
        let vflip = _mm512_set1_epi8(-128);
        for qi in 0..kq {
            let mut bv = [_mm512_setzero_si512(); NP];
            for (j, v) in bv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(bp.add(j * bstride) as *const _);
            }
            for (r, accr) in acc.iter_mut().enumerate() {
                let at = if MODE == 2 {
                    rows[r].add(*offs.add(qi))
                } else {
                    ap.add(r * lda)
                };
                let mut av = _mm512_set1_epi32((at as *const i32).read_unaligned());
                if MODE == 1 {
                    av = _mm512_xor_si512(av, vflip);
                }
                for (j, v) in bv.iter().enumerate() {
                    // u8 × i8, four products summed exactly into each i32 lane.
                    accr[j] = _mm512_dpbusd_epi32(accr[j], av, *v);
                }
            }
            bp = bp.add(QNR * 4);
            ap = ap.add(4);
        }
        store::<NP, MR>(&acc, scale, q, c, ldc, cols);
    }

    /// `MR` rows of accumulators, each starting at the `NP · QNR` column biases.
    ///
    /// # Safety
    /// AVX-512 F must be available and `bias` valid for `NP · QNR` values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn bias_acc<const NP: usize, const MR: usize>(bias: *const i32) -> [[__m512i; NP]; MR] {
        let mut acc = [[_mm512_setzero_si512(); NP]; MR];
        for j in 0..NP {
            let bj = _mm512_loadu_si512(bias.add(QNR * j) as *const _);
            for accr in acc.iter_mut() {
                accr[j] = bj;
            }
        }
        acc
    }

    /// Requantizes and stores an `MR × NP·QNR` tile of accumulators (`cols` valid).
    ///
    /// # Safety
    /// AVX-512 F/BW/VL must be available; `scale` holds `NP · QNR` values and `c`
    /// is valid for `MR` rows of `cols` bytes at stride `ldc`.
    #[inline(always)]
    unsafe fn store<const NP: usize, const MR: usize>(
        acc: &[[__m512i; NP]; MR],
        scale: *const f32,
        q: QOut,
        c: *mut u8,
        ldc: usize,
        cols: usize,
    ) {
        let (lo, hi) = q.fbounds();
        let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let vzp = _mm512_set1_epi32(q.zero_point);
        for j in 0..NP {
            let cj = cols.saturating_sub(QNR * j).min(QNR);
            if cj == 0 {
                continue;
            }
            let mask = (((1u32 << cj) - 1) & 0xFFFF) as __mmask16;
            let s = _mm512_loadu_ps(scale.add(QNR * j));
            for (r, accr) in acc.iter().enumerate() {
                let f = _mm512_mul_ps(_mm512_cvtepi32_ps(accr[j]), s);
                let f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);
                // Round to nearest even (the default MXCSR mode) and re-centre;
                // values are within [-128, 255], so truncating to bytes is exact.
                let i = _mm512_add_epi32(_mm512_cvtps_epi32(f), vzp);
                let bytes = _mm512_cvtepi32_epi8(i);
                _mm_mask_storeu_epi8(c.add(r * ldc + QNR * j) as *mut i8, mask, bytes);
            }
        }
    }

    /// The [`AView::Indirect`] tile: per tap, `MR` row pointers, then `gpt` k groups
    /// read at increasing offsets from each (`kq = taps · gpt`).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
    unsafe fn tile_ind<const NP: usize, const MR: usize>(
        kq: usize,
        ptrs: *const *const u8,
        gpt: usize,
        flip: bool,
        b: *const i8,
        bstride: usize,
        bias: *const i32,
        scale: *const f32,
        q: QOut,
        c: *mut u8,
        ldc: usize,
        cols: usize,
    ) {
        let mut acc = bias_acc::<NP, MR>(bias);
        let vflip = _mm512_set1_epi8(if flip { -128 } else { 0 });
        let taps = kq / gpt.max(1);
        let mut bp = b;
        for t in 0..taps {
            let mut a = [core::ptr::null::<u8>(); MR];
            for (r, ar) in a.iter_mut().enumerate() {
                *ar = *ptrs.add(t * VMR + r);
            }
            for _ in 0..gpt {
                let mut bv = [_mm512_setzero_si512(); NP];
                for (j, v) in bv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(bp.add(j * bstride) as *const _);
                }
                for (accr, ar) in acc.iter_mut().zip(a.iter_mut()) {
                    let av = _mm512_set1_epi32((*ar as *const i32).read_unaligned());
                    let av = _mm512_xor_si512(av, vflip);
                    *ar = ar.add(4);
                    for (j, v) in bv.iter().enumerate() {
                        // u8 × i8, four products summed exactly into each i32 lane.
                        accr[j] = _mm512_dpbusd_epi32(accr[j], av, *v);
                    }
                }
                bp = bp.add(QNR * 4);
            }
        }
        store::<NP, MR>(&acc, scale, q, c, ldc, cols);
    }
}

/// `c[i * ldc + j] = requantize(Σ_k (a[i][k] - izp) · w[j][k] + bias[j])` for an
/// `m × n` output of bytes, parallel over row blocks (and column panels when
/// there are few rows).
///
/// # Panics
/// If `a` or `c` is too short.
pub fn qgemm(m: usize, a: &[u8], lda: usize, b: &PackedQs8, c: &mut [u8], ldc: usize) {
    if m == 0 || b.n == 0 {
        return;
    }
    assert!(a.len() >= (m - 1) * lda + b.k, "qgemm: a too short");
    assert!(lda >= b.k, "qgemm: strides");
    qgemm_src(m, ASrc::Dense { a, lda }, b, c, ldc);
}

/// Weight panels larger than this are kept cache-resident by iterating row
/// blocks inside each panel (A packed once up front) instead of streaming all of
/// B once per row block.
const B_CACHE_BYTES: usize = 192 * 1024;

/// Splits `items` into at most `target` contiguous chunks: (chunks, per chunk).
fn chunks(items: usize, target: usize) -> (usize, usize) {
    let per = items.div_ceil(target.clamp(1, items.max(1))).max(1);
    (items.div_ceil(per), per)
}

/// The qgemm driver on any A source (`a` already validated by the caller).
pub(crate) fn qgemm_src(m: usize, src: ASrc<'_>, b: &PackedQs8, c: &mut [u8], ldc: usize) {
    let (n, k) = (b.n, b.k);
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "qgemm: c too short");
    assert!(ldc >= n, "qgemm: strides");
    let cp = SyncPtr(c.as_mut_ptr());
    let clen = c.len();
    // The output tile of row block `mb` (of `mr` rows) and columns `c0..c0+cols`:
    // (offset in c, rows); asserts that it lies inside `c`.
    let tile_at = |mb: usize, mr: usize, c0: usize, cols: usize| {
        let r0 = mb * mr;
        let rows = (m - r0).min(mr);
        let off = r0 * ldc + c0;
        assert!(off + (rows - 1) * ldc + cols <= clen);
        (off, rows)
    };
    #[cfg(target_arch = "x86_64")]
    if avx512_vnni() && !b.w4.is_empty() {
        if let ASrc::Conv { g, x, c0, cg, pad } = src {
            if cg.is_multiple_of(4) && g.kh * g.kw <= MAX_ITAPS {
                conv_indirect(m, g, x, c0, cg, pad, b, cp, clen, ldc);
                return;
            }
        }
        let flip = if b.a_unsigned { 0 } else { 0x80 };
        // Dense rows made of whole k groups are read in place (the sign flip then
        // happens in registers); other sources are packed per row block.
        let direct = match src {
            ASrc::Dense { a, lda } if k % 4 == 0 => Some((a, lda)),
            _ => None,
        };
        let len = if direct.is_some() { 0 } else { b.kq * 4 };
        drive::<u8>(
            m,
            b,
            VMR,
            len,
            &|r0, rows, dst| {
                if direct.is_none() {
                    pack_a(src, r0, rows, VMR, k, len, dst, |d, s| {
                        flip_copy(d, s, flip)
                    })
                }
            },
            &|apack, mb, p0, p1| {
                let (ap, lda, kflip) = match direct {
                    Some((a, lda)) => (a[mb * VMR * lda..].as_ptr(), lda, flip != 0),
                    None => (apack.as_ptr(), len, false),
                };
                let view = vnni::AView::Rows {
                    a: ap,
                    lda,
                    flip: kflip,
                };
                // SAFETY: AVX-512 VNNI was detected (avx512_vnni()); the view holds
                // the block's rows of 4·kq bytes at stride `lda` (the packed block,
                // or rows of the dense A, whose length qgemm checked, k = 4·kq).
                unsafe { vnni_panels(b, b.kq, view, &b.w4, mb * VMR, m, p0, p1, cp, clen, ldc) };
            },
        );
        return;
    }
    let use_avx2 = isa() >= Isa::Avx2Fma && cfg!(target_arch = "x86_64");
    let kp = b.kp;
    let len = 2 * kp;
    let unsigned = b.a_unsigned;
    drive::<i16>(
        m,
        b,
        QMR,
        len,
        &|r0, rows, dst| {
            pack_a(src, r0, rows, QMR, k, len, dst, |d, s| {
                widen(d, s, unsigned)
            })
        },
        &|apack, mb, p0, p1| {
            for p in p0..p1 {
                let c0 = p * QNR;
                let cols = (n - c0).min(QNR);
                let (off, rows) = tile_at(mb, QMR, c0, cols);
                let bw = &b.w[p * kp * QNR * 2..(p + 1) * kp * QNR * 2];
                let bias = &b.bias[c0..c0 + QNR];
                let scale = &b.scale[c0..c0 + QNR];
                #[cfg(target_arch = "x86_64")]
                if use_avx2 {
                    // SAFETY: AVX2 was detected (isa()); `apack` holds QMR rows of 2kp
                    // i16 and the packed B/bias/scale slices have the lengths the
                    // kernel reads; the tile (rows × cols at stride ldc from `off`)
                    // lies inside `c` (asserted by tile_at), and tasks own disjoint
                    // (row block, panel) tiles.
                    unsafe {
                        avx2::kernel(
                            kp,
                            apack.as_ptr(),
                            bw.as_ptr(),
                            bias.as_ptr(),
                            scale.as_ptr(),
                            b.out,
                            cp.get().add(off),
                            ldc,
                            rows,
                            cols,
                        )
                    }
                    continue;
                }
                let _ = use_avx2;
                let t = kernel_scalar(kp, apack, bw, bias, scale, b.out, rows);
                for (r, trow) in t.iter().enumerate().take(rows) {
                    // SAFETY: row r of the tile (cols bytes at off + r·ldc) lies inside
                    // `c` (asserted by tile_at) and belongs to this task only.
                    let dst = unsafe {
                        core::slice::from_raw_parts_mut(cp.get().add(off + r * ldc), cols)
                    };
                    dst.copy_from_slice(&trow[..cols]);
                }
            }
        },
    );
}

/// Row block at `r0` (of `m` rows) over panels `p0..p1`, two at a time, on the
/// VNNI kernel with weights `w` (`kq` groups per panel: `w4`, or `wt` for taps).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI must be available; `a` gives the block's
/// `min(m - r0, VMR)` rows of `kq` readable 4-byte groups; `c` (`clen` bytes,
/// stride `ldc`) holds the `m × n` output, whose rows of this block this task owns.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
unsafe fn vnni_panels(
    b: &PackedQs8,
    kq: usize,
    a: vnni::AView,
    w: &[i8],
    r0: usize,
    m: usize,
    p0: usize,
    p1: usize,
    c: SyncPtr<u8>,
    clen: usize,
    ldc: usize,
) {
    let rows = (m - r0).min(VMR);
    let bstride = kq * QNR * 4;
    assert!(w.len() >= p1 * bstride && b.bias4.len() >= p1 * QNR);
    let mut p = p0;
    while p < p1 {
        let np = (p1 - p).min(2);
        let c0 = p * QNR;
        let cols = (b.n - c0).min(np * QNR);
        let off = r0 * ldc + c0;
        assert!(off + (rows - 1) * ldc + cols <= clen);
        // SAFETY: the caller vouches for the CPU and `a`; panels p..p+np of `w`
        // (bstride bytes each), bias4 and scale (QNR per panel) are in bounds
        // (asserted); the rows × cols tile at `off` lies inside `c` (asserted).
        unsafe {
            vnni::tile(
                np,
                kq,
                a,
                w.as_ptr().add(p * bstride),
                bstride,
                b.bias4.as_ptr().add(c0),
                b.scale.as_ptr().add(c0),
                b.out,
                c.get().add(off),
                ldc,
                rows,
                cols,
            )
        }
        p += np;
    }
}

/// Most taps of the indirect convolution path.
#[cfg(target_arch = "x86_64")]
const MAX_ITAPS: usize = 64;

/// Convolution whose group has a multiple of 4 channels on the VNNI kernel without
/// packing A (XNNPACK's indirect GEMM): per row block, one pointer per tap and row
/// to the input pixel's channels `c0..c0+cg`, or to a row of `pad` bytes for taps
/// outside the input; the kernel reads `cg / 4` groups from each.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
fn conv_indirect(
    m: usize,
    g: &QConvGeom,
    x: &[u8],
    c0: usize,
    cg: usize,
    pad: u8,
    b: &PackedQs8,
    cp: SyncPtr<u8>,
    clen: usize,
    ldc: usize,
) {
    use core::mem::MaybeUninit;
    let taps = g.kh * g.kw;
    assert!(taps <= MAX_ITAPS && cg.is_multiple_of(4) && c0 + cg <= g.in_c && b.k == taps * cg);
    assert!(x.len() >= g.batch * g.in_h * g.in_w * g.in_c);
    with_scratch_as::<u8, ()>(cg, |padrow| {
        padrow.fill(pad);
        let padrow: &[u8] = padrow;
        let flip = !b.a_unsigned;
        drive::<u8>(m, b, VMR, 0, &|_, _, _| {}, &|_, mb, p0, p1| {
            let r0 = mb * VMR;
            let rows = (m - r0).min(VMR);
            let mut ptrs = [const { MaybeUninit::<*const u8>::uninit() }; MAX_ITAPS * VMR];
            let (mut n, mut oy, mut ox) = (
                r0 / (g.out_h * g.out_w),
                (r0 / g.out_w) % g.out_h,
                r0 % g.out_w,
            );
            for r in 0..rows {
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        let p = match g.src(oy, ox, ky, kx) {
                            Some((iy, ix)) => {
                                x[((n * g.in_h + iy) * g.in_w + ix) * g.in_c + c0..].as_ptr()
                            }
                            None => padrow.as_ptr(),
                        };
                        ptrs[(ky * g.kw + kx) * VMR + r].write(p);
                    }
                }
                (n, oy, ox) = g.next_pixel(n, oy, ox);
            }
            let view = vnni::AView::Indirect {
                ptrs: ptrs.as_ptr() as *const *const u8,
                gpt: cg / 4,
                flip,
            };
            // SAFETY: AVX-512 VNNI was detected (avx512_vnni()); entries `t·VMR + r`
            // for every tap t and row r < rows were written above, each pointing at
            // `cg` readable bytes (a pixel's channels c0..c0+cg of `x`, whose
            // length is asserted, or the pad row); k = taps · cg (asserted).
            unsafe { vnni_panels(b, b.kq, view, &b.w4, r0, m, p0, p1, cp, clen, ldc) };
        });
    });
}

/// Most k groups of the kernel-row convolution path.
const MAX_CONV_TAPS: usize = 128;

/// Convolution with `g.in_c ≤ 4` channels (one group, undilated columns) on the
/// kernel-row VNNI layout: the input is copied once into a zero-point-padded
/// buffer (sign bit flipped for `qs8`; rows filled in parallel), and row `r`'s k
/// group `q` is the u32 at `pixel(r) + offs[q]`. Returns `false` (doing nothing)
/// when not applicable.
pub(crate) fn qconv_taps(g: &QConvGeom, x: &[u8], b: &PackedQs8, pad: u8, c: &mut [u8]) -> bool {
    let cin = g.in_c;
    let run = g.kw * cin;
    let gpr = run.div_ceil(4);
    let groups = g.kh * gpr;
    if b.tap_cin != cin
        || b.tap_cin == 0
        || b.tap_kw != g.kw
        || g.kh * run != b.k
        || g.dw != 1
        || groups > MAX_CONV_TAPS
        || !avx512_vnni()
        || !cfg!(target_arch = "x86_64")
    {
        return false;
    }
    let (m, n) = (g.batch * g.out_h * g.out_w, b.n);
    if m == 0 || n == 0 {
        return true;
    }
    assert!(c.len() >= m * n, "qconv: output too short");
    assert!(x.len() >= g.input_len(), "qconv: input too short");
    let hp = (g.out_h - 1) * g.sh + (g.kh - 1) * g.dh + 1;
    let wp = (g.out_w - 1) * g.sw + g.kw;
    let row = wp * cin;
    let flip = if b.a_unsigned { 0 } else { 0x80 };
    let mut offs = [0usize; MAX_CONV_TAPS];
    for ky in 0..g.kh {
        for j in 0..gpr {
            offs[ky * gpr + j] = ky * g.dh * row + 4 * j;
        }
    }
    // The last group of a kernel row may read up to 3 bytes past it: slack at the end.
    let total = g.batch * hp * row + 4;
    with_scratch_as::<u8, ()>(total, |buf| {
        let padv = pad ^ flip;
        let (body, slack) = buf.split_at_mut(g.batch * hp * row);
        slack.fill(padv);
        let rows_n = g.batch * hp;
        let (tasks, per) = chunks(
            rows_n,
            if rows_n * row < 64 * 1024 {
                1
            } else {
                4 * num_threads()
            },
        );
        let bp = SyncPtr(body.as_mut_ptr());
        let in_row = g.in_w * cin;
        let left = g.pad_left.min(wp) * cin;
        let mid = g.in_w.min(wp.saturating_sub(g.pad_left)) * cin;
        parallel_for(tasks, |t| {
            let (i0, i1) = (t * per, ((t + 1) * per).min(rows_n));
            // SAFETY: rows i0..i1 of the padded body (in bounds: i1 ≤ rows_n) belong
            // to this task only.
            let dst =
                unsafe { core::slice::from_raw_parts_mut(bp.get().add(i0 * row), (i1 - i0) * row) };
            for (i, prow) in (i0..i1).zip(dst.chunks_exact_mut(row)) {
                let (nb, yp) = (i / hp, i % hp);
                let iy = yp.wrapping_sub(g.pad_top);
                if iy >= g.in_h {
                    prow.fill(padv);
                    continue;
                }
                let s = (nb * g.in_h + iy) * in_row;
                prow[..left].fill(padv);
                flip_copy(&mut prow[left..left + mid], &x[s..s + mid], flip);
                prow[left + mid..].fill(padv);
            }
        });
        let buf: &[u8] = buf;
        let clen = c.len();
        let cp = SyncPtr(c.as_mut_ptr());
        drive::<u8>(m, b, VMR, 0, &|_, _, _| {}, &|_, mb, p0, p1| {
            let r0 = mb * VMR;
            let rows = (m - r0).min(VMR);
            let mut ptrs = [buf.as_ptr(); VMR];
            let (mut nb, mut oy, mut ox) = (
                r0 / (g.out_h * g.out_w),
                (r0 / g.out_w) % g.out_h,
                r0 % g.out_w,
            );
            for pr in ptrs.iter_mut().take(rows) {
                let at = (nb * hp + oy * g.sh) * row + ox * g.sw * cin;
                // Every group of this pixel lies inside the padded buffer.
                assert!(at + offs[groups - 1] + 4 <= buf.len());
                *pr = buf[at..].as_ptr();
                (nb, oy, ox) = g.next_pixel(nb, oy, ox);
            }
            let view = vnni::AView::Taps {
                rows: ptrs,
                offs: offs.as_ptr(),
            };
            // SAFETY: AVX-512 VNNI was detected (avx512_vnni()); each row pointer has
            // all `groups` 4-byte groups at `offs` inside `buf` (asserted above).
            unsafe { vnni_panels(b, groups, view, &b.wt, r0, m, p0, p1, cp, clen, n) };
        });
    });
    true
}

/// Views this thread's f32 scratch as `len` elements of `T` (an integer type of
/// alignment ≤ 4).
fn with_scratch_as<T: Copy, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let sz = core::mem::size_of::<T>();
    assert!(sz <= 4 && 4 % core::mem::align_of::<T>() == 0);
    if len == 0 {
        // Nothing to hold (and no borrow of the scratch, which the caller may own).
        return f(&mut []);
    }
    with_scratch((len * sz).div_ceil(4), |s| {
        // SAFETY: the scratch (exclusively ours in this closure, initialised) holds
        // at least len·size_of::<T>() bytes; T is a plain integer type whose
        // alignment divides f32's, and every bit pattern is a valid T.
        let v: &mut [T] = unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr() as *mut T, len) };
        f(v)
    })
}

/// Splits a GEMM into tasks: row blocks of `mr` rows packed by `pack(r0, rows,
/// dst)` into `mr · len` elements, and `tile(apack, mb, p0, p1)` computing row
/// block `mb` for panels `p0..p1`.
#[allow(clippy::type_complexity)]
fn drive<T: Copy + Default + Sync>(
    m: usize,
    b: &PackedQs8,
    mr: usize,
    len: usize,
    pack: &(dyn Fn(usize, usize, &mut [T]) + Sync),
    tile: &(dyn Fn(&[T], usize, usize, usize) + Sync),
) {
    let (n, k) = (b.n, b.k);
    let mblocks = m.div_ceil(mr);
    let panels = n.div_ceil(QNR);
    // Column splits keep whole tiles: the VNNI tile (mr = VMR) covers two panels.
    let pair = if mr == VMR { 2 } else { 1 };
    let units = panels.div_ceil(pair);
    let threads = num_threads();
    let work = m * n * k.max(1);
    let target = if threads <= 1 || work < 64 * 1024 {
        1
    } else {
        threads * 4
    };
    let blk = mr * len;
    let wbytes = b.w.len() * 2;
    if wbytes > B_CACHE_BYTES && mblocks > 1 {
        // Panel-outer: pack all of A once, then each task keeps its panels hot.
        with_scratch_as::<T, ()>(mblocks * blk, |apack| {
            if blk > 0 {
                // Packed in parallel, in the row order the tasks below read it.
                let (pcs, per) = chunks(mblocks, target);
                let ap = SyncPtr(apack.as_mut_ptr());
                parallel_for(pcs, |t| {
                    let (b0, b1) = (t * per, ((t + 1) * per).min(mblocks));
                    // SAFETY: row blocks b0..b1 (inside `apack`, which holds
                    // mblocks·blk elements) belong to this task only.
                    let dst = unsafe {
                        core::slice::from_raw_parts_mut(ap.get().add(b0 * blk), (b1 - b0) * blk)
                    };
                    for (mb, dst) in (b0..b1).zip(dst.chunks_exact_mut(blk)) {
                        let r0 = mb * mr;
                        pack(r0, (m - r0).min(mr), dst);
                    }
                });
            }
            let apack: &[T] = apack;
            let (pc, pper) = chunks(units, target);
            let (rc, rper) = chunks(mblocks, target.div_ceil(pc));
            parallel_for(pc * rc, |t| {
                let (pi, ri) = (t / rc, t % rc);
                let (p0, p1) = (pi * pper * pair, ((pi + 1) * pper * pair).min(panels));
                for mb in ri * rper..((ri + 1) * rper).min(mblocks) {
                    tile(&apack[mb * blk..(mb + 1) * blk], mb, p0, p1);
                }
            });
        });
        return;
    }
    let (row_chunks, rows_per) = chunks(mblocks, target);
    let (col_chunks, cols_per) = if row_chunks >= target {
        (1, units)
    } else {
        chunks(units, target.div_ceil(row_chunks))
    };
    parallel_for(row_chunks * col_chunks, |t| {
        let (rc, cc) = (t / col_chunks, t % col_chunks);
        let (mb0, mb1) = (rc * rows_per, ((rc + 1) * rows_per).min(mblocks));
        let (p0, p1) = (
            cc * cols_per * pair,
            ((cc + 1) * cols_per * pair).min(panels),
        );
        with_scratch_as::<T, ()>(blk, |apack| {
            for mb in mb0..mb1 {
                let r0 = mb * mr;
                pack(r0, (m - r0).min(mr), apack);
                tile(apack, mb, p0, p1);
            }
        });
    });
}

/// Parameters of XNNPACK's `qs8`/`qu8` add: `out = clamp(((bias + a·a_mul +
/// b·b_mul) >> shift) + zero_point, min, max)` on raw (not zero-point-adjusted)
/// inputs, with the zero points and the rounding term folded into `bias`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QAddParams {
    pub a_mul: i32,
    pub b_mul: i32,
    pub bias: i32,
    /// Arithmetic right shift (1..=31).
    pub shift: u32,
    pub a_unsigned: bool,
    pub b_unsigned: bool,
    pub out: QOut,
}

#[inline(always)]
fn qadd_one(a: u8, b: u8, p: &QAddParams) -> u8 {
    let acc = p
        .bias
        .wrapping_add(qval(a, p.a_unsigned).wrapping_mul(p.a_mul))
        .wrapping_add(qval(b, p.b_unsigned).wrapping_mul(p.b_mul));
    ((acc >> p.shift) + p.out.zero_point).clamp(p.out.min, p.out.max) as u8
}

#[cfg(target_arch = "x86_64")]
mod avx2_add {
    use super::{QAddParams, QOut};
    use core::arch::x86_64::*;

    /// `f32_qs8_vcvt__avx2_u16`: whole 16-element blocks; returns how many elements
    /// were written.
    ///
    /// # Safety
    /// AVX2 must be available; `src` and `out` have equal lengths.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn quantize(src: &[f32], inv: f32, q: QOut, out: &mut [u8]) -> usize {
        let n = out.len() / 16 * 16;
        let vinv = _mm256_set1_ps(inv);
        let (lo, hi) = q.fbounds();
        let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let zp = _mm256_set1_epi32(q.zero_point);
        let mut i = 0;
        while i < n {
            let mut r = [_mm256_setzero_si256(); 2];
            for (h, rh) in r.iter_mut().enumerate() {
                let t = _mm256_mul_ps(_mm256_loadu_ps(src.as_ptr().add(i + 8 * h)), vinv);
                let c = _mm256_min_ps(_mm256_max_ps(t, vlo), vhi);
                // Round to nearest even (the default MXCSR mode); NaN lanes to 0.
                let ord = _mm256_castps_si256(_mm256_cmp_ps(t, t, _CMP_ORD_Q));
                let v = _mm256_and_si256(_mm256_cvtps_epi32(c), ord);
                *rh = _mm256_add_epi32(v, zp);
            }
            let bytes = super::avx2::bytes16(r[0], r[1], q.unsigned);
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, bytes);
            i += 16;
        }
        n
    }

    /// `qs8_vadd_minmax__avx2_mul32_u16`: whole 16-element blocks; returns how many
    /// elements were written.
    ///
    /// # Safety
    /// AVX2 must be available; `a`, `b` and `out` have equal lengths.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn qadd(a: &[u8], b: &[u8], p: &QAddParams, out: &mut [u8]) -> usize {
        let n = out.len() / 16 * 16;
        let (am, bm) = (_mm256_set1_epi32(p.a_mul), _mm256_set1_epi32(p.b_mul));
        let bias = _mm256_set1_epi32(p.bias);
        let sh = _mm_cvtsi32_si128(p.shift as i32);
        let zp = _mm256_set1_epi32(p.out.zero_point);
        let (lo, hi) = (_mm256_set1_epi32(p.out.min), _mm256_set1_epi32(p.out.max));
        let ld = |ptr: *const u8, unsigned: bool| -> __m256i {
            let v = _mm_loadl_epi64(ptr as *const __m128i);
            if unsigned {
                _mm256_cvtepu8_epi32(v)
            } else {
                _mm256_cvtepi8_epi32(v)
            }
        };
        let mut i = 0;
        while i < n {
            let mut r = [_mm256_setzero_si256(); 2];
            for (h, rh) in r.iter_mut().enumerate() {
                let va = ld(a.as_ptr().add(i + 8 * h), p.a_unsigned);
                let vb = ld(b.as_ptr().add(i + 8 * h), p.b_unsigned);
                let acc = _mm256_add_epi32(
                    _mm256_add_epi32(bias, _mm256_mullo_epi32(va, am)),
                    _mm256_mullo_epi32(vb, bm),
                );
                let v = _mm256_add_epi32(_mm256_sra_epi32(acc, sh), zp);
                *rh = _mm256_min_epi32(_mm256_max_epi32(v, lo), hi);
            }
            let bytes = super::avx2::bytes16(r[0], r[1], p.out.unsigned);
            _mm_storeu_si128(out.as_mut_ptr().add(i) as *mut __m128i, bytes);
            i += 16;
        }
        n
    }
}

/// Elementwise quantized add of equal-length byte slices (XNNPACK `qs8_vadd`).
///
/// # Panics
/// If the lengths differ or `p.shift` is not in `1..=31`.
pub fn qadd(a: &[u8], b: &[u8], p: &QAddParams, out: &mut [u8]) {
    assert!(
        a.len() == out.len() && b.len() == out.len(),
        "qadd: lengths"
    );
    assert!((1..=31).contains(&p.shift), "qadd: shift");
    par_elems(out, |i0, o| {
        qadd_serial(&a[i0..i0 + o.len()], &b[i0..i0 + o.len()], p, o)
    });
}

/// Runs `f(i0, out[i0..i1])` over the whole of `out`: in parallel chunks of whole
/// 64-byte blocks when it is large (≥ 64K elements), else in one call.
fn par_elems(out: &mut [u8], f: impl Fn(usize, &mut [u8]) + Sync) {
    const MIN_PARALLEL: usize = 64 * 1024;
    let n = out.len();
    if n < MIN_PARALLEL || num_threads() <= 1 {
        f(0, out);
        return;
    }
    let (tasks, per) = chunks(n.div_ceil(64), 4 * num_threads());
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        let (i0, i1) = (t * per * 64, ((t + 1) * per * 64).min(n));
        // SAFETY: elements i0..i1 of `out` (i1 ≤ n = out.len()) belong to this
        // task only.
        let o = unsafe { core::slice::from_raw_parts_mut(op.get().add(i0), i1 - i0) };
        f(i0, o);
    });
}

fn qadd_serial(a: &[u8], b: &[u8], p: &QAddParams, out: &mut [u8]) {
    assert!(a.len() == out.len() && b.len() == out.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa() >= Isa::Avx2Fma {
        // SAFETY: AVX2 detected; the three slices have equal lengths (asserted).
        done = unsafe { avx2_add::qadd(a, b, p, out) };
    }
    for ((o, &x), &y) in out[done..].iter_mut().zip(&a[done..]).zip(&b[done..]) {
        *o = qadd_one(x, y, p);
    }
}

/// Quantizes `f32` values to bytes: `round_even(clamp(x · inv, min - zp, max - zp))
/// + zp` with `q`'s zero point and range; NaN maps to the zero point (XNNPACK's
/// `f32_qs8_vcvt` up to that NaN rule, and the f32 path's fake quantization).
///
/// # Panics
/// If the lengths differ.
pub fn quantize_q8(src: &[f32], inv: f32, q: QOut, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len(), "quantize_q8: lengths");
    par_elems(dst, |i0, d| {
        quantize_serial(&src[i0..i0 + d.len()], inv, q, d)
    });
}

fn quantize_serial(src: &[f32], inv: f32, q: QOut, dst: &mut [u8]) {
    assert_eq!(src.len(), dst.len());
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa() >= Isa::Avx2Fma {
        // SAFETY: AVX2 detected; the slices have equal lengths (asserted).
        done = unsafe { avx2_add::quantize(src, inv, q, dst) };
    }
    let (lo, hi) = q.fbounds();
    for (d, &v) in dst[done..].iter_mut().zip(&src[done..]) {
        let t = v * inv;
        let r = if t.is_nan() {
            0
        } else {
            t.max(lo).min(hi).round_ties_even() as i32
        };
        *d = (r + q.zero_point) as u8;
    }
}
