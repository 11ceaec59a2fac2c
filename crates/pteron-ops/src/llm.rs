//! LLM custom operators emitted by `export_llm` (`extension/llm/custom_ops`) and the
//! quantized embedding lookups its `embedding_quantize` option produces. See the crate
//! docs for conventions.
//!
//! * `llama::update_cache.out`, `llama::update_cache_with_indices.out`: in-place KV
//!   cache writes (`[B, S, H, D]` layout, sequence at dim 1).
//! * `llama::custom_sdpa.out`, `llama::sdpa_with_kv_cache.out`: scaled dot-product
//!   attention over the first `start_pos + S` cache rows, causal with a `start_pos`
//!   offset, or over all key rows with an additive 2-D mask `[S, keys]`, grouped-query heads (`H_kv` divides `H_q`).
//!   The kernel is flash-style: query blocks × key blocks with an online softmax, so no
//!   full score matrix exists; work items `(batch, head, query block)` run in parallel
//!   on the `pteron-linalg` pool. f32/f16/bf16 (half types computed in f32).
//! * `llama::custom_quantized_sdpa.out`: the same kernel over int8 q/k/v with per-row
//!   scales and zero points (the int8 KV cache), optionally in `[B, H, S, D]` layout;
//!   the loop is generic over the operand source ([`AttnSrc`]).
//! * `quantized_decomposed::embedding_byte` / `embedding_4bit` (`.out`, `.dtype_out`):
//!   per-row or per-group dequantizing embedding lookups.

use std::sync::Mutex;

use pteron_runtime::{Kernel, KernelCtx, KernelError, PrepareCtx, Registry, ScalarType, TensorRef};

use crate::dispatch_float;
use crate::util::Num;

pub(crate) fn register(reg: &mut Registry) {
    reg.register("llama::update_cache.out", update_cache_out);
    reg.register(
        "llama::update_cache_with_indices.out",
        update_cache_with_indices_out,
    );
    reg.register_factory("llama::custom_sdpa.out", custom_sdpa_factory);
    reg.register_factory("llama::sdpa_with_kv_cache.out", sdpa_with_kv_cache_factory);
    reg.register_factory(
        "llama::custom_quantized_sdpa.out",
        custom_quantized_sdpa_factory,
    );
    reg.register(
        "quantized_decomposed::embedding_byte.out",
        embedding_byte_out,
    );
    reg.register(
        "quantized_decomposed::embedding_byte.dtype_out",
        embedding_byte_dtype_out,
    );
    reg.register(
        "quantized_decomposed::embedding_4bit.out",
        embedding_4bit_out,
    );
    reg.register(
        "quantized_decomposed::embedding_4bit.dtype_out",
        embedding_4bit_dtype_out,
    );
}

// ---------------------------------------------------------------------------
// KV cache updates

fn dims4(op: &str, what: &str, sizes: &[usize]) -> Result<[usize; 4], KernelError> {
    match sizes {
        [a, b, c, d] => Ok([*a, *b, *c, *d]),
        _ => Err(KernelError::invalid(format!(
            "{op}: {what} must be 4-D [B, S, H, D], got shape {sizes:?}"
        ))),
    }
}

fn check_contiguous(op: &str, what: &str, t: &TensorRef<'_>) -> Result<(), KernelError> {
    if !t.is_contiguous() {
        return Err(KernelError::unsupported(format!(
            "{op}: {what} must have the contiguous dim order, got {:?}",
            t.dim_order()
        )));
    }
    Ok(())
}

fn non_negative(op: &str, what: &str, v: i64) -> Result<usize, KernelError> {
    usize::try_from(v).map_err(|_| KernelError::invalid(format!("{op}: {what} = {v} is negative")))
}

/// Checks `value` against `cache` (same dtype, B, H, D; 4-D, contiguous) and returns
/// `(value dims, cache dims)`.
fn check_cache_pair(
    op: &str,
    value: &TensorRef<'_>,
    cache: &TensorRef<'_>,
) -> Result<([usize; 4], [usize; 4]), KernelError> {
    let v = dims4(op, "value", value.sizes())?;
    let c = dims4(op, "cache", cache.sizes())?;
    check_contiguous(op, "value", value)?;
    check_contiguous(op, "cache", cache)?;
    if value.dtype() != cache.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: value dtype {} differs from cache dtype {}",
            value.dtype(),
            cache.dtype()
        )));
    }
    if v[0] != c[0] || v[2] != c[2] || v[3] != c[3] {
        return Err(KernelError::invalid(format!(
            "{op}: value {v:?} and cache {c:?} differ in batch, heads or head dim"
        )));
    }
    Ok((v, c))
}

/// Copies `value[b]` (`S` rows) into `cache[b, start..start+S]` for every batch.
fn write_rows(
    op: &str,
    value: &[u8],
    cache: &mut [u8],
    v: [usize; 4],
    c: [usize; 4],
    start: usize,
    esize: usize,
) -> Result<(), KernelError> {
    let end = start.saturating_add(v[1]);
    if (v[1] > 0 && start >= c[1]) || end > c[1] {
        return Err(KernelError::invalid(format!(
            "{op}: start_pos {start} + seq_len {} exceeds the cache length {}",
            v[1], c[1]
        )));
    }
    let row = v[2] * v[3] * esize;
    for b in 0..v[0] {
        let src = &value[b * v[1] * row..(b + 1) * v[1] * row];
        let dst0 = (b * c[1] + start) * row;
        cache[dst0..dst0 + src.len()].copy_from_slice(src);
    }
    Ok(())
}

/// `update_cache.out(Tensor value, Tensor(a!) cache, SymInt start_pos, *, Tensor(b!) out)`:
/// stack `[value, cache, start_pos, out, ret]`. `out` is a dummy, as in ExecuTorch.
fn update_cache_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "update_cache";
    ctx.expect_args(5)?;
    let mut cache = ctx.out(1)?;
    let value = ctx.tensor(0)?;
    let start = non_negative(OP, "start_pos", ctx.int(2)?)?;
    let (v, c) = check_cache_pair(OP, &value, &cache.as_ref())?;
    let esize = value.dtype().element_size();
    write_rows(OP, value.bytes(), cache.bytes_mut(), v, c, start, esize)
}

/// `update_cache_with_indices.out(Tensor value, Tensor(a!) cache, SymInt start_pos,
/// Tensor indices, *, Tensor(b!) out)`: row `value[b, s]` goes to
/// `cache[b, indices[b, s]]`.
fn update_cache_with_indices_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    const OP: &str = "update_cache_with_indices";
    ctx.expect_args(6)?;
    let mut cache = ctx.out(1)?;
    let value = ctx.tensor(0)?;
    let indices = ctx.tensor(3)?;
    let (v, c) = check_cache_pair(OP, &value, &cache.as_ref())?;
    if indices.sizes() != [v[0], v[1]] {
        return Err(KernelError::invalid(format!(
            "{OP}: indices must have shape [{}, {}], got {:?}",
            v[0],
            v[1],
            indices.sizes()
        )));
    }
    let esize = value.dtype().element_size();
    let row = v[2] * v[3] * esize;
    let vb = value.bytes();
    let cb = cache.bytes_mut();
    let get = |i: usize| -> Result<i64, KernelError> {
        match indices.dtype() {
            ScalarType::Long => Ok(indices.as_slice::<i64>()?[i]),
            ScalarType::Int => Ok(indices.as_slice::<i32>()?[i] as i64),
            other => Err(KernelError::dtype(format!(
                "{OP}: indices must be int64 or int32, got {other}"
            ))),
        }
    };
    for b in 0..v[0] {
        for s in 0..v[1] {
            let p = get(b * v[1] + s)?;
            let p = usize::try_from(p)
                .ok()
                .filter(|&p| p < c[1])
                .ok_or_else(|| {
                    KernelError::invalid(format!(
                        "{OP}: index {p} outside the cache length {}",
                        c[1]
                    ))
                })?;
            let src = (b * v[1] + s) * row;
            let dst = (b * c[1] + p) * row;
            cb[dst..dst + row].copy_from_slice(&vb[src..src + row]);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Attention

/// Query rows per work item.
const QB: usize = 32;
/// Multiply-adds (`q·k` and `p·v`, each counted once) below which attention runs
/// on one thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;
/// The same for one query row (a decode step), where the work is reading the cache.
/// Inside a model the cache comes from L3 (the layers' weights went through L2
/// since the last step) and the other pool thread is spinning between the
/// linear layers, so a split pays off early: stories15M's 6 heads of 48 at 128-256
/// keys took 135-231 us per token on one thread and 81-96 us on two (decode
/// profile, 2026-11-25). Below 2^14 multiply-adds (6 heads of 48 over 57 keys) one
/// thread stays ahead (`llm_speed` test: 1.8 vs 2.2 us at 32 keys with a hot cache).
const DECODE_PARALLEL_MIN_WORK: usize = 1 << 14;
/// Keys per inner block.
const KB: usize = 64;
/// Upper bound on parallel groups (the slot array lives on the stack).
const MAX_GROUPS: usize = 32;

/// An additive attention mask `[S_q, cols]` (bool: `true` keeps, `false` masks).
#[derive(Clone, Copy)]
enum Mask<'a> {
    None,
    F32(&'a [f32], usize),
    F16(&'a [half::f16], usize),
    Bf16(&'a [half::bf16], usize),
    Bool(&'a [u8], usize),
}

impl Mask<'_> {
    #[inline]
    fn get(&self, i: usize, j: usize) -> f32 {
        match *self {
            Mask::None => 0.0,
            Mask::F32(m, c) => m[i * c + j],
            Mask::F16(m, c) => m[i * c + j].to_f32(),
            Mask::Bf16(m, c) => m[i * c + j].to_f32(),
            Mask::Bool(m, c) => {
                if m[i * c + j] != 0 {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            }
        }
    }
}

/// Problem geometry.
#[derive(Clone, Copy)]
struct Geom {
    b: usize,
    sq: usize,
    hq: usize,
    d: usize,
    skv: usize,
    hkv: usize,
    start: usize,
    num_keys: usize,
    causal: bool,
    scale: f32,
    /// `[B, H, S, D]` layout (`is_seq_at_dim_2`) instead of `[B, S, H, D]`.
    seq_dim2: bool,
}

impl Geom {
    /// Row index (element offset / D) of query/output row `(b, i, h)`.
    #[inline]
    fn q_row(&self, b: usize, i: usize, h: usize) -> usize {
        if self.seq_dim2 {
            (b * self.hq + h) * self.sq + i
        } else {
            (b * self.sq + i) * self.hq + h
        }
    }
    /// Row index of key/value row `(b, j, hk)`.
    #[inline]
    fn kv_row(&self, b: usize, j: usize, hk: usize) -> usize {
        if self.seq_dim2 {
            (b * self.hkv + hk) * self.skv + j
        } else {
            (b * self.skv + j) * self.hkv + hk
        }
    }
}

/// Which attention operator an [`Sdpa`] instance runs.
#[derive(Clone, Copy)]
enum SdpaOp {
    Custom,
    WithCache,
    Quantized,
}

/// The attention kernel instance: owns `[B, H_q, S_q, D]` f32 scratch where each work
/// item accumulates its output rows, sized at load from the output's bound.
struct Sdpa {
    scratch: Vec<f32>,
    op: SdpaOp,
}

fn sdpa_factory(
    pctx: &PrepareCtx<'_>,
    out_arg: usize,
    op: SdpaOp,
) -> Result<Box<dyn Kernel>, KernelError> {
    let (_, qs, _) = pctx.tensor_meta(0)?;
    let (_, os, _) = pctx.tensor_meta(out_arg)?;
    let n = qs.numel().max(os.numel());
    Ok(Box::new(Sdpa {
        scratch: vec![0.0; n],
        op,
    }))
}

fn custom_sdpa_factory(pctx: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    sdpa_factory(pctx, 8, SdpaOp::Custom)
}

fn sdpa_with_kv_cache_factory(pctx: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    sdpa_factory(pctx, 11, SdpaOp::WithCache)
}

fn custom_quantized_sdpa_factory(pctx: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    sdpa_factory(pctx, 15, SdpaOp::Quantized)
}

impl Kernel for Sdpa {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        match self.op {
            SdpaOp::Custom => self.run_custom(ctx),
            SdpaOp::WithCache => self.run_with_cache(ctx),
            SdpaOp::Quantized => self.run_quantized(ctx),
        }
    }
    fn prepared_bytes(&self) -> usize {
        self.scratch.len() * 4
    }
}

impl Sdpa {
    /// `custom_sdpa.out(q, k, v, start_pos, attn_mask, dropout_p, is_causal, scale, *, out)`.
    fn run_custom(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        const OP: &str = "custom_sdpa";
        ctx.expect_args(10)?;
        let mut out = ctx.out(8)?;
        let q = ctx.tensor(0)?;
        let k = ctx.tensor(1)?;
        let v = ctx.tensor(2)?;
        let start = non_negative(OP, "start_pos", ctx.int(3)?)?;
        let mask = ctx.opt_tensor(4)?;
        let causal = ctx.bool(6)?;
        let scale = ctx.opt_double(7)?;
        let sq = q.sizes().get(1).copied().unwrap_or(0);
        let g = geometry(
            OP,
            &q,
            &k,
            &v,
            start,
            sq,
            mask.as_ref(),
            causal,
            scale,
            false,
        )?;
        out.resize(q.sizes())?;
        let mask = resolve_mask(OP, mask.as_ref(), &g)?;
        if out.dtype() != q.dtype() {
            return Err(KernelError::dtype(format!(
                "{OP}: out dtype {} differs from query dtype {}",
                out.dtype(),
                q.dtype()
            )));
        }
        dispatch_float!(q.dtype(), T => {
            let o = out.as_mut_slice::<T>()?;
            let src = FloatSrc { q: q.as_slice::<T>()?, k: k.as_slice::<T>()?, v: v.as_slice::<T>()? };
            attention(&mut self.scratch, o, &src, mask, &g)
        })
    }

    /// `custom_quantized_sdpa.out(q, k, v, start_pos, attn_mask, dropout_p, is_causal, scale,
    /// q_zero_points, q_scales, k_zero_points, k_scales, v_zero_points, v_scales,
    /// is_seq_at_dim_2, *, out)`: int8 q/k/v with per-row (per token and head) f32 scales
    /// and int8 zero points shaped like the tensor with a last dim of 1; the output is
    /// float (as the reference, which also accepts float q/k/v and then ignores the
    /// quantization parameters).
    fn run_quantized(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        const OP: &str = "custom_quantized_sdpa";
        ctx.expect_args(17)?;
        let mut out = ctx.out(15)?;
        let q = ctx.tensor(0)?;
        let k = ctx.tensor(1)?;
        let v = ctx.tensor(2)?;
        let start = non_negative(OP, "start_pos", ctx.int(3)?)?;
        let mask = ctx.opt_tensor(4)?;
        let causal = ctx.bool(6)?;
        let scale = ctx.opt_double(7)?;
        let seq_dim2 = ctx.bool(14)?;
        let sq = q
            .sizes()
            .get(if seq_dim2 { 2 } else { 1 })
            .copied()
            .unwrap_or(0);
        let g = geometry(
            OP,
            &q,
            &k,
            &v,
            start,
            sq,
            mask.as_ref(),
            causal,
            scale,
            seq_dim2,
        )?;
        out.resize(q.sizes())?;
        let mask = resolve_mask(OP, mask.as_ref(), &g)?;
        if q.dtype() != ScalarType::Char {
            if out.dtype() != q.dtype() {
                return Err(KernelError::dtype(format!(
                    "{OP}: out dtype {} differs from query dtype {}",
                    out.dtype(),
                    q.dtype()
                )));
            }
            return dispatch_float!(q.dtype(), T => {
                let o = out.as_mut_slice::<T>()?;
                let src = FloatSrc { q: q.as_slice::<T>()?, k: k.as_slice::<T>()?, v: v.as_slice::<T>()? };
                attention(&mut self.scratch, o, &src, mask, &g)
            });
        }
        let qp = |zp_arg: usize, sc_arg: usize, t: &TensorRef<'_>, what: &str| {
            quant_params(ctx, OP, what, t, zp_arg, sc_arg)
        };
        let (q_zp, q_scale) = qp(8, 9, &q, "query")?;
        let (k_zp, k_scale) = qp(10, 11, &k, "key")?;
        let (v_zp, v_scale) = qp(12, 13, &v, "value")?;
        let src = QuantSrc {
            q: q.as_slice()?,
            k: k.as_slice()?,
            v: v.as_slice()?,
            q_scale,
            q_zp,
            k_scale,
            k_zp,
            v_scale,
            v_zp,
        };
        dispatch_float!(out.dtype(), T => {
            let o = out.as_mut_slice::<T>()?;
            attention(&mut self.scratch, o, &src, mask, &g)
        })
    }

    /// `sdpa_with_kv_cache.out(q, k, v, k_cache, v_cache, start_pos, seq_len, attn_mask,
    /// dropout_p, is_causal, scale, *, out)`: updates both caches, then attends over them.
    fn run_with_cache(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        const OP: &str = "sdpa_with_kv_cache";
        ctx.expect_args(13)?;
        let mut out = ctx.out(11)?;
        let mut kc = ctx.out(3)?;
        let mut vc = ctx.out(4)?;
        let q = ctx.tensor(0)?;
        let k = ctx.tensor(1)?;
        let v = ctx.tensor(2)?;
        let start = non_negative(OP, "start_pos", ctx.int(5)?)?;
        let seq_len = non_negative(OP, "seq_len", ctx.int(6)?)?;
        let mask = ctx.opt_tensor(7)?;
        let causal = ctx.bool(9)?;
        let scale = ctx.opt_double(10)?;
        let esize = k.dtype().element_size();
        let (kd, kcd) = check_cache_pair(OP, &k, &kc.as_ref())?;
        let (vd, vcd) = check_cache_pair(OP, &v, &vc.as_ref())?;
        write_rows(OP, k.bytes(), kc.bytes_mut(), kd, kcd, start, esize)?;
        write_rows(OP, v.bytes(), vc.bytes_mut(), vd, vcd, start, esize)?;
        let (kr, vr) = (kc.as_ref(), vc.as_ref());
        let g = geometry(
            OP,
            &q,
            &kr,
            &vr,
            start,
            seq_len,
            mask.as_ref(),
            causal,
            scale,
            false,
        )?;
        out.resize(q.sizes())?;
        let mask = resolve_mask(OP, mask.as_ref(), &g)?;
        if out.dtype() != q.dtype() {
            return Err(KernelError::dtype(format!(
                "{OP}: out dtype {} differs from query dtype {}",
                out.dtype(),
                q.dtype()
            )));
        }
        dispatch_float!(q.dtype(), T => {
            let o = out.as_mut_slice::<T>()?;
            let src = FloatSrc { q: q.as_slice::<T>()?, k: kr.as_slice::<T>()?, v: vr.as_slice::<T>()? };
            attention(&mut self.scratch, o, &src, mask, &g)
        })
    }
}

/// The int8 zero points and f32 scales of quantized tensor `t` (arguments `zp_arg`,
/// `sc_arg`): one per row, i.e. shaped like `t` with a last dim of 1, contiguous.
fn quant_params<'a>(
    ctx: &KernelCtx<'a>,
    op: &str,
    what: &str,
    t: &TensorRef<'_>,
    zp_arg: usize,
    sc_arg: usize,
) -> Result<(&'a [i8], &'a [f32]), KernelError> {
    let (Some(zp), Some(sc)) = (ctx.opt_tensor(zp_arg)?, ctx.opt_tensor(sc_arg)?) else {
        return Err(KernelError::invalid(format!(
            "{op}: an int8 {what} needs its zero points and scales"
        )));
    };
    if zp.dtype() != ScalarType::Char || sc.dtype() != ScalarType::Float {
        return Err(KernelError::dtype(format!(
            "{op}: {what} zero points must be int8 and scales float32, got {} and {}",
            zp.dtype(),
            sc.dtype()
        )));
    }
    let ts = t.sizes();
    let fits = |p: &TensorRef<'_>| {
        let ps = p.sizes();
        p.is_contiguous()
            && ps.len() == ts.len()
            && ps.last() == Some(&1)
            && ps[..ps.len() - 1] == ts[..ts.len() - 1]
    };
    if !fits(&zp) || !fits(&sc) {
        return Err(KernelError::invalid(format!(
            "{op}: {what} {ts:?} needs contiguous per-row zero points and scales shaped like it with a last dim of 1, got {:?} and {:?}",
            zp.sizes(),
            sc.sizes()
        )));
    }
    Ok((zp.as_slice()?, sc.as_slice()?))
}

#[allow(clippy::too_many_arguments)]
fn geometry(
    op: &str,
    q: &TensorRef<'_>,
    k: &TensorRef<'_>,
    v: &TensorRef<'_>,
    start: usize,
    seq_len: usize,
    mask: Option<&TensorRef<'_>>,
    causal: bool,
    scale: Option<f64>,
    seq_dim2: bool,
) -> Result<Geom, KernelError> {
    // Checks and geometry are in [B, S, H, D] terms; `[B, H, S, D]` inputs are permuted.
    let perm = |d: [usize; 4]| {
        if seq_dim2 {
            [d[0], d[2], d[1], d[3]]
        } else {
            d
        }
    };
    let qd = perm(dims4(op, "query", q.sizes())?);
    let kd = perm(dims4(op, "key", k.sizes())?);
    let vd = perm(dims4(op, "value", v.sizes())?);
    check_contiguous(op, "query", q)?;
    check_contiguous(op, "key", k)?;
    check_contiguous(op, "value", v)?;
    if k.dtype() != q.dtype() || v.dtype() != q.dtype() {
        return Err(KernelError::dtype(format!(
            "{op}: query, key and value dtypes differ ({}, {}, {})",
            q.dtype(),
            k.dtype(),
            v.dtype()
        )));
    }
    if kd != vd {
        return Err(KernelError::invalid(format!(
            "{op}: key {kd:?} and value {vd:?} shapes differ"
        )));
    }
    if kd[0] != qd[0] || kd[3] != qd[3] {
        return Err(KernelError::invalid(format!(
            "{op}: query {qd:?} and key {kd:?} differ in batch or head dim"
        )));
    }
    if kd[2] == 0 || qd[2] % kd[2] != 0 {
        return Err(KernelError::invalid(format!(
            "{op}: {} key/value heads do not divide {} query heads",
            kd[2], qd[2]
        )));
    }
    if mask.is_some() && causal {
        return Err(KernelError::invalid(format!(
            "{op}: attn_mask and is_causal are mutually exclusive"
        )));
    }
    let num_keys = start
        .checked_add(seq_len)
        .filter(|&n| n <= kd[1])
        .ok_or_else(|| {
            KernelError::invalid(format!(
                "{op}: start_pos {start} + seq_len {seq_len} exceeds the key length {}",
                kd[1]
            ))
        })?;
    // With an explicit mask the reference attends to every key row it is given (the
    // mask spans them); otherwise to the first `start_pos + seq_len`.
    let num_keys = if mask.is_some() { kd[1] } else { num_keys };
    let scale = match scale {
        Some(s) => s as f32,
        None => 1.0 / (qd[3].max(1) as f32).sqrt(),
    };
    Ok(Geom {
        b: qd[0],
        sq: qd[1],
        hq: qd[2],
        d: qd[3],
        skv: kd[1],
        hkv: kd[2],
        start,
        num_keys,
        causal,
        scale,
        seq_dim2,
    })
}

fn resolve_mask<'a>(
    op: &str,
    m: Option<&TensorRef<'a>>,
    g: &Geom,
) -> Result<Mask<'a>, KernelError> {
    let Some(m) = m else { return Ok(Mask::None) };
    let s = m.sizes();
    if s.len() != 2 || s[0] != g.sq || s[1] < g.num_keys || !m.is_contiguous() {
        return Err(KernelError::invalid(format!(
            "{op}: attn_mask must be a contiguous 2-D [{}, >= {}] tensor, got {s:?}",
            g.sq, g.num_keys
        )));
    }
    let c = s[1];
    Ok(match m.dtype() {
        ScalarType::Float => Mask::F32(m.as_slice()?, c),
        ScalarType::Half => Mask::F16(m.as_slice()?, c),
        ScalarType::BFloat16 => Mask::Bf16(m.as_slice()?, c),
        ScalarType::Bool => Mask::Bool(m.as_slice()?, c),
        other => {
            return Err(KernelError::dtype(format!(
                "{op}: attn_mask dtype {other} is not supported"
            )))
        }
    })
}

#[inline]
fn dot<T: Num>(a: &[T], b: &[T]) -> f32 {
    if let (Some(a), Some(b)) = (T::as_f32s(a), T::as_f32s(b)) {
        return pteron_linalg::vmath::dot(a, b);
    }
    let mut acc = [0.0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..8 {
            acc[l] += x[l].to_f32() * y[l].to_f32();
        }
    }
    let mut s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        s += x.to_f32() * y.to_f32();
    }
    s
}

/// Where the attention kernel reads q, k and v: one implementation per storage
/// (float tensors, int8 tensors with per-row quantization parameters). Rows are
/// addressed by row index (element offset / D, see [`Geom::q_row`]).
trait AttnSrc: Sync {
    /// `q[qr] · k[kr]` (unscaled).
    fn qk(&self, qr: usize, kr: usize, d: usize) -> f32;
    /// `acc += p * v[vr]`.
    fn add_v(&self, vr: usize, p: f32, acc: &mut [f32]);
    /// `out[c] = q[qr] · k[kr0 + c·stride]` for every `c` (rows at a fixed stride).
    fn qk_rows(&self, qr: usize, kr0: usize, stride: usize, d: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate() {
            *o = self.qk(qr, kr0 + c * stride, d);
        }
    }
    /// `acc += p[c] * v[vr0 + c·stride]` for `c = 0, 1, ...`, skipping `p[c] == 0`.
    fn add_v_rows(&self, vr0: usize, stride: usize, p: &[f32], acc: &mut [f32]) {
        for (c, &pc) in p.iter().enumerate() {
            if pc != 0.0 {
                self.add_v(vr0 + c * stride, pc, acc);
            }
        }
    }
}

/// Float q/k/v (f32/f16/bf16, computed in f32).
struct FloatSrc<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
}

impl<T: Num + Sync> AttnSrc for FloatSrc<'_, T> {
    #[inline]
    fn qk(&self, qr: usize, kr: usize, d: usize) -> f32 {
        dot(&self.q[qr * d..(qr + 1) * d], &self.k[kr * d..(kr + 1) * d])
    }
    fn qk_rows(&self, qr: usize, kr0: usize, stride: usize, d: usize, out: &mut [f32]) {
        let q = &self.q[qr * d..(qr + 1) * d];
        match (T::as_f32s(q), T::as_f32s(&self.k[kr0 * d..])) {
            (Some(qf), Some(kf)) => pteron_linalg::vmath::dot_rows(qf, kf, stride * d, out),
            _ => {
                for (c, o) in out.iter_mut().enumerate() {
                    *o = self.qk(qr, kr0 + c * stride, d);
                }
            }
        }
    }
    fn add_v_rows(&self, vr0: usize, stride: usize, p: &[f32], acc: &mut [f32]) {
        let d = acc.len();
        match T::as_f32s(&self.v[vr0 * d..]) {
            Some(vf) => pteron_linalg::vmath::axpy_rows(p, vf, stride * d, acc),
            None => {
                for (c, &pc) in p.iter().enumerate() {
                    if pc != 0.0 {
                        self.add_v(vr0 + c * stride, pc, acc);
                    }
                }
            }
        }
    }
    #[inline]
    fn add_v(&self, vr: usize, p: f32, acc: &mut [f32]) {
        let d = acc.len();
        let row = &self.v[vr * d..(vr + 1) * d];
        match T::as_f32s(row) {
            Some(vf) => pteron_linalg::vmath::axpy(p, vf, acc),
            None => {
                for (x, &y) in acc.iter_mut().zip(row) {
                    *x += p * y.to_f32();
                }
            }
        }
    }
}

/// Int8 q/k/v with one (f32 scale, int8 zero point) per row, as the quantized KV
/// cache stores them. Like the reference, each element is dequantized as
/// `scale * (x - zero_point)` and products are accumulated in f32.
struct QuantSrc<'a> {
    q: &'a [i8],
    k: &'a [i8],
    v: &'a [i8],
    q_scale: &'a [f32],
    q_zp: &'a [i8],
    k_scale: &'a [f32],
    k_zp: &'a [i8],
    v_scale: &'a [f32],
    v_zp: &'a [i8],
}

impl AttnSrc for QuantSrc<'_> {
    #[inline]
    fn qk(&self, qr: usize, kr: usize, d: usize) -> f32 {
        let (qs, qz) = (self.q_scale[qr], self.q_zp[qr] as i16);
        let (ks, kz) = (self.k_scale[kr], self.k_zp[kr] as i16);
        let a = &self.q[qr * d..(qr + 1) * d];
        let b = &self.k[kr * d..(kr + 1) * d];
        let mut acc = [0.0f32; 8];
        let mut ca = a.chunks_exact(8);
        let mut cb = b.chunks_exact(8);
        for (x, y) in (&mut ca).zip(&mut cb) {
            for l in 0..8 {
                let xf = qs * f32::from(x[l] as i16 - qz);
                let yf = ks * f32::from(y[l] as i16 - kz);
                acc[l] += xf * yf;
            }
        }
        let mut s =
            ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
        for (&x, &y) in ca.remainder().iter().zip(cb.remainder()) {
            s += (qs * f32::from(x as i16 - qz)) * (ks * f32::from(y as i16 - kz));
        }
        s
    }
    #[inline]
    fn add_v(&self, vr: usize, p: f32, acc: &mut [f32]) {
        let d = acc.len();
        let (vs, vz) = (self.v_scale[vr], self.v_zp[vr] as i16);
        for (x, &y) in acc.iter_mut().zip(&self.v[vr * d..(vr + 1) * d]) {
            *x += p * (vs * f32::from(y as i16 - vz));
        }
    }
}

/// Blocked attention: `out[b, s, h, :] = softmax(scale * q k^T + mask) v` over the first
/// `num_keys` keys, computed per `(b, h, query block)` item into `scratch`
/// (`[B, H_q, S_q, D]`), then written to `out` in the query's layout.
fn attention<T: Num + Send + Sync, S: AttnSrc>(
    scratch: &mut [f32],
    out: &mut [T],
    src: &S,
    mask: Mask<'_>,
    g: &Geom,
) -> Result<(), KernelError> {
    let total = g.b * g.hq * g.sq * g.d;
    if total == 0 {
        return Ok(());
    }
    if scratch.len() < total || out.len() < total {
        return Err(KernelError::internal(format!(
            "attention scratch of {} elements is smaller than the output ({total})",
            scratch.len()
        )));
    }
    let scratch = &mut scratch[..total];
    let qblocks = g.sq.div_ceil(QB);
    // Small problems run on the calling thread: a parallel dispatch costs more than
    // it saves, and far more when a core is busy. A decode step over a long cache is
    // bound by reading the cache, which two cores do faster than one (on a machine
    // whose cores are busy with other processes, one thread is faster).
    let work = total.saturating_mul(g.num_keys);
    let min_work = if g.sq == 1 {
        DECODE_PARALLEL_MIN_WORK
    } else {
        PARALLEL_MIN_WORK
    };
    let threads = if work < min_work {
        1
    } else {
        pteron_linalg::num_threads().max(1)
    };
    // One query row (a decode step): an item covers several heads, walked key block
    // by key block so that each block of the cache is read from memory once for all
    // of them (the `[B, S, H, D]` cache interleaves heads row by row).
    let heads_per = if g.sq == 1 {
        g.hq.div_ceil(threads).min(MAX_HEADS)
    } else {
        1
    };
    let hchunks = g.hq.div_ceil(heads_per);
    let items = g.b * hchunks * qblocks;
    let groups = items.min(MAX_GROUPS).min(threads * 4);
    // Item `it` = (batch, head chunk, query block) covers scratch from
    // `item_start(it)`; consecutive items are adjacent.
    let item_start = |it: usize| -> usize {
        let (bc, qb) = (it / qblocks, it % qblocks);
        let (b, hc) = (bc / hchunks, bc % hchunks);
        ((b * g.hq + hc * heads_per) * g.sq + qb * QB) * g.d
    };
    let group_first = |gi: usize| -> usize { gi * items / groups };
    let slots: [Mutex<Option<&mut [f32]>>; MAX_GROUPS] = core::array::from_fn(|_| Mutex::new(None));
    let mut rest: &mut [f32] = scratch;
    for (gi, slot) in slots.iter().enumerate().take(groups) {
        let a = item_start(group_first(gi));
        let e = if gi + 1 == groups {
            total
        } else {
            item_start(group_first(gi + 1))
        };
        let (head, tail) = core::mem::take(&mut rest).split_at_mut(e - a);
        rest = tail;
        if let Ok(mut s) = slot.lock() {
            *s = Some(head);
        }
    }
    let run_group = |gi: usize| {
        let Some(slot) = slots.get(gi) else { return };
        let Ok(mut guard) = slot.lock() else { return };
        let Some(buf) = guard.take() else { return };
        let base = item_start(group_first(gi));
        for it in group_first(gi)..group_first(gi + 1) {
            let off = item_start(it) - base;
            let (bc, qb) = (it / qblocks, it % qblocks);
            let (b, hc) = (bc / hchunks, bc % hchunks);
            let h0 = hc * heads_per;
            let heads = heads_per.min(g.hq - h0);
            let i0 = qb * QB;
            let rows = QB.min(g.sq - i0);
            let acc = &mut buf[off..off + heads * rows * g.d];
            if heads == 1 {
                attend_block(acc, src, mask, g, b, h0, i0, rows);
            } else {
                attend_heads(acc, src, mask, g, b, h0..h0 + heads);
            }
        }
    };
    if groups == 1 {
        run_group(0);
    } else {
        pteron_linalg::parallel_for(groups, run_group);
    }
    // Scatter [B, H, S, D] scratch into the output's layout.
    for b in 0..g.b {
        for h in 0..g.hq {
            for s in 0..g.sq {
                let src = ((b * g.hq + h) * g.sq + s) * g.d;
                let dst = g.q_row(b, s, h) * g.d;
                for (o, &x) in out[dst..dst + g.d].iter_mut().zip(&scratch[src..src + g.d]) {
                    *o = T::from_f32(x);
                }
            }
        }
    }
    Ok(())
}

/// Online-softmax state of one (query row, head): running max, running sum, and the
/// un-normalised output row.
struct RowState<'a> {
    m: f32,
    l: f32,
    acc: &'a mut [f32],
}

/// One key block `j0..j1` for query row `i` of head `h` (batch `b`): scores, the
/// online-softmax update of `st`, and `p · V` into `st.acc`. `p` is scratch.
#[allow(clippy::too_many_arguments)]
#[inline]
fn key_block<S: AttnSrc>(
    src: &S,
    mask: Mask<'_>,
    g: &Geom,
    b: usize,
    h: usize,
    i: usize,
    j0: usize,
    j1: usize,
    p: &mut [f32; KB],
    st: &mut RowState<'_>,
) {
    let d = g.d;
    let hk = h / (g.hq / g.hkv);
    // Rows between consecutive keys (the cache layout is [B, S, H, D] or [B, H, S, D]).
    let kv_stride = g.kv_row(b, 1, hk) - g.kv_row(b, 0, hk);
    let limit = if g.causal {
        (g.start + i + 1).min(j1)
    } else {
        j1
    };
    if limit <= j0 {
        return;
    }
    let qr = g.q_row(b, i, h);
    let n = limit - j0;
    let kr0 = g.kv_row(b, j0, hk);
    src.qk_rows(qr, kr0, kv_stride, d, &mut p[..n]);
    if softmax_block(&mut p[..n], mask, g, i, j0, st) {
        src.add_v_rows(kr0, kv_stride, &p[..n], st.acc);
    }
}

/// Fresh states for the first `n` rows of `acc` (`D` = `d` each), `None` beyond.
fn row_states<const N: usize>(acc: &mut [f32], d: usize, n: usize) -> [Option<RowState<'_>>; N] {
    let mut st: [Option<RowState<'_>>; N] = core::array::from_fn(|_| None);
    for (slot, a) in st.iter_mut().zip(acc.chunks_exact_mut(d).take(n)) {
        *slot = Some(RowState {
            m: f32::NEG_INFINITY,
            l: 0.0,
            acc: a,
        });
    }
    st
}

/// The keys query row `i` may attend to (all of them, or the causal prefix).
fn key_end(g: &Geom, i: usize) -> usize {
    if g.causal {
        g.num_keys.min(g.start + i + 1)
    } else {
        g.num_keys
    }
}

/// One work item: query rows `i0..i0+rows` of head `h` in batch `b`, accumulated into
/// `acc` (`rows × D`) with an online softmax over key blocks.
#[allow(clippy::too_many_arguments)]
fn attend_block<S: AttnSrc>(
    acc: &mut [f32],
    src: &S,
    mask: Mask<'_>,
    g: &Geom,
    b: usize,
    h: usize,
    i0: usize,
    rows: usize,
) {
    let d = g.d;
    let mut p = [0.0f32; KB];
    acc.fill(0.0);
    let mut st: [Option<RowState<'_>>; QB] = row_states(acc, d, rows);
    let kend = key_end(g, i0 + rows - 1);
    let mut j0 = 0;
    while j0 < kend {
        let j1 = (j0 + KB).min(kend);
        for (r, slot) in st.iter_mut().enumerate().take(rows) {
            if let Some(s) = slot {
                key_block(src, mask, g, b, h, i0 + r, j0, j1, &mut p, s);
            }
        }
        j0 = j1;
    }
    st.iter_mut().flatten().for_each(finish_row);
}

/// Most heads one decode work item covers (its state lives on the stack).
const MAX_HEADS: usize = 64;

/// A decode work item: the one query row (`S_q == 1`) of heads `hs` in batch `b`,
/// into `acc` (`hs.len() × D`): key blocks outer, heads inner, so a block of the cache
/// is fetched once for every head. Per head the arithmetic is [`attend_block`]'s.
fn attend_heads<S: AttnSrc>(
    acc: &mut [f32],
    src: &S,
    mask: Mask<'_>,
    g: &Geom,
    b: usize,
    hs: core::ops::Range<usize>,
) {
    let d = g.d;
    let mut p = [0.0f32; KB];
    acc.fill(0.0);
    let mut st: [Option<RowState<'_>>; MAX_HEADS] = row_states(acc, d, hs.len());
    let kend = key_end(g, 0);
    let mut j0 = 0;
    while j0 < kend {
        let j1 = (j0 + KB).min(kend);
        for (h, slot) in hs.clone().zip(st.iter_mut()) {
            if let Some(s) = slot {
                key_block(src, mask, g, b, h, 0, j0, j1, &mut p, s);
            }
        }
        j0 = j1;
    }
    st.iter_mut().flatten().for_each(finish_row);
}

/// The online-softmax update of `st` for the raw scores `p` of keys `j0..` of query
/// row `i`: scaled and masked in place, turned into `exp(s - m)`, `st.acc` rescaled
/// and `st.l` updated. `false` when every score is masked (nothing to add).
fn softmax_block(
    p: &mut [f32],
    mask: Mask<'_>,
    g: &Geom,
    i: usize,
    j0: usize,
    st: &mut RowState<'_>,
) -> bool {
    let bmax = scale_and_max(p, mask, g.scale, i, j0);
    let m_new = if bmax > st.m { bmax } else { st.m };
    if m_new == f32::NEG_INFINITY {
        return false;
    }
    for pc in p.iter_mut() {
        *pc -= m_new;
    }
    pteron_linalg::vmath::vexp(p);
    let corr = if st.m == f32::NEG_INFINITY {
        0.0
    } else {
        pteron_linalg::vmath::exp_scalar(st.m - m_new)
    };
    st.m = m_new;
    if corr != 1.0 {
        st.acc.iter_mut().for_each(|x| *x *= corr);
    }
    // In key order: the sum's rounding decides greedy tokens of weak models.
    let sum = p.iter().fold(0.0f32, |acc, &x| acc + x);
    st.l = st.l * corr + sum;
    true
}

/// `p[c] = p[c] · scale + mask(i, j0 + c)` in place; returns the largest (NaNs
/// skipped). Without a mask the same operations run eight lanes at a time.
fn scale_and_max(p: &mut [f32], mask: Mask<'_>, scale: f32, i: usize, j0: usize) -> f32 {
    let pick = |s: f32, m: f32| if s > m { s } else { m };
    let mut bmax = f32::NEG_INFINITY;
    if let Mask::None = mask {
        let mut lanes = [f32::NEG_INFINITY; 8];
        let mut chunks = p.chunks_exact_mut(8);
        for ch in &mut chunks {
            for (x, l) in ch.iter_mut().zip(lanes.iter_mut()) {
                *x = *x * scale + 0.0;
                *l = pick(*x, *l);
            }
        }
        for x in chunks.into_remainder() {
            *x = *x * scale + 0.0;
            bmax = pick(*x, bmax);
        }
        return lanes.iter().fold(bmax, |m, &l| pick(l, m));
    }
    for (c, pc) in p.iter_mut().enumerate() {
        *pc = *pc * scale + mask.get(i, j0 + c);
        bmax = pick(*pc, bmax);
    }
    bmax
}

/// Divides a finished row by its softmax sum.
fn finish_row(st: &mut RowState<'_>) {
    let inv = 1.0 / st.l;
    st.acc.iter_mut().for_each(|x| *x *= inv);
}

// ---------------------------------------------------------------------------
// Quantized embeddings

fn embedding_byte_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(8)?;
    quantized_embedding(ctx, 6, None, false)
}

fn embedding_byte_dtype_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(9)?;
    let dt = ctx.opt_dtype(6)?;
    quantized_embedding(ctx, 7, dt, false)
}

fn embedding_4bit_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(8)?;
    quantized_embedding(ctx, 6, None, true)
}

fn embedding_4bit_dtype_out(ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
    ctx.expect_args(9)?;
    let dt = ctx.opt_dtype(6)?;
    quantized_embedding(ctx, 7, dt, true)
}

/// A float parameter tensor (scales or zero points) read as f32.
#[derive(Clone, Copy)]
enum FloatParam<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
    Bf16(&'a [half::bf16]),
}

impl<'a> FloatParam<'a> {
    fn of(op: &str, what: &str, t: &TensorRef<'a>) -> Result<Self, KernelError> {
        Ok(match t.dtype() {
            ScalarType::Float => FloatParam::F32(t.as_slice()?),
            ScalarType::Half => FloatParam::F16(t.as_slice()?),
            ScalarType::BFloat16 => FloatParam::Bf16(t.as_slice()?),
            other => {
                return Err(KernelError::dtype(format!(
                    "{op}: {what} must be a float tensor, got {other}"
                )))
            }
        })
    }
    #[inline]
    fn get(&self, i: usize) -> f32 {
        match *self {
            FloatParam::F32(s) => s[i],
            FloatParam::F16(s) => s[i].to_f32(),
            FloatParam::Bf16(s) => s[i].to_f32(),
        }
    }
}

/// `embedding_{byte,4bit}[.dtype_out](weight, scales, zero_points?, qmin, qmax, indices,
/// [dtype,] *, out)`: `out[..., j] = (w[idx, j] - zp[idx, g]) * scale[idx, g]` with
/// `g = j / group_size`. 4-bit weights pack two values per byte, the even column in
/// the high nibble, stored with an offset of 8.
fn quantized_embedding(
    ctx: &KernelCtx<'_>,
    out_arg: usize,
    dtype: Option<ScalarType>,
    four_bit: bool,
) -> Result<(), KernelError> {
    let op = if four_bit {
        "embedding_4bit"
    } else {
        "embedding_byte"
    };
    let mut out = ctx.out(out_arg)?;
    let w = ctx.tensor(0)?;
    let scales = ctx.tensor(1)?;
    let zps = ctx.opt_tensor(2)?;
    let idx = ctx.tensor(5)?;
    if w.dim() != 2 || !w.is_contiguous() {
        return Err(KernelError::invalid(format!(
            "{op}: weight must be a contiguous 2-D tensor, got {:?}",
            w.sizes()
        )));
    }
    if !matches!(w.dtype(), ScalarType::Char | ScalarType::Byte) {
        return Err(KernelError::dtype(format!(
            "{op}: weight must be int8 or uint8, got {}",
            w.dtype()
        )));
    }
    let (vocab, packed) = (w.size(0), w.size(1));
    let dim = if four_bit { packed * 2 } else { packed };
    let groups = match scales.sizes() {
        [r] if *r == vocab => 1,
        [r, g] if *r == vocab && *g > 0 => *g,
        s => {
            return Err(KernelError::invalid(format!(
                "{op}: weight_scales must be [{vocab}] or [{vocab}, groups], got {s:?}"
            )))
        }
    };
    if dim % groups != 0 {
        return Err(KernelError::invalid(format!(
            "{op}: {groups} groups do not divide embedding dim {dim}"
        )));
    }
    let group = dim / groups;
    let sc = FloatParam::of(op, "weight_scales", &scales)?;
    let zp = match &zps {
        Some(z) => {
            if z.numel() != scales.numel() {
                return Err(KernelError::invalid(format!(
                    "{op}: weight_zero_points shape {:?} differs from weight_scales {:?}",
                    z.sizes(),
                    scales.sizes()
                )));
            }
            Some(FloatParam::of(op, "weight_zero_points", z)?)
        }
        None => None,
    };
    let want = dtype.unwrap_or(scales.dtype());
    if out.dtype() != want {
        return Err(KernelError::dtype(format!(
            "{op}: out dtype {} but result dtype is {want}",
            out.dtype()
        )));
    }
    let mut osz = [0usize; 16];
    let r = idx.dim();
    if r + 1 > 16 {
        return Err(KernelError::invalid(format!(
            "{op}: indices rank {r} too large"
        )));
    }
    osz[..r].copy_from_slice(idx.sizes());
    osz[r] = dim;
    out.resize(&osz[..r + 1])?;
    let n = idx.numel();
    let index = |i: usize| -> Result<usize, KernelError> {
        let v = match idx.dtype() {
            ScalarType::Long => idx.as_slice::<i64>()?[i],
            ScalarType::Int => idx.as_slice::<i32>()?[i] as i64,
            other => {
                return Err(KernelError::dtype(format!(
                    "{op}: indices must be int64 or int32, got {other}"
                )))
            }
        };
        usize::try_from(v)
            .ok()
            .filter(|&v| v < vocab)
            .ok_or_else(|| {
                KernelError::invalid(format!("{op}: index {v} out of range for {vocab} rows"))
            })
    };
    let wb = w.bytes();
    let signed = w.dtype() == ScalarType::Char;
    dispatch_float!(out.dtype(), T => {
        let o = out.as_mut_slice::<T>()?;
        for i in 0..n {
            let row = index(i)?;
            let wrow = &wb[row * packed..(row + 1) * packed];
            let orow = &mut o[i * dim..(i + 1) * dim];
            for (j, oj) in orow.iter_mut().enumerate() {
                let qv: f32 = if four_bit {
                    let byte = wrow[j / 2];
                    let nib = if j % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                    nib as f32 - 8.0
                } else if signed {
                    wrow[j] as i8 as f32
                } else {
                    wrow[j] as f32
                };
                let gi = row * groups + j / group;
                let z = zp.map_or(0.0, |z| z.get(gi));
                *oj = T::from_f32((qv - z) * sc.get(gi));
            }
        }
        Ok(())
    })
}
