//! Shared helpers for kernels: the numeric element trait, dtype dispatch, ATen type
//! promotion, broadcasting and dim normalisation. One place for each concept: kernels
//! use these rather than writing their own.

use half::{bf16, f16};
use pteron_runtime::{Element, KernelError, Scalar, ScalarType, TensorRef};

/// Numeric element types kernels compute with. `u8` doubles as `bool` storage.
pub trait Num: Element + PartialOrd + Default {
    const IS_FLOAT: bool;
    fn to_f64(self) -> f64;
    /// Conversion with C-like semantics (saturating for floats→ints like Rust `as`).
    fn from_f64(v: f64) -> Self;
    fn to_f32(self) -> f32;
    fn from_f32(v: f32) -> Self;
    fn to_i64(self) -> i64;
    fn from_i64(v: i64) -> Self;
    fn zero() -> Self {
        Self::default()
    }
    fn one() -> Self {
        Self::from_i64(1)
    }
}

macro_rules! num_int {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = false;
            fn to_f64(self) -> f64 { self as f64 }
            fn from_f64(v: f64) -> Self { v as $t }
            fn to_f32(self) -> f32 { self as f32 }
            fn from_f32(v: f32) -> Self { v as $t }
            fn to_i64(self) -> i64 { self as i64 }
            // Wrapping, like C++ static_cast between integer types.
            fn from_i64(v: i64) -> Self { v as $t }
        }
    )*};
}
num_int!(i8, i16, i32, i64, u8);

impl Num for f32 {
    const IS_FLOAT: bool = true;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn to_f32(self) -> f32 {
        self
    }
    fn from_f32(v: f32) -> Self {
        v
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v as f32
    }
}
impl Num for f64 {
    const IS_FLOAT: bool = true;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    fn to_i64(self) -> i64 {
        self as i64
    }
    fn from_i64(v: i64) -> Self {
        v as f64
    }
}
macro_rules! num_half {
    ($($t:ty),*) => {$(
        impl Num for $t {
            const IS_FLOAT: bool = true;
            fn to_f64(self) -> f64 { self.to_f64() }
            fn from_f64(v: f64) -> Self { <$t>::from_f64(v) }
            fn to_f32(self) -> f32 { self.to_f32() }
            fn from_f32(v: f32) -> Self { <$t>::from_f32(v) }
            fn to_i64(self) -> i64 { self.to_f32() as i64 }
            fn from_i64(v: i64) -> Self { <$t>::from_f64(v as f64) }
        }
    )*};
}
num_half!(f16, bf16);

/// Runs `$body` with `$T` bound to the Rust type of a dtype, for every real dtype
/// (floats and ints, `Bool` as `u8`); other dtypes return a `Dtype` error.
///
/// ```ignore
/// dispatch_all!(t.dtype(), T => { let x = t.as_slice::<T>()?; ... })
/// ```
#[macro_export]
macro_rules! dispatch_all {
    ($dt:expr, $T:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Float => { type $T = f32; $body }
            __St::Double => { type $T = f64; $body }
            __St::Half => { type $T = half::f16; $body }
            __St::BFloat16 => { type $T = half::bf16; $body }
            __St::Char => { type $T = i8; $body }
            __St::Short => { type $T = i16; $body }
            __St::Int => { type $T = i32; $body }
            __St::Long => { type $T = i64; $body }
            __St::Byte | __St::Bool => { type $T = u8; $body }
            other => return Err(pteron_runtime::KernelError::dtype(format!("dtype {other} is not supported here"))),
        }
    }};
}

/// Like [`dispatch_all!`] for floating dtypes only.
#[macro_export]
macro_rules! dispatch_float {
    ($dt:expr, $T:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Float => { type $T = f32; $body }
            __St::Double => { type $T = f64; $body }
            __St::Half => { type $T = half::f16; $body }
            __St::BFloat16 => { type $T = half::bf16; $body }
            other => return Err(pteron_runtime::KernelError::dtype(format!("dtype {other} is not a floating type"))),
        }
    }};
}

/// Like [`dispatch_all!`] for integer dtypes (and Bool as `u8`).
#[macro_export]
macro_rules! dispatch_int {
    ($dt:expr, $T:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Char => { type $T = i8; $body }
            __St::Short => { type $T = i16; $body }
            __St::Int => { type $T = i32; $body }
            __St::Long => { type $T = i64; $body }
            __St::Byte | __St::Bool => { type $T = u8; $body }
            other => return Err(pteron_runtime::KernelError::dtype(format!("dtype {other} is not an integer type"))),
        }
    }};
}

fn category(t: ScalarType) -> u8 {
    match t {
        ScalarType::Bool => 0,
        t if t.is_integral(false) => 1,
        _ => 2,
    }
}

/// ATen's `promote_types` for the dtypes kernels support.
pub fn promote_types(a: ScalarType, b: ScalarType) -> ScalarType {
    use ScalarType::*;
    if a == b {
        return a;
    }
    match (a, b) {
        (Bool, x) | (x, Bool) => x,
        (Double, _) | (_, Double) => Double,
        (Float, _) | (_, Float) => Float,
        (Half, BFloat16) | (BFloat16, Half) => Float,
        (Half, _) | (_, Half) => Half,
        (BFloat16, _) | (_, BFloat16) => BFloat16,
        (Long, _) | (_, Long) => Long,
        (Int, _) | (_, Int) => Int,
        (Byte, Char) | (Char, Byte) => Short,
        (Short, _) | (_, Short) => Short,
        (Char, _) | (_, Char) => Char,
        _ => a,
    }
}

/// The dtype a scalar has when it participates in type promotion on its own.
pub fn scalar_dtype(s: Scalar) -> ScalarType {
    match s {
        Scalar::Bool(_) => ScalarType::Bool,
        Scalar::Int(_) => ScalarType::Long,
        Scalar::Double(_) => ScalarType::Float, // default dtype
    }
}

/// Result dtype of `tensor op scalar` (a scalar only raises the category:
/// bool < integer < floating).
pub fn promote_with_scalar(t: ScalarType, s: Scalar) -> ScalarType {
    let st = scalar_dtype(s);
    if category(st) > category(t) {
        if category(st) == 2 {
            ScalarType::Float
        } else {
            ScalarType::Long
        }
    } else {
        t
    }
}

/// Whether `from` can be cast to `to` by `.out` kernels (ATen's `can_cast`: no
/// float→int, no int→bool, no complex→real).
pub fn can_cast(from: ScalarType, to: ScalarType) -> bool {
    category(from) <= category(to)
}

/// Normalises a possibly negative dim against `rank` (rank-0 tensors accept 0 and -1).
pub fn norm_dim(dim: i64, rank: usize) -> Result<usize, KernelError> {
    let r = rank.max(1) as i64;
    let d = if dim < 0 { dim + r } else { dim };
    if d < 0 || d >= r {
        return Err(KernelError::invalid(format!(
            "dim {dim} out of range for a tensor of rank {rank}"
        )));
    }
    Ok(d as usize)
}

/// Broadcast shape of two shapes (numpy rules), inline.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<([usize; 16], usize), KernelError> {
    let n = a.len().max(b.len());
    if n > 16 {
        return Err(KernelError::invalid("rank above 16"));
    }
    let mut out = [0usize; 16];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(KernelError::invalid(format!(
                "shapes {a:?} and {b:?} cannot be broadcast together"
            )));
        };
    }
    Ok((out, n))
}

/// Element strides of `t` aligned to an output of rank `out_rank` for broadcasting:
/// broadcast (size-1 or missing) dims get stride 0.
pub fn broadcast_strides(t: &TensorRef<'_>, out_dims: &[usize]) -> [usize; 16] {
    let st = t.strides();
    let r = t.dim();
    let n = out_dims.len();
    let mut out = [0usize; 16];
    for i in 0..r {
        let oi = n - r + i;
        out[oi] = if t.size(i) == 1 && out_dims[oi] != 1 { 0 } else { st[i] };
    }
    out
}

/// Visits every index of `dims` in row-major order, calling `f(linear, offsets)` where
/// `offsets[k]` is the element offset for stride set `k`. No allocation.
pub fn for_each_index<const K: usize>(
    dims: &[usize],
    strides: [&[usize; 16]; K],
    mut f: impl FnMut(usize, [usize; K]),
) {
    let n: usize = dims.iter().product();
    if n == 0 {
        return;
    }
    let rank = dims.len();
    let mut idx = [0usize; 16];
    let mut off = [0usize; K];
    for lin in 0..n {
        f(lin, off);
        // Increment the multi-index, updating offsets incrementally.
        let mut d = rank;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            for k in 0..K {
                off[k] += strides[k][d];
            }
            if idx[d] < dims[d] {
                break;
            }
            for k in 0..K {
                off[k] -= strides[k][d] * dims[d];
            }
            idx[d] = 0;
        }
    }
}

/// Contiguous strides of `dims` (row-major).
pub fn contiguous_strides(dims: &[usize]) -> [usize; 16] {
    let mut st = [0usize; 16];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        st[i] = acc;
        acc *= dims[i].max(1);
    }
    st
}

/// Converts a scalar to element type `T` (ATen's `scalar.to<T>()`).
pub fn scalar_to<T: Num>(s: Scalar) -> T {
    match s {
        Scalar::Int(i) => T::from_i64(i),
        Scalar::Bool(b) => T::from_i64(b as i64),
        Scalar::Double(d) => T::from_f64(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_matches_aten() {
        use ScalarType::*;
        assert_eq!(promote_types(Byte, Char), Short);
        assert_eq!(promote_types(Int, Float), Float);
        assert_eq!(promote_types(Half, BFloat16), Float);
        assert_eq!(promote_types(Bool, Int), Int);
        assert_eq!(promote_types(Long, Half), Half);
        assert_eq!(promote_with_scalar(Int, Scalar::Double(1.5)), Float);
        assert_eq!(promote_with_scalar(Half, Scalar::Double(1.5)), Half);
        assert_eq!(promote_with_scalar(Bool, Scalar::Int(2)), Long);
        assert_eq!(promote_with_scalar(Char, Scalar::Int(2)), Char);
    }

    #[test]
    fn index_walk_broadcasts() {
        let dims = [2, 3];
        let a = contiguous_strides(&dims);
        let mut b = [0usize; 16];
        b[1] = 1; // a row vector broadcast over rows
        let mut seen = Vec::new();
        for_each_index(&dims, [&a, &b], |lin, [oa, ob]| seen.push((lin, oa, ob)));
        assert_eq!(seen, vec![(0, 0, 0), (1, 1, 1), (2, 2, 2), (3, 3, 0), (4, 4, 1), (5, 5, 2)]);
    }
}
