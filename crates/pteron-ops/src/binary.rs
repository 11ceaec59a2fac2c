//! Binary and ternary elementwise kernels (arithmetic, division modes, pow, bitwise,
//! logical, comparisons, `where`, `masked_fill`) and copies/fills/conversions. All are
//! thin adapters over the elementwise engine in [`crate::util`]. See the crate docs
//! for conventions.

use pteron_runtime::{KernelCtx, KernelError, Registry, Scalar, ScalarType, TensorMut, TensorRef};

use crate::dispatch_compute;
use crate::util::{
    check_cast, copy_broadcast, copy_convert, map1, map2, map3, result_type, scalar_as, scalar_to,
    Compute, Num, Operand,
};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::add.out", add_out);
    reg.register("aten::add.Scalar_out", add_scalar_out);
    reg.register("aten::sub.out", sub_out);
    reg.register("aten::sub.Scalar_out", sub_scalar_out);
    reg.register("aten::rsub.Scalar_out", rsub_scalar_out);
    reg.register("aten::mul.out", mul_out);
    reg.register("aten::mul.Scalar_out", mul_scalar_out);
    reg.register("aten::div.out", div_out);
    reg.register("aten::div.out_mode", div_out_mode);
    reg.register("aten::div.Scalar_out", div_scalar_out);
    reg.register("aten::div.Scalar_mode_out", div_scalar_mode_out);
    reg.register("aten::remainder.Tensor_out", remainder_out);
    reg.register("aten::remainder.Scalar_out", remainder_scalar_out);
    reg.register("aten::fmod.Tensor_out", fmod_out);
    reg.register("aten::fmod.Scalar_out", fmod_scalar_out);
    reg.register("aten::floor_divide.out", floor_divide_out);
    reg.register("aten::pow.Tensor_Tensor_out", pow_tt_out);
    reg.register("aten::pow.Tensor_Scalar_out", pow_ts_out);
    reg.register("aten::pow.Scalar_out", pow_st_out);
    reg.register("aten::atan2.out", atan2_out);
    reg.register("aten::maximum.out", maximum_out);
    reg.register("aten::minimum.out", minimum_out);
    reg.register("aten::bitwise_and.Tensor_out", bitwise_and_out);
    reg.register("aten::bitwise_or.Tensor_out", bitwise_or_out);
    reg.register("aten::bitwise_xor.Tensor_out", bitwise_xor_out);
    reg.register("aten::bitwise_and.Scalar_out", bitwise_and_scalar_out);
    reg.register("aten::bitwise_or.Scalar_out", bitwise_or_scalar_out);
    reg.register("aten::bitwise_xor.Scalar_out", bitwise_xor_scalar_out);
    reg.register("aten::bitwise_left_shift.Tensor_out", lshift_out);
    reg.register("aten::bitwise_right_shift.Tensor_out", rshift_out);
    reg.register(
        "aten::bitwise_left_shift.Tensor_Scalar_out",
        lshift_scalar_out,
    );
    reg.register(
        "aten::bitwise_right_shift.Tensor_Scalar_out",
        rshift_scalar_out,
    );
    reg.register("aten::logical_and.out", logical_and_out);
    reg.register("aten::logical_or.out", logical_or_out);
    reg.register("aten::logical_xor.out", logical_xor_out);
    reg.register("aten::eq.Tensor_out", eq_out);
    reg.register("aten::ne.Tensor_out", ne_out);
    reg.register("aten::lt.Tensor_out", lt_out);
    reg.register("aten::le.Tensor_out", le_out);
    reg.register("aten::gt.Tensor_out", gt_out);
    reg.register("aten::ge.Tensor_out", ge_out);
    reg.register("aten::eq.Scalar_out", eq_scalar_out);
    reg.register("aten::ne.Scalar_out", ne_scalar_out);
    reg.register("aten::lt.Scalar_out", lt_scalar_out);
    reg.register("aten::le.Scalar_out", le_scalar_out);
    reg.register("aten::gt.Scalar_out", gt_scalar_out);
    reg.register("aten::ge.Scalar_out", ge_scalar_out);
    reg.register("aten::where.self_out", where_out);
    reg.register("aten::masked_fill.Scalar_out", masked_fill_out);
    reg.register("aten::_to_copy.out", to_copy_out);
    reg.register(
        "dim_order_ops::_to_dim_order_copy.out",
        to_dim_order_copy_out,
    );
    reg.register("dim_order_ops::_clone_dim_order.out", clone_dim_order_out);
    reg.register("aten::clone.out", clone_out);
    reg.register("aten::copy_", copy_inplace);
    reg.register("aten::copy.out", copy_out);
    reg.register("aten::fill.Scalar_out", fill_scalar_out);
    reg.register("aten::fill.Tensor_out", fill_tensor_out);
    reg.register("aten::full_like.out", full_like_out);
    reg.register("aten::full.out", full_out);
    reg.register("aten::zeros.out", zeros_out);
    reg.register("aten::ones.out", ones_out);
    reg.register("aten::scalar_tensor.out", scalar_tensor_out);
}

// ---------------------------------------------------------------------------
// Argument helpers

/// `(self, other, ..., out)` with two tensor operands: returns `(out, a, b)`.
fn tt<'a>(
    ctx: &KernelCtx<'a>,
    n: usize,
    out_arg: usize,
) -> Result<(TensorMut<'a>, TensorRef<'a>, TensorRef<'a>), KernelError> {
    ctx.expect_args(n)?;
    let out = ctx.out(out_arg)?;
    Ok((out, ctx.tensor(0)?, ctx.tensor(1)?))
}

/// `(self, Scalar other, ..., out)`: returns `(out, a, s)`.
fn ts<'a>(
    ctx: &KernelCtx<'a>,
    n: usize,
    out_arg: usize,
) -> Result<(TensorMut<'a>, TensorRef<'a>, Scalar), KernelError> {
    ctx.expect_args(n)?;
    let out = ctx.out(out_arg)?;
    Ok((out, ctx.tensor(0)?, ctx.scalar(1)?))
}

fn rt2(a: &TensorRef<'_>, b: &TensorRef<'_>) -> ScalarType {
    result_type(&[Operand::of(a), Operand::of(b)])
}

fn rts(a: &TensorRef<'_>, s: Scalar) -> ScalarType {
    result_type(&[Operand::of(a), Operand::Scalar(s)])
}

/// The dtype a scalar multiplier (`alpha`) is taken in: the op-math type for floats.
fn opmath(rt: ScalarType) -> ScalarType {
    match rt {
        ScalarType::Half | ScalarType::BFloat16 => ScalarType::Float,
        t => t,
    }
}

/// Floating result of true division / float ufuncs: integers promote to Float.
fn float_rt(rt: ScalarType) -> ScalarType {
    if rt.is_floating() {
        rt
    } else {
        ScalarType::Float
    }
}

fn check_alpha(op: &str, rt: ScalarType, alpha: Scalar) -> Result<(), KernelError> {
    if !rt.is_floating() && matches!(alpha, Scalar::Double(_)) {
        return Err(KernelError::invalid(format!(
            "{op}: a floating alpha cannot be used with integral result dtype {rt}"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// add / sub / mul

fn add_like(
    op: &str,
    out: &mut TensorMut<'_>,
    a: &TensorRef<'_>,
    b: Result<&TensorRef<'_>, Scalar>,
    alpha: Scalar,
    sign: i64,
) -> Result<(), KernelError> {
    let rt = match b {
        Ok(b) => rt2(a, b),
        Err(s) => rts(a, s),
    };
    check_cast(op, rt, out.dtype())?;
    check_alpha(op, rt, alpha)?;
    if sign < 0 && rt == ScalarType::Bool {
        return Err(KernelError::dtype(format!(
            "{op}: subtraction of Bool tensors is not supported"
        )));
    }
    dispatch_compute!(rt, C => {
        let mut al: C = scalar_as(alpha, opmath(rt));
        if sign < 0 {
            al = al.neg();
        }
        let unit = al == C::one();
        match b {
            Ok(b) if unit => map2::<C, C>(out, a, b, |x, y| x.add(y)),
            Ok(b) => map2::<C, C>(out, a, b, move |x, y| x.add(y.mul(al))),
            Err(s) => {
                let v: C = scalar_as::<C>(s, rt).mul(al);
                map1::<C, C>(out, a, move |x| x.add(v))
            }
        }
    })
}

/// `add.out(Tensor self, Tensor other, *, Scalar alpha=1, Tensor(a!) out)`.
fn add_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 5, 3)?;
    add_like("add", &mut out, &a, Ok(&b), ctx.scalar(2)?, 1)
}

/// `add.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out)`.
fn add_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 5, 3)?;
    add_like("add", &mut out, &a, Err(s), ctx.scalar(2)?, 1)
}

fn sub_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 5, 3)?;
    add_like("sub", &mut out, &a, Ok(&b), ctx.scalar(2)?, -1)
}

fn sub_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 5, 3)?;
    add_like("sub", &mut out, &a, Err(s), ctx.scalar(2)?, -1)
}

/// `rsub.Scalar_out(Tensor self, Scalar other, Scalar alpha=1, *, Tensor(a!) out)`:
/// `other - alpha * self`.
fn rsub_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 5, 3)?;
    let alpha = ctx.scalar(2)?;
    let rt = rts(&a, s);
    check_cast("rsub", rt, out.dtype())?;
    check_alpha("rsub", rt, alpha)?;
    if rt == ScalarType::Bool {
        return Err(KernelError::dtype(
            "rsub: subtraction of Bool tensors is not supported",
        ));
    }
    dispatch_compute!(rt, C => {
        let al: C = scalar_as(alpha, opmath(rt));
        let v: C = scalar_as(s, rt);
        map1::<C, C>(&mut out, &a, move |x| v.sub(x.mul(al)))
    })
}

fn mul_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    let rt = rt2(&a, &b);
    check_cast("mul", rt, out.dtype())?;
    if rt == ScalarType::Bool {
        return map2::<i64, u8>(&mut out, &a, &b, |x, y| (x != 0 && y != 0) as u8);
    }
    dispatch_compute!(rt, C => map2::<C, C>(&mut out, &a, &b, |x, y| x.mul(y)))
}

fn mul_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 4, 2)?;
    let rt = rts(&a, s);
    check_cast("mul", rt, out.dtype())?;
    dispatch_compute!(rt, C => {
        let v: C = scalar_as(s, rt);
        if rt == ScalarType::Bool {
            map1::<C, u8>(&mut out, &a, move |x| (x != C::zero() && v != C::zero()) as u8)
        } else {
            map1::<C, C>(&mut out, &a, move |x| x.mul(v))
        }
    })
}

// ---------------------------------------------------------------------------
// Division family

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    True,
    Trunc,
    Floor,
}

fn parse_mode(ctx: &KernelCtx<'_>, arg: usize) -> Result<Mode, KernelError> {
    if ctx.is_none(arg)? {
        return Ok(Mode::True);
    }
    match ctx.string(arg)? {
        "trunc" => Ok(Mode::Trunc),
        "floor" => Ok(Mode::Floor),
        other => Err(KernelError::invalid(format!(
            "div: rounding_mode must be None, 'trunc' or 'floor', got '{other}'"
        ))),
    }
}

macro_rules! float_div_fns {
    ($($t:ident: $floordiv:ident, $fmod:ident, $rem:ident;)*) => {$(
        /// ATen's `div_floor_floating`.
        #[inline(always)]
        fn $floordiv(a: $t, b: $t) -> $t {
            if b == 0.0 {
                return a / b;
            }
            let m = a % b;
            let mut div = (a - m) / b;
            if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                div -= 1.0;
            }
            if div != 0.0 {
                let mut fd = div.floor();
                if div - fd > 0.5 {
                    fd += 1.0;
                }
                fd
            } else {
                (0.0 as $t).copysign(a / b)
            }
        }
        #[inline(always)]
        fn $fmod(a: $t, b: $t) -> $t {
            a % b
        }
        /// Python-style remainder (sign of the divisor).
        #[inline(always)]
        fn $rem(a: $t, b: $t) -> $t {
            let m = a % b;
            if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
                m + b
            } else {
                m
            }
        }
    )*};
}
float_div_fns! {
    f32: floordiv32, fmod32, rem32;
    f64: floordiv64, fmod64, rem64;
}

#[inline(always)]
fn floordiv_i(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let q = a.wrapping_div(b);
    if a.wrapping_rem(b) != 0 && ((a < 0) != (b < 0)) {
        q - 1
    } else {
        q
    }
}

#[inline(always)]
fn rem_i(a: i64, b: i64) -> i64 {
    if b == 0 {
        return 0;
    }
    let r = a.wrapping_rem(b);
    if r != 0 && ((r < 0) != (b < 0)) {
        r + b
    } else {
        r
    }
}

/// Fails if an integer divisor tensor holds a zero (ATen/ExecuTorch raise on it).
fn check_int_divisor(
    op: &str,
    rt: ScalarType,
    b: Result<&TensorRef<'_>, Scalar>,
) -> Result<(), KernelError> {
    if rt.is_floating() {
        return Ok(());
    }
    let zero = match b {
        Err(s) => s.to_f64() == 0.0,
        Ok(t) => {
            t.numel() > 0
                && crate::util::Src::of(t)
                    .map(|s| (0..t.numel()).any(|i| s.get::<f64>(i) == 0.0))?
        }
    };
    if zero {
        return Err(KernelError::invalid(format!(
            "{op}: integer division by zero"
        )));
    }
    Ok(())
}

/// Integer-or-float division-like op `f` over (tensor, tensor|scalar).
fn div_like(
    op: &str,
    out: &mut TensorMut<'_>,
    a: &TensorRef<'_>,
    b: Result<&TensorRef<'_>, Scalar>,
    mode: Mode,
    kind: DivKind,
) -> Result<(), KernelError> {
    let base = match b {
        Ok(b) => rt2(a, b),
        Err(s) => rts(a, s),
    };
    let rt = if mode == Mode::True && kind == DivKind::Div {
        float_rt(base)
    } else {
        base
    };
    check_cast(op, rt, out.dtype())?;
    if rt == ScalarType::Bool && kind != DivKind::Div {
        return Err(KernelError::dtype(format!(
            "{op}: Bool tensors are not supported"
        )));
    }
    check_int_divisor(op, rt, b)?;
    macro_rules! run {
        ($C:ty, $f:expr) => {{
            let f = $f;
            match b {
                Ok(b) => map2::<$C, $C>(out, a, b, f),
                Err(s) => {
                    let v: $C = scalar_as(s, rt);
                    map1::<$C, $C>(out, a, move |x| f(x, v))
                }
            }
        }};
    }
    match (rt, kind, mode) {
        (ScalarType::Double, DivKind::Div, Mode::True) => run!(f64, |x: f64, y: f64| x / y),
        (ScalarType::Double, DivKind::Div, Mode::Trunc) => {
            run!(f64, |x: f64, y: f64| (x / y).trunc())
        }
        (ScalarType::Double, DivKind::Div, Mode::Floor) => run!(f64, floordiv64),
        (ScalarType::Double, DivKind::Rem, _) => run!(f64, rem64),
        (ScalarType::Double, DivKind::Fmod, _) => run!(f64, fmod64),
        (t, DivKind::Div, Mode::True) if t.is_floating() => run!(f32, |x: f32, y: f32| x / y),
        // Reduced-precision dtypes round the quotient before truncating, like ATen.
        (ScalarType::Half, DivKind::Div, Mode::Trunc) => {
            run!(f32, |x: f32, y: f32| half::f16::from_f32(x / y)
                .to_f32()
                .trunc())
        }
        (ScalarType::BFloat16, DivKind::Div, Mode::Trunc) => {
            run!(f32, |x: f32, y: f32| half::bf16::from_f32(x / y)
                .to_f32()
                .trunc())
        }
        (t, DivKind::Div, Mode::Trunc) if t.is_floating() => {
            run!(f32, |x: f32, y: f32| (x / y).trunc())
        }
        (t, DivKind::Div, Mode::Floor) if t.is_floating() => run!(f32, floordiv32),
        (t, DivKind::Rem, _) if t.is_floating() => run!(f32, rem32),
        (t, DivKind::Fmod, _) if t.is_floating() => run!(f32, fmod32),
        (_, DivKind::Div, Mode::Floor) => run!(i64, floordiv_i),
        (_, DivKind::Div, _) => run!(i64, |x: i64, y: i64| if y == 0 {
            0
        } else {
            x.wrapping_div(y)
        }),
        (_, DivKind::Rem, _) => run!(i64, rem_i),
        (_, DivKind::Fmod, _) => run!(i64, |x: i64, y: i64| if y == 0 {
            0
        } else {
            x.wrapping_rem(y)
        }),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum DivKind {
    Div,
    Rem,
    Fmod,
}

/// `div.out(Tensor self, Tensor other, *, Tensor(a!) out)`.
fn div_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    // ExecuTorch divides f32 tensors by a one-element divisor as a multiply by
    // its f32 reciprocal (x / 6 is x * (1/6)); that rounding is reproduced.
    if [a.dtype(), b.dtype(), out.dtype()] == [ScalarType::Float; 3]
        && b.numel() == 1
        && b.dim() <= a.dim()
    {
        let inv = 1.0f32 / b.as_slice::<f32>()?[0];
        return map1::<f32, f32>(&mut out, &a, move |x| x * inv);
    }
    div_like("div", &mut out, &a, Ok(&b), Mode::True, DivKind::Div)
}

/// `div.out_mode(Tensor self, Tensor other, *, str? rounding_mode, Tensor(a!) out)`.
fn div_out_mode(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 5, 3)?;
    let mode = parse_mode(ctx, 2)?;
    div_like("div", &mut out, &a, Ok(&b), mode, DivKind::Div)
}

fn div_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 4, 2)?;
    div_like("div", &mut out, &a, Err(s), Mode::True, DivKind::Div)
}

/// `div.Scalar_mode_out(Tensor self, Scalar other, *, str? rounding_mode, Tensor(a!) out)`.
fn div_scalar_mode_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 5, 3)?;
    let mode = parse_mode(ctx, 2)?;
    div_like("div", &mut out, &a, Err(s), mode, DivKind::Div)
}

fn floor_divide_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    div_like(
        "floor_divide",
        &mut out,
        &a,
        Ok(&b),
        Mode::Floor,
        DivKind::Div,
    )
}

fn remainder_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    div_like("remainder", &mut out, &a, Ok(&b), Mode::True, DivKind::Rem)
}

fn remainder_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 4, 2)?;
    div_like("remainder", &mut out, &a, Err(s), Mode::True, DivKind::Rem)
}

fn fmod_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    div_like("fmod", &mut out, &a, Ok(&b), Mode::True, DivKind::Fmod)
}

fn fmod_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 4, 2)?;
    div_like("fmod", &mut out, &a, Err(s), Mode::True, DivKind::Fmod)
}

// ---------------------------------------------------------------------------
// pow, atan2, maximum/minimum

/// Integer power by squaring (wrapping), ATen's `powi` (negative exponents give
/// 1, ±1 or 0).
#[inline(always)]
fn powi(base: i64, exp: i64) -> i64 {
    if exp < 0 {
        return match base {
            1 => 1,
            -1 => {
                if exp & 1 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    let (mut b, mut e, mut r) = (base, exp, 1i64);
    while e > 0 {
        if e & 1 == 1 {
            r = r.wrapping_mul(b);
        }
        b = b.wrapping_mul(b);
        e >>= 1;
    }
    r
}

fn pow_run(
    out: &mut TensorMut<'_>,
    rt: ScalarType,
    a: Result<&TensorRef<'_>, Scalar>,
    b: Result<&TensorRef<'_>, Scalar>,
) -> Result<(), KernelError> {
    check_cast("pow", rt, out.dtype())?;
    if rt == ScalarType::Bool {
        return Err(KernelError::dtype("pow: Bool result is not supported"));
    }
    macro_rules! run {
        ($C:ty, $f:expr) => {{
            let f = $f;
            match (a, b) {
                (Ok(a), Ok(b)) => map2::<$C, $C>(out, a, b, f),
                (Ok(a), Err(s)) => {
                    let v: $C = scalar_as(s, rt);
                    map1::<$C, $C>(out, a, move |x| f(x, v))
                }
                (Err(s), Ok(b)) => {
                    let v: $C = scalar_as(s, rt);
                    map1::<$C, $C>(out, b, move |y| f(v, y))
                }
                (Err(_), Err(_)) => Err(KernelError::invalid("pow: needs a tensor operand")),
            }
        }};
    }
    match rt {
        ScalarType::Double => run!(f64, |x: f64, y: f64| x.powf(y)),
        // The platform `powf`, as ExecuTorch calls it (glibc's `powf(x, 2)` is not
        // always `x * x`).
        t if t.is_floating() => run!(f32, |x: f32, y: f32| x.powf(y)),
        _ => run!(i64, powi),
    }
}

/// `pow.Tensor_Tensor_out(Tensor self, Tensor exponent, *, Tensor(a!) out)`.
fn pow_tt_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    let rt = rt2(&a, &b);
    pow_run(&mut out, rt, Ok(&a), Ok(&b))
}

/// `pow.Tensor_Scalar_out(Tensor self, Scalar exponent, *, Tensor(a!) out)`.
fn pow_ts_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, s) = ts(ctx, 4, 2)?;
    let rt = rts(&a, s);
    if !rt.is_floating() && s.to_f64() < 0.0 {
        return Err(KernelError::invalid(
            "pow: integers to negative integer powers are not allowed",
        ));
    }
    pow_run(&mut out, rt, Ok(&a), Err(s))
}

/// `pow.Scalar_out(Scalar self, Tensor exponent, *, Tensor(a!) out)`.
fn pow_st_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let s = ctx.scalar(0)?;
    let b = ctx.tensor(1)?;
    let rt = rts(&b, s);
    pow_run(&mut out, rt, Err(s), Ok(&b))
}

fn atan2_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    let rt = float_rt(rt2(&a, &b));
    check_cast("atan2", rt, out.dtype())?;
    if rt == ScalarType::Double || out.dtype() == ScalarType::Double {
        map2::<f64, f64>(&mut out, &a, &b, |y, x| y.atan2(x))
    } else {
        map2::<f32, f32>(&mut out, &a, &b, |y, x| y.atan2(x))
    }
}

fn maximum_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    let rt = rt2(&a, &b);
    check_cast("maximum", rt, out.dtype())?;
    dispatch_compute!(rt, C => map2::<C, C>(&mut out, &a, &b, |x, y| x.max_nan(y)))
}

fn minimum_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    let rt = rt2(&a, &b);
    check_cast("minimum", rt, out.dtype())?;
    dispatch_compute!(rt, C => map2::<C, C>(&mut out, &a, &b, |x, y| x.min_nan(y)))
}

// ---------------------------------------------------------------------------
// Bitwise and logical

fn int_rt(op: &str, rt: ScalarType) -> Result<(), KernelError> {
    if rt.is_floating() {
        return Err(KernelError::dtype(format!(
            "{op}: dtype {rt} is not integral or Bool"
        )));
    }
    Ok(())
}

fn bitwise(
    ctx: &KernelCtx<'_>,
    op: &str,
    scalar: bool,
    f: impl Fn(i64, i64) -> i64 + Sync + Copy,
) -> Result<(), KernelError> {
    if scalar {
        let (mut out, a, s) = ts(ctx, 4, 2)?;
        let rt = rts(&a, s);
        int_rt(op, rt)?;
        check_cast(op, rt, out.dtype())?;
        if matches!(s, Scalar::Double(_)) {
            return Err(KernelError::dtype(format!(
                "{op}: a floating scalar is not supported"
            )));
        }
        let v: i64 = scalar_as(s, rt);
        map1::<i64, i64>(&mut out, &a, move |x| f(x, v))
    } else {
        let (mut out, a, b) = tt(ctx, 4, 2)?;
        let rt = rt2(&a, &b);
        int_rt(op, rt)?;
        check_cast(op, rt, out.dtype())?;
        map2::<i64, i64>(&mut out, &a, &b, f)
    }
}

fn bitwise_and_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_and", false, |x, y| x & y)
}
fn bitwise_or_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_or", false, |x, y| x | y)
}
fn bitwise_xor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_xor", false, |x, y| x ^ y)
}
fn bitwise_and_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_and", true, |x, y| x & y)
}
fn bitwise_or_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_or", true, |x, y| x | y)
}
fn bitwise_xor_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    bitwise(ctx, "bitwise_xor", true, |x, y| x ^ y)
}

/// Shifts with ATen semantics for the result dtype's width: out-of-range shift
/// amounts give 0 (left, or right of unsigned) or the sign fill (right of signed).
fn shift(ctx: &KernelCtx<'_>, op: &str, scalar: bool, left: bool) -> Result<(), KernelError> {
    let meta = |arg: usize| -> Result<Operand, KernelError> {
        let (dtype, shape) = ctx.tensor_meta(arg)?;
        Ok(Operand::Tensor {
            dtype,
            rank: shape.rank(),
        })
    };
    let other = if scalar {
        Operand::Scalar(ctx.scalar(1)?)
    } else {
        meta(1)?
    };
    let rt = result_type(&[meta(0)?, other]);
    int_rt(op, rt)?;
    let bits = (rt.element_size() * 8) as i64;
    let unsigned = matches!(rt, ScalarType::Byte | ScalarType::Bool);
    let f = move |x: i64, y: i64| -> i64 {
        if left {
            if y < 0 || y >= bits {
                0
            } else {
                x.wrapping_shl(y as u32)
            }
        } else if y < 0 || y >= bits {
            if unsigned || x >= 0 {
                0
            } else {
                -1
            }
        } else {
            x >> y
        }
    };
    bitwise(ctx, op, scalar, f)
}

fn lshift_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shift(ctx, "bitwise_left_shift", false, true)
}
fn rshift_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shift(ctx, "bitwise_right_shift", false, false)
}
fn lshift_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shift(ctx, "bitwise_left_shift", true, true)
}
fn rshift_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    shift(ctx, "bitwise_right_shift", true, false)
}

fn logical(ctx: &KernelCtx<'_>, f: impl Fn(bool, bool) -> bool + Sync) -> Result<(), KernelError> {
    let (mut out, a, b) = tt(ctx, 4, 2)?;
    map2::<f64, u8>(&mut out, &a, &b, move |x, y| f(x != 0.0, y != 0.0) as u8)
}

fn logical_and_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    logical(ctx, |x, y| x && y)
}
fn logical_or_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    logical(ctx, |x, y| x || y)
}
fn logical_xor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    logical(ctx, |x, y| x != y)
}

// ---------------------------------------------------------------------------
// Comparisons

#[derive(Clone, Copy)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[inline(always)]
fn cmp<C: PartialOrd>(c: Cmp, x: C, y: C) -> bool {
    match c {
        Cmp::Eq => x == y,
        Cmp::Ne => x != y,
        Cmp::Lt => x < y,
        Cmp::Le => x <= y,
        Cmp::Gt => x > y,
        Cmp::Ge => x >= y,
    }
}

fn compare(ctx: &KernelCtx<'_>, c: Cmp, scalar: bool) -> Result<(), KernelError> {
    macro_rules! go {
        ($c:expr) => {{
            const C_: Cmp = $c;
            if scalar {
                let (mut out, a, s) = ts(ctx, 4, 2)?;
                let rt = rts(&a, s);
                dispatch_compute!(rt, C => {
                    let v: C = scalar_as(s, rt);
                    map1::<C, u8>(&mut out, &a, move |x| cmp(C_, x, v) as u8)
                })
            } else {
                let (mut out, a, b) = tt(ctx, 4, 2)?;
                let rt = rt2(&a, &b);
                dispatch_compute!(rt, C => map2::<C, u8>(&mut out, &a, &b, |x, y| cmp(C_, x, y) as u8))
            }
        }};
    }
    match c {
        Cmp::Eq => go!(Cmp::Eq),
        Cmp::Ne => go!(Cmp::Ne),
        Cmp::Lt => go!(Cmp::Lt),
        Cmp::Le => go!(Cmp::Le),
        Cmp::Gt => go!(Cmp::Gt),
        Cmp::Ge => go!(Cmp::Ge),
    }
}

fn eq_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Eq, false)
}
fn ne_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Ne, false)
}
fn lt_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Lt, false)
}
fn le_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Le, false)
}
fn gt_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Gt, false)
}
fn ge_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Ge, false)
}
fn eq_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Eq, true)
}
fn ne_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Ne, true)
}
fn lt_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Lt, true)
}
fn le_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Le, true)
}
fn gt_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Gt, true)
}
fn ge_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    compare(ctx, Cmp::Ge, true)
}

// ---------------------------------------------------------------------------
// where / masked_fill

/// `where.self_out(Tensor condition, Tensor self, Tensor other, *, Tensor(a!) out)`.
fn where_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let (c, a, b) = (ctx.tensor(0)?, ctx.tensor(1)?, ctx.tensor(2)?);
    if !matches!(c.dtype(), ScalarType::Bool | ScalarType::Byte) {
        return Err(KernelError::dtype(format!(
            "where: condition must be Bool, got {}",
            c.dtype()
        )));
    }
    let rt = rt2(&a, &b);
    check_cast("where", rt, out.dtype())?;
    dispatch_compute!(rt, C => map3::<C, C>(&mut out, &c, &a, &b, |m, x, y| if m != C::zero() { x } else { y }))
}

/// `masked_fill.Scalar_out(Tensor self, Tensor mask, Scalar value, *, Tensor(a!) out)`.
fn masked_fill_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let (x, m) = (ctx.tensor(0)?, ctx.tensor(1)?);
    let v = ctx.scalar(2)?;
    if m.dtype() != ScalarType::Bool {
        return Err(KernelError::dtype(format!(
            "masked_fill: mask must be Bool, got {}",
            m.dtype()
        )));
    }
    if x.dtype() != out.dtype() {
        return Err(KernelError::dtype(format!(
            "masked_fill: out dtype {} differs from input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    if !x.dtype().is_floating() && matches!(v, Scalar::Double(_)) {
        return Err(KernelError::dtype(format!(
            "masked_fill: a floating value cannot fill a {} tensor",
            x.dtype()
        )));
    }
    // Broadcasting of the mask must not change self's shape.
    let (shape, rank) = crate::util::broadcast_shapes(x.sizes(), m.sizes())?;
    if shape[..rank] != *x.sizes() {
        return Err(KernelError::invalid(format!(
            "masked_fill: mask of shape {:?} does not broadcast to self's shape {:?}",
            m.sizes(),
            x.sizes()
        )));
    }
    let rt = x.dtype();
    dispatch_compute!(rt, C => {
        let fill: C = scalar_as(v, rt);
        map2::<C, C>(&mut out, &x, &m, move |a, k| if k != C::zero() { fill } else { a })
    })
}

// ---------------------------------------------------------------------------
// Copies and fills

fn check_dim_order_arg(
    ctx: &KernelCtx<'_>,
    arg: usize,
    out: &TensorMut<'_>,
    op: &str,
) -> Result<(), KernelError> {
    if let Some(l) = ctx.opt_int_list(arg)? {
        let (o, n) = l.to_array()?;
        let want = out.dim_order();
        let ok = n == want.as_slice().len() && (0..n).all(|i| o[i] == want.as_slice()[i] as i64);
        if !ok {
            return Err(KernelError::invalid(format!(
                "{op}: dim_order {:?} does not match out's dim order {:?}",
                &o[..n],
                want
            )));
        }
    }
    Ok(())
}

/// `_to_copy.out(Tensor self, *, bool non_blocking=False, MemoryFormat? memory_format=None, Tensor(a!) out)`.
fn to_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    copy_convert(&mut out, &x)
}

/// `_to_dim_order_copy.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out)`.
fn to_dim_order_copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    check_dim_order_arg(ctx, 2, &out, "_to_dim_order_copy")?;
    copy_convert(&mut out, &x)
}

/// `_clone_dim_order.out(Tensor self, *, bool non_blocking=False, int[]? dim_order=None, Tensor(a!) out)`.
fn clone_dim_order_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    check_dim_order_arg(ctx, 2, &out, "_clone_dim_order")?;
    same_dtype_copy("_clone_dim_order", &mut out, &x)
}

fn same_dtype_copy(
    op: &str,
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
) -> Result<(), KernelError> {
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} differs from input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    copy_convert(out, x)
}

/// `clone.out(Tensor self, *, MemoryFormat? memory_format=None, Tensor(a!) out)`.
fn clone_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    same_dtype_copy("clone", &mut out, &x)
}

/// `copy_(Tensor(a!) self, Tensor src, bool non_blocking=False)`: stack
/// `[self, src, non_blocking, ret]`; `src` broadcasts to `self`.
fn copy_inplace(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut dst = ctx.out(0)?;
    let src = ctx.tensor(1)?;
    let shape = dst.shape();
    copy_broadcast(&mut dst, &src, shape.dims())
}

/// `copy.out(Tensor self, Tensor src, bool non_blocking=False, *, Tensor(a!) out)`.
fn copy_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let (x, src) = (ctx.tensor(0)?, ctx.tensor(1)?);
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "copy: out dtype {} differs from self dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    copy_broadcast(&mut out, &src, x.sizes())
}

/// Fills `out` (already sized) with `v` converted to its dtype.
fn fill_with(out: &mut TensorMut<'_>, v: Scalar) -> Result<(), KernelError> {
    if out.numel() == 0 {
        return Ok(());
    }
    let dt = out.dtype();
    macro_rules! put {
        ($T:ty) => {{
            let x: $T = scalar_as(v, dt);
            out.as_mut_slice::<$T>()?.fill(x);
        }};
    }
    match dt {
        ScalarType::Float => put!(f32),
        ScalarType::Double => put!(f64),
        ScalarType::Half => put!(half::f16),
        ScalarType::BFloat16 => put!(half::bf16),
        ScalarType::Char => put!(i8),
        ScalarType::Short => put!(i16),
        ScalarType::Int => put!(i32),
        ScalarType::Long => put!(i64),
        ScalarType::Byte => put!(u8),
        ScalarType::Bool => {
            let b = match v {
                Scalar::Double(d) => d != 0.0,
                other => scalar_to::<i64>(other) != 0,
            };
            out.as_mut_slice::<u8>()?.fill(b as u8);
        }
        other => {
            return Err(KernelError::dtype(format!(
                "fill: dtype {other} is not supported"
            )))
        }
    }
    Ok(())
}

fn check_fill_value(op: &str, dt: ScalarType, v: Scalar) -> Result<(), KernelError> {
    if !dt.is_floating()
        && dt != ScalarType::Bool
        && matches!(v, Scalar::Double(d) if d.fract() != 0.0 || !d.is_finite())
    {
        return Err(KernelError::dtype(format!(
            "{op}: value {} cannot be stored in a {dt} tensor",
            v.to_f64()
        )));
    }
    Ok(())
}

/// `fill.Scalar_out(Tensor self, Scalar value, *, Tensor(a!) out)`.
fn fill_scalar_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let x = ctx.tensor(0)?;
    let v = ctx.scalar(1)?;
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "fill: out dtype {} differs from self dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    out.resize(x.sizes())?;
    fill_with(&mut out, v)
}

/// `fill.Tensor_out(Tensor self, Tensor value, *, Tensor(a!) out)`: `value` is 0-dim.
fn fill_tensor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let (x, v) = (ctx.tensor(0)?, ctx.tensor(1)?);
    if v.dim() != 0 {
        return Err(KernelError::invalid(format!(
            "fill: value must be a 0-dim tensor, got shape {:?}",
            v.sizes()
        )));
    }
    if out.dtype() != x.dtype() {
        return Err(KernelError::dtype(format!(
            "fill: out dtype {} differs from self dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    copy_broadcast(&mut out, &v, x.sizes())
}

/// `full_like.out(Tensor self, Scalar fill_value, *, MemoryFormat? memory_format=None, Tensor(a!) out)`.
fn full_like_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(5)?;
    let mut out = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    let v = ctx.scalar(1)?;
    out.resize(x.sizes())?;
    fill_with(&mut out, v)
}

fn sizes_arg(ctx: &KernelCtx<'_>, arg: usize) -> Result<([usize; 16], usize), KernelError> {
    let (s, n) = ctx.int_list(arg)?.to_array()?;
    let mut u = [0usize; 16];
    for k in 0..n {
        u[k] = usize::try_from(s[k]).map_err(|_| {
            KernelError::invalid(format!("size {} at position {k} is negative", s[k]))
        })?;
    }
    Ok((u, n))
}

/// `full.out(SymInt[] size, Scalar fill_value, *, Tensor(a!) out)`.
fn full_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(4)?;
    let mut out = ctx.out(2)?;
    let (s, n) = sizes_arg(ctx, 0)?;
    let v = ctx.scalar(1)?;
    check_fill_value("full", out.dtype(), v)?;
    out.resize(&s[..n])?;
    fill_with(&mut out, v)
}

fn const_fill(ctx: &KernelCtx<'_>, v: i64) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let (s, n) = sizes_arg(ctx, 0)?;
    out.resize(&s[..n])?;
    fill_with(&mut out, Scalar::Int(v))
}

/// `zeros.out(SymInt[] size, *, Tensor(a!) out)`.
fn zeros_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const_fill(ctx, 0)
}

/// `ones.out(SymInt[] size, *, Tensor(a!) out)`.
fn ones_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const_fill(ctx, 1)
}

/// `scalar_tensor.out(Scalar s, *, Tensor(a!) out)`.
fn scalar_tensor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(3)?;
    let mut out = ctx.out(1)?;
    let v = ctx.scalar(0)?;
    out.resize(&[])?;
    fill_with(&mut out, v)
}

#[cfg(test)]
mod tests {
    use pteron_runtime::testing::{run_op, TestArg, TestTensor};
    use pteron_runtime::ScalarType;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                ((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 100.0 - 5.0
            })
            .collect()
    }

    /// Large inputs take the parallel dense path; results must equal a serial loop.
    #[test]
    fn large_dense_and_scalar_broadcast() {
        let reg = crate::registry();
        let n = 200_003;
        let (a, b) = (data(n, 1), data(n, 7));
        let out = run_op(
            &reg,
            "aten::add.out",
            vec![
                TestArg::Tensor(TestTensor::new(&[n], a.clone())),
                TestArg::Tensor(TestTensor::new(&[n], b.clone())),
                TestArg::Int(2),
                TestArg::Tensor(TestTensor::out(ScalarType::Float, &[n])),
                TestArg::Ref(3),
            ],
        )
        .unwrap();
        let got = out[3].tensor().to_vec::<f32>();
        assert!(got
            .iter()
            .zip(a.iter().zip(&b))
            .all(|(g, (x, y))| *g == x + 2.0 * y));
        let out = run_op(
            &reg,
            "aten::mul.out",
            vec![
                TestArg::Tensor(TestTensor::new(&[n], a.clone())),
                TestArg::Tensor(TestTensor::new(&[], vec![3.0f32])),
                TestArg::Tensor(TestTensor::out(ScalarType::Float, &[n])),
                TestArg::Ref(2),
            ],
        )
        .unwrap();
        let got = out[2].tensor().to_vec::<f32>();
        assert!(got.iter().zip(&a).all(|(g, x)| *g == x * 3.0));
    }

    /// Small same-dtype broadcasts (the typed strided path): rotary-style
    /// `[1, 1, 6, 24] × [6, 1]`, an outer product `[6, 1] × [1, 24]` and a
    /// channels-last operand, against index arithmetic.
    #[test]
    fn small_broadcasts_match_index_arithmetic() {
        let reg = crate::registry();
        let a = data(6 * 24, 11);
        let b = data(6, 13);
        let c = data(24, 17);
        let mul = |x: TestTensor, y: TestTensor, out: &[usize]| {
            let r = run_op(
                &reg,
                "aten::mul.out",
                vec![
                    TestArg::Tensor(x),
                    TestArg::Tensor(y),
                    TestArg::Tensor(TestTensor::out(ScalarType::Float, out)),
                    TestArg::Ref(2),
                ],
            )
            .unwrap();
            r[2].tensor().to_logical_vec::<f32>()
        };
        let got = mul(
            TestTensor::new(&[1, 1, 6, 24], a.clone()),
            TestTensor::new(&[6, 1], b.clone()),
            &[1, 1, 6, 24],
        );
        for i in 0..6 * 24 {
            assert_eq!(got[i], a[i] * b[i / 24], "rotary element {i}");
        }
        let got = mul(
            TestTensor::new(&[6, 1], b.clone()),
            TestTensor::new(&[1, 24], c.clone()),
            &[6, 24],
        );
        for i in 0..6 * 24 {
            assert_eq!(got[i], b[i / 24] * c[i % 24], "outer element {i}");
        }
        let got = mul(
            TestTensor::new(&[1, 24, 2, 3], a.clone()).with_dim_order(&[0, 2, 3, 1]),
            TestTensor::new(&[3], b[..3].to_vec()),
            &[1, 24, 2, 3],
        );
        for i in 0..6 * 24 {
            assert_eq!(got[i], a[i] * b[i % 3], "channels-last element {i}");
        }
    }

    /// Channels-last input with a contiguous output and long rows (several gather blocks).
    #[test]
    fn strided_rows_longer_than_a_block() {
        let reg = crate::registry();
        let sizes = [2usize, 3, 5, 300];
        let n: usize = sizes.iter().product();
        let a = data(n, 3);
        let bias = data(300, 5);
        let out = run_op(
            &reg,
            "aten::sub.out",
            vec![
                TestArg::Tensor(TestTensor::new(&sizes, a.clone()).with_dim_order(&[0, 2, 3, 1])),
                TestArg::Tensor(TestTensor::new(&[300], bias.clone())),
                TestArg::Int(1),
                TestArg::Tensor(TestTensor::out(ScalarType::Float, &sizes)),
                TestArg::Ref(3),
            ],
        )
        .unwrap();
        let got = out[3].tensor().to_logical_vec::<f32>();
        for i in 0..n {
            assert_eq!(got[i], a[i] - bias[i % 300], "element {i}");
        }
    }
}
