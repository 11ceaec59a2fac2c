#!/usr/bin/env python3
"""Re-check the committed fixtures from their files alone, the way a runtime harness reads them.

Run:  conformance/.venv/bin/python conformance/verify_fixtures.py [CASE ...]

For every fixtures/<case>/meta.json: loads the program named by meta["program"] (and meta["ptd"]),
feeds in_<i>.npy (converted to the dim order in meta["input_dim_orders"]) to the ExecuTorch runtime,
runs every run in order on one loaded method, and checks the outputs against ref_<i>.npy with
meta's atol/rtol (exact for integer/bool). Also checks the .npy conventions (C order, no bf16) and
that meta["ops"] matches the operators stored in the .pte. Exits non-zero on any mismatch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
ALLOWED = {"<f4", "<f2", "<f8", "<i8", "<i4", "|u1", "|i1", "|b1", "<i2"}


def load_npy(p: Path) -> np.ndarray:
    with open(p, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
    if fortran:
        raise ValueError(f"{p}: fortran_order arrays are not allowed")
    if dtype.str not in ALLOWED:
        raise ValueError(f"{p}: dtype {dtype.str} not allowed")
    return np.load(p)


def to_input(a: np.ndarray, dim_order) -> torch.Tensor:
    t = torch.from_numpy(np.array(a, copy=True))
    if dim_order is None:
        return t.contiguous()
    # logical array -> tensor whose memory follows dim_order
    return t.permute(*dim_order).contiguous().permute(*np.argsort(dim_order).tolist())


def check_case(d: Path, rt) -> list:
    from executorch.exir._serialize._program import deserialize_pte_binary

    errors = []
    meta = json.loads((d / "meta.json").read_text())
    pte = (d / meta["program"]).resolve()
    ptd = (pte.parent / meta["ptd"]) if meta["ptd"] else None
    prog = deserialize_pte_binary(pte.read_bytes()).program
    plans = {p.name: p for p in prog.execution_plan}
    ops = sorted({o.name + ("." + o.overload if o.overload else "") for o in plans[meta["method"]].operators})
    if ops != meta["ops"]:
        errors.append(f"ops in meta.json differ from the .pte: {set(ops) ^ set(meta['ops'])}")
    program = rt.load_program(str(pte), data_path=str(ptd)) if ptd else rt.load_program(str(pte))
    method = program.load_method(meta["method"])
    for r in range(meta["runs"]):
        rd = d if r == 0 else d / f"run{r}"
        n_in = len(list(rd.glob("in_*.npy")))
        inputs = [to_input(load_npy(rd / f"in_{i}.npy"), meta["input_dim_orders"][i]) for i in range(n_in)]
        outs = method.execute(inputs)
        n_ref = len(list(rd.glob("ref_*.npy")))
        if len(outs) != n_ref:
            errors.append(f"run {r}: {len(outs)} outputs, {n_ref} ref files")
            continue
        for i, o in enumerate(outs):
            ref = load_npy(rd / f"ref_{i}.npy")
            load_npy(rd / f"eager_{i}.npy")
            got = o.detach().contiguous().numpy()
            if got.shape != ref.shape or got.dtype != ref.dtype:
                errors.append(f"run {r} out {i}: got {got.dtype}{list(got.shape)}, ref {ref.dtype}{list(ref.shape)}")
            elif ref.dtype.kind in "biu":
                if not np.array_equal(got, ref):
                    errors.append(f"run {r} out {i}: integer/bool mismatch")
            elif not np.allclose(got.astype(np.float64), ref.astype(np.float64), atol=meta["atol"], rtol=meta["rtol"], equal_nan=True):
                errors.append(f"run {r} out {i}: max diff {np.abs(got.astype(np.float64) - ref).max():.3g}")
    return errors


def main(argv) -> int:
    from executorch.runtime import Runtime

    rt = Runtime.get()
    dirs = sorted(p.parent for p in FIXTURES.glob("*/meta.json"))
    if argv:
        dirs = [d for d in dirs if d.name in argv]
    bad = 0
    for d in dirs:
        try:
            errs = check_case(d, rt)
        except Exception as e:  # noqa: BLE001
            errs = [f"{type(e).__name__}: {e}"]
        print(f"{'ok  ' if not errs else 'FAIL'} {d.name}" + ("" if not errs else ": " + "; ".join(errs)), flush=True)
        bad += bool(errs)
    print(f"{len(dirs) - bad} passed, {bad} failed")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
