//! Compilation of a verified [`Graph`] into an execution plan (once, at init) and
//! its execution.
//!
//! Every activation is held as `f32` in a buffer allocated at init for the largest
//! shape the graph can take. Quantized activations (`qint8`/`quint8` per tensor,
//! `qdint8` per token) are kept on their quantization grid: after the node that
//! produces one, its values are rounded to the grid with XNNPACK's rounding and
//! saturation (and the output clamp), so results match XNNPACK's integer kernels to
//! within a quantization step. Quantized weights are dequantized once at init and
//! pre-packed for the f32 GEMM.

use pteron_linalg::nhwc::{
    pointwise_depthwise_nhwc, pointwise_depthwise_pays, pointwise_depthwise_project_nhwc,
    pointwise_depthwise_project_scratch, pointwise_depthwise_scratch, ConvNhwc, ConvNhwcParams,
    Projection, Window,
};
use pteron_linalg::{
    qd8_gemm, sgemm, sgemm_packed, Activation, Bias, GemmArgs, PackedB, PackedQd8, Qd8Kind,
    Qd8Params,
};
use pteron_runtime::{
    BackendInitCtx, DelegateHandle, F32Buf, KernelCtx, KernelError, NodeProfile, PrepareCtx,
    ScalarType, Value as RtValue,
};

use crate::bufplan;
use crate::error::XnnError;
use crate::graph::{self, BinOp, ConvParams, Datatype, Graph, Op, Quant, UnOp, Value};
use crate::kernels;
use crate::qs8;
use crate::shape::{infer, Dims};

/// Largest number of external outputs one delegate may have.
pub const MAX_OUTPUTS: usize = 32;

/// How a value's contents are snapped to a quantization grid after it is produced.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fq {
    None,
    Static {
        scale: f32,
        zp: i32,
        qmin: i32,
        qmax: i32,
    },
    /// Per-row asymmetric int8 with `rows` = all but the last `nonbatch` dims.
    Dynamic {
        nonbatch: usize,
    },
    /// A float16 value: held in f32, rounded to the nearest f16 wherever it is produced.
    Half,
}

/// Pre-packed state of one step.
enum Prep {
    None,
    Fc {
        packed: Option<PackedB>,
        bias: Option<Vec<f32>>,
    },
    Conv {
        groups: Vec<PackedB>,
        bias: Vec<f32>,
        direct: bool,
    },
    Dw {
        w: Vec<f32>,
        bias: Vec<f32>,
        mult: usize,
    },
    /// Fully connected on dynamically quantized input with int8/int4 weights, run
    /// with integer kernels: the f32 rows of `src` are quantized per row at run
    /// time (XNNPACK's `qd8`), so the convert node producing the input is skipped.
    Qd8Fc {
        packed: PackedQd8,
        src: usize,
    },
    /// Real int8 execution (`qs8.rs`).
    Q8(Box<qs8::QPrep>),
    /// Ungrouped convolution as an NHWC indirect GEMM (no im2col scratch).
    ConvNhwc(ConvNhwc),
    /// A pointwise convolution fused into this depthwise step (see [`PwDw`]).
    PwDw(Box<PwDw>),
    /// A convolution fused into this residual add step (see [`ConvAdd`]).
    ConvAdd(Box<ConvAdd>),
    /// A fused pointwise + depthwise pair fused into this projection step (see
    /// [`PwDwPw`]).
    PwDwPw(Box<PwDwPw>),
    /// Transposed convolution: per group, input rows x packed `[group_in, kh*kw*group_out]`
    /// filter into scratch columns, then scattered (col2im) onto the biased output.
    Deconv {
        groups: Vec<PackedB>,
        bias: Vec<f32>,
    },
}

/// A pointwise (1x1) convolution and the depthwise convolution that is the only
/// reader of its output, run together in row bands
/// (`pteron_linalg::nhwc::pointwise_depthwise_nhwc`): the expanded value `mid` gets
/// no buffer. Lives in the depthwise step; the convolution's step is `fused`.
struct PwDw {
    conv: ConvNhwc,
    /// The convolution's clamp.
    conv_lo: f32,
    conv_hi: f32,
    /// The convolution's input and output values.
    src: usize,
    mid: usize,
    w: Vec<f32>,
    bias: Vec<f32>,
}

impl PwDw {
    /// `(batch, h, w)` of this pair's run on these shapes, `dw` the depthwise output's:
    /// `None` unless the input is `[b, h, w, in_c]`, the expanded value `h x w` and
    /// `dw` `[b, _, _, c]` (`in_c`, `c` those of the convolution).
    fn fits(&self, shapes: &[Dims], dw: &Dims) -> Option<(usize, usize, usize)> {
        let (x, mid) = (&shapes[self.src], &shapes[self.mid]);
        let (cin, c) = (self.conv.params().in_c, self.conv.params().out_c);
        let (b, h, w, xc) = nhwc(x);
        let ok = x.rank() == 4
            && xc == cin
            && (mid.get(1), mid.get(2)) == (h, w)
            && dw.rank() == 4
            && dw.get(0) == b
            && dw.get(3) == c;
        ok.then_some((b, h, w))
    }
}

/// An NHWC convolution and the residual add that is the only reader of its output,
/// run as one step (`ConvNhwc::run_add`: each output tile gets the other operand
/// added and the add's clamp right after it is stored): the convolution's output
/// `mid` gets no buffer. Lives in the add step; the convolution's step is `fused`.
struct ConvAdd {
    conv: ConvNhwc,
    /// The convolution's clamp.
    conv_lo: f32,
    conv_hi: f32,
    /// The convolution's input and the add's other operand.
    src: usize,
    residual: usize,
}

/// A fused pointwise + depthwise pair ([`PwDw`]) and the pointwise convolution that
/// alone reads the depthwise output (MobileNet v2's projection), with its residual
/// add when that was fused into it ([`ConvAdd`]): the whole inverted-residual block
/// runs band by band (`pteron_linalg::nhwc::pointwise_depthwise_project_nhwc`), so
/// the depthwise output gets no buffer either. Lives in the projection's step (the
/// add's when there is one); the depthwise step is `fused`.
struct PwDwPw {
    pwdw: PwDw,
    /// The depthwise window and clamp, and its output value.
    win: Window,
    dw_lo: f32,
    dw_hi: f32,
    dw_out: usize,
    /// The projection and its clamp; the add's clamp is the step's.
    proj: ConvNhwc,
    proj_lo: f32,
    proj_hi: f32,
    residual: Option<usize>,
}

/// Which pointwise + depthwise pairs a delegate fuses (see [`set_fusion`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fusion {
    /// None: every node runs as its own step.
    Off,
    /// Those where it pays (`pteron_linalg::nhwc::pointwise_depthwise_pays`): the
    /// default.
    Auto,
    /// Every eligible pair, whatever its size (tests of small graphs).
    All,
}

/// [`set_fusion`]'s choice: 0 = unset (environment), else `Fusion as u8 + 1`.
static FUSION: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Chooses the pointwise + depthwise fusion of delegates compiled from now on
/// (process-wide; for tests and benchmarks that compare plans, whose results are
/// the same bits). Without a call, `PTERON_XNN_FUSE=0` (or `off`) selects
/// [`Fusion::Off`], `PTERON_XNN_FUSE=all` [`Fusion::All`], anything else
/// [`Fusion::Auto`].
pub fn set_fusion(mode: Fusion) {
    FUSION.store(mode as u8 + 1, std::sync::atomic::Ordering::Relaxed);
}

fn fusion_mode() -> Fusion {
    match FUSION.load(std::sync::atomic::Ordering::Relaxed) {
        1 => Fusion::Off,
        2 => Fusion::Auto,
        3 => Fusion::All,
        _ => match std::env::var("PTERON_XNN_FUSE").as_deref() {
            Ok("0") | Ok("off") => Fusion::Off,
            Ok("all") => Fusion::All,
            _ => Fusion::Auto,
        },
    }
}

struct Step {
    index: usize,
    kind: &'static str,
    op: Op,
    lo: f32,
    hi: f32,
    filter_dims: Option<Dims>,
    prep: Prep,
    /// A convert to `qdint8` whose every consumer quantizes on its own (`Prep::Qd8Fc`).
    skip: bool,
    /// Value whose (dead) buffer this step's output takes over ([`bufplan`]).
    borrow: Option<usize>,
    /// Runs inside the next step (`Prep::PwDw`): reads and writes nothing itself.
    fused: bool,
}

impl Step {
    /// Values this step reads from their buffers.
    fn reads(&self) -> Vec<usize> {
        if self.fused {
            return Vec::new();
        }
        let mut r = self.op.inputs();
        match &self.prep {
            Prep::PwDw(f) => {
                r.retain(|&v| v != f.mid);
                r.insert(0, f.src);
            }
            Prep::ConvAdd(f) => r = vec![f.src, f.residual],
            Prep::PwDwPw(f) => r = [f.pwdw.src].into_iter().chain(f.residual).collect(),
            _ => {}
        }
        r
    }
}

/// Element type of an external argument.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ExtType {
    F32,
    F16,
    I8,
    U8,
}

impl ExtType {
    /// Bytes per element.
    fn size(self) -> usize {
        match self {
            ExtType::F32 => 4,
            ExtType::F16 => 2,
            ExtType::I8 | ExtType::U8 => 1,
        }
    }
}

struct Ext {
    value: usize,
    arg: usize,
    ty: ExtType,
    /// The graph declares the value with this shape (used when ranks differ, e.g. 0-d args).
    graph_dims: Dims,
}

/// Where a buffer lent to the method's shared workspace lives while the delegate runs.
#[derive(Clone, Copy, Debug)]
enum Home {
    Value(usize),
    Scratch,
    QuantRows,
    QuantParams,
}

/// A compiled XNNPACK delegate.
pub struct XnnDelegate {
    steps: Vec<Step>,
    bufs: Vec<F32Buf>,
    /// Elements planned per value (its buffer may be lent to or borrowed from another
    /// value while a run is under way, see `Step::borrow`).
    cap: Vec<usize>,
    shapes: Vec<Dims>,
    fq: Vec<Fq>,
    inputs: Vec<Ext>,
    outputs: Vec<Ext>,
    scratch: F32Buf,
    /// Quantized rows (`i8`, four per element) and their parameters (`Qd8Params`,
    /// two elements each) for `Prep::Qd8Fc` steps, held as `f32` words so that they
    /// can live in the method's shared workspace like the other run buffers.
    qa: F32Buf,
    qp: F32Buf,
    /// External inputs left unquantized because only `Prep::Qd8Fc` steps read them.
    raw_dynamic: Vec<bool>,
    last_inputs: Vec<Dims>,
    prepared: usize,
    /// Values whose buffers hold nothing from one run to the next (every non-constant
    /// value that owns a buffer): they and `scratch` can live in the method's shared
    /// workspace.
    transient: Vec<usize>,
    /// Buffers handed to the method's workspace, entry `k` in slot `k`: where it
    /// lives while we run, and its length.
    lent: Vec<(Home, usize)>,
    q8: qs8::Q8State,
    /// Per step (nanoseconds, calls) while profiling is on.
    profile: Option<Vec<(u64, u64)>>,
}

fn ext_type(dt: Datatype) -> Option<ExtType> {
    match dt {
        Datatype::Fp32 => Some(ExtType::F32),
        Datatype::Fp16 => Some(ExtType::F16),
        Datatype::QInt8 => Some(ExtType::I8),
        Datatype::QUInt8 => Some(ExtType::U8),
        _ => None,
    }
}

fn fq_of(v: &Value<'_>) -> Fq {
    match (&v.quant, v.dtype) {
        (Quant::PerTensor { scale, zero_point }, Datatype::QInt8) => Fq::Static {
            scale: *scale,
            zp: *zero_point,
            qmin: -128,
            qmax: 127,
        },
        (Quant::PerTensor { scale, zero_point }, Datatype::QUInt8) => Fq::Static {
            scale: *scale,
            zp: *zero_point,
            qmin: 0,
            qmax: 255,
        },
        (Quant::PerToken { num_nonbatch_dims }, _) => Fq::Dynamic {
            nonbatch: *num_nonbatch_dims,
        },
        _ if v.dq_datatype == Datatype::QInt8 || v.dq_datatype == Datatype::QdInt8 => {
            Fq::Dynamic { nonbatch: 1 }
        }
        (_, Datatype::Fp16) if v.data.is_none() => Fq::Half,
        _ => Fq::None,
    }
}

fn f16_to_f32(h: u16) -> f32 {
    half::f16::from_bits(h).to_f32()
}

fn f32_to_f16(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

/// `x` rounded to the nearest float16 value (ties to even), kept as f32: what storing
/// a node's result in an f16 tensor does. Overflow gives infinity, NaN stays NaN.
/// Branch-light so the loop over an activation vectorises.
pub(crate) fn round_to_f16(x: f32) -> f32 {
    const MIN_NORMAL: f32 = 6.103_515_6e-5; // 2^-14
    const SUB_STEP: f32 = 5.960_464_5e-8; // 2^-24, the f16 subnormal spacing
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    if x.is_nan() {
        return x;
    }
    if x.abs() < MIN_NORMAL {
        // Multiples of 2^-24; |x / 2^-24| < 2^10, exact with the magic-number rounding.
        return (((x / SUB_STEP + MAGIC) - MAGIC) * SUB_STEP).copysign(x);
    }
    // Keep 10 fraction bits: round to nearest even at bit 13 of the f32 pattern.
    let b = x.to_bits();
    let r = (b + 0x0fff + ((b >> 13) & 1)) & !0x1fff;
    let y = f32::from_bits(r);
    if y.abs() > 65504.0 {
        f32::INFINITY.copysign(x)
    } else {
        y
    }
}

/// Dequantizes (or decodes) a constant value into f32, in its own layout.
fn decode_const(index: usize, v: &Value<'_>) -> Result<Vec<f32>, XnnError> {
    let data = v.data.ok_or_else(|| XnnError::Value {
        index,
        msg: "expected a constant".into(),
    })?;
    let n = v.numel();
    let per_ch = |e: usize, cd: usize| -> usize {
        let inner: usize = v.dims[cd + 1..].iter().product();
        (e / inner.max(1)) % v.dims[cd].max(1)
    };
    // 4-bit values as signed integers (stored value minus the zero point 8).
    let int4 = || -> Result<Vec<i8>, XnnError> {
        let k = *v.dims.last().unwrap_or(&1);
        int4_values(data, n / k.max(1), k).ok_or_else(|| XnnError::Value {
            index,
            msg: "4-bit constant data truncated".into(),
        })
    };
    let mut out = Vec::with_capacity(n);
    match (v.dtype, &v.quant) {
        (Datatype::Fp32, _) => out.extend(
            data.chunks_exact(4)
                .take(n)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        (Datatype::Fp16, _) => out.extend(
            data.chunks_exact(2)
                .take(n)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]]))),
        ),
        (Datatype::Bf16, _) => out.extend(
            data.chunks_exact(2)
                .take(n)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)),
        ),
        (Datatype::Int32, _) => out.extend(
            data.chunks_exact(4)
                .take(n)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32),
        ),
        (Datatype::QInt8, Quant::PerTensor { scale, zero_point }) => out.extend(
            data[..n]
                .iter()
                .map(|&b| (b as i8 as i32 - zero_point) as f32 * scale),
        ),
        (Datatype::QUInt8, Quant::PerTensor { scale, zero_point }) => out.extend(
            data[..n]
                .iter()
                .map(|&b| (b as i32 - zero_point) as f32 * scale),
        ),
        (Datatype::QInt32, Quant::PerTensor { scale, zero_point }) => {
            out.extend(data.chunks_exact(4).take(n).map(|c| {
                (i32::from_le_bytes([c[0], c[1], c[2], c[3]]) - zero_point) as f32 * scale
            }))
        }
        (
            Datatype::QcInt8,
            Quant::PerChannel {
                scales,
                channel_dim,
            },
        ) => out.extend(
            data[..n]
                .iter()
                .enumerate()
                .map(|(e, &b)| b as i8 as f32 * scales[per_ch(e, *channel_dim)]),
        ),
        (
            Datatype::QcInt32,
            Quant::PerChannel {
                scales,
                channel_dim,
            },
        ) => out.extend(data.chunks_exact(4).take(n).enumerate().map(|(e, c)| {
            i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f32 * scales[per_ch(e, *channel_dim)]
        })),
        (
            Datatype::QcInt4,
            Quant::PerChannel {
                scales,
                channel_dim,
            },
        ) => {
            for (e, q) in int4()?.into_iter().enumerate() {
                out.push(q as f32 * scales[per_ch(e, *channel_dim)]);
            }
        }
        (
            Datatype::QbInt4,
            Quant::Blockwise {
                scales, group_size, ..
            },
        ) => {
            let k = v.dims[1];
            let groups = k / group_size;
            for (e, q) in int4()?.into_iter().enumerate() {
                let (r, c) = (e / k, e % k);
                out.push(q as f32 * scales[r * groups + c / group_size]);
            }
        }
        (dt, q) => {
            return Err(XnnError::Value {
                index,
                msg: format!(
                    "constant of type {} with quantization {q:?} is not supported",
                    dt.name()
                ),
            });
        }
    }
    if out.len() != n {
        return Err(XnnError::Value {
            index,
            msg: "constant data truncated".into(),
        });
    }
    Ok(out)
}

/// `rows` rows of `row_len` 4-bit values stored two per byte, low nibble first, each
/// row padded to whole bytes, as signed integers (stored value minus the zero point
/// 8). `None` when `data` is too short.
fn int4_values(data: &[u8], rows: usize, row_len: usize) -> Option<Vec<i8>> {
    let rb = row_len.div_ceil(2);
    let data = data.get(..rows * rb)?;
    let mut out = vec![0i8; rows * row_len];
    if row_len == 0 {
        return Some(out);
    }
    for (row, dst) in data.chunks_exact(rb).zip(out.chunks_exact_mut(row_len)) {
        // An odd row length leaves one padding nibble per row (the last high nibble).
        let (pairs, last) = dst.split_at_mut(row_len & !1);
        for (&b, d) in row.iter().zip(pairs.chunks_exact_mut(2)) {
            d[0] = (b & 0xf) as i8 - 8;
            d[1] = (b >> 4) as i8 - 8;
        }
        if let (Some(l), Some(&b)) = (last.first_mut(), row.last()) {
            *l = (b & 0xf) as i8 - 8;
        }
    }
    Some(out)
}

/// The values of an integer filter: signed (`[n][k]`), or int4 in the stored
/// form (`n` rows of `k` nibbles, `w + 8`, low first), packed without a copy.
enum QVals<'a> {
    Values(Vec<i8>),
    Nibbles(&'a [u8]),
}

/// Scheme, `n`, `k`, values and scales of an integer filter.
type QWeights<'a> = (Qd8Kind, usize, usize, QVals<'a>, Vec<f32>);

/// Signed integer weights (`[n][k]`), scales and scheme of a constant `qcint8`,
/// `qcint4` or `qbint4` fully-connected filter, for the integer `qd8` kernels.
/// `None` when the filter's layout has no integer path (the f32 path runs it).
fn qd8_weights<'a>(v: &Value<'a>, transposed: bool) -> Option<QWeights<'a>> {
    let data = v.data?;
    if v.dims.len() != 2 {
        return None;
    }
    let (d0, d1) = (v.dims[0], v.dims[1]);
    let (n, k) = if transposed { (d1, d0) } else { (d0, d1) };
    let w = match v.dtype {
        Datatype::QcInt4 | Datatype::QbInt4 if !transposed => {
            QVals::Nibbles(data.get(..d0.checked_mul(d1.div_ceil(2))?)?)
        }
        _ => {
            // Stored element `e` (row-major over the stored dims) as a signed value.
            let raw: Vec<i8> = match v.dtype {
                Datatype::QcInt8 => data.get(..d0 * d1)?.iter().map(|&b| b as i8).collect(),
                Datatype::QcInt4 | Datatype::QbInt4 => int4_values(data, d0, d1)?,
                _ => return None,
            };
            QVals::Values(if transposed {
                let mut t = vec![0i8; n * k];
                for kk in 0..k {
                    for j in 0..n {
                        t[j * k + kk] = raw[kk * n + j];
                    }
                }
                t
            } else {
                raw
            })
        }
    };
    let out_dim = usize::from(transposed);
    match (&v.quant, v.dtype) {
        (
            Quant::PerChannel {
                scales,
                channel_dim,
            },
            Datatype::QcInt8 | Datatype::QcInt4,
        ) if *channel_dim == out_dim && scales.len() == n => {
            let kind = if v.dtype == Datatype::QcInt8 {
                Qd8Kind::Qc8w
            } else {
                Qd8Kind::Qc4w
            };
            Some((kind, n, k, w, scales.clone()))
        }
        (
            Quant::Blockwise {
                scales, group_size, ..
            },
            Datatype::QbInt4,
        ) if !transposed
            && *group_size > 0
            && group_size % 32 == 0
            && k % group_size == 0
            && scales.len() == n * (k / group_size) =>
        {
            Some((
                Qd8Kind::Qb4w { block: *group_size },
                n,
                k,
                w,
                scales.clone(),
            ))
        }
        _ => None,
    }
}

/// The integer `qd8` plan of a fully-connected node, when it has one: dynamically
/// quantized (per row) input made from an f32 value by a convert node or given
/// as an external f32 input, a constant int8/int4 filter and a constant bias.
fn qd8_fc_prep(
    g: &Graph<'_>,
    producer: &[Option<usize>],
    input: usize,
    filter: usize,
    bias: Option<usize>,
    flags: u32,
) -> Result<Option<Prep>, XnnError> {
    let iv = &g.values[input];
    if fq_of(iv) != (Fq::Dynamic { nonbatch: 1 }) {
        return Ok(None);
    }
    let src = match producer[input] {
        Some(pi) => match &g.nodes[pi].op {
            Op::Unary {
                op: UnOp::Convert,
                input: s,
                ..
            } if g.values[*s].dtype == Datatype::Fp32 && fq_of(&g.values[*s]) == Fq::None => *s,
            _ => return Ok(None),
        },
        None if iv.is_input() && iv.dtype == Datatype::Fp32 => input,
        None => return Ok(None),
    };
    let Some((kind, n, k, w, scales)) = qd8_weights(&g.values[filter], flags & 1 != 0) else {
        return Ok(None);
    };
    let bias_v = match bias {
        None => None,
        Some(b) if g.values[b].data.is_some() => {
            let bv = decode_const(b, &g.values[b])?;
            if bv.len() != n {
                // The f32 path reports the mismatch.
                return Ok(None);
            }
            Some(bv)
        }
        Some(_) => return Ok(None),
    };
    let packed = match w {
        QVals::Values(w) => PackedQd8::new(kind, n, k, &w, &scales, bias_v.as_deref()),
        QVals::Nibbles(d) => PackedQd8::from_nibbles(kind, n, k, d, &scales, bias_v.as_deref()),
    }
    .map_err(|e| XnnError::Value {
        index: filter,
        msg: e.to_string(),
    })?;
    Ok(Some(Prep::Qd8Fc { packed, src }))
}

fn act(lo: f32, hi: f32) -> Activation {
    if lo == f32::NEG_INFINITY && hi == f32::INFINITY {
        Activation::None
    } else {
        Activation::Clamp { min: lo, max: hi }
    }
}

fn rt_meta(args: &PrepareCtx<'_>, arg: usize) -> Result<(ScalarType, Dims), XnnError> {
    let v = args
        .value(arg)
        .map_err(|e| XnnError::Args(format!("argument {arg}: {e}")))?;
    match v {
        RtValue::Tensor(t) => {
            let shape = t.shape();
            let order = t.dim_order();
            let phys: Vec<usize> = order
                .as_slice()
                .iter()
                .map(|&o| shape.dims().get(o as usize).copied().unwrap_or(1))
                .collect();
            let d = Dims::new(&phys)
                .ok_or_else(|| XnnError::Args(format!("argument {arg}: rank too large")))?;
            Ok((t.dtype(), d))
        }
        other => Err(XnnError::Args(format!(
            "argument {arg} is a {}, expected a tensor",
            other.kind()
        ))),
    }
}

fn dtype_ok(ty: ExtType, st: ScalarType) -> bool {
    match ty {
        ExtType::F32 => st == ScalarType::Float,
        ExtType::F16 => st == ScalarType::Half,
        ExtType::I8 => matches!(st, ScalarType::Char | ScalarType::QInt8),
        ExtType::U8 => matches!(st, ScalarType::Byte | ScalarType::QUInt8),
    }
}

impl XnnDelegate {
    /// Compiles a parsed graph against the delegate call's arguments.
    pub fn compile(g: &Graph<'_>, args: &PrepareCtx<'_>) -> Result<XnnDelegate, XnnError> {
        let nv = g.values.len();
        if args.num_args() < g.num_externs {
            return Err(XnnError::Args(format!(
                "the call has {} arguments, the graph {} external values",
                args.num_args(),
                g.num_externs
            )));
        }
        if g.outputs.len() > MAX_OUTPUTS {
            return Err(XnnError::Args(format!(
                "{} outputs exceed the supported {MAX_OUTPUTS}",
                g.outputs.len()
            )));
        }
        let mut shapes = vec![Dims::default(); nv];
        for (i, v) in g.values.iter().enumerate() {
            shapes[i] = Dims::new(&v.dims).ok_or_else(|| XnnError::Value {
                index: i,
                msg: "rank too large".into(),
            })?;
        }
        let mk_ext = |&(value, arg): &(usize, usize),
                      shapes: &mut Vec<Dims>,
                      is_in: bool|
         -> Result<Ext, XnnError> {
            let v = &g.values[value];
            let ty = ext_type(v.dtype).ok_or_else(|| XnnError::Value {
                index: value,
                msg: format!(
                    "external values of type {} are not supported",
                    v.dtype.name()
                ),
            })?;
            let (st, d) = rt_meta(args, arg)?;
            if !dtype_ok(ty, st) {
                return Err(XnnError::Args(format!(
                    "argument {arg} has dtype {st}, graph value {value} is {}",
                    v.dtype.name()
                )));
            }
            if d.numel() != v.numel() && !is_in {
                return Err(XnnError::Args(format!(
                    "argument {arg} has shape {d:?}, graph value {value} {:?}",
                    v.dims
                )));
            }
            let graph_dims = shapes[value];
            if is_in && d.rank() == graph_dims.rank() {
                shapes[value] = d;
            }
            Ok(Ext {
                value,
                arg,
                ty,
                graph_dims,
            })
        };
        let mut inputs = Vec::new();
        for e in &g.inputs {
            inputs.push(mk_ext(e, &mut shapes, true)?);
        }
        let mut outputs = Vec::new();
        for e in &g.outputs {
            outputs.push(mk_ext(e, &mut shapes, false)?);
        }

        // Producers: each value written once, never an input or a constant; inputs ready before use.
        let mut ready: Vec<bool> = g
            .values
            .iter()
            .map(|v| v.data.is_some() || v.is_input())
            .collect();
        let mut steps = Vec::with_capacity(g.nodes.len());
        let mut needs_buf: Vec<bool> = vec![false; nv];
        let mut prepared = 0usize;
        // Node producing each value (nodes come in execution order).
        let mut producer: Vec<Option<usize>> = vec![None; nv];
        for (ni, node) in g.nodes.iter().enumerate() {
            let out = node.op.out();
            let ins = node.op.inputs();
            let nerr = |m: String| XnnError::node(ni, node.kind, m);
            for &i in &ins {
                if !ready[i] {
                    return Err(nerr(format!("reads value {i} before any node produces it")));
                }
            }
            if ready[out] {
                return Err(nerr(format!(
                    "writes value {out}, which is an input, a constant or already produced"
                )));
            }
            ready[out] = true;
            let ov = &g.values[out];
            if !matches!(
                ov.dtype,
                Datatype::Fp32
                    | Datatype::Fp16
                    | Datatype::QInt8
                    | Datatype::QUInt8
                    | Datatype::QdInt8
            ) {
                return Err(XnnError::Unsupported {
                    index: ni,
                    kind: node.kind,
                    msg: format!("output of type {} is not supported", ov.dtype.name()),
                });
            }
            // Weight operands are consumed at init; others need run-time buffers.
            let (weights, bias) = match &node.op {
                Op::FullyConnected { filter, bias, .. } if g.values[*filter].data.is_some() => {
                    (Some(*filter), *bias)
                }
                Op::Conv { filter, bias, .. } | Op::Deconv { filter, bias, .. } => {
                    (Some(*filter), *bias)
                }
                _ => (None, None),
            };
            for &i in &ins {
                if Some(i) != weights && (Some(i) != bias || g.values[i].data.is_none()) {
                    needs_buf[i] = true;
                }
            }
            needs_buf[out] = true;
            let filter_dims = match &node.op {
                Op::FullyConnected { filter, .. } => Some(shapes[*filter]),
                _ => None,
            };
            if let Op::Concat { inputs: ci, .. } = &node.op {
                if ci.is_empty() {
                    return Err(nerr("concatenation without inputs".into()));
                }
            }
            for &i in &ins {
                let dt = g.values[i].dtype;
                if matches!(dt, Datatype::Bf16 | Datatype::QpInt8 | Datatype::Pfp32)
                    && g.values[i].data.is_none()
                {
                    return Err(XnnError::Unsupported {
                        index: ni,
                        kind: node.kind,
                        msg: format!("input value {i} of type {} is not supported", dt.name()),
                    });
                }
            }
            // Shapes at the planned (upper-bound) sizes.
            let od = infer(ni, node, &shapes, filter_dims.as_ref())?;
            shapes[out] = od;
            let qd8 = match &node.op {
                Op::FullyConnected {
                    input,
                    filter,
                    bias,
                    flags,
                    ..
                } => qd8_fc_prep(g, &producer, *input, *filter, *bias, *flags)
                    .map_err(|e| nerr(format!("{e}")))?,
                _ => None,
            };
            producer[out] = Some(ni);
            let q8 = qs8::prepare(g, node, &shapes).map_err(|e| nerr(e.to_string()))?;
            let prep = match &node.op {
                Op::FullyConnected { .. } if qd8.is_some() => {
                    let prep = qd8.unwrap_or(Prep::None);
                    if let Prep::Qd8Fc { packed, .. } = &prep {
                        prepared += packed.bytes();
                    }
                    prep
                }
                _ if q8.is_some() => {
                    let q = q8
                        .map(Box::new)
                        .ok_or_else(|| nerr("int8 preparation".into()))?;
                    prepared += q.bytes();
                    Prep::Q8(q)
                }
                Op::FullyConnected {
                    filter,
                    bias,
                    flags,
                    ..
                } => {
                    let fd = shapes[*filter];
                    let (k, n) = if flags & 1 != 0 {
                        (fd.get(0), fd.get(1))
                    } else {
                        (fd.get(1), fd.get(0))
                    };
                    let packed = match g.values[*filter].data {
                        Some(_) => {
                            let w = decode_const(*filter, &g.values[*filter])
                                .map_err(|e| nerr(format!("filter: {e}")))?;
                            let p = if flags & 1 != 0 {
                                PackedB::new(k, n, &w, n, false)
                            } else {
                                PackedB::new(k, n, &w, k, true)
                            };
                            prepared += p.bytes();
                            Some(p)
                        }
                        None => None,
                    };
                    let bias = match bias {
                        Some(b) if g.values[*b].data.is_some() => {
                            let bv = decode_const(*b, &g.values[*b])
                                .map_err(|e| nerr(format!("bias: {e}")))?;
                            if bv.len() != n {
                                return Err(nerr(format!(
                                    "bias has {} elements for {n} outputs",
                                    bv.len()
                                )));
                            }
                            prepared += bv.len() * 4;
                            Some(bv)
                        }
                        _ => None,
                    };
                    Prep::Fc { packed, bias }
                }
                Op::Deconv {
                    p, filter, bias, ..
                } => {
                    let runtime = |v: &Option<usize>| v.is_some_and(|b| g.values[b].data.is_none());
                    if g.values[*filter].data.is_none() || runtime(bias) {
                        return Err(XnnError::Unsupported {
                            index: ni,
                            kind: node.kind,
                            msg: "transposed convolution with a run-time filter or bias".into(),
                        });
                    }
                    let (groups, bias) = deconv_prep(g, p, *filter, *bias).map_err(nerr)?;
                    prepared += bias.len() * 4 + groups.iter().map(|p| p.bytes()).sum::<usize>();
                    Prep::Deconv { groups, bias }
                }
                Op::Conv {
                    p,
                    depthwise,
                    filter,
                    bias,
                    ..
                } => {
                    let fv = &g.values[*filter];
                    if fv.data.is_none() {
                        return Err(XnnError::Unsupported {
                            index: ni,
                            kind: node.kind,
                            msg: "convolution with a run-time filter".into(),
                        });
                    }
                    let w = decode_const(*filter, fv).map_err(|e| nerr(format!("filter: {e}")))?;
                    let cout = p.groups * p.group_out;
                    let bias_v = match bias {
                        Some(b) => {
                            if g.values[*b].data.is_none() {
                                return Err(XnnError::Unsupported {
                                    index: ni,
                                    kind: node.kind,
                                    msg: "convolution with a run-time bias".into(),
                                });
                            }
                            decode_const(*b, &g.values[*b])
                                .map_err(|e| nerr(format!("bias: {e}")))?
                        }
                        None => vec![0.0; cout],
                    };
                    if bias_v.len() != cout {
                        return Err(nerr(format!(
                            "bias has {} elements for {cout} output channels",
                            bias_v.len()
                        )));
                    }
                    prepared += bias_v.len() * 4;
                    if *depthwise {
                        if fv.dims != [1, p.kh, p.kw, cout] || p.group_in != 1 {
                            return Err(nerr(format!(
                                "depthwise filter {:?} does not match [1, {}, {}, {cout}]",
                                fv.dims, p.kh, p.kw
                            )));
                        }
                        prepared += w.len() * 4;
                        Prep::Dw {
                            w,
                            bias: bias_v,
                            mult: p.group_out,
                        }
                    } else if p.groups > 1
                        && p.group_in == 1
                        && p.group_out == 1
                        && fv.dims == [cout, p.kh, p.kw, 1]
                    {
                        // A grouped convolution with one channel per group is a
                        // depthwise one: OHW1 → [kh*kw, c] for the direct kernel.
                        let taps = p.kh * p.kw;
                        let mut wt = vec![0.0f32; w.len()];
                        for (co, f) in w.chunks_exact(taps).enumerate() {
                            for (t, &v) in f.iter().enumerate() {
                                wt[t * cout + co] = v;
                            }
                        }
                        prepared += wt.len() * 4;
                        Prep::Dw {
                            w: wt,
                            bias: bias_v,
                            mult: 1,
                        }
                    } else {
                        if fv.dims != [cout, p.kh, p.kw, p.group_in] {
                            return Err(nerr(format!(
                                "filter {:?} does not match [{cout}, {}, {}, {}]",
                                fv.dims, p.kh, p.kw, p.group_in
                            )));
                        }
                        let nhwc = (p.groups == 1)
                            .then(|| {
                                ConvNhwc::new(
                                    ConvNhwcParams {
                                        in_c: p.group_in,
                                        out_c: cout,
                                        kh: p.kh,
                                        kw: p.kw,
                                        stride: (p.sh.max(1), p.sw.max(1)),
                                        dilation: (p.dh.max(1), p.dw.max(1)),
                                        pad_top: p.pad_top,
                                        pad_left: p.pad_left,
                                    },
                                    &w,
                                    Some(&bias_v),
                                )
                            })
                            .flatten();
                        if let Some(conv) = nhwc {
                            prepared += conv.packed_bytes();
                            Prep::ConvNhwc(conv)
                        } else {
                            let k = p.kh * p.kw * p.group_in;
                            let groups: Vec<PackedB> = (0..p.groups)
                                .map(|gi| {
                                    PackedB::new(
                                        k,
                                        p.group_out,
                                        &w[gi * p.group_out * k..],
                                        k,
                                        true,
                                    )
                                })
                                .collect();
                            prepared += groups.iter().map(PackedB::bytes).sum::<usize>();
                            let direct = p.groups == 1
                                && p.kh == 1
                                && p.kw == 1
                                && p.sh.max(1) == 1
                                && p.sw.max(1) == 1
                                && p.pad_top + p.pad_bottom + p.pad_left + p.pad_right == 0;
                            Prep::Conv {
                                groups,
                                bias: bias_v,
                                direct,
                            }
                        }
                    }
                }
                _ => Prep::None,
            };
            steps.push(Step {
                index: ni,
                kind: node.kind,
                op: node.op.clone(),
                lo: node.min,
                hi: node.max,
                filter_dims,
                prep,
                skip: false,
                borrow: None,
                fused: false,
            });
        }
        // Converts to qdint8 read only by integer qd8 steps are skipped; external
        // inputs read only by them stay raw f32.
        let mut other_use = vec![false; nv];
        for st in &steps {
            if !matches!(st.prep, Prep::Qd8Fc { .. }) {
                for i in st.op.inputs() {
                    other_use[i] = true;
                }
            }
        }
        for o in &outputs {
            other_use[o.value] = true;
        }
        for st in steps.iter_mut() {
            if let Op::Unary {
                op: UnOp::Convert,
                out,
                ..
            } = st.op
            {
                st.skip = matches!(fq_of(&g.values[out]), Fq::Dynamic { .. }) && !other_use[out];
                if st.skip {
                    // Nothing reads the converted value: no buffer for it.
                    needs_buf[out] = false;
                }
            }
        }
        let fusion = fusion_mode();
        if fusion != Fusion::Off {
            let all = fusion == Fusion::All;
            // Fusing changes no step's inputs: one count serves the three passes.
            let readers = value_readers(nv, &steps, &outputs);
            fuse_pointwise_depthwise(g, &mut steps, &readers, &shapes, &mut needs_buf, all);
            fuse_conv_add(g, &mut steps, &readers, &shapes, &mut needs_buf);
            fuse_projection(g, &mut steps, &readers, &shapes, &mut needs_buf);
        }
        let raw_dynamic: Vec<bool> = (0..nv)
            .map(|v| {
                g.values[v].is_input()
                    && matches!(fq_of(&g.values[v]), Fq::Dynamic { .. })
                    && !other_use[v]
            })
            .collect();
        let mut qa_len = 0usize;
        let mut qp_len = 0usize;
        for st in &steps {
            if let Prep::Qd8Fc { packed, src } = &st.prep {
                let rows = shapes[*src].numel().max(g.values[*src].numel()) / packed.k().max(1);
                qa_len = qa_len.max(rows * packed.row_len());
                qp_len = qp_len.max(rows);
            }
        }
        prepared += qa_len + qp_len * core::mem::size_of::<Qd8Params>();
        for o in &outputs {
            if !ready[o.value] {
                return Err(XnnError::Value {
                    index: o.value,
                    msg: "external output is never produced".into(),
                });
            }
            needs_buf[o.value] = true;
        }
        for i in &inputs {
            needs_buf[i.value] = true;
        }

        // Values that only int8 steps produce and read live in `Q8State`'s byte
        // buffers alone: no f32 buffer (their planned size still bounds reshapes).
        let mut f32_side = vec![false; nv];
        for st in &steps {
            if !matches!(st.prep, Prep::Q8(_)) {
                for i in st.op.inputs() {
                    f32_side[i] = true;
                }
                f32_side[st.op.out()] = true;
            }
        }
        for e in inputs.iter().chain(&outputs) {
            f32_side[e.value] = true;
        }
        let planned = |i: usize| shapes[i].numel().max(g.values[i].numel()).max(1);
        let cap: Vec<usize> = (0..nv)
            .map(|i| if needs_buf[i] { planned(i) } else { 0 })
            .collect();

        // Buffers at the upper-bound sizes; scratch for im2col.
        let mut bufs: Vec<F32Buf> = Vec::with_capacity(nv);
        for i in 0..nv {
            if !needs_buf[i] || !f32_side[i] {
                bufs.push(F32Buf::default());
                continue;
            }
            let v = &g.values[i];
            let b = if v.data.is_some() {
                let c = decode_const(i, v)?;
                F32Buf::copy_from(if c.is_empty() { &[0.0] } else { &c })
            } else {
                zeroed(planned(i), || format!("value {i}"))?
            };
            prepared += b.len() * 4;
            bufs.push(b);
        }
        {
            // Share activation buffers: only values that plain f32 steps alone access.
            let mut shareable: Vec<bool> = (0..nv)
                .map(|v| cap[v] > 0 && g.values[v].data.is_none())
                .collect();
            for o in &outputs {
                shareable[o.value] = false;
            }
            for st in &steps {
                if st.skip || matches!(st.prep, Prep::Q8(_) | Prep::Qd8Fc { .. }) {
                    for v in st.op.inputs() {
                        shareable[v] = false;
                    }
                    shareable[st.op.out()] = false;
                    if let Prep::Qd8Fc { src, .. } = &st.prep {
                        shareable[*src] = false;
                    }
                }
            }
            let reads: Vec<Vec<usize>> = steps.iter().map(Step::reads).collect();
            let writes: Vec<Option<usize>> = steps
                .iter()
                .map(|s| (!s.skip && !s.fused).then(|| s.op.out()))
                .collect();
            let borrow = bufplan::plan(&reads, &writes, &cap, &shareable);
            for (st, b) in steps.iter_mut().zip(borrow) {
                if b.is_some() {
                    let out = st.op.out();
                    prepared -= bufs[out].len() * 4;
                    bufs[out] = F32Buf::default();
                }
                st.borrow = b;
            }
        }
        let mut scratch_len = 0usize;
        for s in &steps {
            scratch_len = scratch_len.max(scratch_need(s, &shapes, &shapes[s.op.out()])?);
        }
        prepared += scratch_len * 4;
        let fq = g.values.iter().map(fq_of).collect();
        let last_inputs = inputs.iter().map(|e| shapes[e.value]).collect();
        {
            let ins: Vec<Vec<usize>> = steps.iter().map(|s| s.op.inputs()).collect();
            let outs: Vec<usize> = outputs.iter().map(|o| o.value).collect();
            let mut qs: Vec<_> = steps
                .iter_mut()
                .map(|s| match &mut s.prep {
                    Prep::Q8(q) => Some(&mut **q),
                    _ => None,
                })
                .collect();
            qs8::fuse_clamps(&mut qs, &ins, &outs, nv);
        }
        let q8_steps: Vec<_> = steps
            .iter()
            .map(|s| {
                let q = match &s.prep {
                    Prep::Q8(q) => Some(&**q),
                    _ => None,
                };
                (q, s.op.inputs())
            })
            .collect();
        let out_ids: Vec<usize> = outputs.iter().map(|o| o.value).collect();
        let q8 = qs8::Q8State::new(g, &shapes, &q8_steps, &out_ids)?;
        drop(q8_steps);
        prepared += q8.bytes();
        let transient = (0..nv)
            .filter(|&v| g.values[v].data.is_none() && !bufs[v].is_empty())
            .collect();
        Ok(XnnDelegate {
            steps,
            bufs,
            cap,
            shapes,
            fq,
            inputs,
            outputs,
            scratch: zeroed(scratch_len, || "scratch".into())?,
            qa: zeroed(qa_len.div_ceil(4), || "quantized rows".into())?,
            qp: zeroed(qp_len * (core::mem::size_of::<Qd8Params>() / 4), || {
                "row quantization parameters".into()
            })?,
            raw_dynamic,
            last_inputs,
            prepared,
            transient,
            lent: Vec::new(),
            q8,
            profile: None,
        })
    }

    fn reinfer(&mut self) -> Result<(), XnnError> {
        for s in &self.steps {
            let od = infer_step(s, &self.shapes)?;
            let out = s.op.out();
            if !s.skip && !s.fused && od.numel() > self.cap[out] {
                return Err(XnnError::Shape(format!(
                    "node {} ({}) output {:?} exceeds the {} elements planned at init",
                    s.index, s.kind, od, self.cap[out]
                )));
            }
            if scratch_need(s, &self.shapes, &od)? > self.scratch.len() {
                return Err(XnnError::Shape(format!(
                    "node {} ({}) needs more scratch than planned",
                    s.index, s.kind
                )));
            }
            self.shapes[out] = od;
        }
        Ok(())
    }

    /// Swaps step `si`'s output slot with the slot whose buffer it borrows (before the
    /// step runs, and again in reverse step order after the run to put buffers home).
    fn swap_borrowed(&mut self, si: usize) {
        let s = &self.steps[si];
        if let Some(d) = s.borrow {
            self.bufs.swap(d, s.op.out());
        }
        self.q8.swap_borrowed(si);
    }

    /// Runs the steps in order; whatever happens, every borrowed buffer is back home
    /// afterwards.
    fn run_steps(&mut self) -> Result<(), XnnError> {
        let mut res = Ok(());
        let mut ran = 0;
        while ran < self.steps.len() && res.is_ok() {
            self.swap_borrowed(ran);
            res = if self.profile.is_some() {
                let t0 = std::time::Instant::now();
                let r = self.run_step(ran);
                let dt = t0.elapsed().as_nanos() as u64;
                if let Some(e) = self.profile.as_mut().and_then(|p| p.get_mut(ran)) {
                    e.0 += dt;
                    e.1 += 1;
                }
                r
            } else {
                self.run_step(ran)
            };
            ran += 1;
        }
        for si in (0..ran).rev() {
            self.swap_borrowed(si);
        }
        res
    }

    fn run_step(&mut self, si: usize) -> Result<(), XnnError> {
        let s = &self.steps[si];
        if s.skip || s.fused {
            return Ok(());
        }
        if let Prep::Q8(q) = &s.prep {
            return qs8::run(
                q,
                s.index,
                s.kind,
                &mut self.q8,
                &mut self.bufs,
                &self.shapes,
            );
        }
        let out = s.op.out();
        let od = self.shapes[out];
        if let Prep::Qd8Fc { packed, src } = &s.prep {
            let mut ob = core::mem::take(&mut self.bufs[out]);
            let res = run_qd8_fc(
                s,
                packed,
                &self.bufs[*src],
                &self.shapes[*src],
                bytemuck::cast_slice_mut(&mut self.qa),
                bytemuck::cast_slice_mut(&mut self.qp),
                &mut ob,
                &od,
            );
            self.bufs[out] = ob;
            return res;
        }
        let mut ob = core::mem::take(&mut self.bufs[out]);
        let res = run_op(s, &self.bufs, &self.shapes, &mut self.scratch, &mut ob, &od);
        self.bufs[out] = ob;
        res?;
        let n = od.numel();
        apply_fq(self.fq[out], &mut self.bufs[out][..n], &od);
        Ok(())
    }
}

/// Fuses every f32 pointwise convolution (`Prep::ConvNhwc`, 1x1 stride 1 unpadded)
/// whose output is read only by the next step, a multiplier-1 f32 depthwise
/// convolution, and is neither an external output nor snapped to a grid
/// (`Fq::None`): the depthwise step takes the convolution over (`Prep::PwDw`), the
/// convolution's step is marked `fused`, and the expanded value loses its buffer.
/// Pairs whose band would not fit the per-thread scratch, or whose expanded map is
/// too small for fusion to pay (`pointwise_depthwise_pays`), stay apart.
fn fuse_pointwise_depthwise(
    g: &Graph<'_>,
    steps: &mut [Step],
    readers: &[usize],
    shapes: &[Dims],
    needs_buf: &mut [bool],
    all: bool,
) {
    for i in 0..steps.len().saturating_sub(1) {
        let (a, b) = (&steps[i], &steps[i + 1]);
        let (
            Op::Conv {
                input: src,
                out: mid,
                ..
            },
            Prep::ConvNhwc(conv),
        ) = (&a.op, &a.prep)
        else {
            continue;
        };
        let (Op::Conv { p, input, out, .. }, Prep::Dw { mult: 1, .. }) = (&b.op, &b.prep) else {
            continue;
        };
        let (src, mid, out) = (*src, *mid, *out);
        let (mh, mw, mc) = (shapes[mid].get(1), shapes[mid].get(2), shapes[mid].get(3));
        if a.skip
            || b.skip
            || !conv.is_pointwise()
            || *input != mid
            || readers[mid] != 1
            || !plain_f32(g, src)
            || !plain_f32(g, mid)
            || g.values[out].dtype != Datatype::Fp32
            || shapes[mid].rank() != 4
            || !(all || pointwise_depthwise_pays(mh, mw, mc))
            || pointwise_depthwise_scratch(&p.window(), mw, mc).is_none()
        {
            continue;
        }
        let (conv_lo, conv_hi) = (a.lo, a.hi);
        let pa = core::mem::replace(&mut steps[i].prep, Prep::None);
        let pb = core::mem::replace(&mut steps[i + 1].prep, Prep::None);
        match (pa, pb) {
            (Prep::ConvNhwc(conv), Prep::Dw { w, bias, .. }) => {
                steps[i + 1].prep = Prep::PwDw(Box::new(PwDw {
                    conv,
                    conv_lo,
                    conv_hi,
                    src,
                    mid,
                    w,
                    bias,
                }));
                steps[i].fused = true;
                // Never allocated (the packed weights stay counted where they were).
                needs_buf[mid] = false;
            }
            (pa, pb) => {
                steps[i].prep = pa;
                steps[i + 1].prep = pb;
            }
        }
    }
}

/// How many readers each value has: step inputs (a qd8 step's raw source too) and
/// external outputs.
fn value_readers(nv: usize, steps: &[Step], outputs: &[Ext]) -> Vec<usize> {
    let mut readers = vec![0usize; nv];
    for st in steps {
        for v in st.op.inputs() {
            readers[v] += 1;
        }
        if let Prep::Qd8Fc { src, .. } = &st.prep {
            readers[*src] += 1;
        }
    }
    for o in outputs {
        readers[o.value] += 1;
    }
    readers
}

/// An f32 value that is not snapped to a quantization grid (`Fq::None`).
fn plain_f32(g: &Graph<'_>, v: usize) -> bool {
    g.values[v].dtype == Datatype::Fp32 && fq_of(&g.values[v]) == Fq::None
}

/// Fuses every f32 NHWC convolution (`Prep::ConvNhwc`) whose output is read only by
/// the next step, an elementwise add of two equally shaped f32 values (no
/// broadcast), and is neither an external output nor snapped to a grid: the add's
/// step takes the convolution over (`Prep::ConvAdd`), the convolution's step is
/// marked `fused`, and the convolution's output loses its buffer. The projection
/// convolutions of residual blocks (MobileNet v2's inverted residuals) end this way.
fn fuse_conv_add(
    g: &Graph<'_>,
    steps: &mut [Step],
    readers: &[usize],
    shapes: &[Dims],
    needs_buf: &mut [bool],
) {
    for i in 0..steps.len().saturating_sub(1) {
        let (a, b) = (&steps[i], &steps[i + 1]);
        let (
            Op::Conv {
                input: src,
                out: mid,
                ..
            },
            Prep::ConvNhwc(_),
        ) = (&a.op, &a.prep)
        else {
            continue;
        };
        let (
            Op::Binary {
                op: BinOp::Add,
                a: x,
                b: y,
                out,
                ..
            },
            Prep::None,
        ) = (&b.op, &b.prep)
        else {
            continue;
        };
        let (src, mid, out) = (*src, *mid, *out);
        let residual = if *x == mid { *y } else { *x };
        if a.skip
            || a.fused
            || b.skip
            || (*x != mid && *y != mid)
            || residual == mid
            || readers[mid] != 1
            || !plain_f32(g, src)
            || !plain_f32(g, mid)
            || !plain_f32(g, residual)
            || g.values[out].dtype != Datatype::Fp32
            || shapes[mid].rank() != 4
            || shapes[residual] != shapes[mid]
            || shapes[out] != shapes[mid]
        {
            continue;
        }
        let (conv_lo, conv_hi) = (a.lo, a.hi);
        if let Prep::ConvNhwc(conv) = core::mem::replace(&mut steps[i].prep, Prep::None) {
            steps[i + 1].prep = Prep::ConvAdd(Box::new(ConvAdd {
                conv,
                conv_lo,
                conv_hi,
                src,
                residual,
            }));
            steps[i].fused = true;
            // Never allocated (the packed weights stay counted where they were).
            needs_buf[mid] = false;
        }
    }
}

/// Fuses the pointwise projection into every fused pointwise + depthwise pair
/// (`Prep::PwDw`) whose depthwise output is read only by it: the next step, a
/// pointwise `Prep::ConvNhwc`, or (the projection's own step `fused`) the one after,
/// a `Prep::ConvAdd` whose convolution is pointwise. The depthwise output must be a
/// plain f32 value that is not an external output, and both bands must fit the
/// per-thread scratch (`pointwise_depthwise_project_scratch`). The projection's step
/// takes the pair over (`Prep::PwDwPw`), the depthwise step is marked `fused`, and
/// the depthwise output loses its buffer.
fn fuse_projection(
    g: &Graph<'_>,
    steps: &mut [Step],
    readers: &[usize],
    shapes: &[Dims],
    needs_buf: &mut [bool],
) {
    for i in 0..steps.len() {
        let (Op::Conv { p, out: dw_out, .. }, Prep::PwDw(f)) = (&steps[i].op, &steps[i].prep)
        else {
            continue;
        };
        let dw_out = *dw_out;
        let win = p.window();
        let (mw, c) = (shapes[f.mid].get(2), shapes[f.mid].get(3));
        let od = shapes[dw_out];
        // Where the projection sits: its own step, or the add it was fused into.
        let k = match (steps.get(i + 1), steps.get(i + 2)) {
            (Some(a), _)
                if !a.skip
                    && !a.fused
                    && matches!((&a.op, &a.prep), (Op::Conv { input, .. }, Prep::ConvNhwc(cv))
                        if *input == dw_out && cv.is_pointwise()) =>
            {
                i + 1
            }
            (Some(a), Some(b))
                if a.fused
                    && !b.skip
                    && matches!(&b.prep, Prep::ConvAdd(ca)
                        if ca.src == dw_out && ca.conv.is_pointwise()) =>
            {
                i + 2
            }
            _ => continue,
        };
        if steps[i].skip
            || readers[dw_out] != 1
            || !plain_f32(g, dw_out)
            || od.rank() != 4
            || pointwise_depthwise_project_scratch(&win, mw, c, od.get(2)).is_none()
        {
            continue;
        }
        let (dw_lo, dw_hi) = (steps[i].lo, steps[i].hi);
        let (proj, proj_lo, proj_hi, residual) =
            match core::mem::replace(&mut steps[k].prep, Prep::None) {
                Prep::ConvNhwc(cv) => (cv, steps[k].lo, steps[k].hi, None),
                Prep::ConvAdd(ca) => (ca.conv, ca.conv_lo, ca.conv_hi, Some(ca.residual)),
                other => {
                    steps[k].prep = other;
                    continue;
                }
            };
        let Prep::PwDw(pwdw) = core::mem::replace(&mut steps[i].prep, Prep::None) else {
            unreachable!("matched above")
        };
        steps[k].prep = Prep::PwDwPw(Box::new(PwDwPw {
            pwdw: *pwdw,
            win,
            dw_lo,
            dw_hi,
            dw_out,
            proj,
            proj_lo,
            proj_hi,
            residual,
        }));
        steps[i].fused = true;
        needs_buf[dw_out] = false;
    }
}

/// Packs a transposed convolution's constant filter (the caller checked that filter
/// and bias are constants) `[groups * group_out, kh, kw,
/// group_in]` into one `[group_in, kh * kw * group_out]` GEMM operand per group, and
/// decodes its bias (zeros when absent).
fn deconv_prep(
    g: &Graph<'_>,
    p: &ConvParams,
    filter: usize,
    bias: Option<usize>,
) -> Result<(Vec<PackedB>, Vec<f32>), String> {
    let fv = &g.values[filter];
    let cout = p.groups * p.group_out;
    if fv.dims != [cout, p.kh, p.kw, p.group_in] {
        return Err(format!(
            "filter {:?} does not match [{cout}, {}, {}, {}]",
            fv.dims, p.kh, p.kw, p.group_in
        ));
    }
    let w = decode_const(filter, fv).map_err(|e| format!("filter: {e}"))?;
    let bias = match bias {
        Some(b) => decode_const(b, &g.values[b]).map_err(|e| format!("bias: {e}"))?,
        None => vec![0.0; cout],
    };
    if bias.len() != cout {
        return Err(format!(
            "bias has {} elements for {cout} outputs",
            bias.len()
        ));
    }
    let (gi, go, taps) = (p.group_in, p.group_out, p.kh * p.kw);
    let n = taps * go;
    let groups = (0..p.groups)
        .map(|grp| {
            // b[ci][t * go + co] = w[grp * go + co][t][ci]
            let mut b = vec![0.0f32; gi * n];
            for co in 0..go {
                for t in 0..taps {
                    let src = &w[((grp * go + co) * taps + t) * gi..][..gi];
                    for (ci, &v) in src.iter().enumerate() {
                        b[ci * n + t * go + co] = v;
                    }
                }
            }
            PackedB::new(gi, n, &b, n, false)
        })
        .collect();
    Ok((groups, bias))
}

/// Scratch floats a step needs for output `od`: im2col rows of a grouped or strided
/// convolution, or the GEMM columns of a transposed convolution.
fn scratch_need(s: &Step, shapes: &[Dims], od: &Dims) -> Result<usize, XnnError> {
    let prod = |f: &[usize]| f.iter().try_fold(1usize, |a, &x| a.checked_mul(x));
    let need = match (&s.op, &s.prep) {
        (Op::Conv { p, input, .. }, Prep::Conv { direct: false, .. }) => prod(&[
            shapes[*input].get(0),
            od.get(1),
            od.get(2),
            p.kh,
            p.kw,
            p.group_in,
        ]),
        (Op::Deconv { p, input, .. }, _) => {
            let d = shapes[*input];
            prod(&[d.get(0), d.get(1), d.get(2), p.kh, p.kw, p.group_out])
        }
        _ => Some(0),
    };
    need.ok_or_else(|| XnnError::node(s.index, s.kind, "its scratch size overflows".to_string()))
}

/// A `Prep::Qd8Fc` step: quantize each row of `x`, then the integer GEMM.
#[allow(clippy::too_many_arguments)]
fn run_qd8_fc(
    s: &Step,
    packed: &PackedQd8,
    x: &[f32],
    xd: &Dims,
    qa: &mut [i8],
    qp: &mut [Qd8Params],
    out: &mut [f32],
    od: &Dims,
) -> Result<(), XnnError> {
    let (k, n, kp) = (packed.k(), packed.n(), packed.row_len());
    let m = xd.numel() / k;
    if xd.last() != k || od.last() != n || m * k != xd.numel() {
        return Err(XnnError::Shape(format!(
            "node {} ({}): input {:?} / output {:?} do not fit the {n}x{k} filter",
            s.index, s.kind, xd, od
        )));
    }
    if m == 0 {
        return Ok(());
    }
    if m * kp > qa.len() || m > qp.len() || m * n > out.len() || m * k > x.len() {
        return Err(XnnError::Shape(format!(
            "node {} ({}): {m} rows exceed the planned bound",
            s.index, s.kind
        )));
    }
    packed.quantize_rows(m, x, qa, kp, qp);
    qd8_gemm(m, qa, kp, qp, packed, out, n, s.lo, s.hi);
    Ok(())
}

fn infer_step(s: &Step, shapes: &[Dims]) -> Result<Dims, XnnError> {
    // `infer` only reads kind/op; build a lightweight node view without allocation.
    let node = NodeView {
        kind: s.kind,
        op: &s.op,
    };
    node.infer(s.index, shapes, s.filter_dims.as_ref())
}

struct NodeView<'a> {
    kind: &'static str,
    op: &'a Op,
}

impl NodeView<'_> {
    fn infer(&self, index: usize, shapes: &[Dims], fd: Option<&Dims>) -> Result<Dims, XnnError> {
        crate::shape::infer_op(index, self.kind, self.op, shapes, fd)
    }
}

fn round_half_even(x: f32) -> f32 {
    x.round_ties_even()
}

fn apply_fq(fq: Fq, x: &mut [f32], d: &Dims) {
    match fq {
        Fq::None => {}
        Fq::Half => {
            for v in x.iter_mut() {
                *v = round_to_f16(*v);
            }
        }
        Fq::Static {
            scale,
            zp,
            qmin,
            qmax,
        } => {
            let inv = 1.0 / scale;
            let (lo, hi) = (
                (qmin as i64 - zp as i64) as f32,
                (qmax as i64 - zp as i64) as f32,
            );
            for v in x.iter_mut() {
                // Clamp first (the bounds are integers, so this commutes with
                // rounding), then round ties-to-even with the magic number, exact
                // for |x| < 2^22 and vectorisable (`round_ties_even` is a libm call
                // on baseline x86-64). NaN stays NaN.
                let q = ((*v * inv).clamp(lo, hi) + 12_582_912.0) - 12_582_912.0;
                *v = if q.is_nan() { 0.0 } else { q * scale };
            }
        }
        Fq::Dynamic { nonbatch } => {
            let r = d.rank();
            let nb = nonbatch.min(r);
            let row: usize = d.as_slice()[r - nb..].iter().product();
            if row == 0 {
                return;
            }
            for chunk in x.chunks_mut(row) {
                quantize_row_qd8(chunk);
            }
        }
    }
}

/// XNNPACK's f32 -> qd8 conversion of one row (asymmetric int8, range includes 0).
fn quantize_row_qd8(x: &mut [f32]) {
    let (mut mn, mut mx) = (0.0f32, 0.0f32);
    for &v in x.iter() {
        mn = mn.min(v);
        mx = mx.max(v);
    }
    let (qmin, qmax) = (-128.0f32, 127.0f32);
    let mut scale = (mx - mn) / (qmax - qmin);
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() {
        scale = 1.0;
    }
    let dmin = mn / scale;
    let dmax = mx / scale;
    let zp_from_min_err = qmin + dmin;
    let zp_from_max_err = qmax + dmax;
    let zp = if zp_from_min_err + zp_from_max_err > 0.0 {
        qmin - dmin
    } else {
        qmax - dmax
    };
    let zp = zp.clamp(qmin, qmax).round_ties_even();
    let inv = 1.0 / scale;
    for v in x.iter_mut() {
        let q = (round_half_even(*v * inv) + zp).clamp(qmin, qmax);
        *v = (q - zp) * scale;
    }
}

fn nhwc(d: &Dims) -> (usize, usize, usize, usize) {
    (d.get(0), d.get(1), d.get(2), d.get(3))
}

fn run_op(
    s: &Step,
    bufs: &[F32Buf],
    shapes: &[Dims],
    scratch: &mut [f32],
    out: &mut [f32],
    od: &Dims,
) -> Result<(), XnnError> {
    let (lo, hi) = (s.lo, s.hi);
    let n_out = od.numel();
    match (&s.op, &s.prep) {
        (_, Prep::PwDwPw(f)) => {
            let pd = &f.pwdw;
            let dd = shapes[f.dw_out];
            let (oh, ow) = (dd.get(1), dd.get(2));
            let Some((b, h, w)) = pd.fits(shapes, &dd).filter(|&(b, _, w)| {
                pointwise_depthwise_project_scratch(&f.win, w, pd.conv.params().out_c, ow).is_some()
                    && od.rank() == 4
                    && (od.get(0), od.get(1), od.get(2)) == (b, oh, ow)
                    && od.get(3) == f.proj.params().out_c
                    && !f.residual.is_some_and(|r| shapes[r] != *od)
            }) else {
                return Err(XnnError::Shape(format!(
                    "node {} ({}): fused pointwise + depthwise + pointwise does not fit {:?} -> {dd:?} -> {od:?}",
                    s.index, s.kind, shapes[pd.src]
                )));
            };
            let proj = Projection {
                conv: &f.proj,
                clamp: (f.proj_lo, f.proj_hi),
                residual: f.residual.map(|r| &bufs[r][..]),
                add_clamp: (lo, hi),
            };
            pointwise_depthwise_project_nhwc(
                &pd.conv,
                (pd.conv_lo, pd.conv_hi),
                &bufs[pd.src],
                (b, h, w),
                &f.win,
                (oh, ow),
                &pd.w,
                &pd.bias,
                (f.dw_lo, f.dw_hi),
                &proj,
                out,
            );
        }
        (Op::Binary { .. }, Prep::ConvAdd(f)) => {
            let id = shapes[f.src];
            let cp = f.conv.params();
            if id.rank() != 4
                || id.get(3) != cp.in_c
                || od.rank() != 4
                || od.get(3) != cp.out_c
                || od.get(0) != id.get(0)
                || shapes[f.residual] != *od
            {
                return Err(XnnError::Shape(format!(
                    "node {} ({}): fused convolution + add does not fit {id:?} and {:?} -> {od:?}",
                    s.index, s.kind, shapes[f.residual]
                )));
            }
            let (b, h, w, _) = nhwc(&id);
            f.conv.run_add(
                &bufs[f.src],
                (b, h, w),
                (od.get(1), od.get(2)),
                out,
                (f.conv_lo, f.conv_hi),
                &bufs[f.residual],
                (lo, hi),
            );
        }
        (Op::Binary { op, a, b, .. }, _) => {
            kernels::binary(*op, &bufs[*a], &shapes[*a], &bufs[*b], &shapes[*b], out, od);
            if *op != BinOp::Min && *op != BinOp::Max {
                kernels::clamp(&mut out[..n_out], lo, hi);
            }
        }
        (Op::Unary { op, input, .. }, _) => {
            out[..n_out].copy_from_slice(&bufs[*input][..n_out]);
            let (l, h) = match op {
                UnOp::Clamp => (lo, hi),
                UnOp::Copy | UnOp::Convert => (f32::NEG_INFINITY, f32::INFINITY),
                _ => (lo, hi),
            };
            kernels::unary(*op, &mut out[..n_out], l, h);
        }
        (Op::Softmax { input, .. }, _) => {
            let n = od.last();
            let rows = n_out.checked_div(n).unwrap_or(0);
            kernels::softmax(&bufs[*input], rows, n, out);
        }
        (
            Op::FullyConnected {
                input,
                filter,
                bias,
                flags,
                ..
            },
            Prep::Fc {
                packed,
                bias: cbias,
            },
        ) => {
            let id = shapes[*input];
            let k = id.last();
            let n = od.last();
            let m = id.numel().checked_div(k).unwrap_or(0);
            let bias_s: Option<&[f32]> = match (cbias, bias) {
                (Some(b), _) => Some(b),
                (None, Some(b)) => Some(&bufs[*b][..n]),
                _ => None,
            };
            let bias_arg = bias_s.map_or(Bias::None, Bias::PerColumn);
            if m == 0 || n == 0 {
                return Ok(());
            }
            if k == 0 {
                for row in out[..m * n].chunks_exact_mut(n) {
                    match bias_s {
                        Some(b) => row.copy_from_slice(b),
                        None => row.fill(0.0),
                    }
                    kernels::clamp(row, lo, hi);
                }
                return Ok(());
            }
            match packed {
                Some(p) => {
                    sgemm_packed(m, &bufs[*input], k, false, p, out, n, bias_arg, act(lo, hi))
                }
                None => {
                    let tw = flags & 1 != 0;
                    sgemm(GemmArgs {
                        m,
                        n,
                        k,
                        a: &bufs[*input],
                        lda: k,
                        a_trans: false,
                        b: &bufs[*filter],
                        ldb: if tw { n } else { k },
                        b_trans: !tw,
                        c: out,
                        ldc: n,
                        beta: 0.0,
                        alpha: 1.0,
                        bias: bias_arg,
                        act: act(lo, hi),
                    })
                }
            }
        }
        (
            Op::Conv { p, input, .. },
            Prep::Conv {
                groups,
                bias,
                direct,
            },
        ) => {
            let id = shapes[*input];
            let (b, h, w, c) = nhwc(&id);
            let (oh, ow) = (od.get(1), od.get(2));
            let m = b * oh * ow;
            let cout = p.groups * p.group_out;
            if m == 0 || cout == 0 {
                return Ok(());
            }
            if *direct {
                sgemm_packed(
                    m,
                    &bufs[*input],
                    c,
                    false,
                    &groups[0],
                    out,
                    cout,
                    Bias::PerColumn(bias),
                    act(lo, hi),
                );
            } else {
                let k = p.kh * p.kw * p.group_in;
                for (g, pk) in groups.iter().enumerate() {
                    let sc = &mut scratch[..m * k];
                    kernels::im2col(
                        &bufs[*input],
                        (b, h, w, c),
                        p,
                        (oh, ow),
                        g * p.group_in,
                        p.group_in,
                        sc,
                    );
                    let og = p.group_out;
                    sgemm_packed(
                        m,
                        sc,
                        k,
                        false,
                        pk,
                        &mut out[g * og..],
                        cout,
                        Bias::PerColumn(&bias[g * og..(g + 1) * og]),
                        act(lo, hi),
                    );
                }
            }
        }
        (Op::Deconv { p, input, .. }, Prep::Deconv { groups, bias }) => {
            let (b, h, w, c) = nhwc(&shapes[*input]);
            let cout = p.groups * p.group_out;
            let out = &mut out[..n_out];
            if cout == 0 {
                return Ok(());
            }
            for px in out.chunks_exact_mut(cout) {
                px.copy_from_slice(bias);
            }
            let m = b * h * w;
            let cols_n = p.kh * p.kw * p.group_out;
            if m > 0 && cols_n > 0 {
                for (g, pk) in groups.iter().enumerate() {
                    let cols = &mut scratch[..m * cols_n];
                    sgemm_packed(
                        m,
                        &bufs[*input][g * p.group_in..],
                        c,
                        false,
                        pk,
                        cols,
                        cols_n,
                        Bias::None,
                        act(f32::NEG_INFINITY, f32::INFINITY),
                    );
                    kernels::col2im_add(
                        cols,
                        (b, h, w),
                        p,
                        (od.get(1), od.get(2)),
                        g * p.group_out,
                        out,
                    );
                }
            }
            kernels::clamp(out, lo, hi);
        }
        (Op::Conv { input, .. }, Prep::ConvNhwc(conv)) => {
            let (b, h, w, _) = nhwc(&shapes[*input]);
            conv.run(
                &bufs[*input],
                (b, h, w),
                (od.get(1), od.get(2)),
                out,
                (lo, hi),
            );
        }
        (Op::Conv { p, .. }, Prep::PwDw(f)) => {
            let win = p.window();
            let fits = f.fits(shapes, od).filter(|&(_, _, w)| {
                pointwise_depthwise_scratch(&win, w, f.conv.params().out_c).is_some()
            });
            let Some((b, h, w)) = fits else {
                return Err(XnnError::Shape(format!(
                    "node {} ({}): fused pointwise + depthwise does not fit {:?} -> {od:?}",
                    s.index, s.kind, shapes[f.src]
                )));
            };
            pointwise_depthwise_nhwc(
                &f.conv,
                (f.conv_lo, f.conv_hi),
                &bufs[f.src],
                (b, h, w),
                &win,
                (od.get(1), od.get(2)),
                &f.w,
                &f.bias,
                (lo, hi),
                out,
            );
        }
        (Op::Conv { p, input, .. }, Prep::Dw { w, bias, mult }) => {
            let id = shapes[*input];
            if *mult == 1 {
                pteron_linalg::nhwc::depthwise_nhwc(
                    &bufs[*input],
                    nhwc(&id),
                    &p.window(),
                    (od.get(1), od.get(2)),
                    w,
                    bias,
                    (lo, hi),
                    out,
                );
            } else {
                kernels::depthwise(
                    &bufs[*input],
                    nhwc(&id),
                    p,
                    (od.get(1), od.get(2)),
                    w,
                    bias,
                    *mult,
                    (lo, hi),
                    out,
                );
            }
        }
        (Op::MaxPool { p, input, .. }, _) => {
            pteron_linalg::nhwc::max_pool_nhwc(
                &bufs[*input],
                nhwc(&shapes[*input]),
                &p.window(),
                (od.get(1), od.get(2)),
                (lo, hi),
                out,
            );
        }
        (Op::AvgPool { p, input, .. }, _) => {
            let max = false;
            kernels::pool(
                &bufs[*input],
                nhwc(&shapes[*input]),
                p,
                (od.get(1), od.get(2)),
                max,
                out,
            );
            kernels::clamp(&mut out[..n_out], lo, hi);
        }
        (Op::GlobalAvgPool { input, .. }, _) => {
            kernels::global_avg(&bufs[*input], nhwc(&shapes[*input]), out);
            kernels::clamp(&mut out[..n_out], lo, hi);
        }
        (Op::Transpose { perm, input, .. }, _) => {
            kernels::transpose(&bufs[*input], &shapes[*input], perm, out, od)
        }
        (Op::Reshape { input, .. }, _) => out[..n_out].copy_from_slice(&bufs[*input][..n_out]),
        (
            Op::Pad {
                pre, value, input, ..
            },
            _,
        ) => kernels::pad(&bufs[*input], &shapes[*input], pre, *value, out, od),
        (Op::Slice { offsets, input, .. }, _) => {
            kernels::slice(&bufs[*input], &shapes[*input], offsets, out, od)
        }
        (Op::Concat { axis, inputs, .. }, _) => {
            let outer: usize = od.as_slice()[..*axis].iter().product();
            let inner: usize = od.as_slice()[*axis + 1..].iter().product();
            let orow = od.get(*axis) * inner;
            let mut off = 0;
            for &v in inputs {
                let chunk = shapes[v].get(*axis) * inner;
                let src = &bufs[v];
                for o in 0..outer {
                    out[o * orow + off..o * orow + off + chunk]
                        .copy_from_slice(&src[o * chunk..(o + 1) * chunk]);
                }
                off += chunk;
            }
        }
        (Op::ResizeBilinear { flags, input, .. }, _) => {
            // XNN_FLAG_TENSORFLOW_LEGACY_MODE = 4, XNN_FLAG_ALIGN_CORNERS = 8.
            kernels::resize_bilinear(
                &bufs[*input],
                nhwc(&shapes[*input]),
                (od.get(1), od.get(2)),
                flags & 8 != 0,
                flags & 4 != 0,
                out,
            );
        }
        (Op::Bmm { a, b, flags, .. }, _) => {
            let (da, db) = (shapes[*a], shapes[*b]);
            let r = od.rank();
            let (m, n) = (od.get(r - 2), od.get(r - 1));
            let k = da.get(da.rank() - 1);
            let batch: usize = od.as_slice()[..r - 2].iter().product();
            let ba: usize = da.as_slice()[..da.rank() - 2].iter().product();
            let bb: usize = db.as_slice()[..db.rank() - 2].iter().product();
            if (ba != batch && ba != 1) || (bb != batch && bb != 1) {
                return Err(XnnError::node(
                    s.index,
                    s.kind,
                    "only full or single-matrix batch broadcasting is supported",
                ));
            }
            let tb = flags & 1 != 0;
            for t in 0..batch {
                let ao = if ba == 1 { 0 } else { t * m * k };
                let bo = if bb == 1 { 0 } else { t * k * n };
                if m == 0 || n == 0 {
                    continue;
                }
                sgemm(GemmArgs {
                    m,
                    n,
                    k,
                    a: &bufs[*a][ao..],
                    lda: k,
                    a_trans: false,
                    b: &bufs[*b][bo..],
                    ldb: if tb { k } else { n },
                    b_trans: tb,
                    c: &mut out[t * m * n..],
                    ldc: n,
                    beta: 0.0,
                    alpha: 1.0,
                    bias: Bias::None,
                    act: act(lo, hi),
                });
            }
        }
        (op, _) => {
            return Err(XnnError::node(
                s.index,
                s.kind,
                format!("no compiled kernel for {op:?}"),
            ))
        }
    }
    Ok(())
}

impl DelegateHandle for XnnDelegate {
    fn execute(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        if !self.lent.is_empty() {
            return Err(KernelError::invalid(
                "this delegate's run buffers belong to its method's shared workspace: run it with execute_in",
            ));
        }
        self.run_call(ctx)
    }

    fn donate_workspace(&mut self) -> Vec<F32Buf> {
        if !self.lent.is_empty() {
            return Vec::new();
        }
        let mut homes: Vec<Home> = self.transient.iter().map(|&v| Home::Value(v)).collect();
        for h in [Home::Scratch, Home::QuantRows, Home::QuantParams] {
            if !self.home(h).is_empty() {
                homes.push(h);
            }
        }
        homes.sort_by_key(|&h| core::cmp::Reverse(self.home(h).len()));
        let mut out = Vec::with_capacity(homes.len());
        for h in homes {
            let b = core::mem::take(self.home(h));
            self.prepared = self.prepared.saturating_sub(b.len() * 4);
            self.lent.push((h, b.len()));
            out.push(b);
        }
        out
    }

    fn execute_in(&mut self, ctx: &KernelCtx<'_>, slots: &mut [F32Buf]) -> Result<(), KernelError> {
        if self.lent.is_empty() {
            return self.run_call(ctx);
        }
        let short = slots.len() < self.lent.len()
            || self
                .lent
                .iter()
                .zip(slots.iter())
                .any(|(&(_, n), s)| s.len() < n);
        if short {
            return Err(KernelError::invalid(
                "the method's shared workspace is smaller than what this delegate handed over",
            ));
        }
        self.swap_lent(slots);
        let res = self.run_call(ctx);
        self.swap_lent(slots);
        res
    }

    fn prepared_bytes(&self) -> usize {
        self.prepared
    }

    fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(|| vec![(0, 0); self.steps.len()]);
    }

    fn profile(&self) -> Vec<NodeProfile> {
        let Some(p) = &self.profile else {
            return Vec::new();
        };
        self.steps
            .iter()
            .zip(p)
            .filter(|(s, &(_, calls))| calls > 0 && !s.skip && !s.fused)
            .map(|(s, &(nanos, calls))| {
                let first = s.reads().first().map(|&i| self.shapes[i]);
                let path = match &s.prep {
                    Prep::Q8(_) => " int8",
                    Prep::Qd8Fc { .. } => " qd8",
                    Prep::ConvNhwc(_) => " nhwc",
                    // Multiplier 1 runs pteron_linalg::nhwc::depthwise_nhwc.
                    Prep::Dw { mult: 1, .. } => " nhwc",
                    Prep::PwDw(_) => " nhwc pointwise+depthwise fused",
                    Prep::ConvAdd(_) => " nhwc convolution+add fused",
                    Prep::PwDwPw(f) if f.residual.is_some() => {
                        " nhwc pointwise+depthwise+pointwise+add fused"
                    }
                    Prep::PwDwPw(_) => " nhwc pointwise+depthwise+pointwise fused",
                    _ => "",
                };
                let detail = match first {
                    Some(d) => format!("{d:?} -> {:?}{path}", self.shapes[s.op.out()]),
                    None => format!("-> {:?}{path}", self.shapes[s.op.out()]),
                };
                NodeProfile {
                    node: s.index,
                    kind: s.kind.to_string(),
                    detail,
                    calls,
                    nanos,
                }
            })
            .collect()
    }
}

impl XnnDelegate {
    fn home(&mut self, h: Home) -> &mut F32Buf {
        match h {
            Home::Value(v) => &mut self.bufs[v],
            Home::Scratch => &mut self.scratch,
            Home::QuantRows => &mut self.qa,
            Home::QuantParams => &mut self.qp,
        }
    }

    /// Swaps the lent buffers with their workspace slots (its own inverse).
    fn swap_lent(&mut self, slots: &mut [F32Buf]) {
        for (k, slot) in slots.iter_mut().enumerate().take(self.lent.len()) {
            let h = self.lent[k].0;
            core::mem::swap(self.home(h), slot);
        }
    }

    /// One delegate call: inputs in, the plan, outputs out.
    fn run_call(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        // 1. Input shapes (physical order) without borrowing data.
        let mut changed = false;
        for (k, e) in self.inputs.iter().enumerate() {
            let d = match ctx.value(e.arg)? {
                RtValue::Tensor(t) => {
                    let shape = t.shape();
                    let order = t.dim_order();
                    let mut phys = [0usize; 16];
                    let r = shape.rank();
                    for (j, &o) in order.as_slice().iter().enumerate().take(r) {
                        phys[j] = shape.dims().get(o as usize).copied().unwrap_or(1);
                    }
                    if r == e.graph_dims.rank() {
                        Dims::new(&phys[..r])
                            .ok_or_else(|| KernelError::invalid("rank too large"))?
                    } else if shape.numel() == e.graph_dims.numel() {
                        e.graph_dims
                    } else {
                        return Err(XnnError::Shape(format!(
                            "argument {} has shape {:?}, the graph expects {:?}",
                            e.arg,
                            shape.dims(),
                            e.graph_dims
                        ))
                        .into());
                    }
                }
                _ => {
                    return Err(KernelError::invalid(format!(
                        "argument {} is not a tensor",
                        e.arg
                    )))
                }
            };
            if d.numel() > self.cap[e.value] {
                return Err(XnnError::Shape(format!(
                    "argument {} of shape {:?} exceeds the planned bound",
                    e.arg, d
                ))
                .into());
            }
            if self.last_inputs[k] != d {
                self.last_inputs[k] = d;
                changed = true;
            }
            self.shapes[e.value] = d;
        }
        if changed {
            self.reinfer()?;
        }
        // 2. Outputs first (resized to their logical shapes), then inputs.
        let mut outs: [Option<pteron_runtime::TensorMut<'_>>; MAX_OUTPUTS] =
            core::array::from_fn(|_| None);
        for (k, e) in self.outputs.iter().enumerate() {
            let mut t = ctx.out(e.arg)?;
            let d = self.shapes[e.value];
            let order = t.dim_order();
            let r = t.dim();
            let mut logical = [0usize; 16];
            if r == d.rank() {
                for (j, &o) in order.as_slice().iter().enumerate().take(r) {
                    logical[o as usize] = d.get(j);
                }
                t.resize(&logical[..r])?;
            } else if t.numel() != d.numel() {
                return Err(XnnError::Shape(format!(
                    "output argument {} cannot hold {:?}",
                    e.arg, d
                ))
                .into());
            }
            if !dtype_ok(e.ty, t.dtype()) {
                return Err(KernelError::dtype(format!(
                    "output argument {} has dtype {}",
                    e.arg,
                    t.dtype()
                )));
            }
            outs[k] = Some(t);
        }
        for e in &self.inputs {
            let t = ctx.tensor(e.arg)?;
            let n = self.shapes[e.value].numel();
            let dst = &mut self.bufs[e.value][..n];
            let src = t.bytes();
            if src.len() < n * e.ty.size() {
                return Err(KernelError::invalid(format!(
                    "argument {} holds too few bytes",
                    e.arg
                )));
            }
            match e.ty {
                ExtType::F32 => {
                    for (d, c) in dst.iter_mut().zip(src.chunks_exact(4)) {
                        *d = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    }
                }
                ExtType::F16 => {
                    for (d, c) in dst.iter_mut().zip(src.chunks_exact(2)) {
                        *d = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
                    }
                }
                ExtType::I8 | ExtType::U8 => {
                    let (scale, zp) = match self.fq[e.value] {
                        Fq::Static { scale, zp, .. } => (scale, zp),
                        _ => (1.0, 0),
                    };
                    for (d, &b) in dst.iter_mut().zip(src) {
                        let q = if e.ty == ExtType::I8 {
                            b as i8 as i32
                        } else {
                            b as i32
                        };
                        *d = (q - zp) as f32 * scale;
                    }
                }
            }
            if let (Fq::Dynamic { .. }, false) = (self.fq[e.value], self.raw_dynamic[e.value]) {
                let d = self.shapes[e.value];
                apply_fq(self.fq[e.value], &mut self.bufs[e.value][..n], &d);
            }
        }
        // 3. The plan.
        self.run_steps()?;
        // 4. Results.
        for (k, e) in self.outputs.iter().enumerate() {
            let Some(t) = outs[k].as_mut() else { continue };
            let n = self.shapes[e.value].numel();
            let src = &self.bufs[e.value][..n];
            let dst = t.bytes_mut();
            match e.ty {
                ExtType::F32 => {
                    for (c, &v) in dst.chunks_exact_mut(4).zip(src) {
                        c.copy_from_slice(&v.to_le_bytes());
                    }
                }
                ExtType::F16 => {
                    for (c, &v) in dst.chunks_exact_mut(2).zip(src) {
                        c.copy_from_slice(&f32_to_f16(v).to_le_bytes());
                    }
                }
                ExtType::I8 | ExtType::U8 => {
                    let (scale, zp, qmin, qmax) = match self.fq[e.value] {
                        Fq::Static {
                            scale,
                            zp,
                            qmin,
                            qmax,
                        } => (scale, zp, qmin, qmax),
                        _ => (1.0, 0, -128, 127),
                    };
                    for (d, &v) in dst.iter_mut().zip(src) {
                        let q = ((v / scale).round_ties_even() as i32)
                            .saturating_add(zp)
                            .clamp(qmin, qmax);
                        *d = q as u8;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The `XnnpackBackend`.
pub struct XnnpackBackend;

impl pteron_runtime::Backend for XnnpackBackend {
    fn init(&self, ctx: &BackendInitCtx<'_, '_>) -> Result<Box<dyn DelegateHandle>, KernelError> {
        let g = graph::parse(ctx.payload, ctx.named_data)?;
        Ok(Box::new(XnnDelegate::compile(&g, &ctx.args)?))
    }
}

/// A zero-filled run buffer of `len` values (64-byte aligned, [`F32Buf`]), or a
/// typed error when the allocator refuses (a corrupted graph can declare absurd
/// sizes; never abort on them).
fn zeroed(len: usize, what: impl FnOnce() -> String) -> Result<F32Buf, XnnError> {
    F32Buf::try_zeroed(len).ok_or_else(|| XnnError::Alloc {
        what: what(),
        bytes: len as u128 * 4,
    })
}

#[cfg(test)]
mod half_tests {
    use super::round_to_f16;

    fn reference(x: f32) -> f32 {
        half::f16::from_f32(x).to_f32()
    }

    #[test]
    fn rounding_matches_the_half_crate() {
        // Every f16 value and the midpoints and near-midpoints around it.
        for h in 0..=u16::MAX {
            let v = half::f16::from_bits(h).to_f32();
            if v.is_nan() {
                assert!(round_to_f16(v).is_nan());
                continue;
            }
            let b = v.to_bits();
            for d in [-4097i64, -4096, -4095, -1, 0, 1, 4095, 4096, 4097] {
                let x = f32::from_bits((b as i64 + d).clamp(0, u32::MAX as i64) as u32);
                let (got, want) = (round_to_f16(x), reference(x));
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "{x:e} ({:#x}): {got:e} != {want:e}",
                    x.to_bits()
                );
            }
        }
        let mut s = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let x = f32::from_bits(s as u32);
            let (got, want) = (round_to_f16(x), reference(x));
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{x:e}: {got:e} != {want:e}"
            );
        }
    }
}

#[cfg(test)]
mod int4_tests {
    use super::int4_values;

    #[test]
    fn int4_values_unpacks_rows_low_nibble_first() {
        // Byte `i` holds nibbles (i % 16, (i * 7) % 16); the value is nibble - 8.
        let data: Vec<u8> = (0..64u32)
            .map(|i| (((i * 7 % 16) << 4) | (i % 16)) as u8)
            .collect();
        for (rows, row_len) in [(4usize, 6usize), (3, 7), (5, 1), (1, 13), (0, 5), (3, 0)] {
            let rb = row_len.div_ceil(2);
            let mut want = Vec::new();
            for r in 0..rows {
                for e in 0..row_len {
                    let b = data[r * rb + e / 2];
                    let nib = if e % 2 == 0 { b & 0xf } else { b >> 4 };
                    want.push(nib as i8 - 8);
                }
            }
            assert_eq!(
                int4_values(&data, rows, row_len),
                Some(want),
                "{rows}x{row_len}"
            );
        }
        assert_eq!(int4_values(&data[..5], 2, 6), None);
    }
}
