"""Vectors for prim ops: executorch_prim scalar arithmetic (Python/SymInt semantics),
sym_size/sym_numel, _local_scalar_dense, et_view and et_copy_index."""
import math

import torch

from vecgen import b, case, f, i, ints, none, out, tensor, write

cases = []


def sc(v):
    if isinstance(v, bool):
        return b(v)
    if isinstance(v, int):
        return i(v)
    return f(v)


BIN = {
    "add": lambda a, c: a + c,
    "sub": lambda a, c: a - c,
    "mul": lambda a, c: a * c,
    "truediv": lambda a, c: a / c,
    "floordiv": lambda a, c: a // c,
    "mod": lambda a, c: a % c,
    "eq": lambda a, c: a == c,
    "gt": lambda a, c: a > c,
    "ge": lambda a, c: a >= c,
    "lt": lambda a, c: a < c,
    "le": lambda a, c: a <= c,
    "sym_max": lambda a, c: torch.sym_max(a, c),
    "sym_min": lambda a, c: torch.sym_min(a, c),
}
PAIRS = [(7, 2), (-7, 2), (7, -2), (-7, -2), (6, 3), (0, 5), (7.5, 2), (-7.5, 2), (7, 2.5), (-3.25, -1.5), (3, 3.0)]
for name, fn in BIN.items():
    for a, c in PAIRS:
        r = fn(a, c)
        if isinstance(r, float) and math.isnan(r):
            continue
        cases.append(case(f"{name}_{a}_{c}", f"executorch_prim::{name}.Scalar", [sc(a), sc(c), i(0)], {2: r}, atol=1e-12, rtol=1e-12))
for a, c in [(7, 2), (-7, 2), (7, -2), (-9, 4)]:
    cases.append(case(f"floordiv_int_{a}_{c}", "executorch_prim::floordiv.int", [i(a), i(c), i(0)], {2: a // c}))
    cases.append(case(f"mod_int_{a}_{c}", "executorch_prim::mod.int", [i(a), i(c), i(0)], {2: a % c}))
# Division by zero fails.
for op in ["floordiv.Scalar", "mod.Scalar", "floordiv.int", "mod.int"]:
    cases.append(case(f"{op}_by_zero", f"executorch_prim::{op}", [i(3), i(0), i(0)], {}, error=True))

UN = {
    "neg": lambda a: -a,
    "ceil": lambda a: math.ceil(a),
    "round": lambda a: round(a),
    "trunc": lambda a: math.trunc(a),
    "sym_float": lambda a: float(a),
    "sym_int": lambda a: int(a),
    "sym_not": lambda a: not a,
}
for name, fn in UN.items():
    vals = [True, False] if name == "sym_not" else [3, -3, 2.5, 3.5, -2.5, -0.4, 7.7]
    for a in vals:
        cases.append(case(f"{name}_{a}", f"executorch_prim::{name}.Scalar", [sc(a), i(0)], {1: fn(a)}, atol=1e-12, rtol=1e-12))
for c_, a, c in [(True, 1, 2), (False, 1, 2), (True, 1.5, 2.5)]:
    cases.append(case(f"sym_ite_{c_}", "executorch_prim::sym_ite.Scalar", [b(c_), sc(a), sc(c), i(0)], {3: a if c_ else c}))

x = torch.randn(2, 3, 4)
for d in [0, 1, 2, -1, -3]:
    cases.append(case(f"sym_size_{d}", "aten::sym_size.int", [tensor(x), i(d), i(0)], {2: x.size(d)}))
cases.append(case("sym_size_bad_dim", "aten::sym_size.int", [tensor(x), i(3), i(0)], {}, error=True))
cases.append(case("sym_numel", "aten::sym_numel", [tensor(x), i(0)], {1: x.numel()}))
cases.append(case("sym_numel_empty", "aten::sym_numel", [tensor(torch.zeros(0, 3)), i(0)], {1: 0}))

for t in [torch.tensor(2.5), torch.tensor([7], dtype=torch.int64), torch.tensor(-3, dtype=torch.int32),
          torch.tensor(True), torch.tensor(1.5, dtype=torch.float16), torch.tensor([[0.25]], dtype=torch.float64)]:
    cases.append(case(f"local_scalar_dense_{t.dtype}", "aten::_local_scalar_dense", [tensor(t), i(0)], {1: t.item()}))
cases.append(case("local_scalar_dense_multi", "aten::_local_scalar_dense", [tensor(torch.ones(2)), i(0)], {}, error=True))

x = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
for sz in [[6, 4], [-1, 8], [24], [2, -1, 3]]:
    res = x.view(sz)
    cases.append(case(f"et_view_{sz}", "executorch_prim::et_view.default", [tensor(x), ints(sz), out(torch.float32, list(res.shape))], {2: res}))
cases.append(case("et_view_bad", "executorch_prim::et_view.default", [tensor(x), ints([5, -1]), out(torch.float32, [5, 5])], {}, error=True))
cases.append(case("et_view_two_infer", "executorch_prim::et_view.default", [tensor(x), ints([-1, -1]), out(torch.float32, [4, 6])], {}, error=True))

src = torch.randn(3)
exp0 = src.unsqueeze(0)
cases.append(case("et_copy_index_0", "executorch_prim::et_copy_index.tensor", [out(torch.float32, [4, 3]), tensor(src), i(0)], {0: exp0}))
exp2 = torch.zeros(3, 3)
exp2[2] = src
cases.append(case("et_copy_index_2", "executorch_prim::et_copy_index.tensor", [out(torch.float32, [4, 3]), tensor(src), i(2)], {0: exp2}))
cases.append(case("et_copy_index_over", "executorch_prim::et_copy_index.tensor", [out(torch.float32, [4, 3]), tensor(src), i(4)], {}, error=True))
cases.append(case("et_copy_index_dtype", "executorch_prim::et_copy_index.tensor", [out(torch.int64, [4, 3]), tensor(src), i(0)], {}, error=True))

write("prim", cases)
