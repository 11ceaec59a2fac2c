//! Real int8 execution of static quantized nodes (PT2E `XNNPACKQuantizer` graphs).
//!
//! A node runs here when its activations are per-tensor `qint8`/`quint8` and, for
//! Conv2d/DepthwiseConv2d/FullyConnected, its filter is a constant `qcint8`
//! (per output channel) or `qint8` (per tensor, zero point 0) with an optional
//! constant `qint32`/`qcint32` bias. Supported: convolutions (dense, grouped,
//! depthwise), fully connected, Add (same shapes), Clamp and MaxPool (input and
//! output on the same grid). Everything else keeps the f32 emulation of `plan.rs`.
//!
//! Semantics follow XNNPACK: int32 accumulation, `fp32` requantization with
//! `input_scale · weight_scale[c] / output_scale` (rounded to nearest even,
//! saturated, output clamp quantized with `xnn_qs8_quantize`), and the `qs8`
//! add's fixed-point multipliers (`xnn_init_qs8_add_minmax_scalar_params`).
//!
//! Values produced here live in byte buffers (`Q8State::qbufs`). At the boundary
//! with the f32 path they are converted: an int8 node reading a value produced by
//! an f32 node (always on its grid there) quantizes it first (exact), and a value
//! produced here that an f32 node or an external output reads is dequantized into
//! its f32 buffer right after it is produced.

use pteron_linalg::nhwc::Window;
use pteron_linalg::{
    nchw_to_nhwc_u8, qadd, qconv2d_nhwc, qdwconv_nhwc, qgemm, qmaxpool_nhwc, quantize_q8,
    transpose_u8, PackedQDw, PackedQs8, QAddParams, QConvGeom, QOut,
};

use crate::error::XnnError;
use crate::graph::{BinOp, ConvParams, Datatype, Graph, Node, Op, PoolParams, Quant, UnOp, Value};
use crate::shape::Dims;

/// Per-tensor quantization of an activation.
#[derive(Clone, Copy, Debug, PartialEq)]
struct QMeta {
    scale: f32,
    zp: i32,
    unsigned: bool,
}

fn qmeta(v: &Value<'_>) -> Option<QMeta> {
    if v.data.is_some() {
        return None;
    }
    match (&v.quant, v.dtype) {
        (Quant::PerTensor { scale, zero_point }, Datatype::QInt8)
            if (-128..=127).contains(zero_point) =>
        {
            Some(QMeta {
                scale: *scale,
                zp: *zero_point,
                unsigned: false,
            })
        }
        (Quant::PerTensor { scale, zero_point }, Datatype::QUInt8)
            if (0..=255).contains(zero_point) =>
        {
            Some(QMeta {
                scale: *scale,
                zp: *zero_point,
                unsigned: true,
            })
        }
        _ => None,
    }
}

/// `xnn_qs8_quantize` / `xnn_qu8_quantize` of an output bound.
fn quantize_bound(v: f32, m: QMeta) -> i32 {
    let (lo, hi) = if m.unsigned {
        (0.0, 255.0)
    } else {
        (-128.0, 127.0)
    };
    let x = (v / m.scale + m.zp as f32).max(lo).min(hi);
    x.round_ties_even() as i32
}

fn qout(m: QMeta, lo: f32, hi: f32) -> Option<QOut> {
    QOut {
        zero_point: m.zp,
        min: quantize_bound(lo, m),
        max: quantize_bound(hi, m),
        unsigned: m.unsigned,
    }
    .checked()
}

/// Constant int8 weights with their per-channel (or single) scales.
fn weights<'a>(v: &'a Value<'_>, channel_dim: usize) -> Option<(&'a [u8], Vec<f32>)> {
    let data = v.data?;
    match (&v.quant, v.dtype) {
        (
            Quant::PerChannel {
                scales,
                channel_dim: cd,
            },
            Datatype::QcInt8,
        ) if *cd == channel_dim && scales.len() == *v.dims.get(channel_dim)? => {
            Some((data, scales.clone()))
        }
        (
            Quant::PerTensor {
                scale,
                zero_point: 0,
            },
            Datatype::QInt8,
        ) => Some((data, vec![*scale])),
        _ => None,
    }
}

/// Raw int32 bias values (`qint32` zero point 0 or `qcint32`).
fn bias_i32(g: &Graph<'_>, b: Option<usize>, n: usize) -> Option<Option<Vec<i32>>> {
    let Some(b) = b else { return Some(None) };
    let v = &g.values[b];
    let data = v.data?;
    let ok = matches!(
        (&v.quant, v.dtype),
        (Quant::PerChannel { .. }, Datatype::QcInt32)
            | (Quant::PerTensor { zero_point: 0, .. }, Datatype::QInt32)
    );
    if !ok || v.numel() != n || data.len() < n * 4 {
        return None;
    }
    Some(Some(
        data.chunks_exact(4)
            .take(n)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    ))
}

/// `input_scale · weight_scale[c] / output_scale`, as XNNPACK computes it; `None`
/// when XNNPACK would reject it (not in `(0, 256)`).
fn requant_scales(ins: f32, ws: &[f32], outs: f32) -> Option<Vec<f32>> {
    let s: Vec<f32> = ws.iter().map(|&w| ins * w / outs).collect();
    s.iter()
        .all(|&x| x > 0.0 && x < 256.0 && x.is_finite())
        .then_some(s)
}

fn as_i8(b: &[u8]) -> Vec<i8> {
    b.iter().map(|&x| x as i8).collect()
}

/// What an int8 step does.
enum Kind {
    Fc {
        packed: PackedQs8,
    },
    Conv {
        p: ConvParams,
        packed: Vec<PackedQs8>,
        pad: u8,
    },
    Dw {
        p: ConvParams,
        packed: PackedQDw,
    },
    Add {
        a_mul: i32,
        b_mul: i32,
        bias: i32,
        shift: u32,
        a_uns: bool,
        b_uns: bool,
        out: QOut,
    },
    Clamp {
        out: QOut,
    },
    MaxPool {
        p: PoolParams,
        out: QOut,
    },
    /// Convert of a plain f32 value (`input`, read from the f32 buffers) to int8:
    /// `round_even(clamp(x / scale, qmin - zp, qmax - zp)) + zp`, the value the f32
    /// path's fake quantization puts on the grid.
    Quantize {
        input: usize,
        m: QMeta,
    },
    /// Transpose of an int8 value (input and output on the same grid).
    Transpose {
        perm: [usize; 8],
    },
    /// A clamp fused into its producer.
    Nop,
}

/// A prepared int8 step (held by `plan::Prep::Q8`).
pub(crate) struct QPrep {
    kind: Kind,
    ins: [usize; 2],
    nin: usize,
    out: usize,
    bytes: usize,
}

impl QPrep {
    /// Bytes allocated for packed weights.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Int8 steps compiled so far in this process (diagnostics and tests).
static INT8_STEPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many nodes every delegate compiled so far in this process runs in real int8
/// (fused clamps included).
pub fn int8_steps_compiled() -> usize {
    INT8_STEPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Returns the int8 preparation of `node` if it can run in int8, else `None`
/// (the caller keeps the f32 path). Errors only for malformed constants.
pub(crate) fn prepare(
    g: &Graph<'_>,
    node: &Node,
    shapes: &[Dims],
) -> Result<Option<QPrep>, XnnError> {
    let r = prepare_inner(g, node, shapes)?;
    if r.is_some() {
        INT8_STEPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(r)
}

fn prepare_inner(g: &Graph<'_>, node: &Node, shapes: &[Dims]) -> Result<Option<QPrep>, XnnError> {
    let meta = |v: usize| g.values.get(v).and_then(qmeta);
    let mk = |kind: Kind, ins: &[usize], out: usize, bytes: usize| {
        let mut a = [0usize; 2];
        a[..ins.len()].copy_from_slice(ins);
        Some(QPrep {
            kind,
            ins: a,
            nin: ins.len(),
            out,
            bytes,
        })
    };
    let r = match &node.op {
        Op::Conv {
            p,
            depthwise,
            input,
            filter,
            bias,
            out,
        } => {
            let (Some(im), Some(om)) = (meta(*input), meta(*out)) else {
                return Ok(None);
            };
            let Some(q) = qout(om, node.min, node.max) else {
                return Ok(None);
            };
            let fv = &g.values[*filter];
            let cout = p.groups * p.group_out;
            let taps = p.kh * p.kw;
            let dw_layout = *depthwise && p.group_in == 1 && p.group_out == 1;
            let grouped_dw = !*depthwise
                && p.groups > 1
                && p.group_in == 1
                && p.group_out == 1
                && fv.dims == [cout, p.kh, p.kw, 1];
            let Some(b) = bias_i32(g, *bias, cout) else {
                return Ok(None);
            };
            if dw_layout || grouped_dw {
                let cd = if dw_layout { 3 } else { 0 };
                if dw_layout && fv.dims != [1, p.kh, p.kw, cout] {
                    return Ok(None);
                }
                let Some((w, ws)) = weights(fv, cd) else {
                    return Ok(None);
                };
                if w.len() < taps * cout || taps > 81 {
                    return Ok(None);
                }
                let Some(s) = requant_scales(im.scale, &ws, om.scale) else {
                    return Ok(None);
                };
                let w8 = if dw_layout {
                    as_i8(&w[..taps * cout])
                } else {
                    let mut t = vec![0i8; taps * cout];
                    for c in 0..cout {
                        for k in 0..taps {
                            t[k * cout + c] = w[c * taps + k] as i8;
                        }
                    }
                    t
                };
                let packed =
                    PackedQDw::new(taps, cout, &w8, b.as_deref(), im.zp, im.unsigned, &s, q);
                let bytes = packed.bytes();
                mk(Kind::Dw { p: *p, packed }, &[*input], *out, bytes)
            } else if !*depthwise {
                if fv.dims != [cout, p.kh, p.kw, p.group_in] {
                    return Ok(None);
                }
                let Some((w, ws)) = weights(fv, 0) else {
                    return Ok(None);
                };
                let k = taps * p.group_in;
                if w.len() < cout * k {
                    return Ok(None);
                }
                let Some(s) = requant_scales(im.scale, &ws, om.scale) else {
                    return Ok(None);
                };
                let w8 = as_i8(&w[..cout * k]);
                let og = p.group_out;
                let packed: Vec<PackedQs8> = (0..p.groups)
                    .map(|gi| {
                        let sc = if s.len() == 1 {
                            &s[..]
                        } else {
                            &s[gi * og..(gi + 1) * og]
                        };
                        let pk = PackedQs8::new(
                            k,
                            og,
                            &w8[gi * og * k..],
                            k,
                            b.as_ref().map(|b| &b[gi * og..(gi + 1) * og]),
                            im.zp,
                            im.unsigned,
                            sc,
                            q,
                        );
                        if p.groups == 1 {
                            pk.with_conv_taps(p.group_in, p.kw)
                        } else {
                            pk
                        }
                    })
                    .collect();
                let bytes = packed.iter().map(PackedQs8::bytes).sum();
                mk(
                    Kind::Conv {
                        p: *p,
                        packed,
                        pad: im.zp as u8,
                    },
                    &[*input],
                    *out,
                    bytes,
                )
            } else {
                None
            }
        }
        Op::FullyConnected {
            input,
            filter,
            bias,
            out,
            flags,
        } => {
            let (Some(im), Some(om)) = (meta(*input), meta(*out)) else {
                return Ok(None);
            };
            let Some(q) = qout(om, node.min, node.max) else {
                return Ok(None);
            };
            let fv = &g.values[*filter];
            if flags & 1 != 0 || fv.dims.len() != 2 {
                return Ok(None);
            }
            let (n, k) = (fv.dims[0], fv.dims[1]);
            let Some((w, ws)) = weights(fv, 0) else {
                return Ok(None);
            };
            if w.len() < n * k || shapes[*input].rank() == 0 {
                return Ok(None);
            }
            let id = shapes[*input];
            if id.get(id.rank() - 1) != k {
                return Ok(None);
            }
            let Some(b) = bias_i32(g, *bias, n) else {
                return Ok(None);
            };
            let Some(s) = requant_scales(im.scale, &ws, om.scale) else {
                return Ok(None);
            };
            let packed = PackedQs8::new(
                k,
                n,
                &as_i8(&w[..n * k]),
                k,
                b.as_deref(),
                im.zp,
                im.unsigned,
                &s,
                q,
            );
            let bytes = packed.bytes();
            mk(Kind::Fc { packed }, &[*input], *out, bytes)
        }
        Op::Binary {
            op: BinOp::Add,
            a,
            b,
            out,
        } => {
            let (Some(am), Some(bm), Some(om)) = (meta(*a), meta(*b), meta(*out)) else {
                return Ok(None);
            };
            if g.values[*a].dims != g.values[*out].dims
                || g.values[*b].dims != g.values[*out].dims
                || am.unsigned != om.unsigned
                || bm.unsigned != om.unsigned
            {
                return Ok(None);
            }
            let Some(q) = qout(om, node.min, node.max) else {
                return Ok(None);
            };
            let Some((a_mul, b_mul, bias, shift)) = add_params(am, bm, om) else {
                return Ok(None);
            };
            mk(
                Kind::Add {
                    a_mul,
                    b_mul,
                    bias,
                    shift,
                    a_uns: am.unsigned,
                    b_uns: bm.unsigned,
                    out: q,
                },
                &[*a, *b],
                *out,
                0,
            )
        }
        Op::Unary {
            op: UnOp::Clamp,
            input,
            out,
        } => {
            let (Some(im), Some(om)) = (meta(*input), meta(*out)) else {
                return Ok(None);
            };
            if im != om {
                return Ok(None);
            }
            let Some(q) = qout(om, node.min, node.max) else {
                return Ok(None);
            };
            mk(Kind::Clamp { out: q }, &[*input], *out, 0)
        }
        Op::Unary {
            op: UnOp::Convert,
            input,
            out,
        } => {
            let iv = &g.values[*input];
            let plain_f32 = iv.dtype == Datatype::Fp32
                && matches!(iv.quant, Quant::None)
                && iv.data.is_none()
                && !matches!(iv.dq_datatype, Datatype::QInt8 | Datatype::QdInt8);
            match meta(*out) {
                Some(m) if plain_f32 => mk(Kind::Quantize { input: *input, m }, &[], *out, 0),
                _ => None,
            }
        }
        Op::Transpose { perm, input, out } => {
            let (Some(im), Some(om)) = (meta(*input), meta(*out)) else {
                return Ok(None);
            };
            let r = perm.len();
            let mut seen = [false; 8];
            let valid = (1..=8).contains(&r)
                && r == shapes[*input].rank()
                && perm
                    .iter()
                    .all(|&p| p < r && !std::mem::replace(&mut seen[p], true));
            if im != om || !valid || node.min > f32::MIN || node.max < f32::MAX {
                return Ok(None);
            }
            let mut pa = [0usize; 8];
            pa[..r].copy_from_slice(perm);
            mk(Kind::Transpose { perm: pa }, &[*input], *out, 0)
        }
        Op::MaxPool { p, input, out } => {
            let (Some(im), Some(om)) = (meta(*input), meta(*out)) else {
                return Ok(None);
            };
            if im != om || shapes[*input].rank() != 4 {
                return Ok(None);
            }
            let Some(q) = qout(om, node.min, node.max) else {
                return Ok(None);
            };
            mk(Kind::MaxPool { p: *p, out: q }, &[*input], *out, 0)
        }
        _ => None,
    };
    Ok(r)
}

/// Fuses each int8 Clamp into the int8 Conv/FC/Add producing its input when that
/// value has no other reader and is not an external output (as XNNPACK's subgraph
/// fusion does): the producer writes the clamp's output with the intersected
/// range, and the clamp becomes a no-op. `inputs[i]` are step `i`'s inputs.
pub(crate) fn fuse_clamps(
    steps: &mut [Option<&mut QPrep>],
    inputs: &[Vec<usize>],
    outputs: &[usize],
    num_values: usize,
) {
    let mut readers = vec![0usize; num_values];
    for ins in inputs {
        for &i in ins {
            if let Some(r) = readers.get_mut(i) {
                *r += 1;
            }
        }
    }
    for &o in outputs {
        if let Some(r) = readers.get_mut(o) {
            *r += 1;
        }
    }
    for i in 0..steps.len() {
        let (v, out, qc) = match &steps[i] {
            Some(QPrep {
                kind: Kind::Clamp { out: qc },
                ins,
                out,
                ..
            }) => (ins[0], *out, *qc),
            _ => continue,
        };
        if readers.get(v) != Some(&1) {
            continue;
        }
        let Some(j) = (0..i)
            .rev()
            .find(|&j| matches!(&steps[j], Some(p) if p.out == v))
        else {
            continue;
        };
        let Some(prod) = steps[j].as_deref_mut() else {
            continue;
        };
        let cur = match &prod.kind {
            Kind::Fc { packed } => packed.out(),
            Kind::Conv { packed, .. } => match packed.first() {
                Some(p) => p.out(),
                None => continue,
            },
            Kind::Dw { packed, .. } => packed.out(),
            Kind::Add { out, .. } => *out,
            _ => continue,
        };
        let Some(fused) = (QOut {
            min: cur.min.max(qc.min),
            max: cur.max.min(qc.max),
            ..cur
        })
        .checked() else {
            continue;
        };
        match &mut prod.kind {
            Kind::Fc { packed } => packed.set_out(fused),
            Kind::Conv { packed, .. } => packed.iter_mut().for_each(|p| p.set_out(fused)),
            Kind::Dw { packed, .. } => packed.set_out(fused),
            Kind::Add { out, .. } => *out = fused,
            _ => continue,
        }
        prod.out = out;
        if let Some(c) = steps[i].as_deref_mut() {
            c.kind = Kind::Nop;
            c.nin = 0;
        }
    }
}

/// XNNPACK's `qs8` add parameters: multipliers, bias (with the rounding term and
/// the zero points folded in) and shift; `None` outside XNNPACK's supported range.
fn add_params(a: QMeta, b: QMeta, o: QMeta) -> Option<(i32, i32, i32, u32)> {
    let ra = a.scale / o.scale;
    let rb = b.scale / o.scale;
    let max = ra.max(rb);
    let lo = 1.0f32 / 1024.0;
    if !(ra >= lo && rb >= lo && ra < 256.0 && rb < 256.0) {
        return None;
    }
    let exp = ((max.to_bits() >> 23) as i32) - 127;
    let shift = 20 - exp;
    if !(12..=30).contains(&shift) {
        return None;
    }
    let scaled = |r: f32| -> i32 {
        // Adds `shift` to the exponent (exact), then rounds like lrintf.
        f32::from_bits(r.to_bits() + ((shift as u32) << 23)).round_ties_even() as i32
    };
    let (am, bm) = (scaled(ra), scaled(rb));
    let rounding = 1i32 << (shift - 1);
    let bias = rounding
        .wrapping_sub(am.wrapping_mul(a.zp))
        .wrapping_sub(bm.wrapping_mul(b.zp));
    Some((am, bm, bias, shift as u32))
}

/// The int8 kernels' geometry of a sliding window (convolution or pooling) from
/// NHWC input dims `id` and output dims `od`.
fn geom(w: Window, id: &Dims, od: &Dims) -> QConvGeom {
    QConvGeom {
        batch: id.get(0),
        in_h: id.get(1),
        in_w: id.get(2),
        in_c: id.get(3),
        out_h: od.get(1),
        out_w: od.get(2),
        kh: w.kh,
        kw: w.kw,
        sh: w.stride.0.max(1),
        sw: w.stride.1.max(1),
        dh: w.dilation.0.max(1),
        dw: w.dilation.1.max(1),
        pad_top: w.pad_top,
        pad_left: w.pad_left,
    }
}

/// Int8 buffers and conversion bookkeeping of one delegate.
pub(crate) struct Q8State {
    qbufs: Vec<Vec<u8>>,
    meta: Vec<Option<QMeta>>,
    /// Produced by an int8 step (its bytes are authoritative).
    q_src: Vec<bool>,
    /// Read by an f32 step or an external output: dequantize after production.
    need_f: Vec<bool>,
    /// Per step, `(lender, output)`: the int8 output takes over the byte buffer of
    /// a value no later step reads (as the f32 buffers do, `bufplan`), so a network
    /// cycles through a few warm buffers instead of writing a cold one per layer.
    borrow: Vec<Option<(usize, usize)>>,
    bytes: usize,
}

impl Q8State {
    /// `steps`: per step, `Some(prep)` for int8 steps, with the step's inputs.
    pub(crate) fn new(
        g: &Graph<'_>,
        shapes: &[Dims],
        steps: &[(Option<&QPrep>, Vec<usize>)],
        outputs: &[usize],
    ) -> Result<Q8State, XnnError> {
        let nv = g.values.len();
        let meta: Vec<Option<QMeta>> = g.values.iter().map(qmeta).collect();
        let mut q_src = vec![false; nv];
        let mut need_q = vec![false; nv];
        let mut need_f = vec![false; nv];
        for (q, ins) in steps {
            match q {
                // A clamp fused into its producer became a no-op: the producer
                // writes the clamp's output, and the value between them is unused.
                Some(QPrep {
                    kind: Kind::Nop, ..
                }) => {}
                Some(q) => {
                    q_src[q.out] = true;
                    for &i in &q.ins[..q.nin] {
                        need_q[i] = true;
                    }
                }
                None => {
                    for &i in ins {
                        need_f[i] = true;
                    }
                }
            }
        }
        for &o in outputs {
            need_f[o] = true;
        }
        let lens: Vec<usize> = (0..nv)
            .map(|v| {
                if q_src[v] || need_q[v] {
                    shapes[v].numel().max(g.values[v].numel()).max(1)
                } else {
                    0
                }
            })
            .collect();
        // Sharing: values that int8 steps alone write and read. Values quantized
        // from the f32 side (written by their reader) and external outputs keep
        // their own buffers.
        let mut reads = vec![Vec::new(); steps.len()];
        let mut writes = vec![None; steps.len()];
        let mut shareable: Vec<bool> = lens.iter().map(|&n| n > 0).collect();
        for &o in outputs {
            shareable[o] = false;
        }
        for (si, (q, _)) in steps.iter().enumerate() {
            let Some(q) = q.filter(|q| !matches!(q.kind, Kind::Nop)) else {
                continue;
            };
            for &i in &q.ins[..q.nin] {
                reads[si].push(i);
                if !q_src[i] {
                    shareable[i] = false;
                }
            }
            writes[si] = Some(q.out);
        }
        let plan = crate::bufplan::plan(&reads, &writes, &lens, &shareable);
        let borrow: Vec<Option<(usize, usize)>> = plan
            .iter()
            .zip(&writes)
            .map(|(b, w)| Some(((*b)?, (*w)?)))
            .collect();
        // Outputs that borrow a buffer need none of their own.
        let mut borrows = vec![false; nv];
        for &(_, o) in borrow.iter().flatten() {
            borrows[o] = true;
        }
        let mut bytes = 0;
        let qbufs = (0..nv)
            .map(|v| {
                if lens[v] > 0 && !borrows[v] {
                    bytes += lens[v];
                    // Sizes come from the graph: refuse absurd ones with a typed
                    // error, never abort.
                    pteron_runtime::try_zeroed_vec(lens[v]).ok_or_else(|| XnnError::Alloc {
                        what: format!("int8 value {v}"),
                        bytes: lens[v] as u128,
                    })
                } else {
                    Ok(Vec::new())
                }
            })
            .collect::<Result<_, _>>()?;
        Ok(Q8State {
            qbufs,
            meta,
            q_src,
            need_f,
            borrow,
            bytes,
        })
    }

    /// Before int8 step `si` runs (and again in reverse step order after the run,
    /// to put every buffer home): swaps its output's slot with the slot whose
    /// buffer it borrows.
    pub(crate) fn swap_borrowed(&mut self, si: usize) {
        if let Some(Some((d, o))) = self.borrow.get(si) {
            self.qbufs.swap(*d, *o);
        }
    }

    /// Bytes allocated at init.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

fn quantize_into(src: &[f32], m: QMeta, dst: &mut [u8]) {
    let q = if m.unsigned {
        QOut {
            zero_point: m.zp,
            min: 0,
            max: 255,
            unsigned: true,
        }
    } else {
        QOut::qs8(m.zp)
    };
    // The f32 path's fake quantization (`x · (1 / scale)`, clamp, round ties to
    // even), NaN to the zero point.
    quantize_q8(src, 1.0 / m.scale, q, dst);
}

fn dequantize_into(src: &[u8], m: QMeta, dst: &mut [f32]) {
    if m.unsigned {
        for (d, &b) in dst.iter_mut().zip(src) {
            *d = (b as i32 - m.zp) as f32 * m.scale;
        }
    } else {
        for (d, &b) in dst.iter_mut().zip(src) {
            *d = (b as i8 as i32 - m.zp) as f32 * m.scale;
        }
    }
}

fn nhwc(d: &Dims) -> Option<(usize, usize, usize, usize)> {
    (d.rank() == 4).then(|| (d.get(0), d.get(1), d.get(2), d.get(3)))
}

/// Runs one int8 step.
pub(crate) fn run(
    q: &QPrep,
    index: usize,
    kind: &'static str,
    st: &mut Q8State,
    bufs: &mut [pteron_runtime::F32Buf],
    shapes: &[Dims],
) -> Result<(), XnnError> {
    if let Kind::Nop = q.kind {
        return Ok(());
    }
    let err = |m: &str| XnnError::node(index, kind, m.to_string());
    // Inputs produced on the f32 side: quantize them (exactly: they are on the grid).
    for &i in &q.ins[..q.nin] {
        if !st.q_src[i] {
            let m = st.meta[i].ok_or_else(|| err("int8 input without quantization"))?;
            let n = shapes[i].numel();
            if n > st.qbufs[i].len() || n > bufs[i].len() {
                return Err(err("input exceeds its planned buffer"));
            }
            quantize_into(&bufs[i][..n], m, &mut st.qbufs[i][..n]);
        }
    }
    let od = shapes[q.out];
    let n_out = od.numel();
    let mut ob = core::mem::take(&mut st.qbufs[q.out]);
    let res = (|| -> Result<(), XnnError> {
        if n_out > ob.len() {
            return Err(err("output exceeds its planned buffer"));
        }
        let out = &mut ob[..n_out];
        if let Kind::Quantize { input, m } = q.kind {
            if shapes[input].numel() != n_out || bufs[input].len() < n_out {
                return Err(err("convert shapes differ"));
            }
            quantize_into(&bufs[input][..n_out], m, out);
            return Ok(());
        }
        let x = &st.qbufs[q.ins[0]];
        let id = shapes[q.ins[0]];
        match &q.kind {
            Kind::Fc { packed } => {
                let k = packed.k();
                let m = id.numel() / k.max(1);
                if m * k != id.numel() || m * packed.n() != n_out {
                    return Err(err("fully connected shapes do not match the filter"));
                }
                qgemm(m, x, k, packed, out, packed.n());
            }
            Kind::Conv { p, packed, pad } => {
                let (Some(_), Some(_)) = (nhwc(&id), nhwc(&od)) else {
                    return Err(err("convolution needs 4-d NHWC values"));
                };
                let g = geom(p.window(), &id, &od);
                if g.in_c != p.groups * p.group_in || od.get(3) != p.groups * p.group_out {
                    return Err(err("convolution channels do not match the filter"));
                }
                if x.len() < id.numel() {
                    return Err(err("input exceeds its buffer"));
                }
                qconv2d_nhwc(&g, x, packed, *pad, out);
            }
            Kind::Dw { p, packed } => {
                let (Some(_), Some(_)) = (nhwc(&id), nhwc(&od)) else {
                    return Err(err("convolution needs 4-d NHWC values"));
                };
                let g = geom(p.window(), &id, &od);
                if g.in_c != p.groups || od.get(3) != p.groups || x.len() < id.numel() {
                    return Err(err("depthwise channels do not match the filter"));
                }
                qdwconv_nhwc(&g, x, packed, out);
            }
            Kind::Add {
                a_mul,
                b_mul,
                bias,
                shift,
                a_uns,
                b_uns,
                out: qo,
            } => {
                let y = &st.qbufs[q.ins[1]];
                if id.numel() != n_out || shapes[q.ins[1]].numel() != n_out {
                    return Err(err("int8 add needs equal shapes"));
                }
                let params = QAddParams {
                    a_mul: *a_mul,
                    b_mul: *b_mul,
                    bias: *bias,
                    shift: *shift,
                    a_unsigned: *a_uns,
                    b_unsigned: *b_uns,
                    out: *qo,
                };
                if x.len() < n_out || y.len() < n_out {
                    return Err(err("add input exceeds its buffer"));
                }
                qadd(&x[..n_out], &y[..n_out], &params, out);
            }
            Kind::Clamp { out: qo } => {
                if id.numel() != n_out {
                    return Err(err("clamp shapes differ"));
                }
                if qo.unsigned {
                    let (lo, hi) = (qo.min as u8, qo.max as u8);
                    for (o, &v) in out.iter_mut().zip(&x[..n_out]) {
                        *o = v.clamp(lo, hi);
                    }
                } else {
                    let (lo, hi) = (qo.min as i8, qo.max as i8);
                    for (o, &v) in out.iter_mut().zip(&x[..n_out]) {
                        *o = (v as i8).clamp(lo, hi) as u8;
                    }
                }
            }
            Kind::Nop | Kind::Quantize { .. } => {}
            Kind::Transpose { perm } => {
                if id.numel() != n_out || x.len() < n_out || id.rank() != od.rank() {
                    return Err(err("transpose shapes differ"));
                }
                transpose_q8(&x[..n_out], &id, &perm[..id.rank()], out, &od);
            }
            Kind::MaxPool { p, out: qo } => {
                let (Some(i4), Some(o4)) = (nhwc(&id), nhwc(&od)) else {
                    return Err(err("max pooling needs 4-d NHWC values"));
                };
                if x.len() < id.numel() {
                    return Err(err("input exceeds its buffer"));
                }
                let g = geom(p.window(), &id, &od);
                if o4.0 != i4.0 || o4.3 != i4.3 {
                    return Err(err("max pooling shapes do not match"));
                }
                qmaxpool_nhwc(&g, x, *qo, out);
            }
        }
        Ok(())
    })();
    st.qbufs[q.out] = ob;
    res?;
    if st.need_f[q.out] {
        let m = st.meta[q.out].ok_or_else(|| err("int8 output without quantization"))?;
        if n_out > bufs[q.out].len() {
            return Err(err("output exceeds its planned f32 buffer"));
        }
        dequantize_into(&st.qbufs[q.out][..n_out], m, &mut bufs[q.out][..n_out]);
    }
    Ok(())
}

/// Byte transpose `out[perm-mapped] = x[i]`, walking the input in order (reads
/// contiguous, writes at the output stride of each input axis).
fn transpose_q8(x: &[u8], id: &Dims, perm: &[usize], out: &mut [u8], od: &Dims) {
    let r = id.rank();
    let n = id.numel();
    if n == 0 || r == 0 {
        out[..n.min(1)].copy_from_slice(&x[..n.min(1)]);
        return;
    }
    if perm == [0, 2, 3, 1] {
        // NCHW → NHWC (the network input): the parallel kernel.
        let hw = id.get(2) * id.get(3);
        nchw_to_nhwc_u8(x, id.get(0), id.get(1), hw, out);
        return;
    }
    if perm == [0, 3, 1, 2] {
        // NHWC → NCHW: one (H·W) × C byte matrix per image.
        transpose_u8(x, id.get(0), id.get(1) * id.get(2), id.get(3), out);
        return;
    }
    // Output stride of each input axis.
    let mut ostr = [0usize; 8];
    let mut acc = 1;
    for k in (0..r).rev() {
        ostr[perm[k]] = acc;
        acc *= od.get(k);
    }
    let inner = id.get(r - 1);
    let step = ostr[r - 1];
    let mut idx = [0usize; 8];
    let mut base = 0;
    for row in x.chunks_exact(inner) {
        for (j, &v) in row.iter().enumerate() {
            out[base + j * step] = v;
        }
        // Advance the outer input index (odometer over axes r-2..0).
        let mut k = r - 1;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            base += ostr[k];
            if idx[k] < id.get(k) {
                break;
            }
            base -= idx[k] * ostr[k];
            idx[k] = 0;
        }
    }
}
