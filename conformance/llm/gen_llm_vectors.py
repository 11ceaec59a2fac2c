"""Golden vectors for the LLM custom ops (crates/pteron-ops/src/llm.rs).

Expected outputs come from the reference kernels themselves
(`torch.ops.llama.*` from executorch.extension.llm.custom_ops, and the
`quantized_decomposed` embedding references), cross-checked against plain
PyTorch math (F.scaled_dot_product_attention with an explicit causal mask, slice
assignment for cache updates).

Usage: conformance/.venv/bin/python conformance/llm/gen_llm_vectors.py
"""
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "ops"))
from vecgen import b, case, const, f, i, none, out, ref, tensor, write  # noqa: E402

from executorch.extension.llm.custom_ops import custom_ops  # noqa: E402,F401
import executorch.exir.passes._quant_patterns_and_replacements  # noqa: E402,F401

torch.manual_seed(0)
cases = []


def sdpa_math(q, kc, vc, start, mask, causal, scale):
    """[B,S,H,D] reference: first start+S keys, GQA by repeat_interleave."""
    s = q.size(1)
    # The reference attends to the first start+S keys, or to all keys with a mask.
    n = kc.size(1) if mask is not None else start + s
    k = kc[:, :n].transpose(1, 2).float()
    v = vc[:, :n].transpose(1, 2).float()
    rep = q.size(2) // kc.size(2)
    k = k.repeat_interleave(rep, dim=1)
    v = v.repeat_interleave(rep, dim=1)
    qq = q.transpose(1, 2).float()
    if causal:
        m = torch.ones(s, n, dtype=torch.bool).tril(diagonal=start)
    elif mask is not None:
        m = mask[:, :n].float() if mask.dtype != torch.bool else mask[:, :n]
    else:
        m = None
    o = F.scaled_dot_product_attention(qq, k, v, attn_mask=m, scale=scale)
    return o.transpose(1, 2)


def tol(dt):
    return {torch.float32: (2e-5, 1e-4), torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}[dt]


# --- update_cache -------------------------------------------------------------
for (bsz, s, h, d, smax, start) in [(1, 1, 2, 4, 8, 0), (1, 3, 2, 4, 8, 5), (2, 4, 3, 5, 6, 2), (1, 8, 1, 8, 8, 0)]:
    val = torch.randn(bsz, s, h, d)
    cache = torch.randn(bsz, smax, h, d)
    exp = cache.clone()
    torch.ops.llama.update_cache(val, exp, start)
    ref_ = cache.clone()
    ref_[:, start:start + s] = val
    assert torch.equal(exp, ref_)
    cases.append(case(f"update_cache_{bsz}x{s}x{h}x{d}_smax{smax}_at{start}", "llama::update_cache.out",
                      [tensor(val), tensor(cache), i(start), out(torch.float32, [1]), ref(3)], {1: exp}, atol=0, rtol=0))
# f16 cache
val = torch.randn(1, 2, 2, 4).half()
cache = torch.randn(1, 5, 2, 4).half()
exp = cache.clone()
exp[:, 1:3] = val
cases.append(case("update_cache_f16", "llama::update_cache.out",
                  [tensor(val), tensor(cache), i(1), out(torch.float16, [1]), ref(3)], {1: exp}, atol=0, rtol=0))
# errors: overflow, shape mismatch, dtype mismatch
cases.append(case("update_cache_overflow", "llama::update_cache.out",
                  [tensor(torch.randn(1, 3, 2, 4)), tensor(torch.zeros(1, 4, 2, 4)), i(2), out(torch.float32, [1]), ref(3)],
                  {}, error=True))
cases.append(case("update_cache_heads_mismatch", "llama::update_cache.out",
                  [tensor(torch.randn(1, 1, 3, 4)), tensor(torch.zeros(1, 4, 2, 4)), i(0), out(torch.float32, [1]), ref(3)],
                  {}, error=True))
cases.append(case("update_cache_dtype_mismatch", "llama::update_cache.out",
                  [tensor(torch.randn(1, 1, 2, 4).half()), tensor(torch.zeros(1, 4, 2, 4)), i(0), out(torch.float32, [1]), ref(3)],
                  {}, error=True))
cases.append(case("update_cache_negative_pos", "llama::update_cache.out",
                  [tensor(torch.randn(1, 1, 2, 4)), tensor(torch.zeros(1, 4, 2, 4)), i(-1), out(torch.float32, [1]), ref(3)],
                  {}, error=True))

# --- update_cache_with_indices -------------------------------------------------
val = torch.randn(2, 3, 2, 4)
cache = torch.randn(2, 8, 2, 4)
idx = torch.tensor([[5, 0, 7], [1, 2, 3]], dtype=torch.long)
exp = cache.clone()
torch.ops.llama.update_cache_with_indices(val, exp, 0, idx)
ref_ = cache.clone()
for bb in range(2):
    for ss in range(3):
        ref_[bb, idx[bb, ss]] = val[bb, ss]
assert torch.equal(exp, ref_)
cases.append(case("update_cache_with_indices", "llama::update_cache_with_indices.out",
                  [tensor(val), tensor(cache), i(0), tensor(idx), out(torch.float32, [1]), ref(4)], {1: exp}, atol=0, rtol=0))
cases.append(case("update_cache_with_indices_oob", "llama::update_cache_with_indices.out",
                  [tensor(val), tensor(cache), i(0), tensor(torch.tensor([[8, 0, 1], [0, 0, 0]])), out(torch.float32, [1]), ref(4)],
                  {}, error=True))

# --- custom_sdpa ----------------------------------------------------------------
sdpa_shapes = [
    # (B, S, Hq, Hkv, D, Skv, start)
    (1, 1, 4, 4, 8, 16, 0),
    (1, 1, 4, 2, 16, 16, 9),
    (1, 7, 4, 2, 16, 16, 0),
    (1, 5, 4, 1, 8, 32, 11),
    (2, 3, 2, 2, 4, 10, 4),
    (1, 40, 2, 1, 8, 48, 0),       # several query blocks
    (1, 1, 4, 2, 16, 140, 130),    # several key blocks, decode
    (1, 70, 1, 1, 4, 90, 10),      # multi-block prefill with an offset
]
for (bsz, s, hq, hkv, d, skv, start) in sdpa_shapes:
    for dt in [torch.float32, torch.float16, torch.bfloat16]:
        if dt != torch.float32 and (s > 8 or skv > 32):
            continue
        q = torch.randn(bsz, s, hq, d).to(dt)
        kc = torch.randn(bsz, skv, hkv, d).to(dt)
        vc = torch.randn(bsz, skv, hkv, d).to(dt)
        for causal in [True, False]:
            got = torch.ops.llama.custom_sdpa(q, kc, vc, start, None, 0.0, causal, None)
            want = sdpa_math(q, kc, vc, start, None, causal, None)
            at, rt = tol(dt)
            assert torch.allclose(got.float(), want, atol=at * 4, rtol=rt * 4), (bsz, s, hq, hkv, d, skv, start, dt, causal)
            name = f"custom_sdpa_{bsz}x{s}x{hq}/{hkv}x{d}_kv{skv}_at{start}_{'causal' if causal else 'full'}_{str(dt)[6:]}"
            cases.append(case(name, "llama::custom_sdpa.out",
                              [tensor(q), tensor(kc), tensor(vc), i(start), none(), f(0.0), b(causal), none(),
                               out(dt, [bsz, s, hq, d]), ref(8)],
                              {8: got}, atol=at, rtol=rt))
# explicit scale
q = torch.randn(1, 4, 2, 8)
kc = torch.randn(1, 12, 2, 8)
vc = torch.randn(1, 12, 2, 8)
got = torch.ops.llama.custom_sdpa(q, kc, vc, 3, None, 0.0, True, 0.3)
assert torch.allclose(got, sdpa_math(q, kc, vc, 3, None, True, 0.3), atol=1e-5)
cases.append(case("custom_sdpa_scale", "llama::custom_sdpa.out",
                  [tensor(q), tensor(kc), tensor(vc), i(3), none(), f(0.0), b(True), f(0.3), out(torch.float32, [1, 4, 2, 8]), ref(8)],
                  {8: got}, atol=2e-5, rtol=1e-4))
# additive float mask (wider than the keys used)
for start in [0, 3]:
    mask = torch.randn(4, 12)
    mask[0, 1] = float("-inf")
    got = torch.ops.llama.custom_sdpa(q, kc, vc, start, mask, 0.0, False, None)
    assert torch.allclose(got, sdpa_math(q, kc, vc, start, mask, False, None), atol=1e-5)
    cases.append(case(f"custom_sdpa_mask_at{start}", "llama::custom_sdpa.out",
                      [tensor(q), tensor(kc), tensor(vc), i(start), tensor(mask), f(0.0), b(False), none(),
                       out(torch.float32, [1, 4, 2, 8]), ref(8)],
                      {8: got}, atol=2e-5, rtol=1e-4))
# errors
cases.append(case("custom_sdpa_mask_and_causal", "llama::custom_sdpa.out",
                  [tensor(q), tensor(kc), tensor(vc), i(0), tensor(torch.zeros(4, 12)), f(0.0), b(True), none(),
                   out(torch.float32, [1, 4, 2, 8]), ref(8)], {}, error=True))
cases.append(case("custom_sdpa_past_cache_end", "llama::custom_sdpa.out",
                  [tensor(q), tensor(kc), tensor(vc), i(9), none(), f(0.0), b(True), none(),
                   out(torch.float32, [1, 4, 2, 8]), ref(8)], {}, error=True))
cases.append(case("custom_sdpa_bad_gqa", "llama::custom_sdpa.out",
                  [tensor(torch.randn(1, 1, 3, 8)), tensor(kc), tensor(vc), i(0), none(), f(0.0), b(True), none(),
                   out(torch.float32, [1, 1, 3, 8]), ref(8)], {}, error=True))
cases.append(case("custom_sdpa_3d_query", "llama::custom_sdpa.out",
                  [tensor(torch.randn(1, 2, 8)), tensor(kc), tensor(vc), i(0), none(), f(0.0), b(True), none(),
                   out(torch.float32, [1, 2, 8]), ref(8)], {}, error=True))

# --- sdpa_with_kv_cache ----------------------------------------------------------
for (s, hq, hkv, d, smax, start, causal) in [(1, 4, 4, 8, 10, 0, True), (3, 4, 2, 8, 10, 2, True), (1, 4, 2, 8, 10, 6, False), (5, 2, 1, 16, 80, 70, True)]:
    q = torch.randn(1, s, hq, d)
    k = torch.randn(1, s, hkv, d)
    v = torch.randn(1, s, hkv, d)
    kc = torch.randn(1, smax, hkv, d)
    vc = torch.randn(1, smax, hkv, d)
    kc2, vc2 = kc.clone(), vc.clone()
    got = torch.ops.llama.sdpa_with_kv_cache(q, k, v, kc2, vc2, start, s, None, 0.0, causal)
    kr, vr = kc.clone(), vc.clone()
    kr[:, start:start + s] = k
    vr[:, start:start + s] = v
    assert torch.equal(kr, kc2) and torch.equal(vr, vc2)
    assert torch.allclose(got, sdpa_math(q, kr, vr, start, None, causal, None), atol=1e-5)
    cases.append(case(f"sdpa_with_kv_cache_{s}x{hq}/{hkv}x{d}_at{start}_{'causal' if causal else 'full'}",
                      "llama::sdpa_with_kv_cache.out",
                      [tensor(q), tensor(k), tensor(v), tensor(kc), tensor(vc), i(start), i(s), none(), f(0.0), b(causal), none(),
                       out(torch.float32, [1, s, hq, d]), ref(11)],
                      {11: got, 3: kc2, 4: vc2}, atol=2e-5, rtol=1e-4))

# --- quantized embeddings ---------------------------------------------------------
qd = torch.ops.quantized_decomposed
for groups in [None, 4]:
    vocab, dim = 10, 16
    w = torch.randint(-128, 127, (vocab, dim), dtype=torch.int8)
    sc = torch.rand(vocab, groups) * 0.1 + 0.01 if groups else torch.rand(vocab) * 0.1 + 0.01
    zp = torch.randint(-3, 3, sc.shape).float()
    idx = torch.tensor([[0, 3, 9], [2, 2, 5]])
    for z in [None, zp]:
        want = qd.embedding_byte(w, sc, z, -128, 127, idx)
        name = f"embedding_byte_{'g' + str(groups) if groups else 'row'}_{'zp' if z is not None else 'nozp'}"
        cases.append(case(name, "quantized_decomposed::embedding_byte.out",
                          [const(w), const(sc), const(z) if z is not None else none(), i(-128), i(127), tensor(idx),
                           out(torch.float32, [2, 3, dim]), ref(6)], {6: want}, atol=1e-6, rtol=1e-6))
    want = qd.embedding_byte.dtype(w, sc.half(), None, -128, 127, idx, dtype=torch.float32)
    cases.append(case(f"embedding_byte_dtype_{groups}", "quantized_decomposed::embedding_byte.dtype_out",
                      [const(w), const(sc.half()), none(), i(-128), i(127), tensor(idx), i(6),
                       out(torch.float32, [2, 3, dim]), ref(7)], {7: want}, atol=1e-2, rtol=1e-3))  # reference rounds through f16
    w4 = torch.randint(0, 256, (vocab, dim // 2), dtype=torch.uint8)
    want = qd.embedding_4bit(w4, sc, None, -8, 7, idx)
    cases.append(case(f"embedding_4bit_{groups}", "quantized_decomposed::embedding_4bit.out",
                      [const(w4), const(sc), none(), i(-8), i(7), tensor(idx),
                       out(torch.float32, [2, 3, dim]), ref(6)], {6: want}, atol=1e-6, rtol=1e-6))
cases.append(case("embedding_byte_index_oob", "quantized_decomposed::embedding_byte.out",
                  [const(torch.zeros(4, 8, dtype=torch.int8)), const(torch.ones(4)), none(), i(-128), i(127),
                   tensor(torch.tensor([4])), out(torch.float32, [1, 8]), ref(6)], {}, error=True))

# --- per-token quantization (ExecuTorch's C++ kernels via executorch.kernels.quantized) ---
import executorch.kernels.quantized  # noqa: E402,F401  (quantized_decomposed::*.out = the reference kernels)


def choose_pt(x):
    sc = torch.zeros(list(x.shape[:-1]) + [1], dtype=torch.float64)
    zp = torch.zeros(list(x.shape[:-1]) + [1], dtype=torch.int64)
    qd.choose_qparams_per_token_asymmetric.out(x, torch.int8, scale_out=sc, zero_point_out=zp)
    return sc, zp


def quant_pt(x, sc, zp):
    o = torch.zeros(x.shape, dtype=torch.int8)
    qd.quantize_per_token.out(x, sc, zp, -128, 127, torch.int8, out=o)
    return o


for name, x in [
    ("rows", torch.randn(2, 3, 16)),
    ("positive", torch.rand(4, 8) + 0.5),
    ("negative", -torch.rand(1, 5, 2, 8) - 0.1),
    ("constant", torch.zeros(3, 4)),
    ("tiny", torch.randn(2, 8) * 1e-6),
    ("wide", torch.randn(1, 2, 130) * 50),
]:
    sc, zp = choose_pt(x)
    cases.append(case(f"choose_qparams_per_token_{name}", "quantized_decomposed::choose_qparams_per_token_asymmetric.out",
                      [tensor(x), i(1), out(torch.float64, list(sc.shape)), out(torch.int64, list(zp.shape)), none()],
                      # rtol 1e-15: serde_json's default float parsing may be off by one f64 ulp
                      {2: sc, 3: zp}, atol=0, rtol=1e-15))
    qx = quant_pt(x, sc, zp)
    cases.append(case(f"quantize_per_token_{name}", "quantized_decomposed::quantize_per_token.out",
                      [tensor(x), tensor(sc), tensor(zp), i(-128), i(127), i(1), out(torch.int8, list(x.shape)), ref(6)],
                      {6: qx}, atol=0, rtol=0))
cases.append(case("quantize_per_token_bad_range", "quantized_decomposed::quantize_per_token.out",
                  [tensor(torch.randn(2, 4)), tensor(torch.ones(2, 1, dtype=torch.float64)), tensor(torch.zeros(2, 1, dtype=torch.int64)),
                   i(-300), i(127), i(1), out(torch.int8, [2, 4]), ref(6)], {}, error=True))
cases.append(case("quantize_per_token_count", "quantized_decomposed::quantize_per_token.out",
                  [tensor(torch.randn(2, 4)), tensor(torch.ones(3, 1, dtype=torch.float64)), tensor(torch.zeros(3, 1, dtype=torch.int64)),
                   i(-128), i(127), i(1), out(torch.int8, [2, 4]), ref(6)], {}, error=True))


# --- custom_quantized_sdpa ------------------------------------------------------------
def q8(x):
    """int8 per-row quantization as the quantized KV cache does it; qparams as int8/f32."""
    sc, zp = choose_pt(x)
    return quant_pt(x, sc, zp), zp.to(torch.int8), sc.to(torch.float32)


def deq(qx, zp, sc):
    return (qx.float() - zp.float()) * sc


for (bsz, s, hq, hkv, d, skv, start) in [
    (1, 1, 4, 2, 16, 16, 9),
    (1, 7, 4, 2, 16, 16, 0),
    (1, 5, 4, 1, 8, 32, 11),
    (2, 3, 2, 2, 4, 10, 4),
    (1, 40, 2, 1, 8, 48, 0),
    (1, 1, 4, 2, 16, 140, 130),
]:
    for dim2 in [False, True]:
        shp = (lambda n, h: (bsz, h, n, d) if dim2 else (bsz, n, h, d))
        qf, kf, vf = torch.randn(*shp(s, hq)), torch.randn(*shp(skv, hkv)), torch.randn(*shp(skv, hkv))
        (qq, qz, qs), (kq, kz, ks), (vq, vz, vs) = q8(qf), q8(kf), q8(vf)
        for causal in [True, False]:
            if (s > 8 or skv > 32) and causal == dim2:
                continue  # large shapes: one causal and one full case (keeps the file small)
            got = torch.ops.llama.custom_quantized_sdpa(qq, kq, vq, start, None, 0.0, causal, None,
                                                        qz, qs, kz, ks, vz, vs, dim2)
            tr = (lambda t: t.transpose(1, 2)) if dim2 else (lambda t: t)
            want = sdpa_math(tr(deq(qq, qz, qs)), tr(deq(kq, kz, ks)), tr(deq(vq, vz, vs)), start, None, causal, None)
            assert torch.allclose(tr(got), want, atol=1e-4, rtol=1e-4), (bsz, s, hq, hkv, d, skv, start, dim2, causal)
            name = (f"custom_quantized_sdpa_{bsz}x{s}x{hq}/{hkv}x{d}_kv{skv}_at{start}"
                    f"_{'causal' if causal else 'full'}{'_dim2' if dim2 else ''}")
            cases.append(case(name, "llama::custom_quantized_sdpa.out",
                              [tensor(qq), tensor(kq), tensor(vq), i(start), none(), f(0.0), b(causal), none(),
                               tensor(qz), tensor(qs), tensor(kz), tensor(ks), tensor(vz), tensor(vs), b(dim2),
                               out(torch.float32, list(qq.shape)), ref(15)],
                              {15: got}, atol=2e-5, rtol=1e-4))
# float q/k/v through the quantized op (qparams ignored), and errors
qf, kf, vf = torch.randn(1, 3, 2, 8), torch.randn(1, 12, 2, 8), torch.randn(1, 12, 2, 8)
(qq, qz, qs), (kq, kz, ks), (vq, vz, vs) = q8(qf), q8(kf), q8(vf)
got = torch.ops.llama.custom_sdpa(qf, kf, vf, 2, None, 0.0, True, None)
cases.append(case("custom_quantized_sdpa_float_inputs", "llama::custom_quantized_sdpa.out",
                  [tensor(qf), tensor(kf), tensor(vf), i(2), none(), f(0.0), b(True), none(),
                   none(), none(), none(), none(), none(), none(), b(False), out(torch.float32, [1, 3, 2, 8]), ref(15)],
                  {15: got}, atol=2e-5, rtol=1e-4))
# additive float mask over all 12 keys (is_causal False), as QuantizedSDPA(use_attention_mask=True) calls it
mask = torch.randn(3, 12)
mask[0, 5:] = float("-inf")
got = torch.ops.llama.custom_quantized_sdpa(qq, kq, vq, 0, mask, 0.0, False, None, qz, qs, kz, ks, vz, vs, False)
want = sdpa_math(deq(qq, qz, qs), deq(kq, kz, ks), deq(vq, vz, vs), 0, mask, False, None)
assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
cases.append(case("custom_quantized_sdpa_mask", "llama::custom_quantized_sdpa.out",
                  [tensor(qq), tensor(kq), tensor(vq), i(0), tensor(mask), f(0.0), b(False), none(),
                   tensor(qz), tensor(qs), tensor(kz), tensor(ks), tensor(vz), tensor(vs), b(False),
                   out(torch.float32, [1, 3, 2, 8]), ref(15)], {15: got}, atol=2e-5, rtol=1e-4))
cases.append(case("custom_quantized_sdpa_missing_qparams", "llama::custom_quantized_sdpa.out",
                  [tensor(qq), tensor(kq), tensor(vq), i(2), none(), f(0.0), b(True), none(),
                   tensor(qz), tensor(qs), none(), none(), tensor(vz), tensor(vs), b(False), out(torch.float32, [1, 3, 2, 8]), ref(15)],
                  {}, error=True))
cases.append(case("custom_quantized_sdpa_bad_qparam_shape", "llama::custom_quantized_sdpa.out",
                  [tensor(qq), tensor(kq), tensor(vq), i(2), none(), f(0.0), b(True), none(),
                   tensor(qz), tensor(qs), tensor(kz[:, :6]), tensor(ks[:, :6]), tensor(vz), tensor(vs), b(False),
                   out(torch.float32, [1, 3, 2, 8]), ref(15)], {}, error=True))
cases.append(case("custom_quantized_sdpa_past_cache_end", "llama::custom_quantized_sdpa.out",
                  [tensor(qq), tensor(kq), tensor(vq), i(10), none(), f(0.0), b(True), none(),
                   tensor(qz), tensor(qs), tensor(kz), tensor(ks), tensor(vz), tensor(vs), b(False),
                   out(torch.float32, [1, 3, 2, 8]), ref(15)], {}, error=True))

write("llm", cases)
