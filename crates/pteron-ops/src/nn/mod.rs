//! Neural-network kernels: convolution, matrix products, pooling, normalisation,
//! softmax, resampling/padding and embedding. See the crate docs for conventions.
//!
//! Heavy `f32` work goes through `pteron-linalg` (packed GEMM, prepared `Conv2d`,
//! vectorised `exp`); other dtypes use straightforward reference loops that
//! compute in `f64` (or `f32` for half types) and round once, like ATen.

use pteron_runtime::{IntList, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use crate::util::Num;

mod conv;
mod matmul;
mod norm;
mod pool;
mod resample;
mod softmax;

pub(crate) fn register(reg: &mut Registry) {
    conv::register(reg);
    matmul::register(reg);
    pool::register(reg);
    norm::register(reg);
    softmax::register(reg);
    resample::register(reg);
}

// ---------------------------------------------------------------------------
// Shared helpers (candidates for `util.rs`).

/// Fails unless `t` has dtype `want`.
pub(crate) fn same_dtype(
    op: &str,
    what: &str,
    got: ScalarType,
    want: ScalarType,
) -> Result<(), KernelError> {
    if got != want {
        return Err(KernelError::dtype(format!(
            "{op}: {what} has dtype {got}, expected {want}"
        )));
    }
    Ok(())
}

/// Fails unless `dt` is a floating dtype.
pub(crate) fn need_float(op: &str, what: &str, dt: ScalarType) -> Result<(), KernelError> {
    match dt {
        ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16 => Ok(()),
        other => Err(KernelError::dtype(format!(
            "{op}: {what} has dtype {other}, expected a floating dtype"
        ))),
    }
}

/// Reads an `int[]` of spatial parameters: `n` entries, a single entry repeated
/// `n` times, or (when `default` is given) an empty list meaning `default`.
/// Values must be `>= min`.
pub(crate) fn spatial_list(
    l: IntList<'_>,
    n: usize,
    default: Option<[usize; 3]>,
    min: i64,
    op: &str,
    what: &str,
) -> Result<[usize; 3], KernelError> {
    let (vals, len) = l.to_array()?;
    let mut out = [0usize; 3];
    if len == 0 {
        if let Some(d) = default {
            return Ok(d);
        }
    }
    if len != n && len != 1 {
        return Err(KernelError::invalid(format!(
            "{op}: {what} must have 1 or {n} entries, got {len}"
        )));
    }
    for (k, o) in out.iter_mut().enumerate().take(n) {
        let v = if len == 1 { vals[0] } else { vals[k] };
        if v < min {
            return Err(KernelError::invalid(format!(
                "{op}: {what} entries must be >= {min}, got {v}"
            )));
        }
        *o = v as usize;
    }
    Ok(out)
}

/// Calls `f(index)` for every multi-index of `dims` in row-major order.
pub(crate) fn for_each_multi(dims: &[usize], mut f: impl FnMut(&[usize])) {
    if dims.contains(&0) {
        return;
    }
    let rank = dims.len();
    let mut idx = [0usize; 16];
    loop {
        f(&idx[..rank]);
        let mut d = rank;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            if idx[d] < dims[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// Dot product of a multi-index with strides.
#[inline]
pub(crate) fn offset(idx: &[usize], strides: &[usize]) -> usize {
    idx.iter().zip(strides).map(|(i, s)| i * s).sum()
}

/// Copies the logical contents of `src` (any dim order, `f32`-convertible dtype)
/// into `dst` in contiguous order as `f32`.
pub(crate) fn to_f32_contiguous(src: &TensorRef<'_>, dst: &mut [f32]) -> Result<(), KernelError> {
    let n = src.numel();
    if dst.len() < n {
        return Err(KernelError::internal(format!(
            "scratch of {} elements is too small for {n}",
            dst.len()
        )));
    }
    let dims = src.sizes();
    let st = src.strides();
    crate::dispatch_float!(src.dtype(), T => {
        let s = slice::<T>(src)?;
        if src.is_contiguous() {
            for (d, v) in dst.iter_mut().zip(s) {
                *d = v.to_f32();
            }
        } else {
            let mut k = 0;
            for_each_multi(dims, |idx| {
                dst[k] = s[offset(idx, &st[..dims.len()])].to_f32();
                k += 1;
            });
        }
    });
    Ok(())
}

/// Copies contiguous `f32` values `src` into `out` (its current shape, any dim
/// order, floating dtype).
pub(crate) fn from_f32_contiguous(src: &[f32], out: &mut TensorMut<'_>) -> Result<(), KernelError> {
    let shape = out.shape();
    let dims = shape.dims();
    let st = out.strides();
    let contiguous = out.is_contiguous();
    crate::dispatch_float!(out.dtype(), T => {
        let d = slice_mut::<T>(out)?;
        if contiguous {
            for (o, v) in d.iter_mut().zip(src) {
                *o = T::from_f32(*v);
            }
        } else {
            let mut k = 0;
            for_each_multi(dims, |idx| {
                d[offset(idx, &st[..dims.len()])] = T::from_f32(src[k]);
                k += 1;
            });
        }
    });
    Ok(())
}

/// Resizes an auxiliary output to `sizes`; ignores a failure when the tensor
/// cannot change shape but its element count is zero either way.
pub(crate) fn resize_aux(t: &mut TensorMut<'_>, sizes: &[usize]) -> Result<(), KernelError> {
    match t.resize(sizes) {
        Ok(()) => Ok(()),
        Err(_) if t.numel() == 0 && sizes.iter().product::<usize>() == 0 => Ok(()),
        Err(e) => Err(e),
    }
}

/// The elements of `t` in memory order; an empty tensor gives an empty slice
/// (its storage may be unaligned).
pub(crate) fn slice<'a, T: pteron_runtime::Element>(
    t: &TensorRef<'a>,
) -> Result<&'a [T], KernelError> {
    if t.numel() == 0 {
        if !T::matches(t.dtype()) {
            return Err(KernelError::dtype(format!(
                "tensor of dtype {} viewed as {}",
                t.dtype(),
                T::DTYPE
            )));
        }
        return Ok(&[]);
    }
    t.as_slice::<T>()
}

/// Mutable counterpart of [`slice`].
pub(crate) fn slice_mut<'a, T: pteron_runtime::Element>(
    t: &'a mut TensorMut<'_>,
) -> Result<&'a mut [T], KernelError> {
    if t.numel() == 0 {
        if !T::matches(t.dtype()) {
            return Err(KernelError::dtype(format!(
                "tensor of dtype {} viewed as {}",
                t.dtype(),
                T::DTYPE
            )));
        }
        return Ok(&mut []);
    }
    t.as_mut_slice::<T>()
}
