//! Prim ops: symbolic-size arithmetic on scalars (`executorch_prim::*`), size queries
//! (`aten::sym_size.int`, `aten::sym_numel`), `aten::_local_scalar_dense`, and the
//! zero-copy `executorch_prim::et_view.default` / `et_copy_index.tensor`.
//!
//! Stacks: binary scalar ops `[a, b, ret]`, unary `[a, ret]`, `sym_ite` `[c, a, b, ret]`.
#![allow(clippy::needless_range_loop)] // loops index several parallel arrays

use half::{bf16, f16};
use pteron_runtime::{KernelCtx, KernelError, Registry, Scalar, ScalarType};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::sym_size.int", sym_size_int);
    reg.register("aten::sym_numel", sym_numel);
    reg.register("aten::_local_scalar_dense", local_scalar_dense);
    reg.register("executorch_prim::add.Scalar", prim_add);
    reg.register("executorch_prim::sub.Scalar", prim_sub);
    reg.register("executorch_prim::mul.Scalar", prim_mul);
    reg.register("executorch_prim::truediv.Scalar", prim_truediv);
    reg.register("executorch_prim::floordiv.Scalar", prim_floordiv);
    reg.register("executorch_prim::floordiv.int", prim_floordiv);
    reg.register("executorch_prim::mod.Scalar", prim_mod);
    reg.register("executorch_prim::mod.int", prim_mod);
    reg.register("executorch_prim::eq.Scalar", prim_eq);
    reg.register("executorch_prim::gt.Scalar", prim_gt);
    reg.register("executorch_prim::ge.Scalar", prim_ge);
    reg.register("executorch_prim::lt.Scalar", prim_lt);
    reg.register("executorch_prim::le.Scalar", prim_le);
    reg.register("executorch_prim::sym_max.Scalar", prim_max);
    reg.register("executorch_prim::sym_min.Scalar", prim_min);
    reg.register("executorch_prim::neg.Scalar", prim_neg);
    reg.register("executorch_prim::ceil.Scalar", prim_ceil);
    reg.register("executorch_prim::round.Scalar", prim_round);
    reg.register("executorch_prim::trunc.Scalar", prim_trunc);
    reg.register("executorch_prim::sym_float.Scalar", prim_sym_float);
    reg.register("executorch_prim::sym_int.Scalar", prim_sym_int);
    reg.register("executorch_prim::sym_not.Scalar", prim_sym_not);
    reg.register("executorch_prim::sym_ite.Scalar", prim_sym_ite);
    reg.register("executorch_prim::et_copy_index.tensor", et_copy_index);
    reg.register("executorch_prim::et_view.default", et_view);
}

/// `sym_size.int(Tensor self, int dim) -> SymInt`: `[self, dim, ret]`.
fn sym_size_int(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let (_, shape) = ctx.tensor_meta(0)?;
    let dim = ctx.int(1)?;
    let rank = shape.rank();
    let d = if dim < 0 { dim + rank as i64 } else { dim };
    if d < 0 || d >= rank as i64 {
        return Err(KernelError::invalid(format!(
            "sym_size: dim {dim} out of range for a tensor of rank {rank}"
        )));
    }
    ctx.set_scalar(2, Scalar::Int(shape.dims()[d as usize] as i64))
}

/// `sym_numel(Tensor self) -> SymInt`: `[self, ret]`.
fn sym_numel(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(2)?;
    let (_, shape) = ctx.tensor_meta(0)?;
    ctx.set_scalar(1, Scalar::Int(shape.numel() as i64))
}

/// `_local_scalar_dense(Tensor self) -> Scalar`: `[self, ret]`.
fn local_scalar_dense(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(2)?;
    let t = ctx.tensor(0)?;
    if t.numel() != 1 {
        return Err(KernelError::invalid(format!(
            "_local_scalar_dense: expected a tensor with one element, got shape {:?}",
            t.sizes()
        )));
    }
    let s = match t.dtype() {
        ScalarType::Float => Scalar::Double(t.as_slice::<f32>()?[0] as f64),
        ScalarType::Double => Scalar::Double(t.as_slice::<f64>()?[0]),
        ScalarType::Half => Scalar::Double(t.as_slice::<f16>()?[0].to_f64()),
        ScalarType::BFloat16 => Scalar::Double(t.as_slice::<bf16>()?[0].to_f64()),
        ScalarType::Char => Scalar::Int(t.as_slice::<i8>()?[0] as i64),
        ScalarType::Short => Scalar::Int(t.as_slice::<i16>()?[0] as i64),
        ScalarType::Int => Scalar::Int(t.as_slice::<i32>()?[0] as i64),
        ScalarType::Long => Scalar::Int(t.as_slice::<i64>()?[0]),
        ScalarType::Byte => Scalar::Int(t.as_slice::<u8>()?[0] as i64),
        ScalarType::Bool => Scalar::Bool(t.as_slice::<u8>()?[0] != 0),
        other => {
            return Err(KernelError::dtype(format!(
                "_local_scalar_dense: dtype {other} is not supported"
            )))
        }
    };
    ctx.set_scalar(1, s)
}

/// Both operands as integers (Bool counts as Int), or `None` if either is a Double.
fn ints(a: Scalar, b: Scalar) -> Option<(i64, i64)> {
    Some((a.to_i64()?, b.to_i64()?))
}

fn binary(
    ctx: &KernelCtx<'_>,
    name: &str,
    fi: fn(i64, i64) -> Result<Scalar, KernelError>,
    ff: fn(f64, f64) -> Result<Scalar, KernelError>,
) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let a = ctx.scalar(0)?;
    let b = ctx.scalar(1)?;
    let r = match ints(a, b) {
        Some((x, y)) => fi(x, y),
        None => ff(a.to_f64(), b.to_f64()),
    }
    .map_err(|e| KernelError::new(e.kind, format!("executorch_prim::{name}: {}", e.msg)))?;
    ctx.set_scalar(2, r)
}

fn overflow() -> KernelError {
    KernelError::invalid("integer overflow")
}

fn prim_add(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "add",
        |a, b| a.checked_add(b).map(Scalar::Int).ok_or_else(overflow),
        |a, b| Ok(Scalar::Double(a + b)),
    )
}
fn prim_sub(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "sub",
        |a, b| a.checked_sub(b).map(Scalar::Int).ok_or_else(overflow),
        |a, b| Ok(Scalar::Double(a - b)),
    )
}
fn prim_mul(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "mul",
        |a, b| a.checked_mul(b).map(Scalar::Int).ok_or_else(overflow),
        |a, b| Ok(Scalar::Double(a * b)),
    )
}
fn prim_truediv(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "truediv",
        |a, b| Ok(Scalar::Double(a as f64 / b as f64)),
        |a, b| Ok(Scalar::Double(a / b)),
    )
}

/// Python's integer floor division.
pub(crate) fn py_floordiv_i(a: i64, b: i64) -> Result<i64, KernelError> {
    if b == 0 {
        return Err(KernelError::invalid("integer division by zero"));
    }
    let q = a.checked_div(b).ok_or_else(overflow)?;
    Ok(if (a % b != 0) && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    })
}
/// Python's integer modulo (result has the divisor's sign).
pub(crate) fn py_mod_i(a: i64, b: i64) -> Result<i64, KernelError> {
    if b == 0 {
        return Err(KernelError::invalid("integer modulo by zero"));
    }
    let r = a.checked_rem(b).unwrap_or(0);
    Ok(if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    })
}
/// Python's float modulo.
fn py_mod_f(a: f64, b: f64) -> f64 {
    let m = a % b;
    if m != 0.0 && ((m < 0.0) != (b < 0.0)) {
        m + b
    } else if m == 0.0 {
        0.0f64.copysign(b)
    } else {
        m
    }
}
/// Python's float floor division (`divmod` algorithm).
fn py_floordiv_f(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        return a / b;
    }
    let m = a % b;
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div != 0.0 {
        let fl = div.floor();
        if div - fl > 0.5 {
            fl + 1.0
        } else {
            fl
        }
    } else {
        0.0f64.copysign(a / b)
    }
}

fn prim_floordiv(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "floordiv",
        |a, b| py_floordiv_i(a, b).map(Scalar::Int),
        |a, b| {
            if b == 0.0 {
                return Err(KernelError::invalid("float floor division by zero"));
            }
            Ok(Scalar::Double(py_floordiv_f(a, b)))
        },
    )
}
fn prim_mod(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "mod",
        |a, b| py_mod_i(a, b).map(Scalar::Int),
        |a, b| {
            if b == 0.0 {
                return Err(KernelError::invalid("float modulo by zero"));
            }
            Ok(Scalar::Double(py_mod_f(a, b)))
        },
    )
}
fn prim_eq(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "eq",
        |a, b| Ok(Scalar::Bool(a == b)),
        |a, b| Ok(Scalar::Bool(a == b)),
    )
}
fn prim_gt(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "gt",
        |a, b| Ok(Scalar::Bool(a > b)),
        |a, b| Ok(Scalar::Bool(a > b)),
    )
}
fn prim_ge(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "ge",
        |a, b| Ok(Scalar::Bool(a >= b)),
        |a, b| Ok(Scalar::Bool(a >= b)),
    )
}
fn prim_lt(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "lt",
        |a, b| Ok(Scalar::Bool(a < b)),
        |a, b| Ok(Scalar::Bool(a < b)),
    )
}
fn prim_le(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "le",
        |a, b| Ok(Scalar::Bool(a <= b)),
        |a, b| Ok(Scalar::Bool(a <= b)),
    )
}
fn prim_max(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "sym_max",
        |a, b| Ok(Scalar::Int(a.max(b))),
        |a, b| {
            Ok(Scalar::Double(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.max(b)
            }))
        },
    )
}
fn prim_min(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    binary(
        ctx,
        "sym_min",
        |a, b| Ok(Scalar::Int(a.min(b))),
        |a, b| {
            Ok(Scalar::Double(if a.is_nan() || b.is_nan() {
                f64::NAN
            } else {
                a.min(b)
            }))
        },
    )
}

fn unary(
    ctx: &KernelCtx<'_>,
    f: impl Fn(Scalar) -> Result<Scalar, KernelError>,
) -> Result<(), KernelError> {
    ctx.expect_args(2)?;
    let a = ctx.scalar(0)?;
    let r = f(a)?;
    ctx.set_scalar(1, r)
}

/// A double converted to Int, failing for NaN or out-of-range values.
fn f2i(v: f64, what: &str) -> Result<Scalar, KernelError> {
    if !v.is_finite() || !(-9.223372036854776e18..9.223372036854776e18).contains(&v) {
        return Err(KernelError::invalid(format!(
            "executorch_prim::{what}: {v} cannot be converted to an integer"
        )));
    }
    Ok(Scalar::Int(v as i64))
}

fn prim_neg(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Double(d) => Ok(Scalar::Double(-d)),
        other => other
            .to_i64()
            .unwrap_or(0)
            .checked_neg()
            .map(Scalar::Int)
            .ok_or_else(overflow),
    })
}
fn prim_ceil(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Double(d) => f2i(d.ceil(), "ceil"),
        other => Ok(Scalar::Int(other.to_i64().unwrap_or(0))),
    })
}
fn prim_round(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Double(d) => f2i(d.round_ties_even(), "round"),
        other => Ok(Scalar::Int(other.to_i64().unwrap_or(0))),
    })
}
fn prim_trunc(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Double(d) => f2i(d.trunc(), "trunc"),
        other => Ok(Scalar::Int(other.to_i64().unwrap_or(0))),
    })
}
fn prim_sym_float(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| Ok(Scalar::Double(a.to_f64())))
}
fn prim_sym_int(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Double(d) => f2i(d.trunc(), "sym_int"),
        other => Ok(Scalar::Int(other.to_i64().unwrap_or(0))),
    })
}
fn prim_sym_not(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    unary(ctx, |a| match a {
        Scalar::Bool(b) => Ok(Scalar::Bool(!b)),
        Scalar::Int(i) => Ok(Scalar::Bool(i == 0)),
        Scalar::Double(d) => Ok(Scalar::Bool(d == 0.0)),
    })
}
/// `sym_ite(cond, a, b)`: `[cond, a, b, ret]`.
fn prim_sym_ite(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let c = ctx.bool(0)?;
    let r = if c { ctx.scalar(1)? } else { ctx.scalar(2)? };
    ctx.set_scalar(3, r)
}

/// Resolves a view size list with at most one `-1` against `numel` elements.
pub(crate) fn infer_size(
    list: &pteron_runtime::IntList<'_>,
    numel: usize,
    what: &str,
) -> Result<([usize; 16], usize), KernelError> {
    let (raw, n) = list.to_array()?;
    let mut out = [0usize; 16];
    let mut infer: Option<usize> = None;
    let mut prod: usize = 1;
    for i in 0..n {
        let v = raw[i];
        if v == -1 {
            if infer.is_some() {
                return Err(KernelError::invalid(format!(
                    "{what}: only one dimension can be -1"
                )));
            }
            infer = Some(i);
        } else if v < 0 {
            return Err(KernelError::invalid(format!(
                "{what}: invalid size {v} at dim {i}"
            )));
        } else {
            out[i] = v as usize;
            prod = prod
                .checked_mul(v as usize)
                .ok_or_else(|| KernelError::invalid(format!("{what}: size overflows")))?;
        }
    }
    if let Some(k) = infer {
        if prod == 0 || !numel.is_multiple_of(prod) {
            return Err(KernelError::invalid(format!(
                "{what}: shape {:?} is invalid for input of size {numel}",
                &raw[..n]
            )));
        }
        out[k] = numel / prod;
    } else if prod != numel {
        return Err(KernelError::invalid(format!(
            "{what}: shape {:?} is invalid for input of size {numel}",
            &raw[..n]
        )));
    }
    Ok((out, n))
}

/// `et_view.default(Tensor self, int[] size) -> Tensor`: `[self, size, out]`; the
/// output becomes a view of `self` (no copy).
fn et_view(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    if ctx.num_args() != 3 && ctx.num_args() != 4 {
        ctx.expect_args(3)?;
    }
    let (_, shape) = ctx.tensor_meta(0)?;
    let list = ctx.int_list(1)?;
    let (sizes, n) = infer_size(&list, shape.numel(), "et_view")?;
    ctx.alias(2, 0, &sizes[..n])
}

/// `et_copy_index.tensor(Tensor copy_to, Tensor copy_from, int index)`: grows
/// `copy_to` along dim 0 to `index + 1` rows and writes `copy_from` into row `index`.
fn et_copy_index(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    if ctx.num_args() != 3 && ctx.num_args() != 4 {
        ctx.expect_args(3)?;
    }
    let index = ctx.int(2)?;
    let mut to = ctx.out(0)?;
    let from = ctx.tensor(1)?;
    if to.dtype() != from.dtype() {
        return Err(KernelError::dtype(format!(
            "et_copy_index: copy_to dtype {} != copy_from dtype {}",
            to.dtype(),
            from.dtype()
        )));
    }
    let shape = to.shape();
    if shape.rank() != from.dim() + 1 {
        return Err(KernelError::invalid(format!(
            "et_copy_index: copy_to rank {} must be copy_from rank {} + 1",
            shape.rank(),
            from.dim()
        )));
    }
    if index < 0 {
        return Err(KernelError::invalid(format!(
            "et_copy_index: negative index {index}"
        )));
    }
    let mut sizes = [0usize; 16];
    sizes[0] = index as usize + 1;
    for i in 0..from.dim() {
        if index > 0 && shape.dims()[i + 1] != from.size(i) {
            return Err(KernelError::invalid(format!(
                "et_copy_index: copy_to row shape {:?} differs from copy_from shape {:?}",
                &shape.dims()[1..],
                from.sizes()
            )));
        }
        sizes[i + 1] = from.size(i);
    }
    if !from.is_contiguous() || !to.is_contiguous() {
        return Err(KernelError::unsupported(
            "et_copy_index: tensors must be contiguous",
        ));
    }
    to.resize(&sizes[..shape.rank()])?;
    let src = from.bytes();
    let n = src.len();
    let dst = to.bytes_mut();
    let start = index as usize * n;
    dst.get_mut(start..start + n)
        .ok_or_else(|| KernelError::internal("et_copy_index: row outside copy_to"))?
        .copy_from_slice(src);
    Ok(())
}
