//! Normalisation: batch norm (inference, training with running stats, no stats),
//! layer norm and group norm. Statistics are computed in `f64` for non-`f32`
//! dtypes; `f32` contiguous data takes vectorisable single-precision loops.

use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use super::{for_each_multi, need_float, offset, resize_aux, same_dtype};
use crate::dispatch_float;
use crate::util::Num;

pub(super) fn register(reg: &mut Registry) {
    reg.register(
        "aten::_native_batch_norm_legit_no_training.out",
        batch_norm_no_training_out,
    );
    reg.register("aten::_native_batch_norm_legit.out", batch_norm_legit_out);
    reg.register(
        "aten::_native_batch_norm_legit.no_stats_out",
        batch_norm_no_stats_out,
    );
    reg.register("aten::native_layer_norm.out", layer_norm_out);
    reg.register("aten::native_group_norm.out", group_norm_out);
}

/// Element `i` (memory order) of a floating tensor as f64.
fn elem(t: &TensorRef<'_>, i: usize) -> Result<f64, KernelError> {
    dispatch_float!(t.dtype(), T => {
        let s = super::slice::<T>(t)?;
        s.get(i)
            .map(|v| v.to_f64())
            .ok_or_else(|| KernelError::invalid(format!("element {i} out of range for shape {:?}", t.sizes())))
    })
}

fn set_elem(t: &mut TensorMut<'_>, i: usize, v: f64) -> Result<(), KernelError> {
    dispatch_float!(t.dtype(), T => {
        let s = super::slice_mut::<T>(t)?;
        let n = s.len();
        *s.get_mut(i).ok_or_else(|| KernelError::invalid(format!("element {i} out of range ({n} elements)")))? =
            T::from_f64(v);
    });
    Ok(())
}

fn check_vec(op: &str, what: &str, t: Option<&TensorRef<'_>>, c: usize) -> Result<(), KernelError> {
    if let Some(t) = t {
        need_float(op, what, t.dtype())?;
        if t.numel() != c || t.dim() != 1 {
            return Err(KernelError::invalid(format!(
                "{op}: {what} has shape {:?}, expected [{c}]",
                t.sizes()
            )));
        }
    }
    Ok(())
}

/// Applies `y = x*alpha[c] + beta[c]` over an `[N, C, ...]` tensor in any dim order.
fn affine_per_channel(
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    mut coef: impl FnMut(usize) -> Result<(f64, f64), KernelError>,
) -> Result<(), KernelError> {
    let dims = x.sizes();
    let c_n = dims[1];
    let inner: usize = dims[2..].iter().product();
    if x.dtype() == ScalarType::Float && x.is_contiguous() && out.is_contiguous() {
        let xs = super::slice::<f32>(x)?;
        let ys = super::slice_mut::<f32>(out)?;
        for c in 0..c_n {
            let (a, b) = coef(c)?;
            let (a, b) = (a as f32, b as f32);
            for n in 0..dims[0] {
                let o = (n * c_n + c) * inner;
                for (y, &v) in ys[o..o + inner].iter_mut().zip(&xs[o..o + inner]) {
                    *y = v * a + b;
                }
            }
        }
        return Ok(());
    }
    let xst = x.strides();
    let ost = out.strides();
    let r = dims.len();
    let mut sub = [0usize; 16];
    sub[..r].copy_from_slice(dims);
    sub[1] = 1;
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(x)?;
        let ys = super::slice_mut::<T>(out)?;
        for c in 0..c_n {
            let (a, b) = coef(c)?;
            for_each_multi(&sub[..r], |idx| {
                let xi = offset(idx, &xst[..r]) + c * xst[1];
                let oi = offset(idx, &ost[..r]) + c * ost[1];
                ys[oi] = T::from_f64(xs[xi].to_f64() * a + b);
            });
        }
    });
    Ok(())
}

/// Per-channel mean and biased variance of an `[N, C, ...]` tensor.
fn channel_stats(x: &TensorRef<'_>, c: usize) -> Result<(f64, f64, usize), KernelError> {
    let dims = x.sizes();
    let r = dims.len();
    let xst = x.strides();
    let mut sub = [0usize; 16];
    sub[..r].copy_from_slice(dims);
    sub[1] = 1;
    let count: usize = sub[..r].iter().product();
    if count == 0 {
        return Ok((0.0, f64::NAN, 0));
    }
    let (mut s, mut s2) = (0.0f64, 0.0f64);
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(x)?;
        for_each_multi(&sub[..r], |idx| s += xs[offset(idx, &xst[..r]) + c * xst[1]].to_f64());
        let mean = s / count as f64;
        for_each_multi(&sub[..r], |idx| {
            let d = xs[offset(idx, &xst[..r]) + c * xst[1]].to_f64() - mean;
            s2 += d * d;
        });
        Ok((mean, s2 / count as f64, count))
    })
}

struct BnInputs<'a> {
    x: TensorRef<'a>,
    w: Option<TensorRef<'a>>,
    b: Option<TensorRef<'a>>,
}

fn bn_inputs<'a>(
    op: &str,
    ctx: &KernelCtx<'a>,
    out: &mut TensorMut<'_>,
) -> Result<BnInputs<'a>, KernelError> {
    let x = ctx.tensor(0)?;
    need_float(op, "input", x.dtype())?;
    same_dtype(op, "out", out.dtype(), x.dtype())?;
    if x.dim() < 2 {
        return Err(KernelError::invalid(format!(
            "{op}: input must have at least 2 dims, got {:?}",
            x.sizes()
        )));
    }
    let c = x.size(1);
    let w = ctx.opt_tensor(1)?;
    let b = ctx.opt_tensor(2)?;
    check_vec(op, "weight", w.as_ref(), c)?;
    check_vec(op, "bias", b.as_ref(), c)?;
    out.resize(x.sizes())?;
    Ok(BnInputs { x, w, b })
}

/// `alpha, beta` for normalising with `mean`/`invstd` then the optional affine.
fn bn_coef(bn: &BnInputs<'_>, c: usize, mean: f64, invstd: f64) -> Result<(f64, f64), KernelError> {
    let w = match &bn.w {
        Some(w) => elem(w, c)?,
        None => 1.0,
    };
    let b = match &bn.b {
        Some(b) => elem(b, c)?,
        None => 0.0,
    };
    let a = invstd * w;
    Ok((a, b - mean * a))
}

/// `_native_batch_norm_legit_no_training.out(input, weight?, bias?, running_mean,
/// running_var, momentum, eps, *, out0, out1, out2)`: 11 stack entries.
fn batch_norm_no_training_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_native_batch_norm_legit_no_training";
    ctx.expect_args(11)?;
    let eps = ctx.double(6)?;
    let mut out = ctx.out(7)?;
    let mut o1 = ctx.out(8)?;
    let mut o2 = ctx.out(9)?;
    let bn = bn_inputs(OP, ctx, &mut out)?;
    let c = bn.x.size(1);
    let rm = ctx.tensor(3)?;
    let rv = ctx.tensor(4)?;
    check_vec(OP, "running_mean", Some(&rm), c)?;
    check_vec(OP, "running_var", Some(&rv), c)?;
    resize_aux(&mut o1, &[0])?;
    resize_aux(&mut o2, &[0])?;
    let x = bn.x;
    affine_per_channel(&x, &mut out, |ci| {
        let invstd = 1.0 / (elem(&rv, ci)? + eps).sqrt();
        bn_coef(&bn, ci, elem(&rm, ci)?, invstd)
    })
}

/// Batch statistics normalisation shared by the training variants; writes
/// `save_mean`/`save_invstd` and returns nothing else.
fn bn_train(
    bn: &BnInputs<'_>,
    eps: f64,
    out: &mut TensorMut<'_>,
    save_mean: &mut TensorMut<'_>,
    save_invstd: &mut TensorMut<'_>,
    mut running: Option<(&mut TensorMut<'_>, &mut TensorMut<'_>, f64)>,
) -> Result<(), KernelError> {
    let c = bn.x.size(1);
    save_mean.resize(&[c])?;
    save_invstd.resize(&[c])?;
    for ci in 0..c {
        let (mean, var, count) = channel_stats(&bn.x, ci)?;
        let invstd = 1.0 / (var + eps).sqrt();
        set_elem(save_mean, ci, mean)?;
        set_elem(save_invstd, ci, invstd)?;
        if let Some((rm, rv, m)) = running.as_mut() {
            let unbiased = if count > 1 {
                var * count as f64 / (count - 1) as f64
            } else {
                var
            };
            let old_m = elem(&rm.as_ref(), ci)?;
            let old_v = elem(&rv.as_ref(), ci)?;
            set_elem(rm, ci, (1.0 - *m) * old_m + *m * mean)?;
            set_elem(rv, ci, (1.0 - *m) * old_v + *m * unbiased)?;
        }
    }
    let x = bn.x;
    let sm = save_mean.as_ref();
    let si = save_invstd.as_ref();
    affine_per_channel(&x, out, |ci| {
        bn_coef(bn, ci, elem(&sm, ci)?, elem(&si, ci)?)
    })
}

/// `_native_batch_norm_legit.out(input, weight?, bias?, running_mean(a!), running_var(b!),
/// training, momentum, eps, *, out, save_mean, save_invstd)`: 12 stack entries.
fn batch_norm_legit_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_native_batch_norm_legit";
    ctx.expect_args(12)?;
    let training = ctx.bool(5)?;
    let momentum = ctx.double(6)?;
    let eps = ctx.double(7)?;
    let mut out = ctx.out(8)?;
    let mut sm = ctx.out(9)?;
    let mut si = ctx.out(10)?;
    let mut rm = ctx.out(3)?;
    let mut rv = ctx.out(4)?;
    let bn = bn_inputs(OP, ctx, &mut out)?;
    let c = bn.x.size(1);
    check_vec(OP, "running_mean", Some(&rm.as_ref()), c)?;
    check_vec(OP, "running_var", Some(&rv.as_ref()), c)?;
    if training {
        return bn_train(
            &bn,
            eps,
            &mut out,
            &mut sm,
            &mut si,
            Some((&mut rm, &mut rv, momentum)),
        );
    }
    resize_aux(&mut sm, &[0])?;
    resize_aux(&mut si, &[0])?;
    let (rm, rv) = (rm.as_ref(), rv.as_ref());
    let x = bn.x;
    affine_per_channel(&x, &mut out, |ci| {
        let invstd = 1.0 / (elem(&rv, ci)? + eps).sqrt();
        bn_coef(&bn, ci, elem(&rm, ci)?, invstd)
    })
}

/// `_native_batch_norm_legit.no_stats_out(input, weight?, bias?, training, momentum, eps,
/// *, out, save_mean, save_invstd)`: 10 stack entries.
fn batch_norm_no_stats_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_native_batch_norm_legit.no_stats";
    ctx.expect_args(10)?;
    let _training = ctx.bool(3)?;
    let eps = ctx.double(5)?;
    let mut out = ctx.out(6)?;
    let mut sm = ctx.out(7)?;
    let mut si = ctx.out(8)?;
    let bn = bn_inputs(OP, ctx, &mut out)?;
    bn_train(&bn, eps, &mut out, &mut sm, &mut si, None)
}

/// `native_layer_norm.out(input, normalized_shape, weight?, bias?, eps, *, out0, out1,
/// out2)`: 9 stack entries. out1/out2 (mean, rstd) have the input's leading dims
/// followed by ones.
fn layer_norm_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "native_layer_norm";
    ctx.expect_args(9)?;
    let ns = ctx.int_list(1)?;
    let (nsv, k) = ns.to_array()?;
    let eps = ctx.double(4)?;
    let mut out = ctx.out(5)?;
    let mut mo = ctx.out(6)?;
    let mut ro = ctx.out(7)?;
    let x = ctx.tensor(0)?;
    let w = ctx.opt_tensor(2)?;
    let b = ctx.opt_tensor(3)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let dims = x.sizes();
    let r = dims.len();
    if k == 0 || k > r {
        return Err(KernelError::invalid(format!(
            "{OP}: normalized_shape of {k} dims does not fit input shape {dims:?}"
        )));
    }
    for j in 0..k {
        if nsv[j] < 0 || nsv[j] as usize != dims[r - k + j] {
            return Err(KernelError::invalid(format!(
                "{OP}: normalized_shape {:?} does not match the trailing dims of {dims:?}",
                &nsv[..k]
            )));
        }
    }
    let inner: usize = dims[r - k..].iter().product();
    let rows: usize = dims[..r - k].iter().product();
    for (what, t) in [("weight", &w), ("bias", &b)] {
        if let Some(t) = t {
            same_dtype(OP, what, t.dtype(), x.dtype())?;
            if t.numel() != inner || !t.is_contiguous() {
                return Err(KernelError::invalid(format!(
                    "{OP}: {what} shape {:?} must equal normalized_shape {:?}",
                    t.sizes(),
                    &nsv[..k]
                )));
            }
        }
    }
    if !x.is_contiguous() || !out.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: only the contiguous dim order is supported"
        )));
    }
    out.resize(dims)?;
    let mut sd = [1usize; 16];
    sd[..r - k].copy_from_slice(&dims[..r - k]);
    mo.resize(&sd[..r])?;
    ro.resize(&sd[..r])?;
    if rows * inner == 0 {
        // Empty rows: mean/rstd of nothing (NaN), like ATen.
        for i in 0..rows {
            set_elem(&mut mo, i, f64::NAN)?;
            set_elem(&mut ro, i, f64::NAN)?;
        }
        return Ok(());
    }
    if x.dtype() == ScalarType::Float {
        let xs = super::slice::<f32>(&x)?;
        let ws = match &w {
            Some(w) => Some(super::slice::<f32>(w)?),
            None => None,
        };
        let bs = match &b {
            Some(b) => Some(super::slice::<f32>(b)?),
            None => None,
        };
        let ys = super::slice_mut::<f32>(&mut out)?;
        for i in 0..rows {
            let xr = &xs[i * inner..(i + 1) * inner];
            let yr = &mut ys[i * inner..(i + 1) * inner];
            let (mean, rstd) = layer_norm_row_f32(xr, yr, ws, bs, eps as f32);
            set_elem(&mut mo, i, mean as f64)?;
            set_elem(&mut ro, i, rstd as f64)?;
        }
        return Ok(());
    }
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ws = match &w {
            Some(w) => Some(super::slice::<T>(w)?),
            None => None,
        };
        let bs = match &b {
            Some(b) => Some(super::slice::<T>(b)?),
            None => None,
        };
        for i in 0..rows {
            let xr = &xs[i * inner..(i + 1) * inner];
            let mean = xr.iter().map(|v| v.to_f64()).sum::<f64>() / inner as f64;
            let var = xr.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / inner as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            {
                let ys = super::slice_mut::<T>(&mut out)?;
                let yr = &mut ys[i * inner..(i + 1) * inner];
                for (j, (y, v)) in yr.iter_mut().zip(xr).enumerate() {
                    let g = ws.map_or(1.0, |w| w[j].to_f64());
                    let bb = bs.map_or(0.0, |b| b[j].to_f64());
                    *y = T::from_f64((v.to_f64() - mean) * rstd * g + bb);
                }
            }
            set_elem(&mut mo, i, mean)?;
            set_elem(&mut ro, i, rstd)?;
        }
    });
    Ok(())
}

/// `native_group_norm.out(input, weight?, bias?, N, C, HxW, group, eps, *, out0, out1,
/// out2)`: 12 stack entries; out1/out2 are `[N, group]`.
fn group_norm_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "native_group_norm";
    ctx.expect_args(12)?;
    let (n, c, hw, g) = (ctx.int(3)?, ctx.int(4)?, ctx.int(5)?, ctx.int(6)?);
    let eps = ctx.double(7)?;
    let mut out = ctx.out(8)?;
    let mut mo = ctx.out(9)?;
    let mut ro = ctx.out(10)?;
    let x = ctx.tensor(0)?;
    let w = ctx.opt_tensor(1)?;
    let b = ctx.opt_tensor(2)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    if n < 0 || c < 0 || hw < 0 || g <= 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: invalid N={n}, C={c}, HxW={hw}, group={g}"
        )));
    }
    let (n, c, hw, g) = (n as usize, c as usize, hw as usize, g as usize);
    if x.dim() < 2 || x.size(0) != n || x.size(1) != c || x.numel() != n * c * hw {
        return Err(KernelError::invalid(format!(
            "{OP}: input shape {:?} does not match N={n}, C={c}, HxW={hw}",
            x.sizes()
        )));
    }
    if c % g != 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: C={c} is not divisible by group={g}"
        )));
    }
    check_vec(OP, "weight", w.as_ref(), c)?;
    check_vec(OP, "bias", b.as_ref(), c)?;
    if !x.is_contiguous() || !out.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: only the contiguous dim order is supported"
        )));
    }
    out.resize(x.sizes())?;
    mo.resize(&[n, g])?;
    ro.resize(&[n, g])?;
    let cg = c / g;
    let blk = cg * hw;
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        for ni in 0..n {
            for gi in 0..g {
                let o = (ni * c + gi * cg) * hw;
                let xr = &xs[o..o + blk];
                let (mean, rstd) = if blk == 0 {
                    (f64::NAN, f64::NAN)
                } else {
                    let mean = xr.iter().map(|v| v.to_f64()).sum::<f64>() / blk as f64;
                    let var = xr.iter().map(|v| (v.to_f64() - mean).powi(2)).sum::<f64>() / blk as f64;
                    (mean, 1.0 / (var + eps).sqrt())
                };
                set_elem(&mut mo, ni * g + gi, mean)?;
                set_elem(&mut ro, ni * g + gi, rstd)?;
                for cc in 0..cg {
                    let ch = gi * cg + cc;
                    let gw = match &w {
                        Some(w) => elem(w, ch)?,
                        None => 1.0,
                    };
                    let bb = match &b {
                        Some(b) => elem(b, ch)?,
                        None => 0.0,
                    };
                    let a = rstd * gw;
                    let off = bb - mean * a;
                    let ys = super::slice_mut::<T>(&mut out)?;
                    let s = (ni * c + ch) * hw;
                    for (y, v) in ys[s..s + hw].iter_mut().zip(&xs[s..s + hw]) {
                        *y = T::from_f64(v.to_f64() * a + off);
                    }
                }
            }
        }
    });
    Ok(())
}

/// From this many normalized elements on, ExecuTorch's `native_layer_norm`
/// computes the row statistics with a vectorised Welford cascade
/// ([`welford_moments_f32`]); below it, with plain sums ([`layer_norm_row_f32`]).
const LN_WELFORD_MIN: usize = 256;

/// One `f32` layer-norm row with ExecuTorch 1.5.1's arithmetic, bit for bit
/// (`fixtures/exact_norm_ops`); returns `(mean, rstd)`.
/// * Fewer than [`LN_WELFORD_MIN`] elements: `Σx` and `Σx²` in element order,
///   `mean = Σx / n`, `var = Σx² / n - mean²`, `std = √(var + eps)`,
///   `y = (x - mean) / std · γ + β`, `rstd = 1 / std`.
/// * Otherwise: `(mean, var)` from [`welford_moments_f32`], `rstd = 1 / √(var +
///   eps)`, `y = (x · rstd + (-rstd · mean)) · γ + β`.
///
/// A missing `γ` is 1 and a missing `β` is 0. No operation is fused.
fn layer_norm_row_f32(
    x: &[f32],
    y: &mut [f32],
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    eps: f32,
) -> (f32, f32) {
    let n = x.len();
    let g = |j: usize| gamma.map_or(1.0, |w| w[j]);
    let b = |j: usize| beta.map_or(0.0, |w| w[j]);
    if n < LN_WELFORD_MIN {
        let mut sum = 0.0f32;
        for &v in x {
            sum += v;
        }
        let mut sq = 0.0f32;
        for &v in x {
            sq += v * v;
        }
        let mean = sum / n as f32;
        let var = sq / n as f32 - mean * mean;
        let std = (var + eps).sqrt();
        for (j, (o, &v)) in y.iter_mut().zip(x).enumerate() {
            *o = (v - mean) / std * g(j) + b(j);
        }
        return (mean, 1.0 / std);
    }
    let (mean, var) = welford_moments_f32(x);
    let rstd = 1.0 / (var + eps).sqrt();
    let offset = -rstd * mean;
    match (gamma, beta) {
        (Some(gs), Some(bs)) => {
            for (((o, &v), &gv), &bv) in y.iter_mut().zip(x).zip(gs).zip(bs) {
                *o = (v * rstd + offset) * gv + bv;
            }
        }
        _ => {
            for (j, (o, &v)) in y.iter_mut().zip(x).enumerate() {
                *o = (v * rstd + offset) * g(j) + b(j);
            }
        }
    }
    (mean, rstd)
}

/// Lanes of [`welford_moments_f32`] (ExecuTorch's `Vectorized<float>` width).
const WL: usize = 8;
/// Vectors per Welford chunk.
const W_CHUNK: usize = 16;

/// Count, mean and sum of squared deviations of 8 independent lanes.
#[derive(Clone, Copy)]
struct Moments8 {
    count: i64,
    mean: [f32; WL],
    m2: [f32; WL],
}

const MOMENTS8_ZERO: Moments8 = Moments8 {
    count: 0,
    mean: [0.0; WL],
    m2: [0.0; WL],
};

/// Chan et al.'s merge of `(count, mean, m2)` into `(n0, m1, m2)` in `f32`, in
/// the operation order of ExecuTorch's `AddMoments`:
/// `c = count / (n0 + count)`, `δ = mean - m1`, `m1 += c · δ`,
/// `m2 += m2_add + δ · δ · c · n0`.
#[inline(always)]
fn merge_moments(count: i64, mean: f32, m2_add: f32, n0: i64, m1: &mut f32, m2: &mut f32) {
    let n = n0 + count;
    let c = if n == 0 { 0.0 } else { count as f32 / n as f32 };
    let delta = mean - *m1;
    *m1 += c * delta;
    *m2 += m2_add + delta * delta * c * n0 as f32;
}

/// [`merge_moments`] lane by lane (`into.count` is the count before the merge).
fn merge_moments8(add: &Moments8, into: &mut Moments8) {
    let n0 = into.count;
    for l in 0..WL {
        let (m1, m2) = (&mut into.mean[l], &mut into.m2[l]);
        merge_moments(add.count, add.mean[l], add.m2[l], n0, m1, m2);
    }
    into.count = n0 + add.count;
}

/// Population mean and variance of `x` with the arithmetic of ExecuTorch's
/// `RowwiseMoments` (the parallel Welford algorithm with a cascade; all `f32`,
/// no fused multiply-adds):
/// * the first `8 · ⌊n / 8⌋` values form vectors of 8 lanes (lane `l` takes
///   the values `≡ l mod 8`), in chunks of 16 vectors; each chunk runs
///   Welford from zero (`δ = x - m1`, `m1 += δ · (1 / j)` with the f32
///   reciprocal of the 1-based step `j`, `m2 += δ · (x - m1)`) and is merged
///   into level 0 of a stack of partial results; after chunk `i`, while bit
///   `j - 1` of `i + 1` is 0 (for `j < depth = ⌈log2 chunks⌉`), level `j - 1`
///   is merged into level `j` and cleared; finally levels `1..depth` are merged
///   into level 0, in order;
/// * the remaining `n mod 8` values run scalar Welford (`m1 += δ / count`);
///   then the 8 lanes are merged into that, lane 0 first;
/// * variance `= m2 / n`.
fn welford_moments_f32(x: &[f32]) -> (f32, f32) {
    let n = x.len();
    let vecs = n / WL;
    let chunks = vecs.div_ceil(W_CHUNK);
    let depth = if chunks <= 1 {
        0
    } else {
        (usize::BITS - (chunks - 1).leading_zeros()) as usize
    };
    let mut recip = [0.0f32; W_CHUNK];
    for (j, r) in recip.iter_mut().enumerate() {
        *r = 1.0 / (j + 1) as f32;
    }
    // depth <= 60 for any slice that fits in memory.
    let mut stack = [MOMENTS8_ZERO; 64];
    for i in 0..chunks {
        let steps = W_CHUNK.min(vecs - i * W_CHUNK);
        let mut ch = Moments8 {
            count: steps as i64,
            ..MOMENTS8_ZERO
        };
        for (j, &c) in recip.iter().enumerate().take(steps) {
            let v = &x[(i * W_CHUNK + j) * WL..][..WL];
            for ((&xv, m1), m2) in v.iter().zip(&mut ch.mean).zip(&mut ch.m2) {
                let delta = xv - *m1;
                *m1 += delta * c;
                *m2 += delta * (xv - *m1);
            }
        }
        merge_moments8(&ch, &mut stack[0]);
        let mut mask = i + 1;
        let mut j = 1;
        while j < depth && mask & 1 == 0 {
            let lower = stack[j - 1];
            merge_moments8(&lower, &mut stack[j]);
            stack[j - 1] = MOMENTS8_ZERO;
            mask >>= 1;
            j += 1;
        }
    }
    for j in 1..depth {
        let level = stack[j];
        merge_moments8(&level, &mut stack[0]);
    }
    let (mut count, mut m1, mut m2) = (0i64, 0.0f32, 0.0f32);
    for &v in &x[vecs * WL..] {
        let delta = v - m1;
        count += 1;
        m1 += delta / count as f32;
        m2 += delta * (v - m1);
    }
    for l in 0..WL {
        merge_moments(
            vecs as i64,
            stack[0].mean[l],
            stack[0].m2[l],
            count,
            &mut m1,
            &mut m2,
        );
        count += vecs as i64;
    }
    (m1, m2 / n as f32)
}
