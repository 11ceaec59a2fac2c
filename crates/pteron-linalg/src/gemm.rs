//! Blocked single-precision GEMM: panel packing, register-tiled microkernels,
//! cache blocking over k, and parallelisation over (problem, m-block, n-block) tiles.
//!
//! Terminology: a packed *panel* stores a matrix as "lanes × depth" where lanes are
//! the rows of A (or columns of B) and depth is the k dimension. Lanes are grouped
//! in *slivers* of `r` lanes (MR for A, NR for B); inside a k-block of `kc` steps a
//! sliver is stored depth-major: `dst[p * r + lane]`, zero-padded past the edge.

use crate::conv::Im2colView;
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch, F32Buf, SyncPtr};
use crate::{isa, Activation, Isa};
use std::sync::Mutex;

/// Depth of one k-block (cache blocking for the packed B sliver in L1 / A block in L2).
pub(crate) const KC: usize = 256;
/// Longest strided A row gathered on the stack by the m == 1 paths.
const GATHER_STACK: usize = 4096;

/// The single row of A (m == 1) as a contiguous slice: `a` itself, or, when A is
/// stored transposed with a stride, gathered into `stack` (into `heap` only for rows
/// longer than [`GATHER_STACK`]), so steady-state calls never allocate.
fn a_row<'s>(
    a: &'s [f32],
    k: usize,
    lda: usize,
    a_trans: bool,
    stack: &'s mut [f32; GATHER_STACK],
    heap: &'s mut Vec<f32>,
) -> &'s [f32] {
    if !a_trans || lda == 1 {
        return &a[..k];
    }
    if k <= GATHER_STACK {
        for (p, v) in stack[..k].iter_mut().enumerate() {
            *v = a[p * lda];
        }
        &stack[..k]
    } else {
        heap.extend((0..k).map(|p| a[p * lda]));
        heap
    }
}

/// Register-tile microkernel family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kern {
    Scalar4x4,
    Avx2Fma6x16,
}

impl Kern {
    pub(crate) fn for_isa(i: Isa) -> Kern {
        match i {
            Isa::Scalar => Kern::Scalar4x4,
            Isa::Avx2Fma => Kern::Avx2Fma6x16,
        }
    }
    pub(crate) fn current() -> Kern {
        Kern::for_isa(isa())
    }
    pub(crate) fn mr(self) -> usize {
        match self {
            Kern::Scalar4x4 => 4,
            Kern::Avx2Fma6x16 => 6,
        }
    }
    pub(crate) fn nr(self) -> usize {
        match self {
            Kern::Scalar4x4 => 4,
            Kern::Avx2Fma6x16 => 16,
        }
    }
    /// Default m-block in slivers.
    fn mc_sl(self) -> usize {
        match self {
            Kern::Scalar4x4 => 24,
            Kern::Avx2Fma6x16 => 16,
        }
    }
    /// Default n-block in slivers.
    fn nc_sl(self) -> usize {
        match self {
            Kern::Scalar4x4 => 32,
            Kern::Avx2Fma6x16 => 16,
        }
    }
    fn func(self) -> KernFn {
        match self {
            Kern::Scalar4x4 => f32_gemm_4x4__scalar,
            #[cfg(target_arch = "x86_64")]
            Kern::Avx2Fma6x16 => x86::f32_gemm_6x16__avx2_fma,
            #[cfg(not(target_arch = "x86_64"))]
            Kern::Avx2Fma6x16 => unreachable!("AVX2 kernel selected on a non-x86 target"),
        }
    }
}

/// `(number of k-blocks, block length)`; always at least one block (possibly empty).
pub(crate) fn k_blocks(k: usize) -> (usize, usize) {
    if k == 0 {
        return (1, 0);
    }
    let nb = div_ceil(k, KC);
    (nb, div_ceil(k, nb))
}

/// Pack one sliver: `dst[p*r + l] = src[base + l*ls + p*ps]` for `l < lanes`, zero for
/// `lanes <= l < r`, `p < kc`.
#[allow(clippy::too_many_arguments)]
fn pack_panel(
    src: &[f32],
    base: usize,
    ls: usize,
    ps: usize,
    lanes: usize,
    r: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let dst = &mut dst[..kc * r];
    if ls == 1 {
        for p in 0..kc {
            let s = base + p * ps;
            let d = &mut dst[p * r..p * r + r];
            d[..lanes].copy_from_slice(&src[s..s + lanes]);
            d[lanes..].fill(0.0);
        }
    } else if ps == 1 {
        if lanes < r {
            dst.fill(0.0);
        }
        for l in 0..lanes {
            let s = base + l * ls;
            let row = &src[s..s + kc];
            for (p, &v) in row.iter().enumerate() {
                dst[p * r + l] = v;
            }
        }
    } else {
        for p in 0..kc {
            let d = &mut dst[p * r..p * r + r];
            for (l, dv) in d.iter_mut().enumerate() {
                *dv = if l < lanes {
                    src[base + l * ls + p * ps]
                } else {
                    0.0
                };
            }
        }
    }
}

/// Pack `lanes` lanes (several slivers) of one k-block.
#[allow(clippy::too_many_arguments)]
fn pack_block(
    src: &[f32],
    base: usize,
    ls: usize,
    ps: usize,
    lanes: usize,
    r: usize,
    kc: usize,
    dst: &mut [f32],
) {
    let nsl = div_ceil(lanes, r);
    for s in 0..nsl {
        let l = (lanes - s * r).min(r);
        pack_panel(
            src,
            base + s * r * ls,
            ls,
            ps,
            l,
            r,
            kc,
            &mut dst[s * kc * r..],
        );
    }
}

/// A fully packed operand (all k-blocks, all slivers).
pub(crate) struct Panels {
    pub(crate) kern: Kern,
    r: usize,
    lanes: usize,
    depth: usize,
    lanes_pad: usize,
    buf: F32Buf,
}

impl Panels {
    /// Pack the lanes×depth matrix whose element (l, p) is `data[l*ls + p*ps]`.
    pub(crate) fn pack(
        kern: Kern,
        r: usize,
        lanes: usize,
        depth: usize,
        data: &[f32],
        ls: usize,
        ps: usize,
    ) -> Panels {
        let lanes_pad = div_ceil(lanes, r) * r;
        let mut buf = F32Buf::zeroed(lanes_pad * depth);
        if lanes > 0 {
            let (nkb, kcmax) = k_blocks(depth);
            let out = &mut buf[..];
            for kb in 0..nkb {
                let p0 = kb * kcmax;
                let kc = kcmax.min(depth - p0);
                pack_block(
                    data,
                    p0 * ps,
                    ls,
                    ps,
                    lanes,
                    r,
                    kc,
                    &mut out[p0 * lanes_pad..],
                );
            }
        }
        Panels {
            kern,
            r,
            lanes,
            depth,
            lanes_pad,
            buf,
        }
    }

    /// Packed data of k-block starting at `p0` (length `kc`) from sliver containing `lane0`.
    fn block(&self, p0: usize, kc: usize, lane0: usize) -> &[f32] {
        self.view().block(p0, kc, lane0)
    }

    pub(crate) fn view(&self) -> PanelView<'_> {
        PanelView {
            r: self.r,
            lanes_pad: self.lanes_pad,
            data: &self.buf,
        }
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buf.bytes()
    }
}

/// Borrowed packed panels (same layout as [`Panels`]).
#[derive(Clone, Copy)]
pub(crate) struct PanelView<'a> {
    r: usize,
    lanes_pad: usize,
    data: &'a [f32],
}

impl<'a> PanelView<'a> {
    fn block(&self, p0: usize, kc: usize, lane0: usize) -> &'a [f32] {
        &self.data[p0 * self.lanes_pad + (lane0 / self.r) * kc * self.r..]
    }
}

/// Persistent buffer for B operands packed once per call (shared by all tiles).
static SHARED_B: Mutex<Option<F32Buf>> = Mutex::new(None);
/// Largest shared packed B (floats) worth keeping around.
const SHARED_B_MAX: usize = 1 << 25;

/// Source of a GEMM operand, viewed as lanes × depth.
#[derive(Clone, Copy)]
pub(crate) enum Src<'a> {
    /// Element (lane, depth) at `data[lane*ls + depth*ps]`.
    Strided {
        data: &'a [f32],
        ls: usize,
        ps: usize,
    },
    /// Pre-packed with the matching sliver width.
    Packed(PanelView<'a>),
    /// Implicit im2col matrix of a convolution input (B operand only).
    Im2col(Im2colView<'a>),
}

/// One GEMM problem of a (possibly batched) launch.
pub(crate) struct Prob<'a> {
    pub(crate) a: Src<'a>,
    pub(crate) b: Src<'a>,
    pub(crate) c: SyncPtr,
    pub(crate) ldc: usize,
    pub(crate) alpha: f32,
    pub(crate) beta: f32,
    pub(crate) bias: Bias<'a>,
    pub(crate) act: Activation,
}

/// Per-tile epilogue description passed to microkernels.
pub(crate) struct TileEpi {
    alpha: f32,
    /// Multiplier for existing C (only used when `load_c`).
    cscale: f32,
    load_c: bool,
    bias_col: *const f32,
    bias_row: *const f32,
    apply_act: bool,
    lo: f32,
    hi: f32,
}

/// `(lo, hi)` clamp bounds of an activation, or None when it is the identity.
pub(crate) fn act_bounds(act: Activation) -> Option<(f32, f32)> {
    match act {
        Activation::None => None,
        Activation::Relu => Some((0.0, f32::INFINITY)),
        Activation::Relu6 => Some((0.0, 6.0)),
        Activation::Clamp { min, max } => Some((min, max)),
    }
}

/// Scalar clamp with NaN propagation (matches the SIMD `max(lo, v)` / `min(hi, v)`).
#[inline(always)]
pub(crate) fn clamp_nan(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

type KernFn = unsafe fn(usize, *const f32, *const f32, *mut f32, usize, usize, usize, &TileEpi);

/// Store an accumulator tile (`acc[i*accs + j]`) into C applying the epilogue.
///
/// # Safety
/// `c` must be valid for writes (and reads when `e.load_c`) at `c[i*ldc + j]` for
/// `i < mr, j < nr`; bias pointers, when non-null, valid for `nr` / `mr` reads.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn store_tile_scalar(
    acc: &[f32],
    accs: usize,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    e: &TileEpi,
) {
    for i in 0..mr {
        for j in 0..nr {
            // SAFETY: in bounds per the function contract.
            unsafe {
                let cp = c.add(i * ldc + j);
                let mut v = acc[i * accs + j] * e.alpha;
                if e.load_c {
                    v += e.cscale * *cp;
                }
                if !e.bias_col.is_null() {
                    v += *e.bias_col.add(j);
                }
                if !e.bias_row.is_null() {
                    v += *e.bias_row.add(i);
                }
                if e.apply_act {
                    v = clamp_nan(v, e.lo, e.hi);
                }
                *cp = v;
            }
        }
    }
}

/// Portable 4×4 register-tile microkernel.
///
/// # Safety
/// `a` holds `kc*4` packed floats, `b` holds `kc*4`; C/bias as in `store_tile_scalar`.
#[allow(non_snake_case, clippy::too_many_arguments)]
unsafe fn f32_gemm_4x4__scalar(
    kc: usize,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    e: &TileEpi,
) {
    // SAFETY: caller guarantees kc*4 readable floats behind a and b.
    let (a, b) = unsafe {
        (
            std::slice::from_raw_parts(a, kc * 4),
            std::slice::from_raw_parts(b, kc * 4),
        )
    };
    let mut acc = [0.0f32; 16];
    for (ap, bp) in a.chunks_exact(4).zip(b.chunks_exact(4)) {
        for i in 0..4 {
            for j in 0..4 {
                acc[i * 4 + j] += ap[i] * bp[j];
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile_scalar(&acc, 4, c, ldc, mr, nr, e) };
}

#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
pub(crate) mod x86 {
    use super::TileEpi;
    use std::arch::x86_64::*;

    /// `MASK[8 - n ..][..8]` has `n` leading all-ones lanes.
    pub(crate) static MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

    /// Lane mask with the first `n` (0..=8) lanes set.
    ///
    /// # Safety
    /// Requires AVX2; `n <= 8`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn tail_mask(n: usize) -> __m256i {
        debug_assert!(n <= 8);
        // SAFETY: 8 - n in 0..=8 so the 8-lane read stays inside MASK.
        unsafe { _mm256_loadu_si256(MASK.as_ptr().add(8 - n) as *const __m256i) }
    }

    /// 6×16 AVX2/FMA register-tile microkernel (12 accumulators).
    ///
    /// # Safety
    /// CPU supports AVX2+FMA; `a` holds `kc*6` packed floats, `b` holds `kc*16`;
    /// `c` valid for `mr` (≤6) rows × `nr` (≤16) columns with row stride `ldc`
    /// (read too when `e.load_c`); bias pointers valid when non-null.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(crate) unsafe fn f32_gemm_6x16__avx2_fma(
        kc: usize,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        e: &TileEpi,
    ) {
        let mut c00 = _mm256_setzero_ps();
        let mut c01 = _mm256_setzero_ps();
        let mut c10 = _mm256_setzero_ps();
        let mut c11 = _mm256_setzero_ps();
        let mut c20 = _mm256_setzero_ps();
        let mut c21 = _mm256_setzero_ps();
        let mut c30 = _mm256_setzero_ps();
        let mut c31 = _mm256_setzero_ps();
        let mut c40 = _mm256_setzero_ps();
        let mut c41 = _mm256_setzero_ps();
        let mut c50 = _mm256_setzero_ps();
        let mut c51 = _mm256_setzero_ps();
        let mut ap = a;
        let mut bp = b;
        for _ in 0..kc {
            // SAFETY: p < kc so ap..ap+6 and bp..bp+16 are inside the packed slivers.
            unsafe {
                let b0 = _mm256_loadu_ps(bp);
                let b1 = _mm256_loadu_ps(bp.add(8));
                let a0 = _mm256_broadcast_ss(&*ap);
                c00 = _mm256_fmadd_ps(a0, b0, c00);
                c01 = _mm256_fmadd_ps(a0, b1, c01);
                let a1 = _mm256_broadcast_ss(&*ap.add(1));
                c10 = _mm256_fmadd_ps(a1, b0, c10);
                c11 = _mm256_fmadd_ps(a1, b1, c11);
                let a2 = _mm256_broadcast_ss(&*ap.add(2));
                c20 = _mm256_fmadd_ps(a2, b0, c20);
                c21 = _mm256_fmadd_ps(a2, b1, c21);
                let a3 = _mm256_broadcast_ss(&*ap.add(3));
                c30 = _mm256_fmadd_ps(a3, b0, c30);
                c31 = _mm256_fmadd_ps(a3, b1, c31);
                let a4 = _mm256_broadcast_ss(&*ap.add(4));
                c40 = _mm256_fmadd_ps(a4, b0, c40);
                c41 = _mm256_fmadd_ps(a4, b1, c41);
                let a5 = _mm256_broadcast_ss(&*ap.add(5));
                c50 = _mm256_fmadd_ps(a5, b0, c50);
                c51 = _mm256_fmadd_ps(a5, b1, c51);
                ap = ap.add(6);
                bp = bp.add(16);
            }
        }
        let acc = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
        // SAFETY: forwarded contract.
        unsafe { store_tile_avx2(&acc, c, ldc, mr, nr, e) };
    }

    /// Vector epilogue for a ≤6×16 tile held as `acc[2*i + half]`.
    ///
    /// # Safety
    /// As for `f32_gemm_6x16__avx2_fma`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn store_tile_avx2(
        acc: &[__m256; 12],
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        e: &TileEpi,
    ) {
        let alpha = _mm256_set1_ps(e.alpha);
        let cs = _mm256_set1_ps(e.cscale);
        let lo = _mm256_set1_ps(e.lo);
        let hi = _mm256_set1_ps(e.hi);
        let scale = e.alpha != 1.0;
        for i in 0..mr.min(6) {
            // SAFETY: all pointer offsets below are within the mr×nr tile / bias
            // ranges guaranteed by the caller; partial vectors use masked accesses.
            unsafe {
                let crow = c.add(i * ldc);
                let brow = if e.bias_row.is_null() {
                    None
                } else {
                    Some(_mm256_set1_ps(*e.bias_row.add(i)))
                };
                for h in 0..2 {
                    let j0 = h * 8;
                    if j0 >= nr {
                        break;
                    }
                    let rem = nr - j0;
                    let mut v = acc[2 * i + h];
                    if scale {
                        v = _mm256_mul_ps(v, alpha);
                    }
                    if rem >= 8 {
                        if e.load_c {
                            v = _mm256_fmadd_ps(cs, _mm256_loadu_ps(crow.add(j0)), v);
                        }
                        if !e.bias_col.is_null() {
                            v = _mm256_add_ps(v, _mm256_loadu_ps(e.bias_col.add(j0)));
                        }
                        if let Some(br) = brow {
                            v = _mm256_add_ps(v, br);
                        }
                        if e.apply_act {
                            v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
                        }
                        _mm256_storeu_ps(crow.add(j0), v);
                    } else {
                        let m = tail_mask(rem);
                        if e.load_c {
                            v = _mm256_fmadd_ps(cs, _mm256_maskload_ps(crow.add(j0), m), v);
                        }
                        if !e.bias_col.is_null() {
                            v = _mm256_add_ps(v, _mm256_maskload_ps(e.bias_col.add(j0), m));
                        }
                        if let Some(br) = brow {
                            v = _mm256_add_ps(v, br);
                        }
                        if e.apply_act {
                            v = _mm256_min_ps(hi, _mm256_max_ps(lo, v));
                        }
                        _mm256_maskstore_ps(crow.add(j0), m, v);
                    }
                }
            }
        }
    }

    /// `out[j] = Σ_p x[p] * b[p*ldb + j]` for `j < n` (row-major B, gemv).
    ///
    /// # Safety
    /// AVX2+FMA; `b` valid for `(k-1)*ldb + n` reads, `out` for `n` writes.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn gemv_rows(
        x: &[f32],
        b: *const f32,
        ldb: usize,
        n: usize,
        out: &mut [f32],
    ) {
        let mut j = 0;
        while j < n {
            let w = (n - j).min(32);
            let nv = div8(w);
            let mut acc = [_mm256_setzero_ps(); 4];
            let last_mask = tail_mask(w - (nv - 1) * 8);
            for (p, &xv) in x.iter().enumerate() {
                let xb = _mm256_set1_ps(xv);
                // SAFETY: row p, columns j..j+w are inside B.
                unsafe {
                    let row = b.add(p * ldb + j);
                    for (v, a) in acc.iter_mut().enumerate().take(nv) {
                        let bv = if v + 1 == nv {
                            _mm256_maskload_ps(row.add(v * 8), last_mask)
                        } else {
                            _mm256_loadu_ps(row.add(v * 8))
                        };
                        *a = _mm256_fmadd_ps(xb, bv, *a);
                    }
                }
            }
            let mut tmp = [0.0f32; 32];
            for (v, a) in acc.iter().enumerate().take(nv) {
                // SAFETY: tmp has 32 floats, v < 4.
                unsafe { _mm256_storeu_ps(tmp.as_mut_ptr().add(v * 8), *a) };
            }
            out[j..j + w].copy_from_slice(&tmp[..w]);
            j += w;
        }
    }

    #[inline(always)]
    fn div8(w: usize) -> usize {
        w.div_ceil(8)
    }

    /// Dot product of two equal-length slices.
    ///
    /// # Safety
    /// AVX2+FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn dot(x: &[f32], y: &[f32]) -> f32 {
        let n = x.len().min(y.len());
        let mut a0 = _mm256_setzero_ps();
        let mut a1 = _mm256_setzero_ps();
        let mut a2 = _mm256_setzero_ps();
        let mut a3 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads 8 floats starting below n - 7 (or masked).
        unsafe {
            let xp = x.as_ptr();
            let yp = y.as_ptr();
            while i + 32 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(xp.add(i + 8)),
                    _mm256_loadu_ps(yp.add(i + 8)),
                    a1,
                );
                a2 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(xp.add(i + 16)),
                    _mm256_loadu_ps(yp.add(i + 16)),
                    a2,
                );
                a3 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(xp.add(i + 24)),
                    _mm256_loadu_ps(yp.add(i + 24)),
                    a3,
                );
                i += 32;
            }
            while i + 8 <= n {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(yp.add(i)), a0);
                i += 8;
            }
            if i < n {
                let m = tail_mask(n - i);
                a1 = _mm256_fmadd_ps(
                    _mm256_maskload_ps(xp.add(i), m),
                    _mm256_maskload_ps(yp.add(i), m),
                    a1,
                );
            }
        }
        hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)))
    }

    /// Horizontal sum of 8 lanes.
    ///
    /// # Safety
    /// AVX2 available.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(crate) unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 0x55));
        _mm_cvtss_f32(s)
    }

    /// m == 1 against a packed B with 16-lane slivers: `out[l] = Σ_p x[p]*panel[p*16+l]`.
    ///
    /// # Safety
    /// AVX2+FMA; `panel` holds `x.len()*16` floats.
    #[target_feature(enable = "avx2,fma")]
    pub(crate) unsafe fn gemv_sliver16(x: &[f32], panel: *const f32, out: &mut [f32; 16]) {
        let mut a0 = _mm256_loadu_ps(out.as_ptr());
        let mut a1 = _mm256_loadu_ps(out.as_ptr().add(8));
        let mut b0 = _mm256_setzero_ps();
        let mut b1 = _mm256_setzero_ps();
        let kc = x.len();
        let mut p = 0;
        // SAFETY: p+1 < kc inside the paired loop, p < kc in the tail.
        unsafe {
            while p + 2 <= kc {
                let x0 = _mm256_set1_ps(*x.get_unchecked(p));
                let x1 = _mm256_set1_ps(*x.get_unchecked(p + 1));
                let q = panel.add(p * 16);
                a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q), a0);
                a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q.add(8)), a1);
                b0 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q.add(16)), b0);
                b1 = _mm256_fmadd_ps(x1, _mm256_loadu_ps(q.add(24)), b1);
                p += 2;
            }
            if p < kc {
                let x0 = _mm256_set1_ps(*x.get_unchecked(p));
                let q = panel.add(p * 16);
                a0 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q), a0);
                a1 = _mm256_fmadd_ps(x0, _mm256_loadu_ps(q.add(8)), a1);
            }
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_add_ps(a0, b0));
            _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_add_ps(a1, b1));
        }
    }
}

/// Epilogue for a single output element (gemv paths).
#[inline(always)]
fn finish_elem(
    acc: f32,
    old: f32,
    alpha: f32,
    beta: f32,
    bias: f32,
    bounds: Option<(f32, f32)>,
) -> f32 {
    let mut v = acc * alpha;
    if beta != 0.0 {
        v += beta * old;
    }
    v += bias;
    match bounds {
        Some((lo, hi)) => clamp_nan(v, lo, hi),
        None => v,
    }
}

/// Launch `nprob` GEMM problems of identical shape as one parallel dispatch.
///
/// Callers guarantee that every problem's operands and C region are in bounds and
/// that different problems' C regions do not overlap.
pub(crate) fn gemm_multi<'a, G>(kern: Kern, nprob: usize, m: usize, n: usize, k: usize, get: G)
where
    G: Fn(usize) -> Prob<'a> + Sync,
{
    if nprob == 0 || m == 0 || n == 0 {
        return;
    }
    let (mr, nr) = (kern.mr(), kern.nr());
    let m_sl = div_ceil(m, mr);
    let n_sl = div_ceil(n, nr);
    let mut mb = m_sl.min(kern.mc_sl());
    let mut nb = n_sl.min(kern.nc_sl());
    let threads = num_threads();
    let flops = 2.0 * (m as f64) * (n as f64) * (k.max(1) as f64) * nprob as f64;
    let parallel = threads > 1 && flops > 300_000.0;
    if parallel {
        let want = threads * 4;
        loop {
            let tasks = nprob * div_ceil(m_sl, mb) * div_ceil(n_sl, nb);
            if tasks >= want {
                break;
            }
            if nb > 1 && (nb * nr >= mb * mr || mb == 1) {
                nb = div_ceil(nb, 2);
            } else if mb > 1 {
                mb = div_ceil(mb, 2);
            } else {
                break;
            }
        }
    }
    let mblocks = div_ceil(m_sl, mb);
    // When several m-blocks would each re-pack the same B columns, pack B once
    // (in parallel) into a shared buffer and let all tiles read it.
    let b_packed = matches!(get(0).b, Src::Packed(_));
    let n_pad = n_sl * nr;
    let shared_len = nprob * n_pad * k;
    if mblocks > 1 && !b_packed && k > 0 && shared_len <= SHARED_B_MAX {
        if let Ok(mut guard) = SHARED_B.try_lock() {
            let buf = guard.get_or_insert_with(|| F32Buf::zeroed(0));
            buf.reserve(shared_len);
            let data = &mut buf[..shared_len];
            pack_b_shared(kern, nprob, n, k, &get, data, parallel);
            let data: &[f32] = data;
            gemm_tiles(kern, nprob, m, n, k, mb, nb, parallel, |t| {
                let mut p = get(t);
                p.b = Src::Packed(PanelView {
                    r: nr,
                    lanes_pad: n_pad,
                    data: &data[t * n_pad * k..(t + 1) * n_pad * k],
                });
                p
            });
            return;
        }
    }
    gemm_tiles(kern, nprob, m, n, k, mb, nb, parallel, get);
}

/// Run all (problem, m-block, n-block) tiles.
#[allow(clippy::too_many_arguments)]
fn gemm_tiles<'a, G>(
    kern: Kern,
    nprob: usize,
    m: usize,
    n: usize,
    k: usize,
    mb: usize,
    nb: usize,
    parallel: bool,
    get: G,
) where
    G: Fn(usize) -> Prob<'a> + Sync,
{
    let (mr, nr) = (kern.mr(), kern.nr());
    let mblocks = div_ceil(div_ceil(m, mr), mb);
    let nblocks = div_ceil(div_ceil(n, nr), nb);
    let per_prob = mblocks * nblocks;
    let task = |t: usize| {
        let pi = t / per_prob;
        let rem = t % per_prob;
        let nbi = rem / mblocks;
        let mbi = rem % mblocks;
        let i0 = mbi * mb * mr;
        let i1 = (i0 + mb * mr).min(m);
        let j0 = nbi * nb * nr;
        let j1 = (j0 + nb * nr).min(n);
        let prob = get(pi);
        gemm_tile(kern, k, &prob, i0, i1, j0, j1);
    };
    if parallel {
        parallel_for(nprob * per_prob, task);
    } else {
        for t in 0..nprob * per_prob {
            task(t);
        }
    }
}

/// Pack every problem's B operand into `out` (problem t at `t*n_pad*k`, Panels layout).
fn pack_b_shared<'a, G>(
    kern: Kern,
    nprob: usize,
    n: usize,
    k: usize,
    get: &G,
    out: &mut [f32],
    parallel: bool,
) where
    G: Fn(usize) -> Prob<'a> + Sync,
{
    let nr = kern.nr();
    let n_sl = div_ceil(n, nr);
    let n_pad = n_sl * nr;
    let (nkb, kcmax) = k_blocks(k);
    const CHUNK: usize = 8;
    let chunks = div_ceil(n_sl, CHUNK);
    let per_prob = nkb * chunks;
    let op = SyncPtr(out.as_mut_ptr());
    assert!(out.len() >= nprob * n_pad * k);
    let task = |t: usize| {
        let pi = t / per_prob;
        let kb = (t % per_prob) / chunks;
        let ch = t % chunks;
        let p0 = kb * kcmax;
        let kc = kcmax.min(k - p0);
        let s0 = ch * CHUNK;
        let s1 = (s0 + CHUNK).min(n_sl);
        let j0 = s0 * nr;
        let lanes = (s1 * nr).min(n) - j0;
        let off = pi * n_pad * k + p0 * n_pad + s0 * kc * nr;
        // SAFETY: (problem, k-block, sliver chunk) triples map to disjoint ranges
        // [off, off + (s1-s0)*kc*nr) of `out`, all inside its asserted length.
        let dst = unsafe { std::slice::from_raw_parts_mut(op.get().add(off), (s1 - s0) * kc * nr) };
        match get(pi).b {
            Src::Strided { data, ls, ps } => {
                pack_block(data, j0 * ls + p0 * ps, ls, ps, lanes, nr, kc, dst)
            }
            Src::Im2col(v) => v.pack(p0, kc, j0, lanes, nr, dst),
            Src::Packed(_) => unreachable!("already packed"),
        }
    };
    if parallel {
        parallel_for(nprob * per_prob, task);
    } else {
        (0..nprob * per_prob).for_each(task);
    }
}

/// Compute C[i0..i1, j0..j1] of one problem over the full k range.
fn gemm_tile(kern: Kern, k: usize, prob: &Prob<'_>, i0: usize, i1: usize, j0: usize, j1: usize) {
    let (mr, nr) = (kern.mr(), kern.nr());
    let ms = div_ceil(i1 - i0, mr);
    let ns = div_ceil(j1 - j0, nr);
    let (nkb, kcmax) = k_blocks(k);
    let a_need = if matches!(prob.a, Src::Packed(_)) {
        0
    } else {
        ms * mr * kcmax
    };
    let b_need = if matches!(prob.b, Src::Packed(_)) {
        0
    } else {
        ns * nr * kcmax
    };
    let kf = kern.func();
    let bounds = act_bounds(prob.act);
    let (lo, hi) = bounds.unwrap_or((f32::NEG_INFINITY, f32::INFINITY));
    with_scratch(a_need + b_need, |buf| {
        let (abuf, bbuf) = buf.split_at_mut(a_need);
        for kb in 0..nkb {
            let p0 = kb * kcmax;
            let kc = kcmax.min(k - p0);
            let a_pan: &[f32] = match prob.a {
                Src::Packed(p) => {
                    debug_assert_eq!(p.r, mr);
                    p.block(p0, kc, i0)
                }
                Src::Strided { data, ls, ps } => {
                    pack_block(data, i0 * ls + p0 * ps, ls, ps, i1 - i0, mr, kc, abuf);
                    abuf
                }
                Src::Im2col(_) => unreachable!("im2col is only a B source"),
            };
            let b_pan: &[f32] = match prob.b {
                Src::Packed(p) => {
                    debug_assert_eq!(p.r, nr);
                    p.block(p0, kc, j0)
                }
                Src::Strided { data, ls, ps } => {
                    pack_block(data, j0 * ls + p0 * ps, ls, ps, j1 - j0, nr, kc, bbuf);
                    bbuf
                }
                Src::Im2col(v) => {
                    v.pack(p0, kc, j0, j1 - j0, nr, bbuf);
                    bbuf
                }
            };
            assert!(a_pan.len() >= ms * mr * kc && b_pan.len() >= ns * nr * kc);
            let first = kb == 0;
            let mut e = TileEpi {
                alpha: prob.alpha,
                cscale: if first { prob.beta } else { 1.0 },
                load_c: !first || prob.beta != 0.0,
                bias_col: std::ptr::null(),
                bias_row: std::ptr::null(),
                apply_act: kb + 1 == nkb && bounds.is_some(),
                lo,
                hi,
            };
            for js in 0..ns {
                let j = j0 + js * nr;
                let nr_e = nr.min(j1 - j);
                for is in 0..ms {
                    let i = i0 + is * mr;
                    let mr_e = mr.min(i1 - i);
                    if first {
                        match prob.bias {
                            Bias::None => {}
                            Bias::PerColumn(bc) => e.bias_col = bc[j..j + nr_e].as_ptr(),
                            Bias::PerRow(br) => e.bias_row = br[i..i + mr_e].as_ptr(),
                        }
                    }
                    // SAFETY: the packed slivers hold kc*mr / kc*nr floats (asserted
                    // above); the caller of gemm_multi guarantees that C rows i..i+mr_e,
                    // columns j..j+nr_e lie inside this problem's C and that tiles of
                    // different tasks are disjoint; bias slices were range-checked.
                    unsafe {
                        kf(
                            kc,
                            a_pan.as_ptr().add(is * kc * mr),
                            b_pan.as_ptr().add(js * kc * nr),
                            prob.c.0.add(i * prob.ldc + j),
                            prob.ldc,
                            mr_e,
                            nr_e,
                            &e,
                        );
                    }
                }
            }
        }
    });
}

/// Bias added before the activation.
#[derive(Clone, Copy, Debug)]
pub enum Bias<'a> {
    /// No bias.
    None,
    /// `bias[j]` added to every row (length ≥ n).
    PerColumn(&'a [f32]),
    /// `bias[i]` added to every column of row i (length ≥ m).
    PerRow(&'a [f32]),
}

/// Arguments of [`sgemm`]: `C = beta*C + alpha*(A·B) + bias`, then `act`.
///
/// Storage (row-major, strided):
/// * A is m×k: `a[i*lda + p]`, or when `a_trans` the buffer holds Aᵀ: `a[p*lda + i]`.
/// * B is k×n: `b[p*ldb + j]`, or when `b_trans` the buffer holds Bᵀ: `b[j*ldb + p]`.
/// * C is m×n: `c[i*ldc + j]`.
///
/// When `beta == 0` C is never read (it may contain NaN garbage).
pub struct GemmArgs<'a> {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: &'a [f32],
    pub lda: usize,
    pub a_trans: bool,
    pub b: &'a [f32],
    pub ldb: usize,
    pub b_trans: bool,
    pub c: &'a mut [f32],
    pub ldc: usize,
    pub beta: f32,
    pub alpha: f32,
    pub bias: Bias<'a>,
    pub act: Activation,
}

/// Number of elements spanned by a `rows × cols` row-major view with leading dim `ld`.
fn extent(rows: usize, cols: usize, ld: usize) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * ld + cols
    }
}

fn check_bias(bias: &Bias<'_>, m: usize, n: usize) {
    match bias {
        Bias::None => {}
        Bias::PerColumn(b) => assert!(b.len() >= n, "sgemm: PerColumn bias shorter than n"),
        Bias::PerRow(b) => assert!(b.len() >= m, "sgemm: PerRow bias shorter than m"),
    }
}

/// Single GEMM. Equivalent to `sgemm_batched(1, 0, 0, 0, args)`.
///
/// # Panics
/// Only when a slice-length precondition is violated:
/// * A: `a.len() >= (m-1)*lda + k` (or `(k-1)*lda + m` when `a_trans`), if m,k > 0;
/// * B: `b.len() >= (k-1)*ldb + n` (or `(n-1)*ldb + k` when `b_trans`), if k,n > 0;
/// * C: `ldc >= n` when `m > 1`, and `c.len() >= (m-1)*ldc + n`;
/// * bias: `PerColumn` length ≥ n, `PerRow` length ≥ m.
pub fn sgemm(args: GemmArgs<'_>) {
    sgemm_batched(1, 0, 0, 0, args)
}

/// Batched GEMM: for `t in 0..batch`, problem `t` uses `a[t*stride_a..]`,
/// `b[t*stride_b..]`, `c[t*stride_c..]` with the shapes/strides of `args`
/// (bias and activation shared). Batches run in one parallel dispatch.
///
/// # Panics
/// As [`sgemm`] for the last batch's offsets; additionally, when `batch > 1`,
/// `stride_c` must be at least the C extent `(m-1)*ldc + n` (C blocks must not overlap).
pub fn sgemm_batched(
    batch: usize,
    stride_a: usize,
    stride_b: usize,
    stride_c: usize,
    args: GemmArgs<'_>,
) {
    let GemmArgs {
        m,
        n,
        k,
        a,
        lda,
        a_trans,
        b,
        ldb,
        b_trans,
        c,
        ldc,
        beta,
        alpha,
        bias,
        act,
    } = args;
    if batch == 0 || m == 0 || n == 0 {
        return;
    }
    let last = batch - 1;
    if k > 0 {
        let ea = if a_trans {
            extent(k, m, lda)
        } else {
            extent(m, k, lda)
        };
        let eb = if b_trans {
            extent(n, k, ldb)
        } else {
            extent(k, n, ldb)
        };
        assert!(
            last * stride_a + ea <= a.len(),
            "sgemm: A slice too short for m/k/lda"
        );
        assert!(
            last * stride_b + eb <= b.len(),
            "sgemm: B slice too short for k/n/ldb"
        );
    }
    assert!(m == 1 || ldc >= n, "sgemm: ldc < n");
    let ec = extent(m, n, ldc);
    assert!(batch == 1 || stride_c >= ec, "sgemm: overlapping C batches");
    assert!(last * stride_c + ec <= c.len(), "sgemm: C slice too short");
    check_bias(&bias, m, n);

    let kern = Kern::current();
    if batch == 1 && m == 1 && k > 0 && (b_trans || ldb > 0) {
        let mut stack = [0f32; GATHER_STACK];
        let mut heap = Vec::new();
        let xs = a_row(a, k, lda, a_trans, &mut stack, &mut heap);
        let (ls, ps) = if b_trans { (ldb, 1) } else { (1, ldb) };
        gemv(
            kern,
            n,
            k,
            xs,
            b,
            ls,
            ps,
            &mut c[..n],
            alpha,
            beta,
            bias,
            act,
        );
        return;
    }
    let cp = SyncPtr(c.as_mut_ptr());
    let (a_ls, a_ps) = if a_trans { (1, lda) } else { (lda, 1) };
    let (b_ls, b_ps) = if b_trans { (ldb, 1) } else { (1, ldb) };
    gemm_multi(kern, batch, m, n, k, |t| Prob {
        a: Src::Strided {
            data: a.get(t * stride_a..).unwrap_or(&[]),
            ls: a_ls,
            ps: a_ps,
        },
        b: Src::Strided {
            data: b.get(t * stride_b..).unwrap_or(&[]),
            ls: b_ls,
            ps: b_ps,
        },
        // Batches' C blocks are disjoint (asserted above); wrapping_add keeps this
        // pointer arithmetic safe, and it stays in bounds by the length check.
        c: SyncPtr(cp.get().wrapping_add(t * stride_c)),
        ldc,
        alpha,
        beta,
        bias,
        act,
    });
}

/// m == 1 matrix-vector product: `c[j] = beta*c[j] + alpha*Σ_p x[p]·B(p,j) + bias`, act.
/// B element (p, j) is `b[j*ls + p*ps]` with `ls == 1` (row-major) or `ps == 1` (transposed).
#[allow(clippy::too_many_arguments)]
fn gemv(
    kern: Kern,
    n: usize,
    k: usize,
    x: &[f32],
    b: &[f32],
    ls: usize,
    ps: usize,
    c: &mut [f32],
    alpha: f32,
    beta: f32,
    bias: Bias<'_>,
    act: Activation,
) {
    let bounds = act_bounds(act);
    let threads = num_threads();
    let chunk = if threads > 1 && n * k > 64 * 1024 {
        div_ceil(n, threads * 4).max(64).div_ceil(32) * 32
    } else {
        n
    };
    let cp = SyncPtr(c.as_mut_ptr());
    let nchunks = div_ceil(n, chunk);
    parallel_for(nchunks, |t| {
        let j0 = t * chunk;
        let j1 = (j0 + chunk).min(n);
        // SAFETY: chunks [j0, j1) are disjoint per task and inside c[..n].
        let out = unsafe { std::slice::from_raw_parts_mut(cp.get().add(j0), j1 - j0) };
        let mut tmp = [0.0f32; 32];
        let mut j = j0;
        while j < j1 {
            let w = (j1 - j).min(32);
            let acc = &mut tmp[..w];
            let avx = cfg!(target_arch = "x86_64") && kern == Kern::Avx2Fma6x16;
            if ls == 1 {
                if avx {
                    #[cfg(target_arch = "x86_64")]
                    {
                        assert!(b.len() >= (k - 1) * ps + j + w);
                        // SAFETY: AVX2 kernel selected only when detected; the B range
                        // rows 0..k, columns j..j+w was asserted to be in bounds.
                        unsafe { x86::gemv_rows(x, b.as_ptr().add(j), ps, w, acc) };
                    }
                } else {
                    acc.fill(0.0);
                    for (p, &xv) in x.iter().enumerate() {
                        let row = &b[p * ps + j..p * ps + j + w];
                        for (o, &bv) in acc.iter_mut().zip(row) {
                            *o += xv * bv;
                        }
                    }
                }
            } else {
                for (jj, o) in acc.iter_mut().enumerate() {
                    let row = &b[(j + jj) * ls..(j + jj) * ls + k];
                    *o = if avx {
                        #[cfg(target_arch = "x86_64")]
                        {
                            // SAFETY: AVX2+FMA detected (kernel tier chosen from isa()).
                            unsafe { x86::dot(x, row) }
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        {
                            0.0
                        }
                    } else {
                        x.iter().zip(row).map(|(a, b)| a * b).sum()
                    };
                }
            }
            for (jj, &v) in acc.iter().enumerate() {
                let jg = j + jj;
                let bv = match bias {
                    Bias::None => 0.0,
                    Bias::PerColumn(bc) => bc[jg],
                    Bias::PerRow(br) => br[0],
                };
                let o = &mut out[jg - j0];
                *o = finish_elem(v, *o, alpha, beta, bv, bounds);
            }
            j += w;
        }
    });
}

/// A constant B operand (e.g. Linear weights) packed once for [`sgemm_packed`].
///
/// The packing layout depends on the ISA tier active when it was created; it keeps
/// using that tier's kernel afterwards.
pub struct PackedB {
    panels: Panels,
}

impl PackedB {
    /// Pack the k×n matrix B (`b[p*ldb + j]`, or `b[j*ldb + p]` when `b_trans`).
    ///
    /// # Panics
    /// If `b` is shorter than the extent implied by `k`, `n`, `ldb`, `b_trans`.
    pub fn new(k: usize, n: usize, b: &[f32], ldb: usize, b_trans: bool) -> Self {
        let e = if b_trans {
            extent(n, k, ldb)
        } else {
            extent(k, n, ldb)
        };
        assert!(e <= b.len(), "PackedB::new: B slice too short");
        let kern = Kern::current();
        let (ls, ps) = if b_trans { (ldb, 1) } else { (1, ldb) };
        PackedB {
            panels: Panels::pack(kern, kern.nr(), n, k, b, ls, ps),
        }
    }

    /// Bytes of packed storage held.
    pub fn bytes(&self) -> usize {
        self.panels.bytes()
    }

    /// k (depth) of the packed matrix.
    pub fn k(&self) -> usize {
        self.panels.depth
    }

    /// n (columns) of the packed matrix.
    pub fn n(&self) -> usize {
        self.panels.lanes
    }
}

/// `C = A·B + bias`, then `act`, with B pre-packed (`k`, `n` from `packed`).
/// C is not read.
///
/// # Panics
/// On violated slice lengths: A as in [`sgemm`], `ldc >= n` when `m > 1`,
/// `c.len() >= (m-1)*ldc + n`, bias lengths.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(
    m: usize,
    a: &[f32],
    lda: usize,
    a_trans: bool,
    packed: &PackedB,
    c: &mut [f32],
    ldc: usize,
    bias: Bias<'_>,
    act: Activation,
) {
    let p = &packed.panels;
    let (k, n) = (p.depth, p.lanes);
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        let ea = if a_trans {
            extent(k, m, lda)
        } else {
            extent(m, k, lda)
        };
        assert!(ea <= a.len(), "sgemm_packed: A slice too short");
    }
    assert!(m == 1 || ldc >= n, "sgemm_packed: ldc < n");
    assert!(
        extent(m, n, ldc) <= c.len(),
        "sgemm_packed: C slice too short"
    );
    check_bias(&bias, m, n);
    let kern = p.kern;
    if m == 1 && k > 0 {
        let mut stack = [0f32; GATHER_STACK];
        let mut heap = Vec::new();
        let xs = a_row(a, k, lda, a_trans, &mut stack, &mut heap);
        gemv_packed(p, xs, &mut c[..n], bias, act);
        return;
    }
    let cp = SyncPtr(c.as_mut_ptr());
    let (a_ls, a_ps) = if a_trans { (1, lda) } else { (lda, 1) };
    gemm_multi(kern, 1, m, n, k, |_| Prob {
        a: Src::Strided {
            data: a,
            ls: a_ls,
            ps: a_ps,
        },
        b: Src::Packed(p.view()),
        c: cp,
        ldc,
        alpha: 1.0,
        beta: 0.0,
        bias,
        act,
    });
}

/// Slivers whose accumulators one [`gemv_packed`] pass keeps on the stack.
const GEMV_GROUP: usize = 16;

/// `c = x·B + bias`, then `act`, for one row against packed B. Each task takes a run
/// of slivers and walks the k-blocks outermost, so that it reads every k-block's
/// slivers as one sequential stream (the slivers of a k-block are stored
/// contiguously) instead of hopping between k-blocks once per sliver. Each output's
/// sums run over the k-blocks in the same order either way.
fn gemv_packed(p: &Panels, x: &[f32], c: &mut [f32], bias: Bias<'_>, act: Activation) {
    let (r, n, k) = (p.r, p.lanes, p.depth);
    let bounds = act_bounds(act);
    let nsl = div_ceil(n, r);
    let threads = num_threads();
    let per = if threads > 1 && n * k > 64 * 1024 {
        div_ceil(nsl, threads * 4)
    } else {
        nsl
    };
    let ntasks = div_ceil(nsl, per);
    let cp = SyncPtr(c.as_mut_ptr());
    let (nkb, kcmax) = k_blocks(k);
    parallel_for(ntasks, |t| {
        let s_end = ((t + 1) * per).min(nsl);
        let mut g0 = t * per;
        while g0 < s_end {
            let g1 = (g0 + GEMV_GROUP).min(s_end);
            let mut acc = [[0.0f32; 16]; GEMV_GROUP];
            for kb in 0..nkb {
                let p0 = kb * kcmax;
                let kc = kcmax.min(k - p0);
                let xs = &x[p0..p0 + kc];
                for (s, acc) in (g0..g1).zip(acc.iter_mut()) {
                    let pan = &p.block(p0, kc, s * r)[..kc * r];
                    match p.kern {
                        #[cfg(target_arch = "x86_64")]
                        Kern::Avx2Fma6x16 => {
                            // SAFETY: panel has kc*16 floats (sliced above); the AVX2
                            // tier is only ever selected when the CPU supports it.
                            unsafe { x86::gemv_sliver16(xs, pan.as_ptr(), acc) };
                        }
                        _ => {
                            for (q, &xv) in xs.iter().enumerate() {
                                for l in 0..r {
                                    acc[l] += xv * pan[q * r + l];
                                }
                            }
                        }
                    }
                }
            }
            for (s, acc) in (g0..g1).zip(acc.iter()) {
                let j0 = s * r;
                for (l, &v) in acc.iter().enumerate().take(r.min(n - j0)) {
                    let j = j0 + l;
                    let bv = match bias {
                        Bias::None => 0.0,
                        Bias::PerColumn(bc) => bc[j],
                        Bias::PerRow(br) => br[0],
                    };
                    // SAFETY: j < n and slivers are disjoint between tasks.
                    unsafe { *cp.get().add(j) = finish_elem(v, 0.0, 1.0, 0.0, bv, bounds) };
                }
            }
            g0 = g1;
        }
    });
}
