//! Int8 NHWC convolutions with fused `fp32` requantization (XNNPACK `qs8_qc8w`
//! semantics, see [`crate::qgemm`]).
//!
//! * [`qconv2d_nhwc`]: dense/grouped convolution, as [`qgemm`] on the activation
//!   itself (1×1, stride 1, no padding) or with im2col rows built while packing
//!   the GEMM's A panels; padding taps hold the input zero point (like XNNPACK's
//!   zero buffer, so they add nothing once the zero point is folded into the bias).
//! * [`qdwconv_nhwc`]: depthwise convolution (channel multiplier 1, any kernel
//!   size ≤ 9×9): `acc[c] = bias[c] - izp·Σ_t w[t][c] + Σ_t x_t · w[t][c]` with
//!   out-of-bounds taps reading a row of input zero points (XNNPACK's zero buffer). AVX2 kernel:
//!   16 channels per step, two taps interleaved per `vpmaddwd`.
//! * [`qmaxpool_nhwc`] (int8 max pooling then the clamp, AVX2 byte max) and
//!   [`nchw_to_nhwc_u8`] (the network input's byte transpose), parallel over rows.

use crate::isa::{avx512_vnni, isa, Isa};
use crate::pool::{num_threads, parallel_for};
use crate::qgemm::{qconv_taps, qgemm, qgemm_src, qval, requantize, ASrc, PackedQs8, QOut};
use crate::util::SyncPtr;

/// Geometry of a 2-D NHWC convolution window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QConvGeom {
    /// Batch, input height, width, channels (all groups).
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_c: usize,
    /// Output height and width.
    pub out_h: usize,
    pub out_w: usize,
    /// Kernel size.
    pub kh: usize,
    pub kw: usize,
    /// Strides and dilations (≥ 1).
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    /// Top/left padding (bottom/right padding is implied by the output size).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl QConvGeom {
    /// Input row/column of output `(oy, ox)` and tap `(ky, kx)`, if in bounds.
    #[inline(always)]
    pub(crate) fn src(&self, oy: usize, ox: usize, ky: usize, kx: usize) -> Option<(usize, usize)> {
        let iy = (oy * self.sh + ky * self.dh).checked_sub(self.pad_top)?;
        let ix = (ox * self.sw + kx * self.dw).checked_sub(self.pad_left)?;
        (iy < self.in_h && ix < self.in_w).then_some((iy, ix))
    }

    /// The output pixel after `(n, oy, ox)` in NHWC order.
    #[inline(always)]
    pub(crate) fn next_pixel(&self, n: usize, oy: usize, ox: usize) -> (usize, usize, usize) {
        if ox + 1 < self.out_w {
            (n, oy, ox + 1)
        } else if oy + 1 < self.out_h {
            (n, oy + 1, 0)
        } else {
            (n + 1, 0, 0)
        }
    }

    /// Whether the convolution is a plain GEMM on the activation.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1
            && self.kw == 1
            && self.sh == 1
            && self.sw == 1
            && self.pad_top == 0
            && self.pad_left == 0
            && self.out_h == self.in_h
            && self.out_w == self.in_w
    }

    pub(crate) fn input_len(&self) -> usize {
        self.batch * self.in_h * self.in_w * self.in_c
    }

    fn out_pixels(&self) -> usize {
        self.batch * self.out_h * self.out_w
    }
}

/// Splits `rows` into at most `4 × threads` contiguous ranges (one when small).
fn row_split(rows: usize, work_per_row: usize) -> (usize, usize) {
    let threads = num_threads();
    let tasks = if threads <= 1 || rows * work_per_row < 32 * 1024 {
        1
    } else {
        (threads * 4).min(rows)
    }
    .max(1);
    let per = rows.div_ceil(tasks).max(1);
    (rows.div_ceil(per), per)
}

/// NHWC int8 im2col of channels `c0..c0+cg`: one row of `kh·kw·cg` bytes per
/// output pixel; out-of-bounds taps are filled with `pad` (the input zero point).
pub fn im2col_q8(g: &QConvGeom, input: &[u8], c0: usize, cg: usize, pad: u8, out: &mut [u8]) {
    let k = g.kh * g.kw * cg;
    let rows = g.out_pixels();
    assert!(input.len() >= g.input_len(), "im2col_q8: input too short");
    assert!(out.len() >= rows * k, "im2col_q8: output too short");
    assert!(c0 + cg <= g.in_c, "im2col_q8: channels");
    if rows == 0 || k == 0 {
        return;
    }
    let (tasks, per) = row_split(rows, k);
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        let (r0, r1) = (t * per, ((t + 1) * per).min(rows));
        // SAFETY: rows r0..r1 of `out` (asserted in bounds above) belong to this
        // task only.
        let dst_all =
            unsafe { core::slice::from_raw_parts_mut(op.get().add(r0 * k), (r1 - r0) * k) };
        for (row, dst) in (r0..r1).zip(dst_all.chunks_exact_mut(k)) {
            let n = row / (g.out_h * g.out_w);
            let oy = (row / g.out_w) % g.out_h;
            let ox = row % g.out_w;
            let mut o = 0;
            for ky in 0..g.kh {
                for kx in 0..g.kw {
                    let d = &mut dst[o..o + cg];
                    match g.src(oy, ox, ky, kx) {
                        Some((iy, ix)) => {
                            let s = ((n * g.in_h + iy) * g.in_w + ix) * g.in_c + c0;
                            d.copy_from_slice(&input[s..s + cg]);
                        }
                        None => d.fill(pad),
                    }
                    o += cg;
                }
            }
        }
    });
}

/// Runs `f(row0, rows)` over contiguous ranges of `rows` rows of `row_bytes`
/// output bytes each, handing each range its own slice of `out` (parallel when
/// the output is large enough).
fn par_rows(rows: usize, row_bytes: usize, out: &mut [u8], f: impl Fn(usize, &mut [u8]) + Sync) {
    assert!(out.len() >= rows * row_bytes, "par_rows: output too short");
    if rows == 0 || row_bytes == 0 {
        return;
    }
    let (tasks, per) = row_split(rows, row_bytes);
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        let (r0, r1) = (t * per, ((t + 1) * per).min(rows));
        // SAFETY: rows r0..r1 of `out` (in bounds: asserted above) belong to this
        // task only.
        let dst = unsafe {
            core::slice::from_raw_parts_mut(op.get().add(r0 * row_bytes), (r1 - r0) * row_bytes)
        };
        f(r0, dst);
    });
}

/// NHWC int8 max pooling over the window of `g` (`in_c` channels, `in_c` out;
/// taps in the padding never win), then the clamp of `q`; parallel over output rows.
///
/// # Panics
/// If `x` or `out` is too short.
pub fn qmaxpool_nhwc(g: &QConvGeom, x: &[u8], q: QOut, out: &mut [u8]) {
    let c = g.in_c;
    assert!(x.len() >= g.input_len(), "qmaxpool: input too short");
    // Work in an order-preserving unsigned domain: signed bytes flip the sign bit.
    let flip: u8 = if q.unsigned { 0 } else { 0x80 };
    let (lo, hi) = ((q.min as u8) ^ flip, (q.max as u8) ^ flip);
    const MAX_TAPS: usize = 81;
    assert!(g.kh * g.kw <= MAX_TAPS, "qmaxpool: window too large");
    par_rows(g.batch * g.out_h, g.out_w * c, out, |r0, dst| {
        let mut taps: [&[u8]; MAX_TAPS] = [&[]; MAX_TAPS];
        let mut rowbase = [0usize; MAX_TAPS];
        for (orow, drow) in (r0..).zip(dst.chunks_exact_mut(g.out_w * c)) {
            let (n, oy) = (orow / g.out_h, orow % g.out_h);
            // First pixel of each in-bounds input row of the window.
            let mut nrows = 0;
            for ky in 0..g.kh {
                if let Some(iy) = (oy * g.sh + ky * g.dh).checked_sub(g.pad_top) {
                    if iy < g.in_h {
                        rowbase[nrows] = (n * g.in_h + iy) * g.in_w;
                        nrows += 1;
                    }
                }
            }
            for (ox, d) in drow.chunks_exact_mut(c).enumerate() {
                let mut nt = 0;
                for kx in 0..g.kw {
                    let Some(ix) = (ox * g.sw + kx * g.dw).checked_sub(g.pad_left) else {
                        continue;
                    };
                    if ix >= g.in_w {
                        continue;
                    }
                    for &rb in &rowbase[..nrows] {
                        let at = (rb + ix) * c;
                        taps[nt] = &x[at..at + c];
                        nt += 1;
                    }
                }
                max_taps(&taps[..nt], flip, lo, hi, d);
            }
        }
    });
}

/// `d[i] = clamp(max(0, max_t taps[t][i] ^ flip), lo, hi) ^ flip` (every tap
/// holds `d.len()` bytes).
#[inline]
fn max_taps(taps: &[&[u8]], flip: u8, lo: u8, hi: u8, d: &mut [u8]) {
    let c = d.len();
    assert!(taps.iter().all(|t| t.len() == c));
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if isa() >= Isa::Avx2Fma {
        // SAFETY: AVX2 was detected (isa()); every tap holds d.len() bytes (asserted).
        done = unsafe { max_taps_avx2(taps, flip, lo, hi, d) };
    }
    for i in done..c {
        let m = taps.iter().fold(0u8, |m, t| m.max(t[i] ^ flip));
        d[i] = m.clamp(lo, hi) ^ flip;
    }
}

/// [`max_taps`] on whole 32-byte blocks; returns how many bytes were written.
///
/// # Safety
/// AVX2 must be available; every tap holds at least `d.len()` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_taps_avx2(taps: &[&[u8]], flip: u8, lo: u8, hi: u8, d: &mut [u8]) -> usize {
    use core::arch::x86_64::*;
    let n = d.len() / 32 * 32;
    let vf = _mm256_set1_epi8(flip as i8);
    let (vlo, vhi) = (_mm256_set1_epi8(lo as i8), _mm256_set1_epi8(hi as i8));
    let mut c0 = 0;
    while c0 < n {
        let mut m = _mm256_setzero_si256();
        for t in taps {
            let v = _mm256_loadu_si256(t.as_ptr().add(c0) as *const __m256i);
            m = _mm256_max_epu8(m, _mm256_xor_si256(v, vf));
        }
        let m = _mm256_min_epu8(_mm256_max_epu8(m, vlo), vhi);
        _mm256_storeu_si256(
            d.as_mut_ptr().add(c0) as *mut __m256i,
            _mm256_xor_si256(m, vf),
        );
        c0 += 32;
    }
    n
}

/// Byte matrix transpose of `batch` matrices: `out[b][c][r] = x[b][r][c]` for
/// `rows × cols` matrices (NHWC → NCHW: rows = H·W, cols = C; NCHW → NHWC: rows =
/// C, cols = H·W); 16×16 blocks (SSE2 unpacks on the AVX2 tier), parallel over
/// blocks of 16 rows.
///
/// # Panics
/// If `x` or `out` is too short.
pub fn transpose_u8(x: &[u8], batch: usize, rows: usize, cols: usize, out: &mut [u8]) {
    const T: usize = 16;
    let len = batch * rows * cols;
    assert!(x.len() >= len, "transpose_u8: input too short");
    assert!(out.len() >= len, "transpose_u8: output too short");
    if len == 0 {
        return;
    }
    let rb = rows.div_ceil(T);
    let (tasks, per) = row_split(batch * rb, T * cols);
    let simd = isa() >= Isa::Avx2Fma && cfg!(target_arch = "x86_64");
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        for blk in t * per..((t + 1) * per).min(batch * rb) {
            let (b, r0) = (blk / rb, (blk % rb) * T);
            let nr = (rows - r0).min(T);
            let base = b * rows * cols;
            let mut c0 = 0;
            #[cfg(target_arch = "x86_64")]
            if simd && nr == T {
                while c0 + T <= cols {
                    let s = &x[base + r0 * cols + c0..base + (r0 + T - 1) * cols + c0 + T];
                    // SAFETY: AVX2 (and so SSE2) was detected (isa()); `s` holds the
                    // 16 input rows of 16 bytes at stride `cols`; the destination is
                    // out[base + (c0 + j)·rows + r0 ..][..16] for j < 16, inside
                    // `out` (len asserted), and rows r0..r0+16 of this matrix are
                    // written by this task only.
                    unsafe {
                        sse::t16(s.as_ptr(), cols, op.get().add(base + c0 * rows + r0), rows)
                    };
                    c0 += T;
                }
            }
            let _ = simd;
            for c in c0..cols {
                for r in r0..r0 + nr {
                    // SAFETY: the index is < base + rows·cols ≤ len ≤ out.len(); row
                    // r of this matrix belongs to this task only.
                    unsafe { *op.get().add(base + c * rows + r) = x[base + r * cols + c] };
                }
            }
        }
    });
}

#[cfg(target_arch = "x86_64")]
mod sse {
    use core::arch::x86_64::*;

    /// Transposes a 16×16 byte block (source rows at stride `lds`, destination rows
    /// at stride `ldd`) with four rounds of unpacks (8, 16, 32, 64 bits).
    ///
    /// # Safety
    /// AVX2 must be available (SSE2 is used); 16 rows of 16 readable bytes at
    /// `src + i·lds` and writable at `dst + j·ldd`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn t16(src: *const u8, lds: usize, dst: *mut u8, ldd: usize) {
        let mut r = [_mm_setzero_si128(); 16];
        for (i, ri) in r.iter_mut().enumerate() {
            *ri = _mm_loadu_si128(src.add(i * lds) as *const __m128i);
        }
        // Words: (row pair 2i, column j) for j < 8 (lo) and j ≥ 8 (hi).
        let mut t = [_mm_setzero_si128(); 16];
        for i in 0..8 {
            t[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
        }
        // u[4k + m], dword j: rows 4k..4k+4 of column 4m + j.
        let mut u = [_mm_setzero_si128(); 16];
        for k in 0..4 {
            let (a, b, c, d) = (t[4 * k], t[4 * k + 2], t[4 * k + 1], t[4 * k + 3]);
            u[4 * k] = _mm_unpacklo_epi16(a, b);
            u[4 * k + 1] = _mm_unpackhi_epi16(a, b);
            u[4 * k + 2] = _mm_unpacklo_epi16(c, d);
            u[4 * k + 3] = _mm_unpackhi_epi16(c, d);
        }
        for m in 0..4 {
            // Rows 0..8 (v) and 8..16 (w) of columns 4m, 4m+1 (lo) and 4m+2, 4m+3 (hi).
            let vl = _mm_unpacklo_epi32(u[m], u[4 + m]);
            let vh = _mm_unpackhi_epi32(u[m], u[4 + m]);
            let wl = _mm_unpacklo_epi32(u[8 + m], u[12 + m]);
            let wh = _mm_unpackhi_epi32(u[8 + m], u[12 + m]);
            let o = [
                _mm_unpacklo_epi64(vl, wl),
                _mm_unpackhi_epi64(vl, wl),
                _mm_unpacklo_epi64(vh, wh),
                _mm_unpackhi_epi64(vh, wh),
            ];
            for (j, oj) in o.iter().enumerate() {
                _mm_storeu_si128(dst.add((4 * m + j) * ldd) as *mut __m128i, *oj);
            }
        }
    }
}

/// Byte NCHW → NHWC transpose of `batch` images of `c` planes of `hw` pixels,
/// parallel over pixel rows of the output.
///
/// # Panics
/// If `x` or `out` is too short.
pub fn nchw_to_nhwc_u8(x: &[u8], batch: usize, c: usize, hw: usize, out: &mut [u8]) {
    assert!(
        x.len() >= batch * c * hw,
        "nchw_to_nhwc_u8: input too short"
    );
    if c >= 16 {
        transpose_u8(x, batch, c, hw, out);
        return;
    }
    // Rows of 64 pixels (or fewer in the last of each image).
    const PX: usize = 64;
    let per_img = hw.div_ceil(PX);
    let rows = batch * per_img;
    if c == 0 || hw == 0 {
        return;
    }
    assert!(
        out.len() >= batch * hw * c,
        "nchw_to_nhwc_u8: output too short"
    );
    let (tasks, per) = row_split(rows, PX * c);
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        for r in t * per..((t + 1) * per).min(rows) {
            let (n, p0) = (r / per_img, (r % per_img) * PX);
            let np = (hw - p0).min(PX);
            // SAFETY: pixels p0..p0+np of image n (in bounds: asserted above) are
            // written by this row only.
            let d =
                unsafe { core::slice::from_raw_parts_mut(op.get().add((n * hw + p0) * c), np * c) };
            if c == 3 {
                // The RGB input: three bytes per pixel gathered from the planes.
                let s0 = &x[(n * c) * hw + p0..][..np];
                let s1 = &x[(n * c + 1) * hw + p0..][..np];
                let s2 = &x[(n * c + 2) * hw + p0..][..np];
                for (i, px) in d.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&[s0[i], s1[i], s2[i]]);
                }
                continue;
            }
            for ch in 0..c {
                let s = &x[(n * c + ch) * hw + p0..][..np];
                for (px, &v) in d.chunks_exact_mut(c).zip(s) {
                    px[ch] = v;
                }
            }
        }
    });
}

/// Dense or grouped int8 convolution: `packed[gi]` holds group `gi`'s filter
/// (`group_out` columns of `kh·kw·(in_c/groups)`), its bias and scales; `out` is
/// NHWC with `groups · group_out` channels; `pad` is the input zero point as a
/// byte. The im2col rows are built while packing GEMM panels (no scratch).
pub fn qconv2d_nhwc(g: &QConvGeom, input: &[u8], packed: &[PackedQs8], pad: u8, out: &mut [u8]) {
    let groups = packed.len();
    if groups == 0 {
        return;
    }
    let cg = g.in_c / groups;
    let og = packed[0].n();
    let cout = og * groups;
    let m = g.out_pixels();
    if m == 0 || cout == 0 {
        return;
    }
    assert!(out.len() >= m * cout, "qconv2d_nhwc: output too short");
    assert!(
        input.len() >= g.input_len(),
        "qconv2d_nhwc: input too short"
    );
    assert!(cg * groups == g.in_c, "qconv2d_nhwc: channels");
    if g.is_pointwise() && groups == 1 {
        qgemm(m, input, g.in_c, &packed[0], out, cout);
        return;
    }
    if groups == 1 && qconv_taps(g, input, &packed[0], pad, out) {
        return;
    }
    for (gi, pk) in packed.iter().enumerate() {
        assert_eq!(pk.k(), g.kh * g.kw * cg, "qconv2d_nhwc: filter size");
        let src = ASrc::Conv {
            g,
            x: input,
            c0: gi * cg,
            cg,
            pad,
        };
        qgemm_src(m, src, pk, &mut out[gi * og..], cout);
    }
}

/// Channels per AVX2 depthwise step.
const DWC: usize = 16;

/// Pre-packed depthwise filter (`[taps][c]` int8), bias with the input zero point
/// folded in (`bias[c] - izp · Σ_t w[t][c]`), scales, output quantization and a
/// row of input zero points that stands in for out-of-bounds taps.
#[derive(Clone, Debug)]
pub struct PackedQDw {
    taps: usize,
    c: usize,
    a_unsigned: bool,
    out: QOut,
    /// `[taps][c]` as given (scalar path and channel tail).
    w: Vec<i8>,
    /// Folded bias and scale per channel.
    bias: Vec<i32>,
    scale: Vec<f32>,
    /// `c` copies of the input zero point byte.
    zrow: Vec<u8>,
    /// AVX2 layout (16-channel blocks).
    v16: DwLanes,
    /// AVX-512 layout (32-channel blocks; empty unless the CPU has AVX-512).
    v32: DwLanes,
}

/// Weights, bias and scales of whole `W`-channel blocks in the lane order of the
/// `vpunpck{l,h}wd` depthwise kernels: vector 0 holds channels 0-3, 8-11, 16-19, …
/// of a block, vector 1 channels 4-7, 12-15, …; each lane holds a pair of taps.
#[derive(Clone, Debug, Default)]
struct DwLanes {
    /// Per block and tap pair: `2·W` i16 (vector 0, then vector 1).
    wv: Vec<i16>,
    /// Per block: bias and scale in lane order (`W` each).
    bv: Vec<i32>,
    sv: Vec<f32>,
}

impl DwLanes {
    fn new(width: usize, taps: usize, c: usize, w: &[i8], bias: &[i32], scale: &[f32]) -> Self {
        let blocks = c / width;
        let pairs = taps.div_ceil(2);
        let mut wv = vec![0i16; blocks * pairs * 2 * width];
        let mut bv = vec![0i32; blocks * width];
        let mut sv = vec![0f32; blocks * width];
        let half = width / 2;
        for b in 0..blocks {
            for lane in 0..width {
                let (v, i) = (lane / half, lane % half);
                let cc = b * width + 8 * (i / 4) + 4 * v + i % 4;
                bv[b * width + lane] = bias[cc];
                sv[b * width + lane] = scale[cc];
                for p in 0..pairs {
                    let base = (b * pairs + p) * 2 * width + lane * 2;
                    wv[base] = w[(2 * p) * c + cc] as i16;
                    if 2 * p + 1 < taps {
                        wv[base + 1] = w[(2 * p + 1) * c + cc] as i16;
                    }
                }
            }
        }
        DwLanes { wv, bv, sv }
    }

    fn bytes(&self) -> usize {
        self.wv.len() * 2 + self.bv.len() * 8
    }
}

impl PackedQDw {
    /// Packs a `[taps][c]` int8 filter (zero point 0), optional int32 bias, the
    /// input zero point, per-channel (or one) requantization scales and the output
    /// quantization.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        taps: usize,
        c: usize,
        w: &[i8],
        bias: Option<&[i32]>,
        input_zero_point: i32,
        a_unsigned: bool,
        scales: &[f32],
        out: QOut,
    ) -> Self {
        assert!(w.len() >= taps * c, "weights too short");
        assert!(scales.len() == c || scales.len() == 1, "scale count");
        let bias: Vec<i32> = (0..c)
            .map(|j| {
                let ksum = (0..taps).fold(0i32, |s, t| s.wrapping_add(w[t * c + j] as i32));
                bias.map_or(0, |b| b[j])
                    .wrapping_sub(ksum.wrapping_mul(input_zero_point))
            })
            .collect();
        let scale: Vec<f32> = (0..c)
            .map(|j| {
                if scales.len() == 1 {
                    scales[0]
                } else {
                    scales[j]
                }
            })
            .collect();
        let v16 = DwLanes::new(DWC, taps, c, w, &bias, &scale);
        let v32 = if crate::isa::vnni_detected() {
            DwLanes::new(2 * DWC, taps, c, w, &bias, &scale)
        } else {
            DwLanes::default()
        };
        PackedQDw {
            taps,
            c,
            a_unsigned,
            out,
            w: w[..taps * c].to_vec(),
            bias,
            scale,
            zrow: vec![input_zero_point as u8; c],
            v16,
            v32,
        }
    }

    /// Output quantization.
    pub fn out(&self) -> QOut {
        self.out
    }

    /// Replaces the output quantization (e.g. to fuse a following clamp).
    pub fn set_out(&mut self, out: QOut) {
        self.out = out;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.w.len() + self.zrow.len() + self.bias.len() * 8 + self.v16.bytes() + self.v32.bytes()
    }
}

/// Most taps per pixel (kernels up to 9×9).
const MAX_TAPS: usize = 81;

/// Channels `c0..` of `npix` output pixels, scalar: pixel `i` reads tap `t` at
/// `rows[t][i * step..]` and writes `dst[i * c..]`.
fn dw_pixels_scalar(
    pk: &PackedQDw,
    rows: &[&[u8]],
    step: usize,
    npix: usize,
    c0: usize,
    dst: &mut [u8],
) {
    let c = pk.c;
    for (i, d) in dst.chunks_exact_mut(c).take(npix).enumerate() {
        for ch in c0..c {
            let mut acc = pk.bias[ch];
            for (t, r) in rows.iter().enumerate() {
                let x = qval(r[i * step + ch], pk.a_unsigned);
                acc = acc.wrapping_add(x * pk.w[t * c + ch] as i32);
            }
            d[ch] = requantize(acc, pk.scale[ch], pk.out);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{PackedQDw, DWC, MAX_TAPS};
    use core::arch::x86_64::*;

    /// `qs8_qc8w_dwconv_16c__avx2`: the whole 16-channel blocks from block `b0` on
    /// of `npix` output pixels (pixel `i` reads tap `t` at `rows[t][i * step..]`,
    /// writes `dst[i·c..]`).
    ///
    /// # Safety
    /// AVX2 must be available; `rows.len() == pk.taps ≤ MAX_TAPS`, every row holds at
    /// least `(npix - 1) · step + pk.c` bytes and `dst` at least `npix · pk.c`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn pixels(
        pk: &PackedQDw,
        rows: &[&[u8]],
        step: usize,
        npix: usize,
        b0: usize,
        dst: &mut [u8],
    ) {
        if pk.a_unsigned {
            pixels_u::<true>(pk, rows, step, npix, b0, dst)
        } else {
            pixels_u::<false>(pk, rows, step, npix, b0, dst)
        }
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn pixels_u<const U: bool>(
        pk: &PackedQDw,
        rows: &[&[u8]],
        step: usize,
        npix: usize,
        b0: usize,
        dst: &mut [u8],
    ) {
        let c = pk.c;
        let blocks = c / DWC;
        let taps = pk.taps;
        let pairs = taps.div_ceil(2);
        let mut ptrs = [core::ptr::null::<u8>(); MAX_TAPS];
        for (p, r) in ptrs.iter_mut().zip(rows) {
            *p = r.as_ptr();
        }
        let (lo, hi) = pk.out.fbounds();
        let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
        let vzp = _mm256_set1_epi32(pk.out.zero_point);
        macro_rules! ld {
            ($p:expr) => {{
                let v = _mm_loadu_si128($p as *const __m128i);
                if U {
                    _mm256_cvtepu8_epi16(v)
                } else {
                    _mm256_cvtepi8_epi16(v)
                }
            }};
        }
        let z = _mm256_setzero_si256();
        for i in 0..npix {
            let off = i * step;
            let d = dst.as_mut_ptr().add(i * c);
            for b in b0..blocks {
                let c0 = b * DWC;
                let at = off + c0;
                let mut acc0 = _mm256_loadu_si256(pk.v16.bv.as_ptr().add(c0) as *const __m256i);
                let mut acc1 = _mm256_loadu_si256(pk.v16.bv.as_ptr().add(c0 + 8) as *const __m256i);
                let wb = pk.v16.wv.as_ptr().add(b * pairs * 32);
                for p in 0..pairs {
                    let x0 = ld!(ptrs[2 * p].add(at));
                    let x1 = if 2 * p + 1 < taps {
                        ld!(ptrs[2 * p + 1].add(at))
                    } else {
                        z
                    };
                    let w0 = _mm256_loadu_si256(wb.add(p * 32) as *const __m256i);
                    let w1 = _mm256_loadu_si256(wb.add(p * 32 + 16) as *const __m256i);
                    // |x · w| ≤ 255 · 128: each pair sum fits i32 exactly.
                    acc0 = _mm256_add_epi32(
                        acc0,
                        _mm256_madd_epi16(_mm256_unpacklo_epi16(x0, x1), w0),
                    );
                    acc1 = _mm256_add_epi32(
                        acc1,
                        _mm256_madd_epi16(_mm256_unpackhi_epi16(x0, x1), w1),
                    );
                }
                let s0 = _mm256_loadu_ps(pk.v16.sv.as_ptr().add(c0));
                let s1 = _mm256_loadu_ps(pk.v16.sv.as_ptr().add(c0 + 8));
                let f0 = _mm256_min_ps(
                    _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc0), s0), vlo),
                    vhi,
                );
                let f1 = _mm256_min_ps(
                    _mm256_max_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc1), s1), vlo),
                    vhi,
                );
                let i0 = _mm256_add_epi32(_mm256_cvtps_epi32(f0), vzp);
                let i1 = _mm256_add_epi32(_mm256_cvtps_epi32(f1), vzp);
                // packs: lane 0 = channels 0-3 (i0), 4-7 (i1); lane 1 = 8-11, 12-15.
                let p16 = _mm256_packs_epi32(i0, i1);
                let (l, h) = (
                    _mm256_castsi256_si128(p16),
                    _mm256_extracti128_si256(p16, 1),
                );
                let bytes = if pk.out.unsigned {
                    _mm_packus_epi16(l, h)
                } else {
                    _mm_packs_epi16(l, h)
                };
                _mm_storeu_si128(d.add(c0) as *mut __m128i, bytes);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{PackedQDw, DWC, MAX_TAPS};
    use core::arch::x86_64::*;

    /// Channels per AVX-512 block.
    const W: usize = 2 * DWC;

    /// `qs8_qc8w_dwconv_32c__avx512bw`: all whole 32-channel blocks of `npix`
    /// output pixels (pixel `i` reads tap `t` at `rows[t][i * step..]`, writes
    /// `dst[i·c..]`); returns how many channels it covered.
    ///
    /// # Safety
    /// AVX-512 F/BW must be available and `pk.v32` packed; `rows.len() == pk.taps ≤
    /// MAX_TAPS`, every row holds at least `(npix - 1) · step + pk.c` bytes and
    /// `dst` at least `npix · pk.c`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pixels(
        pk: &PackedQDw,
        rows: &[&[u8]],
        step: usize,
        npix: usize,
        dst: &mut [u8],
    ) -> usize {
        if pk.a_unsigned {
            pixels_u::<true>(pk, rows, step, npix, dst)
        } else {
            pixels_u::<false>(pk, rows, step, npix, dst)
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn pixels_u<const U: bool>(
        pk: &PackedQDw,
        rows: &[&[u8]],
        step: usize,
        npix: usize,
        dst: &mut [u8],
    ) -> usize {
        let c = pk.c;
        let blocks = c / W;
        let taps = pk.taps;
        let pairs = taps.div_ceil(2);
        let v = &pk.v32;
        let mut ptrs = [core::ptr::null::<u8>(); MAX_TAPS];
        for (p, r) in ptrs.iter_mut().zip(rows) {
            *p = r.as_ptr();
        }
        let (lo, hi) = pk.out.fbounds();
        let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
        let vzp = _mm512_set1_epi32(pk.out.zero_point);
        macro_rules! ld {
            ($p:expr) => {{
                let x = _mm256_loadu_si256($p as *const __m256i);
                if U {
                    _mm512_cvtepu8_epi16(x)
                } else {
                    _mm512_cvtepi8_epi16(x)
                }
            }};
        }
        let z = _mm512_setzero_si512();
        for i in 0..npix {
            let off = i * step;
            let d = dst.as_mut_ptr().add(i * c);
            for b in 0..blocks {
                let c0 = b * W;
                let at = off + c0;
                let mut acc0 = _mm512_loadu_si512(v.bv.as_ptr().add(c0) as *const _);
                let mut acc1 = _mm512_loadu_si512(v.bv.as_ptr().add(c0 + DWC) as *const _);
                let wb = v.wv.as_ptr().add(b * pairs * 2 * W);
                for p in 0..pairs {
                    let x0 = ld!(ptrs[2 * p].add(at));
                    let x1 = if 2 * p + 1 < taps {
                        ld!(ptrs[2 * p + 1].add(at))
                    } else {
                        z
                    };
                    let w0 = _mm512_loadu_si512(wb.add(p * 2 * W) as *const _);
                    let w1 = _mm512_loadu_si512(wb.add(p * 2 * W + W) as *const _);
                    // |x · w| ≤ 255 · 128: each pair sum fits i32 exactly.
                    acc0 = _mm512_add_epi32(
                        acc0,
                        _mm512_madd_epi16(_mm512_unpacklo_epi16(x0, x1), w0),
                    );
                    acc1 = _mm512_add_epi32(
                        acc1,
                        _mm512_madd_epi16(_mm512_unpackhi_epi16(x0, x1), w1),
                    );
                }
                let s0 = _mm512_loadu_ps(v.sv.as_ptr().add(c0));
                let s1 = _mm512_loadu_ps(v.sv.as_ptr().add(c0 + DWC));
                let f0 = _mm512_min_ps(
                    _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc0), s0), vlo),
                    vhi,
                );
                let f1 = _mm512_min_ps(
                    _mm512_max_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc1), s1), vlo),
                    vhi,
                );
                let i0 = _mm512_add_epi32(_mm512_cvtps_epi32(f0), vzp);
                let i1 = _mm512_add_epi32(_mm512_cvtps_epi32(f1), vzp);
                // Per 128-bit lane L: channels 8L..8L+3 (i0) then 8L+4..8L+7 (i1),
                // so the packed words are in channel order; values are within
                // [-128, 255], so packing and truncating to bytes are exact.
                let p16 = _mm512_packs_epi32(i0, i1);
                _mm256_storeu_si256(d.add(c0) as *mut __m256i, _mm512_cvtepi16_epi8(p16));
            }
        }
        blocks * W
    }
}

/// Depthwise int8 convolution (multiplier 1): NHWC `input` with `pk.c ==
/// g.in_c` channels, `[taps][c]` filter with `taps == g.kh · g.kw` (at most 81);
/// `out` is NHWC. Output columns whose taps are all in bounds run as one strided
/// sweep per row; border pixels read a row of input zero points for missing taps.
///
/// # Panics
/// On inconsistent sizes.
pub fn qdwconv_nhwc(g: &QConvGeom, input: &[u8], pk: &PackedQDw, out: &mut [u8]) {
    let c = pk.c;
    assert_eq!(g.in_c, c, "qdwconv_nhwc: channels");
    assert_eq!(g.kh * g.kw, pk.taps, "qdwconv_nhwc: taps");
    assert!(pk.taps <= MAX_TAPS, "qdwconv_nhwc: kernel too large");
    assert!(
        input.len() >= g.input_len(),
        "qdwconv_nhwc: input too short"
    );
    let rows = g.batch * g.out_h;
    assert!(
        out.len() >= rows * g.out_w * c,
        "qdwconv_nhwc: output too short"
    );
    if rows == 0 || g.out_w == 0 || c == 0 {
        return;
    }
    let use_avx2 = isa() >= Isa::Avx2Fma && cfg!(target_arch = "x86_64") && c >= DWC;
    let use_avx512 = use_avx2 && avx512_vnni() && !pk.v32.wv.is_empty();
    // Output columns `x_lo..x_hi` have every horizontal tap in bounds.
    let x_lo = g.pad_left.div_ceil(g.sw).min(g.out_w);
    let x_hi = match (g.in_w + g.pad_left).checked_sub((g.kw - 1) * g.dw + 1) {
        Some(last) => (last / g.sw + 1).min(g.out_w),
        None => 0,
    }
    .max(x_lo);
    let (tasks, per) = row_split(rows, g.out_w * c * pk.taps);
    let op = SyncPtr(out.as_mut_ptr());
    let row_len = g.out_w * c;
    let zrow: &[u8] = &pk.zrow;
    let run = |taps: &[&[u8]], step: usize, npix: usize, dst: &mut [u8]| {
        let mut done = 0;
        #[cfg(target_arch = "x86_64")]
        if use_avx512 {
            // SAFETY: AVX-512 F/BW detected (avx512_vnni()) and `v32` packed (its
            // detection); `taps` has pk.taps ≤ MAX_TAPS rows, each holding
            // (npix - 1)·step + c bytes, and `dst` holds npix·c bytes (callers).
            done = unsafe { avx512::pixels(pk, taps, step, npix, dst) };
        }
        #[cfg(target_arch = "x86_64")]
        if use_avx2 && done + DWC <= c {
            // SAFETY: AVX2 detected; same buffers as above; blocks from done/DWC on.
            unsafe { avx2::pixels(pk, taps, step, npix, done / DWC, dst) };
            done = c / DWC * DWC;
        }
        let _ = (use_avx2, use_avx512);
        if done < c {
            dw_pixels_scalar(pk, taps, step, npix, done, dst);
        }
    };
    parallel_for(tasks, |t| {
        let (r0, r1) = (t * per, ((t + 1) * per).min(rows));
        // SAFETY: output rows r0..r1 (in bounds, asserted above) belong to this task.
        let dst_all = unsafe {
            core::slice::from_raw_parts_mut(op.get().add(r0 * row_len), (r1 - r0) * row_len)
        };
        let mut taps: [&[u8]; MAX_TAPS] = [zrow; MAX_TAPS];
        let taps = &mut taps[..pk.taps];
        for (row, drow) in (r0..r1).zip(dst_all.chunks_exact_mut(row_len)) {
            let (n, oy) = (row / g.out_h, row % g.out_h);
            let rows_in = (0..g.kh).all(|ky| g.src(oy, x_lo, ky, 0).is_some());
            let mut ox = 0;
            while ox < g.out_w {
                if ox == x_lo && rows_in && x_hi > x_lo {
                    // Interior sweep: tap t of pixel ox + i sits i·sw·c bytes on.
                    let npix = x_hi - x_lo;
                    let step = g.sw * c;
                    let span = (npix - 1) * step + c;
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (iy, ix) = g.src(oy, x_lo, ky, kx).expect("interior tap");
                            let o = ((n * g.in_h + iy) * g.in_w + ix) * c;
                            taps[ky * g.kw + kx] = &input[o..o + span];
                        }
                    }
                    run(taps, step, npix, &mut drow[x_lo * c..x_hi * c]);
                    ox = x_hi;
                    continue;
                }
                for ky in 0..g.kh {
                    for kx in 0..g.kw {
                        taps[ky * g.kw + kx] = match g.src(oy, ox, ky, kx) {
                            Some((iy, ix)) => {
                                let o = ((n * g.in_h + iy) * g.in_w + ix) * c;
                                &input[o..o + c]
                            }
                            None => zrow,
                        };
                    }
                }
                run(taps, 0, 1, &mut drow[ox * c..(ox + 1) * c]);
                ox += 1;
            }
        }
    });
}
