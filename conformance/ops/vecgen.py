"""Helpers to write operator test vectors for crates/pteron-ops/tests/vectors/.

Each gen_<group>.py builds cases with PyTorch and calls `write(group, cases)`.
Expected values always come from running the op in PyTorch (eager ATen).

Arguments mirror ExecuTorch's kernel stack: schema arguments in order, including
`out`, then one trailing return slot (use `ref(i)` to alias the out argument, or
`tensor_list_ref`/`ref` for multi-output ops).
"""
import json
import math
import os

import torch

OUT_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "pteron-ops", "tests", "vectors")

_DT = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int8: "int8", torch.int16: "int16",
    torch.int32: "int32", torch.int64: "int64", torch.uint8: "uint8", torch.bool: "bool",
}


def _num(v):
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
    return v


def _tensor(t, kind="tensor", dynamic=False):
    t = t.detach().cpu()
    d = {"kind": kind, "dtype": _DT[t.dtype], "sizes": list(t.shape)}
    flat = t.contiguous().reshape(-1)
    if t.dtype in (torch.float16, torch.bfloat16):
        flat = flat.to(torch.float64)
    if t.dtype == torch.bool:
        flat = flat.to(torch.int64)
    d["data"] = [_num(x) for x in flat.tolist()]
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous():
        d["dim_order"] = [0, 2, 3, 1]
    if dynamic:
        d["dynamic"] = True
    return d


def tensor(t):
    """A (mutable, non-constant) input tensor. Channels-last tensors keep that dim order."""
    return _tensor(t)


def const(t):
    """A constant (read-only) tensor, like program weights."""
    return _tensor(t, "const")


def out(dtype, sizes, channels_last=False):
    """A zeroed, resizable output tensor whose bound is `sizes`."""
    d = {"kind": "out", "dtype": _DT[dtype], "sizes": list(sizes), "data": []}
    if channels_last:
        d["dim_order"] = [0, 2, 3, 1]
    return d


def i(v):
    return {"kind": "int", "v": int(v)}


def f(v):
    return {"kind": "double", "v": _num(float(v))}


def b(v):
    return {"kind": "bool", "v": bool(v)}


def none():
    return {"kind": "none"}


def s(v):
    return {"kind": "str", "v": v}


def ints(v):
    return {"kind": "int_list", "v": [int(x) for x in v]}


def floats(v):
    return {"kind": "double_list", "v": [_num(float(x)) for x in v]}


def bools(v):
    return {"kind": "bool_list", "v": [bool(x) for x in v]}


def tensors(ts):
    return {"kind": "tensor_list", "v": [_tensor(t) for t in ts]}


def outs(specs):
    """A list of outputs: [(dtype, sizes), ...]."""
    return {"kind": "tensor_list", "v": [out(dt, sz) for dt, sz in specs]}


def opt_tensors(ts):
    return {"kind": "opt_tensor_list", "v": [None if t is None else _tensor(t) for t in ts]}


def ref(idx):
    return {"kind": "ref", "v": int(idx)}


def expect_tensor(t):
    return _tensor(t)


def case(name, op, args, expect, atol=1e-5, rtol=1e-5, error=False):
    """`expect` maps argument index -> torch tensor, list of tensors, or python scalar."""
    exp = {}
    for k, v in (expect or {}).items():
        if isinstance(v, torch.Tensor):
            exp[str(k)] = _tensor(v)
        elif isinstance(v, (list, tuple)):
            exp[str(k)] = [_tensor(x) for x in v]
        else:
            exp[str(k)] = _num(v)
    c = {"name": name, "op": op, "args": args, "expect": exp, "atol": atol, "rtol": rtol}
    if error:
        c["error"] = True
    return c


def write(group, cases):
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, f"{group}.json")
    with open(path, "w") as fh:
        json.dump(cases, fh, separators=(",", ":"))
    print(f"wrote {len(cases)} cases to {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")
