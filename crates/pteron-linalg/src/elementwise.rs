//! Vectorised element-wise `f32` slice kernels (AVX2 with a scalar fallback).
//!
//! Every function writes `out[i] = op(inputs[i])` for all `i`; all slices must
//! have the same length (they panic otherwise). Results are bit-identical across
//! ISA tiers: the vector paths use the same single IEEE operation per element
//! (no FMA contraction). NaN inputs propagate through every kernel, including
//! [`clamp`] and [`relu`]. Long slices are split over the thread pool.

use crate::pool::{num_threads, parallel_for};
use crate::util::SyncPtr;
use crate::{isa, Isa};

/// Elements below which a call never goes parallel.
const PAR_MIN: usize = 1 << 17;
/// Elements per parallel chunk (a multiple of 8).
const PAR_CHUNK: usize = 1 << 15;

#[derive(Clone, Copy)]
enum Bin {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy)]
enum Un {
    AddScalar(f32),
    MulScalar(f32),
    Clamp(f32, f32),
}

#[inline(always)]
fn bin_op(op: Bin, a: f32, b: f32) -> f32 {
    match op {
        Bin::Add => a + b,
        Bin::Sub => a - b,
        Bin::Mul => a * b,
        Bin::Div => a / b,
    }
}

#[inline(always)]
fn un_op(op: Un, x: f32) -> f32 {
    match op {
        Un::AddScalar(s) => x + s,
        Un::MulScalar(s) => x * s,
        // NaN-propagating, like the vector `min(hi, max(lo, x))`.
        Un::Clamp(lo, hi) => crate::gemm::clamp_nan(x, lo, hi),
    }
}

/// Split `0..n` into chunks (in parallel for long slices) and run `f(start, end)`.
fn chunked(n: usize, f: impl Fn(usize, usize) + Sync) {
    if n >= PAR_MIN && num_threads() > 1 {
        let chunks = n.div_ceil(PAR_CHUNK);
        parallel_for(chunks, |c| f(c * PAR_CHUNK, ((c + 1) * PAR_CHUNK).min(n)));
    } else {
        f(0, n);
    }
}

fn binary(op: Bin, a: &[f32], b: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(
        a.len() == n && b.len() == n,
        "elementwise: length mismatch ({}, {}, {n})",
        a.len(),
        b.len()
    );
    let use_avx = isa() == Isa::Avx2Fma;
    let op_ptr = SyncPtr(out.as_mut_ptr());
    chunked(n, |s, e| {
        // SAFETY: chunks are disjoint sub-ranges of `out` (s <= e <= n).
        let o = unsafe { std::slice::from_raw_parts_mut(op_ptr.get().add(s), e - s) };
        let (a, b) = (&a[s..e], &b[s..e]);
        if use_avx {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: isa() reports AVX2 only when the CPU supports it.
                unsafe { x86::binary(op, a, b, o) };
                return;
            }
        }
        for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
            *o = bin_op(op, x, y);
        }
    });
}

fn unary(op: Un, x: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(
        x.len() == n,
        "elementwise: length mismatch ({}, {n})",
        x.len()
    );
    let use_avx = isa() == Isa::Avx2Fma;
    let op_ptr = SyncPtr(out.as_mut_ptr());
    chunked(n, |s, e| {
        // SAFETY: chunks are disjoint sub-ranges of `out` (s <= e <= n).
        let o = unsafe { std::slice::from_raw_parts_mut(op_ptr.get().add(s), e - s) };
        let x = &x[s..e];
        if use_avx {
            #[cfg(target_arch = "x86_64")]
            {
                // SAFETY: isa() reports AVX2 only when the CPU supports it.
                unsafe { x86::unary(op, x, o) };
                return;
            }
        }
        for (o, &v) in o.iter_mut().zip(x) {
            *o = un_op(op, v);
        }
    });
}

/// `out[i] = a[i] + b[i]`.
pub fn add(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(Bin::Add, a, b, out)
}

/// `out[i] = a[i] - b[i]`.
pub fn sub(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(Bin::Sub, a, b, out)
}

/// `out[i] = a[i] * b[i]`.
pub fn mul(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(Bin::Mul, a, b, out)
}

/// `out[i] = a[i] / b[i]` (IEEE division: `x / 0` is `±inf` or NaN).
pub fn div(a: &[f32], b: &[f32], out: &mut [f32]) {
    binary(Bin::Div, a, b, out)
}

/// `out[i] = a[i] + s`.
pub fn add_scalar(a: &[f32], s: f32, out: &mut [f32]) {
    unary(Un::AddScalar(s), a, out)
}

/// `out[i] = a[i] * s`.
pub fn mul_scalar(a: &[f32], s: f32, out: &mut [f32]) {
    unary(Un::MulScalar(s), a, out)
}

/// `out[i] = min(max(x[i], lo), hi)`; NaN inputs stay NaN. With `lo > hi` every
/// non-NaN output is `hi` (PyTorch `clamp` semantics).
pub fn clamp(x: &[f32], lo: f32, hi: f32, out: &mut [f32]) {
    unary(Un::Clamp(lo, hi), x, out)
}

/// `out[i] = max(x[i], 0)`; NaN inputs stay NaN.
pub fn relu(x: &[f32], out: &mut [f32]) {
    unary(Un::Clamp(0.0, f32::INFINITY), x, out)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{bin_op, un_op, Bin, Un};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn vbin(op: Bin, a: __m256, b: __m256) -> __m256 {
        match op {
            Bin::Add => _mm256_add_ps(a, b),
            Bin::Sub => _mm256_sub_ps(a, b),
            Bin::Mul => _mm256_mul_ps(a, b),
            Bin::Div => _mm256_div_ps(a, b),
        }
    }

    /// # Safety
    /// AVX2 available; `a`, `b`, `out` have equal lengths (asserted).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn binary(op: Bin, a: &[f32], b: &[f32], out: &mut [f32]) {
        let n = out.len();
        assert!(a.len() == n && b.len() == n);
        let (ap, bp, op_) = (a.as_ptr(), b.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY: every vector access covers [i, i + 8) with i + 8 <= n.
        unsafe {
            while i + 32 <= n {
                for j in (0..32).step_by(8) {
                    let v = vbin(
                        op,
                        _mm256_loadu_ps(ap.add(i + j)),
                        _mm256_loadu_ps(bp.add(i + j)),
                    );
                    _mm256_storeu_ps(op_.add(i + j), v);
                }
                i += 32;
            }
            while i + 8 <= n {
                let v = vbin(op, _mm256_loadu_ps(ap.add(i)), _mm256_loadu_ps(bp.add(i)));
                _mm256_storeu_ps(op_.add(i), v);
                i += 8;
            }
        }
        for j in i..n {
            out[j] = bin_op(op, a[j], b[j]);
        }
    }

    /// # Safety
    /// AVX2 available; `x` and `out` have equal lengths (asserted).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn unary(op: Un, x: &[f32], out: &mut [f32]) {
        let n = out.len();
        assert!(x.len() == n);
        let (p0, p1) = match op {
            Un::AddScalar(s) | Un::MulScalar(s) => (s, 0.0),
            Un::Clamp(lo, hi) => (lo, hi),
        };
        let (v0, v1) = (_mm256_set1_ps(p0), _mm256_set1_ps(p1));
        // `max(lo, v)` / `min(hi, v)` return `v` when it is NaN (second operand).
        let f = |v: __m256| match op {
            Un::AddScalar(_) => _mm256_add_ps(v, v0),
            Un::MulScalar(_) => _mm256_mul_ps(v, v0),
            Un::Clamp(..) => _mm256_min_ps(v1, _mm256_max_ps(v0, v)),
        };
        let (xp, op_) = (x.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        // SAFETY: every vector access covers [i, i + 8) with i + 8 <= n.
        unsafe {
            while i + 32 <= n {
                for j in (0..32).step_by(8) {
                    _mm256_storeu_ps(op_.add(i + j), f(_mm256_loadu_ps(xp.add(i + j))));
                }
                i += 32;
            }
            while i + 8 <= n {
                _mm256_storeu_ps(op_.add(i), f(_mm256_loadu_ps(xp.add(i))));
                i += 8;
            }
        }
        for j in i..n {
            out[j] = un_op(op, x[j]);
        }
    }
}
