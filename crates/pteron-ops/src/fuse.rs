//! Load-time fusions of common portable-export patterns into one kernel:
//! `convolution → batch_norm (eval) → relu/hardtanh` becomes one convolution with the
//! batch norm folded into its weights and bias and the activation fused into its
//! output loop (what XNNPACK's partitioner does at export time, done here at load).
//! `permute_copy(W, [1, 0]) → addmm/mm (→ relu)`, the exporter's form of a Linear
//! layer, becomes one GEMM on weights transposed and packed once at load.
//! A fusion declines (falls back to the separate kernels) unless every parameter it
//! folds is a constant, the data is f32 and contiguous (and, for convolutions,
//! statically shaped).

use pteron_linalg::{sgemm_packed, Activation, Bias, Conv2d, Conv2dParams, PackedB};
use pteron_runtime::{
    Kernel, KernelCtx, KernelError, PrepareCtx, Registry, Scalar, ScalarType, ShapeDynamism,
};

const CONV: &str = "aten::convolution.out";
const BN: &str = "aten::_native_batch_norm_legit_no_training.out";
const RELU: &str = "aten::relu.out";
const HARDTANH: &str = "aten::hardtanh.out";
const PERMUTE: &str = "aten::permute_copy.out";
const ADDMM: &str = "aten::addmm.out";
const MM: &str = "aten::mm.out";

pub(crate) fn register(reg: &mut Registry) {
    reg.register_fusion(&[CONV, BN, HARDTANH], fuse_conv);
    reg.register_fusion(&[CONV, BN, RELU], fuse_conv);
    reg.register_fusion(&[CONV, BN], fuse_conv);
    reg.register_fusion(&[CONV, HARDTANH], fuse_conv);
    reg.register_fusion(&[CONV, RELU], fuse_conv);
    reg.register_fusion(&[PERMUTE, ADDMM, RELU], fuse_linear);
    reg.register_fusion(&[PERMUTE, ADDMM], fuse_linear);
    reg.register_fusion(&[PERMUTE, MM], fuse_linear);
}

/// A Linear layer: `out[m, n] = x[m, k] · Wᵀ (+ bias) (→ activation)` with `W` packed.
struct FusedLinear {
    packed: PackedB,
    bias: Option<Vec<f32>>,
    act: Activation,
    x_arg: usize,
    out_arg: usize,
}

impl Kernel for FusedLinear {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        let mut out = ctx.out(self.out_arg)?;
        let x = ctx.tensor(self.x_arg)?;
        let (k, n) = (self.packed.k(), self.packed.n());
        if x.dim() != 2 || x.size(1) != k || !x.is_contiguous() {
            return Err(KernelError::invalid(format!(
                "fused linear: input has shape {:?}, expected [m, {k}] contiguous",
                x.sizes()
            )));
        }
        let m = x.size(0);
        out.resize(&[m, n])?;
        let bias = match &self.bias {
            Some(b) => Bias::PerColumn(b),
            None => Bias::None,
        };
        let xs = x.as_slice::<f32>()?;
        let os = out.as_mut_slice::<f32>()?;
        if m > 0 {
            sgemm_packed(m, xs, k, false, &self.packed, os, n, bias, self.act);
        }
        Ok(())
    }
    fn prepared_bytes(&self) -> usize {
        self.packed.bytes() + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }
}

fn fuse_linear(ctxs: &[PrepareCtx<'_>]) -> Result<Option<Box<dyn Kernel>>, KernelError> {
    let perm = &ctxs[0];
    if perm.num_args() != 4 {
        return Ok(None);
    }
    // The permute must transpose a constant f32 matrix W [n, k].
    let Some(w) = perm.constant(0)? else {
        return Ok(None);
    };
    if w.dtype() != ScalarType::Float || w.dim() != 2 || !w.is_contiguous() {
        return Ok(None);
    }
    let dims = perm.int_list(1)?;
    if dims.len() != 2 || dims.get(0)? != 1 || dims.get(1)? != 0 {
        return Ok(None);
    }
    let (n, k) = (w.size(0), w.size(1));
    let wt = perm.value_index(2);
    let mm = &ctxs[1];
    let offset = perm.num_args();
    let (x_arg, mut out_arg, bias) = match mm.num_args() {
        // addmm(self=bias, mat1, mat2, beta, alpha, out, ret)
        7 => {
            if mm.value_index(2) != wt || mm.value_index(1) == wt || mm.value_index(0) == wt {
                return Ok(None);
            }
            if mm.scalar(3)?.to_f64() != 1.0 || mm.scalar(4)?.to_f64() != 1.0 {
                return Ok(None);
            }
            let Some(b) = mm.constant(0)? else {
                return Ok(None);
            };
            if b.dtype() != ScalarType::Float || b.numel() != n || b.sizes().last() != Some(&n) {
                return Ok(None);
            }
            (offset + 1, offset + 5, Some(b.as_slice::<f32>()?.to_vec()))
        }
        // mm(self, mat2, out, ret)
        4 => {
            if mm.value_index(1) != wt || mm.value_index(0) == wt {
                return Ok(None);
            }
            (offset, offset + 2, None)
        }
        _ => return Ok(None),
    };
    let (xdt, xshape, _) = mm.tensor_meta(x_arg - offset)?;
    if xdt != ScalarType::Float || xshape.rank() != 2 || xshape.dims()[1] != k {
        return Ok(None);
    }
    let mut act = Activation::None;
    if let Some(a) = ctxs.get(2) {
        if a.num_args() != 3 {
            return Ok(None);
        }
        act = Activation::Relu;
        out_arg = offset + mm.num_args() + 1;
    }
    let packed = PackedB::new(k, n, w.as_slice::<f32>()?, k, true);
    Ok(Some(Box::new(FusedLinear {
        packed,
        bias,
        act,
        x_arg,
        out_arg,
    })))
}

/// A fused convolution: stack = the concatenated stacks of the fused instructions.
struct FusedConv {
    conv: Conv2d,
    /// Position of the final output tensor in the concatenated stack.
    out_arg: usize,
    out_dims: [usize; 4],
    scratch: Vec<f32>,
}

impl Kernel for FusedConv {
    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        let mut out = ctx.out(self.out_arg)?;
        let x = ctx.tensor(0)?;
        out.resize(&self.out_dims)?;
        let input = x.as_slice::<f32>()?;
        let output = out.as_mut_slice::<f32>()?;
        let p = self.conv.params();
        if input.len() != p.batch * p.in_c * p.in_h * p.in_w {
            return Err(KernelError::invalid(format!(
                "fused convolution: input has {} elements, expected {:?}",
                input.len(),
                x.sizes()
            )));
        }
        if output.len() != self.out_dims.iter().product::<usize>() {
            return Err(KernelError::invalid(format!(
                "fused convolution: output has {} elements, expected {:?}",
                output.len(),
                self.out_dims
            )));
        }
        self.conv.run(input, output, &mut self.scratch);
        Ok(())
    }
    fn prepared_bytes(&self) -> usize {
        self.conv.packed_bytes() + self.scratch.len() * 4
    }
}

fn static_f32_nchw(ctx: &PrepareCtx<'_>, arg: usize) -> Result<Option<[usize; 4]>, KernelError> {
    let (dt, shape, dynm) = ctx.tensor_meta(arg)?;
    if dt != ScalarType::Float || shape.rank() != 4 || dynm != ShapeDynamism::Static {
        return Ok(None);
    }
    if let pteron_runtime::Value::Tensor(t) = ctx.value(arg)? {
        if !t.dim_order().is_contiguous() {
            return Ok(None);
        }
    }
    let d = shape.dims();
    Ok(Some([d[0], d[1], d[2], d[3]]))
}

fn const_f32(ctx: &PrepareCtx<'_>, arg: usize) -> Result<Option<Vec<f32>>, KernelError> {
    Ok(match ctx.constant(arg)? {
        Some(t) if t.dtype() == ScalarType::Float && t.is_contiguous() => {
            Some(t.as_slice::<f32>()?.to_vec())
        }
        _ => None,
    })
}

fn pair(ctx: &PrepareCtx<'_>, arg: usize) -> Result<Option<(usize, usize)>, KernelError> {
    let l = ctx.int_list(arg)?;
    let get =
        |i: usize| -> Result<Option<usize>, KernelError> { Ok(usize::try_from(l.get(i)?).ok()) };
    Ok(match l.len() {
        1 => get(0)?.map(|v| (v, v)),
        2 => match (get(0)?, get(1)?) {
            (Some(a), Some(b)) => Some((a, b)),
            _ => None,
        },
        _ => None,
    })
}

fn fuse_conv(ctxs: &[PrepareCtx<'_>]) -> Result<Option<Box<dyn Kernel>>, KernelError> {
    let conv = &ctxs[0];
    if conv.num_args() != 11 {
        return Ok(None);
    }
    let Some(in_dims) = static_f32_nchw(conv, 0)? else {
        return Ok(None);
    };
    let Some(out_dims) = static_f32_nchw(conv, 9)? else {
        return Ok(None);
    };
    let Some(mut weight) = const_f32(conv, 1)? else {
        return Ok(None);
    };
    let (_, wshape, _) = conv.tensor_meta(1)?;
    if wshape.rank() != 4 {
        return Ok(None);
    }
    let mut bias = match conv.value(2)? {
        pteron_runtime::Value::None => None,
        _ => match const_f32(conv, 2)? {
            Some(b) => Some(b),
            None => return Ok(None),
        },
    };
    let (Some(stride), Some(padding), Some(dilation)) =
        (pair(conv, 3)?, pair(conv, 4)?, pair(conv, 5)?)
    else {
        return Ok(None);
    };
    if !matches!(conv.scalar(6)?, Scalar::Bool(false)) {
        return Ok(None); // transposed
    }
    let Some(groups) = conv
        .scalar(8)?
        .to_i64()
        .and_then(|g| usize::try_from(g).ok())
    else {
        return Ok(None);
    };
    let wd = wshape.dims();
    let p = Conv2dParams {
        batch: in_dims[0],
        in_c: in_dims[1],
        in_h: in_dims[2],
        in_w: in_dims[3],
        out_c: wd[0],
        k_h: wd[2],
        k_w: wd[3],
        stride,
        padding,
        dilation,
        groups,
    };
    let conv_out = match p.out_hw() {
        Some((oh, ow)) if [p.batch, p.out_c, oh, ow] == out_dims && wd[1] * groups == p.in_c => {
            out_dims
        }
        _ => return Ok(None),
    };
    let mut out_dims = out_dims;
    let mut out_arg = 9;
    let mut offset = conv.num_args();
    let mut rest = &ctxs[1..];

    // Batch norm (eval): fold into weights and bias.
    if let Some(bn) = rest.first().filter(|c| c.num_args() == 11) {
        let c = p.out_c;
        let gamma = match bn.value(1)? {
            pteron_runtime::Value::None => Some(vec![1.0; c]),
            _ => const_f32(bn, 1)?,
        };
        let beta = match bn.value(2)? {
            pteron_runtime::Value::None => Some(vec![0.0; c]),
            _ => const_f32(bn, 2)?,
        };
        let (Some(gamma), Some(beta), Some(mean), Some(var)) =
            (gamma, beta, const_f32(bn, 3)?, const_f32(bn, 4)?)
        else {
            return Ok(None);
        };
        if [gamma.len(), beta.len(), mean.len(), var.len()] != [c; 4] {
            return Ok(None);
        }
        let eps = bn.scalar(6)?.to_f64();
        let per_out = weight.len() / c;
        let mut b = bias.take().unwrap_or_else(|| vec![0.0; c]);
        for o in 0..c {
            // Same arithmetic order as ATen's eval batch norm: (x - mean) * invstd * gamma + beta.
            let invstd = 1.0 / ((var[o] as f64) + eps).sqrt();
            let scale = (invstd * gamma[o] as f64) as f32;
            for w in &mut weight[o * per_out..(o + 1) * per_out] {
                *w *= scale;
            }
            b[o] = (((b[o] - mean[o]) as f64) * invstd * gamma[o] as f64 + beta[o] as f64) as f32;
        }
        bias = Some(b);
        let Some(d) = static_f32_nchw(bn, 7)? else {
            return Ok(None);
        };
        out_dims = d;
        out_arg = offset + 7;
        offset += bn.num_args();
        rest = &rest[1..];
    }

    // Activation.
    let mut act = Activation::None;
    if let Some(a) = rest.first() {
        match a.num_args() {
            3 => {
                act = Activation::Relu;
                let Some(d) = static_f32_nchw(a, 1)? else {
                    return Ok(None);
                };
                out_dims = d;
                out_arg = offset + 1;
            }
            5 => {
                let (lo, hi) = (a.scalar(1)?.to_f64() as f32, a.scalar(2)?.to_f64() as f32);
                act = if (lo, hi) == (0.0, 6.0) {
                    Activation::Relu6
                } else {
                    Activation::Clamp { min: lo, max: hi }
                };
                let Some(d) = static_f32_nchw(a, 3)? else {
                    return Ok(None);
                };
                out_dims = d;
                out_arg = offset + 3;
            }
            _ => return Ok(None),
        }
    }
    // The fused batch norm / activation write the convolution's shape; a program
    // that declares another output shape for them is not fused (the separate
    // kernels then report it).
    if out_dims != conv_out {
        return Ok(None);
    }
    let kernel = Conv2d::new(p, &weight, bias.as_deref(), act)
        .map_err(|e| KernelError::invalid(e.to_string()))?;
    Ok(Some(Box::new(FusedConv {
        scratch: vec![0.0; p.scratch_len()],
        conv: kernel,
        out_arg,
        out_dims,
    })))
}
