"""Golden vectors for the nn group: convolution, matrix products, pooling, norms,
softmax, resampling/padding, embedding. Expected values come from eager PyTorch."""
import torch
import torch.nn.functional as F

from vecgen import (b, case, const, f, floats, i, ints, none, out, ref, tensor, write)

torch.manual_seed(0)
aten = torch.ops.aten
cases = []


def rnd(*shape, dtype=torch.float32):
    # Multiples of 1/32: exact in every float dtype and short in JSON.
    return (torch.randn(*shape) * 32).round().div(32).to(dtype)


def cl(t):
    return t.contiguous(memory_format=torch.channels_last)


# ---------------------------------------------------------------------------
# convolution.out: [x, w, b, stride, padding, dilation, transposed, output_padding, groups, out, ret]

def conv_case(name, x, w, bias, stride, padding, dilation, transposed=False, output_padding=(0,),
              groups=1, wconst=True, out_cl=False, tol=1e-4, bound=None, error=False):
    if error:
        y = None
        osz = bound
    else:
        y = aten.convolution(x, w, bias, list(stride), list(padding), list(dilation), transposed,
                             list(output_padding), groups)
        osz = bound or list(y.shape)
    wa = const(w) if wconst else tensor(w)
    ba = none() if bias is None else (const(bias) if wconst else tensor(bias))
    args = [tensor(x), wa, ba, ints(stride), ints(padding), ints(dilation), b(transposed),
            ints(output_padding), i(groups), out(x.dtype, osz, channels_last=out_cl), ref(9)]
    exp = {} if error else {9: y}
    cases.append(case(name, "aten::convolution.out", args, exp, atol=tol, rtol=tol, error=error))


x = rnd(2, 4, 7, 8)
conv_case("conv2d_basic", x, rnd(6, 4, 3, 3), rnd(6), [1, 1], [1, 1], [1, 1])
conv_case("conv2d_nobias_stride2", x, rnd(5, 4, 3, 3), None, [2, 2], [0, 0], [1, 1])
conv_case("conv2d_rect_stride_pad", x, rnd(8, 4, 3, 5), rnd(8), [2, 1], [1, 2], [1, 1])
conv_case("conv2d_dilation", x, rnd(3, 4, 3, 3), rnd(3), [1, 1], [2, 2], [2, 2])
conv_case("conv2d_groups2", x, rnd(6, 2, 3, 3), rnd(6), [1, 1], [1, 1], [1, 1], groups=2)
conv_case("conv2d_depthwise", x, rnd(4, 1, 3, 3), rnd(4), [1, 1], [1, 1], [1, 1], groups=4)
conv_case("conv2d_depthwise_s2", x, rnd(4, 1, 3, 3), rnd(4), [2, 2], [1, 1], [1, 1], groups=4)
conv_case("conv2d_depthwise_mult2", x, rnd(8, 1, 3, 3), rnd(8), [1, 1], [1, 1], [1, 1], groups=4)
conv_case("conv2d_pointwise", x, rnd(7, 4, 1, 1), rnd(7), [1, 1], [0, 0], [1, 1])
conv_case("conv2d_single_entry_lists", x, rnd(6, 4, 3, 3), rnd(6), [2], [1], [1])
conv_case("conv2d_runtime_weight", x, rnd(6, 4, 3, 3), rnd(6), [1, 1], [1, 1], [1, 1], wconst=False)
conv_case("conv2d_runtime_weight_dw", x, rnd(4, 1, 3, 3), rnd(4), [1, 1], [1, 1], [1, 1], groups=4, wconst=False)
conv_case("conv2d_runtime_weight_1x1", x, rnd(3, 4, 1, 1), None, [1, 1], [0, 0], [1, 1], wconst=False)
conv_case("conv2d_channels_last_in", cl(x), rnd(6, 4, 3, 3), rnd(6), [1, 1], [1, 1], [1, 1])
conv_case("conv2d_channels_last_io", cl(x), cl(rnd(6, 4, 3, 3)), rnd(6), [2, 2], [1, 1], [1, 1], out_cl=True)
conv_case("conv2d_channels_last_dw", cl(x), cl(rnd(4, 1, 3, 3)), rnd(4), [1, 1], [1, 1], [1, 1], groups=4,
          out_cl=True)
conv_case("conv2d_dynamic_smaller", rnd(1, 3, 7, 6), rnd(4, 3, 3, 3), rnd(4), [1, 1], [1, 1], [1, 1],
          bound=[1, 4, 16, 16])
conv_case("conv2d_dynamic_smaller_dw", rnd(1, 3, 7, 6), rnd(3, 1, 3, 3), rnd(3), [2, 2], [1, 1], [1, 1],
          groups=3, bound=[1, 3, 16, 16])
conv_case("conv2d_f64", x.double(), rnd(6, 2, 3, 3).double(), rnd(6).double(), [1, 2], [1, 0], [1, 1],
          groups=2, tol=1e-10)
conv_case("conv2d_f16", x.half(), rnd(6, 4, 3, 3).half(), rnd(6).half(), [1, 1], [1, 1], [1, 1], tol=2e-2)
conv_case("conv2d_bf16", x.bfloat16(), rnd(6, 4, 3, 3).bfloat16(), None, [1, 1], [1, 1], [1, 1], tol=1e-1)
conv_case("conv2d_batch0", rnd(0, 4, 5, 5), rnd(6, 4, 3, 3), rnd(6), [1, 1], [1, 1], [1, 1])
# 1-D
x1 = rnd(2, 4, 13)
conv_case("conv1d_basic", x1, rnd(6, 4, 3), rnd(6), [1], [1], [1])
conv_case("conv1d_stride_dil_groups", x1, rnd(8, 2, 5), rnd(8), [2], [3], [2], groups=2)
conv_case("conv1d_pointwise", x1, rnd(3, 4, 1), None, [1], [0], [1])
conv_case("conv1d_f64", x1.double(), rnd(6, 4, 3).double(), rnd(6).double(), [2], [1], [1], tol=1e-10)
# transposed
conv_case("convt2d_basic", x, rnd(4, 3, 3, 3), rnd(3), [2, 2], [1, 1], [1, 1], True, [1, 1])
conv_case("convt2d_groups", x, rnd(4, 2, 3, 3), rnd(4), [2, 2], [0, 1], [1, 1], True, [1, 0], groups=2)
conv_case("convt2d_dilation_rect", x, rnd(4, 2, 2, 3), None, [1, 3], [0, 0], [2, 1], True, [0, 2])
conv_case("convt2d_f64", x.double(), rnd(4, 3, 3, 3).double(), rnd(3).double(), [2, 2], [1, 1], [1, 1], True,
          [1, 1], tol=1e-10)
conv_case("convt2d_f16", x.half(), rnd(4, 3, 3, 3).half(), rnd(3).half(), [2, 2], [1, 1], [1, 1], True, [1, 1],
          tol=3e-2)
conv_case("convt1d", x1, rnd(4, 3, 4), rnd(3), [2], [1], [1], True, [1])
conv_case("convt1d_groups_dil", x1, rnd(4, 1, 3), rnd(2), [3], [2], [2], True, [2], groups=2)
# errors
conv_case("conv_err_channels", x, rnd(6, 3, 3, 3), None, [1, 1], [1, 1], [1, 1], error=True, bound=[2, 6, 7, 8])
conv_case("conv_err_kernel_too_big", rnd(1, 4, 2, 2), rnd(6, 4, 5, 5), None, [1, 1], [0, 0], [1, 1], error=True,
          bound=[1, 6, 1, 1])
conv_case("conv_err_stride0", x, rnd(6, 4, 3, 3), None, [0, 1], [1, 1], [1, 1], error=True, bound=[2, 6, 7, 8])
cases.append(case("conv_err_dtype", "aten::convolution.out",
                  [tensor(x), const(rnd(6, 4, 3, 3).double()), none(), ints([1, 1]), ints([1, 1]), ints([1, 1]),
                   b(False), ints([0]), i(1), out(torch.float32, [2, 6, 7, 8]), ref(9)], {}, error=True))
cases.append(case("conv_err_int", "aten::convolution.out",
                  [tensor(x.to(torch.int32)), const(rnd(6, 4, 3, 3).to(torch.int32)), none(), ints([1, 1]),
                   ints([1, 1]), ints([1, 1]), b(False), ints([0]), i(1), out(torch.int32, [2, 6, 7, 8]), ref(9)],
                  {}, error=True))

# ---------------------------------------------------------------------------
# matrix products


def mm_case(name, a, m2, const_b=False, tol=1e-4, error=False, osz=None):
    y = None if error else torch.mm(a, m2)
    cases.append(case(name, "aten::mm.out",
                      [tensor(a), const(m2) if const_b else tensor(m2), out(a.dtype, osz or list(y.shape)), ref(2)],
                      {} if error else {2: y}, atol=tol, rtol=tol, error=error))


mm_case("mm_f32", rnd(5, 7), rnd(7, 3))
mm_case("mm_f32_const", rnd(5, 7), rnd(7, 9), const_b=True)
mm_case("mm_f32_vec_row", rnd(1, 33), rnd(33, 40))
mm_case("mm_f32_transposed_a", rnd(7, 5).t(), rnd(7, 3))
mm_case("mm_f32_transposed_b", rnd(6, 8), rnd(5, 8).t())
mm_case("mm_f32_big", rnd(37, 70), rnd(70, 45))
mm_case("mm_f64", rnd(4, 6).double(), rnd(6, 3).double(), tol=1e-12)
mm_case("mm_f16", rnd(4, 6).half(), rnd(6, 3).half(), tol=1e-2)
mm_case("mm_bf16", rnd(4, 6).bfloat16(), rnd(6, 3).bfloat16(), tol=5e-2)
mm_case("mm_i32", torch.randint(-5, 5, (3, 4), dtype=torch.int32), torch.randint(-5, 5, (4, 2), dtype=torch.int32))
mm_case("mm_i64", torch.randint(-5, 5, (3, 4)), torch.randint(-5, 5, (4, 2)))
mm_case("mm_empty_k", rnd(3, 0), rnd(0, 4))
mm_case("mm_empty_m", rnd(0, 3), rnd(3, 4))
mm_case("mm_err_inner", rnd(3, 4), rnd(5, 2), error=True, osz=[3, 2])
cases.append(case("mm_err_dtype", "aten::mm.out", [tensor(rnd(3, 4)), tensor(rnd(4, 2).double()),
                                                   out(torch.float32, [3, 2]), ref(2)], {}, error=True))
cases.append(case("mm_err_rank", "aten::mm.out", [tensor(rnd(3, 4, 2)), tensor(rnd(2, 2)),
                                                  out(torch.float32, [3, 2]), ref(2)], {}, error=True))


def addmm_case(name, s, a, m2, beta=1, alpha=1, const_b=False, tol=1e-4):
    y = torch.addmm(s, a, m2, beta=beta, alpha=alpha)
    sc = (lambda v: f(v)) if isinstance(beta, float) else (lambda v: i(v))
    cases.append(case(name, "aten::addmm.out",
                      [tensor(s), tensor(a), const(m2) if const_b else tensor(m2),
                       sc(beta), (f(alpha) if isinstance(alpha, float) else i(alpha)),
                       out(y.dtype, list(y.shape)), ref(5)], {5: y}, atol=tol, rtol=tol))


addmm_case("addmm_bias_row", rnd(6), rnd(4, 5), rnd(5, 6))
addmm_case("addmm_bias_row_const", rnd(6), rnd(4, 5), rnd(5, 6), const_b=True)
addmm_case("addmm_bias_row_m1", rnd(6), rnd(1, 5), rnd(5, 6))
addmm_case("addmm_permuted_weight", rnd(6), rnd(4, 5), rnd(6, 5).t())
addmm_case("addmm_alpha_beta", rnd(4, 6), rnd(4, 5), rnd(5, 6), beta=0.5, alpha=2.0)
addmm_case("addmm_alpha_beta_const", rnd(4, 6), rnd(4, 5), rnd(5, 6), beta=0.5, alpha=2.0, const_b=True)
addmm_case("addmm_col_bias", rnd(4, 1), rnd(4, 5), rnd(5, 6))
addmm_case("addmm_beta0_nan", torch.full((4, 6), float("nan")), rnd(4, 5), rnd(5, 6), beta=0.0)
addmm_case("addmm_scalar_self", rnd(1, 1), rnd(4, 5), rnd(5, 6), beta=2)
addmm_case("addmm_f64", rnd(6).double(), rnd(4, 5).double(), rnd(5, 6).double(), beta=0.5, alpha=2.0, tol=1e-12)
addmm_case("addmm_f16", rnd(6).half(), rnd(4, 5).half(), rnd(5, 6).half(), tol=1e-2)
addmm_case("addmm_i64", torch.randint(-5, 5, (6,)), torch.randint(-5, 5, (4, 5)), torch.randint(-5, 5, (5, 6)),
           beta=2, alpha=3)
cases.append(case("addmm_err_bcast", "aten::addmm.out",
                  [tensor(rnd(5)), tensor(rnd(4, 5)), tensor(rnd(5, 6)), i(1), i(1), out(torch.float32, [4, 6]),
                   ref(5)], {}, error=True))


def linear_case(name, x, w, bias, const_w=True, tol=1e-4):
    y = torch.ops.aten.linear(x, w, bias)
    cases.append(case(name, "aten::linear.out",
                      [tensor(x), const(w) if const_w else tensor(w), none() if bias is None else tensor(bias),
                       out(y.dtype, list(y.shape)), ref(3)], {3: y}, atol=tol, rtol=tol))


linear_case("linear_2d", rnd(4, 8), rnd(5, 8), rnd(5))
linear_case("linear_3d_nobias", rnd(2, 3, 8), rnd(5, 8), None)
linear_case("linear_3d_runtime_w", rnd(2, 3, 8), rnd(5, 8), rnd(5), const_w=False)
linear_case("linear_1d", rnd(8), rnd(5, 8), rnd(5))
linear_case("linear_f64", rnd(2, 3, 8).double(), rnd(5, 8).double(), rnd(5).double(), tol=1e-12)
linear_case("linear_f16", rnd(3, 8).half(), rnd(5, 8).half(), rnd(5).half(), tol=1e-2)


def bmm_case(name, a, m2, tol=1e-4):
    y = torch.bmm(a, m2)
    cases.append(case(name, "aten::bmm.out", [tensor(a), tensor(m2), out(y.dtype, list(y.shape)), ref(2)],
                      {2: y}, atol=tol, rtol=tol))


bmm_case("bmm_f32", rnd(3, 4, 5), rnd(3, 5, 6))
bmm_case("bmm_f32_transposed_b", rnd(3, 4, 5), rnd(3, 6, 5).transpose(1, 2))
bmm_case("bmm_f64", rnd(2, 4, 5).double(), rnd(2, 5, 3).double(), tol=1e-12)
bmm_case("bmm_f16", rnd(2, 4, 5).half(), rnd(2, 5, 3).half(), tol=1e-2)
bmm_case("bmm_i32", torch.randint(-4, 4, (2, 3, 4), dtype=torch.int32), torch.randint(-4, 4, (2, 4, 2),
                                                                                       dtype=torch.int32))
cases.append(case("bmm_err_batch", "aten::bmm.out", [tensor(rnd(2, 3, 4)), tensor(rnd(3, 4, 2)),
                                                     out(torch.float32, [2, 3, 2]), ref(2)], {}, error=True))
s_, b1, b2 = rnd(3, 4, 6), rnd(3, 4, 5), rnd(3, 5, 6)
y = torch.baddbmm(s_, b1, b2, beta=0.5, alpha=1.5)
cases.append(case("baddbmm_f32", "aten::baddbmm.out", [tensor(s_), tensor(b1), tensor(b2), f(0.5), f(1.5),
                                                       out(torch.float32, [3, 4, 6]), ref(5)], {5: y}, atol=1e-4,
                  rtol=1e-4))
s_ = rnd(6)
y = torch.baddbmm(s_, b1, b2)
cases.append(case("baddbmm_bcast_bias", "aten::baddbmm.out", [tensor(s_), tensor(b1), tensor(b2), i(1), i(1),
                                                              out(torch.float32, [3, 4, 6]), ref(5)], {5: y},
                  atol=1e-4, rtol=1e-4))

write("nn", cases)

# ---------------------------------------------------------------------------
# pooling
cases2 = []


def add2(*a, **k):
    cases2.append(case(*a, **k))


def maxpool_case(name, x, k, s, p, d, ceil, tol=1e-6):
    y, ind = aten.max_pool2d_with_indices(x, k, s, p, d, ceil)
    add2(name, "aten::max_pool2d_with_indices.out",
         [tensor(x), ints(k), ints(s), ints(p), ints(d), b(ceil), out(x.dtype, list(y.shape)),
          out(torch.int64, list(y.shape)), none()], {6: y, 7: ind}, atol=tol, rtol=tol)


xp = rnd(2, 3, 9, 11)
maxpool_case("maxpool_basic", xp, [2, 2], [2, 2], [0, 0], [1, 1], False)
maxpool_case("maxpool_pad", xp, [3, 3], [2, 2], [1, 1], [1, 1], False)
maxpool_case("maxpool_ceil", xp, [3, 3], [2, 2], [0, 0], [1, 1], True)
maxpool_case("maxpool_ceil_pad", xp, [3, 2], [2, 3], [1, 1], [1, 1], True)
maxpool_case("maxpool_dilation", xp, [3, 3], [1, 1], [1, 1], [2, 2], False)
maxpool_case("maxpool_default_stride", xp, [3, 3], [], [0, 0], [1, 1], False)
maxpool_case("maxpool_3d_input", rnd(3, 9, 11), [2, 2], [2, 2], [0, 0], [1, 1], False)
maxpool_case("maxpool_channels_last", cl(xp), [3, 3], [2, 2], [1, 1], [1, 1], False)
xn = xp.clone()
xn[0, 0, 1, 1] = float("nan")
xn[1, 2, 4:6, 4:6] = float("-inf")
maxpool_case("maxpool_nan_inf", xn, [2, 2], [2, 2], [0, 0], [1, 1], False)
maxpool_case("maxpool_f64", xp.double(), [3, 3], [2, 2], [1, 1], [1, 1], False)
maxpool_case("maxpool_f16", xp.half(), [3, 3], [2, 2], [1, 1], [1, 1], True)
maxpool_case("maxpool_bf16", xp.bfloat16(), [2, 2], [1, 1], [0, 0], [1, 1], False)
maxpool_case("maxpool_ties", torch.zeros(1, 1, 4, 4), [2, 2], [1, 1], [0, 0], [1, 1], False)
add2("maxpool_err_pad", "aten::max_pool2d_with_indices.out",
     [tensor(xp), ints([2, 2]), ints([2, 2]), ints([2, 2]), ints([1, 1]), b(False), out(torch.float32, [2, 3, 9, 11]),
      out(torch.int64, [2, 3, 9, 11]), none()], {}, error=True)
add2("maxpool_err_rank", "aten::max_pool2d_with_indices.out",
     [tensor(rnd(9, 11)), ints([2, 2]), ints([2, 2]), ints([0, 0]), ints([1, 1]), b(False),
      out(torch.float32, [4, 5]), out(torch.int64, [4, 5]), none()], {}, error=True)
add2("maxpool_err_idx_dtype", "aten::max_pool2d_with_indices.out",
     [tensor(xp), ints([2, 2]), ints([2, 2]), ints([0, 0]), ints([1, 1]), b(False), out(torch.float32, [2, 3, 4, 5]),
      out(torch.int32, [2, 3, 4, 5]), none()], {}, error=True)


def avgpool_case(name, x, k, s, p, ceil, cip, div, tol=1e-5):
    y = aten.avg_pool2d(x, k, s, p, ceil, cip, div)
    add2(name, "aten::avg_pool2d.out",
         [tensor(x), ints(k), ints(s), ints(p), b(ceil), b(cip), none() if div is None else i(div),
          out(x.dtype, list(y.shape)), ref(7)], {7: y}, atol=tol, rtol=tol)


avgpool_case("avgpool_basic", xp, [2, 2], [2, 2], [0, 0], False, True, None)
avgpool_case("avgpool_pad_cip", xp, [3, 3], [2, 2], [1, 1], False, True, None)
avgpool_case("avgpool_pad_nocip", xp, [3, 3], [2, 2], [1, 1], False, False, None)
avgpool_case("avgpool_ceil", xp, [3, 3], [2, 2], [1, 1], True, True, None)
avgpool_case("avgpool_ceil_nocip", xp, [3, 2], [2, 2], [1, 0], True, False, None)
avgpool_case("avgpool_divisor", xp, [3, 3], [2, 2], [1, 1], False, True, 5)
avgpool_case("avgpool_default_stride", xp, [2, 3], [], [0, 0], False, True, None)
avgpool_case("avgpool_3d_input", rnd(3, 9, 11), [2, 2], [2, 2], [0, 0], False, True, None)
avgpool_case("avgpool_channels_last", cl(xp), [3, 3], [2, 2], [1, 1], True, False, None)
avgpool_case("avgpool_f64", xp.double(), [3, 3], [2, 2], [1, 1], False, False, None, tol=1e-12)
avgpool_case("avgpool_f16", xp.half(), [3, 3], [2, 2], [1, 1], False, True, None, tol=1e-2)
add2("avgpool_err_int", "aten::avg_pool2d.out",
     [tensor(xp.to(torch.int32)), ints([2, 2]), ints([2, 2]), ints([0, 0]), b(False), b(True), none(),
      out(torch.int32, [2, 3, 4, 5]), ref(7)], {}, error=True)


def adaptive_case(name, x, os, tol=1e-5):
    y = aten._adaptive_avg_pool2d(x, os)
    add2(name, "aten::_adaptive_avg_pool2d.out", [tensor(x), ints(os), out(x.dtype, list(y.shape)), ref(2)],
         {2: y}, atol=tol, rtol=tol)


adaptive_case("adaptive_1x1", xp, [1, 1])
adaptive_case("adaptive_3x4", xp, [3, 4])
adaptive_case("adaptive_5x5", xp, [5, 5])
adaptive_case("adaptive_upsizing", rnd(1, 2, 3, 3), [5, 4])
adaptive_case("adaptive_3d_input", rnd(3, 9, 11), [4, 4])
adaptive_case("adaptive_channels_last", cl(xp), [2, 3])
adaptive_case("adaptive_f16", xp.half(), [3, 4], tol=1e-2)
adaptive_case("adaptive_f64", xp.double(), [3, 4], tol=1e-12)

# ---------------------------------------------------------------------------
# norms
xb = rnd(2, 3, 4, 5)


def bn_eval_case(name, x, w, bias, rm, rv, eps=1e-5, tol=1e-5):
    y, a, c = aten._native_batch_norm_legit_no_training(x, w, bias, rm, rv, 0.1, eps)
    add2(name, "aten::_native_batch_norm_legit_no_training.out",
         [tensor(x), none() if w is None else const(w), none() if bias is None else const(bias), const(rm), const(rv),
          f(0.1), f(eps), out(x.dtype, list(x.shape)), out(x.dtype, [0]), out(x.dtype, [0]), none()],
         {7: y}, atol=tol, rtol=tol)


C = 3
rm, rv = rnd(C), rnd(C).abs() + 0.5
bn_eval_case("bn_eval", xb, rnd(C), rnd(C), rm, rv)
bn_eval_case("bn_eval_noaffine", xb, None, None, rm, rv, eps=1e-3)
bn_eval_case("bn_eval_1d", rnd(4, 3, 7), rnd(C), rnd(C), rm, rv)
bn_eval_case("bn_eval_2d_input", rnd(5, 3), rnd(C), rnd(C), rm, rv)
bn_eval_case("bn_eval_channels_last", cl(xb), rnd(C), rnd(C), rm, rv)
bn_eval_case("bn_eval_f64", xb.double(), rnd(C).double(), rnd(C).double(), rm.double(), rv.double(), tol=1e-12)
bn_eval_case("bn_eval_f16", xb.half(), rnd(C).half(), rnd(C).half(), rm.half(), rv.half(), tol=1e-2)
add2("bn_eval_err_shape", "aten::_native_batch_norm_legit_no_training.out",
     [tensor(xb), const(rnd(4)), none(), const(rm), const(rv), f(0.1), f(1e-5), out(torch.float32, list(xb.shape)),
      out(torch.float32, [0]), out(torch.float32, [0]), none()], {}, error=True)

# training with running stats
w, bb = rnd(C), rnd(C)
rm2, rv2 = rm.clone(), rv.clone()
y, sm, si = aten._native_batch_norm_legit(xb, w, bb, rm2, rv2, True, 0.1, 1e-5)
add2("bn_train_running", "aten::_native_batch_norm_legit.out",
     [tensor(xb), tensor(w), tensor(bb), tensor(rm), tensor(rv), b(True), f(0.1), f(1e-5),
      out(torch.float32, list(xb.shape)), out(torch.float32, [C]), out(torch.float32, [C]), none()],
     {8: y, 9: sm, 10: si, 3: rm2, 4: rv2}, atol=1e-5, rtol=1e-5)
rm3, rv3 = rm.clone(), rv.clone()
y, sm, si = aten._native_batch_norm_legit(xb, w, bb, rm3, rv3, False, 0.1, 1e-5)
add2("bn_legit_eval", "aten::_native_batch_norm_legit.out",
     [tensor(xb), tensor(w), tensor(bb), tensor(rm), tensor(rv), b(False), f(0.1), f(1e-5),
      out(torch.float32, list(xb.shape)), out(torch.float32, [0]), out(torch.float32, [0]), none()],
     {8: y, 3: rm3, 4: rv3}, atol=1e-5, rtol=1e-5)
for nm, xx, ww, bbb in [("bn_nostats", xb, w, bb), ("bn_nostats_noaffine", rnd(2, 3, 6), None, None),
                        ("bn_nostats_f64", xb.double(), w.double(), bb.double())]:
    y, sm, si = aten._native_batch_norm_legit(xx, ww, bbb, True, 0.1, 1e-5)
    tol = 1e-12 if xx.dtype == torch.float64 else 1e-5
    add2(nm, "aten::_native_batch_norm_legit.no_stats_out",
         [tensor(xx), none() if ww is None else tensor(ww), none() if bbb is None else tensor(bbb), b(True), f(0.1),
          f(1e-5), out(xx.dtype, list(xx.shape)), out(xx.dtype, [C]), out(xx.dtype, [C]), none()],
         {6: y, 7: sm, 8: si}, atol=tol, rtol=tol)


def ln_case(name, x, ns, w, bias, eps=1e-5, tol=1e-5):
    y, m, r = aten.native_layer_norm(x, ns, w, bias, eps)
    add2(name, "aten::native_layer_norm.out",
         [tensor(x), ints(ns), none() if w is None else const(w), none() if bias is None else const(bias), f(eps),
          out(x.dtype, list(x.shape)), out(m.dtype, list(m.shape)), out(r.dtype, list(r.shape)), none()],
         {5: y, 6: m, 7: r}, atol=tol, rtol=tol)


xl = rnd(2, 3, 8)
ln_case("ln_last", xl, [8], rnd(8), rnd(8))
ln_case("ln_last2", xl, [3, 8], rnd(3, 8), rnd(3, 8))
ln_case("ln_noaffine", xl, [8], None, None, eps=1e-3)
ln_case("ln_weight_only", xl, [8], rnd(8), None)
ln_case("ln_1d", rnd(8), [8], rnd(8), rnd(8))
ln_case("ln_f64", xl.double(), [8], rnd(8).double(), rnd(8).double(), tol=1e-12)
ln_case("ln_f16", xl.half(), [8], rnd(8).half(), rnd(8).half(), tol=2e-2)
ln_case("ln_bf16", xl.bfloat16(), [8], rnd(8).bfloat16(), rnd(8).bfloat16(), tol=1e-1)
add2("ln_err_shape", "aten::native_layer_norm.out",
     [tensor(xl), ints([4]), none(), none(), f(1e-5), out(torch.float32, [2, 3, 8]), out(torch.float32, [2, 3, 1]),
      out(torch.float32, [2, 3, 1]), none()], {}, error=True)


def gn_case(name, x, w, bias, g, eps=1e-5, tol=1e-5):
    n, c = x.shape[0], x.shape[1]
    hw = x.numel() // (n * c) if n * c else 0
    y, m, r = aten.native_group_norm(x, w, bias, n, c, hw, g, eps)
    add2(name, "aten::native_group_norm.out",
         [tensor(x), none() if w is None else const(w), none() if bias is None else const(bias), i(n), i(c), i(hw),
          i(g), f(eps), out(x.dtype, list(x.shape)), out(m.dtype, list(m.shape)), out(r.dtype, list(r.shape)),
          none()], {8: y, 9: m, 10: r}, atol=tol, rtol=tol)


xg = rnd(2, 6, 3, 4)
gn_case("gn_basic", xg, rnd(6), rnd(6), 3)
gn_case("gn_one_group", xg, rnd(6), rnd(6), 1)
gn_case("gn_instance", xg, None, None, 6)
gn_case("gn_3d", rnd(2, 4, 5), rnd(4), rnd(4), 2)
gn_case("gn_f64", xg.double(), rnd(6).double(), rnd(6).double(), 2, tol=1e-12)
gn_case("gn_f16", xg.half(), rnd(6).half(), rnd(6).half(), 3, tol=2e-2)
add2("gn_err_groups", "aten::native_group_norm.out",
     [tensor(xg), none(), none(), i(2), i(6), i(12), i(4), f(1e-5), out(torch.float32, [2, 6, 3, 4]),
      out(torch.float32, [2, 4]), out(torch.float32, [2, 4]), none()], {}, error=True)

# ---------------------------------------------------------------------------
# softmax


def sm_case(name, x, dim, log=False, tol=1e-5):
    y = (aten._log_softmax if log else aten._softmax)(x, dim, False)
    add2(name, "aten::_log_softmax.out" if log else "aten::_softmax.out",
         [tensor(x), i(dim), b(False), out(x.dtype, list(x.shape)), ref(3)], {3: y}, atol=tol, rtol=tol)


xs3 = rnd(3, 5, 7) * 4
for log in (False, True):
    p = "log_softmax" if log else "softmax"
    sm_case(f"{p}_last", xs3, -1, log)
    sm_case(f"{p}_first", xs3, 0, log)
    sm_case(f"{p}_middle", xs3, 1, log)
    sm_case(f"{p}_wide_inner", rnd(2, 3, 70), 1, log)
    sm_case(f"{p}_long_row", rnd(2, 300) * 8, 1, log)
    sm_case(f"{p}_1d", rnd(9), 0, log)
    sm_case(f"{p}_scalar", torch.tensor(1.5), 0, log)
    sm_case(f"{p}_channels_last", cl(rnd(2, 3, 4, 5)), 1, log)
    sm_case(f"{p}_channels_last_lastdim", cl(rnd(2, 3, 4, 5)), 3, log)
    sm_case(f"{p}_f64", xs3.double(), 1, log, tol=1e-12)
    sm_case(f"{p}_f16", xs3.half(), -1, log, tol=1e-2)
    sm_case(f"{p}_bf16", xs3.bfloat16(), 0, log, tol=5e-2)
    xinf = rnd(3, 4)
    xinf[0, 1] = float("-inf")
    xinf[1, :] = float("-inf")
    xinf[2, 2] = float("nan")
    sm_case(f"{p}_inf_nan", xinf, 1, log)
    sm_case(f"{p}_inf_nan_dim0", xinf.t().contiguous(), 0, log)
    sm_case(f"{p}_empty", rnd(0, 4), 1, log)
add2("softmax_err_dim", "aten::_softmax.out", [tensor(xs3), i(3), b(False), out(torch.float32, [3, 5, 7]), ref(3)],
     {}, error=True)
add2("softmax_err_int", "aten::_softmax.out", [tensor(xs3.to(torch.int32)), i(1), b(False),
                                               out(torch.int32, [3, 5, 7]), ref(3)], {}, error=True)
add2("softmax_err_half_to_float", "aten::_softmax.out", [tensor(xs3.half()), i(1), b(True),
                                                         out(torch.float32, [3, 5, 7]), ref(3)], {}, error=True)

# ---------------------------------------------------------------------------
# upsampling
xu = rnd(2, 3, 5, 6)


def bil_case(name, x, size, align, scales, tol=1e-5):
    y = aten.upsample_bilinear2d.vec(x, size, align, scales)
    add2(name, "aten::upsample_bilinear2d.vec_out",
         [tensor(x), none() if size is None else ints(size), b(align), none() if scales is None else floats(scales),
          out(x.dtype, list(y.shape)), ref(4)], {4: y}, atol=tol, rtol=tol)


bil_case("bilinear_size_up", xu, [7, 9], False, None)
bil_case("bilinear_size_up_align", xu, [7, 9], True, None)
bil_case("bilinear_size_down", xu, [3, 4], False, None)
bil_case("bilinear_size_down_align", xu, [3, 4], True, None)
bil_case("bilinear_scale_1_5", xu, None, False, [1.5, 1.5])
bil_case("bilinear_scale_2", xu, None, False, [2.0, 2.0])
bil_case("bilinear_scale_0_6", xu, None, False, [0.6, 0.7])
bil_case("bilinear_scale_align", xu, None, True, [1.7, 2.3])
bil_case("bilinear_to_1x1", xu, [1, 1], True, None)
bil_case("bilinear_channels_last", cl(xu), [8, 11], False, None)
bil_case("bilinear_f64", xu.double(), None, False, [1.3, 2.6], tol=1e-12)
bil_case("bilinear_f16", xu.half(), [7, 9], False, None, tol=1e-2)
add2("bilinear_err_both", "aten::upsample_bilinear2d.vec_out",
     [tensor(xu), ints([4, 4]), b(False), floats([2.0, 2.0]), out(torch.float32, [2, 3, 10, 12]), ref(4)], {},
     error=True)
add2("bilinear_err_3d", "aten::upsample_bilinear2d.vec_out",
     [tensor(rnd(3, 5, 6)), ints([4, 4]), b(False), none(), out(torch.float32, [3, 4, 4]), ref(4)], {}, error=True)


def near_case(name, x, size, scales, tol=0):
    y = aten.upsample_nearest2d.vec(x, size, scales)
    add2(name, "aten::upsample_nearest2d.vec_out",
         [tensor(x), none() if size is None else ints(size), none() if scales is None else floats(scales),
          out(x.dtype, list(y.shape)), ref(3)], {3: y}, atol=tol, rtol=tol)


near_case("nearest_size", xu, [7, 9], None)
near_case("nearest_double", xu, [10, 12], None)
near_case("nearest_down", xu, [3, 4], None)
near_case("nearest_scale", xu, None, [1.5, 2.5])
near_case("nearest_scale_odd", xu, None, [1.7, 0.8])
near_case("nearest_channels_last", cl(xu), [11, 13], None)
near_case("nearest_u8", (xu.abs() * 10).to(torch.uint8), [9, 7], None)
near_case("nearest_f16", xu.half(), None, [2.0, 3.0])

# ---------------------------------------------------------------------------
# padding


def cpad_case(name, x, pad, value):
    y = aten.constant_pad_nd(x, pad, value)
    add2(name, "aten::constant_pad_nd.out",
         [tensor(x), ints(pad), f(value) if isinstance(value, float) else i(value), out(x.dtype, list(y.shape)),
          ref(3)], {3: y})


xq = rnd(2, 3, 4, 5)
cpad_case("cpad_last", xq, [1, 2], 0.5)
cpad_case("cpad_two", xq, [1, 0, 2, 3], -1.25)
cpad_case("cpad_all4", xq, [1, 1, 0, 1, 2, 0, 1, 1], 0.0)
cpad_case("cpad_negative", xq, [-1, 2, 0, -2], 3.0)
cpad_case("cpad_int", (xq * 4).to(torch.int32), [2, 1], 7)
cpad_case("cpad_f16", xq.half(), [1, 1, 1, 1], 2.5)
cpad_case("cpad_bool", xq > 0, [1, 2], 1)
cpad_case("cpad_channels_last", cl(xq), [1, 2, 3, 0], 1.0)
add2("cpad_err_odd", "aten::constant_pad_nd.out", [tensor(xq), ints([1, 2, 3]), i(0),
                                                   out(torch.float32, [2, 3, 9, 9]), ref(3)], {}, error=True)


def pad_case(name, op, x, pad):
    y = getattr(aten, op)(x, pad)
    add2(name, f"aten::{op}.out", [tensor(x), ints(pad), out(x.dtype, list(y.shape)), ref(2)], {2: y})


pad_case("reflect1d", "reflection_pad1d", rnd(2, 3, 6), [2, 3])
pad_case("reflect1d_2d_input", "reflection_pad1d", rnd(3, 6), [5, 1])
pad_case("reflect2d", "reflection_pad2d", xq, [1, 2, 3, 0])
pad_case("reflect2d_3d_input", "reflection_pad2d", rnd(3, 4, 5), [4, 4, 3, 3])
pad_case("reflect2d_channels_last", "reflection_pad2d", cl(xq), [2, 1, 1, 2])
pad_case("reflect3d", "reflection_pad3d", rnd(1, 2, 3, 4, 5), [1, 2, 2, 1, 1, 2])
pad_case("replicate1d", "replication_pad1d", rnd(2, 3, 6), [4, 2])
pad_case("replicate2d", "replication_pad2d", xq, [3, 1, 0, 5])
pad_case("replicate2d_int", "replication_pad2d", (xq * 4).to(torch.int64), [1, 1, 2, 2])
pad_case("replicate3d", "replication_pad3d", rnd(2, 2, 3, 4), [1, 1, 2, 0, 0, 3])
pad_case("reflect2d_f64", "reflection_pad2d", xq.double(), [1, 1, 1, 1])
add2("reflect_err_too_big", "aten::reflection_pad1d.out", [tensor(rnd(2, 3, 4)), ints([4, 0]),
                                                           out(torch.float32, [2, 3, 8]), ref(2)], {}, error=True)
add2("reflect_err_rank", "aten::reflection_pad2d.out", [tensor(rnd(4, 5)), ints([1, 1, 1, 1]),
                                                        out(torch.float32, [6, 7]), ref(2)], {}, error=True)

# pixel shuffle
for nm, x, r_ in [("pixel_shuffle", rnd(2, 8, 3, 4), 2), ("pixel_shuffle_3d", rnd(9, 2, 3), 3),
                  ("pixel_shuffle_5d", rnd(2, 1, 4, 2, 2), 2), ("pixel_shuffle_int", torch.arange(72).reshape(2, 4, 3, 3), 2)]:
    y = aten.pixel_shuffle(x, r_)
    add2(nm, "aten::pixel_shuffle.out", [tensor(x), i(r_), out(x.dtype, list(y.shape)), ref(2)], {2: y})
for nm, x, r_ in [("pixel_unshuffle", rnd(2, 2, 6, 4), 2), ("pixel_unshuffle_3d", rnd(1, 6, 9), 3),
                  ("pixel_unshuffle_cl", cl(rnd(1, 3, 4, 4)), 2)]:
    y = aten.pixel_unshuffle(x, r_)
    add2(nm, "aten::pixel_unshuffle.out", [tensor(x), i(r_), out(x.dtype, list(y.shape)), ref(2)], {2: y})
add2("pixel_shuffle_err", "aten::pixel_shuffle.out", [tensor(rnd(1, 6, 2, 2)), i(2), out(torch.float32, [1, 1, 4, 4]),
                                                      ref(2)], {}, error=True)

# embedding
wt = rnd(10, 4)
for nm, ix in [("embedding_i64", torch.tensor([[0, 3, 9], [2, 2, 5]])),
               ("embedding_i32", torch.tensor([1, 0, 7, 7], dtype=torch.int32)),
               ("embedding_scalar_idx", torch.tensor(4)),
               ("embedding_empty", torch.zeros(0, 3, dtype=torch.int64))]:
    y = aten.embedding(wt, ix)
    add2(nm, "aten::embedding.out", [const(wt), tensor(ix), i(-1), b(False), b(False), out(y.dtype, list(y.shape)),
                                     ref(5)], {5: y})
y = aten.embedding(wt.half(), torch.tensor([3, 1]))
add2("embedding_f16", "aten::embedding.out", [const(wt.half()), tensor(torch.tensor([3, 1])), i(-1), b(False),
                                              b(False), out(torch.float16, [2, 4]), ref(5)], {5: y})
add2("embedding_err_oob", "aten::embedding.out", [const(wt), tensor(torch.tensor([1, 10])), i(-1), b(False), b(False),
                                                  out(torch.float32, [2, 4]), ref(5)], {}, error=True)
add2("embedding_err_neg", "aten::embedding.out", [const(wt), tensor(torch.tensor([-1])), i(-1), b(False), b(False),
                                                  out(torch.float32, [1, 4]), ref(5)], {}, error=True)
add2("embedding_err_float_idx", "aten::embedding.out", [const(wt), tensor(torch.tensor([1.0])), i(-1), b(False),
                                                        b(False), out(torch.float32, [1, 4]), ref(5)], {}, error=True)
write("nn_misc", cases2)
