//! Less common portable operators: `glu`, `native_dropout` (inference), the
//! `et_copy` host/device copies, `_cdist_forward`, `_pdist_forward` and
//! `grid_sampler_2d`. All read and write through strides, so any dim order is
//! accepted. See the crate docs for conventions.

use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use crate::dispatch_float;
use crate::nn::{need_float, same_dtype, slice, slice_mut, spatial_list};
use crate::util::{copy_convert, for_each_index, norm_dim, Num};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::glu.out", glu_out);
    reg.register("aten::native_dropout.out", native_dropout_out);
    reg.register("et_copy::_h2d_copy.out", device_copy_out);
    reg.register("et_copy::_d2h_copy.out", device_copy_out);
    reg.register("aten::_cdist_forward.out", cdist_forward_out);
    reg.register("aten::_pdist_forward.out", pdist_forward_out);
    reg.register("aten::grid_sampler_2d.out", grid_sampler_2d_out);
    reg.register(
        "aten::max_pool2d_with_indices_backward.grad_input",
        max_pool2d_with_indices_backward_out,
    );
    reg.register(
        "aten::_upsample_bilinear2d_aa.out",
        upsample_bilinear2d_aa_out,
    );
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

// ---------------------------------------------------------------------------
// grid_sampler_2d

/// The float type grid sampling computes in (`f32`, or `f64` for double data).
trait Fc:
    Copy
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
{
    fn c(v: f64) -> Self;
    fn f64(self) -> f64;
    fn trunc(self) -> Self;
    fn abs(self) -> Self;
    fn round_even(self) -> Self;
    fn finite(self) -> bool;
}

macro_rules! fc {
    ($($t:ty),*) => {$(
        impl Fc for $t {
            #[inline(always)] fn c(v: f64) -> Self { v as $t }
            #[inline(always)] fn f64(self) -> f64 { self as f64 }
            #[inline(always)] fn trunc(self) -> Self { <$t>::trunc(self) }
            #[inline(always)] fn abs(self) -> Self { <$t>::abs(self) }
            #[inline(always)] fn round_even(self) -> Self { <$t>::round_ties_even(self) }
            #[inline(always)] fn finite(self) -> bool { <$t>::is_finite(self) }
        }
    )*};
}
fc!(f32, f64);

/// `min` / `max` that propagate NaN from `a` (like ATen's vectorized `minimum`).
#[inline(always)]
fn fmin<F: Fc>(a: F, b: F) -> F {
    if b < a {
        b
    } else {
        a
    }
}
#[inline(always)]
fn fmax<F: Fc>(a: F, b: F) -> F {
    if b > a {
        b
    } else {
        a
    }
}

/// ATen's `ComputeLocation`: maps a normalised grid coordinate in `[-1, 1]` to a
/// source pixel coordinate for one spatial axis of `size` pixels.
#[derive(Clone, Copy)]
struct Loc<F> {
    size: usize,
    scale: F,
    align: bool,
    padding: i64,
}

impl<F: Fc> Loc<F> {
    fn new(size: usize, align: bool, padding: i64) -> Self {
        let scale = if align {
            F::c((size as f64 - 1.0) / 2.0)
        } else {
            F::c(size as f64 / 2.0)
        };
        Loc {
            size,
            scale,
            align,
            padding,
        }
    }

    #[inline(always)]
    fn clip(&self, v: F) -> F {
        fmin(F::c(self.size as f64 - 1.0), fmax(v, F::c(0.0)))
    }

    #[inline]
    fn apply(&self, g: F) -> F {
        let one = F::c(1.0);
        let mut v = if self.align {
            (g + one) * self.scale
        } else {
            (g + one) * self.scale - F::c(0.5)
        };
        match self.padding {
            1 => v = self.clip(v),
            2 => {
                v = if self.align {
                    if self.size == 1 {
                        F::c(0.0)
                    } else {
                        let span = F::c(2.0 * (self.size as f64 - 1.0));
                        let a = v.abs();
                        let extra = a - (a / span).trunc() * span;
                        fmin(extra, span - extra)
                    }
                } else {
                    let span = F::c(2.0 * self.size as f64);
                    let a = (v + F::c(0.5)).abs();
                    let extra = a - (a / span).trunc() * span;
                    fmin(extra, span - extra) - F::c(0.5)
                };
                v = self.clip(v);
            }
            _ => {}
        }
        v
    }
}

/// Index of coordinate `v` if it lies inside `0..size` (NaN and huge values do not).
#[inline(always)]
fn in_range<F: Fc>(v: F, size: usize) -> Option<usize> {
    if v.finite() && v >= F::c(0.0) && v < F::c(size as f64) {
        Some(v.f64() as usize)
    } else {
        None
    }
}

/// `grid_sampler_2d.out(Tensor input, Tensor grid, int interpolation_mode, int
/// padding_mode, bool align_corners, *, Tensor(a!) out)`: `[input, grid, interpolation,
/// padding, align_corners, out, ret]`. `input: [N, C, H, W]`, `grid: [N, Ho, Wo, 2]`
/// (x then y, normalised to `[-1, 1]`) give `out: [N, C, Ho, Wo]`. Interpolation 0
/// (bilinear) and 1 (nearest); padding 0 (zeros), 1 (border), 2 (reflection).
fn grid_sampler_2d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "grid_sampler_2d";
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let x = ctx.tensor(0)?;
    let grid = ctx.tensor(1)?;
    let interp = ctx.int(2)?;
    let padding = ctx.int(3)?;
    let align = ctx.bool(4)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "grid", grid.dtype(), x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    if interp == 2 {
        return Err(KernelError::unsupported(format!(
            "{OP}: bicubic interpolation (mode 2) is not supported"
        )));
    }
    if !(0..=1).contains(&interp) {
        return Err(KernelError::invalid(format!(
            "{OP}: interpolation_mode must be 0 (bilinear) or 1 (nearest), got {interp}"
        )));
    }
    if !(0..=2).contains(&padding) {
        return Err(KernelError::invalid(format!(
            "{OP}: padding_mode must be 0 (zeros), 1 (border) or 2 (reflection), got {padding}"
        )));
    }
    if x.dim() != 4 || grid.dim() != 4 {
        return Err(KernelError::invalid(format!(
            "{OP}: input and grid must be 4-D, got shapes {:?} and {:?}",
            x.sizes(),
            grid.sizes()
        )));
    }
    let (n, c, ih, iw) = (x.size(0), x.size(1), x.size(2), x.size(3));
    if grid.size(0) != n || grid.size(3) != 2 {
        return Err(KernelError::invalid(format!(
            "{OP}: grid must have shape [{n}, H_out, W_out, 2], got {:?}",
            grid.sizes()
        )));
    }
    if ih == 0 || iw == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: input spatial size {:?} must be positive",
            &x.sizes()[2..]
        )));
    }
    let (oh, ow) = (grid.size(1), grid.size(2));
    out.resize(&[n, c, oh, ow])?;
    let xs = x.strides();
    let gs = grid.strides();
    let os = strides_of_mut(&out);
    let nearest = interp == 1;
    macro_rules! run {
        ($T:ty, $F:ty) => {{
            let src = slice::<$T>(&x)?;
            let g = slice::<$T>(&grid)?;
            let y = slice_mut::<$T>(&mut out)?;
            let lx = Loc::<$F>::new(iw, align, padding);
            let ly = Loc::<$F>::new(ih, align, padding);
            for ni in 0..n {
                for hi in 0..oh {
                    for wi in 0..ow {
                        let go = ni * gs[0] + hi * gs[1] + wi * gs[2];
                        let gx = <$F>::from_f64(g[go].to_f64());
                        let gy = <$F>::from_f64(g[go + gs[3]].to_f64());
                        let fx = lx.apply(gx);
                        let fy = ly.apply(gy);
                        let ob = ni * os[0] + hi * os[2] + wi * os[3];
                        let ib = ni * xs[0];
                        if nearest {
                            let px = in_range(fx.round_even(), iw);
                            let py = in_range(fy.round_even(), ih);
                            for ci in 0..c {
                                y[ob + ci * os[1]] = match (px, py) {
                                    (Some(px), Some(py)) => {
                                        src[ib + ci * xs[1] + py * xs[2] + px * xs[3]]
                                    }
                                    _ => <$T>::from_f64(0.0),
                                };
                            }
                        } else {
                            let (xw, yn) = (fx.floor(), fy.floor());
                            let w = fx - xw;
                            let e = 1.0 - w;
                            let nn = fy - yn;
                            let s = 1.0 - nn;
                            let (wnw, wne, wsw, wse) = (s * e, s * w, nn * e, nn * w);
                            let x0 = in_range(xw, iw);
                            let x1 = in_range(xw + 1.0, iw);
                            let y0 = in_range(yn, ih);
                            let y1 = in_range(yn + 1.0, ih);
                            for ci in 0..c {
                                let cb = ib + ci * xs[1];
                                let at = |py: Option<usize>, px: Option<usize>| -> $F {
                                    match (py, px) {
                                        (Some(py), Some(px)) => <$F>::from_f64(
                                            src[cb + py * xs[2] + px * xs[3]].to_f64(),
                                        ),
                                        _ => 0.0,
                                    }
                                };
                                let v = at(y0, x0) * wnw
                                    + at(y0, x1) * wne
                                    + at(y1, x0) * wsw
                                    + at(y1, x1) * wse;
                                y[ob + ci * os[1]] = <$T>::from_f64(v as f64);
                            }
                        }
                    }
                }
            }
        }};
    }
    match x.dtype() {
        ScalarType::Double => run!(f64, f64),
        ScalarType::Float => run!(f32, f32),
        ScalarType::Half => {
            grid_sample_half::<half::f16>(&x, &grid, &mut out, nearest, padding, align)?
        }
        ScalarType::BFloat16 => {
            grid_sample_half::<half::bf16>(&x, &grid, &mut out, nearest, padding, align)?
        }
        other => {
            return Err(KernelError::dtype(format!(
                "{OP}: dtype {other} is not supported"
            )))
        }
    }
    Ok(())
}

/// ATen's scalar `grid_sampler_2d_cpu_fallback` for half types: every step is computed
/// in `T` (through `f32`, rounding after each operation), as `c10::Half` arithmetic does.
fn grid_sample_half<T: Num>(
    x: &TensorRef<'_>,
    grid: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    nearest: bool,
    padding: i64,
    align: bool,
) -> Result<(), KernelError> {
    let r = |v: f32| T::from_f32(v).to_f32();
    let (n, c, ih, iw) = (x.size(0), x.size(1), x.size(2), x.size(3));
    let (oh, ow) = (grid.size(1), grid.size(2));
    let xs = x.strides();
    let gs = grid.strides();
    let os = strides_of_mut(out);
    let src = slice::<T>(x)?;
    let g = slice::<T>(grid)?;
    let y = slice_mut::<T>(out)?;
    let clip = |v: f32, size: usize| {
        let m = r(size as f32 - 1.0);
        let v = if v > 0.0 || v.is_nan() { v } else { 0.0 };
        if m < v {
            m
        } else {
            v
        }
    };
    let reflect = |v: f32, lo2: f32, hi2: f32| {
        if lo2 == hi2 {
            return 0.0;
        }
        let min = r(lo2 / 2.0);
        let span = r((hi2 - lo2) / 2.0);
        let v = r(r(v - min).abs());
        let extra = r(v % span);
        let flips = r(v / span).floor() as i64;
        if flips % 2 == 0 {
            r(extra + min)
        } else {
            r(r(span - extra) + min)
        }
    };
    let source = |coord: f32, size: usize| {
        let sz = size as f32;
        let mut v = if align {
            r(r(r(coord + 1.0) / 2.0) * r(sz - 1.0))
        } else {
            r(r(r(r(coord + 1.0) * sz) - 1.0) / 2.0)
        };
        match padding {
            1 => v = clip(v, size),
            2 => {
                v = if align {
                    reflect(v, 0.0, 2.0 * (sz - 1.0))
                } else {
                    reflect(v, -1.0, 2.0 * sz - 1.0)
                };
                v = clip(v, size);
            }
            _ => {}
        }
        v
    };
    for ni in 0..n {
        for hi in 0..oh {
            for wi in 0..ow {
                let go = ni * gs[0] + hi * gs[1] + wi * gs[2];
                let ix = source(g[go].to_f32(), iw);
                let iy = source(g[go + gs[3]].to_f32(), ih);
                let ob = ni * os[0] + hi * os[2] + wi * os[3];
                let ib = ni * xs[0];
                if nearest {
                    let px = in_range(ix.round_ties_even(), iw);
                    let py = in_range(iy.round_ties_even(), ih);
                    for ci in 0..c {
                        y[ob + ci * os[1]] = match (px, py) {
                            (Some(px), Some(py)) => src[ib + ci * xs[1] + py * xs[2] + px * xs[3]],
                            _ => T::from_f32(0.0),
                        };
                    }
                    continue;
                }
                let (fx, fy) = (ix.floor(), iy.floor());
                let (xe, ys) = (r(fx + 1.0), r(fy + 1.0));
                let nw = r(r(xe - ix) * r(ys - iy));
                let ne = r(r(ix - fx) * r(ys - iy));
                let sw = r(r(xe - ix) * r(iy - fy));
                let se = r(r(ix - fx) * r(iy - fy));
                let x0 = in_range(fx, iw);
                let x1 = in_range(fx + 1.0, iw);
                let y0 = in_range(fy, ih);
                let y1 = in_range(fy + 1.0, ih);
                for ci in 0..c {
                    let cb = ib + ci * xs[1];
                    let mut acc = 0.0f32;
                    for (py, px, wt) in [(y0, x0, nw), (y0, x1, ne), (y1, x0, sw), (y1, x1, se)] {
                        if let (Some(py), Some(px)) = (py, px) {
                            acc = r(acc + r(src[cb + py * xs[2] + px * xs[3]].to_f32() * wt));
                        }
                    }
                    y[ob + ci * os[1]] = T::from_f32(acc);
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// max_pool2d_with_indices_backward

/// ATen's `pooling_output_shape` (a copy of the private helper in `nn::pool`).
fn pool_len(
    op: &str,
    i: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    ceil: bool,
) -> Result<usize, KernelError> {
    let (i, k, s, p, d) = (i as i64, k as i64, s as i64, p as i64, d as i64);
    let num = i + 2 * p - d * (k - 1) - 1 + if ceil { s - 1 } else { 0 };
    let mut o = num.div_euclid(s) + 1;
    if ceil && (o - 1) * s >= i + p {
        o -= 1;
    }
    if o < 1 {
        return Err(KernelError::invalid(format!(
            "{op}: output size {o} is too small for input size {i} (kernel {k}, stride {s}, \
             padding {p}, dilation {d})"
        )));
    }
    Ok(o as usize)
}

/// `max_pool2d_with_indices_backward.grad_input(Tensor grad_output, Tensor self, int[2]
/// kernel_size, int[2] stride, int[2] padding, int[2] dilation, bool ceil_mode, Tensor
/// indices, *, Tensor(a!) grad_input)`: `[grad_output, self, kernel_size, stride,
/// padding, dilation, ceil_mode, indices, grad_input, ret]`. Scatters (adds) each
/// output gradient to the input position its index (flat over `H * W`) names.
fn max_pool2d_with_indices_backward_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "max_pool2d_with_indices_backward";
    ctx.expect_args(10)?;
    let mut gi = ctx.out(8)?;
    let go = ctx.tensor(0)?;
    let x = ctx.tensor(1)?;
    let ind = ctx.tensor(7)?;
    need_float(OP, "self", x.dtype())?;
    same_dtype(OP, "grad_output", go.dtype(), x.dtype())?;
    same_dtype(OP, "grad_input", gi.dtype(), x.dtype())?;
    same_dtype(OP, "indices", ind.dtype(), ScalarType::Long)?;
    let k = spatial_list(ctx.int_list(2)?, 2, None, 1, OP, "kernel_size")?;
    let st = spatial_list(ctx.int_list(3)?, 2, Some(k), 1, OP, "stride")?;
    let pd = spatial_list(ctx.int_list(4)?, 2, None, 0, OP, "padding")?;
    let dl = spatial_list(ctx.int_list(5)?, 2, None, 1, OP, "dilation")?;
    let ceil = ctx.bool(6)?;
    let r = x.dim();
    if r != 3 && r != 4 {
        return Err(KernelError::invalid(format!(
            "{OP}: self must be 3-D or 4-D, got shape {:?}",
            x.sizes()
        )));
    }
    if k[0] / 2 < pd[0] || k[1] / 2 < pd[1] {
        return Err(KernelError::invalid(format!(
            "{OP}: padding {:?} must be at most half of the kernel size {:?}",
            &pd[..2],
            &k[..2]
        )));
    }
    let (ih, iw) = (x.size(r - 2), x.size(r - 1));
    if ih == 0 || iw == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: input spatial size {:?} must be positive",
            &x.sizes()[r - 2..]
        )));
    }
    let oh = pool_len(OP, ih, k[0], st[0], pd[0], dl[0], ceil)?;
    let ow = pool_len(OP, iw, k[1], st[1], pd[1], dl[1], ceil)?;
    let mut want = [0usize; 4];
    want[..r].copy_from_slice(x.sizes());
    want[r - 2] = oh;
    want[r - 1] = ow;
    if go.sizes() != &want[..r] || ind.sizes() != &want[..r] {
        return Err(KernelError::invalid(format!(
            "{OP}: grad_output {:?} and indices {:?} must have the pooled shape {:?}",
            go.sizes(),
            ind.sizes(),
            &want[..r]
        )));
    }
    gi.resize(x.sizes())?;
    let gs = strides_of(&go);
    let is = strides_of(&ind);
    let os = strides_of_mut(&gi);
    let lead = &x.sizes()[..r - 2];
    let plane = ih * iw;
    let idx = slice::<i64>(&ind)?;
    dispatch_float!(x.dtype(), T => {
        let g = slice::<T>(&go)?;
        let y = slice_mut::<T>(&mut gi)?;
        y.fill(T::from_f64(0.0));
        let mut bad = None;
        for_each_index(lead, [&gs, &is, &os], |_, [og, oi, oo]| {
            for a in 0..oh {
                for b in 0..ow {
                    let v = idx[oi + a * is[r - 2] + b * is[r - 1]];
                    if v < 0 || v as usize >= plane {
                        bad = Some(v);
                        continue;
                    }
                    let v = v as usize;
                    let at = oo + (v / iw) * os[r - 2] + (v % iw) * os[r - 1];
                    let add = g[og + a * gs[r - 2] + b * gs[r - 1]].to_f64();
                    y[at] = T::from_f64(y[at].to_f64() + add);
                }
            }
        });
        if let Some(v) = bad {
            return Err(KernelError::invalid(format!(
                "{OP}: index {v} is out of range for an input plane of {ih}x{iw}"
            )));
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// _upsample_bilinear2d_aa

/// One axis of ATen's antialiased linear resampling (`HelperInterpAALinear`): the
/// triangle filter widened by the downscale factor, weights normalised per output.
#[derive(Clone, Copy)]
struct AaAxis {
    input: usize,
    scale: f64,
    support: f64,
    invscale: f64,
    identity: bool,
}

impl AaAxis {
    fn new(input: usize, output: usize, align: bool, scale: Option<f64>, single: bool) -> Self {
        let rnd = |v: f64| if single { v as f32 as f64 } else { v };
        // ATen `area_pixel_compute_scale`.
        let sc = if align {
            if output > 1 {
                rnd((input as f64 - 1.0) / (output as f64 - 1.0))
            } else {
                0.0
            }
        } else {
            match scale {
                Some(s) if s > 0.0 => rnd(1.0 / s),
                _ => rnd(input as f64 / output as f64),
            }
        };
        let support = if sc >= 1.0 { sc } else { 1.0 };
        let invscale = if sc >= 1.0 { rnd(1.0 / sc) } else { 1.0 };
        AaAxis {
            input,
            scale: sc,
            support,
            invscale,
            identity: input == output,
        }
    }

    /// `(xmin, xsize, center, total weight)` for output index `i`.
    #[inline]
    fn range(&self, i: usize) -> (usize, usize, f64, f64) {
        if self.identity {
            return (i, 1, 0.0, 1.0);
        }
        let center = self.scale * (i as f64 + 0.5);
        let xmin = ((center - self.support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + self.support + 0.5) as i64)
            .min(self.input as i64)
            .max(0) as usize;
        let xsize = xmax.saturating_sub(xmin);
        let mut total = 0.0;
        for j in 0..xsize {
            total += self.weight_raw(xmin + j, center);
        }
        (xmin, xsize, center, total)
    }

    #[inline]
    fn weight_raw(&self, x: usize, center: f64) -> f64 {
        if self.identity {
            return 1.0;
        }
        let v = ((x as f64 - center + 0.5) * self.invscale).abs();
        if v < 1.0 {
            1.0 - v
        } else {
            0.0
        }
    }

    #[inline]
    fn weight(&self, x: usize, center: f64, total: f64) -> f64 {
        let w = self.weight_raw(x, center);
        if total != 0.0 {
            w / total
        } else {
            w
        }
    }
}

/// `_upsample_bilinear2d_aa.out(Tensor self, SymInt[2] output_size, bool align_corners,
/// float? scales_h=None, float? scales_w=None, *, Tensor(a!) out)`: `[self,
/// output_size, align_corners, scales_h, scales_w, out, ret]`. Float and double only,
/// like ATen's CPU kernel.
fn upsample_bilinear2d_aa_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_upsample_bilinear2d_aa";
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let x = ctx.tensor(0)?;
    need_f32_f64(OP, "self", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let align = ctx.bool(2)?;
    let sh = ctx.opt_double(3)?;
    let sw = ctx.opt_double(4)?;
    let (sz, len) = ctx.int_list(1)?.to_array()?;
    if len != 2 || sz[0] <= 0 || sz[1] <= 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: output_size must be 2 positive ints, got {:?}",
            &sz[..len]
        )));
    }
    if x.dim() != 4 {
        return Err(KernelError::invalid(format!(
            "{OP}: input must be 4-D, got shape {:?}",
            x.sizes()
        )));
    }
    let (n, c, ih, iw) = (x.size(0), x.size(1), x.size(2), x.size(3));
    if ih == 0 || iw == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: input spatial size {:?} must be positive",
            &x.sizes()[2..]
        )));
    }
    let (oh, ow) = (sz[0] as usize, sz[1] as usize);
    out.resize(&[n, c, oh, ow])?;
    let single = x.dtype() == ScalarType::Float;
    let ah = AaAxis::new(ih, oh, align, sh, single);
    let aw = AaAxis::new(iw, ow, align, sw, single);
    let xs = x.strides();
    let os = strides_of_mut(&out);
    dispatch_float!(x.dtype(), T => {
        let src = slice::<T>(&x)?;
        let y = slice_mut::<T>(&mut out)?;
        for oy in 0..oh {
            let (hmin, hsize, hc, ht) = ah.range(oy);
            for ox in 0..ow {
                let (wmin, wsize, wc, wt) = aw.range(ox);
                for ni in 0..n {
                    for ci in 0..c {
                        let b = ni * xs[0] + ci * xs[1];
                        let mut acc = 0.0f64;
                        for hy in hmin..hmin + hsize {
                            let whv = ah.weight(hy, hc, ht);
                            let mut row = 0.0f64;
                            for wx in wmin..wmin + wsize {
                                row += aw.weight(wx, wc, wt) * src[b + hy * xs[2] + wx * xs[3]].to_f64();
                            }
                            acc += whv * row;
                        }
                        y[ni * os[0] + ci * os[1] + oy * os[2] + ox * os[3]] = T::from_f64(acc);
                    }
                }
            }
        }
    });
    Ok(())
}
