#!/usr/bin/env python3
"""Compare pteron with the ExecuTorch runtime on full-size torchvision models.

Run:  conformance/.venv/bin/python bench/compare.py [--models mobilenet_v2,resnet18]
          [--iterations 20] [--warmup 3] [--threads 2] [--json-out FILE]

1. Exports, if not already present, into bench/models/ (gitignored):
       <model>_portable.pte   to_edge_transform_and_lower(ep)                 (portable kernels only)
       <model>_xnnpack.pte    to_edge_transform_and_lower(ep, [XnnpackPartitioner()])
   from torchvision.models.get_model(<model>, weights=None) with a fixed seed, input 1x3x224x224.
2. For each .pte, times the ExecuTorch runtime (python executorch.runtime, in a child process so
   that its peak RSS and thread pool are its own) and pteron (`target/release/pteron bench FILE.pte
   --iterations N --warmup W --threads T --json`).
   With --rounds R (default 3) each file is timed R times per runtime, alternating which runtime
   goes first (ET, pteron, pteron, ET, ET, pteron, ...): on the small dev VM whichever process runs
   right after the other's exit is measurably slower, so a fixed order would bias the ratio. Each
   runtime's median is the median of its per-round medians (all listed in the JSON).
3. Prints a table (ratio = ExecuTorch median / pteron median: > 1 means pteron is faster), plus, per
   model, the row comparing pteron on the portable export with ExecuTorch on the XNNPACK export.

Threads: ExecuTorch's thread pool (used by XNNPACK and by the few threaded portable/optimized
kernels) defaults to one thread per core; the worker calls
executorch.extension.pybindings.portable_lib._unsafe_reset_threadpool(T) before loading anything and
reports _threadpool_get_thread_count(). torch's own intra-op pool is also set to T (it is not used
by executorch.runtime, but keeps the process from oversubscribing). pteron gets --threads T.

Slow programs: ExecuTorch's portable kernels are naive (mobilenet_v2 ~1 s and resnet18 tens of
seconds per run on a small machine). After the first run, if first_run * iterations would exceed
--budget-s, the iteration count for that .pte is reduced to fit (at least --min-iterations) and the
same reduced count is used for pteron on that file; the table marks such rows with '*'.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "bench" / "models"
DEFAULT_PTERON = ROOT / "target" / "release" / "pteron"
EXPORTS = ("portable", "xnnpack", "xnnpack_q8")
DEFAULT_EXPORTS = ("portable", "xnnpack")
SEED = 0


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------


def example_input():
    import torch

    g = torch.Generator().manual_seed(SEED)
    return torch.randn(1, 3, 224, 224, generator=g)


def export_model(name: str, kind: str, path: Path) -> float:
    import torch
    import torchvision
    from executorch.exir import to_edge_transform_and_lower

    torch.manual_seed(SEED)
    model = torchvision.models.get_model(name, weights=None).eval()
    t0 = time.time()
    ep = torch.export.export(model, (example_input(),))
    if kind == "portable":
        edge = to_edge_transform_and_lower(ep)
    elif kind == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    elif kind == "xnnpack_q8":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        gm = quantize_pt2e_static(model)
        ep = torch.export.export(gm, (example_input(),))
        edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    else:
        raise ValueError(kind)
    et = edge.to_executorch()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".pte.tmp")
    with open(tmp, "wb") as f:
        et.write_to_file(f)
    tmp.replace(path)
    return time.time() - t0


def quantize_pt2e_static(model, x=None):
    """PT2E static int8 (XNNPACKQuantizer, per-channel symmetric weights), calibrated
    on a few seeded random inputs shaped like `x` (default example_input()), as
    conformance/xnnpack/export_xnnpack_fixtures.py does."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = XNNPACKQuantizer()
    q.set_global(get_symmetric_quantization_config(is_per_channel=True))
    x = example_input() if x is None else x
    gm = torch.export.export(model, (x,)).module()
    gm = prepare_pt2e(gm, q)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for _ in range(4):
            gm(torch.randn(x.shape, generator=g))
        gm(x)
    return convert_pt2e(gm)


def ensure_exports(models, exports):
    paths = {}
    for name in models:
        for kind in exports:
            p = MODELS_DIR / f"{name}_{kind}.pte"
            if p.exists():
                print(f"[export] {p.relative_to(ROOT)} present, reusing", flush=True)
            else:
                print(f"[export] {name} ({kind}) -> {p.relative_to(ROOT)} ...", flush=True)
                try:
                    dt = export_model(name, kind, p)
                    print(f"[export]   done in {dt:.1f}s, {p.stat().st_size / 1e6:.1f} MB", flush=True)
                except Exception as e:  # noqa: BLE001
                    print(f"[export]   FAILED: {type(e).__name__}: {e}", flush=True)
                    paths[(name, kind)] = None
                    continue
            paths[(name, kind)] = p
    return paths


# --------------------------------------------------------------------------
# ExecuTorch timing (child process)
# --------------------------------------------------------------------------


def time_method(method, inputs, iterations: int, warmup: int) -> list:
    """Runs an executorch.runtime method `warmup` times, then times `iterations` runs (ms)."""
    for _ in range(warmup):
        method.execute(inputs)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        method.execute(inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def et_worker(args) -> int:
    """Runs in a child process; prints one JSON line."""
    import torch

    torch.set_num_threads(args.threads)
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(args.threads)
    threads = portable_lib._threadpool_get_thread_count()

    x = example_input()
    t0 = time.perf_counter()
    program = Runtime.get().load_program(args.worker)
    method = program.load_method("forward")
    load_ms = (time.perf_counter() - t0) * 1e3

    t0 = time.perf_counter()
    out = method.execute([x])
    first_ms = (time.perf_counter() - t0) * 1e3
    if args.save_out:
        import numpy as np

        np.save(args.save_out, out[0].detach().numpy() if hasattr(out[0], "detach") else np.asarray(out[0]))

    iterations = args.iterations
    warmup = max(0, args.warmup - 1)  # the first run counts as one warm-up run
    reduced = False
    if first_ms / 1e3 * (iterations + warmup) > args.budget_s:
        iterations = max(args.min_iterations, int(args.budget_s / (first_ms / 1e3)))
        iterations = min(iterations, args.iterations)
        warmup = 0
        reduced = True
    times = time_method(method, [x], iterations, warmup)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "load_ms": load_ms,
                "first_run_ms": first_ms,
                "median_ms": statistics.median(times),
                "min_ms": min(times),
                "iterations": iterations,
                "warmup": warmup + 1,
                "reduced": reduced,
                "threads": threads,
                "peak_rss_bytes": rss,
            }
        ),
        flush=True,
    )
    return 0


def run_executorch(pte: Path, args, save_out: Path | None = None) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--_worker",
        str(pte),
        "--iterations",
        str(args.iterations),
        "--warmup",
        str(args.warmup),
        "--threads",
        str(args.threads),
        "--budget-s",
        str(args.budget_s),
        "--min-iterations",
        str(args.min_iterations),
    ]
    if save_out is not None:
        cmd += ["--_save-out", str(save_out)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout_s}s"}
    return parse_json_line(p, "executorch worker")


# --------------------------------------------------------------------------
# pteron timing
# --------------------------------------------------------------------------


def parse_json_line(p: subprocess.CompletedProcess, what: str) -> dict:
    for line in reversed(p.stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                res = json.loads(line)
            except json.JSONDecodeError:
                continue
            if p.returncode != 0:
                res["error"] = f"exit {p.returncode}"
            return res
    tail = (p.stderr.strip() or p.stdout.strip()).splitlines()[-3:]
    return {"error": f"{what} exit {p.returncode}: " + " / ".join(tail)[:300]}


def run_pteron(pte: Path, iterations: int, warmup: int, args) -> dict:
    binary = Path(args.pteron)
    if not binary.exists():
        return {"error": f"{binary} not found (cargo build --release)"}
    cmd = [str(binary), "bench", str(pte), "--iterations", str(iterations), "--warmup", str(warmup), "--threads", str(args.threads), "--json"]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {args.timeout_s}s"}
    except OSError as e:
        return {"error": f"cannot run {binary}: {e}"}
    return parse_json_line(p, "pteron")


def combine_rounds(runs: list) -> dict:
    """One result from the rounds of one runtime on one file: the first round's fields, with
    median_ms the median of the rounds' medians, min_ms the least min, and the per-round
    medians under round_medians_ms. Errors in any round are reported."""
    ok = [r for r in runs if "median_ms" in r]
    if not ok:
        return runs[0] if runs else {"error": "no runs"}
    out = dict(ok[0])
    meds = [r["median_ms"] for r in ok]
    out["median_ms"] = statistics.median(meds)
    out["round_medians_ms"] = meds
    mins = [r["min_ms"] for r in ok if "min_ms" in r]
    if mins:
        out["min_ms"] = min(mins)
    errs = [r["error"] for r in runs if "error" in r]
    if errs:
        out["error"] = "; ".join(errs)
    return out


def check_agreement(pte: Path, ref_path: Path, args) -> dict:
    """Runs pteron once on example_input() and compares with ExecuTorch's output.

    Quantized outputs lie on a grid k * scale; the step is estimated as the smallest
    gap between distinct reference values (1000 logits over <= 256 levels), and the
    check passes when every element is within two steps."""
    import numpy as np

    out_dir = ROOT / "bench" / "out" / f"{pte.stem}_check"
    out_dir.mkdir(parents=True, exist_ok=True)
    inp = out_dir / "input_0.npy"
    np.save(inp, example_input().numpy())
    cmd = [str(args.pteron), "run", str(pte), "-i", str(inp), "-o", str(out_dir), "--threads", str(args.threads)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    if p.returncode != 0:
        return {"error": f"pteron run exit {p.returncode}: {p.stderr.strip()[-200:]}"}
    got = np.load(out_dir / "output_0.npy").astype(np.float64)
    ref = np.load(ref_path).astype(np.float64)
    if got.shape != ref.shape:
        return {"error": f"shape {got.shape} vs {ref.shape}"}
    u = np.unique(ref)
    step = float(np.min(np.diff(u))) if u.size > 1 else 1.0
    diff = np.abs(got - ref)
    steps = diff / step
    return {
        "step": step,
        "max_abs_diff": float(diff.max()),
        "max_steps": float(steps.max()),
        "frac_exact": float(np.mean(diff == 0)),
        "argmax_equal": bool(np.argmax(got) == np.argmax(ref)),
        "ok": bool(steps.max() <= 2.0 + 1e-6),
    }


# --------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------


def fmt_ms(r: dict) -> str:
    if not r:
        return "-"
    if "error" in r and "median_ms" not in r:
        return "ERROR: " + r["error"]
    s = f"{r['median_ms']:.1f}"
    if r.get("reduced"):
        s += f" (*{r['iterations']} it)"
    return s


def ratio(et: dict, pt: dict) -> str:
    try:
        return f"{et['median_ms'] / pt['median_ms']:.2f}x"
    except (KeyError, TypeError, ZeroDivisionError):
        return "-"


def fmt_check(c) -> str:
    if not c:
        return "-"
    if "error" in c:
        return "ERROR: " + c["error"]
    return f"{'ok' if c['ok'] else 'FAIL'}: max {c['max_steps']:.1f} steps, {100 * c['frac_exact']:.1f}% exact, argmax {'=' if c['argmax_equal'] else '!='}"


def print_table(rows, headline):
    headers = ["model", "export", "ExecuTorch median ms", "pteron median ms", "ratio ET/pteron", "outputs vs ET"]
    body = [[r["model"], r["export"], fmt_ms(r["executorch"]), fmt_ms(r["pteron"]), ratio(r["executorch"], r["pteron"]), fmt_check(r.get("agreement"))] for r in rows]
    for h in headline:
        body.append(
            [h["model"], "pteron portable vs ET xnnpack", fmt_ms(h["executorch_xnnpack"]), fmt_ms(h["pteron_portable"]), ratio(h["executorch_xnnpack"], h["pteron_portable"]), "-"]
        )
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *body)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in body:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="mobilenet_v2,resnet18", help="comma-separated torchvision model names")
    ap.add_argument("--exports", default=",".join(DEFAULT_EXPORTS), help="comma-separated subset of " + ",".join(EXPORTS))
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=60.0, help="max seconds of timed runs per .pte and runtime (see doc)")
    ap.add_argument("--min-iterations", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per file; the order alternates (ET first, then pteron first, ...) and each "
                         "runtime's median is the median of its rounds' medians")
    ap.add_argument("--timeout-s", type=float, default=1800.0, help="kill a runtime's benchmark of one file after this long")
    ap.add_argument("--pteron", default=str(DEFAULT_PTERON), help="path of the pteron CLI")
    ap.add_argument("--json-out", default=None, help="also write all results as JSON to this file")
    ap.add_argument("--skip-executorch", action="store_true", help="only time pteron")
    ap.add_argument("--_worker", dest="worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_save-out", dest="save_out", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--no-check", action="store_true", help="skip the output agreement check of quantized exports")
    args = ap.parse_args(argv)

    if args.worker:
        return et_worker(args)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    exports = [e.strip() for e in args.exports.split(",") if e.strip()]
    for e in exports:
        if e not in EXPORTS:
            ap.error(f"unknown export {e!r}")

    paths = ensure_exports(models, exports)
    rows = []
    for name in models:
        for kind in exports:
            pte = paths.get((name, kind))
            row = {"model": name, "export": kind, "pte": str(pte.relative_to(ROOT)) if pte else None}
            if pte is None:
                row["executorch"] = {"error": "export failed"}
                row["pteron"] = {"error": "export failed"}
                rows.append(row)
                continue
            row["pte_bytes"] = pte.stat().st_size
            ref_out = None
            et_runs, pt_runs = [], []
            it = args.iterations
            if not args.skip_executorch and kind == "xnnpack_q8" and not args.no_check:
                ref_out = ROOT / "bench" / "out" / f"{pte.stem}_ref.npy"
                ref_out.parent.mkdir(parents=True, exist_ok=True)
            # Rounds alternate which runtime goes first (ET, pteron | pteron, ET | ...), so that
            # neither always runs right after the other's process exits. Round 1 starts with ET:
            # it fixes the iteration count (budget) and writes the reference output.
            for rnd in range(max(1, args.rounds)):
                order = ("et", "pt") if rnd % 2 == 0 else ("pt", "et")
                for who in order:
                    if who == "et" and not args.skip_executorch:
                        print(f"[executorch] {pte.name} (round {rnd + 1}) ...", flush=True)
                        et_runs.append(run_executorch(pte, args, ref_out if rnd == 0 else None))
                        print(f"[executorch]   {json.dumps(et_runs[-1])}", flush=True)
                        if rnd == 0:
                            it = et_runs[0].get("iterations", args.iterations)
                    elif who == "pt":
                        warm = args.warmup if it == args.iterations else 1
                        print(f"[pteron] {pte.name} (round {rnd + 1}, iterations {it}, warmup {warm}) ...",
                              flush=True)
                        pt_runs.append(run_pteron(pte, it, warm, args))
                        print(f"[pteron]   {json.dumps(pt_runs[-1])}", flush=True)
            row["executorch"] = combine_rounds(et_runs) if et_runs else {}
            row["pteron"] = combine_rounds(pt_runs)
            if it != args.iterations:
                row["pteron"].setdefault("reduced", True)
            if not args.skip_executorch and kind == "xnnpack_q8" and not args.no_check and ref_out is not None and ref_out.exists():
                row["agreement"] = check_agreement(pte, ref_out, args)
                print(f"[check]    {json.dumps(row['agreement'])}", flush=True)
            rows.append(row)

    headline = []
    for name in models:
        by = {r["export"]: r for r in rows if r["model"] == name}
        if "portable" in by and "xnnpack" in by:
            headline.append({"model": name, "pteron_portable": by["portable"]["pteron"], "executorch_xnnpack": by["xnnpack"]["executorch"]})

    print()
    print(f"threads {args.threads}, iterations {args.iterations} (warmup {args.warmup}); ratio > 1 means pteron is faster")
    print_table(rows, headline)
    if any(r.get(k, {}).get("reduced") for r in rows for k in ("executorch", "pteron")):
        print("(*N it): slow program, iterations reduced to N to stay within --budget-s; both runtimes use N")

    if args.json_out:
        out = {
            "host": {"machine": platform.machine(), "processor": platform.processor(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "settings": {k: v for k, v in vars(args).items() if k != "worker"},
            "rows": rows,
            "headline": headline,
        }
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
