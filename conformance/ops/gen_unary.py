"""Vectors for unary elementwise ops: math ufuncs, rounding, predicates, activations,
clamp. Run from conformance/ops/ with the conformance venv python."""
import torch
import torch.nn.functional as F

from vecgen import case, tensor, out, ref, f, i, s, none, write

torch.manual_seed(0)
cases = []
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def tol(dt):
    if dt == torch.float16:
        return dict(atol=2e-3, rtol=2e-3)
    if dt == torch.bfloat16:
        return dict(atol=2e-2, rtol=1e-2)
    if dt == torch.float64:
        return dict(atol=1e-9, rtol=1e-9)
    return dict(atol=1e-5, rtol=2e-5)


def sample(dt, shape, lo, hi):
    x = torch.rand(shape, dtype=torch.float64) * (hi - lo) + lo
    return x.to(dt)


def add_unary(name, fn, lo=-3.0, hi=3.0, dtypes=FLOATS, ints=True, specials=True, extra_args=()):
    op = f"aten::{name}.out"
    for dt in dtypes:
        x = sample(dt, (3, 5), lo, hi)
        y = fn(x)
        cases.append(case(f"{name}_{dt}", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                          {1 + len(extra_args): y}, **tol(dt)))
    # channels-last input, contiguous out; and both channels-last
    x = sample(torch.float32, (2, 3, 2, 4), lo, hi).to(memory_format=torch.channels_last)
    y = fn(x)
    cases.append(case(f"{name}_cl_in", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                      {1 + len(extra_args): y.contiguous()}, **tol(torch.float32)))
    cases.append(case(f"{name}_cl_both", op, [tensor(x), *extra_args, out(y.dtype, y.shape, channels_last=True),
                                             ref(1 + len(extra_args))], {1 + len(extra_args): y}, **tol(torch.float32)))
    # empty
    x = torch.zeros((0, 3))
    y = fn(x)
    cases.append(case(f"{name}_empty", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                      {1 + len(extra_args): y}))
    # rank 0
    x = sample(torch.float32, (), lo, hi)
    y = fn(x)
    cases.append(case(f"{name}_rank0", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                      {1 + len(extra_args): y}, **tol(torch.float32)))
    if ints:
        for idt in [torch.int32, torch.int64, torch.uint8, torch.bool]:
            x = sample(torch.float64, (4, 3), max(lo, 0 if idt in (torch.uint8, torch.bool) else lo), hi).round().to(idt)
            try:
                y = fn(x)
            except Exception:
                continue
            cases.append(case(f"{name}_{idt}", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                              {1 + len(extra_args): y}, **tol(y.dtype if y.is_floating_point() else torch.float64)))
    if specials:
        x = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0, -0.0, 1.0, -1.0, 0.5])
        y = fn(x)
        cases.append(case(f"{name}_special", op, [tensor(x), *extra_args, out(y.dtype, y.shape), ref(1 + len(extra_args))],
                          {1 + len(extra_args): y}, **tol(torch.float32)))


for name, fn, lo, hi in [
    ("exp", torch.exp, -5, 5), ("expm1", torch.expm1, -3, 3), ("log", torch.log, 0.01, 10),
    ("log1p", torch.log1p, -0.9, 10), ("log2", torch.log2, 0.01, 10), ("log10", torch.log10, 0.01, 10),
    ("sqrt", torch.sqrt, 0, 10), ("rsqrt", torch.rsqrt, 0.05, 10), ("reciprocal", torch.reciprocal, 0.1, 5),
    ("sin", torch.sin, -4, 4), ("cos", torch.cos, -4, 4), ("tan", torch.tan, -1.4, 1.4),
    ("asin", torch.asin, -1, 1), ("acos", torch.acos, -1, 1), ("atan", torch.atan, -5, 5),
    ("sinh", torch.sinh, -3, 3), ("cosh", torch.cosh, -3, 3), ("tanh", torch.tanh, -5, 5),
    ("asinh", torch.asinh, -5, 5), ("acosh", torch.acosh, 1, 5), ("atanh", torch.atanh, -0.99, 0.99),
    ("erf", torch.erf, -3, 3), ("sigmoid", torch.sigmoid, -8, 8),
]:
    add_unary(name, fn, lo, hi)

INTS = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]
for name, fn in [("abs", torch.abs), ("neg", torch.neg), ("ceil", torch.ceil), ("floor", torch.floor),
                 ("round", torch.round), ("trunc", torch.trunc), ("sign", torch.sign), ("relu", torch.relu)]:
    add_unary(name, fn, -4, 4, ints=False)
    for idt in INTS:
        if name == "neg" and idt == torch.uint8:
            continue
        x = torch.randint(-100 if idt != torch.uint8 else 0, 100, (3, 4)).to(idt)
        y = fn(x)
        cases.append(case(f"{name}_{idt}", f"aten::{name}.out", [tensor(x), out(idt, y.shape), ref(1)], {1: y}))
    # wrong out dtype
    cases.append(case(f"{name}_bad_out", f"aten::{name}.out", [tensor(torch.randn(3)), out(torch.int32, [3]), ref(1)],
                      {}, error=True))
x = torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999, -2.5001])
cases.append(case("round_half_even", "aten::round.out", [tensor(x), out(torch.float32, [7]), ref(1)], {1: torch.round(x)}))
x = torch.tensor([-128, 127, 0, -1], dtype=torch.int8)
cases.append(case("abs_i8_min", "aten::abs.out", [tensor(x), out(torch.int8, [4]), ref(1)], {1: torch.abs(x)}))
cases.append(case("neg_bool_err", "aten::neg.out", [tensor(torch.tensor([True, False])), out(torch.bool, [2]), ref(1)], {}, error=True))
cases.append(case("exp_int_out_err", "aten::exp.out", [tensor(torch.randn(3)), out(torch.int32, [3]), ref(1)], {}, error=True))
cases.append(case("exp_static_out_bad_shape", "aten::exp.out",
                  [tensor(torch.randn(3)), {"kind": "tensor", "dtype": "float32", "sizes": [4], "data": [0, 0, 0, 0]}, ref(1)], {},
                  error=True))

# logit(eps)
for eps in [None, 1e-3, 0.2]:
    for dt in [torch.float32, torch.float64, torch.float16]:
        x = sample(dt, (4, 4), -0.1, 1.1)
        y = torch.logit(x, eps)
        cases.append(case(f"logit_{eps}_{dt}", "aten::logit.out", [tensor(x), none() if eps is None else f(eps), out(dt, y.shape), ref(2)],
                          {2: y}, **tol(dt)))

# predicates
for name, fn in [("isnan", torch.isnan), ("isinf", torch.isinf)]:
    for dt in [torch.float32, torch.float64, torch.float16, torch.int32]:
        x = torch.tensor([float("nan"), float("inf"), float("-inf"), 0.0, 1.5, -2.0]).to(dt) if dt.is_floating_point else torch.arange(6, dtype=dt)
        y = fn(x)
        cases.append(case(f"{name}_{dt}", f"aten::{name}.out", [tensor(x), out(torch.bool, y.shape), ref(1)], {1: y}))
    cases.append(case(f"{name}_bad_out", f"aten::{name}.out", [tensor(torch.randn(3)), out(torch.float32, [3]), ref(1)], {}, error=True))

for dt in INTS + [torch.bool]:
    x = torch.randint(0 if dt in (torch.uint8, torch.bool) else -50, 2 if dt == torch.bool else 50, (3, 4)).to(dt)
    y = torch.bitwise_not(x)
    cases.append(case(f"bitwise_not_{dt}", "aten::bitwise_not.out", [tensor(x), out(dt, y.shape), ref(1)], {1: y}))
cases.append(case("bitwise_not_float_err", "aten::bitwise_not.out", [tensor(torch.randn(3)), out(torch.float32, [3]), ref(1)], {}, error=True))

for dt in [torch.float32, torch.int32, torch.bool, torch.float16, torch.uint8]:
    x = torch.tensor([0, 1, 2, 0, -3, 0]).to(dt)
    for odt in [torch.bool, torch.float32, torch.int64]:
        y = torch.logical_not(x).to(odt)
        cases.append(case(f"logical_not_{dt}_{odt}", "aten::logical_not.out", [tensor(x), out(odt, y.shape), ref(1)], {1: y}))

# gelu
for approx in ["none", "tanh"]:
    for dt in FLOATS:
        x = sample(dt, (4, 6), -5, 5)
        y = F.gelu(x, approximate=approx)
        cases.append(case(f"gelu_{approx}_{dt}", "aten::gelu.out", [tensor(x), s(approx), out(dt, y.shape), ref(2)], {2: y}, **tol(dt)))
    x = sample(torch.float32, (2, 3, 2, 2), -5, 5).to(memory_format=torch.channels_last)
    y = F.gelu(x, approximate=approx)
    cases.append(case(f"gelu_{approx}_cl", "aten::gelu.out", [tensor(x), s(approx), out(torch.float32, y.shape), ref(2)], {2: y.contiguous()}))
x = sample(torch.float32, (1000,), -6, 6)
cases.append(case("gelu_none_1000", "aten::gelu.out", [tensor(x), s("none"), out(torch.float32, [1000]), ref(2)], {2: F.gelu(x)}, atol=2e-6))
cases.append(case("gelu_bad_approx", "aten::gelu.out", [tensor(x), s("fast"), out(torch.float32, [1000]), ref(2)], {}, error=True))
cases.append(case("gelu_int_err", "aten::gelu.out", [tensor(torch.arange(3)), s("none"), out(torch.int64, [3]), ref(2)], {}, error=True))

# hardtanh / leaky_relu / elu
for dt in FLOATS + [torch.int32]:
    x = sample(torch.float64, (3, 5), -3, 3).to(dt) if dt.is_floating_point else torch.randint(-5, 5, (3, 5), dtype=dt)
    for lo, hi in [(-1.0, 1.0), (0.0, 6.0)]:
        y = F.hardtanh(x, lo, hi) if dt.is_floating_point else torch.clamp(x, int(lo), int(hi))
        la, ha = (f(lo), f(hi)) if dt.is_floating_point else (i(lo), i(hi))
        cases.append(case(f"hardtanh_{dt}_{lo}_{hi}", "aten::hardtanh.out", [tensor(x), la, ha, out(dt, y.shape), ref(3)], {3: y}, **tol(dt)))
    if dt.is_floating_point:
        for slope in [0.01, 0.2]:
            y = F.leaky_relu(x, slope)
            cases.append(case(f"leaky_relu_{dt}_{slope}", "aten::leaky_relu.out", [tensor(x), f(slope), out(dt, y.shape), ref(2)], {2: y}, **tol(dt)))
        for alpha, scale, iscale in [(1.0, 1.0, 1.0), (0.5, 1.5, 2.0)]:
            y = torch.ops.aten.elu(x, alpha, scale, iscale)
            cases.append(case(f"elu_{dt}_{alpha}_{scale}_{iscale}", "aten::elu.out", [tensor(x), f(alpha), f(scale), f(iscale), out(dt, y.shape), ref(4)],
                              {4: y}, **tol(dt)))
x = torch.tensor([float("nan"), -2.0, 2.0, 0.5])
cases.append(case("hardtanh_nan", "aten::hardtanh.out", [tensor(x), f(-1), f(1), out(torch.float32, [4]), ref(3)], {3: F.hardtanh(x)}))

# clamp (Scalar)
for dt in FLOATS + [torch.int32, torch.int64, torch.int8, torch.uint8]:
    x = sample(torch.float64, (3, 5), -3, 3).to(dt) if dt.is_floating_point else torch.randint(0 if dt == torch.uint8 else -10, 10, (3, 5), dtype=dt)
    for lo, hi in [(-1, 1), (None, 2), (0, None), (2, -2)]:
        y = torch.clamp(x, lo, hi)
        cases.append(case(f"clamp_{dt}_{lo}_{hi}", "aten::clamp.out", [tensor(x), none() if lo is None else i(lo), none() if hi is None else i(hi),
                                                                        out(y.dtype, y.shape), ref(3)], {3: y}, **tol(dt)))
    y = torch.clamp(x, -0.5, 1.5)
    cases.append(case(f"clamp_{dt}_float_bounds", "aten::clamp.out", [tensor(x), f(-0.5), f(1.5), out(y.dtype, y.shape), ref(3)], {3: y},
                      **tol(y.dtype)))
x = torch.tensor([float("nan"), -2.0, 2.0, 0.5])
cases.append(case("clamp_nan", "aten::clamp.out", [tensor(x), f(-1), f(1), out(torch.float32, [4]), ref(3)], {3: torch.clamp(x, -1, 1)}))
cases.append(case("clamp_none_none_err", "aten::clamp.out", [tensor(x), none(), none(), out(torch.float32, [4]), ref(3)], {}, error=True))
cases.append(case("clamp_int_out_float_bound_err", "aten::clamp.out", [tensor(torch.arange(4, dtype=torch.int32)), f(0.5), none(),
                                                                        out(torch.int32, [4]), ref(3)], {}, error=True))
x = sample(torch.float32, (2, 3, 2, 2), -3, 3).to(memory_format=torch.channels_last)
cases.append(case("clamp_cl", "aten::clamp.out", [tensor(x), f(-1), f(1), out(torch.float32, [2, 3, 2, 2], channels_last=True), ref(3)],
                  {3: torch.clamp(x, -1, 1)}))

# clamp.Tensor
x = sample(torch.float32, (3, 4), -3, 3)
lo = sample(torch.float32, (4,), -2, 0)
hi = sample(torch.float32, (3, 1), 0, 2)
cases.append(case("clamp_t_both", "aten::clamp.Tensor_out", [tensor(x), tensor(lo), tensor(hi), out(torch.float32, [3, 4]), ref(3)],
                  {3: torch.clamp(x, lo, hi)}))
cases.append(case("clamp_t_min", "aten::clamp.Tensor_out", [tensor(x), tensor(lo), none(), out(torch.float32, [3, 4]), ref(3)],
                  {3: torch.clamp(x, lo, None)}))
cases.append(case("clamp_t_max", "aten::clamp.Tensor_out", [tensor(x), none(), tensor(hi), out(torch.float32, [3, 4]), ref(3)],
                  {3: torch.clamp(x, None, hi)}))
xi = torch.randint(-5, 5, (3, 4), dtype=torch.int32)
lo0 = torch.tensor(-1.5)
y = torch.clamp(xi, lo0, None)
cases.append(case("clamp_t_int_float0d", "aten::clamp.Tensor_out", [tensor(xi), tensor(lo0), none(), out(y.dtype, y.shape), ref(3)], {3: y}))
lo16 = torch.tensor([0.5], dtype=torch.float16)
y = torch.clamp(x.half(), lo16, None)
cases.append(case("clamp_t_f16", "aten::clamp.Tensor_out", [tensor(x.half()), tensor(lo16), none(), out(torch.float16, y.shape), ref(3)], {3: y}))
cases.append(case("clamp_t_bad_bcast", "aten::clamp.Tensor_out", [tensor(x), tensor(torch.zeros(5)), none(), out(torch.float32, [3, 4]), ref(3)],
                  {}, error=True))
cases.append(case("clamp_t_none_err", "aten::clamp.Tensor_out", [tensor(x), none(), none(), out(torch.float32, [3, 4]), ref(3)], {}, error=True))

cases = [c for c in cases if c is not None]
write("unary", cases)
