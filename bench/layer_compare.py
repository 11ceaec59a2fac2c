#!/usr/bin/env python3
"""Per-layer comparison of pteron with the ExecuTorch runtime (XNNPACK delegate).

Run:  conformance/.venv/bin/python bench/layer_compare.py [--model mobilenet_v2|resnet18]
          [--dtype fp32|int8] [--layers SPEC;SPEC...] [--iterations 50] [--threads 2]
          [--rounds 3] [--pteron target/release/pteron] [--json-out FILE]

Whole-model benchmarks (compare.py) say *whether* pteron is behind; this script says *where*.

1. Collects the convolution layers of a torchvision model (forward hooks record each Conv2d's
   input shape) or takes them from --layers, each SPEC being `cin,cout,k,stride,groups,H,W[,pad]`
   (pad defaults to k // 2). Identical layers are merged and counted.
2. Exports each distinct layer as its own program: one Conv2d (with bias, seeded weights) on a
   1 x cin x H x W input, lowered with XnnpackPartitioner, either fp32 or PT2E static int8
   (XNNPACKQuantizer, per-channel symmetric, the quantize_pt2e_static of compare.py). Files are
   cached in bench/models/layers/ (gitignored).
3. Times every layer in both runtimes, --rounds times, alternating which runtime goes first in
   each round: ExecuTorch in one child process per round (executorch.runtime, thread pool reset
   to --threads), pteron with `pteron bench FILE --json`. A layer's time is the median of its
   per-round medians.
4. Prints one row per layer sorted by the time pteron loses (count x (pteron - ExecuTorch)), the
   ratio ExecuTorch / pteron (> 1: pteron is faster), and the totals.

A single-layer program also pays each runtime's per-call overhead (input copy, NCHW<->NHWC
transposes, int8 quantize/dequantize around the delegate), so small layers read pessimistic for
whichever runtime has the larger fixed cost; the totals are not the model's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (bench/compare.py: shared export and timing helpers)

ROOT = compare.ROOT
LAYERS_DIR = compare.MODELS_DIR / "layers"


class Spec:
    __slots__ = ("cin", "cout", "k", "stride", "groups", "h", "w", "pad")

    def __init__(self, cin, cout, k, stride, groups, h, w, pad=None):
        self.cin, self.cout, self.k, self.stride, self.groups = cin, cout, k, stride, groups
        self.h, self.w = h, w
        self.pad = k // 2 if pad is None else pad

    @classmethod
    def parse(cls, text: str) -> "Spec":
        parts = [int(p) for p in text.split(",")]
        if len(parts) not in (7, 8):
            raise ValueError(f"layer spec {text!r}: want cin,cout,k,stride,groups,H,W[,pad]")
        return cls(*parts)

    def key(self) -> tuple:
        return (self.cin, self.cout, self.k, self.stride, self.groups, self.h, self.w, self.pad)

    def name(self) -> str:
        g = f"_g{self.groups}" if self.groups != 1 else ""
        return f"c{self.cin}_o{self.cout}_k{self.k}s{self.stride}p{self.pad}{g}_{self.h}x{self.w}"

    def out_hw(self) -> tuple:
        o = lambda n: (n + 2 * self.pad - self.k) // self.stride + 1  # noqa: E731
        return o(self.h), o(self.w)

    def macs(self) -> int:
        oh, ow = self.out_hw()
        return oh * ow * self.cout * (self.cin // self.groups) * self.k * self.k

    def input_shape(self) -> tuple:
        return (1, self.cin, self.h, self.w)


def model_layers(name: str) -> list:
    """(Spec, count) for every Conv2d of a torchvision model, in first-seen order."""
    import torch
    import torchvision

    model = torchvision.models.get_model(name, weights=None).eval()
    seen: dict = {}
    order: list = []

    def hook(mod, inp, _out):
        x = inp[0]
        s = Spec(mod.in_channels, mod.out_channels, mod.kernel_size[0], mod.stride[0], mod.groups,
                 x.shape[2], x.shape[3], mod.padding[0])
        if s.key() not in seen:
            seen[s.key()] = [s, 0]
            order.append(s.key())
        seen[s.key()][1] += 1

    hooks = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        model(compare.example_input())
    for h in hooks:
        h.remove()
    return [tuple(seen[k]) for k in order]


def layer_input(spec: Spec):
    import torch

    g = torch.Generator().manual_seed(compare.SEED)
    return torch.randn(*spec.input_shape(), generator=g)


def export_layer(spec: Spec, dtype: str, path: Path) -> None:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(compare.SEED)
    model = torch.nn.Conv2d(spec.cin, spec.cout, spec.k, spec.stride, spec.pad, groups=spec.groups, bias=True).eval()
    x = layer_input(spec)
    if dtype == "int8":
        model = compare.quantize_pt2e_static(model, x)
    ep = torch.export.export(model, (x,))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pte.tmp")
    with open(tmp, "wb") as f:
        prog.write_to_file(f)
    tmp.replace(path)


def et_worker(args) -> int:
    """Child process: times every (file, spec) of the job list; one JSON line per file."""
    import torch

    torch.set_num_threads(args.threads)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(args.threads)
    jobs = json.loads(Path(args.worker).read_text())
    for job in jobs:
        spec = Spec(*job["spec"])
        method = Runtime.get().load_program(job["pte"]).load_method("forward")
        x = layer_input(spec)
        times = compare.time_method(method, [x], args.iterations, args.warmup)
        print(json.dumps({"pte": job["pte"], "median_ms": statistics.median(times), "min_ms": min(times)}), flush=True)
    return 0


def run_executorch_all(jobs: list, args) -> dict:
    job_file = ROOT / "bench" / "out" / "layer_jobs.json"
    job_file.parent.mkdir(parents=True, exist_ok=True)
    job_file.write_text(json.dumps(jobs))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_worker", str(job_file),
           "--iterations", str(args.iterations), "--warmup", str(args.warmup), "--threads", str(args.threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    res = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            res[r["pte"]] = r
    if p.returncode != 0:
        tail = " / ".join(p.stderr.strip().splitlines()[-3:])[:300]
        for job in jobs:
            res.setdefault(job["pte"], {"error": f"executorch worker exit {p.returncode}: {tail}"})
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenet_v2", help="torchvision model whose conv layers to compare")
    ap.add_argument("--layers", default=None, help="explicit layers instead: 'cin,cout,k,stride,groups,H,W[,pad];...'")
    ap.add_argument("--dtype", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--top", type=int, default=0, help="only time the N layers with the most MACs x count (0: all)")
    ap.add_argument("--timeout-s", type=float, default=1800.0)
    ap.add_argument("--pteron", default=str(compare.DEFAULT_PTERON), help="path of the pteron CLI")
    ap.add_argument("--json-out", default=None)
    ap.add_argument("--_worker", dest="worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return et_worker(args)

    if args.layers:
        layers = [(Spec.parse(t.strip()), 1) for t in args.layers.split(";") if t.strip()]
        tag = "custom"
    else:
        layers = model_layers(args.model)
        tag = args.model
    if args.top > 0:
        layers = sorted(layers, key=lambda sc: -sc[0].macs() * sc[1])[: args.top]

    rows = []
    for spec, count in layers:
        pte = LAYERS_DIR / args.dtype / f"{spec.name()}.pte"
        if not pte.exists():
            print(f"[export] {pte.relative_to(ROOT)} ...", flush=True)
            export_layer(spec, args.dtype, pte)
        rows.append({"layer": spec.name(), "spec": list(spec.key()), "count": count, "macs": spec.macs(),
                     "pte": str(pte), "et": [], "pt": []})

    jobs = [{"pte": r["pte"], "spec": r["spec"]} for r in rows]
    for rnd in range(max(1, args.rounds)):
        order = ("et", "pt") if rnd % 2 == 0 else ("pt", "et")
        for who in order:
            if who == "et":
                print(f"[executorch] round {rnd + 1}: {len(jobs)} layers ...", flush=True)
                res = run_executorch_all(jobs, args)
                for r in rows:
                    r["et"].append(res.get(r["pte"], {"error": "no result"}))
            else:
                print(f"[pteron] round {rnd + 1}: {len(jobs)} layers ...", flush=True)
                for r in rows:
                    r["pt"].append(compare.run_pteron(Path(r["pte"]), args.iterations, args.warmup, args))

    def med(runs):
        ok = [x["median_ms"] for x in runs if "median_ms" in x]
        return statistics.median(ok) if ok else None

    for r in rows:
        r["et_ms"], r["pt_ms"] = med(r["et"]), med(r["pt"])
        if r["et_ms"] is None or r["pt_ms"] is None:
            errs = [x.get("error") for x in r["et"] + r["pt"] if "error" in x]
            r["error"] = errs[0] if errs else "no timing"
            r["lost_ms"] = 0.0
        else:
            r["lost_ms"] = r["count"] * (r["pt_ms"] - r["et_ms"])
    rows.sort(key=lambda r: -r["lost_ms"])

    print()
    print(f"{tag} conv layers, {args.dtype}, threads {args.threads}, {args.iterations} iterations x {args.rounds} rounds; "
          "ratio > 1 means pteron is faster; lost = count x (pteron - ExecuTorch)")
    print("| layer | count | MMAC | ExecuTorch ms | pteron ms | ratio ET/pteron | pteron GMAC/s | lost ms |")
    print("|---|---|---|---|---|---|---|---|")
    tot_et = tot_pt = 0.0
    for r in rows:
        if "error" in r:
            print(f"| {r['layer']} | {r['count']} | {r['macs'] / 1e6:.1f} | ERROR: {r['error']} | | | | |")
            continue
        tot_et += r["count"] * r["et_ms"]
        tot_pt += r["count"] * r["pt_ms"]
        gmacs = r["macs"] / (r["pt_ms"] * 1e-3) / 1e9
        print(f"| {r['layer']} | {r['count']} | {r['macs'] / 1e6:.1f} | {r['et_ms']:.3f} | {r['pt_ms']:.3f} | "
              f"{r['et_ms'] / r['pt_ms']:.2f}x | {gmacs:.1f} | {r['lost_ms']:+.3f} |")
    if tot_pt > 0:
        print(f"| total (count-weighted) | | | {tot_et:.3f} | {tot_pt:.3f} | {tot_et / tot_pt:.2f}x | | {tot_pt - tot_et:+.3f} |")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps({"settings": {k: v for k, v in vars(args).items() if k != "worker"},
                                                   "rows": rows}, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
