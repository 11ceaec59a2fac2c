#!/usr/bin/env python3
"""pteron vs ExecuTorch's TextLLMRunner on an export_llm program (prefill/decode speed).

Run:  conformance/.venv/bin/python bench/llm_compare.py [--model 15m|1b] [--threads 2]
          [--max-new-tokens 128] [--prompt-tokens 128] [--json-out FILE]

1. Builds on demand into bench/models/llm_<model>/ (gitignored; reused when present):
   - tokenizer.model: SentencePiece BPE (byte fallback, bos 1, eos 2) with a 32000-token
     vocabulary, trained offline on generated text (pseudo-words made of random syllables,
     so that there are enough distinct merges for 32000 pieces);
   - checkpoint.pth: a random Llama checkpoint from conformance/llm's make_checkpoint
     (weights scaled for unit-variance activations);
   - program.pte: `python -m executorch.extension.llm.export.export_llm` with XNNPACK,
     qmode 8da4w group 32, 4-bit group-32 embedding ("4,32"), KV cache,
     use_sdpa_with_kv_cache, dynamic shapes (the keys conformance/llm/make_fixtures.py uses).
   --model 15m: stories15M's shape (dim 288, 6 layers, 6 heads / 6 KV heads, vocab 32000,
   context 256). --model 110m: stories110M's shape (dim 768, 12 layers, 12 heads, vocab
   32000, context 256; the 15m tokenizer), a mid-size program for load time and peak
   memory. --model 1b: Llama-3.2-1B's shape (dim 2048, 16 layers, 32 heads, 8 KV heads,
   ffn multiplier 1.5, multiple_of 256 -> hidden 8192, vocab 128256, untied output, about
   1.50 B parameters) with a tiktoken tokenizer written offline (128000 ranked byte strings:
   the 256 bytes, then pseudo-word pieces, shortest first; plus the 256 Llama 3 special
   tokens = 128256 ids, BOS <|begin_of_text|> 128000, EOS 128001/128009) and a checkpoint
   generated tensor by tensor (meta-device model for the shapes; same scaling as
   make_checkpoint; ~6 GB fp32, loaded by export_llm with mmap).
   Resources for 1b (2 cores / 24 GB box): see bench/README.md; the build refuses to start
   unless `--allow-big` is given, and a watchdog kills the export if available memory drops
   under --min-free-gb.
2. Reference: a child process drives ExecuTorch's python TextLLMRunner binding
   (executorch.extension.llm.runner) greedily and reports its Stats; its thread pool is
   reset to T through portable_lib._unsafe_reset_threadpool before the runner is created.
   The token ids come from executorch.runtime driving the same program the way
   make_fixtures.py's `drive` does (its text is checked against TextLLMRunner's text).
3. pteron: `target/release/pteron generate --model ... --tokenizer ... --prompt-file ...
   --max-new-tokens N --temperature 0 --threads T`; the statistics line on stderr is parsed.
   Both children's peak RSS comes from os.wait4 (the reference's includes the Python
   interpreter and torch, which the runner binding imports).
4. Prints load ms, time to first token, prefill and decode tok/s, peak RSS, the
   pteron/reference ratios, whether the generated tokens agree, the weight bytes read per
   decoded token (the .pte's size minus the 4-bit embedding table, of which a decoded token
   reads one row) and the bandwidth that implies (bytes x decode tok/s), beside the
   machine's main-memory read bandwidth with the same thread count as `pteron sysinfo
   --bandwidth` measures it (a 1 GiB buffer read 5 times; `--skip-bandwidth` skips it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "bench" / "models"
CONF_LLM = ROOT / "conformance" / "llm"
DEFAULT_PTERON = ROOT / "target" / "release" / "pteron"
PY = sys.executable
TOKENIZER_VOCAB = 32000

CONFIGS = {
    "15m": {
        "params": {
            "dim": 288,
            "n_layers": 6,
            "n_heads": 6,
            "n_kv_heads": 6,
            "vocab_size": 32000,
            "multiple_of": 32,
            "norm_eps": 1e-05,
            "rope_theta": 10000.0,
            "use_scaled_rope": False,
        },
        "max_seq_len": 256,
    },
    "110m": {
        "params": {
            "dim": 768,
            "n_layers": 12,
            "n_heads": 12,
            "n_kv_heads": 12,
            "vocab_size": 32000,
            "multiple_of": 32,
            "norm_eps": 1e-05,
            "rope_theta": 10000.0,
            "use_scaled_rope": False,
        },
        "max_seq_len": 256,
    },
    "1b": {
        "params": {
            "dim": 2048,
            "n_layers": 16,
            "n_heads": 32,
            "n_kv_heads": 8,
            "vocab_size": 128256,
            "ffn_dim_multiplier": 1.5,
            "multiple_of": 256,
            "norm_eps": 1e-05,
            "rope_theta": 500000.0,
            "use_scaled_rope": True,
        },
        "max_seq_len": 256,
        "tokenizer": "tiktoken",
        "bos": 128000,
        "eos": [128001, 128009],
    },
}

EMB_GROUP = 32


# --------------------------------------------------------------------------
# Model building
# --------------------------------------------------------------------------


def synthetic_lines(n=150000, n_words=60000, seed=0):
    """Sentences of pseudo-words (random syllables): enough variety for 32000 BPE pieces."""
    rng = random.Random(seed)
    cons = "b c d f g h j k l m n p r s t v w z ch sh th st tr br pl gr".split()
    vows = "a e i o u ai ea oo ou ie".split()
    words = set()
    while len(words) < n_words:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 4)))
        words.add(w + rng.choice(["", "n", "s", "r", "t", "ng"]))
    words = sorted(words)
    lines = []
    for _ in range(n):
        s = " ".join(rng.choice(words) for _ in range(rng.randint(4, 14)))
        lines.append(s[0].upper() + s[1:] + rng.choice(".!?,"))
    return lines


def train_tokenizer(path: Path, vocab=TOKENIZER_VOCAB):
    import io

    import sentencepiece as spm

    buf = io.BytesIO()
    # Same trainer settings as conformance/llm/make_tokenizer_and_checkpoint.py.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(synthetic_lines()),
        model_writer=buf,
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
        normalization_rule_name="identity",
    )
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)


TIKTOKEN_BASE = 128000


def write_tiktoken(path: Path, n=TIKTOKEN_BASE, seed=0):
    """A tiktoken file (`base64(bytes) rank` per line) with n ranks: the 256 single bytes,
    then distinct pseudo-word pieces (with and without a leading space), shortest first so
    that longer pieces are reachable by merges of shorter ones."""
    import base64

    rng = random.Random(seed)
    cons = "b c d f g h j k l m n p r s t v w z ch sh th st tr br pl gr".split()
    vows = "a e i o u ai ea oo ou ie".split()
    toks = [bytes([b]) for b in range(256)]
    seen = set(toks)
    cand = set()
    while len(cand) < (n - 256) * 2:
        w = "".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.randint(1, 4)))
        w += rng.choice(["", "n", "s", "r", "t", "ng"])
        for k in range(2, len(w) + 1):
            cand.add(w[:k].encode())
            cand.add((" " + w[:k]).encode())
    for t in sorted(cand, key=lambda b: (len(b), b)):
        if len(toks) >= n:
            break
        if t not in seen:
            seen.add(t)
            toks.append(t)
    assert len(toks) == n, len(toks)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        for rank, t in enumerate(toks):
            fh.write(f"{base64.b64encode(t).decode()} {rank}\n")
    tmp.replace(path)


def make_checkpoint_lean(out_dir: Path, params, max_seq_len, seed=1234, out_gain=4.0):
    """make_checkpoint's weights (norms ~1 + 0.1 N(0,1), embedding N(0,1), linears
    N(0, 1/fan_in), output x out_gain) without materializing the model: shapes from a
    meta-device model, one tensor at a time."""
    import torch
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    args = ModelArgs(max_seq_len=max_seq_len, max_context_len=max_seq_len, **params)
    with torch.device("meta"):
        model = construct_transformer(args)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in model.state_dict().items():
        if name.endswith("norm.weight") or "norm" in name.split(".")[-2]:
            v = torch.ones(t.shape) + 0.1 * torch.randn(t.shape, generator=g)
        elif name == "tok_embeddings.weight":
            v = torch.randn(t.shape, generator=g)
        elif t.dim() == 2:
            gain = out_gain if name == "output.weight" else 1.0
            v = torch.randn(t.shape, generator=g).mul_(gain / t.shape[1] ** 0.5)
        else:
            continue
        sd[name] = v
    path = out_dir / "checkpoint.pth"
    torch.save(sd, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return path


class Tok:
    """The prompt-side tokenizer: SentencePiece (15m) or tiktoken (1b)."""

    def __init__(self, path: Path, kind: str):
        self.kind = kind
        if kind == "tiktoken":
            from pytorch_tokenizers.tiktoken import TiktokenTokenizer

            self.t = TiktokenTokenizer(str(path))
            self.bos = 128000
        else:
            import sentencepiece as spm

            self.t = spm.SentencePieceProcessor(model_file=str(path))
            self.bos = 1

    def encode(self, text):
        if self.kind == "tiktoken":
            return [self.bos] + self.t.encode(text, bos=False, eos=False)
        return [self.bos] + self.t.encode(text)

    def text(self, ids):
        """What the runners print for generated ids."""
        if self.kind == "tiktoken":
            return self.t.decode(ids)
        sys.path.insert(0, str(CONF_LLM))
        from make_fixtures import piece_text

        return piece_text(self.t, ids, prev_is_bos=False)

    def byte_text(self, ids):
        """What pteron prints for generated ids: byte-fallback pieces (`<0x66>`) as the bytes
        they stand for, so the text is valid UTF-8 (the reference runner prints the piece
        names). An incomplete trailing character is left out."""
        if self.kind == "tiktoken":
            return self.t.decode(ids)
        out = bytearray()
        for t in ids:
            p = self.t.id_to_piece(t)
            m = re.fullmatch(r"<0x([0-9A-Fa-f]{2})>", p)
            if m:
                out.append(int(m.group(1), 16))
            else:
                out += p.replace("\u2581", " ").encode()
        return out.decode("utf-8", errors="ignore")


def make_checkpoint(out_dir: Path, params):
    sys.path.insert(0, str(CONF_LLM))
    from make_tokenizer_and_checkpoint import make_checkpoint as conf_make_checkpoint

    return conf_make_checkpoint(str(out_dir), params)


def export_program(out_dir: Path, params_path: Path, ckpt: Path, max_seq_len: int,
                   bos=1, eos=(2,), min_free_gb=None):
    cmd = [
        PY, "-m", "executorch.extension.llm.export.export_llm",
        f"base.params={params_path}",
        f"base.checkpoint={ckpt}",
        f"export.output_dir={out_dir}",
        "export.output_name=program.tmp.pte",
        "model.use_kv_cache=True",
        "model.use_sdpa_with_kv_cache=True",
        f"export.max_seq_length={max_seq_len}",
        f"export.max_context_length={max_seq_len}",
        'base.metadata="{\\"get_bos_id\\":%d,\\"get_eos_ids\\":[%s]}"'
        % (bos, ",".join(str(e) for e in eos)),
        "model.enable_dynamic_shape=True",
        "backend.xnnpack.enabled=True",
        "quantization.qmode=8da4w",
        f"quantization.group_size={EMB_GROUP}",
        f'quantization.embedding_quantize="4,{EMB_GROUP}"',
    ]
    log = out_dir / "export.log"
    with open(log, "w") as fh:
        p = subprocess.Popen(cmd, cwd=out_dir, stdout=fh, stderr=subprocess.STDOUT)
        peak = watch(p, min_free_gb)
    print(f"[build]   export peak RSS {peak / 2**30:.1f} GiB", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"export failed (rc {p.returncode}), see {log}")
    (out_dir / "program.tmp.pte").replace(out_dir / "program.pte")


def mem_available_gb():
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 2**20
    return float("inf")


def watch(p, min_free_gb):
    """Waits for p, sampling its RSS; kills it if the machine's available memory falls
    under min_free_gb (the box is shared). Returns the peak RSS in bytes seen."""
    peak = 0
    while p.poll() is None:
        try:
            rss = int(Path(f"/proc/{p.pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            peak = max(peak, rss)
        except (OSError, ValueError):
            pass
        if min_free_gb is not None and mem_available_gb() < min_free_gb:
            p.kill()
            p.wait()
            raise SystemExit(f"killed the export: available memory under {min_free_gb} GB "
                             f"(its RSS {peak / 2**30:.1f} GiB)")
        time.sleep(1.0)
    return peak


def ensure_model(name: str, allow_big=False, min_free_gb=3.0):
    cfg = CONFIGS[name]
    out = MODELS_DIR / f"llm_{name}"
    out.mkdir(parents=True, exist_ok=True)
    tok = out / "tokenizer.model"
    pte = out / "program.pte"
    kind = cfg.get("tokenizer", "sentencepiece")
    if name == "1b" and not pte.exists() and not allow_big:
        raise SystemExit("--model 1b builds a ~1 GB program from a 6 GB checkpoint (needs "
                         "~7 GB disk, up to ~15 GB RAM, 10-25 min on 2 cores); pass --allow-big")
    if not tok.exists() and kind == "tiktoken":
        t0 = time.time()
        print(f"[build] writing a {TIKTOKEN_BASE}-rank tiktoken file (+256 specials) ...",
              flush=True)
        write_tiktoken(tok)
        print(f"[build]   {time.time() - t0:.1f}s", flush=True)
    if not tok.exists():
        t0 = time.time()
        print(f"[build] training {TOKENIZER_VOCAB}-piece tokenizer ...", flush=True)
        shared = MODELS_DIR / "llm_15m" / "tokenizer.model"
        if shared.exists() and name != "15m":
            tok.write_bytes(shared.read_bytes())
        else:
            train_tokenizer(tok)
        print(f"[build]   {time.time() - t0:.1f}s", flush=True)
    if pte.exists():
        print(f"[build] {pte.relative_to(ROOT)} present, reusing", flush=True)
    else:
        params_path = out / "params.json"
        params_path.write_text(json.dumps(cfg["params"], indent=1))
        ckpt = out / "checkpoint.pth"
        if not ckpt.exists():
            t0 = time.time()
            print("[build] random checkpoint ...", flush=True)
            if kind == "tiktoken":
                make_checkpoint_lean(out, cfg["params"], cfg["max_seq_len"])
            else:
                make_checkpoint(out, cfg["params"])
            print(f"[build]   {time.time() - t0:.1f}s", flush=True)
        t0 = time.time()
        print("[build] export_llm (xnnpack, 8da4w g32, emb 4,32, kv cache, sdpa, dynamic) ...",
              flush=True)
        export_program(out, params_path, ckpt, cfg["max_seq_len"], cfg.get("bos", 1),
                       cfg.get("eos", [2]), min_free_gb)
        print(f"[build]   {time.time() - t0:.1f}s, {pte.stat().st_size / 1e6:.2f} MB", flush=True)
    return out, pte, tok


def make_prompt(tok: Path, out_dir: Path, n_tokens: int, kind="sentencepiece"):
    """A prompt of exactly n_tokens ids including BOS (or the nearest length above)."""
    sp = Tok(tok, kind)
    words = synthetic_lines(n=400, seed=7)
    text = ""
    ids = [sp.bos]
    for line in words:
        for w in line.split(" "):
            cand = (text + " " + w) if text else w
            cids = sp.encode(cand)
            if len(cids) > n_tokens:
                break
            text, ids = cand, cids
        else:
            continue
        break
    # Top up with punctuation and short words to reach the exact length.
    for _ in range(8):
        for w in [",", "!", "?", ".", " ba", " ta", " ma", " a", " e"]:
            if len(ids) >= n_tokens:
                break
            cids = sp.encode(text + w)
            if len(cids) <= n_tokens:
                text, ids = text + w, cids
    p = out_dir / f"prompt_{n_tokens}.txt"
    p.write_text(text)
    return p, text, ids


# --------------------------------------------------------------------------
# Reference (child process)
# --------------------------------------------------------------------------


def ref_worker(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(args.threads)
    threads = portable_lib._threadpool_get_thread_count()
    sys.path.insert(0, str(CONF_LLM))
    import make_fixtures as mf

    mf.load_ops()  # llama:: and quantized_decomposed:: kernels, as make_fixtures.py does
    from executorch.extension.llm.runner import GenerationConfig, TextLLMRunner

    prompt = Path(args.prompt_file).read_text()
    t0 = time.perf_counter()
    r = TextLLMRunner(args.pte, args.tok)
    construct_ms = (time.perf_counter() - t0) * 1e3
    pieces = []
    stats = {}

    def on_stats(s):
        try:
            stats["json"] = json.loads(s.to_json_string())
        except ValueError:
            stats["json"] = s.to_json_string()
        for k in ("model_load_start_ms", "model_load_end_ms", "inference_start_ms",
                  "token_encode_end_ms", "prompt_eval_end_ms", "first_token_ms",
                  "inference_end_ms", "aggregate_sampling_time_ms",
                  "num_prompt_tokens", "num_generated_tokens"):
            stats[k] = getattr(s, k)

    cfg = GenerationConfig(echo=False, max_new_tokens=args.max_new_tokens, temperature=0.0,
                           num_bos=1)
    r.generate(prompt, cfg, token_callback=pieces.append, stats_callback=on_stats)
    print(json.dumps({"threads": threads, "construct_ms": construct_ms, "stats": stats,
                      "text": "".join(pieces)}))
    return 0


def ids_worker(args) -> int:
    """Greedy ids from executorch.runtime, driven like make_fixtures.py's `drive`."""
    sys.path.insert(0, str(CONF_LLM))
    import make_fixtures as mf

    mf.load_ops()
    mf.MAX_NEW = args.max_new_tokens
    prompt_ids = json.loads(args.prompt_ids)
    gen, _, _ = mf.drive(args.pte, prompt_ids, json.loads(args.eos_ids))
    print(json.dumps({"ids": gen}))
    return 0


def run_measured(cmd, timeout):
    """Runs cmd; returns (rc, stdout, stderr, wall_s, the child's own peak RSS from os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    import threading

    bufs = {"out": "", "err": ""}

    def rd(stream, key):
        bufs[key] = stream.read()

    ts = [threading.Thread(target=rd, args=(p.stdout, "out")),
          threading.Thread(target=rd, args=(p.stderr, "err"))]
    for t in ts:
        t.start()
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    _, status, ru = os.wait4(p.pid, 0)
    timer.cancel()
    for t in ts:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, bufs["out"], bufs["err"], time.perf_counter() - t0, ru.ru_maxrss * 1024


def run_reference(args, pte, tok, prompt_file):
    cmd = [PY, str(Path(__file__).resolve()), "--worker", "ref", "--pte", str(pte),
           "--tok", str(tok), "--prompt-file", str(prompt_file), "--threads", str(args.threads),
           "--max-new-tokens", str(args.max_new_tokens)]
    rc, out, err, wall, rss = run_measured(cmd, args.timeout_s)
    if rc != 0:
        return {"error": f"rc {rc}: {err.strip()[-800:]}"}
    d = json.loads(out.strip().splitlines()[-1])
    s = d["stats"]
    n_prompt = s["num_prompt_tokens"]
    n_gen = s["num_generated_tokens"]
    prefill_ms = s["prompt_eval_end_ms"] - s["inference_start_ms"]
    # The reference's num_generated_tokens leaves out the first token (sampled from the prefill
    # logits): its text has n_gen + 1 tokens, and n_gen forward calls run between first_token
    # and inference_end; pteron's rate is likewise (generated - 1) / decode time.
    decode_ms = s["inference_end_ms"] - s["first_token_ms"]
    return {
        "threads": d["threads"],
        "load_ms": s["model_load_end_ms"] - s["model_load_start_ms"],
        "construct_ms": d["construct_ms"],
        "ttft_ms": s["first_token_ms"] - s["inference_start_ms"],
        "prompt_tokens": n_prompt,
        "generated_tokens": n_gen + 1,
        "prefill_ms": prefill_ms,
        "prefill_tok_s": n_prompt / (prefill_ms / 1e3) if prefill_ms > 0 else None,
        "decode_ms": decode_ms,
        "decode_tok_s": n_gen / (decode_ms / 1e3) if decode_ms > 0 else None,
        "peak_rss_bytes": rss,
        "text": d["text"],
        "raw_stats": s,
    }


def reference_ids(args, pte, prompt_ids):
    cmd = [PY, str(Path(__file__).resolve()), "--worker", "ids", "--pte", str(pte),
           "--prompt-ids", json.dumps(prompt_ids), "--max-new-tokens", str(args.max_new_tokens),
           "--eos-ids", json.dumps(CONFIGS[args.model].get("eos", [2])),
           "--threads", str(args.threads)]
    rc, out, err, _, _ = run_measured(cmd, args.timeout_s)
    if rc != 0:
        return None, f"rc {rc}: {err.strip()[-800:]}"
    return json.loads(out.strip().splitlines()[-1])["ids"], None


STATS_RE = re.compile(
    r"load ([\d.]+) ms \| prompt (\d+) tok, prefill ([\d.]+) ms \(([\d.]+|inf|NaN) tok/s\) \| "
    r"first token ([\d.]+) ms \| generated (\d+) tok, decode ([\d.]+) ms \(([\d.]+|inf|NaN) tok/s\)")


def run_pteron(args, pte, tok, prompt_file):
    if not Path(args.pteron).exists():
        return {"error": f"{args.pteron} not found (cargo build --release -p pteron-cli)"}
    cmd = [str(args.pteron), "generate", "--model", str(pte), "--tokenizer", str(tok),
           "--prompt-file", str(prompt_file), "--max-new-tokens", str(args.max_new_tokens),
           "--temperature", "0", "--threads", str(args.threads)]
    rc, out, err, wall, rss = run_measured(cmd, args.timeout_s)
    if rc != 0:
        return {"error": f"rc {rc}: {err.strip()[-800:]}"}
    m = STATS_RE.search(err)
    if not m:
        return {"error": f"no statistics line in stderr: {err[-800:]}"}
    g = m.groups()
    text = out[:-1] if out.endswith("\n") else out
    return {
        "load_ms": float(g[0]),
        "prompt_tokens": int(g[1]),
        "prefill_ms": float(g[2]),
        "prefill_tok_s": float(g[3]),
        "ttft_ms": float(g[4]),
        "generated_tokens": int(g[5]),
        "decode_ms": float(g[6]),
        "decode_tok_s": float(g[7]),
        "peak_rss_bytes": rss,
        "text": text,
        "stderr": err.strip(),
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def embedding_bytes(params):
    """4-bit embedding table: vocab x dim nibbles + one fp32 scale per group of 32."""
    v, d = params["vocab_size"], params["dim"]
    return v * d // 2 + v * (d // EMB_GROUP) * 4


def prefix_tokens(to_text, ids, text):
    """How many leading ids' text (`to_text(ids[:k])`) is a prefix of `text`."""
    n = 0
    for k in range(1, len(ids) + 1):
        if not text.startswith(to_text(ids[:k])):
            break
        n = k
    return n


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def mib(b):
    return None if b is None else b / 2**20


def report(model, args, pte, ref, pt, ids_ref, ids_err, prompt_ids):
    params = CONFIGS[model]["params"]
    size = pte.stat().st_size
    per_tok = size - embedding_bytes(params) + params["dim"] // 2 + (params["dim"] // EMB_GROUP) * 4
    rows = [
        ("load ms", "load_ms", ".1f", False),
        ("time to first token ms", "ttft_ms", ".1f", False),
        ("prompt tokens", "prompt_tokens", "d", None),
        ("prefill tok/s", "prefill_tok_s", ".1f", True),
        ("generated tokens", "generated_tokens", "d", None),
        ("decode tok/s", "decode_tok_s", ".1f", True),
        ("peak RSS MiB", "peak_rss_bytes", ".1f", False),
    ]
    print()
    print(f"model {model}: {pte.relative_to(ROOT)} ({size / 1e6:.2f} MB), threads {args.threads}"
          f" (reference pool: {ref.get('threads', '?')}), max new tokens {args.max_new_tokens}")
    for name, r in (("reference", ref), ("pteron", pt)):
        if "error" in r:
            print(f"{name} FAILED: {r['error']}")
    print()
    print("| metric | reference (TextLLMRunner) | pteron | pteron/reference |")
    print("|---|---|---|---|")
    for label, key, spec, higher_better in rows:
        a, b = ref.get(key), pt.get(key)
        if key == "peak_rss_bytes":
            a, b = mib(a), mib(b)
        ratio = "-"
        if higher_better is not None and a and b:
            ratio = f"{b / a:.2f}x"
        print(f"| {label} | {fmt(a, spec)} | {fmt(b, spec)} | {ratio} |")
    # Token agreement.
    agree = {}
    if "text" in ref and "text" in pt:
        agree["text_pteron_vs_textllmrunner"] = ref["text"] == pt["text"]
    if ids_ref is not None and "text" in pt:
        sp = Tok(pte.parent / "tokenizer.model", CONFIGS[model].get("tokenizer", "sentencepiece"))
        ref_ids_text = sp.text(ids_ref)
        agree["text_pteron_vs_runtime_ids"] = sp.byte_text(ids_ref) == pt["text"]
        agree["text_textllmrunner_vs_runtime_ids"] = ref_ids_text == ref.get("text")
        agree["runtime_ids_count"] = len(ids_ref)
        agree["pteron_prefix_tokens_equal_runtime_ids"] = prefix_tokens(
            sp.byte_text, ids_ref, pt["text"])
        if "text" in ref:
            agree["textllmrunner_prefix_tokens_equal_runtime_ids"] = prefix_tokens(
                sp.text, ids_ref, ref["text"])
    print()
    print("generated tokens agree: " + ", ".join(f"{k}={v}" for k, v in agree.items())
          + ("" if ids_err is None else f" (runtime ids failed: {ids_err})")
          + (" (runtime ids skipped)" if ids_ref is None and ids_err is None else ""))
    dec = {k: r.get("decode_tok_s") for k, r in (("reference", ref), ("pteron", pt))}
    print(f"weight bytes read per decoded token: {per_tok / 1e6:.2f} MB (.pte {size / 1e6:.2f} MB"
          f" minus the 4-bit embedding table {embedding_bytes(params) / 1e6:.2f} MB, plus one row)")
    machine_bw = None
    if not args.skip_bandwidth:
        machine_bw = machine_bandwidth(args.pteron, args.threads)
    if machine_bw:
        print(f"machine read bandwidth ({args.threads} thread(s), `pteron sysinfo --bandwidth`):"
              f" {machine_bw:.2f} GB/s median")
    for k, v in dec.items():
        if v:
            share = (f" ({100 * per_tok * v / 1e9 / machine_bw:.0f}% of the machine's)"
                     if machine_bw else "")
            print(f"implied weight bandwidth, {k}: {per_tok * v / 1e9:.2f} GB/s{share}")
    return {
        "model": model,
        "params": params,
        "pte": str(pte),
        "pte_bytes": size,
        "weight_bytes_per_decoded_token": per_tok,
        "implied_bandwidth_gb_s": {k: (per_tok * v / 1e9 if v else None) for k, v in dec.items()},
        "machine_read_bandwidth_gb_s": machine_bw,
        "threads": args.threads,
        "max_new_tokens": args.max_new_tokens,
        "prompt_ids": prompt_ids,
        "reference": {k: v for k, v in ref.items()},
        "pteron": {k: v for k, v in pt.items()},
        "reference_runtime_ids": ids_ref,
        "agreement": agree,
        "host": {"platform": platform.platform(), "cpus": os.cpu_count(),
                 "machine": platform.machine()},
    }


def machine_bandwidth(pteron, threads):
    """Main-memory read bandwidth (GB/s, median) as `pteron sysinfo` measures it
    with `threads` threads (a 1 GiB buffer read 5 times), or None."""
    try:
        out = subprocess.run([str(pteron), "sysinfo", "--bandwidth", "--json",
                              "--threads", str(threads)],
                             capture_output=True, text=True, timeout=300, check=True).stdout
        return json.loads(out)["read_bandwidth_gb_s"]["median"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        print(f"machine bandwidth probe failed: {e}", file=sys.stderr)
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(CONFIGS), default="15m")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--prompt-tokens", type=int, default=128,
                    help="prompt length in tokens, BOS included")
    ap.add_argument("--pteron", default=str(DEFAULT_PTERON))
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--skip-ids", action="store_true",
                    help="do not compute the reference ids with executorch.runtime")
    ap.add_argument("--json-out")
    ap.add_argument("--skip-bandwidth", action="store_true",
                    help="do not measure the machine's read bandwidth (pteron sysinfo --bandwidth)")
    ap.add_argument("--allow-big", action="store_true",
                    help="allow building the 1b model (several GB, tens of minutes)")
    ap.add_argument("--min-free-gb", type=float, default=3.0,
                    help="kill the export if the machine's available memory drops below this")
    ap.add_argument("--build-only", action="store_true", help="build the model and stop")
    # internal (child processes)
    ap.add_argument("--worker", choices=["ref", "ids"], help=argparse.SUPPRESS)
    ap.add_argument("--pte", help=argparse.SUPPRESS)
    ap.add_argument("--tok", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-file", help=argparse.SUPPRESS)
    ap.add_argument("--prompt-ids", help=argparse.SUPPRESS)
    ap.add_argument("--eos-ids", default="[2]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "ref":
        return ref_worker(args)
    if args.worker == "ids":
        return ids_worker(args)

    out_dir, pte, tok = ensure_model(args.model, args.allow_big, args.min_free_gb)
    if args.build_only:
        return 0
    prompt_file, _, prompt_ids = make_prompt(tok, out_dir, args.prompt_tokens,
                                             CONFIGS[args.model].get("tokenizer", "sentencepiece"))
    print(f"[prompt] {len(prompt_ids)} tokens (BOS included) in {prompt_file.relative_to(ROOT)}",
          flush=True)
    print("[run] reference (TextLLMRunner) ...", flush=True)
    ref = run_reference(args, pte, tok, prompt_file)
    print("[run] pteron ...", flush=True)
    pt = run_pteron(args, pte, tok, prompt_file)
    ids_ref, ids_err = (None, None)
    if not args.skip_ids:
        print("[run] reference ids (executorch.runtime) ...", flush=True)
        ids_ref, ids_err = reference_ids(args, pte, prompt_ids)
    res = report(args.model, args, pte, ref, pt, ids_ref, ids_err, prompt_ids)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
