//! `f32` batched matrix transpose: the layout changes NCHW ↔ NHWC of the XNNPACK
//! delegate (`out[b][c][r] = x[b][r][c]`).
//!
//! Kernels: `f32_transpose_8x8__avx2` (8×8 blocks in registers: unpacks, shuffles,
//! 128-bit lane swaps) and `f32_interleave3_8__avx2` for matrices of 3 rows (an RGB
//! image's planes interleaved into pixels: one lane permutation per source, then
//! blends). Ragged edges and the scalar tier copy element by element in 8×8 blocks.
//! Large matrices are cut into strips of rows or of columns (whichever has more
//! 8-wide blocks) run in parallel.

use crate::pool::{num_threads, parallel_for};
use crate::util::SyncPtr;
use crate::{isa, Isa};

/// Block edge of the SIMD kernels.
const T: usize = 8;
/// Below this many elements a transpose runs on the calling thread.
const PAR_MIN: usize = 32 * 1024;

/// Transposes `batch` row-major `rows × cols` matrices: `out[b][c][r] = x[b][r][c]`
/// (NHWC → NCHW: rows = H·W, cols = C; NCHW → NHWC: rows = C, cols = H·W).
///
/// # Panics
/// If `x` or `out` is shorter than `batch * rows * cols`.
pub fn transpose_f32(x: &[f32], batch: usize, rows: usize, cols: usize, out: &mut [f32]) {
    let len = batch * rows * cols;
    assert!(x.len() >= len, "transpose_f32: input too short");
    assert!(out.len() >= len, "transpose_f32: output too short");
    if len == 0 {
        return;
    }
    if rows == 1 || cols == 1 {
        out[..len].copy_from_slice(&x[..len]);
        return;
    }
    let simd = isa() >= Isa::Avx2Fma && cfg!(target_arch = "x86_64");
    // Strips along the dimension with more 8-wide blocks.
    let by_rows = rows >= cols;
    let blocks = if by_rows { rows } else { cols }.div_ceil(T);
    let tasks = if num_threads() <= 1 || len < PAR_MIN {
        1
    } else {
        (num_threads() * 4).min(batch * blocks)
    };
    let per = (batch * blocks).div_ceil(tasks);
    let tasks = (batch * blocks).div_ceil(per);
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        let (s0, s1) = (t * per, ((t + 1) * per).min(batch * blocks));
        let mut s = s0;
        while s < s1 {
            // This task's strips of one matrix: blocks q0..q1 of matrix b.
            let (b, q0) = (s / blocks, s % blocks);
            let q1 = (q0 + s1 - s).min(blocks);
            s += q1 - q0;
            let (r, c) = if by_rows {
                ((q0 * T, (q1 * T).min(rows)), (0, cols))
            } else {
                ((0, rows), (q0 * T, (q1 * T).min(cols)))
            };
            let mat = Mat {
                m: &x[b * rows * cols..(b + 1) * rows * cols],
                rows,
                cols,
                // In bounds: b < batch, and `out` holds batch·rows·cols floats.
                o: op.get().wrapping_add(b * rows * cols),
                simd,
            };
            // SAFETY: the output matrix b (rows·cols floats from b·rows·cols, inside
            // `out`, length asserted) is written only at the columns (rows of the
            // input) r and rows (columns of the input) c of this task's strips,
            // which no other task writes. `simd` implies AVX2 was detected.
            unsafe { mat.sub(r, c) };
        }
    });
}

/// One matrix of a [`transpose_f32`] call: `m` (`rows × cols`) into `o`
/// (`cols × rows`), with the AVX2 kernels when `simd`.
struct Mat<'a> {
    m: &'a [f32],
    rows: usize,
    cols: usize,
    o: *mut f32,
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    simd: bool,
}

/// Edge of a tile of [`Mat::sub`].
const TILE: usize = 16;

impl Mat<'_> {
    /// Transposes the sub-rectangle rows `r0..r1` × columns `c0..c1`.
    ///
    /// # Safety
    /// `o` is valid for writes of `rows * cols` floats and no other thread accesses
    /// the destination of this rectangle; `simd` only when AVX2 is available.
    unsafe fn sub(&self, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) {
        #[cfg(target_arch = "x86_64")]
        if self.simd && self.rows == 3 {
            let mut c = c0;
            while c + T <= c1 {
                // SAFETY: AVX2 (simd); columns c..c+8 of the 3 rows are inside `m`
                // (c + 8 <= c1 <= cols); the destination o[c*3..c*3+24] lies inside
                // the output and belongs to this rectangle.
                unsafe {
                    x86::f32_interleave3_8__avx2(
                        self.m.as_ptr().add(c),
                        self.cols,
                        self.o.add(c * 3),
                    )
                };
                c += T;
            }
            // SAFETY: per this function's contract.
            unsafe { self.scalar((r0, r1), (c, c1)) };
            return;
        }
        // Tiles of TILE × TILE floats (2×2 blocks): small enough that the tile's
        // output rows stay in L1 even when the row pitch is a multiple of 1 KiB (a
        // 12544×96 matrix: 64×64 tiles ran 1.5x slower, set conflicts).
        for tr in (r0..r1).step_by(TILE) {
            for tc in (c0..c1).step_by(TILE) {
                let (tr1, tc1) = ((tr + TILE).min(r1), (tc + TILE).min(c1));
                // SAFETY: a sub-rectangle of this function's rectangle.
                unsafe { self.tile((tr, tr1), (tc, tc1)) };
            }
        }
    }

    /// One tile of [`Mat::sub`]: 8×8 blocks (SIMD when `simd`), ragged edges element
    /// by element.
    ///
    /// # Safety
    /// As for [`Mat::sub`].
    unsafe fn tile(&self, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) {
        let (rows, cols) = (self.rows, self.cols);
        let mut r = r0;
        while r + T <= r1 {
            let mut c = c0;
            #[cfg(target_arch = "x86_64")]
            if self.simd {
                while c + T <= c1 {
                    // SAFETY: AVX2 (simd); rows r..r+8, columns c..c+8 are inside `m`;
                    // the destination rows c..c+8 (stride `rows`), columns r..r+8 lie
                    // inside the output and belong to this rectangle.
                    unsafe {
                        x86::f32_transpose_8x8__avx2(
                            self.m.as_ptr().add(r * cols + c),
                            cols,
                            self.o.add(c * rows + r),
                            rows,
                        )
                    };
                    c += T;
                }
            }
            // SAFETY: per this function's contract.
            unsafe { self.scalar((r, r + T), (c, c1)) };
            r += T;
        }
        // SAFETY: per this function's contract.
        unsafe { self.scalar((r, r1), (c0, c1)) };
    }

    /// Element-by-element transpose of a rectangle in 8×8 blocks.
    ///
    /// # Safety
    /// As for [`Mat::sub`].
    unsafe fn scalar(&self, (r0, r1): (usize, usize), (c0, c1): (usize, usize)) {
        for rb in (r0..r1).step_by(T) {
            for cb in (c0..c1).step_by(T) {
                for c in cb..(cb + T).min(c1) {
                    for r in rb..(rb + T).min(r1) {
                        // SAFETY: c < cols, r < rows: inside the output (contract).
                        unsafe { *self.o.add(c * self.rows + r) = self.m[r * self.cols + c] };
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
mod x86 {
    use std::arch::x86_64::*;

    /// Transposes an 8×8 block (source rows at stride `lds`, destination rows at
    /// stride `ldd`).
    ///
    /// # Safety
    /// AVX2 available; 8 rows of 8 readable floats at `src + i·lds`, writable at
    /// `dst + j·ldd`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f32_transpose_8x8__avx2(
        src: *const f32,
        lds: usize,
        dst: *mut f32,
        ldd: usize,
    ) {
        // SAFETY: reads and writes per the contract.
        unsafe {
            let mut r = [_mm256_setzero_ps(); 8];
            for (i, ri) in r.iter_mut().enumerate() {
                *ri = _mm256_loadu_ps(src.add(i * lds));
            }
            // t[2i], t[2i+1]: rows 2i, 2i+1 interleaved (columns 0,1,4,5 / 2,3,6,7).
            let mut t = [_mm256_setzero_ps(); 8];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            // s[4h + j]: rows 4h..4h+4 of column j (low lane) and j + 4 (high lane).
            let mut s = [_mm256_setzero_ps(); 8];
            for h in 0..2 {
                let (lo, hi) = (t[4 * h], t[4 * h + 1]);
                let (lo2, hi2) = (t[4 * h + 2], t[4 * h + 3]);
                s[4 * h] = _mm256_shuffle_ps::<0x44>(lo, lo2);
                s[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(lo, lo2);
                s[4 * h + 2] = _mm256_shuffle_ps::<0x44>(hi, hi2);
                s[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(hi, hi2);
            }
            for j in 0..4 {
                let a = _mm256_permute2f128_ps::<0x20>(s[j], s[4 + j]);
                let b = _mm256_permute2f128_ps::<0x31>(s[j], s[4 + j]);
                _mm256_storeu_ps(dst.add(j * ldd), a);
                _mm256_storeu_ps(dst.add((j + 4) * ldd), b);
            }
        }
    }

    /// Interleaves 8 columns of 3 rows (`src`, `src + lds`, `src + 2·lds`) into 8
    /// triples at `dst` (24 floats): output float `g` is row `g % 3`, column `g / 3`.
    ///
    /// # Safety
    /// AVX2 available; 8 readable floats at `src + i·lds` for i < 3, 24 writable at
    /// `dst`.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f32_interleave3_8__avx2(src: *const f32, lds: usize, dst: *mut f32) {
        // SAFETY: reads and writes per the contract.
        unsafe {
            let a = _mm256_loadu_ps(src);
            let b = _mm256_loadu_ps(src.add(lds));
            let c = _mm256_loadu_ps(src.add(2 * lds));
            // Output vector k, lane l holds column (8k + l) / 3 of row (8k + l) % 3:
            // every source is permuted by the same index, the row picks the source.
            let idx = |k: i32| {
                _mm256_setr_epi32(
                    (8 * k) / 3,
                    (8 * k + 1) / 3,
                    (8 * k + 2) / 3,
                    (8 * k + 3) / 3,
                    (8 * k + 4) / 3,
                    (8 * k + 5) / 3,
                    (8 * k + 6) / 3,
                    (8 * k + 7) / 3,
                )
            };
            let pick = |i: __m256i| {
                (
                    _mm256_permutevar8x32_ps(a, i),
                    _mm256_permutevar8x32_ps(b, i),
                    _mm256_permutevar8x32_ps(c, i),
                )
            };
            // Lane masks of rows 1 and 2 (bit l set when (8k + l) % 3 is that row).
            let (pa, pb, pc) = pick(idx(0));
            let o0 = _mm256_blend_ps::<0x24>(_mm256_blend_ps::<0x92>(pa, pb), pc);
            let (pa, pb, pc) = pick(idx(1));
            let o1 = _mm256_blend_ps::<0x49>(_mm256_blend_ps::<0x24>(pa, pb), pc);
            let (pa, pb, pc) = pick(idx(2));
            let o2 = _mm256_blend_ps::<0x92>(_mm256_blend_ps::<0x49>(pa, pb), pc);
            _mm256_storeu_ps(dst, o0);
            _mm256_storeu_ps(dst.add(8), o1);
            _mm256_storeu_ps(dst.add(16), o2);
        }
    }
}
