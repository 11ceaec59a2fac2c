//! `_softmax.out` / `_log_softmax.out` over any dim, numerically stable (max
//! subtracted). `f32` with a contiguous layout uses `pteron_linalg::vmath::vexp`;
//! other dtypes/layouts compute in `f64` through strides.

use pteron_linalg::vmath::vexp;
use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorMut, TensorRef};

use super::{for_each_multi, need_float, offset, same_dtype};
use crate::dispatch_float;
use crate::util::{norm_dim, Num};

pub(super) fn register(reg: &mut Registry) {
    reg.register("aten::_softmax.out", softmax_out);
    reg.register("aten::_log_softmax.out", log_softmax_out);
}

/// `_softmax.out(Tensor self, int dim, bool half_to_float, *, Tensor(a!) out)`:
/// `[self, dim, half_to_float, out, ret]`.
fn softmax_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    run(ctx, "_softmax", false)
}

/// `_log_softmax.out(...)`: same stack as `_softmax.out`.
fn log_softmax_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    run(ctx, "_log_softmax", true)
}

fn run(ctx: &KernelCtx<'_>, op: &str, log: bool) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let dim = ctx.int(1)?;
    if ctx.bool(2)? {
        return Err(KernelError::unsupported(format!(
            "{op}: half_to_float=True is not supported"
        )));
    }
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    need_float(op, "input", x.dtype())?;
    same_dtype(op, "out", out.dtype(), x.dtype())?;
    let d = norm_dim(dim, x.dim())?;
    out.resize(x.sizes())?;
    if x.numel() == 0 {
        return Ok(());
    }
    if x.dim() == 0 {
        // Softmax of a single element: 1 (log: 0), NaN stays NaN.
        return dispatch_float!(x.dtype(), T => {
            let v = super::slice::<T>(&x)?[0].to_f64();
            // exp(v - v): NaN for infinities and NaN, else exactly 1.
            let d = if v.is_finite() { 0.0 } else { f64::NAN };
            let r = if log { d } else { 1.0 + d };
            super::slice_mut::<T>(&mut out)?[0] = T::from_f64(r);
            Ok(())
        });
    }
    let same_order = x.dim_order() == out.dim_order();
    if x.dtype() == ScalarType::Float && same_order {
        // Memory-order geometry: the softmax dim has stride `inner`, rows of `n` elements.
        let st = x.strides();
        let n = x.size(d);
        let inner = st[d];
        let total = x.numel();
        // Contiguous-in-memory block structure: [outer, n, inner].
        if inner * n > 0 && total % (inner * n) == 0 && is_block(&x, d) {
            let xs = super::slice::<f32>(&x)?;
            let ys = super::slice_mut::<f32>(&mut out)?;
            let outer = total / (inner * n);
            if inner == 1 {
                for o in 0..outer {
                    row_f32(&xs[o * n..(o + 1) * n], &mut ys[o * n..(o + 1) * n], log);
                }
            } else {
                for o in 0..outer {
                    let base = o * n * inner;
                    cols_f32(
                        &xs[base..base + n * inner],
                        &mut ys[base..base + n * inner],
                        n,
                        inner,
                        log,
                    );
                }
            }
            return Ok(());
        }
    }
    generic(&x, &mut out, d, log)
}

/// Whether the memory layout is `[outer, n, inner]` blocks for dim `d`: every dim
/// laid out after `d` in memory (inner) has a smaller stride, every dim before a larger.
fn is_block(x: &TensorRef<'_>, d: usize) -> bool {
    let st = x.strides();
    let n = x.size(d);
    let inner = st[d];
    (0..x.dim()).all(|k| k == d || x.size(k) == 1 || st[k] < inner || st[k] >= inner * n)
        && (0..x.dim())
            .filter(|&k| k != d && st[k] < inner)
            .map(|k| x.size(k))
            .product::<usize>()
            == inner
}

fn row_f32(x: &[f32], y: &mut [f32], log: bool) {
    let mut m = f32::NEG_INFINITY;
    let mut nan = false;
    for &v in x {
        nan |= v.is_nan();
        m = if v > m { v } else { m };
    }
    if nan {
        y.fill(f32::NAN);
        return;
    }
    if m == f32::NEG_INFINITY {
        // All -inf: exp(-inf - -inf) is NaN in ATen too.
        y.fill(f32::NAN);
        return;
    }
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v - m;
    }
    if log {
        // As ExecuTorch's optimized `log_softmax` over the last dim: `exp(x - max)`
        // (glibc's `expf`) summed in 8 lanes (element `i` into lane `i mod 8`,
        // the tail too), the lanes added in order, then `(x - max) - ln(sum)`.
        let mut lanes = [0.0f32; 8];
        for c in y.chunks(8) {
            for (l, &v) in lanes.iter_mut().zip(c) {
                *l += pteron_linalg::vmath::exp_scalar(v);
            }
        }
        let s = lanes[1..].iter().fold(lanes[0], |a, &l| a + l);
        let ls = s.ln();
        for o in y.iter_mut() {
            *o -= ls;
        }
    } else {
        // As ExecuTorch: exp (glibc's expf arithmetic), the sum in element order,
        // then a division per element (not a multiply by the reciprocal).
        vexp(y);
        let s: f32 = y.iter().sum();
        for o in y.iter_mut() {
            *o /= s;
        }
    }
}

/// Softmax along the middle axis of an `[n, inner]` block, vectorised across `inner`.
fn cols_f32(x: &[f32], y: &mut [f32], n: usize, inner: usize, log: bool) {
    const C: usize = 64;
    let mut j0 = 0;
    while j0 < inner {
        let w = C.min(inner - j0);
        let mut m = [f32::NEG_INFINITY; C];
        let mut nan = [false; C];
        for k in 0..n {
            let r = &x[k * inner + j0..k * inner + j0 + w];
            for ((mm, nn), &v) in m.iter_mut().zip(nan.iter_mut()).zip(r) {
                *nn |= v.is_nan();
                *mm = if v > *mm { v } else { *mm };
            }
        }
        let mut s = [0.0f32; C];
        for k in 0..n {
            let (xr, yr) = (
                &x[k * inner + j0..k * inner + j0 + w],
                &mut y[k * inner + j0..k * inner + j0 + w],
            );
            for ((o, &v), &mm) in yr.iter_mut().zip(xr).zip(&m) {
                *o = v - mm;
            }
            if log {
                for (ss, &v) in s.iter_mut().zip(yr.iter()) {
                    *ss += pteron_linalg::vmath::exp_scalar(v);
                }
            } else {
                vexp(yr);
                for (ss, &v) in s.iter_mut().zip(yr.iter()) {
                    *ss += v;
                }
            }
        }
        for k in 0..n {
            let yr = &mut y[k * inner + j0..k * inner + j0 + w];
            for (jj, o) in yr.iter_mut().enumerate() {
                if nan[jj] || m[jj] == f32::NEG_INFINITY {
                    *o = f32::NAN;
                } else if log {
                    *o -= s[jj].ln();
                } else {
                    *o /= s[jj];
                }
            }
        }
        j0 += w;
    }
}

/// Any float dtype and dim order: rows along `d` through strides, in f64.
fn generic(
    x: &TensorRef<'_>,
    out: &mut TensorMut<'_>,
    d: usize,
    log: bool,
) -> Result<(), KernelError> {
    let r = x.dim();
    let mut dims = [0usize; 16];
    dims[..r].copy_from_slice(x.sizes());
    let n = dims[d];
    dims[d] = 1;
    let xst = x.strides();
    let ost = out.strides();
    let (sx, so) = (xst[d], ost[d]);
    dispatch_float!(x.dtype(), T => {
        let xs = super::slice::<T>(x)?;
        let ys = super::slice_mut::<T>(out)?;
        for_each_multi(&dims[..r], |idx| {
            let bx = offset(idx, &xst[..r]);
            let bo = offset(idx, &ost[..r]);
            let mut m = f64::NEG_INFINITY;
            let mut nan = false;
            for k in 0..n {
                let v = xs[bx + k * sx].to_f64();
                nan |= v.is_nan();
                if v > m {
                    m = v;
                }
            }
            if nan || m == f64::NEG_INFINITY {
                for k in 0..n {
                    ys[bo + k * so] = T::from_f64(f64::NAN);
                }
                return;
            }
            let mut s = 0.0;
            for k in 0..n {
                s += (xs[bx + k * sx].to_f64() - m).exp();
            }
            for k in 0..n {
                let v = xs[bx + k * sx].to_f64() - m;
                ys[bo + k * so] = T::from_f64(if log { v - s.ln() } else { v.exp() / s });
            }
        });
    });
    Ok(())
}
