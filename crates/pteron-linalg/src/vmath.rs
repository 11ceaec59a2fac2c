//! Vectorised elementwise math over `f32` slices (in place): `exp`, logistic
//! `sigmoid`, `tanh`, exact (erf) `gelu`. AVX2+FMA paths with scalar fallbacks.
//!
//! Accuracy: `vexp` and `exp_scalar` compute glibc's `expf` (what ExecuTorch's
//! portable kernels call), bit for bit on every tier: ≤ 0.502 ulp, 0 below
//! `-103.97`, `inf` above `88.72`; `vsigmoid`, `vtanh`
//! ≤ ~1e-6 relative; `vgelu` ≤ ~2e-7·(1+|x|) absolute (erf approximation error).

use crate::{isa, Isa};

const TANH_P: [f32; 5] = [
    -5.704_988_7e-3,
    2.063_909e-2,
    -5.373_971_6e-2,
    1.333_144_2e-1,
    -3.333_328e-1,
];
// Abramowitz & Stegun 7.1.26-style erf constants.
const ERF_P: f32 = 0.327_591_1;
const ERF_A: [f32; 5] = [
    0.254_829_6,
    -0.284_496_74,
    1.421_413_7,
    -1.453_152_1,
    1.061_405_4,
];

/// `2^(i/32)` rounded to `f64`, as bits, minus `i << 47` (so that adding the
/// reduced exponent `k << 47` of `k = 32·e + i` gives `2^(k/32)`); computed with
/// 60-digit decimal arithmetic.
const EXP2_32: [u64; 32] = [
    0x3ff0000000000000,
    0x3fefd9b0d3158574,
    0x3fefb5586cf9890f,
    0x3fef9301d0125b51,
    0x3fef72b83c7d517b,
    0x3fef54873168b9aa,
    0x3fef387a6e756238,
    0x3fef1e9df51fdee1,
    0x3fef06fe0a31b715,
    0x3feef1a7373aa9cb,
    0x3feedea64c123422,
    0x3feece086061892d,
    0x3feebfdad5362a27,
    0x3feeb42b569d4f82,
    0x3feeab07dd485429,
    0x3feea47eb03a5585,
    0x3feea09e667f3bcd,
    0x3fee9f75e8ec5f74,
    0x3feea11473eb0187,
    0x3feea589994cce13,
    0x3feeace5422aa0db,
    0x3feeb737b0cdc5e5,
    0x3feec49182a3f090,
    0x3feed503b23e255d,
    0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47,
    0x3fef199bdd85529c,
    0x3fef3720dcef9069,
    0x3fef5818dcfba487,
    0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da,
    0x3fefd0765b6e4540,
];
/// `32 / ln 2` (`0x1.71547652b82fep0 · 32`).
const EXP_INV_LN2_32: f64 = f64::from_bits(0x40471547652b82fe);
/// `0x1.8p52`: adding it rounds a double below 2^51 in magnitude to an integer
/// held in the low bits.
const EXP_SHIFT: f64 = f64::from_bits(0x4338000000000000);
/// The cubic for `2^(r/32)` on `|r| <= 1/2`: `0x1.c6af84b912394p-5 / 32^3`,
/// `0x1.ebfce50fac4f3p-3 / 32^2`, `0x1.62e42ff0c52d6p-1 / 32`.
const EXP_C: [f64; 3] = [
    f64::from_bits(0x3ebc6af84b912394),
    f64::from_bits(0x3f2ebfce50fac4f3),
    f64::from_bits(0x3f962e42ff0c52d6),
];
/// Above `0x1.62e42ep6` `exp` overflows to `inf`; below `-0x1.9fe368p6` it is 0.
const EXP_OVER: f32 = f32::from_bits(0x42b17217);
const EXP_UNDER: f32 = f32::from_bits(0xc2cff1b4);

/// `exp(x)` with the arithmetic of glibc's (and Arm optimized-routines')
/// `expf`, which ExecuTorch's portable kernels call: `x·32/ln2 = k + r` in
/// `f64`, `2^(k/32)` from a 32-entry table, a cubic in `r`, one rounding to
/// `f32` at the end. Results equal glibc's `expf` on FMA machines (checked
/// against the platform `expf` in the tests); ≤ 0.502 ulp.
#[inline]
pub fn exp_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x > EXP_OVER {
        return f32::INFINITY;
    }
    if x < EXP_UNDER {
        return 0.0;
    }
    // Both uses of `x·32/ln2` are fused multiply-adds, as GCC contracts them.
    let xd = x as f64;
    let kd = EXP_INV_LN2_32.mul_add(xd, EXP_SHIFT);
    let ki = kd.to_bits();
    let kd = kd - EXP_SHIFT;
    let r = EXP_INV_LN2_32.mul_add(xd, -kd);
    let t = EXP2_32[(ki % 32) as usize].wrapping_add(ki << 47);
    let s = f64::from_bits(t);
    let zc = EXP_C[0].mul_add(r, EXP_C[1]);
    let r2 = r * r;
    let y = EXP_C[2].mul_add(r, 1.0);
    let y = zc.mul_add(r2, y);
    (y * s) as f32
}

fn sigmoid_scalar(x: f32) -> f32 {
    1.0 / (1.0 + exp_scalar(-x))
}

fn tanh_scalar(x: f32) -> f32 {
    let a = x.abs();
    if a < 0.625 {
        let z = x * x;
        let mut p = TANH_P[0];
        for &c in &TANH_P[1..] {
            p = p * z + c;
        }
        x + x * z * p
    } else if a > 9.0 {
        1.0f32.copysign(x)
    } else {
        let e = exp_scalar(2.0 * a);
        (1.0 - 2.0 / (e + 1.0)).copysign(x)
    }
}

/// Approximate `erf` (absolute error ≲ 2e-7).
pub fn erf_scalar(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let mut p = ERF_A[4];
    for &c in ERF_A[..4].iter().rev() {
        p = p * t + c;
    }
    let y = 1.0 - p * t * exp_scalar(-a * a);
    y.copysign(x)
}

/// Rational approximations of glibc 2.36's `erff` (fdlibm's single-precision
/// `erf`, by Sun and Cygnus), as `f32` bit patterns: numerator `p`, denominator
/// `q` (leading 1 implied), per interval of `|x|`.
const ERFF_SMALL_P: [u32; 5] = [0x3e0375d4, 0xbea66beb, 0xbce9528f, 0xbbbd1489, 0xb7c756b1];
const ERFF_SMALL_Q: [u32; 5] = [0x3ecbbbce, 0x3d852a63, 0x3ba68116, 0x390aee49, 0xb684e21a];
const ERFF_MID_P: [u32; 7] = [
    0xbb1acdc6, 0x3ed46805, 0xbebe9208, 0x3ea2fe54, 0xbde31cc2, 0x3d1151b3, 0xbb0df9c0,
];
const ERFF_MID_Q: [u32; 6] = [
    0x3dd9f331, 0x3f0a5785, 0x3d931ae7, 0x3e013307, 0x3c5f6e13, 0x3c445aa3,
];
const ERFF_TAIL1_P: [u32; 8] = [
    0xbc21a093, 0xbf31a0b7, 0xc128f022, 0xc2798057, 0xc322658c, 0xc3389ae7, 0xc2a2932b, 0xc11d077e,
];
const ERFF_TAIL1_Q: [u32; 8] = [
    0x419d35ce, 0x4309a863, 0x43d9486f, 0x442158c9, 0x43d6810b, 0x42d9451f, 0x40d23f7c, 0xbd777f97,
];
const ERFF_TAIL2_P: [u32; 7] = [
    0xbc21a092, 0xbf4c9dd4, 0xc18e104b, 0xc320a2ea, 0xc41f6441, 0xc480230b, 0xc3f1c275,
];
const ERFF_TAIL2_Q: [u32; 7] = [
    0x41f2b459, 0x43a2e571, 0x44c01759, 0x4547fdbb, 0x451f90ce, 0x43ed43a7, 0xc1b38712,
];
/// `erf(1)` rounded to the float that the mid interval adds to.
const ERFF_ERX: u32 = 0x3f58560b;

/// `c[0] + s·(c[1] + s·(… + s·c[n-1]))` in `f32` (Horner, no fused operations).
#[inline(always)]
fn horner_f32(c: &[u32], s: f32) -> f32 {
    let mut acc = f32::from_bits(c[c.len() - 1]);
    for &k in c[..c.len() - 1].iter().rev() {
        acc = f32::from_bits(k) + s * acc;
    }
    acc
}

/// `1 + s·(q[0] + s·(q[1] + …))`: the denominators, whose constant term is 1.
#[inline(always)]
fn horner1_f32(q: &[u32], s: f32) -> f32 {
    1.0 + s * horner_f32(q, s)
}

/// `erf(x)` with the arithmetic of glibc 2.36's `erff`, which ExecuTorch's
/// `erf` and exact `gelu` call (equal to it on every `f32`, checked against the
/// platform `erff` in the tests; < 1 ulp). Intervals of `|x|`: below 2^-28
/// `x + x·c` (with a rescaled form near the subnormals); below 0.84375
/// `x + x·P(x²)/Q(x²)`; below 1.25 `erf(1) ± P(|x|-1)/Q(|x|-1)`; from 6 on
/// `±(1 - 1e-30)`; otherwise `1 - exp(-z² - 0.5625)·exp((z-x)(z+x) + R/S)/x`
/// with `s = 1/x²` and `z` the value of `x` with the low 12 bits cleared.
pub fn erf_f32(x: f32) -> f32 {
    let bits = x.to_bits();
    let ia = bits & 0x7fff_ffff;
    let neg = bits >> 31 != 0;
    if ia >= 0x7f80_0000 {
        // NaN stays NaN; ±inf gives ±1.
        return if x.is_nan() { x } else { 1.0f32.copysign(x) };
    }
    let efx = f32::from_bits(ERFF_SMALL_P[0]);
    if ia < 0x3f58_0000 {
        if ia < 0x3180_0000 {
            if ia < 0x0400_0000 {
                // Scaled by 16 so that `efx·x` does not lose bits to underflow.
                return 0.0625 * (16.0 * x + (16.0 * efx) * x);
            }
            return x + efx * x;
        }
        let z = x * x;
        let r = horner_f32(&ERFF_SMALL_P, z);
        let s = horner1_f32(&ERFF_SMALL_Q, z);
        return x + x * (r / s);
    }
    let erx = f32::from_bits(ERFF_ERX);
    if ia < 0x3fa0_0000 {
        let s = x.abs() - 1.0;
        let p = horner_f32(&ERFF_MID_P, s);
        let q = horner1_f32(&ERFF_MID_Q, s);
        return if neg { -erx - p / q } else { erx + p / q };
    }
    if ia >= 0x40c0_0000 {
        const TINY: f32 = 1e-30;
        return if neg { TINY - 1.0 } else { 1.0 - TINY };
    }
    let a = x.abs();
    let s = 1.0 / (a * a);
    let (r, q) = if ia < 0x4036_db6e {
        (horner_f32(&ERFF_TAIL1_P, s), horner1_f32(&ERFF_TAIL1_Q, s))
    } else {
        (horner_f32(&ERFF_TAIL2_P, s), horner1_f32(&ERFF_TAIL2_Q, s))
    };
    let z = f32::from_bits(a.to_bits() & 0xffff_f000);
    let e = exp_scalar(-z * z - 0.5625) * exp_scalar((z - a) * (z + a) + r / q);
    if neg {
        e / a - 1.0
    } else {
        1.0 - e / a
    }
}

fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + erf_scalar(x * std::f32::consts::FRAC_1_SQRT_2))
}

macro_rules! vfun {
    ($(#[$m:meta])* $name:ident, $scalar:ident, $simd:ident) => {
        $(#[$m])*
        pub fn $name(x: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            if isa() == Isa::Avx2Fma {
                // SAFETY: the AVX2 tier is only reported when AVX2+FMA are detected.
                unsafe { x86::$simd(x) };
                return;
            }
            let _ = isa;
            let _ = Isa::Scalar;
            x.iter_mut().for_each(|v| *v = $scalar(*v));
        }
    };
}

vfun!(
    /// In-place `exp`.
    vexp, exp_scalar, apply_exp
);
vfun!(
    /// In-place logistic sigmoid `1 / (1 + exp(-x))`.
    vsigmoid, sigmoid_scalar, apply_sigmoid
);
vfun!(
    /// In-place `tanh`.
    vtanh, tanh_scalar, apply_tanh
);
vfun!(
    /// In-place exact GELU `x/2 * (1 + erf(x/√2))`.
    vgelu, gelu_scalar, apply_gelu
);

/// `Σ a[i] · b[i]` over `min(a.len(), b.len())` elements: eight partial sums
/// (element `i` into lane `i mod 8`, fused multiply-add), combined
/// `((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7))`. Bit-identical on every tier.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2Fma {
        // SAFETY: the AVX2 tier is only reported when AVX2+FMA are detected.
        return unsafe { x86::dot(a, b) };
    }
    let mut l = [0.0f32; 8];
    for (ca, cb) in a.chunks(8).zip(b.chunks(8)) {
        for i in 0..ca.len() {
            l[i] = ca[i].mul_add(cb[i], l[i]);
        }
    }
    ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
}

/// `y[i] += alpha · x[i]` (fused multiply-add) over `min(x.len(), y.len())` elements.
/// Bit-identical on every tier.
pub fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2Fma {
        // SAFETY: the AVX2 tier is only reported when AVX2+FMA are detected.
        unsafe { x86::axpy(alpha, x, y) };
        return;
    }
    for (v, &u) in y.iter_mut().zip(x) {
        *v = alpha.mul_add(u, *v);
    }
}

/// Panics unless `len` elements hold `rows` rows of `d` at `stride`.
fn check_rows(what: &str, rows: usize, d: usize, stride: usize, len: usize) {
    if let Some(c) = rows.checked_sub(1) {
        assert!(
            len >= c * stride + d,
            "{what}: {rows} rows of {d} at stride {stride} need {} elements, got {len}",
            c * stride + d
        );
    }
}

/// `out[c] = dot(a, b[c·stride ..][..a.len()])` for every `c < out.len()`: [`dot`]
/// against rows at a fixed stride (attention scores), with one dispatch.
///
/// # Panics
/// When `b` is too short for `out.len()` rows.
pub fn dot_rows(a: &[f32], b: &[f32], stride: usize, out: &mut [f32]) {
    let d = a.len();
    check_rows("dot_rows", out.len(), d, stride, b.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2Fma {
        // SAFETY: the AVX2 tier is only reported when AVX2+FMA are detected; `b`
        // holds every row (checked above).
        unsafe { x86::dot_rows(a, b, stride, out) };
        return;
    }
    for (c, o) in out.iter_mut().enumerate() {
        *o = dot(a, &b[c * stride..c * stride + d]);
    }
}

/// `y += p[c] · x[c·stride ..][..y.len()]` for `c = 0, 1, ...` in order, skipping
/// `p[c] == 0`: [`axpy`] over rows at a fixed stride (attention's `p · V`). Every
/// element sees the same fused multiply-adds in the same order as with one [`axpy`]
/// per row (bit-identical); the AVX2 path keeps `y` in registers across rows.
///
/// # Panics
/// When `x` is too short for `p.len()` rows.
pub fn axpy_rows(p: &[f32], x: &[f32], stride: usize, y: &mut [f32]) {
    let d = y.len();
    check_rows("axpy_rows", p.len(), d, stride, x.len());
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx2Fma {
        // SAFETY: the AVX2 tier is only reported when AVX2+FMA are detected; `x`
        // holds every row (checked above).
        unsafe { x86::axpy_rows(p, x, stride, y) };
        return;
    }
    for (c, &pc) in p.iter().enumerate() {
        if pc != 0.0 {
            axpy(pc, &x[c * stride..c * stride + d], y);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::*;
    use std::arch::x86_64::*;

    /// # Safety
    /// AVX2+FMA available; `a.len() == b.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len();
        let mut acc = _mm256_setzero_ps();
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            let (va, vb) = unsafe {
                (
                    _mm256_loadu_ps(a.as_ptr().add(i)),
                    _mm256_loadu_ps(b.as_ptr().add(i)),
                )
            };
            acc = _mm256_fmadd_ps(va, vb, acc);
            i += 8;
        }
        let mut l = [0.0f32; 8];
        // SAFETY: l holds 8 floats.
        unsafe { _mm256_storeu_ps(l.as_mut_ptr(), acc) };
        for j in i..n {
            l[j - i] = a[j].mul_add(b[j], l[j - i]);
        }
        ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]))
    }

    /// # Safety
    /// AVX2+FMA available; `x.len() == y.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy(alpha: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len();
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let v = _mm256_fmadd_ps(
                    va,
                    _mm256_loadu_ps(x.as_ptr().add(i)),
                    _mm256_loadu_ps(y.as_ptr().add(i)),
                );
                _mm256_storeu_ps(y.as_mut_ptr().add(i), v);
            }
            i += 8;
        }
        for j in i..n {
            y[j] = alpha.mul_add(x[j], y[j]);
        }
    }

    /// [`dot`] of `a` with rows `b[c·stride..][..a.len()]`, four rows at a time (four
    /// independent accumulators; each row's arithmetic is exactly [`dot`]'s).
    ///
    /// # Safety
    /// AVX2+FMA available; `b.len() >= (out.len() - 1) · stride + a.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dot_rows(a: &[f32], b: &[f32], stride: usize, out: &mut [f32]) {
        let d = a.len();
        let d8 = d - d % 8;
        let n = out.len();
        let pa = a.as_ptr();
        let pb = b.as_ptr();
        let mut c = 0;
        // Rows without a scalar tail, eight at a time: the eight lane sums of
        // every row reduced together (transposes and horizontal adds), with the
        // same additions in the same order as the per-row reduction below.
        while d8 == d && c + 8 <= n {
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut i = 0;
            while i < d {
                // SAFETY: i + 8 <= d for `a` and for each of the eight rows, which
                // lie inside `b` (caller's contract).
                unsafe {
                    let va = _mm256_loadu_ps(pa.add(i));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let vb = _mm256_loadu_ps(pb.add((c + r) * stride + i));
                        *acc = _mm256_fmadd_ps(va, vb, *acc);
                    }
                }
                i += 8;
            }
            // Rows r, r + 1: [l0 + l4, l1 + l5, l2 + l6, l3 + l7] of each.
            let s = |x: __m256, y: __m256| {
                _mm256_add_ps(
                    _mm256_permute2f128_ps(x, y, 0x20),
                    _mm256_permute2f128_ps(x, y, 0x31),
                )
            };
            let (s01, s23) = (s(acc[0], acc[1]), s(acc[2], acc[3]));
            let (s45, s67) = (s(acc[4], acc[5]), s(acc[6], acc[7]));
            // [0, 2, 4, 6 | 1, 3, 5, 7]: ((l0 + l4) + (l1 + l5)) + ((l2 + l6) + (l3 + l7)).
            let t = _mm256_hadd_ps(_mm256_hadd_ps(s01, s23), _mm256_hadd_ps(s45, s67));
            let t = _mm256_permutevar8x32_ps(t, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            // SAFETY: c + 8 <= n = out.len().
            unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(c), t) };
            c += 8;
        }
        while c + 4 <= n {
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut i = 0;
            while i < d8 {
                // SAFETY: i + 8 <= d for `a` and for each of the four rows, which lie
                // inside `b` (caller's contract).
                unsafe {
                    let va = _mm256_loadu_ps(pa.add(i));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let vb = _mm256_loadu_ps(pb.add((c + r) * stride + i));
                        *acc = _mm256_fmadd_ps(va, vb, *acc);
                    }
                }
                i += 8;
            }
            for (r, acc) in acc.iter().enumerate() {
                let mut l = [0.0f32; 8];
                // SAFETY: l holds 8 floats.
                unsafe { _mm256_storeu_ps(l.as_mut_ptr(), *acc) };
                let row = &b[(c + r) * stride..(c + r) * stride + d];
                for j in d8..d {
                    l[j - d8] = a[j].mul_add(row[j], l[j - d8]);
                }
                out[c + r] = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
            }
            c += 4;
        }
        while c < n {
            // SAFETY: same features; the row lies inside `b`.
            out[c] = unsafe { dot(a, &b[c * stride..c * stride + d]) };
            c += 1;
        }
    }

    /// `y[..8·V] += p[c] · x[c·stride..][..8·V]` over the rows `c` in order (skipping
    /// zeros), the `V` vectors of `y` held in registers.
    ///
    /// # Safety
    /// AVX2+FMA available; `y.len() >= 8·V`, every row `x[c·stride..][..8·V]` in range.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpy_rows_block<const V: usize>(p: &[f32], x: &[f32], stride: usize, y: &mut [f32]) {
        let px = x.as_ptr();
        let py = y.as_mut_ptr();
        let mut acc = [_mm256_setzero_ps(); V];
        for (v, a) in acc.iter_mut().enumerate() {
            // SAFETY: 8·V <= y.len().
            *a = unsafe { _mm256_loadu_ps(py.add(8 * v)) };
        }
        for (c, &pc) in p.iter().enumerate() {
            if pc == 0.0 {
                continue;
            }
            let vp = _mm256_set1_ps(pc);
            for (v, a) in acc.iter_mut().enumerate() {
                // SAFETY: the row's first 8·V elements are in range (caller's contract).
                *a = _mm256_fmadd_ps(
                    vp,
                    unsafe { _mm256_loadu_ps(px.add(c * stride + 8 * v)) },
                    *a,
                );
            }
        }
        for (v, a) in acc.iter().enumerate() {
            // SAFETY: 8·V <= y.len().
            unsafe { _mm256_storeu_ps(py.add(8 * v), *a) };
        }
    }

    /// [`super::axpy_rows`]: `y` in blocks of up to 64 columns kept in registers over
    /// all rows, then the `< 8` tail columns with scalar fused multiply-adds.
    ///
    /// # Safety
    /// AVX2+FMA available; `x.len() >= (p.len() - 1) · stride + y.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn axpy_rows(p: &[f32], x: &[f32], stride: usize, y: &mut [f32]) {
        let d = y.len();
        let mut j = 0;
        while d - j >= 64 {
            // SAFETY: columns `j..j + 64` lie within `d`, so within `y` and within each
            // row of `x` (caller's contract).
            unsafe { axpy_rows_block::<8>(p, &x[j..], stride, &mut y[j..]) };
            j += 64;
        }
        let x = &x[j..];
        let y = &mut y[j..];
        // SAFETY: the block's `8·V <= d - j` columns lie within `y` and within each row
        // of `x` (caller's contract).
        unsafe {
            match (d - j) / 8 {
                1 => axpy_rows_block::<1>(p, x, stride, y),
                2 => axpy_rows_block::<2>(p, x, stride, y),
                3 => axpy_rows_block::<3>(p, x, stride, y),
                4 => axpy_rows_block::<4>(p, x, stride, y),
                5 => axpy_rows_block::<5>(p, x, stride, y),
                6 => axpy_rows_block::<6>(p, x, stride, y),
                7 => axpy_rows_block::<7>(p, x, stride, y),
                _ => {}
            }
        }
        let t = (d - j) - (d - j) % 8;
        if t < y.len() {
            for (c, &pc) in p.iter().enumerate() {
                if pc == 0.0 {
                    continue;
                }
                let row = &x[c * stride..];
                for k in t..y.len() {
                    y[k] = pc.mul_add(row[k], y[k]);
                }
            }
        }
    }

    /// Apply an 8-lane function over a slice; the tail goes through a padded copy.
    ///
    /// One in-place loop per 8-lane function, so that the function inlines into
    /// it (through a function pointer every 8 floats paid an indirect call that
    /// passes the vectors through memory: 7.8 us for a sigmoid over 8192 floats).
    macro_rules! apply_loops {
        ($($name:ident => $f:ident),* $(,)?) => {$(
            /// # Safety
            /// AVX2+FMA available.
            #[target_feature(enable = "avx2,fma")]
            pub(super) unsafe fn $name(x: &mut [f32]) {
                let mut chunks = x.chunks_exact_mut(8);
                for c in &mut chunks {
                    // SAFETY: c has exactly 8 floats; same target features.
                    unsafe { _mm256_storeu_ps(c.as_mut_ptr(), $f(_mm256_loadu_ps(c.as_ptr()))) };
                }
                let rem = chunks.into_remainder();
                if !rem.is_empty() {
                    let mut t = [0.0f32; 8];
                    t[..rem.len()].copy_from_slice(rem);
                    // SAFETY: t has 8 floats; same target features.
                    unsafe { _mm256_storeu_ps(t.as_mut_ptr(), $f(_mm256_loadu_ps(t.as_ptr()))) };
                    let n = rem.len();
                    rem.copy_from_slice(&t[..n]);
                }
            }
        )*};
    }
    apply_loops!(apply_exp => exp8, apply_sigmoid => sigmoid8, apply_tanh => tanh8, apply_gelu => gelu8);

    #[inline(always)]
    fn poly(r: __m256, c: &[f32]) -> __m256 {
        // SAFETY (intrinsics): only called from AVX2+FMA target_feature functions,
        // into which this is inlined.
        unsafe {
            let mut p = _mm256_set1_ps(c[0]);
            for &k in &c[1..] {
                p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(k));
            }
            p
        }
    }

    /// # Safety
    /// AVX2+FMA available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn exp8(x: __m256) -> __m256 {
        // SAFETY (intrinsics): AVX2+FMA, this function's target features.
        let half = |xs: __m128| -> __m128 {
            let xd = _mm256_cvtps_pd(xs);
            let inv = _mm256_set1_pd(EXP_INV_LN2_32);
            let shift = _mm256_set1_pd(EXP_SHIFT);
            let kd = _mm256_fmadd_pd(inv, xd, shift);
            let ki = _mm256_castpd_si256(kd);
            let kd = _mm256_sub_pd(kd, shift);
            let r = _mm256_fmsub_pd(inv, xd, kd);
            let idx = _mm256_and_si256(ki, _mm256_set1_epi64x(31));
            // SAFETY: every index is below 32, the table's length.
            let t =
                unsafe { _mm256_i64gather_epi64::<8>(super::EXP2_32.as_ptr() as *const i64, idx) };
            let s = _mm256_castsi256_pd(_mm256_add_epi64(t, _mm256_slli_epi64::<47>(ki)));
            let zc = _mm256_fmadd_pd(_mm256_set1_pd(EXP_C[0]), r, _mm256_set1_pd(EXP_C[1]));
            let r2 = _mm256_mul_pd(r, r);
            let y = _mm256_fmadd_pd(_mm256_set1_pd(EXP_C[2]), r, _mm256_set1_pd(1.0));
            let y = _mm256_fmadd_pd(zc, r2, y);
            _mm256_cvtpd_ps(_mm256_mul_pd(y, s))
        };
        let lo = half(_mm256_castps256_ps128(x));
        let hi = half(_mm256_extractf128_ps::<1>(x));
        let mut res = _mm256_set_m128(hi, lo);
        // Overflow -> inf, underflow -> 0, NaN -> NaN (out-of-range lanes computed
        // garbage above, without traps).
        let over = _mm256_cmp_ps::<_CMP_GT_OQ>(x, _mm256_set1_ps(EXP_OVER));
        res = _mm256_blendv_ps(res, _mm256_set1_ps(f32::INFINITY), over);
        let under = _mm256_cmp_ps::<_CMP_LT_OQ>(x, _mm256_set1_ps(EXP_UNDER));
        res = _mm256_blendv_ps(res, _mm256_setzero_ps(), under);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        _mm256_blendv_ps(res, x, nan)
    }

    /// # Safety
    /// AVX2+FMA available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn sigmoid8(x: __m256) -> __m256 {
        let one = _mm256_set1_ps(1.0);
        // SAFETY: same target features.
        let e = unsafe { exp8(_mm256_sub_ps(_mm256_setzero_ps(), x)) };
        _mm256_div_ps(one, _mm256_add_ps(one, e))
    }

    /// # Safety
    /// AVX2+FMA available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn tanh8(x: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let a = _mm256_andnot_ps(sign, x);
        let one = _mm256_set1_ps(1.0);
        // Large branch: 1 - 2/(exp(2a)+1), with sign restored.
        let a_cl = _mm256_min_ps(a, _mm256_set1_ps(9.0));
        // SAFETY: same target features.
        let e = unsafe { exp8(_mm256_add_ps(a_cl, a_cl)) };
        let big = _mm256_sub_ps(
            one,
            _mm256_div_ps(_mm256_set1_ps(2.0), _mm256_add_ps(e, one)),
        );
        let big = _mm256_or_ps(big, _mm256_and_ps(sign, x));
        // Small branch: polynomial.
        let z = _mm256_mul_ps(x, x);
        let p = poly(z, &TANH_P);
        let small = _mm256_fmadd_ps(_mm256_mul_ps(x, z), p, x);
        let is_small = _mm256_cmp_ps::<_CMP_LT_OQ>(a, _mm256_set1_ps(0.625));
        let r = _mm256_blendv_ps(big, small, is_small);
        let nan = _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x);
        _mm256_blendv_ps(r, x, nan)
    }

    /// # Safety
    /// AVX2+FMA available.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gelu8(x: __m256) -> __m256 {
        let sign = _mm256_set1_ps(-0.0);
        let u = _mm256_mul_ps(x, _mm256_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
        let a = _mm256_andnot_ps(sign, u);
        let one = _mm256_set1_ps(1.0);
        let t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(ERF_P), a, one));
        let mut p = _mm256_set1_ps(ERF_A[4]);
        for &c in ERF_A[..4].iter().rev() {
            p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(c));
        }
        // SAFETY: same target features.
        let e = unsafe { exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(a, a))) };
        let erf_a = _mm256_fnmadd_ps(_mm256_mul_ps(p, t), e, one);
        let erf = _mm256_or_ps(erf_a, _mm256_and_ps(sign, u));
        _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(0.5), x),
            _mm256_add_ps(one, erf),
        )
    }
}
