//! Shared helpers for kernels: the numeric element trait, dtype dispatch, ATen type
//! promotion, broadcasting and dim normalisation. One place for each concept: kernels
//! use these rather than writing their own.

use half::{bf16, f16};
use pteron_runtime::{Element, KernelError, Scalar, ScalarType, TensorMut, TensorRef};

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
    /// The slice itself when `Self` is `f32` (for the f32 SIMD kernels).
    fn as_f32s(_s: &[Self]) -> Option<&[f32]> {
        None
    }
    /// The mutable slice itself when `Self` is `f32`.
    fn as_f32s_mut(_s: &mut [Self]) -> Option<&mut [f32]> {
        None
    }
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
    fn as_f32s(s: &[f32]) -> Option<&[f32]> {
        Some(s)
    }
    fn as_f32s_mut(s: &mut [f32]) -> Option<&mut [f32]> {
        Some(s)
    }
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
            __St::Float => {
                type $T = f32;
                $body
            }
            __St::Double => {
                type $T = f64;
                $body
            }
            __St::Half => {
                type $T = half::f16;
                $body
            }
            __St::BFloat16 => {
                type $T = half::bf16;
                $body
            }
            __St::Char => {
                type $T = i8;
                $body
            }
            __St::Short => {
                type $T = i16;
                $body
            }
            __St::Int => {
                type $T = i32;
                $body
            }
            __St::Long => {
                type $T = i64;
                $body
            }
            __St::Byte | __St::Bool => {
                type $T = u8;
                $body
            }
            other => {
                return Err(pteron_runtime::KernelError::dtype(format!(
                    "dtype {other} is not supported here"
                )))
            }
        }
    }};
}

/// Like [`dispatch_all!`] for floating dtypes only.
#[macro_export]
macro_rules! dispatch_float {
    ($dt:expr, $T:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Float => {
                type $T = f32;
                $body
            }
            __St::Double => {
                type $T = f64;
                $body
            }
            __St::Half => {
                type $T = half::f16;
                $body
            }
            __St::BFloat16 => {
                type $T = half::bf16;
                $body
            }
            other => {
                return Err(pteron_runtime::KernelError::dtype(format!(
                    "dtype {other} is not a floating type"
                )))
            }
        }
    }};
}

/// Like [`dispatch_all!`] for integer dtypes (and Bool as `u8`).
#[macro_export]
macro_rules! dispatch_int {
    ($dt:expr, $T:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Char => {
                type $T = i8;
                $body
            }
            __St::Short => {
                type $T = i16;
                $body
            }
            __St::Int => {
                type $T = i32;
                $body
            }
            __St::Long => {
                type $T = i64;
                $body
            }
            __St::Byte | __St::Bool => {
                type $T = u8;
                $body
            }
            other => {
                return Err(pteron_runtime::KernelError::dtype(format!(
                    "dtype {other} is not an integer type"
                )))
            }
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
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
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
#[allow(clippy::needless_range_loop)]
pub fn broadcast_strides(t: &TensorRef<'_>, out_dims: &[usize]) -> [usize; 16] {
    let st = t.strides();
    let r = t.dim();
    let n = out_dims.len();
    let mut out = [0usize; 16];
    for i in 0..r {
        let oi = n - r + i;
        out[oi] = if t.size(i) == 1 && out_dims[oi] != 1 {
            0
        } else {
            st[i]
        };
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

// ---------------------------------------------------------------------------
// ATen result types

fn combine_categories(higher: Option<ScalarType>, lower: Option<ScalarType>) -> Option<ScalarType> {
    match (higher, lower) {
        (None, l) => l,
        (h, None) => h,
        (Some(h), Some(l)) => {
            if h.is_floating() {
                Some(h)
            } else if h == ScalarType::Bool || l.is_floating() {
                Some(promote_types(h, l))
            } else {
                Some(h)
            }
        }
    }
}

/// One participant of ATen's `result_type`: a tensor (its rank matters: 0-dim tensors
/// rank below dimensioned ones) or a wrapped Python scalar.
#[derive(Clone, Copy, Debug)]
pub enum Operand {
    Tensor { dtype: ScalarType, rank: usize },
    Scalar(Scalar),
}

impl Operand {
    pub fn of(t: &TensorRef<'_>) -> Self {
        Operand::Tensor {
            dtype: t.dtype(),
            rank: t.dim(),
        }
    }
}

/// ATen's `result_type` over tensors and scalars: dimensioned tensors first, then 0-dim
/// tensors, then scalars, a lower level only raising the category.
pub fn result_type(ops: &[Operand]) -> ScalarType {
    let (mut dim, mut zero, mut wrapped) = (None, None, None);
    let upd = |acc: &mut Option<ScalarType>, t: ScalarType| {
        *acc = Some(match *acc {
            None => t,
            Some(a) => promote_types(a, t),
        })
    };
    for op in ops {
        match *op {
            Operand::Tensor { dtype, rank } if rank > 0 => upd(&mut dim, dtype),
            Operand::Tensor { dtype, .. } => upd(&mut zero, dtype),
            Operand::Scalar(s) => upd(&mut wrapped, scalar_dtype(s)),
        }
    }
    combine_categories(dim, combine_categories(zero, wrapped)).unwrap_or(ScalarType::Float)
}

/// Fails unless `from` can be cast to the out dtype `to` (ATen `can_cast`).
pub fn check_cast(op: &str, from: ScalarType, to: ScalarType) -> Result<(), KernelError> {
    if can_cast(from, to) {
        Ok(())
    } else {
        Err(KernelError::dtype(format!(
            "{op}: result type {from} cannot be cast to out dtype {to}"
        )))
    }
}

/// Runs `$body` with `$C` bound to the type ATen computes a dtype's elementwise ops
/// in: `f32` for f32/f16/bf16, `f64` for f64, `i64` for integers and Bool.
#[macro_export]
macro_rules! dispatch_compute {
    ($dt:expr, $C:ident => $body:expr) => {{
        use pteron_runtime::ScalarType as __St;
        match $dt {
            __St::Float | __St::Half | __St::BFloat16 => {
                type $C = f32;
                $body
            }
            __St::Double => {
                type $C = f64;
                $body
            }
            __St::Char | __St::Short | __St::Int | __St::Long | __St::Byte | __St::Bool => {
                type $C = i64;
                $body
            }
            other => {
                return Err(pteron_runtime::KernelError::dtype(format!(
                    "dtype {other} is not supported here"
                )))
            }
        }
    }};
}

/// Arithmetic on the compute types (`f32`, `f64`, `i64`): integer ops wrap like C++.
pub trait Compute: Num {
    fn add(self, o: Self) -> Self;
    fn sub(self, o: Self) -> Self;
    fn mul(self, o: Self) -> Self;
    fn neg(self) -> Self;
    fn abs(self) -> Self;
    /// `max` that propagates NaN.
    fn max_nan(self, o: Self) -> Self;
    /// `min` that propagates NaN.
    fn min_nan(self, o: Self) -> Self;
    fn is_nan(self) -> bool;
}

macro_rules! compute_float {
    ($($t:ty),*) => {$(
        impl Compute for $t {
            #[inline(always)] fn add(self, o: Self) -> Self { self + o }
            #[inline(always)] fn sub(self, o: Self) -> Self { self - o }
            #[inline(always)] fn mul(self, o: Self) -> Self { self * o }
            #[inline(always)] fn neg(self) -> Self { -self }
            #[inline(always)] fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)] fn max_nan(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else if self > o { self } else { o }
            }
            #[inline(always)] fn min_nan(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else if self < o { self } else { o }
            }
            #[inline(always)] fn is_nan(self) -> bool { <$t>::is_nan(self) }
        }
    )*};
}
compute_float!(f32, f64);

impl Compute for i64 {
    #[inline(always)]
    fn add(self, o: Self) -> Self {
        self.wrapping_add(o)
    }
    #[inline(always)]
    fn sub(self, o: Self) -> Self {
        self.wrapping_sub(o)
    }
    #[inline(always)]
    fn mul(self, o: Self) -> Self {
        self.wrapping_mul(o)
    }
    #[inline(always)]
    fn neg(self) -> Self {
        self.wrapping_neg()
    }
    #[inline(always)]
    fn abs(self) -> Self {
        self.wrapping_abs()
    }
    #[inline(always)]
    fn max_nan(self, o: Self) -> Self {
        self.max(o)
    }
    #[inline(always)]
    fn min_nan(self, o: Self) -> Self {
        self.min(o)
    }
    #[inline(always)]
    fn is_nan(self) -> bool {
        false
    }
}

/// Element conversion with C++ `static_cast` semantics as PyTorch on x86 shows them
/// (floats to ints go through i64, so narrow ints wrap; ints wrap; f64 to f16 rounds through f32 like `c10::Half`).
#[inline(always)]
pub fn convert<T: Num, C: Num>(x: T) -> C {
    if C::IS_FLOAT {
        if core::mem::size_of::<C>() == 8 {
            C::from_f64(x.to_f64())
        } else {
            C::from_f32(x.to_f32())
        }
    } else if T::IS_FLOAT {
        // Through i64 like ATen on x86: narrow integer types wrap.
        C::from_i64(x.to_f64() as i64)
    } else {
        C::from_i64(x.to_i64())
    }
}

/// A dtype-erased read-only view of a tensor's elements (memory order).
#[derive(Clone, Copy)]
pub enum Src<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
    F16(&'a [f16]),
    BF16(&'a [bf16]),
    I8(&'a [i8]),
    I16(&'a [i16]),
    I32(&'a [i32]),
    I64(&'a [i64]),
    /// `Byte` and `Bool`.
    U8(&'a [u8]),
}

impl<'a> Src<'a> {
    pub fn of(t: &TensorRef<'a>) -> Result<Self, KernelError> {
        use ScalarType as S;
        Ok(match t.dtype() {
            S::Float => Src::F32(t.as_slice()?),
            S::Double => Src::F64(t.as_slice()?),
            S::Half => Src::F16(t.as_slice()?),
            S::BFloat16 => Src::BF16(t.as_slice()?),
            S::Char => Src::I8(t.as_slice()?),
            S::Short => Src::I16(t.as_slice()?),
            S::Int => Src::I32(t.as_slice()?),
            S::Long => Src::I64(t.as_slice()?),
            S::Byte | S::Bool => Src::U8(t.as_slice()?),
            other => {
                return Err(KernelError::dtype(format!(
                    "dtype {other} is not supported here"
                )))
            }
        })
    }
    /// Element `i` (memory order) converted to `C`.
    #[inline]
    pub fn get<C: Num>(&self, i: usize) -> C {
        match self {
            Src::F32(s) => convert(s[i]),
            Src::F64(s) => convert(s[i]),
            Src::F16(s) => convert(s[i]),
            Src::BF16(s) => convert(s[i]),
            Src::I8(s) => convert(s[i]),
            Src::I16(s) => convert(s[i]),
            Src::I32(s) => convert(s[i]),
            Src::I64(s) => convert(s[i]),
            Src::U8(s) => convert(s[i]),
        }
    }
    /// Fills `buf` with elements `off, off + stride, ...` converted to `C`.
    #[inline]
    fn gather<C: Num>(&self, off: usize, stride: usize, buf: &mut [C]) {
        match self {
            Src::F32(s) => gather_t(s, off, stride, buf),
            Src::F64(s) => gather_t(s, off, stride, buf),
            Src::F16(s) => gather_t(s, off, stride, buf),
            Src::BF16(s) => gather_t(s, off, stride, buf),
            Src::I8(s) => gather_t(s, off, stride, buf),
            Src::I16(s) => gather_t(s, off, stride, buf),
            Src::I32(s) => gather_t(s, off, stride, buf),
            Src::I64(s) => gather_t(s, off, stride, buf),
            Src::U8(s) => gather_t(s, off, stride, buf),
        }
    }
}

#[inline(always)]
fn gather_t<T: Num, C: Num>(s: &[T], off: usize, stride: usize, buf: &mut [C]) {
    let n = buf.len();
    if n == 0 {
        return;
    }
    if stride == 1 {
        for (b, &x) in buf.iter_mut().zip(&s[off..off + n]) {
            *b = convert(x);
        }
    } else if stride == 0 {
        buf.fill(convert(s[off]));
    } else {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = convert(s[off + i * stride]);
        }
    }
}

/// A dtype-erased writable view of a tensor's elements (memory order). Stores into
/// `Bool` write `value != 0`.
pub enum Dst<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    F16(&'a mut [f16]),
    BF16(&'a mut [bf16]),
    I8(&'a mut [i8]),
    I16(&'a mut [i16]),
    I32(&'a mut [i32]),
    I64(&'a mut [i64]),
    U8(&'a mut [u8]),
    Bool(&'a mut [u8]),
}

impl<'a> Dst<'a> {
    pub fn of(t: &'a mut TensorMut<'_>) -> Result<Self, KernelError> {
        use ScalarType as S;
        Ok(match t.dtype() {
            S::Float => Dst::F32(t.as_mut_slice()?),
            S::Double => Dst::F64(t.as_mut_slice()?),
            S::Half => Dst::F16(t.as_mut_slice()?),
            S::BFloat16 => Dst::BF16(t.as_mut_slice()?),
            S::Char => Dst::I8(t.as_mut_slice()?),
            S::Short => Dst::I16(t.as_mut_slice()?),
            S::Int => Dst::I32(t.as_mut_slice()?),
            S::Long => Dst::I64(t.as_mut_slice()?),
            S::Byte => Dst::U8(t.as_mut_slice()?),
            S::Bool => Dst::Bool(t.as_mut_slice()?),
            other => {
                return Err(KernelError::dtype(format!(
                    "dtype {other} is not supported here"
                )))
            }
        })
    }
    /// Stores `v` at element `i` (memory order).
    #[inline]
    pub fn set<R: Num>(&mut self, i: usize, v: R) {
        match self {
            Dst::F32(s) => s[i] = convert(v),
            Dst::F64(s) => s[i] = convert(v),
            Dst::F16(s) => s[i] = convert(v),
            Dst::BF16(s) => s[i] = convert(v),
            Dst::I8(s) => s[i] = convert(v),
            Dst::I16(s) => s[i] = convert(v),
            Dst::I32(s) => s[i] = convert(v),
            Dst::I64(s) => s[i] = convert(v),
            Dst::U8(s) => s[i] = convert(v),
            Dst::Bool(s) => s[i] = nonzero(v) as u8,
        }
    }
    #[inline]
    fn scatter<R: Num>(&mut self, off: usize, stride: usize, buf: &[R]) {
        match self {
            Dst::F32(s) => scatter_t(s, off, stride, buf, convert),
            Dst::F64(s) => scatter_t(s, off, stride, buf, convert),
            Dst::F16(s) => scatter_t(s, off, stride, buf, convert),
            Dst::BF16(s) => scatter_t(s, off, stride, buf, convert),
            Dst::I8(s) => scatter_t(s, off, stride, buf, convert),
            Dst::I16(s) => scatter_t(s, off, stride, buf, convert),
            Dst::I32(s) => scatter_t(s, off, stride, buf, convert),
            Dst::I64(s) => scatter_t(s, off, stride, buf, convert),
            Dst::U8(s) => scatter_t(s, off, stride, buf, convert),
            Dst::Bool(s) => scatter_t(s, off, stride, buf, |v: R| nonzero(v) as u8),
        }
    }
}

/// C++ `static_cast<bool>`: nonzero (NaN included) is true.
#[inline(always)]
pub fn nonzero<R: Num>(v: R) -> bool {
    if R::IS_FLOAT {
        v.to_f64() != 0.0
    } else {
        v.to_i64() != 0
    }
}

#[inline(always)]
fn scatter_t<T: Num, R: Num>(
    s: &mut [T],
    off: usize,
    stride: usize,
    buf: &[R],
    cv: impl Fn(R) -> T,
) {
    let n = buf.len();
    if n == 0 {
        return;
    }
    if stride == 1 {
        for (d, &x) in s[off..off + n].iter_mut().zip(buf) {
            *d = cv(x);
        }
    } else {
        for (i, &x) in buf.iter().enumerate() {
            s[off + i * stride] = cv(x);
        }
    }
}

/// An iteration plan over an output and `N` inputs: dims in the output's memory order,
/// size-1 dims dropped and mergeable dims coalesced.
#[derive(Clone, Copy, Debug)]
pub struct Plan<const N: usize> {
    pub rank: usize,
    pub dims: [usize; 16],
    pub out: [usize; 16],
    pub ins: [[usize; 16]; N],
}

impl<const N: usize> Plan<N> {
    /// `out_dims`/`out_strides`/`order`: the output; `ins`: input strides aligned to
    /// `out_dims` (0 on broadcast dims, see [`broadcast_strides`]).
    #[allow(clippy::needless_range_loop)]
    pub fn new(
        out_dims: &[usize],
        out_strides: &[usize; 16],
        order: &[u8],
        ins: [[usize; 16]; N],
    ) -> Self {
        let mut p = Plan {
            rank: 0,
            dims: [0; 16],
            out: [0; 16],
            ins: [[0; 16]; N],
        };
        for &d in order {
            let d = d as usize;
            let size = out_dims[d];
            if size == 1 {
                continue;
            }
            let r = p.rank;
            if r > 0 {
                // Merge with the previous (outer) dim when it steps exactly over this one.
                let prev = r - 1;
                let ok = p.out[prev] == out_strides[d] * size
                    && (0..N).all(|k| p.ins[k][prev] == ins[k][d] * size);
                if ok {
                    p.dims[prev] *= size;
                    p.out[prev] = out_strides[d];
                    for k in 0..N {
                        p.ins[k][prev] = ins[k][d];
                    }
                    continue;
                }
            }
            p.dims[r] = size;
            p.out[r] = out_strides[d];
            for k in 0..N {
                p.ins[k][r] = ins[k][d];
            }
            p.rank += 1;
        }
        if p.rank == 0 {
            // A single element (or a rank-0 tensor).
            p.rank = 1;
            p.dims[0] = out_dims.iter().product();
            p.out[0] = 1;
        }
        p
    }

    /// True when the plan is one dense run: output stride 1 and every input stride 0 or 1.
    pub fn is_flat(&self) -> bool {
        self.rank == 1
            && (self.dims[0] <= 1 || (self.out[0] == 1 && self.ins.iter().all(|s| s[0] <= 1)))
    }
}

/// Output shape of an elementwise op over `ins` (numpy broadcasting).
pub fn broadcast_all(ins: &[&TensorRef<'_>]) -> Result<([usize; 16], usize), KernelError> {
    let mut shape = [0usize; 16];
    let mut rank = 0;
    for t in ins {
        let (s, r) = broadcast_shapes(&shape[..rank], t.sizes())?;
        shape = s;
        rank = r;
    }
    Ok((shape, rank))
}

const BLK: usize = 128;
/// Elementwise work above this many elements is split across threads.
pub const PAR_MIN: usize = 1 << 16;

/// Splits `out` into up to 16 chunks processed in parallel by `f(start, chunk)`
/// (serially below [`PAR_MIN`] elements). No allocation.
pub fn par_chunks<R: Send>(out: &mut [R], min_chunk: usize, f: impl Fn(usize, &mut [R]) + Sync) {
    let n = out.len();
    let nt = pteron_linalg::num_threads().clamp(1, 16);
    if n < PAR_MIN.max(2 * min_chunk) || nt <= 1 {
        f(0, out);
        return;
    }
    let chunk = n.div_ceil(nt).next_multiple_of(64).max(min_chunk);
    let tasks = n.div_ceil(chunk);
    let mut it = out.chunks_mut(chunk);
    let slots: [std::sync::Mutex<Option<&mut [R]>>; 16] =
        core::array::from_fn(|_| std::sync::Mutex::new(it.next()));
    pteron_linalg::parallel_for(tasks, |t| {
        if let Some(slot) = slots.get(t) {
            if let Ok(mut g) = slot.lock() {
                if let Some(d) = g.take() {
                    f(t * chunk, d);
                }
            }
        }
    });
}

/// The general elementwise engine: `out[i] = f([in_0[i], ..., in_{N-1}[i]])` over the
/// broadcast of the inputs, each loaded as `C` and the result `R` stored into `out`'s
/// dtype. Resizes `out` to the broadcast shape. Handles any dim orders and dtypes;
/// takes a direct typed path when every operand already has the compute dtype and
/// the layout is one dense run (same-shape or scalar-broadcast).
pub fn map_n<const N: usize, C: Num + Send + Sync, R: Num + Send + Sync>(
    out: &mut TensorMut<'_>,
    ins: [&TensorRef<'_>; N],
    f: impl Fn([C; N]) -> R + Sync,
) -> Result<(), KernelError> {
    if let Some((lead, how, period)) = dense_operands(&ins) {
        if ins.iter().all(|t| t.dtype() == C::DTYPE) && out.dtype() == R::DTYPE {
            out.resize(ins[lead].sizes())?;
            if out.is_contiguous() {
                // What the general path below computes for these cases (one flat
                // plan, or one dense run per repeat of the `Row` operands), without
                // building the broadcast plan.
                let mut srcs: [&[C]; N] = [&[]; N];
                for k in 0..N {
                    srcs[k] = ins[k].as_slice::<C>()?;
                }
                let st: [usize; N] = core::array::from_fn(|k| (how[k] != Read::One) as usize);
                let dst = out.as_mut_slice::<R>()?;
                if period == 0 {
                    par_chunks(dst, 1024, |start, d| flat_run(&srcs, &st, start, d, &f));
                } else {
                    for (r, d) in dst.chunks_mut(period).enumerate() {
                        let sub: [&[C]; N] = core::array::from_fn(|k| match how[k] {
                            Read::Full => &srcs[k][r * period..],
                            _ => srcs[k],
                        });
                        flat_run(&sub, &st, 0, d, &f);
                    }
                }
                return Ok(());
            }
        }
    }
    let (shape, rank) = broadcast_all(&ins)?;
    let dims = &shape[..rank];
    out.resize(dims)?;
    let numel: usize = dims.iter().product();
    if numel == 0 {
        return Ok(());
    }
    let ostr = out.strides();
    let order = out.dim_order();
    let mut istr = [[0usize; 16]; N];
    for k in 0..N {
        istr[k] = broadcast_strides(ins[k], dims);
    }
    let plan = Plan::new(dims, &ostr, order.as_slice(), istr);
    let native = ins.iter().all(|t| t.dtype() == C::DTYPE) && out.dtype() == R::DTYPE;
    if native && plan.is_flat() {
        let mut srcs: [&[C]; N] = [&[]; N];
        for k in 0..N {
            srcs[k] = ins[k].as_slice::<C>()?;
        }
        let dst = out.as_mut_slice::<R>()?;
        let st: [usize; N] = core::array::from_fn(|k| plan.ins[k][0]);
        par_chunks(dst, 1024, |start, d| flat_run(&srcs, &st, start, d, &f));
        return Ok(());
    }
    if native {
        let mut srcs: [&[C]; N] = [&[]; N];
        for k in 0..N {
            srcs[k] = ins[k].as_slice::<C>()?;
        }
        typed_strided_run(&plan, &srcs, out.as_mut_slice::<R>()?, &f);
        return Ok(());
    }
    let mut srcs: [Option<Src<'_>>; N] = [None; N];
    for k in 0..N {
        srcs[k] = Some(Src::of(ins[k])?);
    }
    let mut dst = Dst::of(out)?;
    strided_run(&plan, &srcs, &mut dst, &f);
    Ok(())
}

/// How an operand of a dense elementwise op is read (see [`dense_operands`]).
#[derive(Clone, Copy, PartialEq)]
enum Read {
    /// A single element, read for every output.
    One,
    /// The whole output's shape: element `i` for output `i`.
    Full,
    /// A trailing block of the output's shape repeated over its leading dims:
    /// element `i % period`.
    Row,
}

/// The common case of elementwise ops on small tensors: every operand is contiguous
/// and has the shape of the highest-rank operand (up to leading 1s), or is a single
/// element of no higher rank, or (below [`PAR_MIN`] elements) is a trailing block of
/// that shape repeated over its leading dims (a rotary table against `[.., heads, d]`).
/// Returns that operand's index (its sizes are the broadcast shape), how each operand
/// is read and the block length of `Row` operands (0 if none). `None` for anything
/// else, including all-single-element operands.
fn dense_operands<const N: usize>(ins: &[&TensorRef<'_>; N]) -> Option<(usize, [Read; N], usize)> {
    let lead = (0..N)
        .filter(|&k| ins[k].numel() != 1)
        .max_by_key(|&k| (ins[k].dim(), ins[k].numel()))?;
    let numel = ins[lead].numel();
    if numel == 0 {
        return None;
    }
    let strip = |d: &[usize]| -> usize { d.iter().take_while(|&&x| x == 1).count() };
    let ld = ins[lead].sizes();
    let core = &ld[strip(ld)..];
    let mut how = [Read::One; N];
    let mut period = 0;
    for k in 0..N {
        let t = ins[k];
        if t.dim() > ld.len() {
            return None;
        }
        if t.numel() == 1 {
            continue;
        }
        if !t.is_contiguous() {
            return None;
        }
        let d = t.sizes();
        let d = &d[strip(d)..];
        if d == core {
            how[k] = Read::Full;
        } else if d.len() < core.len() && core.ends_with(d) && numel < PAR_MIN {
            if period != 0 && period != t.numel() {
                return None;
            }
            period = t.numel();
            how[k] = Read::Row;
        } else {
            return None;
        }
    }
    Some((lead, how, period))
}

/// [`strided_run`] when every operand already has its compute dtype: the typed
/// slices are indexed directly (no gather/scatter through byte buffers), which is
/// what small broadcasts (rotary embeddings, norms) cost per call.
fn typed_strided_run<const N: usize, C: Num, R: Num>(
    plan: &Plan<N>,
    srcs: &[&[C]; N],
    dst: &mut [R],
    f: &impl Fn([C; N]) -> R,
) {
    let last = plan.rank - 1;
    let len = plan.dims[last];
    let outer: usize = plan.dims[..last].iter().product();
    let os = plan.out[last];
    let is: [usize; N] = core::array::from_fn(|k| plan.ins[k][last]);
    let mut cur = Cursor::<N>::default();
    for _ in 0..outer {
        let (o0, i0) = (cur.ooff, cur.ioff);
        if os == 1 && is.iter().all(|&s| s <= 1) {
            // A dense run (inputs contiguous or broadcast along it).
            let sub: [&[C]; N] = core::array::from_fn(|k| &srcs[k][i0[k]..]);
            flat_run(&sub, &is, 0, &mut dst[o0..o0 + len], f);
        } else {
            for i in 0..len {
                dst[o0 + i * os] = f(core::array::from_fn(|k| srcs[k][i0[k] + i * is[k]]));
            }
        }
        cur.advance(plan);
    }
}

/// The outer multi-index of a [`Plan`] walk (every dim but the innermost) and the
/// element offsets it stands for in the output and in each input.
struct Cursor<const N: usize> {
    idx: [usize; 16],
    ooff: usize,
    ioff: [usize; N],
}

impl<const N: usize> Default for Cursor<N> {
    fn default() -> Self {
        Cursor {
            idx: [0; 16],
            ooff: 0,
            ioff: [0; N],
        }
    }
}

impl<const N: usize> Cursor<N> {
    /// Steps to the next outer index (odometer order, innermost outer dim fastest).
    fn advance(&mut self, plan: &Plan<N>) {
        let mut d = plan.rank - 1;
        while d > 0 {
            d -= 1;
            self.idx[d] += 1;
            self.ooff += plan.out[d];
            for k in 0..N {
                self.ioff[k] += plan.ins[k][d];
            }
            if self.idx[d] < plan.dims[d] {
                break;
            }
            self.ooff -= plan.out[d] * plan.dims[d];
            for k in 0..N {
                self.ioff[k] -= plan.ins[k][d] * plan.dims[d];
            }
            self.idx[d] = 0;
        }
    }
}

/// Dense run: inputs with stride 1 are read directly, stride-0 ones are scalars.
#[inline(always)]
fn flat_run<const N: usize, C: Num, R: Num>(
    srcs: &[&[C]; N],
    st: &[usize; N],
    start: usize,
    d: &mut [R],
    f: &impl Fn([C; N]) -> R,
) {
    let n = d.len();
    if N == 1 {
        if st[0] == 1 {
            for (o, &x) in d.iter_mut().zip(&srcs[0][start..start + n]) {
                *o = f(core::array::from_fn(|_| x));
            }
        } else {
            let v = f(core::array::from_fn(|_| srcs[0][0]));
            d.fill(v);
        }
        return;
    }
    if N == 2 {
        let (a, b) = (srcs[0], srcs[1]);
        match (st[0], st[1]) {
            (1, 1) => {
                for ((o, &x), &y) in d
                    .iter_mut()
                    .zip(&a[start..start + n])
                    .zip(&b[start..start + n])
                {
                    *o = f(core::array::from_fn(|k| if k == 0 { x } else { y }));
                }
            }
            (1, _) => {
                let y = b[0];
                for (o, &x) in d.iter_mut().zip(&a[start..start + n]) {
                    *o = f(core::array::from_fn(|k| if k == 0 { x } else { y }));
                }
            }
            (_, 1) => {
                let x = a[0];
                for (o, &y) in d.iter_mut().zip(&b[start..start + n]) {
                    *o = f(core::array::from_fn(|k| if k == 0 { x } else { y }));
                }
            }
            _ => {
                let v = f(core::array::from_fn(|k| if k == 0 { a[0] } else { b[0] }));
                d.fill(v);
            }
        }
        return;
    }
    for (i, o) in d.iter_mut().enumerate() {
        let j = start + i;
        *o = f(core::array::from_fn(|k| srcs[k][j * st[k]]));
    }
}

/// The general strided path: rows of the innermost planned dim are gathered into
/// blocks of `C`, computed, and scattered into the output.
#[allow(clippy::needless_range_loop)]
fn strided_run<const N: usize, C: Num, R: Num>(
    plan: &Plan<N>,
    srcs: &[Option<Src<'_>>; N],
    dst: &mut Dst<'_>,
    f: &impl Fn([C; N]) -> R,
) {
    let rank = plan.rank;
    let last = rank - 1;
    let len = plan.dims[last];
    let outer: usize = plan.dims[..last].iter().product();
    let mut bufs = [[C::zero(); BLK]; N];
    let mut obuf = [R::zero(); BLK];
    let mut cur = Cursor::<N>::default();
    for _ in 0..outer {
        let (ooff, ioff) = (cur.ooff, cur.ioff);
        let mut s = 0;
        while s < len {
            let m = (len - s).min(BLK);
            for k in 0..N {
                if let Some(src) = &srcs[k] {
                    src.gather(
                        ioff[k] + s * plan.ins[k][last],
                        plan.ins[k][last],
                        &mut bufs[k][..m],
                    );
                }
            }
            for i in 0..m {
                obuf[i] = f(core::array::from_fn(|k| bufs[k][i]));
            }
            dst.scatter(ooff + s * plan.out[last], plan.out[last], &obuf[..m]);
            s += m;
        }
        cur.advance(plan);
    }
}

/// `out = f(x)` elementwise (see [`map_n`]).
pub fn map1<C: Num + Send + Sync, R: Num + Send + Sync>(
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    f: impl Fn(C) -> R + Sync,
) -> Result<(), KernelError> {
    map_n(out, [x], |[a]: [C; 1]| f(a))
}

/// `out = f(a, b)` elementwise with broadcasting (see [`map_n`]).
pub fn map2<C: Num + Send + Sync, R: Num + Send + Sync>(
    out: &mut TensorMut<'_>,
    a: &TensorRef<'_>,
    b: &TensorRef<'_>,
    f: impl Fn(C, C) -> R + Sync,
) -> Result<(), KernelError> {
    map_n(out, [a, b], |[x, y]: [C; 2]| f(x, y))
}

/// `out = f(a, b, c)` elementwise with broadcasting (see [`map_n`]).
pub fn map3<C: Num + Send + Sync, R: Num + Send + Sync>(
    out: &mut TensorMut<'_>,
    a: &TensorRef<'_>,
    b: &TensorRef<'_>,
    c: &TensorRef<'_>,
    f: impl Fn(C, C, C) -> R + Sync,
) -> Result<(), KernelError> {
    map_n(out, [a, b, c], |[x, y, z]: [C; 3]| f(x, y, z))
}

/// Copies `src` into `out` (resized to `src`'s shape) converting dtypes and dim orders.
pub fn copy_convert(out: &mut TensorMut<'_>, src: &TensorRef<'_>) -> Result<(), KernelError> {
    copy_broadcast(out, src, src.sizes())
}

/// Copies `src` broadcast to `sizes` into `out` (resized to `sizes`), converting the
/// dtype (C++ `static_cast`) and the dim order. Same-dtype same-layout copies are memcpy.
pub fn copy_broadcast(
    out: &mut TensorMut<'_>,
    src: &TensorRef<'_>,
    sizes: &[usize],
) -> Result<(), KernelError> {
    let (n, r) = (sizes.len(), src.dim());
    let fits = r <= n && (0..r).all(|i| src.size(i) == 1 || src.size(i) == sizes[n - r + i]);
    if !fits {
        return Err(KernelError::invalid(format!(
            "cannot broadcast a tensor of shape {:?} to {sizes:?}",
            src.sizes()
        )));
    }
    out.resize(sizes)?;
    if out.numel() == 0 {
        return Ok(());
    }
    if out.dtype() == src.dtype()
        && src.sizes() == sizes
        && (src.dim_order() == out.dim_order() || src.numel() == 1)
    {
        out.bytes_mut().copy_from_slice(src.bytes());
        return Ok(());
    }
    let ostr = out.strides();
    let order = out.dim_order();
    let istr = broadcast_strides(src, sizes);
    let plan = Plan::new(sizes, &ostr, order.as_slice(), [istr]);
    let s = Src::of(src)?;
    let mut d = Dst::of(out)?;
    // Compute type wide enough to carry any value exactly between the supported dtypes.
    if src.dtype().is_floating() {
        strided_run(&plan, &[Some(s)], &mut d, &|[x]: [f64; 1]| x);
    } else {
        strided_run(&plan, &[Some(s)], &mut d, &|[x]: [i64; 1]| x);
    }
    Ok(())
}

/// A scalar converted to dtype `dt` first (wrapping/rounding like `scalar.to<T>()`),
/// then to the compute type `C`.
pub fn scalar_as<C: Num>(s: Scalar, dt: ScalarType) -> C {
    use ScalarType as S;
    match dt {
        S::Float => convert(scalar_to::<f32>(s)),
        S::Double => convert(scalar_to::<f64>(s)),
        S::Half => convert(scalar_to::<f16>(s)),
        S::BFloat16 => convert(scalar_to::<bf16>(s)),
        S::Char => convert(scalar_to::<i8>(s)),
        S::Short => convert(scalar_to::<i16>(s)),
        S::Int => convert(scalar_to::<i32>(s)),
        S::Long => convert(scalar_to::<i64>(s)),
        S::Byte => convert(scalar_to::<u8>(s)),
        S::Bool => C::from_i64((scalar_to::<f64>(s) != 0.0) as i64),
        _ => scalar_to(s),
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
        assert_eq!(
            seen,
            vec![
                (0, 0, 0),
                (1, 1, 1),
                (2, 2, 2),
                (3, 3, 0),
                (4, 4, 1),
                (5, 5, 2)
            ]
        );
    }
}
