#!/usr/bin/env python3
"""pteron vs ExecuTorch on an 8da4w linear stack (the LLM linear shape), same file, same run.

Run:  conformance/.venv/bin/python bench/qlinear_compare.py [--batches 1 64] [--threads 2] [--rounds 3]
          [--iterations 30] [--pteron target/release/pteron] [--json-out FILE]

1. Exports on demand into bench/models/ (gitignored; reused when present)
   `qlinear_8da4w_b{B}.pte`: Linear(2048, 8192) -> ReLU -> Linear(8192, 2048) (no bias,
   unit-variance weights), quantized with torchao's Int8DynamicActivationIntxWeightConfig
   (int4 weights, group size 32: "8da4w"), lowered with XnnpackPartitioner, input [B, 2048].
2. ExecuTorch: a child process loads the program with executorch.runtime (thread pool
   reset to --threads), runs it on a seeded input, reports the median execute time.
3. pteron: `pteron bench PROGRAM --json` (same thread count) and one `pteron run` on the
   same input, compared with ExecuTorch's output (max |diff|; the qd8 kernels reproduce
   XNNPACK's arithmetic, so 0 is expected).
4. Prints one row per batch: median ms for both, the ratio ExecuTorch/pteron (above 1 means
   pteron is faster), GOPS, and the weight bytes streamed per run / the bandwidth that implies.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "bench" / "models"
DEFAULT_PTERON = ROOT / "target" / "release" / "pteron"
K, HIDDEN = 2048, 8192
SEED = 0


def example_input(batch: int):
    import torch

    g = torch.Generator().manual_seed(SEED + batch)
    return torch.randn((batch, K), generator=g)


def export(batch: int, path: Path) -> None:
    import torch
    import torch.nn as nn
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(K, HIDDEN, bias=False), nn.ReLU(), nn.Linear(HIDDEN, K, bias=False)).eval()
    with torch.no_grad():
        model[0].weight.normal_(0, K ** -0.5)
        model[2].weight.normal_(0, HIDDEN ** -0.5)
    quantize_(model, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))
    ep = torch.export.export(model, (example_input(batch),))
    et = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(et.buffer)
    tmp.rename(path)


def et_worker(args) -> int:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(args.threads)
    x = example_input(args.batch)
    t0 = time.perf_counter()
    method = Runtime.get().load_program(args.worker).load_method("forward")
    load_ms = (time.perf_counter() - t0) * 1e3
    out = method.execute([x])
    np.save(args.save_out, out[0].numpy())
    for _ in range(args.warmup):
        method.execute([x])
    times = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        method.execute([x])
        times.append((time.perf_counter() - t0) * 1e3)
    print(json.dumps({"load_ms": load_ms, "median_ms": statistics.median(times), "min_ms": min(times),
                      "threads": portable_lib._threadpool_get_thread_count()}), flush=True)
    return 0


def last_json(p: subprocess.CompletedProcess, what: str) -> dict:
    for line in reversed(p.stdout.strip().splitlines()):
        if line.strip().startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{what} failed (exit {p.returncode}): {p.stderr.strip()[-400:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per batch, alternating which runtime runs first")
    ap.add_argument("--pteron", default=str(DEFAULT_PTERON))
    ap.add_argument("--json-out")
    ap.add_argument("--_worker", dest="worker", help=argparse.SUPPRESS)
    ap.add_argument("--_batch", dest="batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--_save-out", dest="save_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return et_worker(args)

    import numpy as np

    rows = []
    for b in args.batches:
        pte = MODELS_DIR / f"qlinear_8da4w_b{b}.pte"
        if not pte.exists():
            print(f"[export] {pte.name} ...", flush=True)
            export(b, pte)
        out_dir = ROOT / "bench" / "out" / pte.stem
        out_dir.mkdir(parents=True, exist_ok=True)
        ref_path = out_dir / "reference.npy"
        def run_et():
            print(f"[run] ExecuTorch {pte.name} ...", flush=True)
            return last_json(subprocess.run(
                [sys.executable, __file__, "--_worker", str(pte), "--_batch", str(b), "--_save-out", str(ref_path),
                 "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--threads", str(args.threads)],
                capture_output=True, text=True), "ExecuTorch worker")

        def run_pt():
            print(f"[run] pteron {pte.name} ...", flush=True)
            return last_json(subprocess.run(
                [args.pteron, "bench", str(pte), "--iterations", str(args.iterations), "--warmup", str(args.warmup),
                 "--threads", str(args.threads), "--json"], capture_output=True, text=True), "pteron bench")

        # Rounds alternate which runtime goes first (see bench/compare.py); each runtime's
        # median is the median of its rounds' medians.
        ets, pts = [], []
        for rnd in range(max(1, args.rounds)):
            if rnd % 2 == 0:
                ets.append(run_et())
                pts.append(run_pt())
            else:
                pts.append(run_pt())
                ets.append(run_et())
        et, pt = dict(ets[0]), dict(pts[0])
        for d, runs in ((et, ets), (pt, pts)):
            d["round_medians_ms"] = [r["median_ms"] for r in runs]
            d["median_ms"] = statistics.median(d["round_medians_ms"])
        inp = out_dir / "input_0.npy"
        np.save(inp, example_input(b).numpy())
        r = subprocess.run([args.pteron, "run", str(pte), "--input", str(inp), "--output-dir", str(out_dir),
                            "--threads", str(args.threads), "-q"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pteron run failed: {r.stderr.strip()[-400:]}")
        diff = float(np.abs(np.load(out_dir / "output_0.npy") - np.load(ref_path)).max())
        macs = 2 * b * K * HIDDEN
        wbytes = 2 * K * HIDDEN // 2 + 2 * (2 * K * HIDDEN // 32)  # int4 values + bf16 block scales
        rows.append({"batch": b, "executorch": et, "pteron": pt, "max_abs_diff": diff,
                     "gops_pteron": 2 * macs / (pt["median_ms"] * 1e6),
                     "weight_gbs_pteron": wbytes / (pt["median_ms"] * 1e6),
                     "weight_gbs_executorch": wbytes / (et["median_ms"] * 1e6)})
    print(f"\n8da4w linear stack {K}->{HIDDEN}->{K} (int4 weights, group 32, dynamic int8 activations), "
          f"threads {args.threads}, {args.iterations} iterations\n")
    print("| batch | ExecuTorch median ms | pteron median ms | ratio ET/pteron | pteron GOPS | weight GB/s ET / pteron | max |diff| vs ET |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        et, pt = r["executorch"]["median_ms"], r["pteron"]["median_ms"]
        print(f"| {r['batch']} | {et:.3f} | {pt:.3f} | {et / pt:.2f}x | {r['gops_pteron']:.1f} | "
              f"{r['weight_gbs_executorch']:.1f} / {r['weight_gbs_pteron']:.1f} | {r['max_abs_diff']:.3g} |")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
