//! `quantized_decomposed` per-token quantization, as ExecuTorch's quantized kernel
//! library (`kernels/quantized/cpu/op_choose_qparams.cpp`, `op_quantize.cpp`) runs it.
//! `export_llm`'s quantized KV cache (`model.quantize_kv_cache=True`) quantizes every
//! new key/value/query row with these before `llama::custom_quantized_sdpa`.
//!
//! * `choose_qparams_per_token_asymmetric.out`: one asymmetric int8 `(scale: f64,
//!   zero_point: i64)` per token (all dims but the last), range `[-128, 127]`.
//! * `quantize_per_token.out`: `clamp(zp + round_half_even(x * (1 / scale)), qmin,
//!   qmax)`, with the reciprocal and product in f32 like the reference.

use pteron_runtime::{KernelCtx, KernelError, Registry, ScalarType, TensorRef};

pub(crate) fn register(reg: &mut Registry) {
    reg.register(
        "quantized_decomposed::choose_qparams_per_token_asymmetric.out",
        choose_qparams_per_token_asymmetric_out,
    );
    reg.register(
        "quantized_decomposed::quantize_per_token.out",
        quantize_per_token_out,
    );
}

/// Below this the reference raises the scale (and stretches the range with it).
const SMALL_SCALE_THRESHOLD: f32 = 6.1e-5;

/// `(scale, zero_point)` for values in `[min, max]` mapped onto `[qmin, qmax]`: the
/// range is widened to contain 0, the scale computed in f64, tiny scales raised to
/// [`SMALL_SCALE_THRESHOLD`], and the zero point taken from whichever end has the
/// smaller error, then nudged to an integer inside `[qmin, qmax]`.
pub(crate) fn asymmetric_qparams(min: f32, max: f32, qmin: i32, qmax: i32) -> (f64, i32) {
    let mut min = min.min(0.0);
    let mut max = max.max(0.0);
    let range = f64::from(qmax - qmin);
    let mut scale = (f64::from(max) - f64::from(min)) / range;
    if scale as f32 == 0.0 || (1.0f32 / scale as f32).is_infinite() {
        scale = 0.1;
    }
    if scale < f64::from(SMALL_SCALE_THRESHOLD) {
        let org = scale as f32;
        scale = f64::from(SMALL_SCALE_THRESHOLD);
        if min == 0.0 {
            max = SMALL_SCALE_THRESHOLD * range as f32;
        } else if max == 0.0 {
            min = -SMALL_SCALE_THRESHOLD * range as f32;
        } else {
            let amp = SMALL_SCALE_THRESHOLD / org;
            min *= amp;
            max *= amp;
        }
    }
    let (qminf, qmaxf) = (f64::from(qmin), f64::from(qmax));
    let from_min = qminf - f64::from(min) / scale;
    let from_max = qmaxf - f64::from(max) / scale;
    let err_min = qminf.abs() - (f64::from(min) / scale).abs();
    let err_max = qmaxf.abs() - (f64::from(max) / scale).abs();
    let initial = if err_min < err_max {
        from_min
    } else {
        from_max
    };
    let zp = if initial < qminf {
        qmin
    } else if initial > qmaxf {
        qmax
    } else {
        (initial as f32).round_ties_even() as i32
    };
    (scale, zp)
}

/// Number of tokens (product of all dims but the last) and the token length.
fn tokens(t: &TensorRef<'_>) -> (usize, usize) {
    match t.sizes().split_last() {
        Some((&last, rest)) => (rest.iter().product(), last),
        None => (1, 1),
    }
}

/// Sizes of `t` with the last dim replaced by 1 (a 0-d tensor gives `[1]`).
fn per_token_sizes(t: &TensorRef<'_>) -> ([usize; 16], usize) {
    let mut s = [1usize; 16];
    let n = t.dim().max(1);
    s[..t.dim()].copy_from_slice(t.sizes());
    s[n - 1] = 1;
    (s, n)
}

/// `choose_qparams_per_token_asymmetric.out(Tensor input, ScalarType dtype, *,
/// Tensor(a!) scale_out, Tensor(b!) zero_point_out)`: `[input, dtype, scale_out,
/// zero_point_out, ret]`. The range is always `[-128, 127]` (`dtype` is not used, as
/// in the reference).
fn choose_qparams_per_token_asymmetric_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "choose_qparams_per_token_asymmetric";
    ctx.expect_args(5)?;
    let mut scale = ctx.out(2)?;
    let mut zp = ctx.out(3)?;
    let x = ctx.tensor(0)?;
    if x.dtype() != ScalarType::Float {
        return Err(KernelError::dtype(format!(
            "{OP}: input must be float32, got {}",
            x.dtype()
        )));
    }
    if scale.dtype() != ScalarType::Double || zp.dtype() != ScalarType::Long {
        return Err(KernelError::dtype(format!(
            "{OP}: scale_out must be float64 and zero_point_out int64, got {} and {}",
            scale.dtype(),
            zp.dtype()
        )));
    }
    if x.dim() > 16 || !x.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: input must be contiguous with rank <= 16, got {:?}",
            x.sizes()
        )));
    }
    let (os, n) = per_token_sizes(&x);
    scale.resize(&os[..n])?;
    zp.resize(&os[..n])?;
    let (nt, len) = tokens(&x);
    if len == 0 && nt > 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: tokens of length 0 have no range"
        )));
    }
    let xv = x.as_slice::<f32>()?;
    let sv = scale.as_mut_slice::<f64>()?;
    let zv = zp.as_mut_slice::<i64>()?;
    for t in 0..nt {
        let row = &xv[t * len..(t + 1) * len];
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &v in row {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        let (s, z) = asymmetric_qparams(lo, hi, -128, 127);
        sv[t] = s;
        zv[t] = i64::from(z);
    }
    Ok(())
}

/// The representable range of an integer quantized dtype.
fn dtype_range(op: &str, dt: ScalarType) -> Result<(i64, i64), KernelError> {
    Ok(match dt {
        ScalarType::Byte => (0, 255),
        ScalarType::Char => (-128, 127),
        ScalarType::Short => (-32768, 32767),
        ScalarType::Int => (i64::from(i32::MIN), i64::from(i32::MAX)),
        other => {
            return Err(KernelError::dtype(format!(
                "{op}: quantized dtype {other} is not supported"
            )))
        }
    })
}

/// `quantize_per_token.out(Tensor input, Tensor scales, Tensor zero_points, int
/// quant_min, int quant_max, ScalarType dtype, *, Tensor(a!) out)`: `[input, scales,
/// zero_points, quant_min, quant_max, dtype, out, ret]`. Scales are float64 and zero
/// points int64, one per token.
fn quantize_per_token_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "quantize_per_token";
    ctx.expect_args(8)?;
    let mut out = ctx.out(6)?;
    let x = ctx.tensor(0)?;
    let scales = ctx.tensor(1)?;
    let zps = ctx.tensor(2)?;
    let (qmin, qmax) = (ctx.int(3)?, ctx.int(4)?);
    let dt = ctx
        .opt_dtype(5)?
        .ok_or_else(|| KernelError::invalid(format!("{OP}: dtype is required")))?;
    if out.dtype() != dt {
        return Err(KernelError::dtype(format!(
            "{OP}: out dtype {} differs from the requested dtype {dt}",
            out.dtype()
        )));
    }
    let (lo, hi) = dtype_range(OP, dt)?;
    if qmin < lo || qmax > hi || qmin > qmax {
        return Err(KernelError::invalid(format!(
            "{OP}: quant range [{qmin}, {qmax}] does not fit {dt} [{lo}, {hi}]"
        )));
    }
    if scales.dtype() != ScalarType::Double || zps.dtype() != ScalarType::Long {
        return Err(KernelError::dtype(format!(
            "{OP}: scales must be float64 and zero_points int64, got {} and {}",
            scales.dtype(),
            zps.dtype()
        )));
    }
    if !x.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{OP}: input must be contiguous, got dim order {:?}",
            x.dim_order()
        )));
    }
    let (nt, len) = tokens(&x);
    if scales.numel() != nt || zps.numel() != nt {
        return Err(KernelError::invalid(format!(
            "{OP}: {nt} tokens but {} scales and {} zero points",
            scales.numel(),
            zps.numel()
        )));
    }
    out.resize(x.sizes())?;
    let sv = scales.as_slice::<f64>()?;
    let zv = zps.as_slice::<i64>()?;
    // The reference: inv = 1.0f / (float)scale; q = (int32)zp + nearbyint((float)(inv * x)).
    let quant = |t: usize, prod: f32| -> i64 {
        let q = i64::from(zv[t] as i32) + prod.round_ties_even() as i64;
        q.clamp(qmin, qmax)
    };
    macro_rules! run {
        ($x:expr, $o:expr, $prod:expr) => {{
            let xs = $x;
            let os = $o;
            for t in 0..nt {
                let inv = 1.0f32 / sv[t] as f32;
                for c in t * len..(t + 1) * len {
                    os[c] = quant(t, $prod(inv, xs[c])) as _;
                }
            }
        }};
    }
    macro_rules! by_out {
        ($xs:expr, $prod:expr) => {
            match dt {
                ScalarType::Byte => run!($xs, out.as_mut_slice::<u8>()?, $prod),
                ScalarType::Char => run!($xs, out.as_mut_slice::<i8>()?, $prod),
                ScalarType::Short => run!($xs, out.as_mut_slice::<i16>()?, $prod),
                _ => run!($xs, out.as_mut_slice::<i32>()?, $prod),
            }
        };
    }
    match x.dtype() {
        ScalarType::Float => by_out!(x.as_slice::<f32>()?, |inv: f32, v: f32| inv * v),
        ScalarType::Double => by_out!(
            x.as_slice::<f64>()?,
            |inv: f32, v: f64| (f64::from(inv) * v) as f32
        ),
        ScalarType::Half => by_out!(x.as_slice::<half::f16>()?, |inv: f32, v: half::f16| inv
            * v.to_f32()),
        other => {
            return Err(KernelError::dtype(format!(
                "{OP}: input must be a float tensor, got {other}"
            )))
        }
    }
    Ok(())
}
