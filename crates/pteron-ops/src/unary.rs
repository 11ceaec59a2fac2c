//! Unary elementwise kernels (math ufuncs, rounding, predicates, activations, clamp).
//! Every kernel is a thin adapter over the elementwise engine in [`crate::util`]
//! (`map1`/`map2`/`map3`). See the crate docs for conventions.

use pteron_linalg::vmath::erf_f32;
use pteron_runtime::{KernelCtx, KernelError, Registry, Scalar, ScalarType, TensorMut, TensorRef};

use crate::dispatch_compute;
use crate::util::{
    check_cast, map1, map2, map3, par_chunks, result_type, scalar_as, Compute, Num, Operand,
};

pub(crate) fn register(reg: &mut Registry) {
    reg.register("aten::relu.out", relu_out);
    reg.register("aten::abs.out", abs_out);
    reg.register("aten::neg.out", neg_out);
    reg.register("aten::exp.out", exp_out);
    reg.register("aten::expm1.out", expm1_out);
    reg.register("aten::log.out", log_out);
    reg.register("aten::log1p.out", log1p_out);
    reg.register("aten::log2.out", log2_out);
    reg.register("aten::log10.out", log10_out);
    reg.register("aten::sqrt.out", sqrt_out);
    reg.register("aten::rsqrt.out", rsqrt_out);
    reg.register("aten::reciprocal.out", reciprocal_out);
    reg.register("aten::sin.out", sin_out);
    reg.register("aten::cos.out", cos_out);
    reg.register("aten::tan.out", tan_out);
    reg.register("aten::asin.out", asin_out);
    reg.register("aten::acos.out", acos_out);
    reg.register("aten::atan.out", atan_out);
    reg.register("aten::sinh.out", sinh_out);
    reg.register("aten::cosh.out", cosh_out);
    reg.register("aten::tanh.out", tanh_out);
    reg.register("aten::asinh.out", asinh_out);
    reg.register("aten::acosh.out", acosh_out);
    reg.register("aten::atanh.out", atanh_out);
    reg.register("aten::erf.out", erf_out);
    reg.register("aten::sigmoid.out", sigmoid_out);
    reg.register("aten::ceil.out", ceil_out);
    reg.register("aten::floor.out", floor_out);
    reg.register("aten::round.out", round_out);
    reg.register("aten::trunc.out", trunc_out);
    reg.register("aten::sign.out", sign_out);
    reg.register("aten::logit.out", logit_out);
    reg.register("aten::isnan.out", isnan_out);
    reg.register("aten::isinf.out", isinf_out);
    reg.register("aten::bitwise_not.out", bitwise_not_out);
    reg.register("aten::logical_not.out", logical_not_out);
    reg.register("aten::gelu.out", gelu_out);
    reg.register("aten::hardtanh.out", hardtanh_out);
    reg.register("aten::leaky_relu.out", leaky_relu_out);
    reg.register("aten::elu.out", elu_out);
    reg.register("aten::clamp.out", clamp_out);
    reg.register("aten::clamp.Tensor_out", clamp_tensor_out);
}

/// `op.out(Tensor self, *, Tensor(a!) out)`: stack `[self, out, ret]`; returns `(out, self)`.
fn unary_args<'a>(
    ctx: &KernelCtx<'a>,
    n: usize,
    out_arg: usize,
) -> Result<(TensorMut<'a>, TensorRef<'a>), KernelError> {
    ctx.expect_args(n)?;
    let out = ctx.out(out_arg)?;
    let x = ctx.tensor(0)?;
    Ok((out, x))
}

fn same_dtype(op: &str, x: &TensorRef<'_>, out: &TensorMut<'_>) -> Result<(), KernelError> {
    if x.dtype() != out.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} differs from input dtype {}",
            out.dtype(),
            x.dtype()
        )));
    }
    Ok(())
}

/// A floating ufunc (`exp`, `sin`, ...): integer and bool inputs compute in the default
/// float dtype; the out dtype must be floating. `vec` is an in-place vectorised f32
/// version used when input and out are both f32 with the same layout.
fn float_unary(
    ctx: &KernelCtx<'_>,
    op: &str,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
    vec: Option<fn(&mut [f32])>,
) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    float_unary_on(&mut out, &x, op, f32f, f64f, vec)
}

fn float_unary_on(
    out: &mut TensorMut<'_>,
    x: &TensorRef<'_>,
    op: &str,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
    vec: Option<fn(&mut [f32])>,
) -> Result<(), KernelError> {
    if !out.dtype().is_floating() {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} is not floating",
            out.dtype()
        )));
    }
    if x.dtype() == ScalarType::Double || out.dtype() == ScalarType::Double {
        return map1::<f64, f64>(out, x, f64f);
    }
    if let Some(v) = vec {
        if x.numel() > 0
            && x.dtype() == ScalarType::Float
            && out.dtype() == ScalarType::Float
            && x.dim_order() == out.dim_order()
        {
            out.resize(x.sizes())?;
            let d = out.as_mut_slice::<f32>()?;
            d.copy_from_slice(x.as_slice::<f32>()?);
            par_chunks(d, 4096, |_, c| v(c));
            return Ok(());
        }
    }
    map1::<f32, f32>(out, x, f32f)
}

macro_rules! float_ufunc {
    ($($name:ident => |$x:ident| $e:expr, $vec:expr;)*) => {$(
        fn $name(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
            float_unary(ctx, stringify!($name), |$x: f32| $e, |$x: f64| $e, $vec)
        }
    )*};
}

float_ufunc! {
    exp_out => |x| x.exp(), Some(pteron_linalg::vmath::vexp);
    expm1_out => |x| x.exp_m1(), None;
    log_out => |x| x.ln(), None;
    log1p_out => |x| x.ln_1p(), None;
    log2_out => |x| x.log2(), None;
    log10_out => |x| x.log10(), None;
    sqrt_out => |x| x.sqrt(), None;
    rsqrt_out => |x| 1.0 / x.sqrt(), None;
    reciprocal_out => |x| 1.0 / x, None;
    sin_out => |x| x.sin(), None;
    cos_out => |x| x.cos(), None;
    tan_out => |x| x.tan(), None;
    asin_out => |x| x.asin(), None;
    acos_out => |x| x.acos(), None;
    atan_out => |x| x.atan(), None;
    sinh_out => |x| x.sinh(), None;
    cosh_out => |x| x.cosh(), None;
    // The platform `tanhf` (ExecuTorch calls it; glibc's is not a polynomial we share).
    tanh_out => |x| x.tanh(), None;
    asinh_out => |x| x.asinh(), None;
    acosh_out => |x| x.acosh(), None;
    atanh_out => |x| x.atanh(), None;
    sigmoid_out => |x| 1.0 / (1.0 + (-x).exp()), Some(pteron_linalg::vmath::vsigmoid);
}

/// `erf.out(Tensor self, *, Tensor(a!) out)`: `f32` with glibc's `erff`
/// arithmetic ([`erf_f32`]), as ExecuTorch computes it; `f64` to double precision.
fn erf_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    float_unary(ctx, "erf_out", erf_f32, erf64, Some(verf_f32))
}

fn verf_f32(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = erf_f32(*v));
}

/// Exact GELU in `f32` as ExecuTorch 1.5.1 computes it (bit for bit, with the
/// platform-independent [`erf_f32`]): `(x · ½) · (1 + erf(x · f32(1/√2)))`.
fn gelu_erf_f32(v: f32) -> f32 {
    (v * 0.5) * (1.0 + erf_f32(v * core::f32::consts::FRAC_1_SQRT_2))
}

fn vgelu_erf_f32(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = gelu_erf_f32(*v));
}

/// `erf` to double precision (W. J. Cody's rational approximations).
#[allow(clippy::excessive_precision)]
pub(crate) fn erf64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    let ax = x.abs();
    let r = if ax < 0.5 {
        const A: [f64; 5] = [
            3.161_123_743_870_565_6,
            1.138_641_541_510_501_6e2,
            3.774_852_376_853_020_2e2,
            3.209_377_589_138_469_5e3,
            1.857_777_061_846_031_5e-1,
        ];
        const B: [f64; 4] = [
            2.360_129_095_234_412_1e1,
            2.440_246_379_344_441_7e2,
            1.282_616_526_077_372_3e3,
            2.844_236_833_439_170_6e3,
        ];
        let z = x * x;
        let mut num = A[4] * z;
        let mut den = z;
        for i in 0..3 {
            num = (num + A[i]) * z;
            den = (den + B[i]) * z;
        }
        return x * (num + A[3]) / (den + B[3]);
    } else if ax < 4.0 {
        const C: [f64; 9] = [
            5.641_884_969_886_700_9e-1,
            8.883_149_794_388_375_9,
            6.611_919_063_714_163e1,
            2.986_351_381_974_001_3e2,
            8.819_522_212_417_691e2,
            1.712_047_612_634_070_6e3,
            2.051_078_377_826_071_5e3,
            1.230_339_354_797_997_2e3,
            2.153_115_354_744_038_5e-8,
        ];
        const D: [f64; 8] = [
            1.574_492_611_070_983_5e1,
            1.176_939_508_913_125e2,
            5.371_811_018_620_098_6e2,
            1.621_389_574_566_690_2e3,
            3.290_799_235_733_459_6e3,
            4.362_619_090_143_247e3,
            3.439_367_674_143_721_6e3,
            1.230_339_354_803_749_5e3,
        ];
        let mut num = C[8] * ax;
        let mut den = ax;
        for i in 0..7 {
            num = (num + C[i]) * ax;
            den = (den + D[i]) * ax;
        }
        let erfc = (num + C[7]) / (den + D[7]);
        let zsq = (ax * 16.0).trunc() / 16.0;
        let del = (ax - zsq) * (ax + zsq);
        erfc * (-zsq * zsq).exp() * (-del).exp()
    } else if ax < 26.6 {
        const P: [f64; 6] = [
            3.053_266_349_612_323_4e-1,
            3.603_448_999_498_044_4e-1,
            1.257_817_261_112_292_5e-1,
            1.608_378_514_874_227_7e-2,
            6.587_491_615_298_378_5e-4,
            1.631_538_713_730_709_6e-2,
        ];
        const Q: [f64; 5] = [
            2.568_520_192_289_822_5,
            1.872_952_849_923_460_4,
            5.279_051_029_514_284_1e-1,
            6.051_834_131_244_131_9e-2,
            2.335_204_976_268_691_8e-3,
        ];
        let z = 1.0 / (ax * ax);
        let mut num = P[5] * z;
        let mut den = z;
        for i in 0..4 {
            num = (num + P[i]) * z;
            den = (den + Q[i]) * z;
        }
        let mut r = z * (num + P[4]) / (den + Q[4]);
        r = (1.0 / core::f64::consts::PI.sqrt() - r) / ax;
        let zsq = (ax * 16.0).trunc() / 16.0;
        let del = (ax - zsq) * (ax + zsq);
        r * (-zsq * zsq).exp() * (-del).exp()
    } else {
        0.0
    };
    // r is erfc(|x|) here.
    let e = 1.0 - r;
    if x < 0.0 {
        -e
    } else {
        e
    }
}

/// `relu.out(Tensor self, *, Tensor(a!) out)`.
fn relu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype("relu", &x, &out)?;
    if x.dtype() == ScalarType::Bool {
        return Err(KernelError::dtype("relu: Bool input is not supported"));
    }
    dispatch_compute!(x.dtype(), C => {
        let z = C::zero();
        map1::<C, C>(&mut out, &x, move |v| if v > z || v.is_nan() { v } else { z })
    })
}

fn abs_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype("abs", &x, &out)?;
    if x.dtype() == ScalarType::Bool {
        return Err(KernelError::dtype("abs: Bool input is not supported"));
    }
    dispatch_compute!(x.dtype(), C => map1::<C, C>(&mut out, &x, |v| v.abs()))
}

fn neg_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype("neg", &x, &out)?;
    if x.dtype() == ScalarType::Bool {
        return Err(KernelError::dtype(
            "neg: negation of a Bool tensor is not supported",
        ));
    }
    dispatch_compute!(x.dtype(), C => map1::<C, C>(&mut out, &x, |v| v.neg()))
}

/// Rounding ops keep the dtype; on integer inputs they are copies.
fn rounding(
    ctx: &KernelCtx<'_>,
    op: &str,
    f32f: impl Fn(f32) -> f32 + Sync,
    f64f: impl Fn(f64) -> f64 + Sync,
) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype(op, &x, &out)?;
    match x.dtype() {
        ScalarType::Double => map1::<f64, f64>(&mut out, &x, f64f),
        t if t.is_floating() => map1::<f32, f32>(&mut out, &x, f32f),
        ScalarType::Bool => Err(KernelError::dtype(format!(
            "{op}: Bool input is not supported"
        ))),
        _ => map1::<i64, i64>(&mut out, &x, |v| v),
    }
}

fn ceil_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    rounding(ctx, "ceil", |x| x.ceil(), |x| x.ceil())
}
fn floor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    rounding(ctx, "floor", |x| x.floor(), |x| x.floor())
}
fn round_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    rounding(
        ctx,
        "round",
        |x| x.round_ties_even(),
        |x| x.round_ties_even(),
    )
}
fn trunc_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    rounding(ctx, "trunc", |x| x.trunc(), |x| x.trunc())
}

fn sign_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype("sign", &x, &out)?;
    if x.dtype() == ScalarType::Bool {
        return map1::<i64, i64>(&mut out, &x, |v| v);
    }
    dispatch_compute!(x.dtype(), C => {
        let (z, one) = (C::zero(), C::one());
        map1::<C, C>(&mut out, &x, move |v| {
            if v.is_nan() { z } else if v > z { one } else if v < z { one.neg() } else { z }
        })
    })
}

/// `logit.out(Tensor self, float? eps=None, *, Tensor(a!) out)`: stack `[self, eps, out, ret]`.
fn logit_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 4, 2)?;
    let eps = ctx.opt_double(1)?;
    // Bounds are computed in the input dtype, like ATen's `scalar_t lo = eps, hi = 1 - eps`.
    let (lo, hi) = match eps {
        Some(e) => {
            let dt = if x.dtype().is_floating() {
                x.dtype()
            } else {
                ScalarType::Float
            };
            let lo: f64 = scalar_as(Scalar::Double(e), dt);
            (lo, scalar_as(Scalar::Double(1.0 - lo), dt))
        }
        None => (f64::NEG_INFINITY, f64::INFINITY),
    };
    let (lo32, hi32) = (lo as f32, hi as f32);
    let cl32 = move |v: f32| {
        if v < lo32 {
            lo32
        } else if v > hi32 {
            hi32
        } else {
            v
        }
    };
    let cl64 = move |v: f64| {
        if v < lo {
            lo
        } else if v > hi {
            hi
        } else {
            v
        }
    };
    float_unary_on(
        &mut out,
        &x,
        "logit",
        move |v| {
            let z = cl32(v);
            (z / (1.0 - z)).ln()
        },
        move |v| {
            let z = cl64(v);
            (z / (1.0 - z)).ln()
        },
        None,
    )
}

fn predicate(
    ctx: &KernelCtx<'_>,
    op: &str,
    f32f: impl Fn(f32) -> bool + Sync,
    f64f: impl Fn(f64) -> bool + Sync,
) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    if out.dtype() != ScalarType::Bool {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype must be Bool, got {}",
            out.dtype()
        )));
    }
    match x.dtype() {
        ScalarType::Double => map1::<f64, u8>(&mut out, &x, |v| f64f(v) as u8),
        t if t.is_floating() => map1::<f32, u8>(&mut out, &x, |v| f32f(v) as u8),
        _ => map1::<i64, u8>(&mut out, &x, |_| 0),
    }
}

fn isnan_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    predicate(ctx, "isnan", |v| v.is_nan(), |v| v.is_nan())
}
fn isinf_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    predicate(ctx, "isinf", |v| v.is_infinite(), |v| v.is_infinite())
}

fn bitwise_not_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    same_dtype("bitwise_not", &x, &out)?;
    match x.dtype() {
        ScalarType::Bool => map1::<i64, u8>(&mut out, &x, |v| (v == 0) as u8),
        t if t.is_integral(false) => map1::<i64, i64>(&mut out, &x, |v| !v),
        t => Err(KernelError::dtype(format!(
            "bitwise_not: dtype {t} is not integral or Bool"
        ))),
    }
}

fn logical_not_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 3, 1)?;
    if x.dtype().is_floating() {
        map1::<f64, u8>(&mut out, &x, |v| (v == 0.0) as u8)
    } else {
        map1::<i64, u8>(&mut out, &x, |v| (v == 0) as u8)
    }
}

/// `gelu.out(Tensor self, *, str approximate='none', Tensor(a!) out)`:
/// stack `[self, approximate, out, ret]`.
fn gelu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 4, 2)?;
    if !x.dtype().is_floating() {
        return Err(KernelError::dtype(format!(
            "gelu: input dtype {} is not floating",
            x.dtype()
        )));
    }
    same_dtype("gelu", &x, &out)?;
    match ctx.string(1)? {
        "none" => float_unary_on(
            &mut out,
            &x,
            "gelu",
            gelu_erf_f32,
            |v| 0.5 * v * (1.0 + erf64(v * core::f64::consts::FRAC_1_SQRT_2)),
            Some(vgelu_erf_f32),
        ),
        "tanh" => {
            // `√2 · (2/√π) · ½` in double, as ATen spells √(2/π).
            const K: f64 = core::f64::consts::SQRT_2 * core::f64::consts::FRAC_2_SQRT_PI * 0.5;
            float_unary_on(
                &mut out,
                &x,
                "gelu",
                |v| {
                    let inner = K as f32 * (v + 0.044715 * (v * v * v));
                    0.5 * v * (1.0 + inner.tanh())
                },
                |v| {
                    let inner = K * (v + 0.044715 * (v * v * v));
                    0.5 * v * (1.0 + inner.tanh())
                },
                None,
            )
        }
        other => Err(KernelError::invalid(format!(
            "gelu: approximate must be 'none' or 'tanh', got '{other}'"
        ))),
    }
}

/// Clamp with ATen semantics: NaN inputs propagate; `min > max` gives `max`.
#[inline(always)]
fn clamp_val<C: Compute>(v: C, lo: Option<C>, hi: Option<C>) -> C {
    if v.is_nan() {
        return v;
    }
    let mut r = v;
    if let Some(l) = lo {
        if l.is_nan() {
            return l;
        }
        if r < l {
            r = l;
        }
    }
    if let Some(h) = hi {
        if h.is_nan() {
            return h;
        }
        if r > h {
            r = h;
        }
    }
    r
}

/// `hardtanh.out(Tensor self, Scalar min_val=-1, Scalar max_val=1, *, Tensor(a!) out)`.
fn hardtanh_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 5, 3)?;
    same_dtype("hardtanh", &x, &out)?;
    let (lo, hi) = (ctx.scalar(1)?, ctx.scalar(2)?);
    if x.dtype() == ScalarType::Bool {
        return Err(KernelError::dtype("hardtanh: Bool input is not supported"));
    }
    dispatch_compute!(x.dtype(), C => {
        let (l, h): (C, C) = (scalar_as(lo, x.dtype()), scalar_as(hi, x.dtype()));
        map1::<C, C>(&mut out, &x, move |v| clamp_val(v, Some(l), Some(h)))
    })
}

/// `clamp.out(Tensor self, Scalar? min=None, Scalar? max=None, *, Tensor(a!) out)`.
fn clamp_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 5, 3)?;
    let (lo, hi) = (ctx.opt_scalar(1)?, ctx.opt_scalar(2)?);
    if lo.is_none() && hi.is_none() {
        return Err(KernelError::invalid(
            "clamp: at least one of min and max must be given",
        ));
    }
    let mut ops = [Operand::of(&x), Operand::of(&x), Operand::of(&x)];
    let mut n = 1;
    for s in [lo, hi].into_iter().flatten() {
        ops[n] = Operand::Scalar(s);
        n += 1;
    }
    let rt = result_type(&ops[..n]);
    check_cast("clamp", rt, out.dtype())?;
    if rt == ScalarType::Bool {
        return Err(KernelError::dtype("clamp: Bool is not supported"));
    }
    dispatch_compute!(rt, C => {
        let l: Option<C> = lo.map(|s| scalar_as(s, rt));
        let h: Option<C> = hi.map(|s| scalar_as(s, rt));
        map1::<C, C>(&mut out, &x, move |v| clamp_val(v, l, h))
    })
}

/// `clamp.Tensor_out(Tensor self, Tensor? min=None, Tensor? max=None, *, Tensor(a!) out)`.
fn clamp_tensor_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 5, 3)?;
    let (lo, hi) = (ctx.opt_tensor(1)?, ctx.opt_tensor(2)?);
    let mut ops = [Operand::of(&x); 3];
    let mut n = 1;
    for t in [&lo, &hi].into_iter().flatten() {
        ops[n] = Operand::of(t);
        n += 1;
    }
    let rt = result_type(&ops[..n]);
    check_cast("clamp", rt, out.dtype())?;
    if rt == ScalarType::Bool {
        return Err(KernelError::dtype("clamp: Bool is not supported"));
    }
    dispatch_compute!(rt, C => match (&lo, &hi) {
        (Some(l), Some(h)) => map3::<C, C>(&mut out, &x, l, h, |v, a, b| clamp_val(v, Some(a), Some(b))),
        (Some(l), None) => map2::<C, C>(&mut out, &x, l, |v, a| clamp_val(v, Some(a), None)),
        (None, Some(h)) => map2::<C, C>(&mut out, &x, h, |v, b| clamp_val(v, None, Some(b))),
        (None, None) => Err(KernelError::invalid("clamp: at least one of min and max must be given")),
    })
}

/// `leaky_relu.out(Tensor self, Scalar negative_slope=0.01, *, Tensor(a!) out)`.
fn leaky_relu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 4, 2)?;
    same_dtype("leaky_relu", &x, &out)?;
    let slope = ctx.scalar(1)?;
    if !x.dtype().is_floating() {
        return Err(KernelError::dtype(format!(
            "leaky_relu: input dtype {} is not floating",
            x.dtype()
        )));
    }
    dispatch_compute!(x.dtype(), C => {
        let s: C = scalar_as(slope, x.dtype());
        let z = C::zero();
        map1::<C, C>(&mut out, &x, move |v| if v > z { v } else { v.mul(s) })
    })
}

/// `elu.out(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1, *, Tensor(a!) out)`.
fn elu_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    let (mut out, x) = unary_args(ctx, 6, 4)?;
    same_dtype("elu", &x, &out)?;
    if !x.dtype().is_floating() {
        return Err(KernelError::dtype(format!(
            "elu: input dtype {} is not floating",
            x.dtype()
        )));
    }
    let (a, s, is) = (ctx.double(1)?, ctx.double(2)?, ctx.double(3)?);
    let (s32, is32) = (s as f32, is as f32);
    let neg_coef = a * s;
    let neg32 = neg_coef as f32;
    float_unary_on(
        &mut out,
        &x,
        "elu",
        move |v| {
            if v > 0.0 {
                v * s32
            } else {
                (v * is32).exp_m1() * neg32
            }
        },
        move |v| {
            if v > 0.0 {
                v * s
            } else {
                (v * is).exp_m1() * neg_coef
            }
        },
        None,
    )
}
