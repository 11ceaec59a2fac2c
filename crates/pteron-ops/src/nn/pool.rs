//! 2-D pooling: `max_pool2d_with_indices`, `avg_pool2d`, `_adaptive_avg_pool2d`.
//! Inputs are `[C, H, W]` or `[N, C, H, W]` in any dim order (strided access);
//! contiguous `f32` average pooling uses `pteron_linalg::pool2d`.

use pteron_linalg::pool2d::{avg_pool2d as lin_avg_pool2d, Pool2dParams};
use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use super::{need_float, same_dtype, spatial_list};
use crate::util::Num;
use crate::{dispatch_all, dispatch_float};

pub(super) fn register(reg: &mut Registry) {
    reg.register(
        "aten::max_pool2d_with_indices.out",
        max_pool2d_with_indices_out,
    );
    reg.register("aten::avg_pool2d.out", avg_pool2d_out);
    reg.register("aten::_adaptive_avg_pool2d.out", adaptive_avg_pool2d_out);
}

/// `(N, C, H, W)` of a 3-D or 4-D input (N = 1 for 3-D) and its strides.
#[derive(Clone, Copy)]
struct Planes {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    st: [usize; 4],
}

fn planes(op: &str, dims: &[usize], st: &[usize; 16]) -> Result<Planes, KernelError> {
    match dims.len() {
        3 => Ok(Planes {
            n: 1,
            c: dims[0],
            h: dims[1],
            w: dims[2],
            st: [0, st[0], st[1], st[2]],
        }),
        4 => Ok(Planes {
            n: dims[0],
            c: dims[1],
            h: dims[2],
            w: dims[3],
            st: [st[0], st[1], st[2], st[3]],
        }),
        _ => Err(KernelError::invalid(format!(
            "{op}: input must be 3-D (C, H, W) or 4-D (N, C, H, W), got shape {dims:?}"
        ))),
    }
}

fn out_planes(out: &TensorMut<'_>) -> [usize; 4] {
    let st = out.strides();
    if out.dim() == 3 {
        [0, st[0], st[1], st[2]]
    } else {
        [st[0], st[1], st[2], st[3]]
    }
}

/// Output sizes with `(h, w)` replaced.
fn pooled_dims(x: &[usize], oh: usize, ow: usize) -> ([usize; 4], usize) {
    let r = x.len();
    let mut d = [0usize; 4];
    d[..r].copy_from_slice(x);
    d[r - 2] = oh;
    d[r - 1] = ow;
    (d, r)
}

/// ATen's `pooling_output_shape`.
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
            "{op}: output size {o} is too small for input size {i} (kernel {k}, stride {s}, padding {p}, dilation {d})"
        )));
    }
    Ok(o as usize)
}

struct PoolArgs {
    k: [usize; 3],
    s: [usize; 3],
    p: [usize; 3],
    d: [usize; 3],
    ceil: bool,
}

fn check_pool(op: &str, x: &Planes, a: &PoolArgs) -> Result<(usize, usize), KernelError> {
    if a.k[0] / 2 < a.p[0] || a.k[1] / 2 < a.p[1] {
        return Err(KernelError::invalid(format!(
            "{op}: padding {:?} must be at most half of the kernel size {:?}",
            &a.p[..2],
            &a.k[..2]
        )));
    }
    if x.h == 0 || x.w == 0 || x.c == 0 {
        return Err(KernelError::invalid(format!(
            "{op}: input has an empty channel/spatial dimension"
        )));
    }
    let oh = pool_len(op, x.h, a.k[0], a.s[0], a.p[0], a.d[0], a.ceil)?;
    let ow = pool_len(op, x.w, a.k[1], a.s[1], a.p[1], a.d[1], a.ceil)?;
    Ok((oh, ow))
}

/// `max_pool2d_with_indices.out(Tensor self, int[2] kernel_size, int[2] stride=[],
/// int[2] padding=0, int[2] dilation=1, bool ceil_mode=False, *, Tensor(a!) out,
/// Tensor(b!) indices)`: `[self, kernel_size, stride, padding, dilation, ceil_mode, out,
/// indices, ret]`.
fn max_pool2d_with_indices_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "max_pool2d_with_indices";
    ctx.expect_args(9)?;
    let k = spatial_list(ctx.int_list(1)?, 2, None, 1, OP, "kernel_size")?;
    let a = PoolArgs {
        k,
        s: spatial_list(ctx.int_list(2)?, 2, Some(k), 1, OP, "stride")?,
        p: spatial_list(ctx.int_list(3)?, 2, None, 0, OP, "padding")?,
        d: spatial_list(ctx.int_list(4)?, 2, None, 1, OP, "dilation")?,
        ceil: ctx.bool(5)?,
    };
    let mut out = ctx.out(6)?;
    let mut idx = ctx.out(7)?;
    let x = ctx.tensor(0)?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    same_dtype(OP, "indices", idx.dtype(), ScalarType::Long)?;
    let xp = planes(OP, x.sizes(), &x.strides())?;
    let (oh, ow) = check_pool(OP, &xp, &a)?;
    let (od, r) = pooled_dims(x.sizes(), oh, ow);
    out.resize(&od[..r])?;
    idx.resize(&od[..r])?;
    let ost = out_planes(&out);
    let ist = out_planes(&idx);
    let id = super::slice_mut::<i64>(&mut idx)?;
    if matches!(x.dtype(), ScalarType::Bool) {
        return Err(KernelError::dtype(format!(
            "{OP}: Bool input is not supported"
        )));
    }
    dispatch_all!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        max_pool::<T>(&xp, &a, oh, ow, xs, ys, ost, id, ist);
    });
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn max_pool<T: Num>(
    x: &Planes,
    a: &PoolArgs,
    oh: usize,
    ow: usize,
    xs: &[T],
    ys: &mut [T],
    ost: [usize; 4],
    id: &mut [i64],
    ist: [usize; 4],
) {
    let (h, w) = (x.h as isize, x.w as isize);
    let (kh, kw) = (a.k[0] as isize, a.k[1] as isize);
    let (sh, sw) = (a.s[0] as isize, a.s[1] as isize);
    let (ph, pw) = (a.p[0] as isize, a.p[1] as isize);
    let (dh, dw) = (a.d[0] as isize, a.d[1] as isize);
    for n in 0..x.n {
        for c in 0..x.c {
            let base = n * x.st[0] + c * x.st[1];
            let obase = n * ost[0] + c * ost[1];
            let ibase = n * ist[0] + c * ist[1];
            for oy in 0..oh {
                let mut y0 = oy as isize * sh - ph;
                let y1 = (y0 + (kh - 1) * dh + 1).min(h);
                while y0 < 0 {
                    y0 += dh;
                }
                for ox in 0..ow {
                    let mut x0 = ox as isize * sw - pw;
                    let x1 = (x0 + (kw - 1) * dw + 1).min(w);
                    while x0 < 0 {
                        x0 += dw;
                    }
                    let mut best_i = y0 * w + x0;
                    let mut best: Option<T> = None;
                    let mut iy = y0;
                    while iy < y1 {
                        let mut ix = x0;
                        while ix < x1 {
                            let v = xs[base + iy as usize * x.st[2] + ix as usize * x.st[3]];
                            #[allow(clippy::eq_op)]
                            let nan = v != v;
                            let take = match best {
                                None => true,
                                Some(b) => v > b || nan,
                            };
                            // ATen starts from -inf: a first value of -inf or NaN still wins.
                            if take {
                                best = Some(v);
                                best_i = iy * w + ix;
                            }
                            ix += dw;
                        }
                        iy += dh;
                    }
                    let o = oy * ost[2] + ox * ost[3];
                    ys[obase + o] = best.unwrap_or_else(|| T::from_f64(f64::NEG_INFINITY));
                    id[ibase + oy * ist[2] + ox * ist[3]] = best_i as i64;
                }
            }
        }
    }
}

/// `avg_pool2d.out(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0,
/// bool ceil_mode=False, bool count_include_pad=True, int? divisor_override=None, *,
/// Tensor(a!) out)`: `[self, kernel_size, stride, padding, ceil_mode,
/// count_include_pad, divisor_override, out, ret]`.
fn avg_pool2d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "avg_pool2d";
    ctx.expect_args(9)?;
    let k = spatial_list(ctx.int_list(1)?, 2, None, 1, OP, "kernel_size")?;
    let a = PoolArgs {
        k,
        s: spatial_list(ctx.int_list(2)?, 2, Some(k), 1, OP, "stride")?,
        p: spatial_list(ctx.int_list(3)?, 2, None, 0, OP, "padding")?,
        d: [1; 3],
        ceil: ctx.bool(4)?,
    };
    let count_include_pad = ctx.bool(5)?;
    let divisor = ctx.opt_int(6)?;
    if divisor == Some(0) {
        return Err(KernelError::invalid(format!(
            "{OP}: divisor_override must be non-zero"
        )));
    }
    let mut out = ctx.out(7)?;
    let x = ctx.tensor(0)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let xp = planes(OP, x.sizes(), &x.strides())?;
    let (oh, ow) = check_pool(OP, &xp, &a)?;
    let (od, r) = pooled_dims(x.sizes(), oh, ow);
    out.resize(&od[..r])?;
    if x.dtype() == ScalarType::Float && x.is_contiguous() && out.is_contiguous() && xp.n * xp.c > 0
    {
        let p = Pool2dParams {
            batch: xp.n,
            channels: xp.c,
            in_h: xp.h,
            in_w: xp.w,
            k_h: a.k[0],
            k_w: a.k[1],
            stride: (a.s[0], a.s[1]),
            padding: (a.p[0], a.p[1]),
            dilation: (1, 1),
            ceil_mode: a.ceil,
            count_include_pad,
            divisor_override: divisor.map(|d| d as usize),
        };
        if divisor.is_none_or(|d| d > 0) && p.out_hw() == Some((oh, ow)) {
            return lin_avg_pool2d(
                &p,
                super::slice::<f32>(&x)?,
                super::slice_mut::<f32>(&mut out)?,
            )
            .map_err(|e| KernelError::invalid(format!("{OP}: {e}")));
        }
    }
    let ost = out_planes(&out);
    let (h, w) = (xp.h as isize, xp.w as isize);
    let (ph, pw) = (a.p[0] as isize, a.p[1] as isize);
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(&x)?;
        let ys = super::slice_mut::<T>(&mut out)?;
        for n in 0..xp.n {
            for c in 0..xp.c {
                let base = n * xp.st[0] + c * xp.st[1];
                let obase = n * ost[0] + c * ost[1];
                for oy in 0..oh {
                    let hs = oy as isize * a.s[0] as isize - ph;
                    let he = (hs + a.k[0] as isize).min(h + ph);
                    for ox in 0..ow {
                        let ws = ox as isize * a.s[1] as isize - pw;
                        let we = (ws + a.k[1] as isize).min(w + pw);
                        let pool_size = (he - hs) * (we - ws);
                        let (hs, ws, he, we) = (hs.max(0), ws.max(0), he.min(h), we.min(w));
                        let o = obase + oy * ost[2] + ox * ost[3];
                        if hs >= he || ws >= we {
                            ys[o] = T::zero();
                            continue;
                        }
                        let mut s = 0.0f64;
                        for iy in hs..he {
                            for ix in ws..we {
                                s += xs[base + iy as usize * xp.st[2] + ix as usize * xp.st[3]].to_f64();
                            }
                        }
                        let div = match divisor {
                            Some(d) => d as f64,
                            None if count_include_pad => pool_size as f64,
                            None => ((he - hs) * (we - ws)) as f64,
                        };
                        ys[o] = T::from_f64(s / div);
                    }
                }
            }
        }
    });
    Ok(())
}

/// `_adaptive_avg_pool2d.out(Tensor self, SymInt[2] output_size, *, Tensor(a!) out)`:
/// `[self, output_size, out, ret]`.
fn adaptive_avg_pool2d_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "_adaptive_avg_pool2d";
    ctx.expect_args(4)?;
    let os = spatial_list(ctx.int_list(1)?, 2, None, 0, OP, "output_size")?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    need_float(OP, "input", x.dtype())?;
    same_dtype(OP, "out", out.dtype(), x.dtype())?;
    let xp = planes(OP, x.sizes(), &x.strides())?;
    if xp.h == 0 || xp.w == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: input spatial dimensions must be non-empty"
        )));
    }
    let (oh, ow) = (os[0], os[1]);
    let (od, r) = pooled_dims(x.sizes(), oh, ow);
    out.resize(&od[..r])?;
    adaptive_avg(&x, &xp, &mut out, oh, ow)
}

fn adaptive_avg(
    x: &TensorRef<'_>,
    xp: &Planes,
    out: &mut TensorMut<'_>,
    oh: usize,
    ow: usize,
) -> Result<(), KernelError> {
    let ost = out_planes(out);
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(x)?;
        let ys = super::slice_mut::<T>(out)?;
        for n in 0..xp.n {
            for c in 0..xp.c {
                let base = n * xp.st[0] + c * xp.st[1];
                for oy in 0..oh {
                    let (hs, he) = (oy * xp.h / oh, ((oy + 1) * xp.h).div_ceil(oh));
                    for ox in 0..ow {
                        let (ws, we) = (ox * xp.w / ow, ((ox + 1) * xp.w).div_ceil(ow));
                        let mut s = 0.0f64;
                        for iy in hs..he {
                            let row = base + iy * xp.st[2];
                            for ix in ws..we {
                                s += xs[row + ix * xp.st[3]].to_f64();
                            }
                        }
                        let cnt = ((he - hs) * (we - ws)) as f64;
                        ys[n * ost[0] + c * ost[1] + oy * ost[2] + ox * ost[3]] = T::from_f64(s / cnt);
                    }
                }
            }
        }
    });
    Ok(())
}
