#!/usr/bin/env python3
"""Export XNNPACK-delegated conformance fixtures for pteron's XnnpackBackend.

Run:  conformance/.venv/bin/python conformance/xnnpack/export_xnnpack_fixtures.py [--only CASE ...] [--list]

Same layout as conformance/export_fixtures.py (program.pte, in_<i>.npy, ref_<i>.npy,
eager_<i>.npy, run<r>/, meta.json), written to fixtures/xnn_<case>/. The difference is
the lowering: `to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])`, so
the program holds one or more `XnnpackBackend` delegate calls (plus portable ops the
partitioner left out). Quantized cases are prepared with PT2E (XNNPACKQuantizer) or
torchao (8da4w) first. The generated fixture/INDEX files of the main script are NOT
regenerated here.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
from torch.export import Dim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import export_fixtures as ef  # noqa: E402

FIXTURES = ef.FIXTURES
SIZE_BUDGET = 4 * 1024 * 1024  # what this script may add in total


class XSpec:
    def __init__(self, model, runs, dynamic_shapes=None, atol=1e-4, rtol=1e-4, notes="", quant=None):
        self.model = model
        self.runs = runs
        self.dynamic_shapes = dynamic_shapes
        self.atol = atol  # None: max(1e-5, 1e-3 * max|ref|); "q": derived from the output quantization step
        self.rtol = rtol
        self.notes = notes
        self.quant = quant  # None | "pt2e" | "8da4w"


CASES: Dict[str, Callable[[], XSpec]] = {}


def case(name):
    def deco(fn):
        CASES[name] = fn
        return fn

    return deco


rn = ef.rn
IMG = (1, 3, 64, 64)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 32)
        self.fc2 = nn.Linear(32, 32)
        self.fc3 = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


@case("xnn_mlp")
def _():
    return XSpec(MLP(), [(rn(4, 16),)], notes="XNNPACK fp32: Linear+ReLU MLP 16->32->32->10, batch 4")


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8)
        self.c3 = nn.Conv2d(8, 12, 1)
        self.c4 = nn.Conv2d(8, 12, 3, padding=(1, 2), dilation=(1, 2))
        self.fc = nn.Linear(24, 5)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.nn.functional.max_pool2d(y, 2)
        y = torch.nn.functional.hardtanh(self.c2(y), -1.0, 1.0)
        a = torch.sigmoid(self.c3(y)) * self.c4(y)
        b = torch.nn.functional.avg_pool2d(self.c4(y) - 0.5, 2)
        b = torch.nn.functional.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        z = torch.cat([a, torch.tanh(b)], dim=1)
        z = torch.nn.functional.pad(z, (1, 1, 0, 1), value=0.25)
        z = torch.nn.functional.hardswish(z) / 2.0
        z = torch.nn.functional.gelu(z)
        z = z.mean(dim=(2, 3))
        return torch.softmax(self.fc(z), dim=-1), z


@case("xnn_cnn")
def _():
    return XSpec(
        SmallCNN(),
        [(rn(1, 3, 16, 16),)],
        atol=1e-4,
        notes="XNNPACK fp32 small CNN: conv (dense, depthwise stride 2, 1x1, dilated asymmetric pad), relu, max/avg pool, "
        "hardtanh, sigmoid, mul, sub, bilinear upsample, cat, constant pad, hardswish, div, gelu, mean, linear, softmax; two outputs",
    )


@case("xnn_mobilenet_v2")
def _():
    from torchvision.models import mobilenet_v2

    m = ef.randomize_norms(mobilenet_v2(weights=None, width_mult=0.25, num_classes=10))
    return XSpec(m, [(rn(*IMG),)], atol=None, rtol=1e-3, notes="XNNPACK fp32 torchvision mobilenet_v2(width_mult=0.25, num_classes=10), 1x3x64x64." + ef.DEEP_NOTE)


@case("xnn_resnet")
def _():
    return XSpec(
        ef.randomize_norms(ef.SmallResNet()),
        [(rn(*IMG),)],
        atol=None,
        rtol=1e-3,
        notes="XNNPACK fp32 ResNet-18 topology with widths 8/16/32/64 (see fixtures/resnet)." + ef.DEEP_NOTE,
    )


class DynNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 24)
        self.fc2 = nn.Linear(24, 6)

    def forward(self, x, y):
        h = torch.nn.functional.hardtanh(self.fc1(x), -2.0, 2.0)
        return self.fc2(h) + y, torch.sigmoid(h) * 2.0


@case("xnn_dynamic")
def _():
    b = Dim("batch", min=1, max=8)
    return XSpec(
        DynNet(),
        [(rn(3, 12), rn(3, 6)), (rn(7, 12), rn(7, 6))],
        dynamic_shapes=({0: b}, {0: b}),
        notes="XNNPACK fp32 with a dynamic batch dim (1..8): linear, hardtanh, add, sigmoid, mul; run 0 batch 3, run 1 batch 7 "
        "on one loaded method (the delegate reshapes its graph per call; outputs are resized)",
    )


class Partial(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(8, 16)
        self.fc2 = nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        h = torch.cumsum(h, dim=1)  # not lowered by the XNNPACK partitioner
        return self.fc2(h)


@case("xnn_partial")
def _():
    return XSpec(
        Partial(),
        [(rn(5, 8),)],
        notes="XNNPACK fp32, partly delegated: linear+relu (delegate 0) -> aten::cumsum (portable, not lowered) -> linear (delegate 1)",
    )


class QCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.c3 = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.relu(self.c2(y))
        y = self.c3(y) + 0.1
        y = torch.nn.functional.max_pool2d(y, 2)
        y = torch.mean(y, dim=(2, 3))
        return self.fc(y)


@case("xnn_q8_cnn")
def _():
    return XSpec(
        QCNN(),
        [(rn(1, 3, 32, 32),)],
        atol="q",
        rtol=0.0,
        quant="pt2e",
        notes="XNNPACK static int8 (PT2E XNNPACKQuantizer, get_symmetric_quantization_config(is_per_channel=True)): "
        "conv (per-channel qc8w weights), depthwise conv, relu, add, max pool, mean, linear; tolerance two output "
        "quantization steps",
    )


class LinStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(64, 96)
        self.l2 = nn.Linear(96, 64)
        self.l3 = nn.Linear(64, 32, bias=False)

    def forward(self, x):
        return self.l3(torch.relu(self.l2(torch.relu(self.l1(x)))))


@case("xnn_8da4w")
def _():
    return XSpec(
        LinStack(),
        [(rn(3, 64),)],
        atol=None,
        rtol=1e-2,
        quant="8da4w",
        notes="XNNPACK dynamic int8 activations x int4 weights, group size 32 (torchao Int8DynamicActivationIntxWeightConfig): "
        "3 linears 64->96->64->32, relu",
    )


class WideLinears(nn.Module):
    """LLM-shaped linears (stories15M's 288 -> 768 -> 288), unit-variance weights; ReLU between
    them (exact in every runtime, unlike sigmoid, whose last bit depends on the exp used)."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(288, 768)
        self.down = nn.Linear(768, 288, bias=False)
        with torch.no_grad():
            self.up.weight.normal_(0, 288 ** -0.5)
            self.down.weight.normal_(0, 768 ** -0.5)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


@case("xnn_8da4w_exact")
def _():
    return XSpec(
        WideLinears(),
        [(rn(1, 5, 288),), (rn(1, 1, 288),)],
        dynamic_shapes=({1: Dim("seq", min=1, max=64)},),
        atol=0.0,
        rtol=0.0,
        quant="8da4w",
        notes="8da4w linears 288->768->288 with dynamic sequence length (5 rows, then 1): pteron's qd8 x qb4w "
        "kernels reproduce XNNPACK's arithmetic, so the outputs must match bit for bit",
    )


class Deconvs(nn.Module):
    """Transposed convolutions as decoders and upsamplers use them."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(6, 8, 3, stride=2, padding=1, output_padding=1)
        self.grouped = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, groups=2)
        self.plain = nn.ConvTranspose2d(4, 5, (3, 2), stride=1, padding=0, bias=False)

    def forward(self, x):
        y = torch.relu(self.up(x))
        y = torch.nn.functional.hardtanh(self.grouped(y), -1.5, 1.5)
        return self.plain(y)


@case("xnn_deconv")
def _():
    return XSpec(
        Deconvs(),
        [(rn(1, 6, 5, 7),)],
        atol=None,
        rtol=1e-3,
        notes="XNNPACK fp32 transposed convolutions (XNNConvTranspose2d): 3x3 stride 2 padding 1 output_padding 1 + relu, "
        "4x4 stride 2 groups 2 + hardtanh, 3x2 stride 1 without bias",
    )


class HalfCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 24, 1)
        self.fc = nn.Linear(24, 10)

    def forward(self, x):
        y = torch.relu(self.c1(x))
        y = torch.nn.functional.hardtanh(self.dw(y), 0.0, 6.0)
        y = self.pw(y) + 0.5
        y = torch.nn.functional.max_pool2d(y, 2)
        y = torch.mean(y, dim=(2, 3))
        return self.fc(y)


@case("xnn_fp16")
def _():
    return XSpec(
        HalfCNN().half(),
        [(rn(1, 3, 16, 16, dtype=torch.float16),)],
        atol="f16",
        rtol=1e-2,
        notes="XNNPACK float16 graph (model.half(), f16 input and output): conv, depthwise stride 2, 1x1 conv, relu, "
        "hardtanh, add, max pool, mean, linear. XNNPACK's x86 f16 kernels round to f16 after each step; pteron "
        "accumulates in f32 and rounds each node's output to f16, so the tolerance is 1% of the output range",
    )


@case("xnn_8da4w_batch")
def _():
    return XSpec(
        WideLinears(),
        [(rn(1, 37, 288),), (rn(1, 16, 288),)],
        dynamic_shapes=({1: Dim("seq", min=1, max=64)},),
        atol=0.0,
        rtol=0.0,
        quant="8da4w",
        notes="8da4w linears 288->768->288, prompt-sized inputs (37 rows, then 16): pteron's batched qd8 x qb4w "
        "path (8 rows and more: unpacked weight panels, 4-row tiles plus remainder rows) reproduces XNNPACK's "
        "arithmetic, so the outputs must match bit for bit",
    )


class LongKLinears(nn.Module):
    """An 8da4w up projection to 4096 then a down projection with K = 4096 (128 blocks of 32):
    long dot products, where the order of XNNPACK's float block sums shows in the last bits, and
    4096-wide hidden rows, where its dynamic quantization rule shows."""

    def __init__(self):
        super().__init__()
        self.up = nn.Linear(256, 4096)
        self.down = nn.Linear(4096, 64)
        with torch.no_grad():
            self.up.weight.normal_(0, 256 ** -0.5)
            self.down.weight.normal_(0, 4096 ** -0.5)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


@case("xnn_8da4w_longk")
def _():
    return XSpec(
        LongKLinears(),
        [(rn(1, 48, 256),), (rn(1, 3, 256),)],
        dynamic_shapes=({1: Dim("seq", min=1, max=64)},),
        atol=0.0,
        rtol=0.0,
        quant="8da4w",
        notes="8da4w linears 256->4096->64 (K = 4096 in the second), 48 rows then 3: XNNPACK's arithmetic "
        "depends on the CPU (AVX-512 VNNI: unsigned qdu8 activations and one float sum per block; AVX2: qd8 and "
        "four float lanes); pteron follows the one recorded in meta.json (xnnpack_arith), bit for bit",
    )


def quantize_pt2e(model, example):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    q = XNNPACKQuantizer()
    q.set_global(get_symmetric_quantization_config(is_per_channel=True))
    gm = torch.export.export(model, example).module()
    gm = prepare_pt2e(gm, q)
    for _ in range(4):
        gm(*[t + 0.3 * torch.randn_like(t) for t in example])
    gm(*example)
    return convert_pt2e(gm)


def quantize_8da4w(model):
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    quantize_(model, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))
    return model


def export_case(name: str, spec: XSpec) -> str:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime

    d = FIXTURES / name
    model = spec.model.eval()
    if spec.quant == "pt2e":
        model = quantize_pt2e(model, tuple(spec.runs[0]))
    elif spec.quant == "8da4w":
        model = quantize_8da4w(model)
    mcopy = copy.deepcopy(model)
    with torch.no_grad():
        eager = [[o.clone() for o in ef.flat(mcopy(*ef.clone_inputs(r)))] for r in spec.runs]
    ep = torch.export.export(model, tuple(spec.runs[0]), dynamic_shapes=spec.dynamic_shapes)
    edge = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])
    et = edge.to_executorch()
    pte = et.buffer
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    (d / "program.pte").write_bytes(pte)
    ops = ef.op_names(pte)["forward"]
    delegates = count_delegates(pte)
    program = Runtime.get().load_program(str(d / "program.pte"))
    method = program.load_method("forward")
    refs = [ef.flat(method.execute(ef.clone_inputs(r))) for r in spec.runs]
    atol = spec.atol
    note = spec.notes
    if atol is None or atol in ("f16", "q"):
        # Largest reference output magnitude: the derived tolerances are relative to it.
        scale = max(float(np.abs(ef.to_np(t).astype(np.float64)).max()) for t in refs[0])
    if atol is None:
        atol = float(f"{max(1e-5, 1e-3 * scale):.2g}")
        if spec.quant:
            atol = float(f"{max(1e-4, 2e-2 * scale):.2g}")
    elif atol == "f16":
        atol = float(f"{max(1e-3, 1e-2 * scale):.2g}")
    elif atol == "q":
        # output of a static int8 graph: 256 levels over the output range; two steps.
        atol = float(f"{2.0 * 2.0 * scale / 255.0:.2g}")
    for r, inputs in enumerate(spec.runs):
        worst = 0.0
        for a, b in zip(refs[r], eager[r]):
            ok, diff = ef.compare(ef.to_np(a), ef.to_np(b), atol, spec.rtol)
            worst = max(worst, diff)
        print(f"  {name} run {r}: {len(refs[r])} outputs, max |ref - eager| = {worst:.3g}")
        ef.save_run(d if r == 0 else d / f"run{r}", inputs, refs[r], eager[r])
    meta = {
        "method": "forward",
        "program": "program.pte",
        "ptd": None,
        "atol": atol,
        "rtol": spec.rtol,
        "runs": len(spec.runs),
        "ops": ops,
        "input_dim_orders": [ef.dim_order_of(t) for t in spec.runs[0]],
        "notes": (note + f" ({delegates} XnnpackBackend delegate call(s))").strip(),
    }
    if spec.quant == "8da4w":
        # XNNPACK picks its dynamically quantized kernels (and with them the rounding of the
        # result) by CPU: record which family produced these reference outputs.
        meta["xnnpack_arith"] = host_xnnpack_arith()
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return name


def host_xnnpack_arith() -> str:
    """`avx512vnni` when this CPU has AVX-512 F/BW/VL/VNNI (XNNPACK then runs qd8 linears as
    unsigned `qdu8` with its AVX-512 VNNI kernels), else `avx2`."""
    try:
        flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    except OSError:
        flags = []
    need = {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
    return "avx512vnni" if need.issubset(flags) else "avx2"


def count_delegates(pte: bytes) -> int:
    from executorch.exir._serialize._program import deserialize_pte_binary

    p = deserialize_pte_binary(pte)
    prog = getattr(p, "program", p)
    return sum(len(plan.delegates) for plan in prog.execution_plan)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if args.list:
        print("\n".join(CASES))
        return 0
    names = args.only or list(CASES)
    torch.set_num_threads(1)
    failed = []
    for n in names:
        t0 = time.time()
        print(f"[{n}]", flush=True)
        torch.manual_seed(ef.seed_for(n))
        np.random.seed(ef.seed_for(n))
        try:
            export_case(n, CASES[n]())
            print(f"  ok in {time.time() - t0:.1f}s", flush=True)
        except Exception as e:  # noqa: BLE001
            traceback.print_exc(limit=5)
            shutil.rmtree(FIXTURES / n, ignore_errors=True)
            failed.append(n)
            print(f"  FAILED {n}: {type(e).__name__}: {e}", flush=True)
    total = sum(f.stat().st_size for p in FIXTURES.glob("xnn_*") for f in p.rglob("*") if f.is_file())
    print(f"xnn_* fixtures: {total} bytes ({total / 1024 / 1024:.2f} MiB), budget {SIZE_BUDGET / 1024 / 1024:.0f} MiB; failed: {failed}")
    return 1 if failed or total > SIZE_BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
