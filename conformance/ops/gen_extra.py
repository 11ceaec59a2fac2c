"""Golden vectors for the extra group: glu, native_dropout (inference), et_copy
host/device copies, _cdist_forward, _pdist_forward, grid_sampler_2d.
Expected values come from eager PyTorch."""
import torch

from vecgen import (b, case, f, i, ints, none, out, ref, tensor, write)

torch.manual_seed(0)
aten = torch.ops.aten
cases = []


def rnd(*shape, dtype=torch.float32):
    # Multiples of 1/32: exact in every float dtype and short in JSON.
    return (torch.randn(*shape) * 32).round().div(32).to(dtype)


def cl(t):
    return t.contiguous(memory_format=torch.channels_last)


def tol(dt):
    return 2e-3 if dt == torch.float16 else (1e-5 if dt == torch.float32 else 1e-10)


# ---------------------------------------------------------------------------
# glu.out: [self, dim, out, ret]

def glu_case(name, x, dim, error=False, out_dt=None, bound=None):
    od = out_dt or x.dtype
    if error:
        y, sz = None, bound or list(x.shape)
    else:
        y = aten.glu(x, dim)
        sz = list(y.shape)
    cases.append(case(name, "aten::glu.out", [tensor(x), i(dim), out(od, sz), ref(2)],
                      {} if error else {2: y}, atol=tol(x.dtype), rtol=tol(x.dtype), error=error))


for dt in (torch.float32, torch.float64, torch.float16):
    n = str(dt).split(".")[1]
    glu_case(f"glu_last_{n}", rnd(3, 8, dtype=dt), -1)
    glu_case(f"glu_dim0_{n}", rnd(4, 5, dtype=dt), 0)
    glu_case(f"glu_3d_mid_{n}", rnd(2, 6, 3, dtype=dt), 1)
glu_case("glu_bf16", rnd(3, 4, dtype=torch.bfloat16), 1)
glu_case("glu_1d", rnd(10), 0)
glu_case("glu_channels_last_dim1", cl(rnd(2, 4, 3, 3)), 1)
glu_case("glu_channels_last_dim3", cl(rnd(2, 3, 3, 4)), -1)
glu_case("glu_empty", rnd(0, 4), 1)
glu_case("glu_large_values", torch.tensor([[100.0, -100.0, 50.0, -50.0], [0.0, 1.0, 30.0, -30.0]]), 1)
glu_case("glu_err_odd", rnd(3, 5), 1, error=True)
glu_case("glu_err_int", torch.arange(8, dtype=torch.int32).reshape(2, 4), 1, error=True, bound=[2, 2])
glu_case("glu_err_dim", rnd(3, 4), 2, error=True)
glu_case("glu_err_out_dtype", rnd(3, 4), 1, error=True, out_dt=torch.float64, bound=[3, 2])


# ---------------------------------------------------------------------------
# native_dropout.out: [input, p, train, out0, out1, ret]

def dropout_case(name, x, p, train, error=False):
    if error:
        exp = {}
    else:
        y, m = aten.native_dropout(x, p, train)
        # (PyTorch returns an input-dtype mask for empty inputs; the out1 mask is Bool.)
        exp = {3: y, 4: m} if x.numel() else {3: y}
    tr = none() if train is None else b(train)
    args = [tensor(x), f(p), tr, out(x.dtype, list(x.shape)), out(torch.bool, list(x.shape)),
            none()]
    cases.append(case(name, "aten::native_dropout.out", args, exp, error=error))


for dt in (torch.float32, torch.float64, torch.float16, torch.int32):
    n = str(dt).split(".")[1]
    dropout_case(f"dropout_eval_{n}", rnd(3, 5).to(dt), 0.5, False)
dropout_case("dropout_eval_p0", rnd(4), 0.0, False)
dropout_case("dropout_eval_p1", rnd(2, 3), 1.0, False)
dropout_case("dropout_eval_channels_last", cl(rnd(1, 3, 2, 2)), 0.3, False)
dropout_case("dropout_eval_empty", rnd(0, 3), 0.5, False)
dropout_case("dropout_err_train", rnd(3, 5), 0.5, True, error=True)
dropout_case("dropout_err_train_none", rnd(3, 5), 0.5, None, error=True)


# ---------------------------------------------------------------------------
# et_copy::_h2d_copy.out / _d2h_copy.out: [self, out, ret]. No PyTorch op exists: the
# expected value is torch.clone (a CPU-only runtime copies).

def copy_case(name, x, error=False, out_dt=None, bound=None, out_cl=False):
    for op in ("et_copy::_h2d_copy.out", "et_copy::_d2h_copy.out"):
        tag = "h2d" if "h2d" in op else "d2h"
        y = torch.clone(x)
        cases.append(case(f"{tag}_{name}", op,
                          [tensor(x), out(out_dt or x.dtype, bound or list(x.shape), channels_last=out_cl),
                           ref(1)], {} if error else {1: y}, atol=0, rtol=0, error=error))


for dt in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int8,
           torch.uint8):
    copy_case(str(dt).split(".")[1], (rnd(2, 3, 4) * 4).to(dt))
copy_case("bool", rnd(5) > 0)
copy_case("scalar", torch.tensor(3.5))
copy_case("empty", rnd(0, 2))
copy_case("channels_last_in", cl(rnd(2, 3, 2, 2)))
copy_case("channels_last_out", rnd(2, 3, 2, 2), out_cl=True)
copy_case("resize_smaller", rnd(2, 3), bound=[4, 5])
copy_case("err_dtype", rnd(2, 3), error=True, out_dt=torch.float64)
copy_case("err_too_big", rnd(4, 5), error=True, bound=[2, 3])

# ---------------------------------------------------------------------------
# _cdist_forward.out: [x1, x2, p, compute_mode, out, ret]; _pdist_forward.out: [self, p, out, ret]

def cdist_case(name, x1, x2, p, mode=None, error=False, bound=None, out_dt=None, atol=1e-4):
    if error:
        y, sz = None, bound
    else:
        y = aten._cdist_forward(x1, x2, p, mode)
        sz = list(y.shape)
    md = none() if mode is None else i(mode)
    cases.append(case(name, "aten::_cdist_forward.out",
                      [tensor(x1), tensor(x2), f(p), md, out(out_dt or x1.dtype, sz), ref(4)],
                      {} if error else {4: y}, atol=atol, rtol=1e-5, error=error))


def pdist_case(name, x, p, error=False, bound=None, out_dt=None):
    if error:
        y, sz = None, bound
    else:
        y = aten._pdist_forward(x, p)
        sz = list(y.shape)
    cases.append(case(name, "aten::_pdist_forward.out",
                      [tensor(x), f(p), out(out_dt or x.dtype, sz), ref(2)],
                      {} if error else {2: y}, atol=1e-4, rtol=1e-5, error=error))


for dt in (torch.float32, torch.float64):
    n = str(dt).split(".")[1]
    a, c = rnd(5, 4, dtype=dt), rnd(3, 4, dtype=dt)
    for p in (0.0, 1.0, 2.0, 3.0, 0.5, float("inf")):
        cdist_case(f"cdist_p{p}_{n}", a, c, p)
        pdist_case(f"pdist_p{p}_{n}", a, p)
a = rnd(4, 3)
cdist_case("cdist_p0_equal_entries", torch.tensor([[1.0, 2.0, 3.0], [0.0, 2.0, 3.0]]),
           torch.tensor([[1.0, 2.0, 4.0], [1.0, 2.0, 3.0]]), 0.0)
cdist_case("cdist_batched", rnd(2, 4, 3), rnd(2, 5, 3), 2.0)
cdist_case("cdist_batch_broadcast", rnd(2, 1, 4, 3), rnd(3, 5, 3), 1.0)
cdist_case("cdist_batch_broadcast_3d_2d", rnd(2, 4, 3), rnd(5, 3), float("inf"))
cdist_case("cdist_transposed_input", rnd(3, 6).t(), rnd(2, 3), 2.0)
cdist_case("cdist_mm_mode1", rnd(4, 5), rnd(3, 5), 2.0, mode=1)
cdist_case("cdist_mm_identical_rows", a, a.clone(), 2.0, mode=1)
cdist_case("cdist_mode2_large", rnd(30, 3), rnd(4, 3), 2.0, mode=2)
cdist_case("cdist_mode0_large_mm", rnd(30, 3), rnd(4, 3), 2.0)
cdist_case("cdist_mode0_large_mm_f64", rnd(27, 5, dtype=torch.float64), rnd(28, 5, dtype=torch.float64), 2.0)
cdist_case("cdist_mode0_large_p1", rnd(30, 3), rnd(4, 3), 1.0)
cdist_case("cdist_empty_rows", rnd(0, 3), rnd(4, 3), 2.0)
cdist_case("cdist_zero_cols", rnd(3, 0), rnd(4, 0), 2.0)
cdist_case("cdist_err_cols", rnd(3, 4), rnd(2, 5), 2.0, error=True, bound=[3, 2])
cdist_case("cdist_err_neg_p", rnd(3, 4), rnd(2, 4), -1.0, error=True, bound=[3, 2])
cdist_case("cdist_err_mode", rnd(3, 4), rnd(2, 4), 2.0, mode=3, error=True, bound=[3, 2])
cdist_case("cdist_err_1d", rnd(4), rnd(4), 2.0, error=True, bound=[1, 1])
cdist_case("cdist_err_half", rnd(3, 4, dtype=torch.float16), rnd(2, 4, dtype=torch.float16), 2.0,
           error=True, bound=[3, 2])
cdist_case("cdist_err_int", torch.ones(3, 4, dtype=torch.int32), torch.ones(2, 4, dtype=torch.int32), 2.0,
           error=True, bound=[3, 2])
cdist_case("cdist_err_out_dtype", rnd(3, 4), rnd(2, 4), 2.0, error=True, bound=[3, 2], out_dt=torch.float64)
pdist_case("pdist_single_row", rnd(1, 3), 2.0)
pdist_case("pdist_transposed", rnd(3, 5).t().contiguous(), 2.0)
pdist_case("pdist_large", rnd(12, 7), 2.0)
pdist_case("pdist_err_3d", rnd(2, 3, 4), 2.0, error=True, bound=[1])
pdist_case("pdist_err_half", rnd(3, 4, dtype=torch.float16), 2.0, error=True, bound=[3])
pdist_case("pdist_err_out_dtype", rnd(3, 4), 2.0, error=True, bound=[3], out_dt=torch.float64)

# ---------------------------------------------------------------------------
# grid_sampler_2d.out: [input, grid, interpolation_mode, padding_mode, align_corners, out, ret]

def grid_case(name, x, g, interp, pad, align, error=False, bound=None, out_dt=None, atol=None):
    if error:
        y, sz = None, bound
    else:
        y = aten.grid_sampler_2d(x, g, interp, pad, align)
        sz = list(y.shape)
    t = atol or (1e-3 if x.dtype in (torch.float16, torch.bfloat16) else
                 (1e-4 if x.dtype == torch.float32 else 1e-9))
    cases.append(case(name, "aten::grid_sampler_2d.out",
                      [tensor(x), tensor(g), i(interp), i(pad), b(align), out(out_dt or x.dtype, sz), ref(5)],
                      {} if error else {5: y}, atol=t, rtol=t, error=error))


def grid(*shape, dtype=torch.float32, spread=1.3):
    # Random coordinates, partly outside [-1, 1] to exercise padding; rounded to avoid
    # exact ties under nearest rounding.
    return ((torch.rand(*shape) * 2 - 1) * spread).to(dtype)


gx = rnd(2, 3, 5, 6)
gg = grid(2, 4, 7, 2)
for interp in (0, 1):
    for pad in (0, 1, 2):
        for align in (False, True):
            nm = f"grid_{['bilinear', 'nearest'][interp]}_{['zeros', 'border', 'reflection'][pad]}_{'ac' if align else 'nac'}"
            grid_case(nm, gx, gg, interp, pad, align)
            grid_case(nm + "_f64", gx.double(), gg.double(), interp, pad, align)
        grid_case(f"grid_i{interp}_p{pad}_far_f32", rnd(1, 2, 4, 5), grid(1, 3, 3, 2, spread=5.0), interp, pad, False)
grid_case("grid_bilinear_f16", gx.half(), gg.half(), 0, 0, False)
grid_case("grid_bilinear_border_f16", gx.half(), gg.half(), 0, 1, True)
grid_case("grid_nearest_reflect_f16", gx.half(), grid(2, 4, 7, 2, dtype=torch.float16, spread=0.9), 1, 2, False)
grid_case("grid_channels_last", cl(gx), gg, 0, 0, False)
grid_case("grid_channels_last_nearest", cl(gx), gg, 1, 1, True)
grid_case("grid_identity_ac", gx, torch.nn.functional.affine_grid(torch.eye(2, 3).expand(2, 2, 3), [2, 3, 5, 6],
                                                                 align_corners=True), 0, 0, True)
grid_case("grid_unit_input", rnd(1, 2, 1, 1), grid(1, 3, 3, 2), 0, 2, True)
grid_case("grid_unit_input_nac", rnd(1, 2, 1, 1), grid(1, 3, 3, 2), 0, 2, False)
grid_case("grid_empty_out", gx, grid(2, 0, 3, 2), 0, 0, False)
grid_case("grid_err_bicubic", gx, gg, 2, 0, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_mode", gx, gg, 3, 0, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_pad", gx, gg, 0, 3, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_batch", gx, grid(1, 4, 7, 2), 0, 0, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_last", gx, grid(2, 4, 7, 3), 0, 0, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_grid_dtype", gx, gg.double(), 0, 0, False, error=True, bound=[2, 3, 4, 7])
grid_case("grid_err_3d", rnd(3, 5, 6), grid(3, 4, 2), 0, 0, False, error=True, bound=[3, 4, 4])
grid_case("grid_err_int", torch.ones(2, 3, 5, 6, dtype=torch.int32), gg, 0, 0, False, error=True,
          bound=[2, 3, 4, 7])

# ---------------------------------------------------------------------------
# max_pool2d_with_indices_backward.grad_input:
# [grad_output, self, kernel_size, stride, padding, dilation, ceil_mode, indices, grad_input, ret]

def mpb_case(name, x, k, st, p, d, ceil, error=None, go_cl=False, gi_cl=False):
    y, ind = aten.max_pool2d_with_indices(x, k, st, p, d, ceil)
    go = rnd(*y.shape).to(x.dtype)
    if go_cl:
        go = cl(go)
    exp = {}
    if error == "index":
        ind = ind.clone()
        ind.view(-1)[0] = x.shape[-1] * x.shape[-2]
    elif error == "shape":
        go = go[..., :-1]
    elif error == "idx_dtype":
        ind = ind.int()
    elif error == "dtype":
        go = go.double()
    else:
        gx = aten.max_pool2d_with_indices_backward(go, x, k, st, p, d, ceil, ind)
        exp = {8: gx}
    t = 2e-3 if x.dtype == torch.float16 else 1e-5
    cases.append(case(name, "aten::max_pool2d_with_indices_backward.grad_input",
                      [tensor(go), tensor(x), ints(k), ints(st), ints(p), ints(d), b(ceil), tensor(ind),
                       out(x.dtype, list(x.shape), channels_last=gi_cl), ref(8)],
                      exp, atol=t, rtol=t, error=error is not None))


mx = rnd(2, 3, 7, 8)
for dt in (torch.float32, torch.float64, torch.float16):
    n = str(dt).split(".")[1]
    mpb_case(f"maxpool_bwd_basic_{n}", mx.to(dt), [2, 2], [2, 2], [0, 0], [1, 1], False)
    mpb_case(f"maxpool_bwd_overlap_{n}", mx.to(dt), [3, 3], [1, 1], [1, 1], [1, 1], False)
mpb_case("maxpool_bwd_ceil", mx, [3, 2], [2, 3], [1, 1], [1, 1], True)
mpb_case("maxpool_bwd_dilation", mx, [2, 2], [1, 1], [0, 0], [2, 2], False)
mpb_case("maxpool_bwd_stride_default", mx, [2, 2], [], [0, 0], [1, 1], False)
mpb_case("maxpool_bwd_3d", rnd(3, 6, 5), [2, 2], [1, 1], [1, 0], [1, 1], False)
mpb_case("maxpool_bwd_ties", torch.zeros(1, 2, 4, 4), [2, 2], [1, 1], [0, 0], [1, 1], False)
mpb_case("maxpool_bwd_channels_last", cl(mx), [3, 3], [2, 2], [1, 1], [1, 1], False, go_cl=True, gi_cl=True)
mpb_case("maxpool_bwd_err_index", mx, [2, 2], [2, 2], [0, 0], [1, 1], False, error="index")
mpb_case("maxpool_bwd_err_shape", mx, [2, 2], [2, 2], [0, 0], [1, 1], False, error="shape")
mpb_case("maxpool_bwd_err_idx_dtype", mx, [2, 2], [2, 2], [0, 0], [1, 1], False, error="idx_dtype")
mpb_case("maxpool_bwd_err_dtype", mx, [2, 2], [2, 2], [0, 0], [1, 1], False, error="dtype")

# ---------------------------------------------------------------------------
# _upsample_bilinear2d_aa.out: [self, output_size, align_corners, scales_h, scales_w, out, ret]

def aa_case(name, x, size, align, sh=None, sw=None, error=False, bound=None, out_dt=None):
    if error:
        y, sz = None, bound
    else:
        y = aten._upsample_bilinear2d_aa(x, size, align, sh, sw)
        sz = list(y.shape)
    t = 1e-5 if x.dtype == torch.float32 else 1e-10
    cases.append(case(name, "aten::_upsample_bilinear2d_aa.out",
                      [tensor(x), ints(size), b(align), none() if sh is None else f(sh),
                       none() if sw is None else f(sw), out(out_dt or x.dtype, sz), ref(5)],
                      {} if error else {5: y}, atol=t, rtol=t, error=error))


ax = rnd(2, 3, 12, 10)
for dt in (torch.float32, torch.float64):
    n = str(dt).split(".")[1]
    for align in (False, True):
        tag = "ac" if align else "nac"
        aa_case(f"aa_down_{tag}_{n}", ax.to(dt), [5, 4], align)
        aa_case(f"aa_up_{tag}_{n}", ax.to(dt), [17, 23], align)
        aa_case(f"aa_mixed_{tag}_{n}", ax.to(dt), [30, 3], align)
aa_case("aa_same_h", ax, [12, 4], False)
aa_case("aa_same_size", ax, [12, 10], False)
aa_case("aa_to_1x1", ax, [1, 1], False)
aa_case("aa_to_1x1_ac", ax, [1, 1], True)
aa_case("aa_scales", ax, [4, 5], False, 0.3, 0.5)
aa_case("aa_big_down", rnd(1, 2, 40, 33), [3, 5], False)
aa_case("aa_channels_last", cl(ax), [5, 7], False)
aa_case("aa_err_half", ax.half(), [5, 4], False, error=True, bound=[2, 3, 5, 4])
aa_case("aa_err_size", ax, [5], False, error=True, bound=[2, 3, 5, 4])
aa_case("aa_err_zero", ax, [0, 4], False, error=True, bound=[2, 3, 5, 4])
aa_case("aa_err_3d", rnd(3, 12, 10), [5, 4], False, error=True, bound=[3, 5, 4])


write("extra", cases)
