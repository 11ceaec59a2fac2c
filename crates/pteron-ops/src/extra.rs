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
    reg.register("aten::_cdist_forward.out", cdist_forward_out);
    reg.register("aten::_pdist_forward.out", pdist_forward_out);
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

// ---------------------------------------------------------------------------
// cdist / pdist

/// The p-norm reduction of ATen's distance kernels.
#[derive(Clone, Copy)]
enum Norm {
    Zero,
    One,
    Two,
    Inf,
    P(f64),
}

impl Norm {
    fn of(op: &str, p: f64) -> Result<Self, KernelError> {
        if p.is_nan() || p < 0.0 {
            return Err(KernelError::invalid(format!(
                "{op}: only non-negative p values are supported, got {p}"
            )));
        }
        Ok(if p == 0.0 {
            Norm::Zero
        } else if p == 1.0 {
            Norm::One
        } else if p == 2.0 {
            Norm::Two
        } else if p.is_infinite() {
            Norm::Inf
        } else {
            Norm::P(p)
        })
    }

    /// Distance between `m` pairs of elements read by `pair(k)`.
    #[inline]
    fn dist(self, m: usize, pair: impl Fn(usize) -> (f64, f64)) -> f64 {
        let mut agg = 0.0f64;
        match self {
            Norm::Zero => {
                for k in 0..m {
                    let (a, b) = pair(k);
                    agg += ((a - b).abs() != 0.0) as u8 as f64;
                }
                agg
            }
            Norm::One => {
                for k in 0..m {
                    let (a, b) = pair(k);
                    agg += (a - b).abs();
                }
                agg
            }
            Norm::Two => {
                for k in 0..m {
                    let (a, b) = pair(k);
                    agg += (a - b) * (a - b);
                }
                agg.sqrt()
            }
            Norm::Inf => {
                for k in 0..m {
                    let (a, b) = pair(k);
                    let d = (a - b).abs();
                    // NaN propagates like ATen's `max`.
                    if d.is_nan() || d > agg || agg.is_nan() {
                        agg = if agg.is_nan() { agg } else { d };
                    }
                }
                agg
            }
            Norm::P(p) => {
                for k in 0..m {
                    let (a, b) = pair(k);
                    agg += (a - b).abs().powf(p);
                }
                agg.powf(1.0 / p)
            }
        }
    }
}

/// Fails unless `dt` is `f32` or `f64` (ATen's distance kernels have no half variant).
fn need_f32_f64(op: &str, what: &str, dt: ScalarType) -> Result<(), KernelError> {
    match dt {
        ScalarType::Float | ScalarType::Double => Ok(()),
        other => Err(KernelError::dtype(format!(
            "{op}: {what} has dtype {other}, expected Float or Double"
        ))),
    }
}

/// `_cdist_forward.out(Tensor x1, Tensor x2, float p, int? compute_mode, *, Tensor(a!)
/// out)`: `[x1, x2, p, compute_mode, out, ret]`. `x1: [*, P, M]`, `x2: [*, R, M]`
/// (batch dims broadcast) give `out: [*, P, R]`. For `p = 2`, compute modes 0 (with
/// `P > 25` or `R > 25`) and 1 use ATen's matrix-product form
/// `sqrt(max(|a|^2 + |b|^2 - 2 a.b, 0))`.
fn cdist_forward_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_cdist_forward";
    ctx.expect_args(6)?;
    let mut out = ctx.out(4)?;
    let x1 = ctx.tensor(0)?;
    let x2 = ctx.tensor(1)?;
    let p = ctx.double(2)?;
    let mode = ctx.opt_int(3)?.unwrap_or(0);
    need_f32_f64(OP, "x1", x1.dtype())?;
    same_dtype(OP, "x2", x2.dtype(), x1.dtype())?;
    same_dtype(OP, "out", out.dtype(), x1.dtype())?;
    let norm = Norm::of(OP, p)?;
    if !(0..=2).contains(&mode) {
        return Err(KernelError::invalid(format!(
            "{OP}: compute_mode must be 0, 1 or 2, got {mode}"
        )));
    }
    let (r1, r2) = (x1.dim(), x2.dim());
    if r1 < 2 || r2 < 2 {
        return Err(KernelError::invalid(format!(
            "{OP}: x1 and x2 must be at least 2-D, got shapes {:?} and {:?}",
            x1.sizes(),
            x2.sizes()
        )));
    }
    let m = x1.size(r1 - 1);
    if x2.size(r2 - 1) != m {
        return Err(KernelError::invalid(format!(
            "{OP}: x1 and x2 must have the same number of columns, got {} and {}",
            m,
            x2.size(r2 - 1)
        )));
    }
    let (np, nr) = (x1.size(r1 - 2), x2.size(r2 - 2));
    let (bd, nb) = crate::util::broadcast_shapes(&x1.sizes()[..r1 - 2], &x2.sizes()[..r2 - 2])?;
    if nb + 2 > 16 {
        return Err(KernelError::invalid(format!("{OP}: rank above 16")));
    }
    let mut od = [0usize; 16];
    od[..nb].copy_from_slice(&bd[..nb]);
    od[nb] = np;
    od[nb + 1] = nr;
    out.resize(&od[..nb + 2])?;
    // Batch strides aligned to the broadcast batch shape (0 where broadcast).
    let align = |t: &TensorRef<'_>| {
        let st = t.strides();
        let r = t.dim() - 2;
        let mut a = [0usize; 16];
        for (i, (&sz, &s)) in t.sizes()[..r].iter().zip(st.iter()).enumerate() {
            a[nb - r + i] = if sz == 1 { 0 } else { s };
        }
        a
    };
    let (s1, s2) = (align(&x1), align(&x2));
    let (st1, st2) = (x1.strides(), x2.strides());
    let (p1, k1, p2, k2) = (st1[r1 - 2], st1[r1 - 1], st2[r2 - 2], st2[r2 - 1]);
    let so = strides_of_mut(&out);
    let (sp, sr) = (so[nb], so[nb + 1]);
    let mm = matches!(norm, Norm::Two) && (mode == 1 || (mode == 0 && (np > 25 || nr > 25)));
    dispatch_float!(x1.dtype(), T => {
        let a = slice::<T>(&x1)?;
        let b = slice::<T>(&x2)?;
        let y = slice_mut::<T>(&mut out)?;
        for_each_index(&bd[..nb], [&s1, &s2, &so], |_, [o1, o2, oo]| {
            for i in 0..np {
                let ra = o1 + i * p1;
                for j in 0..nr {
                    let rb = o2 + j * p2;
                    let pair = |k: usize| (a[ra + k * k1].to_f64(), b[rb + k * k2].to_f64());
                    let d = if mm {
                        let (mut na, mut nb_, mut dot) = (0.0f64, 0.0f64, 0.0f64);
                        for k in 0..m {
                            let (u, v) = pair(k);
                            na += u * u;
                            nb_ += v * v;
                            dot += u * v;
                        }
                        (na + nb_ - 2.0 * dot).max(0.0).sqrt()
                    } else {
                        norm.dist(m, pair)
                    };
                    y[oo + i * sp + j * sr] = T::from_f64(d);
                }
            }
        });
    });
    Ok(())
}

/// `_pdist_forward.out(Tensor self, float p=2., *, Tensor(a!) out)`: `[self, p, out,
/// ret]`. `self: [N, M]` gives the `N (N - 1) / 2` distances of rows `i < j`, in order.
fn pdist_forward_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_pdist_forward";
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let p = ctx.double(1)?;
    need_f32_f64(OP, "self", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let norm = Norm::of(OP, p)?;
    if x.dim() != 2 {
        return Err(KernelError::invalid(format!(
            "{OP}: self must be 2-D, got shape {:?}",
            x.sizes()
        )));
    }
    let (n, m) = (x.size(0), x.size(1));
    let count = if n < 2 { 0 } else { n * (n - 1) / 2 };
    out.resize(&[count])?;
    let st = x.strides();
    dispatch_float!(x.dtype(), T => {
        let a = slice::<T>(&x)?;
        let y = slice_mut::<T>(&mut out)?;
        let mut idx = 0;
        for i in 0..n {
            for j in i + 1..n {
                let pair = |k: usize| (a[i * st[0] + k * st[1]].to_f64(), a[j * st[0] + k * st[1]].to_f64());
                y[idx] = T::from_f64(norm.dist(m, pair));
                idx += 1;
            }
        }
    });
    Ok(())
}
