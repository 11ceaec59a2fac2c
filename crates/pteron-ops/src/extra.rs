//! Less common portable operators: `glu`, `native_dropout` (inference), the
//! `et_copy` host/device copies, `_cdist_forward`, `_pdist_forward` and
//! `grid_sampler_2d`. All read and write through strides, so any dim order is
//! accepted. See the crate docs for conventions.

use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use crate::dispatch_float;
use crate::nn::{need_float, same_dtype, slice, slice_mut};
use crate::util::{copy_convert, for_each_index, norm_dim, Num};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::glu.out", glu_out);
    reg.register("aten::native_dropout.out", native_dropout_out);
    reg.register("et_copy::_h2d_copy.out", device_copy_out);
    reg.register("et_copy::_d2h_copy.out", device_copy_out);
}

/// Strides of `t` (logical dims) in a fixed-size array.
fn strides_of(t: &TensorRef<'_>) -> [usize; 16] {
    let s = t.strides();
    let mut a = [0usize; 16];
    for (d, v) in a.iter_mut().zip(s.iter()).take(t.dim()) {
        *d = *v;
    }
    a
}

fn strides_of_mut(t: &TensorMut<'_>) -> [usize; 16] {
    let s = t.strides();
    let mut a = [0usize; 16];
    for (d, v) in a.iter_mut().zip(s.iter()).take(t.dim()) {
        *d = *v;
    }
    a
}

// ---------------------------------------------------------------------------
// glu

/// `glu.out(Tensor self, int dim=-1, *, Tensor(a!) out)`: `[self, dim, out, ret]`.
/// `out = a * sigmoid(b)` where `a, b` are the two halves of `self` along `dim`.
fn glu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "glu";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let dim = ctx.int(1)?;
    need_float(OP, "self", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    if x.dim() == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: glu does not support scalars because halving size must be even"
        )));
    }
    let d = norm_dim(dim, x.dim())?;
    let full = x.size(d);
    if full % 2 != 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: halving dimension must be even, but dimension {d} is size {full}"
        )));
    }
    let half = full / 2;
    let mut dims = [0usize; 16];
    let r = x.dim();
    dims[..r].copy_from_slice(x.sizes());
    dims[d] = half;
    out.resize(&dims[..r])?;
    let xs = strides_of(&x);
    let os = strides_of_mut(&out);
    let boff = half * xs[d];
    let single = x.dtype() != ScalarType::Double;
    dispatch_float!(x.dtype(), T => {
        let src = slice::<T>(&x)?;
        let dst = slice_mut::<T>(&mut out)?;
        if single {
            for_each_index(&dims[..r], [&os, &xs], |_, [o, i]| {
                let a = src[i].to_f32();
                let b = src[i + boff].to_f32();
                dst[o] = T::from_f32(a * (1.0 / (1.0 + (-b).exp())));
            });
        } else {
            for_each_index(&dims[..r], [&os, &xs], |_, [o, i]| {
                let a = src[i].to_f64();
                let b = src[i + boff].to_f64();
                dst[o] = T::from_f64(a * (1.0 / (1.0 + (-b).exp())));
            });
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// native_dropout

/// `native_dropout.out(Tensor input, float p, bool? train, *, Tensor(a!) out0,
/// Tensor(b!) out1)`: `[input, p, train, out0, out1, ret]`. Only inference
/// (`train=False`): `out0 = input`, `out1` (Bool mask) all true.
fn native_dropout_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "native_dropout";
    ctx.expect_args(6)?;
    let p = ctx.double(1)?;
    let train = ctx.opt_bool(2)?;
    if !(0.0..=1.0).contains(&p) {
        return Err(KernelError::invalid(format!(
            "{OP}: dropout probability has to be between 0 and 1, but got {p}"
        )));
    }
    if train != Some(false) {
        return Err(KernelError::unsupported(format!(
            "{OP}: training-mode dropout (train={train:?}) is not supported: its results are \
             random; export the model in eval mode"
        )));
    }
    let mut out0 = ctx.out(3)?;
    let mut mask = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, "out0", out0.dtype(), x.dtype())?;
    if mask.dtype() != ScalarType::Bool {
        return Err(KernelError::dtype(format!(
            "{OP}: out1 (mask) has dtype {}, expected Bool",
            mask.dtype()
        )));
    }
    copy_convert(&mut out0, &x)?;
    mask.resize(x.sizes())?;
    slice_mut::<u8>(&mut mask)?.fill(1);
    Ok(())
}

// ---------------------------------------------------------------------------
// et_copy

/// `_h2d_copy.out(Tensor self, *, Tensor(a!) out)` / `_d2h_copy.out`: `[self, out,
/// ret]`. On a CPU-only runtime both are plain copies (out resized to `self`).
fn device_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "et_copy";
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    copy_convert(&mut out, &x)
}
