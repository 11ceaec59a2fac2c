//! Resampling and padding: `upsample_bilinear2d.vec`, `upsample_nearest2d.vec`,
//! `constant_pad_nd`, `reflection_pad{1,2,3}d`, `replication_pad{1,2,3}d`,
//! `pixel_shuffle`, `pixel_unshuffle`, and `embedding`. All work through strides,
//! so any dim order is accepted.

use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use super::{for_each_multi, need_float, offset, same_dtype};
use crate::util::{scalar_to, Num};
use crate::{dispatch_all, dispatch_float};

pub(super) fn register(reg: &mut Registry) {
    reg.register(
        "aten::upsample_bilinear2d.vec_out",
        upsample_bilinear2d_vec_out,
    );
    reg.register(
        "aten::upsample_nearest2d.vec_out",
        upsample_nearest2d_vec_out,
    );
    reg.register("aten::constant_pad_nd.out", constant_pad_nd_out);
    reg.register("aten::reflection_pad1d.out", reflection_pad1d_out);
    reg.register("aten::reflection_pad2d.out", reflection_pad2d_out);
    reg.register("aten::reflection_pad3d.out", reflection_pad3d_out);
    reg.register("aten::replication_pad1d.out", replication_pad1d_out);
    reg.register("aten::replication_pad2d.out", replication_pad2d_out);
    reg.register("aten::replication_pad3d.out", replication_pad3d_out);
    reg.register("aten::pixel_shuffle.out", pixel_shuffle_out);
    reg.register("aten::pixel_unshuffle.out", pixel_unshuffle_out);
    reg.register("aten::embedding.out", embedding_out);
}

// ---------------------------------------------------------------------------
// Upsampling

/// Rounds to the operator's math type (`f32` unless the data is `f64`), so index
/// computations match ATen's `opmath_t` arithmetic step by step.
#[inline]
fn rnd(v: f64, single: bool) -> f64 {
    if single {
        v as f32 as f64
    } else {
        v
    }
}

/// Output `(h, w)` and the optional scales from `output_size` / `scale_factors`.
fn upsample_size(
    ctx: &KernelCtx<'_>,
    op: &str,
    x: &TensorRef<'_>,
    size_arg: usize,
    scale_arg: usize,
) -> Result<([usize; 2], [Option<f64>; 2]), KernelError> {
    if x.dim() != 4 {
        return Err(KernelError::invalid(format!(
            "{op}: input must be 4-D, got shape {:?}",
            x.sizes()
        )));
    }
    let (ih, iw) = (x.size(2), x.size(3));
    let size = ctx.opt_int_list(size_arg)?;
    let scales = ctx.opt_double_list(scale_arg)?;
    match (size, scales) {
        (Some(s), None) => {
            let (v, n) = s.to_array()?;
            if n != 2 || v[0] < 0 || v[1] < 0 {
                return Err(KernelError::invalid(format!(
                    "{op}: output_size must be 2 non-negative ints, got {:?}",
                    &v[..n]
                )));
            }
            Ok(([v[0] as usize, v[1] as usize], [None, None]))
        }
        (None, Some(sc)) => {
            if sc.len() != 2 || sc.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                return Err(KernelError::invalid(format!(
                    "{op}: scale_factors must be 2 positive numbers, got {sc:?}"
                )));
            }
            let oh = (ih as f64 * sc[0]) as usize;
            let ow = (iw as f64 * sc[1]) as usize;
            Ok(([oh, ow], [Some(sc[0]), Some(sc[1])]))
        }
        _ => Err(KernelError::invalid(format!(
            "{op}: exactly one of output_size and scale_factors must be given"
        ))),
    }
}

fn check_up_io(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    o: [usize; 2],
) -> Result<(), KernelError> {
    if o[0] == 0 || o[1] == 0 {
        return Err(KernelError::invalid(format!(
            "{op}: output size {o:?} must be positive"
        )));
    }
    if x.size(2) == 0 || x.size(3) == 0 {
        return Err(KernelError::invalid(format!(
            "{op}: input spatial size {:?} must be positive",
            &x.sizes()[2..]
        )));
    }
    out.resize(&[x.size(0), x.size(1), o[0], o[1]])
}

/// ATen `compute_scales_value`.
fn scales_value(scale: Option<f64>, i: usize, o: usize, single: bool) -> f64 {
    match scale {
        Some(s) if s > 0.0 => rnd(1.0 / s, single),
        _ => rnd(i as f64 / o as f64, single),
    }
}

/// `(i0, i1, lambda0, lambda1)` for linear interpolation of output index `d`.
fn linear_src(
    d: usize,
    i: usize,
    o: usize,
    align: bool,
    scale: Option<f64>,
    single: bool,
) -> (usize, usize, f64, f64) {
    let sc = if align {
        if o > 1 {
            rnd((i - 1) as f64 / (o - 1) as f64, single)
        } else {
            0.0
        }
    } else {
        scales_value(scale, i, o, single)
    };
    let real = if align {
        rnd(sc * d as f64, single)
    } else {
        let s = rnd(rnd(sc * rnd(d as f64 + 0.5, single), single) - 0.5, single);
        if s < 0.0 {
            0.0
        } else {
            s
        }
    };
    let i0 = (real.floor() as usize).min(i - 1);
    let l1 = rnd(real - i0 as f64, single).clamp(0.0, 1.0);
    let l0 = rnd(1.0 - l1, single);
    let i1 = if i0 < i - 1 { i0 + 1 } else { i0 };
    (i0, i1, l0, l1)
}

/// `upsample_bilinear2d.vec_out(Tensor input, SymInt[]? output_size, bool align_corners,
/// float[]? scale_factors, *, Tensor(a!) out)`: `[input, output_size, align_corners,
/// scale_factors, out, ret]`.
fn upsample_bilinear2d_vec_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "upsample_bilinear2d";
    ctx.expect_args(6)?;
    let align = ctx.bool(2)?;
    let mut out = ctx.out(4)?;
    let x = ctx.tensor(0)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let (o, sc) = upsample_size(ctx, OP, &x, 1, 3)?;
    check_up_io(OP, &x, &mut out, o)?;
    let (n, c, ih, iw) = (x.size(0), x.size(1), x.size(2), x.size(3));
    let single = x.dtype() != ScalarType::Double;
    let xs_ = x.strides();
    let os_ = out.strides();
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        for oy in 0..o[0] {
            let (h0, h1, lh0, lh1) = linear_src(oy, ih, o[0], align, sc[0], single);
            for ox in 0..o[1] {
                let (w0, w1, lw0, lw1) = linear_src(ox, iw, o[1], align, sc[1], single);
                for ni in 0..n {
                    for ci in 0..c {
                        let b = ni * xs_[0] + ci * xs_[1];
                        let at = |h: usize, w: usize| xs[b + h * xs_[2] + w * xs_[3]].to_f64();
                        let v = lh0 * (lw0 * at(h0, w0) + lw1 * at(h0, w1))
                            + lh1 * (lw0 * at(h1, w0) + lw1 * at(h1, w1));
                        ys[ni * os_[0] + ci * os_[1] + oy * os_[2] + ox * os_[3]] = T::from_f64(v);
                    }
                }
            }
        }
    });
    Ok(())
}

/// ATen `nearest_idx`.
fn nearest_src(d: usize, i: usize, o: usize, scale: Option<f64>) -> usize {
    if o == i {
        d
    } else if o == 2 * i {
        d >> 1
    } else {
        let s = scales_value(scale, i, o, true);
        ((rnd(d as f64 * s, true).floor()) as usize).min(i - 1)
    }
}

/// `upsample_nearest2d.vec_out(Tensor input, SymInt[]? output_size, float[]?
/// scale_factors, *, Tensor(a!) out)`: `[input, output_size, scale_factors, out, ret]`.
fn upsample_nearest2d_vec_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "upsample_nearest2d";
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let (o, sc) = upsample_size(ctx, OP, &x, 1, 2)?;
    check_up_io(OP, &x, &mut out, o)?;
    let (n, c, ih, iw) = (x.size(0), x.size(1), x.size(2), x.size(3));
    let xs_ = x.strides();
    let os_ = out.strides();
    dispatch_all!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        for oy in 0..o[0] {
            let sy = nearest_src(oy, ih, o[0], sc[0]);
            for ox in 0..o[1] {
                let sx = nearest_src(ox, iw, o[1], sc[1]);
                for ni in 0..n {
                    for ci in 0..c {
                        ys[ni * os_[0] + ci * os_[1] + oy * os_[2] + ox * os_[3]] =
                            xs[ni * xs_[0] + ci * xs_[1] + sy * xs_[2] + sx * xs_[3]];
                    }
                }
            }
        }
    });
    Ok(())
}

// ---------------------------------------------------------------------------
// Padding

#[derive(Clone, Copy)]
enum PadMode {
    Constant,
    Reflect,
    Replicate,
}

/// Pads the last `pad.len()/2` dims of `x` into `out` (pairs from the last dim).
fn pad_generic(
    op: &str,
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    pad: &[i64],
    mode: PadMode,
    value: Option<pteron_runtime::Scalar>,
) -> Result<(), KernelError> {
    let r = x.dim();
    let k = pad.len() / 2;
    if !pad.len().is_multiple_of(2) || k > r {
        return Err(KernelError::invalid(format!(
            "{op}: padding of length {} does not fit an input of rank {r}",
            pad.len()
        )));
    }
    let dims = x.sizes();
    let mut od = [0usize; 16];
    let mut left = [0i64; 16];
    for d in 0..r {
        let (l, rr) = if d + k >= r {
            let j = r - 1 - d;
            (pad[2 * j], pad[2 * j + 1])
        } else {
            (0, 0)
        };
        let n = dims[d] as i64;
        if d + k >= r {
            match mode {
                PadMode::Reflect if l >= n || rr >= n || (n == 0 && (l != 0 || rr != 0)) => {
                    return Err(KernelError::invalid(format!(
                        "{op}: padding ({l}, {rr}) must be smaller than the input size {n} of dim {d}"
                    )));
                }
                PadMode::Replicate if n == 0 && (l > 0 || rr > 0) => {
                    return Err(KernelError::invalid(format!(
                        "{op}: cannot replicate-pad the empty dim {d}"
                    )));
                }
                _ => {}
            }
        }
        let o = n + l + rr;
        if o < 0 || (o == 0 && !matches!(mode, PadMode::Constant)) {
            return Err(KernelError::invalid(format!(
                "{op}: padding ({l}, {rr}) gives an invalid output size {o} for dim {d} of size {n}"
            )));
        }
        od[d] = o as usize;
        left[d] = l;
    }
    out.resize(&od[..r])?;
    let xst = x.strides();
    let ost = out.strides();
    dispatch_all!(x.dtype(), T => {
        let xs = super::slice::<T>(x)?;
        let fill: T = value.map_or(T::zero(), scalar_to::<T>);
        let ys = super::slice_mut::<T>(out)?;
        for_each_multi(&od[..r], |idx| {
            let mut off = 0usize;
            let mut inside = true;
            for d in 0..r {
                let n = dims[d] as i64;
                let mut i = idx[d] as i64 - left[d];
                if i < 0 || i >= n {
                    match mode {
                        PadMode::Constant => {
                            inside = false;
                            break;
                        }
                        PadMode::Reflect => {
                            if i < 0 {
                                i = -i;
                            }
                            if i >= n {
                                i = 2 * (n - 1) - i;
                            }
                        }
                        PadMode::Replicate => i = i.clamp(0, n - 1),
                    }
                }
                off += i as usize * xst[d];
            }
            ys[offset(idx, &ost[..r])] = if inside { xs[off] } else { fill };
        });
    });
    Ok(())
}

/// `constant_pad_nd.out(Tensor self, SymInt[] pad, Scalar value=0, *, Tensor(a!) out)`:
/// `[self, pad, value, out, ret]`.
fn constant_pad_nd_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "constant_pad_nd";
    ctx.expect_args(5)?;
    let (pad, n) = ctx.int_list(1)?.to_array()?;
    let value = ctx.scalar(2)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    if value.is_floating()
        && !matches!(
            x.dtype(),
            ScalarType::Float | ScalarType::Double | ScalarType::Half | ScalarType::BFloat16
        )
    {
        let v = value.to_f64();
        if v.fract() != 0.0 || !v.is_finite() {
            return Err(KernelError::dtype(format!(
                "{OP}: fill value {v} cannot be represented in dtype {}",
                x.dtype()
            )));
        }
    }
    pad_generic(OP, &x, &mut out, &pad[..n], PadMode::Constant, Some(value))
}

fn pad_op(ctx: &KernelCtx<'_>, op: &str, k: usize, mode: PadMode) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let (pad, n) = ctx.int_list(1)?.to_array()?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    same_dtype(op, "out", out.dtype(), x.dtype())?;
    if n != 2 * k {
        return Err(KernelError::invalid(format!(
            "{op}: padding must have {} entries, got {n}",
            2 * k
        )));
    }
    if x.dim() != k + 1 && x.dim() != k + 2 {
        return Err(KernelError::invalid(format!(
            "{op}: input must be {}-D or {}-D, got shape {:?}",
            k + 1,
            k + 2,
            x.sizes()
        )));
    }
    pad_generic(op, &x, &mut out, &pad[..n], mode, None)
}

fn reflection_pad1d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "reflection_pad1d", 1, PadMode::Reflect)
}
fn reflection_pad2d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "reflection_pad2d", 2, PadMode::Reflect)
}
fn reflection_pad3d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "reflection_pad3d", 3, PadMode::Reflect)
}
fn replication_pad1d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "replication_pad1d", 1, PadMode::Replicate)
}
fn replication_pad2d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "replication_pad2d", 2, PadMode::Replicate)
}
fn replication_pad3d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    pad_op(ctx, "replication_pad3d", 3, PadMode::Replicate)
}

// ---------------------------------------------------------------------------
// Pixel shuffle

fn shuffle(ctx: &KernelCtx<'_>, op: &str, up: bool) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let f = ctx.int(1)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    same_dtype(op, "out", out.dtype(), x.dtype())?;
    if f <= 0 {
        return Err(KernelError::invalid(format!(
            "{op}: factor must be positive, got {f}"
        )));
    }
    let f = f as usize;
    let r = x.dim();
    if r < 3 {
        return Err(KernelError::invalid(format!(
            "{op}: input must have at least 3 dims, got {:?}",
            x.sizes()
        )));
    }
    let dims = x.sizes();
    let (c, h, w) = (dims[r - 3], dims[r - 2], dims[r - 1]);
    let mut od = [0usize; 16];
    od[..r].copy_from_slice(dims);
    if up {
        if c % (f * f) != 0 {
            return Err(KernelError::invalid(format!(
                "{op}: channels {c} not divisible by factor² {}",
                f * f
            )));
        }
        od[r - 3] = c / (f * f);
        od[r - 2] = h * f;
        od[r - 1] = w * f;
    } else {
        if h % f != 0 || w % f != 0 {
            return Err(KernelError::invalid(format!(
                "{op}: spatial size ({h}, {w}) not divisible by {f}"
            )));
        }
        od[r - 3] = c * f * f;
        od[r - 2] = h / f;
        od[r - 1] = w / f;
    }
    out.resize(&od[..r])?;
    let xst = x.strides();
    let ost = out.strides();
    dispatch_all!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        for_each_multi(&od[..r], |idx| {
            let lead: usize = (0..r - 3).map(|d| idx[d] * xst[d]).sum();
            let (oc, oy, ox) = (idx[r - 3], idx[r - 2], idx[r - 1]);
            let (ic, iy, ix) = if up {
                (oc * f * f + (oy % f) * f + ox % f, oy / f, ox / f)
            } else {
                let (ci, rem) = (oc / (f * f), oc % (f * f));
                (ci, oy * f + rem / f, ox * f + rem % f)
            };
            ys[offset(idx, &ost[..r])] = xs[lead + ic * xst[r - 3] + iy * xst[r - 2] + ix * xst[r - 1]];
        });
    });
    Ok(())
}

/// `pixel_shuffle.out(Tensor self, int upscale_factor, *, Tensor(a!) out)`.
fn pixel_shuffle_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shuffle(ctx, "pixel_shuffle", true)
}

/// `pixel_unshuffle.out(Tensor self, int downscale_factor, *, Tensor(a!) out)`.
fn pixel_unshuffle_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shuffle(ctx, "pixel_unshuffle", false)
}

// ---------------------------------------------------------------------------
// Embedding

/// `embedding.out(Tensor weight, Tensor indices, SymInt padding_idx=-1,
/// bool scale_grad_by_freq=False, bool sparse=False, *, Tensor(a!) out)`:
/// `[weight, indices, padding_idx, scale_grad_by_freq, sparse, out, ret]`.
fn embedding_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "embedding";
    ctx.expect_args(7)?;
    let mut out = ctx.out(5)?;
    let w = ctx.tensor(0)?;
    let ix = ctx.tensor(1)?;
    same_dtype(OP, "out", out.dtype(), w.dtype())?;
    if w.dim() != 2 {
        return Err(KernelError::invalid(format!(
            "{OP}: weight must be 2-D, got shape {:?}",
            w.sizes()
        )));
    }
    if !matches!(ix.dtype(), ScalarType::Int | ScalarType::Long) {
        return Err(KernelError::dtype(format!(
            "{OP}: indices must be Int or Long, got {}",
            ix.dtype()
        )));
    }
    let (v, d) = (w.size(0), w.size(1));
    let r = ix.dim();
    if r >= 16 {
        return Err(KernelError::invalid(format!(
            "{OP}: indices rank {r} too large"
        )));
    }
    let mut od = [0usize; 16];
    od[..r].copy_from_slice(ix.sizes());
    od[r] = d;
    out.resize(&od[..=r])?;
    if !out.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: only a contiguous out is supported"
        )));
    }
    let ist = ix.strides();
    let wst = w.strides();
    let mut bad: Option<i64> = None;
    dispatch_all!(w.dtype(), T => {
        let ws = super::slice::<T>(&w)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        let mut p = 0usize;
        let idims = &od[..r];
        let mut body = |raw: i64, ys: &mut [T]| {
            if raw < 0 || raw as usize >= v {
                bad.get_or_insert(raw);
                return;
            }
            let row = &mut ys[p * d..(p + 1) * d];
            let base = raw as usize * wst[0];
            if wst[1] == 1 {
                row.copy_from_slice(&ws[base..base + d]);
            } else {
                for (j, o) in row.iter_mut().enumerate() {
                    *o = ws[base + j * wst[1]];
                }
            }
            p += 1;
        };
        if ix.dtype() == ScalarType::Long {
            let is = super::slice::<i64>(&ix)?;
            if r == 0 {
                body(is[0], ys);
            } else {
                for_each_multi(idims, |idx| body(is[offset(idx, &ist[..r])], ys));
            }
        } else {
            let is = super::slice::<i32>(&ix)?;
            if r == 0 {
                body(is[0] as i64, ys);
            } else {
                for_each_multi(idims, |idx| body(is[offset(idx, &ist[..r])] as i64, ys));
            }
        }
    });
    if let Some(b) = bad {
        return Err(KernelError::invalid(format!(
            "{OP}: index {b} out of range for {v} embeddings"
        )));
    }
    Ok(())
}
