"""Vectors for binary/ternary elementwise ops, comparisons, where/masked_fill and
copies/fills. Run from conformance/ops/ with the conformance venv python."""
import torch

from vecgen import case, tensor, out, ref, f, i, b, s, none, ints, write

torch.manual_seed(0)
cases = []


def tol(dt):
    if dt == torch.float16:
        return dict(atol=2e-3, rtol=2e-3)
    if dt == torch.bfloat16:
        return dict(atol=2e-2, rtol=1e-2)
    if dt == torch.float64:
        return dict(atol=1e-10, rtol=1e-10)
    return dict(atol=1e-5, rtol=2e-5)


def rnd(dt, shape, lo=-5, hi=5, nonzero=False):
    if dt == torch.bool:
        return torch.rand(shape) > 0.5
    if dt.is_floating_point:
        x = (torch.rand(shape, dtype=torch.float64) * (hi - lo) + lo)
        if nonzero:
            x = torch.where(x.abs() < 0.1, torch.full_like(x, 0.7), x)
        return x.to(dt)
    lo_ = 0 if dt == torch.uint8 else lo
    x = torch.randint(lo_, hi + 1, shape, dtype=torch.int64)
    if nonzero:
        x = torch.where(x == 0, torch.full_like(x, 3), x)
    return x.to(dt)


def sc(v):
    if isinstance(v, bool):
        return b(v)
    if isinstance(v, int):
        return i(v)
    return f(v)


def add_tt(name, op, fn, dtypes, extra=(), nonzero=False, lo=-5, hi=5, out_dtype=None):
    """Tensor-Tensor cases: per dtype pairs, broadcasting, channels-last, empty."""
    n_in = 2
    oi = n_in + len(extra)
    for da, db in dtypes:
        x, y = rnd(da, (3, 4), lo, hi), rnd(db, (3, 4), lo, hi, nonzero)
        try:
            r = fn(x, y)
        except Exception:
            continue
        od = out_dtype or r.dtype
        cases.append(case(f"{name}_{da}_{db}", op, [tensor(x), tensor(y), *extra, out(od, r.shape), ref(oi)], {oi: r.to(od)},
                          **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
    da = dtypes[0][0]
    # broadcasting (row, column, rank-mismatch, 0-dim)
    for sa, sb in [((2, 3, 4), (4,)), ((3, 1), (1, 5)), ((2, 1, 4), (3, 1)), ((3, 4), ()), ((), (3, 4))]:
        x, y = rnd(da, sa, lo, hi), rnd(da, sb, lo, hi, nonzero)
        r = fn(x, y)
        cases.append(case(f"{name}_bcast_{sa}_{sb}", op, [tensor(x), tensor(y), *extra, out(out_dtype or r.dtype, r.shape), ref(oi)],
                          {oi: r.to(out_dtype or r.dtype)}, **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
    # channels-last operands
    x = rnd(da, (2, 3, 2, 2), lo, hi).to(memory_format=torch.channels_last)
    y = rnd(da, (2, 3, 2, 2), lo, hi, nonzero)
    r = fn(x, y)
    cases.append(case(f"{name}_cl_mixed", op, [tensor(x), tensor(y), *extra, out(out_dtype or r.dtype, r.shape), ref(oi)],
                      {oi: r.contiguous().to(out_dtype or r.dtype)}, **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
    y = y.to(memory_format=torch.channels_last)
    cases.append(case(f"{name}_cl_both", op, [tensor(x), tensor(y), *extra, out(out_dtype or r.dtype, r.shape, channels_last=True), ref(oi)],
                      {oi: r.to(out_dtype or r.dtype)}, **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
    ybc = rnd(da, (3, 1, 1), lo, hi, nonzero)
    r = fn(x, ybc)
    cases.append(case(f"{name}_cl_bcast", op, [tensor(x), tensor(ybc), *extra, out(out_dtype or r.dtype, r.shape, channels_last=True), ref(oi)],
                      {oi: r.to(out_dtype or r.dtype)}, **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
    # empty
    x, y = rnd(da, (0, 4)), rnd(da, (1, 4), nonzero=True)
    r = fn(x, y)
    cases.append(case(f"{name}_empty", op, [tensor(x), tensor(y), *extra, out(out_dtype or r.dtype, r.shape), ref(oi)], {oi: r.to(out_dtype or r.dtype)}))
    # bad broadcast
    cases.append(case(f"{name}_bad_bcast", op, [tensor(rnd(da, (3, 4))), tensor(rnd(da, (5,), nonzero=True)), *extra,
                                                out(out_dtype or r.dtype, (3, 4)), ref(oi)], {}, error=True))


def add_ts(name, op, fn, dtypes, scalars, extra=(), lo=-5, hi=5, nonzero=False):
    oi = 2 + len(extra)
    for dt in dtypes:
        for v in scalars:
            x = rnd(dt, (3, 4), lo, hi)
            try:
                r = fn(x, v)
            except Exception:
                continue
            cases.append(case(f"{name}_{dt}_{v}", op, [tensor(x), sc(v), *extra, out(r.dtype, r.shape), ref(oi)], {oi: r},
                              **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))


F = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
I = [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8]
SAME = [(d, d) for d in F + I]
MIXED = [(torch.float32, torch.int32), (torch.int64, torch.float16), (torch.uint8, torch.int8), (torch.bool, torch.int32),
         (torch.float16, torch.bfloat16), (torch.float32, torch.float64), (torch.int32, torch.bool)]

# add / sub / mul
for alpha in [1, 2]:
    add_tt(f"add_a{alpha}", "aten::add.out", lambda x, y, a=alpha: torch.add(x, y, alpha=a), SAME + MIXED + [(torch.bool, torch.bool)] if alpha == 1 else SAME,
           extra=[i(alpha)])
    add_tt(f"sub_a{alpha}", "aten::sub.out", lambda x, y, a=alpha: torch.sub(x, y, alpha=a), SAME + MIXED[:4] if alpha == 1 else SAME, extra=[i(alpha)])
add_tt("add_a0.5", "aten::add.out", lambda x, y: torch.add(x, y, alpha=0.5), [(d, d) for d in F], extra=[f(0.5)])
add_tt("mul", "aten::mul.out", torch.mul, SAME + MIXED + [(torch.bool, torch.bool)])
cases.append(case("add_int_float_alpha_err", "aten::add.out", [tensor(rnd(torch.int32, (3,))), tensor(rnd(torch.int32, (3,))), f(0.5),
                                                                 out(torch.int32, (3,)), ref(3)], {}, error=True))
cases.append(case("add_float_into_int_err", "aten::add.out", [tensor(rnd(torch.float32, (3,))), tensor(rnd(torch.int32, (3,))), i(1),
                                                                out(torch.int32, (3,)), ref(3)], {}, error=True))
cases.append(case("sub_bool_err", "aten::sub.out", [tensor(rnd(torch.bool, (3,))), tensor(rnd(torch.bool, (3,))), i(1),
                                                      out(torch.bool, (3,)), ref(3)], {}, error=True))
x = rnd(torch.float32, (2, 3))
cases.append(case("add_static_out_wrong_shape", "aten::add.out",
                  [tensor(x), tensor(x), i(1), {"kind": "tensor", "dtype": "float32", "sizes": [3, 2], "data": [0] * 6}, ref(3)], {}, error=True))
x8 = torch.tensor([100, 120, -100], dtype=torch.int8)
cases.append(case("add_i8_wrap", "aten::add.out", [tensor(x8), tensor(x8), i(1), out(torch.int8, (3,)), ref(3)], {3: x8 + x8}))
for alpha in [1, 2]:
    add_ts(f"add_s_a{alpha}", "aten::add.Scalar_out", lambda x, v, a=alpha: torch.add(x, v, alpha=a), F + I + [torch.bool], [3, 0.5, True, 1000],
           extra=[i(alpha)])
    add_ts(f"sub_s_a{alpha}", "aten::sub.Scalar_out", lambda x, v, a=alpha: torch.sub(x, v, alpha=a), F + I, [3, 0.5], extra=[i(alpha)])
    add_ts(f"rsub_s_a{alpha}", "aten::rsub.Scalar_out", lambda x, v, a=alpha: torch.rsub(x, v, alpha=a), F + I, [3, 0.5], extra=[i(alpha)])
add_ts("mul_s", "aten::mul.Scalar_out", torch.mul, F + I + [torch.bool], [3, 0.5, True, -2])

# division family
NZ = dict(nonzero=True)
add_tt("div", "aten::div.out", torch.div, SAME + MIXED[:4], **NZ)
for mode in ["trunc", "floor"]:
    add_tt(f"div_{mode}", "aten::div.out_mode", lambda x, y, m=mode: torch.div(x, y, rounding_mode=m), SAME + MIXED[:3], extra=[s(mode)], **NZ)
    add_ts(f"div_s_{mode}", "aten::div.Scalar_mode_out", lambda x, v, m=mode: torch.div(x, v, rounding_mode=m), F + I, [3, -2, 0.5, -1.5],
           extra=[s(mode)])
add_tt("div_none", "aten::div.out_mode", lambda x, y: torch.div(x, y), [(torch.float32, torch.float32), (torch.int32, torch.int32)], extra=[none()], **NZ)
add_ts("div_s", "aten::div.Scalar_out", torch.div, F + I, [3, -2, 0.5])
add_tt("floor_divide", "aten::floor_divide.out", torch.floor_divide, SAME + MIXED[:3], **NZ)
add_tt("remainder", "aten::remainder.Tensor_out", torch.remainder, SAME + MIXED[:3], **NZ)
add_ts("remainder_s", "aten::remainder.Scalar_out", torch.remainder, F + I, [3, -2, 1.5, -0.7])
add_tt("fmod", "aten::fmod.Tensor_out", torch.fmod, SAME + MIXED[:3], **NZ)
add_ts("fmod_s", "aten::fmod.Scalar_out", torch.fmod, F + I, [3, -2, 1.5, -0.7])
xs = torch.tensor([5.0, -5.0, 5.0, -5.0, 0.0, 1.0, -1.0, float("inf"), float("nan"), 7.5])
ys = torch.tensor([3.0, 3.0, -3.0, -3.0, 2.0, 0.0, 0.0, 2.0, 1.0, -2.5])
for nm, fn, op, extra in [("div", torch.div, "aten::div.out", []),
                          ("div_floor", lambda a, c: torch.div(a, c, rounding_mode="floor"), "aten::div.out_mode", [s("floor")]),
                          ("div_trunc", lambda a, c: torch.div(a, c, rounding_mode="trunc"), "aten::div.out_mode", [s("trunc")]),
                          ("remainder", torch.remainder, "aten::remainder.Tensor_out", []), ("fmod", torch.fmod, "aten::fmod.Tensor_out", []),
                          ("floor_divide", torch.floor_divide, "aten::floor_divide.out", [])]:
    r = fn(xs, ys)
    cases.append(case(f"{nm}_special", op, [tensor(xs), tensor(ys), *extra, out(torch.float32, r.shape), ref(2 + len(extra))], {2 + len(extra): r}))
xi, zi = torch.tensor([1, 2, 3], dtype=torch.int32), torch.tensor([1, 0, 1], dtype=torch.int32)
for nm, op, extra in [("div_floor", "aten::div.out_mode", [s("floor")]), ("remainder", "aten::remainder.Tensor_out", []),
                      ("fmod", "aten::fmod.Tensor_out", []), ("floor_divide", "aten::floor_divide.out", [])]:
    cases.append(case(f"{nm}_int_zero_err", op, [tensor(xi), tensor(zi), *extra, out(torch.int32, (3,)), ref(2 + len(extra))], {}, error=True))
cases.append(case("div_bad_mode", "aten::div.out_mode", [tensor(xs), tensor(ys), s("round"), out(torch.float32, (10,)), ref(3)], {}, error=True))
cases.append(case("div_int_out_err", "aten::div.out", [tensor(xi), tensor(xi), out(torch.int32, (3,)), ref(2)], {}, error=True))
cases.append(case("remainder_s_zero_err", "aten::remainder.Scalar_out", [tensor(xi), i(0), out(torch.int32, (3,)), ref(2)], {}, error=True))

# pow
add_tt("pow", "aten::pow.Tensor_Tensor_out", torch.pow, [(d, d) for d in F] + [(torch.int32, torch.int32), (torch.int64, torch.int64),
                                                                               (torch.float32, torch.int32), (torch.int32, torch.float32)], lo=0, hi=4)
xi = torch.tensor([2, -2, 1, -1, 0, 3], dtype=torch.int64)
yi = torch.tensor([-1, -3, -5, -3, 2, 40], dtype=torch.int64)
cases.append(case("pow_int_neg_exp", "aten::pow.Tensor_Tensor_out", [tensor(xi), tensor(yi), out(torch.int64, (6,)), ref(2)], {2: torch.pow(xi, yi)}))
add_ts("pow_ts", "aten::pow.Tensor_Scalar_out", torch.pow, F + [torch.int32, torch.int64, torch.uint8], [2, 3, 0.5, 2.5, 0], lo=0, hi=4)
cases.append(case("pow_ts_neg_int_err", "aten::pow.Tensor_Scalar_out", [tensor(xi), i(-1), out(torch.int64, (6,)), ref(2)], {}, error=True))
for v in [2, 2.5, 0.5]:
    for dt in [torch.float32, torch.float16, torch.int32, torch.float64]:
        e = rnd(dt, (3, 4), 0, 3)
        r = torch.pow(v, e)
        cases.append(case(f"pow_st_{v}_{dt}", "aten::pow.Scalar_out", [sc(v), tensor(e), out(r.dtype, r.shape), ref(2)], {2: r},
                          **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))

# atan2, maximum, minimum
add_tt("atan2", "aten::atan2.out", torch.atan2, [(d, d) for d in F] + [(torch.int32, torch.int32), (torch.float32, torch.int64)])
for nm, fn in [("maximum", torch.maximum), ("minimum", torch.minimum)]:
    add_tt(nm, f"aten::{nm}.out", fn, SAME + MIXED[:4] + [(torch.bool, torch.bool)])
    xn = torch.tensor([float("nan"), 1.0, 2.0, float("nan")])
    yn = torch.tensor([1.0, float("nan"), 1.0, float("nan")])
    cases.append(case(f"{nm}_nan", f"aten::{nm}.out", [tensor(xn), tensor(yn), out(torch.float32, (4,)), ref(2)], {2: fn(xn, yn)}))

# bitwise / shifts
BI = [(d, d) for d in I + [torch.bool]] + [(torch.int32, torch.int8), (torch.bool, torch.uint8)]
for nm, fn in [("bitwise_and", torch.bitwise_and), ("bitwise_or", torch.bitwise_or), ("bitwise_xor", torch.bitwise_xor)]:
    add_tt(nm, f"aten::{nm}.Tensor_out", fn, BI, lo=-50, hi=50)
    add_ts(f"{nm}_s", f"aten::{nm}.Scalar_out", fn, I + [torch.bool], [5, True, -3], lo=-50, hi=50)
    cases.append(case(f"{nm}_float_err", f"aten::{nm}.Tensor_out", [tensor(rnd(torch.float32, (3,))), tensor(rnd(torch.float32, (3,))),
                                                                    out(torch.float32, (3,)), ref(2)], {}, error=True))
for nm, fn in [("bitwise_left_shift", torch.bitwise_left_shift), ("bitwise_right_shift", torch.bitwise_right_shift)]:
    for dt in I:
        x = rnd(dt, (12,), -100, 100)
        y = torch.tensor([0, 1, 2, 3, 7, 8, 15, 16, 31, 33, 63, 1]).to(dt)
        if dt == torch.uint8:
            y = torch.tensor([0, 1, 2, 3, 7, 8, 9, 200, 1, 2, 3, 4], dtype=torch.uint8)
        r = fn(x, y)
        cases.append(case(f"{nm}_{dt}", f"aten::{nm}.Tensor_out", [tensor(x), tensor(y), out(dt, r.shape), ref(2)], {2: r}))
        r = fn(x, 3)
        cases.append(case(f"{nm}_s_{dt}", f"aten::{nm}.Tensor_Scalar_out", [tensor(x), i(3), out(dt, r.shape), ref(2)], {2: r}))
    x = torch.tensor([-8, 8, -1], dtype=torch.int32)
    yneg = torch.tensor([-1, 40, 2], dtype=torch.int32)
    r = fn(x, yneg)
    cases.append(case(f"{nm}_neg_big", f"aten::{nm}.Tensor_out", [tensor(x), tensor(yneg), out(torch.int32, (3,)), ref(2)], {2: r}))

# logical
LG = [(torch.bool, torch.bool), (torch.float32, torch.float32), (torch.int32, torch.float16), (torch.uint8, torch.int64)]
for nm, fn in [("logical_and", torch.logical_and), ("logical_or", torch.logical_or), ("logical_xor", torch.logical_xor)]:
    add_tt(nm, f"aten::{nm}.out", fn, LG, lo=-1, hi=1)
    x, y = rnd(torch.float32, (3, 4), -1, 1).round(), rnd(torch.int32, (3, 4), -1, 1)
    cases.append(case(f"{nm}_float_out", f"aten::{nm}.out", [tensor(x), tensor(y), out(torch.float32, (3, 4)), ref(2)],
                      {2: fn(x, y).float()}))

# comparisons
for nm in ["eq", "ne", "lt", "le", "gt", "ge"]:
    fn = getattr(torch, nm)
    add_tt(nm, f"aten::{nm}.Tensor_out", fn, SAME + MIXED + [(torch.bool, torch.bool)], lo=-2, hi=2)
    add_ts(f"{nm}_s", f"aten::{nm}.Scalar_out", fn, F + I + [torch.bool], [1, 0.5, True, -1], lo=-2, hi=2)
    x, y = rnd(torch.float32, (3, 4), -2, 2).round(), rnd(torch.float32, (3, 4), -2, 2).round()
    cases.append(case(f"{nm}_float_out", f"aten::{nm}.Tensor_out", [tensor(x), tensor(y), out(torch.float32, (3, 4)), ref(2)],
                      {2: fn(x, y).float()}))
    xn = torch.tensor([float("nan"), 1.0, float("inf"), -0.0])
    yn = torch.tensor([float("nan"), float("nan"), float("inf"), 0.0])
    cases.append(case(f"{nm}_nan", f"aten::{nm}.Tensor_out", [tensor(xn), tensor(yn), out(torch.bool, (4,)), ref(2)], {2: fn(xn, yn)}))
x8 = torch.tensor([1, 2, -24], dtype=torch.int8)
cases.append(case("eq_s_i8_wrap", "aten::eq.Scalar_out", [tensor(x8), i(1000), out(torch.bool, (3,)), ref(2)], {2: torch.eq(x8, 1000)}))

# where / masked_fill
for da, db in SAME + MIXED[:4] + [(torch.bool, torch.bool)]:
    for sc_, sa, sb in [((3, 4), (3, 4), (3, 4)), ((4,), (3, 1), (1, 4)), ((2, 1, 4), (3, 4), ())]:
        c = torch.rand(sc_) > 0.5
        x, y = rnd(da, sa), rnd(db, sb)
        r = torch.where(c, x, y)
        cases.append(case(f"where_{da}_{db}_{sc_}", "aten::where.self_out", [tensor(c), tensor(x), tensor(y), out(r.dtype, r.shape), ref(3)],
                          {3: r}, **tol(r.dtype if r.dtype.is_floating_point else torch.float64)))
c = (torch.rand(2, 3, 2, 2) > 0.5).to(memory_format=torch.channels_last)
x, y = rnd(torch.float32, (2, 3, 2, 2)).to(memory_format=torch.channels_last), rnd(torch.float32, (3, 1, 1))
cases.append(case("where_cl", "aten::where.self_out", [tensor(c), tensor(x), tensor(y), out(torch.float32, (2, 3, 2, 2), channels_last=True), ref(3)],
                  {3: torch.where(c, x, y)}))
cases.append(case("where_float_cond_err", "aten::where.self_out", [tensor(rnd(torch.float32, (3,))), tensor(x[0, 0, 0]), tensor(x[0, 0, 0]),
                                                                     out(torch.float32, (3,)), ref(3)], {}, error=True))
for dt in F + I + [torch.bool]:
    for v in [1.5, -2, True]:
        if not dt.is_floating_point and isinstance(v, float):
            continue
        x = rnd(dt, (3, 4))
        m = torch.rand(4) > 0.5
        r = x.masked_fill(m, v)
        cases.append(case(f"masked_fill_{dt}_{v}", "aten::masked_fill.Scalar_out", [tensor(x), tensor(m), sc(v), out(dt, r.shape), ref(3)], {3: r},
                          **tol(dt if dt.is_floating_point else torch.float64)))
x = rnd(torch.float32, (3, 4))
cases.append(case("masked_fill_mask_grows_err", "aten::masked_fill.Scalar_out", [tensor(x[0]), tensor(torch.rand(3, 4) > 0.5), f(1.0),
                                                                                  out(torch.float32, (3, 4)), ref(3)], {}, error=True))
cases.append(case("masked_fill_int_mask_err", "aten::masked_fill.Scalar_out", [tensor(x), tensor(torch.ones(4, dtype=torch.int32)), f(1.0),
                                                                                out(torch.float32, (3, 4)), ref(3)], {}, error=True))

# copies / conversions
ALL = F + I + [torch.bool]
for src in ALL:
    x = rnd(src, (2, 3, 2, 2), -100, 100) if not src.is_floating_point else rnd(src, (2, 3, 2, 2), -100, 100)
    for dst in ALL:
        r = x.to(dst)
        cases.append(case(f"to_copy_{src}_{dst}", "aten::_to_copy.out", [tensor(x), b(False), none(), out(dst, r.shape), ref(3)], {3: r},
                          **tol(dst if dst.is_floating_point else torch.float64)))
        if src in (torch.float32, torch.int32, torch.float16):
            cases.append(case(f"to_dim_order_copy_{src}_{dst}_cl", "dim_order_ops::_to_dim_order_copy.out",
                              [tensor(x), b(False), ints([0, 2, 3, 1]), out(dst, r.shape, channels_last=True), ref(3)],
                              {3: r.to(memory_format=torch.channels_last)}, **tol(dst if dst.is_floating_point else torch.float64)))
xc = rnd(torch.float32, (2, 3, 2, 2)).to(memory_format=torch.channels_last)
for nm, op, extra in [("to_dim_order_copy", "dim_order_ops::_to_dim_order_copy.out", [b(False), none()]),
                      ("clone_dim_order", "dim_order_ops::_clone_dim_order.out", [b(False), none()])]:
    cases.append(case(f"{nm}_cl_to_contig", op, [tensor(xc), b(False), ints([0, 1, 2, 3]), out(torch.float32, (2, 3, 2, 2)), ref(3)],
                      {3: xc.contiguous()}))
    cases.append(case(f"{nm}_contig_to_cl", op, [tensor(xc.contiguous()), b(False), ints([0, 2, 3, 1]),
                                                 out(torch.float32, (2, 3, 2, 2), channels_last=True), ref(3)], {3: xc}))
    cases.append(case(f"{nm}_same", op, [tensor(xc), *extra, out(torch.float32, (2, 3, 2, 2), channels_last=True), ref(3)], {3: xc}))
    cases.append(case(f"{nm}_order_mismatch_err", op, [tensor(xc), b(False), ints([0, 2, 3, 1]), out(torch.float32, (2, 3, 2, 2)), ref(3)],
                      {}, error=True))
    cases.append(case(f"{nm}_shape_err", op, [tensor(xc), b(False), none(), {"kind": "tensor", "dtype": "float32", "sizes": [2, 3, 2, 3],
                                                                            "data": [0] * 36}, ref(3)], {}, error=True))
xe = torch.zeros((0, 3))
cases.append(case("to_copy_empty", "aten::_to_copy.out", [tensor(xe), b(False), none(), out(torch.int32, (0, 3)), ref(3)], {3: xe.int()}))
cases.append(case("clone_dim_order_dtype_err", "dim_order_ops::_clone_dim_order.out", [tensor(xc), b(False), none(), out(torch.int32, (2, 3, 2, 2)),
                                                                                        ref(3)], {}, error=True))
for dt in [torch.float32, torch.int64, torch.bool]:
    x = rnd(dt, (3, 5))
    cases.append(case(f"clone_{dt}", "aten::clone.out", [tensor(x), none(), out(dt, (3, 5)), ref(2)], {2: x.clone()}))
cases.append(case("clone_cl_to_contig", "aten::clone.out", [tensor(xc), none(), out(torch.float32, (2, 3, 2, 2)), ref(2)], {2: xc.contiguous()}))

# copy_ (in place, broadcasting src) and copy.out
for dst_dt, src_dt, ds, ss in [(torch.float32, torch.float32, (3, 4), (3, 4)), (torch.float32, torch.int32, (3, 4), (4,)),
                               (torch.int64, torch.float32, (2, 3), (2, 1)), (torch.float16, torch.float32, (2, 3), ()),
                               (torch.bool, torch.float32, (4,), (4,))]:
    d, sr = rnd(dst_dt, ds), rnd(src_dt, ss)
    r = d.clone().copy_(sr)
    cases.append(case(f"copy__{dst_dt}_{src_dt}_{ss}", "aten::copy_", [tensor(d), tensor(sr), b(False), ref(0)], {0: r, 3: r},
                      **tol(dst_dt if dst_dt.is_floating_point else torch.float64)))
    cases.append(case(f"copy_out_{dst_dt}_{src_dt}_{ss}", "aten::copy.out", [tensor(d), tensor(sr), b(False), out(dst_dt, ds), ref(3)], {3: r},
                      **tol(dst_dt if dst_dt.is_floating_point else torch.float64)))
d = rnd(torch.float32, (2, 3, 2, 2)).to(memory_format=torch.channels_last)
sr = rnd(torch.float32, (2, 3, 2, 2))
cases.append(case("copy__cl", "aten::copy_", [tensor(d), tensor(sr), b(False), ref(0)], {0: sr.to(memory_format=torch.channels_last)}))
cases.append(case("copy__bad_bcast", "aten::copy_", [tensor(rnd(torch.float32, (3,))), tensor(rnd(torch.float32, (2, 3))), b(False), ref(0)],
                  {}, error=True))

# fills
for dt in ALL:
    for v in [2, 0.5, True, 0]:
        if not dt.is_floating_point and isinstance(v, float) and dt != torch.bool:
            continue
        x = rnd(dt, (2, 3))
        r = torch.full_like(x, v)
        cases.append(case(f"full_like_{dt}_{v}", "aten::full_like.out", [tensor(x), sc(v), none(), out(dt, (2, 3)), ref(3)], {3: r}))
        cases.append(case(f"fill_{dt}_{v}", "aten::fill.Scalar_out", [tensor(x), sc(v), out(dt, (2, 3)), ref(2)], {2: x.clone().fill_(v)}))
        r = torch.full((2, 4), v, dtype=dt)
        cases.append(case(f"full_{dt}_{v}", "aten::full.out", [ints([2, 4]), sc(v), out(dt, (2, 4)), ref(2)], {2: r}))
        r = torch.scalar_tensor(v, dtype=dt)
        cases.append(case(f"scalar_tensor_{dt}_{v}", "aten::scalar_tensor.out", [sc(v), out(dt, ()), ref(1)], {1: r}))
    x = rnd(dt, (2, 3))
    v = rnd(torch.float32, ())
    cases.append(case(f"fill_tensor_{dt}", "aten::fill.Tensor_out", [tensor(x), tensor(v), out(dt, (2, 3)), ref(2)], {2: x.clone().fill_(v)}))
    cases.append(case(f"zeros_{dt}", "aten::zeros.out", [ints([3, 2]), out(dt, (3, 2)), ref(1)], {1: torch.zeros(3, 2, dtype=dt)}))
    cases.append(case(f"ones_{dt}", "aten::ones.out", [ints([3, 2]), out(dt, (3, 2)), ref(1)], {1: torch.ones(3, 2, dtype=dt)}))
cases.append(case("full_empty", "aten::full.out", [ints([0, 4]), f(1.0), out(torch.float32, (0, 4)), ref(2)], {2: torch.full((0, 4), 1.0)}))
cases.append(case("full_neg_size_err", "aten::full.out", [ints([-1, 4]), f(1.0), out(torch.float32, (1, 4)), ref(2)], {}, error=True))
cases.append(case("full_too_big_err", "aten::full.out", [ints([5, 4]), f(1.0), out(torch.float32, (1, 4)), ref(2)], {}, error=True))
cases.append(case("full_frac_into_int_err", "aten::full.out", [ints([2]), f(1.5), out(torch.int32, (2,)), ref(2)], {}, error=True))
cases.append(case("fill_tensor_not0d_err", "aten::fill.Tensor_out", [tensor(x), tensor(torch.ones(1)), out(torch.bool, (2, 3)), ref(2)], {}, error=True))
xc = rnd(torch.float32, (2, 3, 2, 2)).to(memory_format=torch.channels_last)
cases.append(case("full_like_cl", "aten::full_like.out", [tensor(xc), f(3.0), none(), out(torch.float32, (2, 3, 2, 2), channels_last=True), ref(3)],
                  {3: torch.full_like(xc, 3.0)}))

write("binary", cases)
