//! Parsing and verification of an XNNPACK payload: the `XH00` header, the
//! `XN00`/`XN01` FlatBuffer (`fb_xnnpack.XNNGraph`) and its constant data, into an
//! owned [`Graph`] whose every value id has been checked.

use pteron_format::fb::{Fb, Table, Vector};

use crate::error::XnnError;

/// `XNN_VALUE_FLAG_EXTERNAL_INPUT`.
pub const FLAG_EXTERNAL_INPUT: u32 = 1;
/// `XNN_VALUE_FLAG_EXTERNAL_OUTPUT`.
pub const FLAG_EXTERNAL_OUTPUT: u32 = 2;
/// An absent optional value id (`XNN_INVALID_VALUE_ID`).
pub const INVALID_ID: u32 = u32::MAX;
/// ExecuTorch's limit on external values.
pub const MAX_EXTERNS: u32 = 4096;
/// Largest rank accepted.
pub const MAX_DIMS: usize = 8;

/// `fb_xnnpack::XNNDatatype`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datatype {
    Invalid,
    Fp32,
    Fp16,
    QInt8,
    QUInt8,
    QInt32,
    QcInt8,
    QcInt32,
    QcInt4,
    QdInt8,
    QbInt4,
    QpInt8,
    Int32,
    Pfp32,
    Bf16,
}

impl Datatype {
    fn from_code(c: i16) -> Option<Datatype> {
        use Datatype::*;
        Some(match c {
            0 => Invalid,
            1 => Fp32,
            2 => Fp16,
            3 => QInt8,
            4 => QUInt8,
            5 => QInt32,
            6 => QcInt8,
            7 => QcInt32,
            8 => QcInt4,
            9 => QdInt8,
            10 => QbInt4,
            11 => QpInt8,
            12 => Int32,
            13 => Pfp32,
            14 => Bf16,
            _ => return None,
        })
    }
    /// Bytes of a constant of `numel` elements in this type (`None` when not storable).
    pub fn storage_bytes(self, numel: usize) -> Option<usize> {
        use Datatype::*;
        match self {
            Fp32 | QInt32 | QcInt32 | Int32 | Pfp32 => numel.checked_mul(4),
            Fp16 | Bf16 => numel.checked_mul(2),
            QInt8 | QUInt8 | QcInt8 | QdInt8 | QpInt8 => Some(numel),
            QcInt4 | QbInt4 => Some(numel.div_ceil(2)),
            Invalid => None,
        }
    }
    pub fn name(self) -> &'static str {
        use Datatype::*;
        match self {
            Invalid => "invalid",
            Fp32 => "fp32",
            Fp16 => "fp16",
            QInt8 => "qint8",
            QUInt8 => "quint8",
            QInt32 => "qint32",
            QcInt8 => "qcint8",
            QcInt32 => "qcint32",
            QcInt4 => "qcint4",
            QdInt8 => "qdint8",
            QbInt4 => "qbint4",
            QpInt8 => "qpint8",
            Int32 => "int32",
            Pfp32 => "pfp32",
            Bf16 => "bf16",
        }
    }
}

/// Quantization parameters of a value.
#[derive(Clone, Debug, PartialEq)]
pub enum Quant {
    None,
    PerTensor {
        scale: f32,
        zero_point: i32,
    },
    PerChannel {
        scales: Vec<f32>,
        channel_dim: usize,
    },
    PerToken {
        num_nonbatch_dims: usize,
    },
    /// Per-channel groups along the input dimension (`qbint4`); scales are rounded to bf16.
    Blockwise {
        scales: Vec<f32>,
        channel_dim: usize,
        group_size: usize,
    },
}

/// One value of the graph.
#[derive(Clone, Debug)]
pub struct Value<'d> {
    pub dtype: Datatype,
    pub dims: Vec<usize>,
    /// Constant bytes (exactly the size the dtype and dims need).
    pub data: Option<&'d [u8]>,
    /// `Some(i)`: external value bound to delegate argument `i`.
    pub external: Option<usize>,
    pub flags: u32,
    /// Runtime-schema `dq_datatype` (fp32 input quantized dynamically).
    pub dq_datatype: Datatype,
    pub quant: Quant,
}

impl Value<'_> {
    pub fn numel(&self) -> usize {
        self.dims.iter().product()
    }
    pub fn is_input(&self) -> bool {
        self.flags & FLAG_EXTERNAL_INPUT != 0
    }
    pub fn is_output(&self) -> bool {
        self.flags & FLAG_EXTERNAL_OUTPUT != 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Min,
    Max,
    Prelu,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnOp {
    Clamp,
    Sigmoid,
    Tanh,
    Gelu,
    Hardswish,
    Floor,
    Ceil,
    Sqrt,
    Rsqrt,
    Square,
    Neg,
    Abs,
    Exp,
    Log,
    Sin,
    Cos,
    LeakyRelu(f32),
    Elu(f32),
    Copy,
    Convert,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvParams {
    pub pad_top: usize,
    pub pad_right: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
    pub group_in: usize,
    pub group_out: usize,
    pub groups: usize,
    pub adj_h: usize,
    pub adj_w: usize,
}

impl ConvParams {
    /// The sliding window, as pteron-linalg's NHWC kernels take it.
    pub fn window(&self) -> pteron_linalg::nhwc::Window {
        pteron_linalg::nhwc::Window {
            kh: self.kh,
            kw: self.kw,
            stride: (self.sh, self.sw),
            dilation: (self.dh, self.dw),
            pad_top: self.pad_top,
            pad_left: self.pad_left,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolParams {
    pub pad_top: usize,
    pub pad_right: usize,
    pub pad_bottom: usize,
    pub pad_left: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub dh: usize,
    pub dw: usize,
}

impl PoolParams {
    /// The sliding window, as pteron-linalg's NHWC kernels take it.
    pub fn window(&self) -> pteron_linalg::nhwc::Window {
        pteron_linalg::nhwc::Window {
            kh: self.kh,
            kw: self.kw,
            stride: (self.sh, self.sw),
            dilation: (self.dh, self.dw),
            pad_top: self.pad_top,
            pad_left: self.pad_left,
        }
    }
}

/// A node's operation with its value ids (indices into [`Graph::values`]).
#[derive(Clone, Debug)]
pub enum Op {
    Binary {
        op: BinOp,
        a: usize,
        b: usize,
        out: usize,
    },
    Unary {
        op: UnOp,
        input: usize,
        out: usize,
    },
    Softmax {
        input: usize,
        out: usize,
    },
    FullyConnected {
        input: usize,
        filter: usize,
        bias: Option<usize>,
        out: usize,
        flags: u32,
    },
    Conv {
        p: ConvParams,
        depthwise: bool,
        input: usize,
        filter: usize,
        bias: Option<usize>,
        out: usize,
    },
    Deconv {
        p: ConvParams,
        input: usize,
        filter: usize,
        bias: Option<usize>,
        out: usize,
    },
    AvgPool {
        p: PoolParams,
        input: usize,
        out: usize,
    },
    MaxPool {
        p: PoolParams,
        input: usize,
        out: usize,
    },
    GlobalAvgPool {
        input: usize,
        out: usize,
    },
    Transpose {
        perm: Vec<usize>,
        input: usize,
        out: usize,
    },
    Reshape {
        new_shape: Vec<usize>,
        input: usize,
        out: usize,
    },
    Pad {
        pre: Vec<usize>,
        post: Vec<usize>,
        value: f32,
        input: usize,
        out: usize,
    },
    Slice {
        offsets: Vec<usize>,
        sizes: Vec<usize>,
        input: usize,
        out: usize,
    },
    Concat {
        axis: usize,
        inputs: Vec<usize>,
        out: usize,
    },
    ResizeBilinear {
        new_h: usize,
        new_w: usize,
        flags: u32,
        input: usize,
        out: usize,
    },
    Bmm {
        a: usize,
        b: usize,
        out: usize,
        flags: u32,
    },
}

impl Op {
    /// Input value ids (constants included).
    pub fn inputs(&self) -> Vec<usize> {
        match self {
            Op::Binary { a, b, .. } | Op::Bmm { a, b, .. } => vec![*a, *b],
            Op::FullyConnected {
                input,
                filter,
                bias,
                ..
            }
            | Op::Conv {
                input,
                filter,
                bias,
                ..
            }
            | Op::Deconv {
                input,
                filter,
                bias,
                ..
            } => {
                let mut v = vec![*input, *filter];
                v.extend(bias.iter().copied());
                v
            }
            Op::Concat { inputs, .. } => inputs.clone(),
            Op::Unary { input, .. }
            | Op::Softmax { input, .. }
            | Op::AvgPool { input, .. }
            | Op::MaxPool { input, .. }
            | Op::GlobalAvgPool { input, .. }
            | Op::Transpose { input, .. }
            | Op::Reshape { input, .. }
            | Op::Pad { input, .. }
            | Op::Slice { input, .. }
            | Op::ResizeBilinear { input, .. } => vec![*input],
        }
    }
    pub fn out(&self) -> usize {
        match self {
            Op::Binary { out, .. }
            | Op::Unary { out, .. }
            | Op::Softmax { out, .. }
            | Op::FullyConnected { out, .. }
            | Op::Conv { out, .. }
            | Op::Deconv { out, .. }
            | Op::AvgPool { out, .. }
            | Op::MaxPool { out, .. }
            | Op::GlobalAvgPool { out, .. }
            | Op::Transpose { out, .. }
            | Op::Reshape { out, .. }
            | Op::Pad { out, .. }
            | Op::Slice { out, .. }
            | Op::Concat { out, .. }
            | Op::ResizeBilinear { out, .. }
            | Op::Bmm { out, .. } => *out,
        }
    }
}

/// One node: its operation, the XNNPACK type name and the fused output clamp.
#[derive(Clone, Debug)]
pub struct Node {
    pub kind: &'static str,
    pub op: Op,
    pub min: f32,
    pub max: f32,
    pub debug_handle: u32,
}

/// A verified graph.
#[derive(Clone, Debug)]
pub struct Graph<'d> {
    pub version: String,
    pub values: Vec<Value<'d>>,
    pub nodes: Vec<Node>,
    pub num_externs: usize,
    /// `(value index, argument index)` of every external input, by argument index.
    pub inputs: Vec<(usize, usize)>,
    /// `(value index, argument index)` of every external output, by argument index.
    pub outputs: Vec<(usize, usize)>,
}

/// Union member names by `XNodeUnion` tag (1-based).
const NODE_NAMES: [&str; 47] = [
    "XNNAdd",
    "XNNFullyConnected",
    "XNNSoftmax",
    "XNNSigmoid",
    "XNNStaticTranspose",
    "XNNClamp",
    "XNNConv2d",
    "XNNDiv",
    "XNNStaticResizeBilinear2D",
    "XNNStaticConstantPad",
    "XNNAvgPooling2d",
    "XNNMinimum",
    "XNNDepthwiseConv2d",
    "XNNMaxPooling2d",
    "XNNMultiply",
    "XNNSubtract",
    "XNNFloor",
    "XNNConvert",
    "XNNGlobalAvgPooling2d",
    "XNNStaticReshape",
    "XNNArgMaxPooling2d",
    "XNNSquareRoot",
    "XNNCeiling",
    "XNNHardswish",
    "XNNLeakyReLU",
    "XNNMaximum",
    "XNNNegate",
    "XNNSquare",
    "XNNELU",
    "XNNAbs",
    "XNNPReLU",
    "XNNConcatenate2",
    "XNNConcatenate3",
    "XNNConcatenate4",
    "XNNStaticSlice",
    "XNNScaledDotProductAttention",
    "XNNBatchMatrixMultiply",
    "XNNConcatenate5",
    "XNNConvTranspose2d",
    "XNNReciprocalSquareRoot",
    "XNNLog",
    "XNNGelu",
    "XNNTanh",
    "XNNExp",
    "XNNSin",
    "XNNCopy",
    "XNNCos",
];

/// The regions of a processed blob.
struct Regions<'d> {
    flatbuffer: &'d [u8],
    constants: &'d [u8],
}

fn header(payload: &[u8]) -> Result<Regions<'_>, XnnError> {
    let h = |m: &str| XnnError::Header(m.to_string());
    if payload.len() >= 30 && &payload[4..8] == b"XH00" {
        let u16_at = |p: usize| u16::from_le_bytes([payload[p], payload[p + 1]]) as usize;
        let u32_at = |p: usize| {
            u32::from_le_bytes([payload[p], payload[p + 1], payload[p + 2], payload[p + 3]]) as u64
        };
        let u64_at = |p: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&payload[p..p + 8]);
            u64::from_le_bytes(b)
        };
        let hlen = u16_at(8);
        if hlen < 30 {
            return Err(XnnError::Header(format!("header length {hlen} below 30")));
        }
        let fb_off = u32_at(10);
        let fb_size = u32_at(14);
        let cd_off = u32_at(18);
        let cd_size = u64_at(22);
        let len = payload.len() as u64;
        if fb_size < 8 {
            return Err(h("flatbuffer_size below 8"));
        }
        let fb_end = fb_off
            .checked_add(fb_size)
            .ok_or_else(|| h("flatbuffer range overflows"))?;
        if fb_off < hlen as u64 || fb_end > len {
            return Err(XnnError::Header(format!(
                "flatbuffer region [{fb_off}, {fb_end}) outside the {len}-byte payload"
            )));
        }
        let cd_end = cd_off
            .checked_add(cd_size)
            .ok_or_else(|| h("constant data range overflows"))?;
        if cd_off < fb_end || cd_end > len {
            return Err(XnnError::Header(format!(
                "constant data region [{cd_off}, {cd_end}) must follow the flatbuffer (ends at {fb_end}) inside the {len}-byte payload (truncated?)"
            )));
        }
        Ok(Regions {
            flatbuffer: &payload[fb_off as usize..fb_end as usize],
            constants: &payload[cd_off as usize..cd_end as usize],
        })
    } else {
        if payload.len() >= 8 && &payload[4..8] == b"XH00" {
            return Err(h("payload shorter than the 30-byte header"));
        }
        // Legacy: a bare FlatBuffer.
        Ok(Regions {
            flatbuffer: payload,
            constants: &[],
        })
    }
}

fn f32_field(t: &Table<'_>, slot: usize, default: f32) -> Result<f32, pteron_format::fb::FbError> {
    match t.field(slot, 4)? {
        Some(p) => Ok(f32::from_bits(t.fb().u32(p)?)),
        None => Ok(default),
    }
}

fn i16_field(t: &Table<'_>, slot: usize, default: i16) -> Result<i16, pteron_format::fb::FbError> {
    match t.field(slot, 2)? {
        Some(p) => Ok(t.fb().u16(p)? as i16),
        None => Ok(default),
    }
}

fn u32_vec(fb: Fb<'_>, v: Option<Vector>) -> Result<Vec<u32>, pteron_format::fb::FbError> {
    match v {
        None => Ok(Vec::new()),
        Some(v) => (0..v.len).map(|i| fb.u32(v.pos(i, 4))).collect(),
    }
}

fn f32_vec(fb: Fb<'_>, v: Option<Vector>) -> Result<Vec<f32>, pteron_format::fb::FbError> {
    Ok(u32_vec(fb, v)?.into_iter().map(f32::from_bits).collect())
}

/// Rounds an f32 to the nearest bf16 (ties to even) and back.
pub fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if x.is_nan() {
        return x;
    }
    let r = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(r)
}

/// Parses and verifies a processed XNNPACK blob. `named_data` resolves named constants.
pub fn parse<'d>(
    payload: &'d [u8],
    named_data: &dyn Fn(&str) -> Option<&'d [u8]>,
) -> Result<Graph<'d>, XnnError> {
    let regions = header(payload)?;
    let buf = regions.flatbuffer;
    if buf.len() < 8 {
        return Err(XnnError::Header(format!(
            "flatbuffer of {} bytes is too short",
            buf.len()
        )));
    }
    let mut ident = [0u8; 4];
    ident.copy_from_slice(&buf[4..8]);
    if &ident != b"XN00" && &ident != b"XN01" {
        return Err(XnnError::Identifier(ident));
    }
    let fb = Fb::new(buf);
    let root = fb.root().map_err(XnnError::fb("root"))?;
    let version = root
        .string(0)
        .map_err(XnnError::fb("version"))?
        .unwrap_or("")
        .to_string();
    let num_externs = root.u32_or(3, 0).map_err(XnnError::fb("num_externs"))?;
    if num_externs > MAX_EXTERNS {
        return Err(XnnError::Args(format!(
            "num_externs {num_externs} exceeds {MAX_EXTERNS}"
        )));
    }
    let input_ids = u32_vec(fb, root.vector(4, 4).map_err(XnnError::fb("input_ids"))?)
        .map_err(XnnError::fb("input_ids"))?;
    let output_ids = u32_vec(fb, root.vector(5, 4).map_err(XnnError::fb("output_ids"))?)
        .map_err(XnnError::fb("output_ids"))?;

    // Constant tables: legacy inline buffers and constant_data offsets; index 0 is reserved.
    let legacy = root.vector(6, 4).map_err(XnnError::fb("constant_buffer"))?;
    let cdata = root.vector(8, 4).map_err(XnnError::fb("constant_data"))?;

    let resolve = |idx: usize, need: usize| -> Result<&'d [u8], XnnError> {
        let cerr = |msg: String| XnnError::Constant { index: idx, msg };
        let bytes: &'d [u8] = if let Some(cd) = cdata.filter(|v| v.len > 0) {
            if idx >= cd.len {
                return Err(cerr(format!("index out of range ({} entries)", cd.len)));
            }
            let at = format!("constant_data[{idx}]");
            let t = cd.table(fb, idx).map_err(XnnError::fb(at.clone()))?;
            let offset = t.u64_or(0, 0).map_err(XnnError::fb(at.clone()))?;
            let size = t.u64_or(1, 0).map_err(XnnError::fb(at.clone()))?;
            let key = t.string(2).map_err(XnnError::fb(at.clone()))?;
            match key {
                Some(k) if !k.is_empty() => {
                    let d = named_data(k).ok_or_else(|| {
                        cerr(format!(
                            "named data '{k}' not found in the program or its data files"
                        ))
                    })?;
                    if (d.len() as u64) < size {
                        return Err(cerr(format!(
                            "named data '{k}' has {} bytes, entry says {size}",
                            d.len()
                        )));
                    }
                    d
                }
                _ => {
                    let end = offset
                        .checked_add(size)
                        .ok_or_else(|| cerr("offset + size overflows".into()))?;
                    if end > regions.constants.len() as u64 {
                        return Err(cerr(format!(
                            "bytes [{offset}, {end}) lie outside the {}-byte constant region (truncated?)",
                            regions.constants.len()
                        )));
                    }
                    &regions.constants[offset as usize..end as usize]
                }
            }
        } else if let Some(lb) = legacy {
            if idx >= lb.len {
                return Err(cerr(format!(
                    "index out of range ({} legacy buffers)",
                    lb.len
                )));
            }
            let at = format!("constant_buffer[{idx}]");
            let t = lb.table(fb, idx).map_err(XnnError::fb(at.clone()))?;
            t.byte_vector(0)
                .map_err(XnnError::fb(at))?
                .map(|(_, b)| b)
                .unwrap_or(&[])
        } else {
            return Err(cerr("the graph has no constant table".into()));
        };
        if bytes.len() < need {
            return Err(cerr(format!(
                "{} bytes, the value needs {need} (truncated)",
                bytes.len()
            )));
        }
        Ok(&bytes[..need])
    };

    // Values.
    let xvalues = root.vector(2, 4).map_err(XnnError::fb("xvalues"))?;
    let nvals = xvalues.map_or(0, |v| v.len);
    let mut values: Vec<Value<'d>> = Vec::with_capacity(nvals);
    let mut id_map: Vec<(u32, usize)> = Vec::with_capacity(nvals);
    for i in 0..nvals {
        let at = format!("xvalues[{i}]");
        let verr = |msg: String| XnnError::Value { index: i, msg };
        let xv = xvalues
            .unwrap()
            .table(fb, i)
            .map_err(XnnError::fb(at.clone()))?;
        let tag = xv.u8_or(0, 0).map_err(XnnError::fb(at.clone()))?;
        let body = xv
            .table(1)
            .map_err(XnnError::fb(at.clone()))?
            .ok_or_else(|| verr("missing value union".into()))?;
        let (tv, quant_t, qtag) = match tag {
            1 => (body, None, 0u8),
            2 => {
                let tv = body
                    .table(0)
                    .map_err(XnnError::fb(at.clone()))?
                    .ok_or_else(|| verr("quantized value without tensor_value".into()))?;
                let qtag = body.u8_or(1, 0).map_err(XnnError::fb(at.clone()))?;
                let q = body.table(2).map_err(XnnError::fb(at.clone()))?;
                (tv, q, qtag)
            }
            t => return Err(verr(format!("unknown value union tag {t}"))),
        };
        let dcode = i16_field(&tv, 0, 0).map_err(XnnError::fb(at.clone()))?;
        let dtype =
            Datatype::from_code(dcode).ok_or_else(|| verr(format!("unknown datatype {dcode}")))?;
        let num_dims = tv.u32_or(1, 0).map_err(XnnError::fb(at.clone()))? as usize;
        let dims: Vec<usize> = u32_vec(fb, tv.vector(2, 4).map_err(XnnError::fb(at.clone()))?)
            .map_err(XnnError::fb(at.clone()))?
            .into_iter()
            .map(|d| d as usize)
            .collect();
        if dims.len() != num_dims {
            return Err(verr(format!("num_dims {num_dims} but {} dims", dims.len())));
        }
        if dims.len() > MAX_DIMS {
            return Err(verr(format!("rank {} exceeds {MAX_DIMS}", dims.len())));
        }
        let numel = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| verr("element count overflows".into()))?;
        let cidx = tv.u32_or(3, 0).map_err(XnnError::fb(at.clone()))? as usize;
        let external_id = tv.u32_or(4, 0).map_err(XnnError::fb(at.clone()))?;
        let flags = tv.u32_or(5, 0).map_err(XnnError::fb(at.clone()))?;
        let id_out = tv.u32_or(6, 0).map_err(XnnError::fb(at.clone()))?;
        let dq = i16_field(&tv, 7, 0).map_err(XnnError::fb(at.clone()))?;
        let dq_datatype =
            Datatype::from_code(dq).ok_or_else(|| verr(format!("unknown dq_datatype {dq}")))?;
        if flags & !(FLAG_EXTERNAL_INPUT | FLAG_EXTERNAL_OUTPUT) != 0 {
            return Err(verr(format!("unknown flags {flags:#x}")));
        }
        if dtype == Datatype::Invalid {
            return Err(verr("datatype invalid".into()));
        }
        let external = if flags != 0 {
            if external_id >= num_externs {
                return Err(verr(format!(
                    "external_id {external_id} >= num_externs {num_externs}"
                )));
            }
            Some(external_id as usize)
        } else {
            None
        };
        let data = if cidx != 0 {
            if external.is_some() {
                return Err(verr("an external value cannot be constant".into()));
            }
            let need = dtype
                .storage_bytes(numel)
                .ok_or_else(|| verr("constant of a non-storable type".into()))?;
            Some(resolve(cidx, need)?)
        } else {
            None
        };
        // Quantization parameters.
        let quant = match (quant_t, qtag) {
            (None, 0) if tag == 1 => Quant::None,
            (None, _) => return Err(verr("quantized value without quant_params".into())),
            (Some(q), 2) => {
                let scale = f32_field(&q, 0, 0.0).map_err(XnnError::fb(at.clone()))?;
                let zero_point = q.i32_or(1, 0).map_err(XnnError::fb(at.clone()))?;
                if !(scale.is_finite() && scale > 0.0) {
                    return Err(verr(format!(
                        "per-tensor scale {scale} is not a positive finite number"
                    )));
                }
                // XNNPACK's own range checks: 8-bit values need an 8-bit zero point.
                let zp_ok = match dtype {
                    Datatype::QInt8 => (-128..=127).contains(&zero_point),
                    Datatype::QUInt8 => (0..=255).contains(&zero_point),
                    _ => true,
                };
                if !zp_ok {
                    return Err(verr(format!(
                        "zero point {zero_point} is out of range for {dtype:?}"
                    )));
                }
                Quant::PerTensor { scale, zero_point }
            }
            (Some(q), 1) | (Some(q), 4) => {
                let channel_dim = q.i32_or(1, 0).map_err(XnnError::fb(at.clone()))?;
                let (group_size, sbi_slot, ns_slot) = if qtag == 4 {
                    (q.i32_or(2, 0).map_err(XnnError::fb(at.clone()))?, 4, 5)
                } else {
                    (0, 2, 3)
                };
                let sbi = q.u32_or(sbi_slot, 0).map_err(XnnError::fb(at.clone()))? as usize;
                let num_scales = q.u32_or(ns_slot, 0).map_err(XnnError::fb(at.clone()))? as usize;
                if channel_dim < 0 || channel_dim as usize >= dims.len() {
                    return Err(verr(format!(
                        "channel_dim {channel_dim} out of range for rank {}",
                        dims.len()
                    )));
                }
                let channel_dim = channel_dim as usize;
                let scales: Vec<f32> = if sbi != 0 {
                    // fp32 (per-channel) or bf16 (blockwise) scales in constant data.
                    if qtag == 4 {
                        let b = resolve(
                            sbi,
                            num_scales
                                .checked_mul(2)
                                .ok_or_else(|| verr("num_scales overflows".into()))?,
                        )?;
                        b.chunks_exact(2)
                            .map(|c| {
                                f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)
                            })
                            .collect()
                    } else {
                        let b = resolve(
                            sbi,
                            num_scales
                                .checked_mul(4)
                                .ok_or_else(|| verr("num_scales overflows".into()))?,
                        )?;
                        b.chunks_exact(4)
                            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                            .collect()
                    }
                } else {
                    let s = f32_vec(fb, q.vector(0, 4).map_err(XnnError::fb(at.clone()))?)
                        .map_err(XnnError::fb(at.clone()))?;
                    if qtag == 4 {
                        s.into_iter().map(round_bf16).collect()
                    } else {
                        s
                    }
                };
                if scales.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                    return Err(verr("a scale is not a positive finite number".into()));
                }
                if qtag == 1 {
                    if scales.len() != dims[channel_dim] {
                        return Err(verr(format!(
                            "per-channel quantization has {} scales for {} channels (dim {channel_dim})",
                            scales.len(),
                            dims[channel_dim]
                        )));
                    }
                    Quant::PerChannel {
                        scales,
                        channel_dim,
                    }
                } else {
                    if dims.len() != 2 || channel_dim != 0 {
                        return Err(verr("blockwise quantization needs a 2-D [out, in] weight with channel_dim 0".into()));
                    }
                    if group_size <= 0 || !dims[1].is_multiple_of(group_size as usize) {
                        return Err(verr(format!(
                            "group size {group_size} does not divide {}",
                            dims[1]
                        )));
                    }
                    let gs = group_size as usize;
                    if scales.len() != dims[0] * (dims[1] / gs) {
                        return Err(verr(format!(
                            "blockwise quantization has {} scales, expected {} (out {} x in {} / group {gs})",
                            scales.len(),
                            dims[0] * (dims[1] / gs),
                            dims[0],
                            dims[1]
                        )));
                    }
                    Quant::Blockwise {
                        scales,
                        channel_dim,
                        group_size: gs,
                    }
                }
            }
            (Some(q), 3) => {
                let n = q.i32_or(0, 0).map_err(XnnError::fb(at.clone()))?;
                if n < 0 || n as usize > dims.len() {
                    return Err(verr(format!("num_nonbatch_dims {n} out of range")));
                }
                if data.is_some() {
                    return Err(verr(
                        "a dynamically quantized value cannot be constant".into(),
                    ));
                }
                Quant::PerToken {
                    num_nonbatch_dims: n as usize,
                }
            }
            (Some(_), t) => return Err(verr(format!("unknown quant_params tag {t}"))),
        };
        if id_map.iter().any(|&(id, _)| id == id_out) {
            return Err(verr(format!("id_out {id_out} used twice")));
        }
        id_map.push((id_out, i));
        values.push(Value {
            dtype,
            dims,
            data,
            external,
            flags,
            dq_datatype,
            quant,
        });
    }
    id_map.sort_unstable();

    // Externals: each argument index used once, inputs before outputs.
    let mut inputs = Vec::new();
    let mut outputs = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if let Some(e) = v.external {
            if v.is_input() && v.is_output() {
                return Err(XnnError::Value {
                    index: i,
                    msg: "value flagged both external input and output".into(),
                });
            }
            if inputs.iter().chain(outputs.iter()).any(|&(_, a)| a == e) {
                return Err(XnnError::Value {
                    index: i,
                    msg: format!("external_id {e} used twice"),
                });
            }
            if v.is_input() {
                inputs.push((i, e));
            } else {
                outputs.push((i, e));
            }
        }
    }
    inputs.sort_by_key(|p| p.1);
    outputs.sort_by_key(|p| p.1);
    if inputs.len() + outputs.len() != num_externs as usize {
        return Err(XnnError::Args(format!(
            "{} external values, num_externs is {num_externs}",
            inputs.len() + outputs.len()
        )));
    }
    if let (Some(li), Some(fo)) = (inputs.last(), outputs.first()) {
        if li.1 > fo.1 {
            return Err(XnnError::Args(
                "external inputs must come before external outputs".into(),
            ));
        }
    }
    for (list, name, want) in [
        (&input_ids, "input_ids", &inputs),
        (&output_ids, "output_ids", &outputs),
    ] {
        if !list.is_empty() && list.len() != want.len() {
            return Err(XnnError::Args(format!(
                "{name} lists {} values, the graph flags {}",
                list.len(),
                want.len()
            )));
        }
    }

    // Nodes.
    let xnodes = root.vector(1, 4).map_err(XnnError::fb("xnodes"))?;
    let nnodes = xnodes.map_or(0, |v| v.len);
    let mut nodes = Vec::with_capacity(nnodes);
    for n in 0..nnodes {
        let at = format!("xnodes[{n}]");
        let xn = xnodes
            .unwrap()
            .table(fb, n)
            .map_err(XnnError::fb(at.clone()))?;
        let tag = xn.u8_or(0, 0).map_err(XnnError::fb(at.clone()))? as usize;
        if tag == 0 || tag > NODE_NAMES.len() {
            return Err(XnnError::node(
                n,
                "unknown",
                format!("node union tag {tag} is not a known XNNPACK node type"),
            ));
        }
        let kind = NODE_NAMES[tag - 1];
        let body = xn
            .table(1)
            .map_err(XnnError::fb(at.clone()))?
            .ok_or_else(|| XnnError::node(n, kind, "missing node payload"))?;
        let debug_handle = xn.u32_or(2, 0).map_err(XnnError::fb(at.clone()))?;
        let (min, max) = match xn.table(3).map_err(XnnError::fb(at.clone()))? {
            Some(mm) => (
                f32_field(&mm, 0, 0.0).map_err(XnnError::fb(at.clone()))?,
                f32_field(&mm, 1, 0.0).map_err(XnnError::fb(at.clone()))?,
            ),
            None => (f32::NEG_INFINITY, f32::INFINITY),
        };
        if min.is_nan() || max.is_nan() || min > max {
            return Err(XnnError::node(
                n,
                kind,
                format!("output range [{min}, {max}] is empty"),
            ));
        }
        let op = decode_node(fb, &body, tag, n, kind, &id_map, &at)?;
        nodes.push(Node {
            kind,
            op,
            min,
            max,
            debug_handle,
        });
    }
    Ok(Graph {
        version,
        values,
        nodes,
        num_externs: num_externs as usize,
        inputs,
        outputs,
    })
}

fn decode_node(
    fb: Fb<'_>,
    t: &Table<'_>,
    tag: usize,
    n: usize,
    kind: &'static str,
    id_map: &[(u32, usize)],
    at: &str,
) -> Result<Op, XnnError> {
    let u = |slot: usize| t.u32_or(slot, 0).map_err(XnnError::fb(at.to_string()));
    let id = |slot: usize, what: &str| -> Result<usize, XnnError> {
        let raw = u(slot)?;
        id_map
            .binary_search_by_key(&raw, |p| p.0)
            .map(|i| id_map[i].1)
            .map_err(|_| {
                XnnError::node(
                    n,
                    kind,
                    format!("{what} references value id {raw}, which does not exist"),
                )
            })
    };
    let opt_id = |slot: usize, what: &str| -> Result<Option<usize>, XnnError> {
        if u(slot)? == INVALID_ID {
            Ok(None)
        } else {
            id(slot, what).map(Some)
        }
    };
    let uvec = |slot: usize| -> Result<Vec<usize>, XnnError> {
        Ok(
            u32_vec(fb, t.vector(slot, 4).map_err(XnnError::fb(at.to_string()))?)
                .map_err(XnnError::fb(at.to_string()))?
                .into_iter()
                .map(|x| x as usize)
                .collect(),
        )
    };
    let bin = |op: BinOp| -> Result<Op, XnnError> {
        Ok(Op::Binary {
            op,
            a: id(0, "input1")?,
            b: id(1, "input2")?,
            out: id(2, "output")?,
        })
    };
    let un = |op: UnOp| -> Result<Op, XnnError> {
        Ok(Op::Unary {
            op,
            input: id(0, "input")?,
            out: id(1, "output")?,
        })
    };
    let conv_params = || -> Result<ConvParams, XnnError> {
        Ok(ConvParams {
            pad_top: u(0)? as usize,
            pad_right: u(1)? as usize,
            pad_bottom: u(2)? as usize,
            pad_left: u(3)? as usize,
            kh: u(4)? as usize,
            kw: u(5)? as usize,
            sh: u(6)? as usize,
            sw: u(7)? as usize,
            dh: u(8)? as usize,
            dw: u(9)? as usize,
            group_in: u(10)? as usize,
            group_out: u(11)? as usize,
            groups: u(12)? as usize,
            adj_h: u(13)? as usize,
            adj_w: u(14)? as usize,
        })
    };
    let pool_params = || -> Result<PoolParams, XnnError> {
        Ok(PoolParams {
            pad_top: u(0)? as usize,
            pad_right: u(1)? as usize,
            pad_bottom: u(2)? as usize,
            pad_left: u(3)? as usize,
            kh: u(4)? as usize,
            kw: u(5)? as usize,
            sh: u(6)? as usize,
            sw: u(7)? as usize,
            dh: u(8)? as usize,
            dw: u(9)? as usize,
        })
    };
    let f = |slot: usize| f32_field(t, slot, 0.0).map_err(XnnError::fb(at.to_string()));
    let unsupported = |msg: &str| XnnError::Unsupported {
        index: n,
        kind,
        msg: msg.to_string(),
    };
    Ok(match tag {
        1 => bin(BinOp::Add)?,
        2 => Op::FullyConnected {
            input: id(0, "input")?,
            filter: id(1, "filter")?,
            bias: opt_id(2, "bias")?,
            out: id(3, "output")?,
            flags: u(4)?,
        },
        3 => Op::Softmax {
            input: id(0, "input")?,
            out: id(1, "output")?,
        },
        4 => un(UnOp::Sigmoid)?,
        5 => Op::Transpose {
            perm: uvec(1)?,
            input: id(2, "input")?,
            out: id(3, "output")?,
        },
        6 => un(UnOp::Clamp)?,
        7 | 13 => Op::Conv {
            p: conv_params()?,
            depthwise: tag == 13,
            input: id(15, "input")?,
            filter: id(16, "filter")?,
            bias: opt_id(17, "bias")?,
            out: id(18, "output")?,
        },
        8 => bin(BinOp::Div)?,
        9 => Op::ResizeBilinear {
            new_h: u(0)? as usize,
            new_w: u(1)? as usize,
            input: id(2, "input")?,
            out: id(3, "output")?,
            flags: u(4)?,
        },
        10 => Op::Pad {
            pre: uvec(0)?,
            post: uvec(1)?,
            value: f(2)?,
            input: id(3, "input")?,
            out: id(4, "output")?,
        },
        11 => Op::AvgPool {
            p: pool_params()?,
            input: id(10, "input")?,
            out: id(11, "output")?,
        },
        12 => bin(BinOp::Min)?,
        14 => Op::MaxPool {
            p: pool_params()?,
            input: id(10, "input")?,
            out: id(11, "output")?,
        },
        15 => bin(BinOp::Mul)?,
        16 => bin(BinOp::Sub)?,
        17 => un(UnOp::Floor)?,
        18 => un(UnOp::Convert)?,
        19 => Op::GlobalAvgPool {
            input: id(0, "input")?,
            out: id(1, "output")?,
        },
        20 => Op::Reshape {
            new_shape: uvec(1)?,
            input: id(2, "input")?,
            out: id(3, "output")?,
        },
        21 => {
            return Err(unsupported(
                "argmax pooling (index output) is not implemented",
            ))
        }
        22 => un(UnOp::Sqrt)?,
        23 => un(UnOp::Ceil)?,
        24 => un(UnOp::Hardswish)?,
        25 => Op::Unary {
            op: UnOp::LeakyRelu(f(0)?),
            input: id(1, "input")?,
            out: id(2, "output")?,
        },
        26 => bin(BinOp::Max)?,
        27 => un(UnOp::Neg)?,
        28 => un(UnOp::Square)?,
        29 => Op::Unary {
            op: UnOp::Elu(f(0)?),
            input: id(1, "input")?,
            out: id(2, "output")?,
        },
        30 => un(UnOp::Abs)?,
        31 => bin(BinOp::Prelu)?,
        32 | 33 | 34 | 38 => {
            let count = match tag {
                32 => 2,
                33 => 3,
                34 => 4,
                _ => 5,
            };
            let slots = [1usize, 2, 3, 4, 7];
            let mut inputs = Vec::with_capacity(count);
            for (k, &s) in slots.iter().take(count).enumerate() {
                inputs.push(id(
                    s,
                    ["input1", "input2", "input3", "input4", "input5"][k],
                )?);
            }
            Op::Concat {
                axis: u(0)? as usize,
                inputs,
                out: id(5, "output")?,
            }
        }
        35 => Op::Slice {
            offsets: uvec(1)?,
            sizes: uvec(2)?,
            input: id(3, "input")?,
            out: id(4, "output")?,
        },
        36 => {
            return Err(unsupported(
                "scaled dot-product attention is not handled by the XNNPACK runtime either",
            ))
        }
        37 => Op::Bmm {
            a: id(0, "input1")?,
            b: id(1, "input2")?,
            out: id(2, "output")?,
            flags: u(3)?,
        },
        39 => Op::Deconv {
            p: conv_params()?,
            input: id(15, "input")?,
            filter: id(16, "filter")?,
            bias: opt_id(17, "bias")?,
            out: id(18, "output")?,
        },
        40 => un(UnOp::Rsqrt)?,
        41 => un(UnOp::Log)?,
        42 => un(UnOp::Gelu)?,
        43 => un(UnOp::Tanh)?,
        44 => un(UnOp::Exp)?,
        45 => un(UnOp::Sin)?,
        46 => un(UnOp::Copy)?,
        47 => un(UnOp::Cos)?,
        _ => return Err(XnnError::node(n, kind, "unknown node type")),
    })
}
