"""Vectors for reductions, scans, topk/sort and arange/empty (crates/pteron-ops/src/reduce.rs)."""
import torch

from vecgen import b, case, f, i, ints, none, out, ref, tensor, write

torch.manual_seed(1)
cases = []
A = torch.ops.aten
CODE = {torch.uint8: 0, torch.int8: 1, torch.int16: 2, torch.int32: 3, torch.int64: 4, torch.float16: 5,
        torch.float32: 6, torch.float64: 7, torch.bool: 11, torch.bfloat16: 15}


def dt_arg(dt):
    return none() if dt is None else i(CODE[dt])


def rnd(shape, dt=torch.float32):
    if dt == torch.bool:
        return torch.rand(shape) > 0.5
    if dt.is_floating_point:
        return torch.randn(shape).to(dt)
    if dt == torch.uint8:
        return torch.randint(0, 5, shape).to(dt)
    return torch.randint(-5, 6, shape).to(dt)


def tol(dt):
    return {torch.float16: (2e-3, 2e-3), torch.bfloat16: (2e-2, 2e-2)}.get(dt, (1e-5, 1e-5))


def add(name, op, args, res, err=False, **kw):
    oi = len(args) - 1
    cases.append(case(name, op, args + [ref(oi)], {} if err else {oi: res}, error=err, **kw))


def dimarg(d):
    return none() if d is None else ints(d)


xcl = torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last)

# sum / mean
for dt in [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int32, torch.int64, torch.bool, torch.uint8, torch.int8]:
    x = rnd((3, 4, 5), dt)
    for dims, keep in [(None, False), ([1], False), ([0, 2], True), ([-1], True), ([], False), ([0], False)]:
        r = A.sum.dim_IntList(x, dims, keep)
        at, rt = tol(dt)
        add(f"sum_{dt}_{dims}_{keep}", "aten::sum.IntList_out", [tensor(x), dimarg(dims), b(keep), none(), out(r.dtype, list(r.shape))], r, atol=at, rtol=rt)
x = rnd((3, 4))
r = A.sum.dim_IntList(x, [1], False, dtype=torch.float64)
add("sum_dtype_f64", "aten::sum.IntList_out", [tensor(x), ints([1]), b(False), dt_arg(torch.float64), out(torch.float64, [3])], r)
xi = rnd((3, 4), torch.int32)
r = A.sum.dim_IntList(xi, [0], False, dtype=torch.float32)
add("sum_int_to_float", "aten::sum.IntList_out", [tensor(xi), ints([0]), b(False), dt_arg(torch.float32), out(torch.float32, [4])], r)
xh = rnd((3, 4), torch.float16)
r = A.sum.dim_IntList(xh, [1], False, dtype=torch.float32)
add("sum_f16_to_f32", "aten::sum.IntList_out", [tensor(xh), ints([1]), b(False), dt_arg(torch.float32), out(torch.float32, [3])], r)
big = torch.randn(2100) * 100
add("sum_long_1d", "aten::sum.IntList_out", [tensor(big), none(), b(False), none(), out(torch.float32, [])], big.sum(), atol=1e-3, rtol=1e-5)
bigo = torch.randn(100, 70)
add("sum_outer_rows", "aten::sum.IntList_out", [tensor(bigo), ints([0]), b(False), none(), out(torch.float32, [70])], bigo.sum(0), atol=1e-4)
add("sum_cl_all", "aten::sum.IntList_out", [tensor(xcl), none(), b(False), none(), out(torch.float32, [])], xcl.sum(), atol=1e-4)
add("sum_cl_hw", "aten::sum.IntList_out", [tensor(xcl), ints([2, 3]), b(True), none(), out(torch.float32, [2, 3, 1, 1])], xcl.sum((2, 3), keepdim=True), atol=1e-5)
add("sum_cl_c", "aten::sum.IntList_out", [tensor(xcl), ints([1]), b(False), none(), out(torch.float32, [2, 4, 5])], xcl.sum(1))
add("sum_empty_dim", "aten::sum.IntList_out", [tensor(torch.zeros(3, 0)), ints([1]), b(False), none(), out(torch.float32, [3])], torch.zeros(3))
add("sum_0d", "aten::sum.IntList_out", [tensor(torch.tensor(2.5)), none(), b(False), none(), out(torch.float32, [])], torch.tensor(2.5))
add("sum_bad_dim", "aten::sum.IntList_out", [tensor(x), ints([2]), b(False), none(), out(torch.float32, [3])], None, err=True)
add("sum_float_into_int", "aten::sum.IntList_out", [tensor(x), ints([1]), b(False), none(), out(torch.int64, [3])], None, err=True)
add("sum_dtype_mismatch", "aten::sum.IntList_out", [tensor(x), ints([1]), b(False), dt_arg(torch.float64), out(torch.float32, [3])], None, err=True)
for dt in [torch.float32, torch.float16, torch.bfloat16, torch.float64]:
    x = rnd((4, 6, 5), dt)
    for dims, keep in [(None, False), ([1], True), ([0, -1], False), ([2], False)]:
        r = A.mean.dim(x, dims, keep)
        at, rt = tol(dt)
        add(f"mean_{dt}_{dims}_{keep}", "aten::mean.out", [tensor(x), dimarg(dims), b(keep), none(), out(dt, list(r.shape))], r, atol=at, rtol=rt)
    r = x.mean()
    at, rt = tol(dt)
    add(f"mean_dtype_out_{dt}", "aten::mean.dtype_out", [tensor(x), none(), out(dt, [])], r, atol=at, rtol=rt)
xh = rnd((4, 5), torch.float16)
add("mean_f16_to_f32", "aten::mean.dtype_out", [tensor(xh), dt_arg(torch.float32), out(torch.float32, [])], xh.mean(dtype=torch.float32))
xi = rnd((4, 5), torch.int64)
add("mean_int_dtype_f32", "aten::mean.out", [tensor(xi), ints([1]), b(False), dt_arg(torch.float32), out(torch.float32, [4])], xi.mean(1, dtype=torch.float32))
add("mean_int_out", "aten::mean.out", [tensor(xi), ints([1]), b(False), none(), out(torch.int64, [4])], None, err=True)
add("mean_cl_hw", "aten::mean.out", [tensor(xcl), ints([-1, -2]), b(True), none(), out(torch.float32, [2, 3, 1, 1])], xcl.mean((-1, -2), keepdim=True))

# prod
for dt in [torch.float32, torch.int32, torch.int64, torch.float16, torch.bool]:
    x = rnd((3, 4), dt)
    if dt.is_floating_point:
        x = (x.float() * 0.5 + 1).to(dt)
    for d, keep in [(0, False), (1, True), (-1, False)]:
        r = torch.prod(x, d, keep)
        at, rt = tol(dt)
        add(f"prod_int_{dt}_{d}_{keep}", "aten::prod.int_out", [tensor(x), i(d), b(keep), none(), out(r.dtype, list(r.shape))], r, atol=at, rtol=rt)
    r = torch.prod(x)
    add(f"prod_all_{dt}", "aten::prod.out", [tensor(x), none(), out(r.dtype, [])], r, atol=tol(dt)[0], rtol=tol(dt)[1])

# amax / amin / max / min / argmax / argmin
xn = torch.randn(4, 5)
xn[1, 2] = float("nan")
xn[3, 0] = float("nan")
ties = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, -1.0, 2.0], [5.0, 5.0, 5.0, 5.0]])
for dt in [torch.float32, torch.float16, torch.int64, torch.int8, torch.bool, torch.bfloat16, torch.uint8]:
    x = rnd((3, 4, 5), dt)
    for dims, keep in [([], False), ([1], False), ([0, 2], True), ([-1], False)]:
        for name, fn in [("amax", torch.amax), ("amin", torch.amin)]:
            r = fn(x, dims, keep)
            add(f"{name}_{dt}_{dims}_{keep}", f"aten::{name}.out", [tensor(x), ints(dims), b(keep), out(dt, list(r.shape))], r)
    for name, fn in [("max", torch.max), ("min", torch.min)]:
        r = fn(x)
        add(f"{name}_unary_{dt}", f"aten::{name}.unary_out", [tensor(x), out(dt, [])], r)
        for d, keep in [(1, False), (-1, True), (0, False)]:
            v, ix = fn(x, d, keep)
            cases.append(case(f"{name}_dim_{dt}_{d}_{keep}", f"aten::{name}.dim_{name}", [tensor(x), i(d), b(keep), out(dt, list(v.shape)), out(torch.int64, list(v.shape)), none()], {3: v, 4: ix}))
    for name, fn in [("argmax", torch.argmax), ("argmin", torch.argmin)]:
        if dt == torch.bool:
            continue
        for d, keep in [(None, False), (None, True), (1, False), (-1, True)]:
            r = fn(x, d, keep)
            add(f"{name}_{dt}_{d}_{keep}", f"aten::{name}.out", [tensor(x), none() if d is None else i(d), b(keep), out(torch.int64, list(r.shape))], r)
for name, fn in [("amax", torch.amax), ("amin", torch.amin)]:
    r = fn(xn, [1])
    add(f"{name}_nan", f"aten::{name}.out", [tensor(xn), ints([1]), b(False), out(torch.float32, [4])], r)
    r = fn(xn, [0])
    add(f"{name}_nan_outer", f"aten::{name}.out", [tensor(xn), ints([0]), b(False), out(torch.float32, [5])], r)
for name, fn in [("max", torch.max), ("min", torch.min)]:
    for src, tag in [(xn, "nan"), (ties, "ties")]:
        for d in [0, 1]:
            v, ix = fn(src, d)
            cases.append(case(f"{name}_dim_{tag}_{d}", f"aten::{name}.dim_{name}", [tensor(src), i(d), b(False), out(torch.float32, list(v.shape)), out(torch.int64, list(v.shape)), none()], {3: v, 4: ix}))
    add(f"{name}_unary_nan", f"aten::{name}.unary_out", [tensor(xn), out(torch.float32, [])], fn(xn))
    add(f"{name}_unary_empty", f"aten::{name}.unary_out", [tensor(torch.zeros(0)), out(torch.float32, [])], None, err=True)
for name, fn in [("argmax", torch.argmax), ("argmin", torch.argmin)]:
    for src, tag in [(xn, "nan"), (ties, "ties")]:
        for d in [None, 0, 1]:
            r = fn(src, d)
            add(f"{name}_{tag}_{d}", f"aten::{name}.out", [tensor(src), none() if d is None else i(d), b(False), out(torch.int64, list(r.shape))], r)
    r = fn(xcl, 1)
    add(f"{name}_cl", f"aten::{name}.out", [tensor(xcl), i(1), b(False), out(torch.int64, list(r.shape))], r)
    r = fn(xcl)
    add(f"{name}_cl_all", f"aten::{name}.out", [tensor(xcl), none(), b(False), out(torch.int64, [])], r)
add("amax_empty", "aten::amax.out", [tensor(torch.zeros(3, 0)), ints([1]), b(False), out(torch.float32, [3])], None, err=True)
add("amax_dtype_mismatch", "aten::amax.out", [tensor(xn), ints([1]), b(False), out(torch.float64, [4])], None, err=True)
add("argmax_bad_out", "aten::argmax.out", [tensor(xn), i(1), b(False), out(torch.int32, [4])], None, err=True)
bigt = torch.randn(70, 66)
add("amax_outer_big", "aten::amax.out", [tensor(bigt), ints([0]), b(False), out(torch.float32, [66])], bigt.amax(0))
v, ix = torch.max(bigt, 0)
cases.append(case("max_dim_outer_big", "aten::max.dim_max", [tensor(bigt), i(0), b(False), out(torch.float32, [66]), out(torch.int64, [130]), none()], {3: v, 4: ix}))

# any / all
for dt in [torch.bool, torch.float32, torch.int64, torch.uint8]:
    x = rnd((3, 4, 5), dt)
    if dt != torch.bool:
        x = x * (torch.rand(3, 4, 5) > 0.7).to(dt)
    for name, fn in [("any", torch.any), ("all", torch.all)]:
        r = fn(x)
        add(f"{name}_all_{dt}", f"aten::{name}.all_out", [tensor(x), out(r.dtype, [])], r)
        for d, keep in [(1, False), (-1, True)]:
            r = fn(x, d, keep)
            add(f"{name}_dim_{dt}_{d}_{keep}", f"aten::{name}.out", [tensor(x), i(d), b(keep), out(r.dtype, list(r.shape))], r)
        for d, keep in [(None, False), ([0, 2], False), ([1], True)]:
            r = getattr(A, name).dims(x, d, keep)
            add(f"{name}_dims_{dt}_{d}_{keep}", f"aten::{name}.dims_out", [tensor(x), dimarg(d), b(keep), out(r.dtype, list(r.shape))], r)
add("any_empty", "aten::any.all_out", [tensor(torch.zeros(0)), out(torch.bool, [])], torch.tensor(False))
add("all_empty", "aten::all.all_out", [tensor(torch.zeros(0)), out(torch.bool, [])], torch.tensor(True))
add("any_bad_out", "aten::any.all_out", [tensor(torch.zeros(3)), out(torch.float32, [])], None, err=True)

# var / std / var_mean
for dt in [torch.float32, torch.float64, torch.float16]:
    x = rnd((4, 6, 5), dt)
    at, rt = tol(dt)
    for dims, corr, keep in [(None, None, False), ([1], 0, True), ([0, 2], 1, False), ([-1], 2, False), ([2], 1.5, True)]:
        r = A.var.correction(x, dims, correction=corr, keepdim=keep)
        add(f"var_{dt}_{dims}_{corr}_{keep}", "aten::var.correction_out", [tensor(x), dimarg(dims), none() if corr is None else (f(corr) if isinstance(corr, float) else i(corr)), b(keep), out(dt, list(r.shape))], r, atol=at, rtol=rt)
        r = A.std.correction(x, dims, correction=corr, keepdim=keep)
        add(f"std_{dt}_{dims}_{corr}_{keep}", "aten::std.correction_out", [tensor(x), dimarg(dims), none() if corr is None else (f(corr) if isinstance(corr, float) else i(corr)), b(keep), out(dt, list(r.shape))], r, atol=at, rtol=rt)
    for unb in [True, False]:
        r = A.var.dim(x, [1], unb, False)
        add(f"var_out_{dt}_{unb}", "aten::var.out", [tensor(x), ints([1]), b(unb), b(False), out(dt, list(r.shape))], r, atol=at, rtol=rt)
    v, m = A.var_mean.correction(x, [2], correction=1, keepdim=True)
    cases.append(case(f"var_mean_{dt}", "aten::var_mean.correction_out", [tensor(x), ints([2]), i(1), b(True), out(dt, list(v.shape)), out(dt, list(m.shape)), none()], {4: v, 5: m}, atol=at, rtol=rt))
x1 = torch.randn(1, 4)
add("var_single_elem", "aten::var.correction_out", [tensor(x1), ints([0]), none(), b(False), out(torch.float32, [4])], A.var.correction(x1, [0]))
add("var_cl", "aten::var.correction_out", [tensor(xcl), ints([1]), i(0), b(True), out(torch.float32, [2, 1, 4, 5])], A.var.correction(xcl, [1], correction=0, keepdim=True))
add("var_int", "aten::var.correction_out", [tensor(rnd((3, 4), torch.int64)), ints([1]), none(), b(False), out(torch.int64, [3])], None, err=True)
bigv = torch.randn(150, 20) * 3 + 10
add("var_outer_big", "aten::var.correction_out", [tensor(bigv), ints([0]), none(), b(False), out(torch.float32, [20])], bigv.var(0), atol=1e-4, rtol=1e-4)
add("var_inner_big", "aten::var.correction_out", [tensor(bigv.t().contiguous()), ints([1]), none(), b(False), out(torch.float32, [20])], bigv.var(0), atol=1e-4, rtol=1e-4)

# cumsum / cumprod
for dt in [torch.float32, torch.float64, torch.float16, torch.int32, torch.int64, torch.bool, torch.uint8]:
    x = rnd((3, 4, 5), dt)
    for d in [0, 1, -1]:
        r = torch.cumsum(x, d)
        at, rt = tol(dt)
        add(f"cumsum_{dt}_{d}", "aten::cumsum.out", [tensor(x), i(d), none(), out(r.dtype, list(r.shape))], r, atol=at, rtol=rt)
        if dt != torch.bool:
            xs = (x.double() * 0.3 + 1).to(dt) if dt.is_floating_point else x
            r = torch.cumprod(xs, d)
            add(f"cumprod_{dt}_{d}", "aten::cumprod.out", [tensor(xs), i(d), none(), out(r.dtype, list(r.shape))], r, atol=at * 10, rtol=rt * 10)
x = rnd((4, 80))
add("cumsum_outer_wide", "aten::cumsum.out", [tensor(x), i(0), none(), out(torch.float32, [4, 80])], torch.cumsum(x, 0))
xi = rnd((3, 4), torch.int32)
add("cumsum_int_to_f32", "aten::cumsum.out", [tensor(xi), i(1), dt_arg(torch.float32), out(torch.float32, [3, 4])], torch.cumsum(xi, 1, dtype=torch.float32))
add("cumsum_0d", "aten::cumsum.out", [tensor(torch.tensor(3.0)), i(0), none(), out(torch.float32, [])], torch.tensor(3.0))
add("cumsum_cl", "aten::cumsum.out", [tensor(xcl), i(1), none(), out(torch.float32, [2, 3, 4, 5])], torch.cumsum(xcl, 1).contiguous())
add("cumsum_bad_dim", "aten::cumsum.out", [tensor(xi), i(2), none(), out(torch.int64, [3, 4])], None, err=True)
add("cumsum_float_into_int", "aten::cumsum.out", [tensor(rnd((3,))), i(0), none(), out(torch.int64, [3])], None, err=True)

# topk / sort
for dt in [torch.float32, torch.int64, torch.float16, torch.int32]:
    x = torch.randperm(60).reshape(3, 4, 5).to(dt)
    for k, d, largest in [(2, -1, True), (3, 1, False), (1, 0, True), (5, 2, False), (4, 1, True)]:
        v, ix = torch.topk(x, k, d, largest, True)
        cases.append(case(f"topk_{dt}_{k}_{d}_{largest}", "aten::topk.values", [tensor(x), i(k), i(d), b(largest), b(True), out(dt, list(v.shape)), out(torch.int64, list(v.shape)), none()], {5: v, 6: ix}))
xnan = torch.tensor([[1.0, float("nan"), 3.0, -1.0, 2.0]])
for largest in [True, False]:
    v, ix = torch.topk(xnan, 3, 1, largest)
    cases.append(case(f"topk_nan_{largest}", "aten::topk.values", [tensor(xnan), i(3), i(1), b(largest), b(True), out(torch.float32, [1, 3]), out(torch.int64, [1, 3]), none()], {5: v, 6: ix}))
xt = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0])
v, ix = torch.topk(xt, 5)
cases.append(case("topk_ties_values", "aten::topk.values", [tensor(xt), i(5), i(0), b(True), b(True), out(torch.float32, [5]), out(torch.int64, [5]), none()], {5: v}))
cases.append(case("topk_k_too_big", "aten::topk.values", [tensor(xt), i(6), i(0), b(True), b(True), out(torch.float32, [6]), out(torch.int64, [6]), none()], {}, error=True))
v, ix = torch.topk(torch.randn(5, 4), 0, 0)
cases.append(case("topk_k0", "aten::topk.values", [tensor(torch.randn(5, 4)), i(0), i(0), b(True), b(True), out(torch.float32, [0, 4]), out(torch.int64, [0, 4]), none()], {5: v, 6: ix}))
bigk = torch.randn(4, 300)
v, ix = torch.topk(bigk, 7)
cases.append(case("topk_big", "aten::topk.values", [tensor(bigk), i(7), i(-1), b(True), b(True), out(torch.float32, [4, 7]), out(torch.int64, [4, 7]), none()], {5: v, 6: ix}))
for dt in [torch.float32, torch.int64]:
    x = torch.randperm(24).reshape(2, 3, 4).to(dt)
    for d, desc in [(-1, False), (1, True), (0, False)]:
        v, ix = torch.sort(x, d, desc)
        cases.append(case(f"sort_{dt}_{d}_{desc}", "aten::sort.values", [tensor(x), i(d), b(desc), out(dt, list(v.shape)), out(torch.int64, list(v.shape)), none()], {3: v, 4: ix}))
v, ix = torch.sort(xnan, 1)
cases.append(case("sort_nan", "aten::sort.values", [tensor(xnan), i(1), b(False), out(torch.float32, [1, 5]), out(torch.int64, [1, 5]), none()], {3: v, 4: ix}))

# arange / empty
for end, dt in [(5, torch.int64), (5, torch.float32), (7.5, torch.float32), (4, torch.int32), (3, torch.float16), (0, torch.int64)]:
    r = torch.arange(end, dtype=dt)
    add(f"arange_{end}_{dt}", "aten::arange.out", [i(end) if isinstance(end, int) else f(end), out(dt, [max(len(r), 1)])], r)
for s, e, st, dt in [(2, 10, 3, torch.int64), (0.5, 3.0, 0.5, torch.float32), (10, 0, -3, torch.int64), (1, 2, 0.1, torch.float64),
                     (-1.0, 1.0, 0.25, torch.float16), (0.5, 5, 1.5, torch.int64), (0, 1, 0.3, torch.float32), (-5, 5, 2, torch.int32)]:
    r = torch.arange(s, e, st, dtype=dt)
    sc = lambda v: i(v) if isinstance(v, int) else f(v)
    add(f"arange_start_{s}_{e}_{st}_{dt}", "aten::arange.start_out", [sc(s), sc(e), sc(st), out(dt, [len(r) + 2])], r, atol=1e-6, rtol=1e-6)
add("arange_zero_step", "aten::arange.start_out", [i(0), i(5), i(0), out(torch.int64, [5])], None, err=True)
add("arange_bad_sign", "aten::arange.start_out", [i(0), i(5), i(-1), out(torch.int64, [5])], None, err=True)
add("arange_too_small", "aten::arange.out", [i(10), out(torch.int64, [5])], None, err=True)
cases.append(case("empty", "aten::empty.out", [ints([2, 3]), none(), out(torch.float32, [4, 4]), ref(2)], {}))
cases[-1]["expect"] = {}
cases.append(case("empty_too_big", "aten::empty.out", [ints([5, 5]), none(), out(torch.float32, [4, 4]), ref(2)], {}, error=True))
cases.append(case("empty_dim_order", "dim_order_ops::_empty_dim_order.out", [ints([2, 3]), none(), out(torch.float32, [4, 4]), ref(2)], {}))
cases.append(case("empty_dim_order_mismatch", "dim_order_ops::_empty_dim_order.out", [ints([2, 3]), ints([1, 0]), out(torch.float32, [4, 4]), ref(2)], {}, error=True))

write("reduce", cases)
