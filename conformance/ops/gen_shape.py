"""Vectors for shape/copy/index kernels (crates/pteron-ops/src/shape)."""
import torch

from vecgen import (b, case, f, i, ints, none, opt_tensors, out, outs, ref, tensor, tensors, write)

torch.manual_seed(0)
cases = []
A = torch.ops.aten


def rnd(shape, dt=torch.float32):
    if dt == torch.bool:
        return torch.rand(shape) > 0.5
    if dt.is_floating_point:
        return torch.randn(shape).to(dt)
    return torch.randint(-50, 50, shape).to(dt) if dt != torch.uint8 else torch.randint(0, 200, shape).to(dt)


def add(name, op, args, res, err=False, out_idx=None, **kw):
    """args excludes the return slot; the return slot refs the out argument."""
    oi = out_idx if out_idx is not None else len(args) - 1
    full = args + [ref(oi)]
    cases.append(case(name, op, full, {} if err else {oi: res}, error=err, **kw))


DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64, torch.int32, torch.int8, torch.uint8, torch.bool, torch.int16]

# view_copy
for dt in DTYPES:
    x = rnd((2, 3, 4), dt)
    add(f"view_{dt}", "aten::view_copy.out", [tensor(x), ints([6, -1]), out(dt, [6, 4])], x.reshape(6, 4))
xc = rnd((2, 3, 4, 5)).to(memory_format=torch.channels_last)
add("view_channels_last_in", "aten::view_copy.out", [tensor(xc), ints([2, -1]), out(torch.float32, [2, 60])], xc.reshape(2, 60))
add("view_to_channels_last_out", "aten::view_copy.out", [tensor(rnd((120,))), ints([2, 3, 4, 5]), out(torch.float32, [2, 3, 4, 5], channels_last=True)], None, err=False)
cases[-1]["expect"] = {}
x = rnd((120,))
cases[-1]["args"][0] = tensor(x)
cases[-1]["expect"] = {"2": __import__("vecgen").expect_tensor(x.reshape(2, 3, 4, 5))}
add("view_bad", "aten::view_copy.out", [tensor(rnd((2, 3))), ints([4, -1]), out(torch.float32, [4, 2])], None, err=True)
add("view_0d", "aten::view_copy.out", [tensor(rnd((1, 1))), ints([]), out(torch.float32, [])], rnd((1, 1)).reshape([]) * 0, err=False)
x = torch.tensor([[3.5]])
cases[-1]["args"][0] = tensor(x)
cases[-1]["expect"] = {"2": __import__("vecgen").expect_tensor(x.reshape([]))}
add("view_empty", "aten::view_copy.out", [tensor(torch.zeros(0, 4)), ints([2, 0, 2]), out(torch.float32, [2, 0, 2])], torch.zeros(2, 0, 2))

# permute / transpose / t
for dt in [torch.float32, torch.float16, torch.int64, torch.bool, torch.int8]:
    x = rnd((2, 3, 4, 5), dt)
    for p in [[0, 2, 3, 1], [3, 2, 1, 0], [1, 0, -1, -2]]:
        r = x.permute(p).contiguous()
        add(f"permute_{dt}_{p}", "aten::permute_copy.out", [tensor(x), ints(p), out(dt, list(r.shape))], r)
x = rnd((64, 48))
add("permute_big_2d", "aten::permute_copy.out", [tensor(x), ints([1, 0]), out(torch.float32, [48, 64])], x.t().contiguous())
x = rnd((3, 40, 33))
add("permute_tiled_3d", "aten::permute_copy.out", [tensor(x), ints([2, 0, 1]), out(torch.float32, [33, 3, 40])], x.permute(2, 0, 1).contiguous())
add("permute_cl_in", "aten::permute_copy.out", [tensor(xc), ints([0, 2, 3, 1]), out(torch.float32, [2, 4, 5, 3])], xc.permute(0, 2, 3, 1).contiguous())
add("permute_cl_out", "aten::permute_copy.out", [tensor(rnd((2, 3, 4, 5))), ints([0, 1, 2, 3]), out(torch.float32, [2, 3, 4, 5], channels_last=True)], None)
x = rnd((2, 3, 4, 5))
cases[-1]["args"][0] = tensor(x)
cases[-1]["expect"] = {"2": __import__("vecgen").expect_tensor(x)}
add("permute_repeat_dim", "aten::permute_copy.out", [tensor(rnd((2, 3))), ints([0, 0]), out(torch.float32, [2, 2])], None, err=True)
add("permute_wrong_len", "aten::permute_copy.out", [tensor(rnd((2, 3))), ints([0]), out(torch.float32, [2])], None, err=True)
add("permute_dtype_mismatch", "aten::permute_copy.out", [tensor(rnd((2, 3))), ints([1, 0]), out(torch.int32, [3, 2])], None, err=True)
x = rnd((3, 4, 5))
for d0, d1 in [(0, 1), (-1, 0), (1, 2), (2, 2)]:
    r = x.transpose(d0, d1).contiguous()
    add(f"transpose_{d0}_{d1}", "aten::transpose_copy.int_out", [tensor(x), i(d0), i(d1), out(torch.float32, list(r.shape))], r)
for shp in [(3, 4), (5,), ()]:
    x = rnd(shp)
    r = x.t().contiguous()
    add(f"t_{shp}", "aten::t_copy.out", [tensor(x), out(torch.float32, list(r.shape))], r)
add("t_3d", "aten::t_copy.out", [tensor(rnd((2, 3, 4))), out(torch.float32, [4, 3, 2])], None, err=True)

# expand
for dt in [torch.float32, torch.int32, torch.bool, torch.float16]:
    x = rnd((3, 1), dt)
    r = x.expand(2, 3, 4).contiguous()
    add(f"expand_{dt}", "aten::expand_copy.out", [tensor(x), ints([2, 3, 4]), b(False), out(dt, [2, 3, 4])], r)
x = rnd((1, 4))
add("expand_minus1", "aten::expand_copy.out", [tensor(x), ints([3, -1]), b(False), out(torch.float32, [3, 4])], x.expand(3, -1).contiguous())
add("expand_0d", "aten::expand_copy.out", [tensor(torch.tensor(2.0)), ints([2, 2]), b(False), out(torch.float32, [2, 2])], torch.full((2, 2), 2.0))
add("expand_bad", "aten::expand_copy.out", [tensor(rnd((2, 3))), ints([4, 3]), b(False), out(torch.float32, [4, 3])], None, err=True)
add("expand_cl_in", "aten::expand_copy.out", [tensor(xc), ints([2, 2, 3, 4, 5]), b(False), out(torch.float32, [2, 2, 3, 4, 5])], xc.expand(2, 2, 3, 4, 5).contiguous())

# squeeze / unsqueeze / alias
x = rnd((2, 1, 3, 1))
add("squeeze_dim", "aten::squeeze_copy.dim_out", [tensor(x), i(1), out(torch.float32, [2, 3, 1])], x.squeeze(1))
add("squeeze_dim_nonone", "aten::squeeze_copy.dim_out", [tensor(x), i(0), out(torch.float32, [2, 1, 3, 1])], x.squeeze(0))
add("squeeze_dims", "aten::squeeze_copy.dims_out", [tensor(x), ints([1, -1]), out(torch.float32, [2, 3])], x.squeeze((1, -1)))
add("squeeze_dims_partial", "aten::squeeze_copy.dims_out", [tensor(x), ints([0, 3]), out(torch.float32, [2, 1, 3])], x.squeeze((0, 3)))
add("squeeze_all", "aten::squeeze_copy.out", [tensor(x), out(torch.float32, [2, 3])], x.squeeze())
add("squeeze_bad_dim", "aten::squeeze_copy.dim_out", [tensor(x), i(4), out(torch.float32, [2, 1, 3, 1])], None, err=True)
for d in [0, 1, 2, -1, -3]:
    x = rnd((2, 3), torch.int64)
    r = x.unsqueeze(d)
    add(f"unsqueeze_{d}", "aten::unsqueeze_copy.out", [tensor(x), i(d), out(torch.int64, list(r.shape))], r)
add("unsqueeze_0d", "aten::unsqueeze_copy.out", [tensor(torch.tensor(1.5)), i(0), out(torch.float32, [1])], torch.tensor([1.5]))
add("unsqueeze_bad", "aten::unsqueeze_copy.out", [tensor(rnd((2, 3))), i(3), out(torch.float32, [2, 3, 1])], None, err=True)
for op in ["alias_copy.out", "detach_copy.out", "lift_fresh_copy.out"]:
    x = rnd((2, 3), torch.float16)
    add(op, f"aten::{op}", [tensor(x), out(torch.float16, [2, 3])], x)
add("alias_cl", "aten::alias_copy.out", [tensor(xc), out(torch.float32, [2, 3, 4, 5])], xc.contiguous())

# as_strided
x = torch.arange(20, dtype=torch.float32)
for sz, st, off in [([3, 3], [3, 1], 0), ([2, 2], [1, 2], 1), ([4], [5], 0), ([3, 2], [0, 1], 4)]:
    r = torch.as_strided(x, sz, st, off).contiguous()
    add(f"as_strided_{sz}_{st}_{off}", "aten::as_strided_copy.out", [tensor(x), ints(sz), ints(st), i(off), out(torch.float32, sz)], r)
add("as_strided_oob", "aten::as_strided_copy.out", [tensor(x), ints([5, 5]), ints([5, 1]), i(0), out(torch.float32, [5, 5])], None, err=True)

# cat / stack
for dt in [torch.float32, torch.int64, torch.bool, torch.float16, torch.uint8]:
    a, c = rnd((2, 3), dt), rnd((4, 3), dt)
    add(f"cat0_{dt}", "aten::cat.out", [tensors([a, c]), i(0), out(dt, [6, 3])], torch.cat([a, c], 0))
a, c, d = rnd((2, 3, 4)), rnd((2, 1, 4)), rnd((2, 5, 4))
add("cat_mid", "aten::cat.out", [tensors([a, c, d]), i(1), out(torch.float32, [2, 9, 4])], torch.cat([a, c, d], 1))
add("cat_last_neg", "aten::cat.out", [tensors([a, a]), i(-1), out(torch.float32, [2, 3, 8])], torch.cat([a, a], -1))
add("cat_legacy_empty", "aten::cat.out", [tensors([torch.zeros(0), a]), i(0), out(torch.float32, [2, 3, 4])], a)
add("cat_zero_size", "aten::cat.out", [tensors([rnd((0, 3)), rnd((2, 3))]), i(0), out(torch.float32, [2, 3])], None)
t2 = rnd((2, 3))
cases[-1]["args"][0] = tensors([torch.zeros(0, 3), t2])
cases[-1]["expect"] = {"2": __import__("vecgen").expect_tensor(t2)}
a4, c4 = rnd((1, 2, 3, 3)).to(memory_format=torch.channels_last), rnd((1, 3, 3, 3))
add("cat_cl_in", "aten::cat.out", [tensors([a4, c4]), i(1), out(torch.float32, [1, 5, 3, 3])], torch.cat([a4, c4], 1))
add("cat_cl_out", "aten::cat.out", [tensors([a4, c4]), i(1), out(torch.float32, [1, 5, 3, 3], channels_last=True)], torch.cat([a4, c4], 1).contiguous(memory_format=torch.channels_last))
add("cat_shape_mismatch", "aten::cat.out", [tensors([rnd((2, 3)), rnd((2, 4))]), i(0), out(torch.float32, [4, 3])], None, err=True)
add("cat_dtype_mismatch", "aten::cat.out", [tensors([rnd((2, 3)), rnd((2, 3), torch.int64)]), i(0), out(torch.float32, [4, 3])], None, err=True)
for d in [0, 1, 2, -1]:
    a, c = rnd((2, 3)), rnd((2, 3))
    r = torch.stack([a, c, a], d)
    add(f"stack_{d}", "aten::stack.out", [tensors([a, c, a]), i(d), out(torch.float32, list(r.shape))], r)
add("stack_mismatch", "aten::stack.out", [tensors([rnd((2, 3)), rnd((3, 2))]), i(0), out(torch.float32, [2, 2, 3])], None, err=True)

# split / unbind (return ())
x = rnd((7, 4), torch.int32)
parts = torch.split(x, 3, 0)
cases.append(case("split_copy", "aten::split_copy.Tensor_out", [tensor(x), i(3), i(0), outs([(torch.int32, list(p.shape)) for p in parts])], {3: list(parts)}))
parts = torch.split(x, 2, 1)
cases.append(case("split_copy_dim1", "aten::split_copy.Tensor_out", [tensor(x), i(2), i(-1), outs([(torch.int32, list(p.shape)) for p in parts])], {3: list(parts)}))
cases.append(case("split_copy_wrong_count", "aten::split_copy.Tensor_out", [tensor(x), i(3), i(0), outs([(torch.int32, [3, 4])] * 2)], {}, error=True))
x = rnd((2, 9, 3))
parts = torch.split(x, [2, 3, 4], 1)
cases.append(case("split_with_sizes", "aten::split_with_sizes_copy.out", [tensor(x), ints([2, 3, 4]), i(1), outs([(torch.float32, list(p.shape)) for p in parts])], {3: list(parts)}))
xcl = rnd((1, 6, 2, 2)).to(memory_format=torch.channels_last)
parts = torch.split(xcl, [2, 4], 1)
cases.append(case("split_with_sizes_cl", "aten::split_with_sizes_copy.out", [tensor(xcl), ints([2, 4]), i(1), outs([(torch.float32, list(p.shape)) for p in parts])], {3: [p.contiguous() for p in parts]}))
cases.append(case("split_with_sizes_bad_sum", "aten::split_with_sizes_copy.out", [tensor(x), ints([2, 3]), i(1), outs([(torch.float32, [2, 2, 3]), (torch.float32, [2, 3, 3])])], {}, error=True))
x = rnd((3, 2, 4), torch.float16)
parts = torch.unbind(x, 1)
cases.append(case("unbind", "aten::unbind_copy.int_out", [tensor(x), i(1), outs([(torch.float16, list(p.shape)) for p in parts])], {2: list(parts)}))

# slice / select / narrow / scatter variants
x = rnd((5, 6, 4))
for d, s, e, st in [(0, 1, 4, 1), (1, 0, None, 2), (2, -3, None, 1), (1, None, -1, 3), (0, 10, 20, 1), (1, -100, 100, 4)]:
    r = A.slice_copy.Tensor(x, d, s, e, st)
    add(f"slice_{d}_{s}_{e}_{st}", "aten::slice_copy.Tensor_out", [tensor(x), i(d), none() if s is None else i(s), none() if e is None else i(e), i(st), out(torch.float32, list(r.shape))], r)
add("slice_step0", "aten::slice_copy.Tensor_out", [tensor(x), i(0), i(0), i(2), i(0), out(torch.float32, [2, 6, 4])], None, err=True)
r = A.slice_copy.Tensor(xc, 1, 1, 3)
add("slice_cl", "aten::slice_copy.Tensor_out", [tensor(xc), i(1), i(1), i(3), i(1), out(torch.float32, list(r.shape))], r)
for d, idx in [(0, 2), (1, -1), (2, 0)]:
    r = x.select(d, idx)
    add(f"select_{d}_{idx}", "aten::select_copy.int_out", [tensor(x), i(d), i(idx), out(torch.float32, list(r.shape))], r)
add("select_oob", "aten::select_copy.int_out", [tensor(x), i(0), i(5), out(torch.float32, [6, 4])], None, err=True)
xi = rnd((5,), torch.int64)
add("select_1d", "aten::select_copy.int_out", [tensor(xi), i(0), i(3), out(torch.int64, [])], xi[3])
for d, s, e, st in [(0, 1, 4, 1), (1, 0, None, 2), (2, -2, None, 1)]:
    src = rnd(tuple(A.slice_copy.Tensor(x, d, s, e, st).shape))
    r = A.slice_scatter(x, src, d, s, e, st)
    add(f"slice_scatter_{d}_{s}_{st}", "aten::slice_scatter.out", [tensor(x), tensor(src), i(d), i(s) if s is not None else none(), i(e) if e is not None else none(), i(st), out(torch.float32, list(x.shape))], r)
add("slice_scatter_bad_src", "aten::slice_scatter.out", [tensor(x), tensor(rnd((2, 6, 4))), i(0), i(0), i(3), i(1), out(torch.float32, [5, 6, 4])], None, err=True)
for d, idx in [(0, 1), (2, -1)]:
    src = rnd(tuple(x.select(d, idx).shape))
    r = A.select_scatter(x, src, d, idx)
    add(f"select_scatter_{d}_{idx}", "aten::select_scatter.out", [tensor(x), tensor(src), i(d), i(idx), out(torch.float32, list(x.shape))], r)
for d, s, ln in [(0, 1, 3), (1, -4, 2), (2, 0, 4)]:
    r = x.narrow(d, s, ln).contiguous()
    add(f"narrow_{d}_{s}_{ln}", "aten::narrow_copy.out", [tensor(x), i(d), i(s), i(ln), out(torch.float32, list(r.shape))], r)
add("narrow_oob", "aten::narrow_copy.out", [tensor(x), i(0), i(3), i(3), out(torch.float32, [3, 6, 4])], None, err=True)

# flip / roll / repeat
for dt in [torch.float32, torch.int64, torch.bool]:
    x = rnd((2, 3, 4), dt)
    for dims in [[0], [1, 2], [-1], [0, 1, 2]]:
        add(f"flip_{dt}_{dims}", "aten::flip.out", [tensor(x), ints(dims), out(dt, [2, 3, 4])], torch.flip(x, dims))
add("flip_cl", "aten::flip.out", [tensor(xc), ints([1, 3]), out(torch.float32, [2, 3, 4, 5])], torch.flip(xc, [1, 3]).contiguous())
add("flip_dup", "aten::flip.out", [tensor(rnd((2, 3))), ints([0, 0]), out(torch.float32, [2, 3])], None, err=True)
x = rnd((3, 4, 5))
for sh, dims in [([1], [0]), ([-2], [2]), ([7], []), ([1, 2], [0, 2]), ([3, -1], [1, 1])]:
    add(f"roll_{sh}_{dims}", "aten::roll.out", [tensor(x), ints(sh), ints(dims), out(torch.float32, [3, 4, 5])], torch.roll(x, sh, dims))
for dt in [torch.float32, torch.int8, torch.bool]:
    x = rnd((2, 3), dt)
    for reps in [[2, 1], [1, 3], [2, 2, 2], [1, 1]]:
        r = x.repeat(reps)
        add(f"repeat_{dt}_{reps}", "aten::repeat.out", [tensor(x), ints(reps), out(dt, list(r.shape))], r)
add("repeat_0", "aten::repeat.out", [tensor(rnd((2, 3))), ints([0, 2]), out(torch.float32, [0, 6])], torch.zeros(0, 6))
add("repeat_too_few", "aten::repeat.out", [tensor(rnd((2, 3))), ints([2]), out(torch.float32, [4, 3])], None, err=True)

# tril / triu / diagonal / unfold
for dt in [torch.float32, torch.int64, torch.bool]:
    x = rnd((2, 4, 5), dt)
    for k in [0, 1, -2]:
        add(f"tril_{dt}_{k}", "aten::tril.out", [tensor(x), i(k), out(dt, [2, 4, 5])], torch.tril(x, k))
        add(f"triu_{dt}_{k}", "aten::triu.out", [tensor(x), i(k), out(dt, [2, 4, 5])], torch.triu(x, k))
add("tril_1d", "aten::tril.out", [tensor(rnd((3,))), i(0), out(torch.float32, [3])], None, err=True)
x = rnd((3, 4, 5))
for off, d1, d2 in [(0, 0, 1), (1, 1, 2), (-1, 0, 2), (2, -1, -2), (10, 0, 1)]:
    r = torch.diagonal(x, off, d1, d2).contiguous()
    add(f"diagonal_{off}_{d1}_{d2}", "aten::diagonal_copy.out", [tensor(x), i(off), i(d1), i(d2), out(torch.float32, list(r.shape))], r)
x = rnd((3, 7))
for d, sz, st in [(1, 3, 2), (0, 2, 1), (-1, 7, 1), (1, 1, 3)]:
    r = x.unfold(d, sz, st).contiguous()
    add(f"unfold_{d}_{sz}_{st}", "aten::unfold_copy.out", [tensor(x), i(d), i(sz), i(st), out(torch.float32, list(r.shape))], r)
add("unfold_too_big", "aten::unfold_copy.out", [tensor(x), i(1), i(8), i(1), out(torch.float32, [3, 1, 8])], None, err=True)

# index.Tensor
x = rnd((5, 6, 7))
L = torch.int64
idx_cases = [
    ("rows", [torch.tensor([0, 4, -1, 2])]),
    ("2d_idx", [torch.tensor([[0, 1], [2, 3]])]),
    ("mid", [None, torch.tensor([5, 0, 1])]),
    ("last", [None, None, torch.tensor([[6], [0]])]),
    ("two_adjacent_bcast", [torch.tensor([[0], [1]]), torch.tensor([1, 2, 3])]),
    ("two_nonadjacent", [torch.tensor([0, 1]), None, torch.tensor([2, 3])]),
    ("adjacent_after_none", [None, torch.tensor([0, 1]), torch.tensor([2, 3])]),
    ("int32_idx", [torch.tensor([1, 3], dtype=torch.int32)]),
    ("all_three", [torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5])]),
    ("mask_dim0", [torch.tensor([True, False, True, True, False])]),
    ("mask_2d", [torch.rand(5, 6) > 0.5]),
    ("mask_mid", [None, torch.rand(6) > 0.5]),
    ("mask_and_idx", [torch.tensor([True, False, True, False, False]), torch.tensor([1, 2])]),
    ("mask_all_false", [torch.zeros(5, dtype=torch.bool)]),
    ("empty_idx", [torch.tensor([], dtype=torch.int64)]),
]
for name, ind in idx_cases:
    r = x[tuple(slice(None) if t is None else t for t in ind)]
    add(f"index_{name}", "aten::index.Tensor_out", [tensor(x), opt_tensors(ind), out(torch.float32, list(r.shape))], r)
for dt in [torch.int64, torch.float16, torch.bool]:
    xx = rnd((4, 3), dt)
    ind = [torch.tensor([3, 0, 0])]
    add(f"index_{dt}", "aten::index.Tensor_out", [tensor(xx), opt_tensors(ind), out(dt, [3, 3])], xx[ind[0]])
r = xc[:, torch.tensor([2, 0])]
add("index_cl", "aten::index.Tensor_out", [tensor(xc), opt_tensors([None, torch.tensor([2, 0])]), out(torch.float32, list(r.shape))], r)
add("index_oob", "aten::index.Tensor_out", [tensor(x), opt_tensors([torch.tensor([5])]), out(torch.float32, [1, 6, 7])], None, err=True)
add("index_float_idx", "aten::index.Tensor_out", [tensor(x), opt_tensors([torch.tensor([1.0])]), out(torch.float32, [1, 6, 7])], None, err=True)
add("index_bad_mask", "aten::index.Tensor_out", [tensor(x), opt_tensors([torch.tensor([True, False])]), out(torch.float32, [1, 6, 7])], None, err=True)
add("index_too_many", "aten::index.Tensor_out", [tensor(rnd((2,))), opt_tensors([torch.tensor([0]), torch.tensor([0])]), out(torch.float32, [1])], None, err=True)

# index_put
x = rnd((5, 4))
for name, ind, vshape in [("rows", [torch.tensor([0, 2])], (2, 4)), ("rows_bcast", [torch.tensor([1, 3])], (4,)),
                          ("elems", [torch.tensor([0, 1]), torch.tensor([3, 2])], (2,)), ("scalar_val", [torch.tensor([4])], ()),
                          ("mask", [torch.tensor([True, False, False, True, True])], (3, 4)), ("col", [None, torch.tensor([1, 0])], (5, 2))]:
    v = rnd(vshape)
    r = A.index_put(x, ind, v)
    add(f"index_put_{name}", "aten::index_put.out", [tensor(x), opt_tensors(ind), tensor(v), b(False), out(torch.float32, [5, 4])], r)
ind = [torch.tensor([0, 2, 0, 0])]
v = rnd((4, 4))
add("index_put_accumulate_dups", "aten::index_put.out", [tensor(x), opt_tensors(ind), tensor(v), b(True), out(torch.float32, [5, 4])], A.index_put(x, ind, v, accumulate=True))
xi = rnd((6,), torch.int64)
vi = rnd((3,), torch.int64)
ind = [torch.tensor([1, 1, 5])]
add("index_put_accumulate_int", "aten::index_put.out", [tensor(xi), opt_tensors(ind), tensor(vi), b(True), out(torch.int64, [6])], A.index_put(xi, ind, vi, accumulate=True))
# in-place: [self, indices, values, accumulate, ret]
v = rnd((2, 4))
ind = [torch.tensor([3, 1])]
cases.append(case("index_put_inplace", "aten::index_put_", [tensor(x), opt_tensors(ind), tensor(v), b(False), ref(0)], {0: A.index_put(x, ind, v)}))
cases.append(case("index_put_inplace_acc", "aten::index_put_", [tensor(x), opt_tensors(ind), tensor(v), b(True), ref(0)], {0: A.index_put(x, ind, v, True)}))
add("index_put_bad_values", "aten::index_put.out", [tensor(x), opt_tensors([torch.tensor([0, 1])]), tensor(rnd((3, 4))), b(False), out(torch.float32, [5, 4])], None, err=True)
add("index_put_dtype", "aten::index_put.out", [tensor(x), opt_tensors([torch.tensor([0])]), tensor(rnd((4,), torch.int64)), b(False), out(torch.float32, [5, 4])], None, err=True)

# index_select / gather / scatter
x = rnd((4, 5, 3))
for d, ix in [(0, [3, 0, 0]), (1, [4, -1]), (2, [1]), (-1, [2, 1, 0, 0])]:
    t = torch.tensor(ix)
    r = torch.index_select(x, d, t % x.shape[d])
    add(f"index_select_{d}", "aten::index_select.out", [tensor(x), i(d), tensor(t), out(torch.float32, list(r.shape))], r if min(ix) >= 0 else r)
add("index_select_i32", "aten::index_select.out", [tensor(x), i(0), tensor(torch.tensor([1, 2], dtype=torch.int32)), out(torch.float32, [2, 5, 3])], torch.index_select(x, 0, torch.tensor([1, 2])))
add("index_select_0d_idx", "aten::index_select.out", [tensor(x), i(1), tensor(torch.tensor(2)), out(torch.float32, [4, 1, 3])], torch.index_select(x, 1, torch.tensor(2)))
add("index_select_oob", "aten::index_select.out", [tensor(x), i(0), tensor(torch.tensor([4])), out(torch.float32, [1, 5, 3])], None, err=True)
add("index_select_cl", "aten::index_select.out", [tensor(xc), i(1), tensor(torch.tensor([2, 0])), out(torch.float32, [2, 2, 4, 5])], torch.index_select(xc, 1, torch.tensor([2, 0])).contiguous())
for dt in [torch.float32, torch.int64, torch.float16]:
    x = rnd((3, 4), dt)
    for d in [0, 1]:
        ix = torch.randint(0, x.shape[d], (2, 3) if d == 0 else (3, 2))
        r = torch.gather(x, d, ix)
        add(f"gather_{dt}_{d}", "aten::gather.out", [tensor(x), i(d), tensor(ix), b(False), out(dt, list(r.shape))], r)
add("gather_oob", "aten::gather.out", [tensor(rnd((3, 4))), i(1), tensor(torch.tensor([[4]])), b(False), out(torch.float32, [1, 1])], None, err=True)
add("gather_bad_dtype", "aten::gather.out", [tensor(rnd((3, 4))), i(1), tensor(torch.tensor([[1.0]])), b(False), out(torch.float32, [1, 1])], None, err=True)
x = rnd((3, 5))
ix = torch.tensor([[0, 1, 2], [2, 0, 4]])
src = rnd((2, 3))
add("scatter_src_1", "aten::scatter.src_out", [tensor(x), i(1), tensor(ix), tensor(src), out(torch.float32, [3, 5])], torch.scatter(x, 1, ix, src))
ix0 = torch.tensor([[0, 1, 2, 0, 1]])
src0 = rnd((1, 5))
add("scatter_src_0", "aten::scatter.src_out", [tensor(x), i(0), tensor(ix0), tensor(src0), out(torch.float32, [3, 5])], torch.scatter(x, 0, ix0, src0))
add("scatter_value", "aten::scatter.value_out", [tensor(x), i(1), tensor(ix), f(-2.5), out(torch.float32, [3, 5])], torch.scatter(x, 1, ix, -2.5))
xi = rnd((3, 5), torch.int32)
add("scatter_value_int", "aten::scatter.value_out", [tensor(xi), i(1), tensor(ix), i(7), out(torch.int32, [3, 5])], torch.scatter(xi, 1, ix, 7))
ixd = torch.tensor([[0, 0, 1, 1, 0], [2, 2, 2, 0, 0]])
srcd = rnd((2, 5))
add("scatter_add_dups", "aten::scatter_add.out", [tensor(x), i(0), tensor(ixd), tensor(srcd), out(torch.float32, [3, 5])], torch.scatter_add(x, 0, ixd, srcd))
add("scatter_add_int", "aten::scatter_add.out", [tensor(xi), i(1), tensor(ix), tensor(rnd((2, 3), torch.int32)), out(torch.int32, [3, 5])], None)
srci = rnd((2, 3), torch.int32)
cases[-1]["args"][3] = tensor(srci)
cases[-1]["expect"] = {"4": __import__("vecgen").expect_tensor(torch.scatter_add(xi, 1, ix, srci))}
add("scatter_oob", "aten::scatter.src_out", [tensor(x), i(1), tensor(torch.tensor([[5]])), tensor(src), out(torch.float32, [3, 5])], None, err=True)

# masked_select / masked_scatter / nonzero / repeat_interleave
x = rnd((3, 4))
for name, m in [("same", torch.rand(3, 4) > 0.5), ("bcast", torch.tensor([True, False, True, True])), ("none", torch.zeros(3, 4, dtype=torch.bool))]:
    r = torch.masked_select(x, m)
    add(f"masked_select_{name}", "aten::masked_select.out", [tensor(x), tensor(m), out(torch.float32, [12])], r)
add("masked_select_bad_mask", "aten::masked_select.out", [tensor(x), tensor(torch.ones(3, 4)), out(torch.float32, [12])], None, err=True)
m = torch.rand(3, 4) > 0.5
srcm = rnd((12,))
add("masked_scatter", "aten::masked_scatter.out", [tensor(x), tensor(m), tensor(srcm), out(torch.float32, [3, 4])], x.masked_scatter(m, srcm))
mb = torch.tensor([False, True, True, False])
add("masked_scatter_bcast", "aten::masked_scatter.out", [tensor(x), tensor(mb), tensor(rnd((2, 5))), out(torch.float32, [3, 4])], None)
srcb = rnd((2, 5))
cases[-1]["args"][2] = tensor(srcb)
cases[-1]["expect"] = {"3": __import__("vecgen").expect_tensor(x.masked_scatter(mb, srcb))}
add("masked_scatter_short_source", "aten::masked_scatter.out", [tensor(x), tensor(torch.ones(3, 4, dtype=torch.bool)), tensor(rnd((5,))), out(torch.float32, [3, 4])], None, err=True)
for dt in [torch.float32, torch.int64, torch.bool]:
    x = rnd((3, 4), dt) * (torch.rand(3, 4) > 0.5).to(dt)
    r = torch.nonzero(x)
    add(f"nonzero_{dt}", "aten::nonzero.out", [tensor(x), out(torch.int64, [12, 2])], r)
add("nonzero_1d", "aten::nonzero.out", [tensor(torch.tensor([0.0, 1.0, 0.0, 2.0])), out(torch.int64, [4, 1])], torch.tensor([[1], [3]]))
add("nonzero_0d", "aten::nonzero.out", [tensor(torch.tensor(3.0)), out(torch.int64, [1, 0])], torch.nonzero(torch.tensor(3.0)))
add("nonzero_bound_exceeded", "aten::nonzero.out", [tensor(torch.ones(3, 4)), out(torch.int64, [5, 2])], None, err=True)
rep = torch.tensor([2, 0, 3, 1])
add("repeat_interleave", "aten::repeat_interleave.Tensor_out", [tensor(rep), none(), out(torch.int64, [10])], torch.repeat_interleave(rep))
add("repeat_interleave_size", "aten::repeat_interleave.Tensor_out", [tensor(rep), i(6), out(torch.int64, [10])], torch.repeat_interleave(rep))
add("repeat_interleave_neg", "aten::repeat_interleave.Tensor_out", [tensor(torch.tensor([1, -1])), none(), out(torch.int64, [10])], None, err=True)

write("shape", cases)
