//! `aten::convolution.out`: 1-D and 2-D, transposed or not, grouped.
//!
//! `f32` with a constant weight is packed at load into a `pteron_linalg::Conv2d`
//! (used whenever the run-time geometry equals the load-time one); other shapes
//! and run-time weights use im2col into load-time scratch + `sgemm` (or a direct
//! depthwise loop); transposed convs use `conv_transpose2d`. Half types convert
//! through `f32` scratch; `f64` uses a direct reference loop. Non-contiguous
//! (channels-last) inputs/outputs are converted through scratch.

use pteron_linalg::{
    conv_transpose2d, sgemm, Activation, Bias, Conv2d, Conv2dParams, ConvTranspose2dParams,
    GemmArgs,
};
use pteron_runtime::{
    IntList, Kernel, KernelCtx, KernelError, PrepareCtx, Registry, ScalarType, ShapeDynamism, Value,
};

use super::{from_f32_contiguous, offset, spatial_list, to_f32_contiguous};

const OP: &str = "convolution";

pub(super) fn register(reg: &mut Registry) {
    reg.register_factory("aten::convolution.out", make_conv);
}

/// Geometry of one convolution, 1-D mapped to 2-D with `h == 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Geom {
    n: usize,
    ic: usize,
    ih: usize,
    iw: usize,
    oc: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    dh: usize,
    dw: usize,
    oph: usize,
    opw: usize,
    groups: usize,
    transposed: bool,
    one_d: bool,
    oh: usize,
    ow: usize,
}

struct Lists<'a> {
    stride: IntList<'a>,
    padding: IntList<'a>,
    dilation: IntList<'a>,
    output_padding: IntList<'a>,
}

fn out_len(
    i: usize,
    k: usize,
    s: usize,
    p: usize,
    d: usize,
    op: usize,
    transposed: bool,
) -> Result<usize, KernelError> {
    // In i128: every operand fits (they come from usize), so a corrupted program's
    // huge stride, padding or dilation cannot overflow here; sizes beyond usize are
    // refused below.
    let (i, k, s, p, d, op) = (
        i as i128, k as i128, s as i128, p as i128, d as i128, op as i128,
    );
    let o = if transposed {
        (i - 1) * s - 2 * p + d * (k - 1) + op + 1
    } else {
        let eff = d * (k - 1) + 1;
        let padded = i + 2 * p;
        if padded < eff {
            return Err(KernelError::invalid(format!(
                "{OP}: kernel extent {eff} is larger than the padded input size {padded}"
            )));
        }
        (padded - eff) / s + 1
    };
    let Ok(o) = usize::try_from(o) else {
        return Err(KernelError::invalid(format!(
            "{OP}: computed output size {o} is not positive or too large"
        )));
    };
    if o < 1 {
        return Err(KernelError::invalid(format!(
            "{OP}: computed output size {o} is not positive"
        )));
    }
    Ok(o)
}

fn geometry(
    x: &[usize],
    w: &[usize],
    l: &Lists<'_>,
    transposed: bool,
    groups: i64,
) -> Result<Geom, KernelError> {
    let r = x.len();
    if r != 3 && r != 4 {
        return Err(KernelError::invalid(format!(
            "{OP}: input must be 3-D (N, C, L) or 4-D (N, C, H, W), got shape {x:?}"
        )));
    }
    if w.len() != r {
        return Err(KernelError::invalid(format!(
            "{OP}: weight shape {w:?} must have the same rank as the input {x:?}"
        )));
    }
    if groups < 1 {
        return Err(KernelError::invalid(format!(
            "{OP}: groups must be positive, got {groups}"
        )));
    }
    let groups = groups as usize;
    let nsp = r - 2;
    let stride = spatial_list(l.stride, nsp, None, 1, OP, "stride")?;
    let padding = spatial_list(l.padding, nsp, None, 0, OP, "padding")?;
    let dilation = spatial_list(l.dilation, nsp, None, 1, OP, "dilation")?;
    let outpad = if transposed {
        spatial_list(l.output_padding, nsp, Some([0; 3]), 0, OP, "output_padding")?
    } else {
        [0; 3]
    };
    let one_d = r == 3;
    let sp = |v: [usize; 3], one: usize| if one_d { (one, v[0]) } else { (v[0], v[1]) };
    let (sh, sw) = sp(stride, 1);
    let (ph, pw) = sp(padding, 0);
    let (dh, dw) = sp(dilation, 1);
    let (oph, opw) = sp(outpad, 0);
    let (n, ic) = (x[0], x[1]);
    let (ih, iw) = if one_d { (1, x[2]) } else { (x[2], x[3]) };
    let (kh, kw) = if one_d { (1, w[2]) } else { (w[2], w[3]) };
    if kh == 0 || kw == 0 {
        return Err(KernelError::invalid(format!(
            "{OP}: weight shape {w:?} has an empty kernel"
        )));
    }
    let oc = if transposed {
        if w[0] != ic || ic % groups != 0 {
            return Err(KernelError::invalid(format!(
                "{OP}: transposed weight shape {w:?} does not match input channels {ic} with groups {groups}"
            )));
        }
        w[1].checked_mul(groups).ok_or_else(|| {
            KernelError::invalid(format!(
                "{OP}: transposed weight shape {w:?} with groups {groups} overflows"
            ))
        })?
    } else {
        if w[1].checked_mul(groups) != Some(ic) || !w[0].is_multiple_of(groups) {
            return Err(KernelError::invalid(format!(
                "{OP}: weight shape {w:?} does not match input channels {ic} with groups {groups}"
            )));
        }
        w[0]
    };
    if transposed && ((oph >= sh && oph >= dh) || (opw >= sw && opw >= dw)) {
        return Err(KernelError::invalid(format!(
            "{OP}: output_padding must be smaller than either stride or dilation"
        )));
    }
    let oh = out_len(ih, kh, sh, ph, dh, oph, transposed)?;
    let ow = out_len(iw, kw, sw, pw, dw, opw, transposed)?;
    Ok(Geom {
        n,
        ic,
        ih,
        iw,
        oc,
        kh,
        kw,
        sh,
        sw,
        ph,
        pw,
        dh,
        dw,
        oph,
        opw,
        groups,
        transposed,
        one_d,
        oh,
        ow,
    })
}

impl Geom {
    fn out_sizes(&self) -> ([usize; 4], usize) {
        if self.one_d {
            ([self.n, self.oc, self.ow, 0], 3)
        } else {
            ([self.n, self.oc, self.oh, self.ow], 4)
        }
    }
    fn conv2d_params(&self) -> Conv2dParams {
        Conv2dParams {
            batch: self.n,
            in_c: self.ic,
            in_h: self.ih,
            in_w: self.iw,
            out_c: self.oc,
            k_h: self.kh,
            k_w: self.kw,
            stride: (self.sh, self.sw),
            padding: (self.ph, self.pw),
            dilation: (self.dh, self.dw),
            groups: self.groups,
        }
    }
    fn convt_params(&self) -> ConvTranspose2dParams {
        ConvTranspose2dParams {
            batch: self.n,
            in_c: self.ic,
            in_h: self.ih,
            in_w: self.iw,
            out_c: self.oc,
            k_h: self.kh,
            k_w: self.kw,
            stride: (self.sh, self.sw),
            padding: (self.ph, self.pw),
            output_padding: (self.oph, self.opw),
            dilation: (self.dh, self.dw),
            groups: self.groups,
        }
    }
    fn is_depthwise(&self) -> bool {
        !self.transposed && self.groups == self.ic && self.oc == self.ic
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }
}

#[derive(Default)]
struct ConvOp {
    /// Weights packed at load for the load-time geometry (f32, constant weight).
    packed: Option<Conv2d>,
    cols: Vec<f32>,
    xbuf: Vec<f32>,
    ybuf: Vec<f32>,
    wbuf: Vec<f32>,
    bbuf: Vec<f32>,
}

fn order_contiguous(p: &PrepareCtx<'_>, arg: usize) -> bool {
    match p.value(arg) {
        Ok(Value::Tensor(t)) => t.dim_order().is_contiguous(),
        _ => true,
    }
}

fn make_conv(p: &PrepareCtx<'_>) -> Result<Box<dyn Kernel>, KernelError> {
    let mut op = ConvOp::default();
    if p.num_args() != 11 {
        // Reported by `run`.
        return Ok(Box::new(op));
    }
    let (Ok((xdt, xshape, xdyn)), Ok((_, wshape, _)), Ok((_, oshape, _))) =
        (p.tensor_meta(0), p.tensor_meta(1), p.tensor_meta(9))
    else {
        return Ok(Box::new(op));
    };
    let transposed = matches!(p.scalar(6).ok().and_then(|s| s.to_i64()), Some(v) if v != 0);
    let groups = p.scalar(8).ok().and_then(|s| s.to_i64()).unwrap_or(1);
    let lists = match (p.int_list(3), p.int_list(4), p.int_list(5), p.int_list(7)) {
        (Ok(stride), Ok(padding), Ok(dilation), Ok(output_padding)) => Lists {
            stride,
            padding,
            dilation,
            output_padding,
        },
        _ => return Ok(Box::new(op)),
    };
    let half = matches!(xdt, ScalarType::Half | ScalarType::BFloat16);
    if !(xdt == ScalarType::Float || half) {
        return Ok(Box::new(op));
    }
    let g = geometry(xshape.dims(), wshape.dims(), &lists, transposed, groups).ok();
    if !order_contiguous(p, 0) || half {
        op.xbuf = vec![0.0; xshape.numel()];
    }
    if !order_contiguous(p, 9) || half {
        op.ybuf = vec![0.0; oshape.numel()];
    }
    if !order_contiguous(p, 1) || half {
        op.wbuf = vec![0.0; wshape.numel()];
    }
    if half {
        if let Ok((_, bshape, _)) = p.tensor_meta(2) {
            op.bbuf = vec![0.0; bshape.numel()];
        }
    }
    // Pre-pack a constant f32 weight for the load-time geometry.
    let mut static_packed = false;
    if let (Some(g), ScalarType::Float, false) = (g, xdt, transposed) {
        let w = p.constant(1).ok().flatten();
        let bias_const = match p.value(2) {
            Ok(Value::None) => Some(None),
            _ => p.constant(2).ok().flatten().map(Some),
        };
        if let (Some(w), Some(b)) = (w, bias_const) {
            let mut wv = vec![0.0f32; w.numel()];
            let bv = b.and_then(|b| super::slice::<f32>(&b).ok());
            let bias_ok = b.is_none() || bv.is_some_and(|bv| bv.len() == g.oc);
            if w.dtype() == ScalarType::Float && bias_ok && to_f32_contiguous(&w, &mut wv).is_ok() {
                op.packed = Conv2d::new(g.conv2d_params(), &wv, bv, Activation::None).ok();
                static_packed = op.packed.is_some() && xdyn == ShapeDynamism::Static;
            }
        }
    }
    // Scratch for the general path, sized from the bounds (unless the prepared
    // conv covers every possible call).
    if !static_packed {
        let (wd, od, xd) = (wshape.dims(), oshape.dims(), xshape.dims());
        let r = wd.len();
        if (r == 3 || r == 4) && od.len() == r && xd.len() == r {
            let k: usize = wd[2..].iter().product();
            let len = match g {
                Some(g) if !g.transposed && (g.is_depthwise() || g.is_pointwise()) => 0,
                _ if transposed => wd[1] * k * xd[2..].iter().product::<usize>(),
                _ => wd[1] * k * od[2..].iter().product::<usize>(),
            };
            op.cols = vec![0.0; len];
        }
    }
    Ok(Box::new(op))
}

fn scratch<'a>(buf: &'a mut [f32], n: usize, what: &str) -> Result<&'a mut [f32], KernelError> {
    let len = buf.len();
    buf.get_mut(..n).ok_or_else(|| {
        KernelError::internal(format!(
            "{OP}: {what} scratch allocated at load holds {len} elements, {n} needed (shape above its bound?)"
        ))
    })
}

impl Kernel for ConvOp {
    fn prepared_bytes(&self) -> usize {
        self.packed.as_ref().map_or(0, |c| c.packed_bytes())
            + 4 * (self.cols.len()
                + self.xbuf.len()
                + self.ybuf.len()
                + self.wbuf.len()
                + self.bbuf.len())
    }

    fn run(&mut self, ctx: &KernelCtx<'_>) -> Result<(), KernelError> {
        ctx.expect_args(11)?;
        let lists = Lists {
            stride: ctx.int_list(3)?,
            padding: ctx.int_list(4)?,
            dilation: ctx.int_list(5)?,
            output_padding: ctx.int_list(7)?,
        };
        let transposed = ctx.bool(6)?;
        let groups = ctx.int(8)?;
        let mut out = ctx.out(9)?;
        let x = ctx.tensor(0)?;
        let w = ctx.tensor(1)?;
        let b = ctx.opt_tensor(2)?;
        let dt = x.dtype();
        super::need_float(OP, "input", dt)?;
        super::same_dtype(OP, "weight", w.dtype(), dt)?;
        super::same_dtype(OP, "out", out.dtype(), dt)?;
        let g = geometry(x.sizes(), w.sizes(), &lists, transposed, groups)?;
        if let Some(b) = &b {
            super::same_dtype(OP, "bias", b.dtype(), dt)?;
            if b.dim() != 1 || b.numel() != g.oc {
                return Err(KernelError::invalid(format!(
                    "{OP}: bias shape {:?} must be [{}]",
                    b.sizes(),
                    g.oc
                )));
            }
        }
        let (osz, orank) = g.out_sizes();
        out.resize(&osz[..orank])?;
        if out.numel() == 0 {
            return Ok(());
        }
        let ConvOp {
            packed,
            cols,
            xbuf,
            ybuf,
            wbuf,
            bbuf,
        } = self;
        if dt == ScalarType::Double {
            return conv_ref_f64(&g, &x, &w, b.as_ref(), &mut out);
        }
        let half = dt != ScalarType::Float;
        let xs: &[f32] = if !half && x.is_contiguous() {
            super::slice::<f32>(&x)?
        } else if !half && x.dim() == 4 && x.dim_order().is_channels_last() {
            let s = scratch(xbuf, x.numel(), "input")?;
            let d = x.sizes();
            nhwc_to_nchw(super::slice::<f32>(&x)?, d[0], d[1], d[2] * d[3], s);
            s
        } else {
            let s = scratch(xbuf, x.numel(), "input")?;
            to_f32_contiguous(&x, s)?;
            s
        };
        // The prepared conv holds its own packed weights and bias.
        let use_packed = !half
            && !g.transposed
            && packed
                .as_ref()
                .is_some_and(|k| *k.params() == g.conv2d_params());
        let ws: &[f32] = if use_packed {
            &[]
        } else if !half && w.is_contiguous() {
            super::slice::<f32>(&w)?
        } else {
            let s = scratch(wbuf, w.numel(), "weight")?;
            to_f32_contiguous(&w, s)?;
            s
        };
        let bs: Option<&[f32]> = match &b {
            _ if use_packed => None,
            None => None,
            Some(b) if !half => Some(super::slice::<f32>(b)?),
            Some(b) => {
                let s = scratch(bbuf, b.numel(), "bias")?;
                to_f32_contiguous(b, s)?;
                Some(s)
            }
        };
        if !half && out.is_contiguous() {
            conv_f32(
                &g,
                packed.as_ref(),
                xs,
                ws,
                bs,
                super::slice_mut::<f32>(&mut out)?,
                cols,
            )
        } else {
            let ys = scratch(ybuf, out.numel(), "output")?;
            conv_f32(&g, packed.as_ref(), xs, ws, bs, ys, cols)?;
            if !half && out.dim() == 4 && out.dim_order().is_channels_last() {
                let (n, c, hw) = (g.n, g.oc, g.oh * g.ow);
                nchw_to_nhwc(ys, n, c, hw, super::slice_mut::<f32>(&mut out)?);
                return Ok(());
            }
            from_f32_contiguous(ys, &mut out)
        }
    }
}

/// `[n, hw, c]` (channels-last memory) to `[n, c, hw]`.
fn nhwc_to_nchw(src: &[f32], n: usize, c: usize, hw: usize, dst: &mut [f32]) {
    for b in 0..n {
        let s = &src[b * hw * c..(b + 1) * hw * c];
        let d = &mut dst[b * hw * c..(b + 1) * hw * c];
        for ch in 0..c {
            for (p, o) in d[ch * hw..(ch + 1) * hw].iter_mut().enumerate() {
                *o = s[p * c + ch];
            }
        }
    }
}

/// `[n, c, hw]` to `[n, hw, c]` (channels-last memory).
fn nchw_to_nhwc(src: &[f32], n: usize, c: usize, hw: usize, dst: &mut [f32]) {
    for b in 0..n {
        let s = &src[b * hw * c..(b + 1) * hw * c];
        let d = &mut dst[b * hw * c..(b + 1) * hw * c];
        for p in 0..hw {
            for (ch, o) in d[p * c..(p + 1) * c].iter_mut().enumerate() {
                *o = s[ch * hw + p];
            }
        }
    }
}

/// Contiguous `f32` convolution.
fn conv_f32(
    g: &Geom,
    packed: Option<&Conv2d>,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    cols: &mut [f32],
) -> Result<(), KernelError> {
    let lin = |e: pteron_linalg::LinalgError| KernelError::invalid(format!("{OP}: {e}"));
    if g.transposed {
        let p = g.convt_params();
        let need = p.scratch_len();
        let s = scratch(cols, need, "column")?;
        return conv_transpose2d(&p, x, w, b, y, s).map_err(lin);
    }
    let p = g.conv2d_params();
    if let Some(k) = packed {
        if *k.params() == p {
            k.run(x, y, &mut []);
            return Ok(());
        }
    }
    let (ohw, hw) = (g.oh * g.ow, g.ih * g.iw);
    if g.is_depthwise() {
        depthwise_direct(g, x, w, b, y);
        return Ok(());
    }
    let ig = g.ic / g.groups;
    let og = g.oc / g.groups;
    let kk = ig * g.kh * g.kw;
    let pointwise = g.is_pointwise();
    for bi in 0..g.n {
        for gi in 0..g.groups {
            let xin = &x[(bi * g.ic + gi * ig) * hw..(bi * g.ic + (gi + 1) * ig) * hw];
            let bmat: &[f32] = if pointwise {
                xin
            } else {
                let s = scratch(cols, kk * ohw, "column")?;
                im2col(g, xin, s);
                s
            };
            let c0 = (bi * g.oc + gi * og) * ohw;
            sgemm(GemmArgs {
                m: og,
                n: ohw,
                k: kk,
                a: &w[gi * og * kk..(gi + 1) * og * kk],
                lda: kk,
                a_trans: false,
                b: bmat,
                ldb: ohw,
                b_trans: false,
                c: &mut y[c0..c0 + og * ohw],
                ldc: ohw,
                beta: 0.0,
                alpha: 1.0,
                bias: match b {
                    Some(b) => Bias::PerRow(&b[gi * og..(gi + 1) * og]),
                    None => Bias::None,
                },
                act: Activation::None,
            });
        }
    }
    Ok(())
}

/// Column matrix of one (image, group): row `(c*kh + ky)*kw + kx`, column `oy*ow + ox`.
fn im2col(g: &Geom, x: &[f32], cols: &mut [f32]) {
    let (ohw, hw) = (g.oh * g.ow, g.ih * g.iw);
    let ig = g.ic / g.groups;
    let mut row = 0;
    for c in 0..ig {
        let plane = &x[c * hw..(c + 1) * hw];
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let dst = &mut cols[row * ohw..(row + 1) * ohw];
                for oy in 0..g.oh {
                    let d = &mut dst[oy * g.ow..(oy + 1) * g.ow];
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &plane[iy as usize * g.iw..(iy as usize + 1) * g.iw];
                    let x0 = (kx * g.dw) as isize - g.pw as isize;
                    for (ox, o) in d.iter_mut().enumerate() {
                        let ix = x0 + (ox * g.sw) as isize;
                        *o = if ix >= 0 && (ix as usize) < g.iw {
                            src[ix as usize]
                        } else {
                            0.0
                        };
                    }
                }
                row += 1;
            }
        }
    }
}

/// Direct depthwise convolution (one input channel per output channel).
fn depthwise_direct(g: &Geom, x: &[f32], w: &[f32], b: Option<&[f32]>, y: &mut [f32]) {
    let (ohw, hw, kk) = (g.oh * g.ow, g.ih * g.iw, g.kh * g.kw);
    for bi in 0..g.n {
        for c in 0..g.ic {
            let plane = &x[(bi * g.ic + c) * hw..(bi * g.ic + c + 1) * hw];
            let wk = &w[c * kk..(c + 1) * kk];
            let out = &mut y[(bi * g.oc + c) * ohw..(bi * g.oc + c + 1) * ohw];
            out.fill(b.map_or(0.0, |b| b[c]));
            for ky in 0..g.kh {
                for oy in 0..g.oh {
                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                    if iy < 0 || iy >= g.ih as isize {
                        continue;
                    }
                    let src = &plane[iy as usize * g.iw..(iy as usize + 1) * g.iw];
                    let orow = &mut out[oy * g.ow..(oy + 1) * g.ow];
                    for kx in 0..g.kw {
                        let wv = wk[ky * g.kw + kx];
                        let x0 = (kx * g.dw) as isize - g.pw as isize;
                        for (ox, o) in orow.iter_mut().enumerate() {
                            let ix = x0 + (ox * g.sw) as isize;
                            if ix >= 0 && (ix as usize) < g.iw {
                                *o += wv * src[ix as usize];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Strides of a 3-D/4-D tensor mapped to (N, C, H, W) with a zero H stride for 1-D.
fn strides4(st: &[usize; 16], one_d: bool) -> [usize; 4] {
    if one_d {
        [st[0], st[1], 0, st[2]]
    } else {
        [st[0], st[1], st[2], st[3]]
    }
}

/// Reference `f64` convolution over any dim orders.
fn conv_ref_f64(
    g: &Geom,
    x: &pteron_runtime::TensorRef<'_>,
    w: &pteron_runtime::TensorRef<'_>,
    b: Option<&pteron_runtime::TensorRef<'_>>,
    out: &mut pteron_runtime::TensorMut<'_>,
) -> Result<(), KernelError> {
    let xs = strides4(&x.strides(), g.one_d);
    let ws = strides4(&w.strides(), g.one_d);
    let ys = strides4(&out.strides(), g.one_d);
    let xd = super::slice::<f64>(x)?;
    let wd = super::slice::<f64>(w)?;
    let bd = match b {
        Some(b) => Some(super::slice::<f64>(b)?),
        None => None,
    };
    let y = super::slice_mut::<f64>(out)?;
    let ig = g.ic / g.groups;
    let og = g.oc / g.groups;
    for n in 0..g.n {
        for o in 0..g.oc {
            let bias = bd.map_or(0.0, |b| b[o]);
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    y[offset(&[n, o, oy, ox], &ys)] = bias;
                }
            }
        }
    }
    for n in 0..g.n {
        for gi in 0..g.groups {
            if !g.transposed {
                for o in gi * og..(gi + 1) * og {
                    for oy in 0..g.oh {
                        for ox in 0..g.ow {
                            let mut acc = 0.0;
                            for c in 0..ig {
                                for ky in 0..g.kh {
                                    let iy = (oy * g.sh + ky * g.dh) as isize - g.ph as isize;
                                    if iy < 0 || iy >= g.ih as isize {
                                        continue;
                                    }
                                    for kx in 0..g.kw {
                                        let ix = (ox * g.sw + kx * g.dw) as isize - g.pw as isize;
                                        if ix < 0 || ix >= g.iw as isize {
                                            continue;
                                        }
                                        let xv = xd[offset(
                                            &[n, gi * ig + c, iy as usize, ix as usize],
                                            &xs,
                                        )];
                                        acc += xv * wd[offset(&[o, c, ky, kx], &ws)];
                                    }
                                }
                            }
                            y[offset(&[n, o, oy, ox], &ys)] += acc;
                        }
                    }
                }
            } else {
                for c in 0..ig {
                    let ci = gi * ig + c;
                    for iy in 0..g.ih {
                        for ix in 0..g.iw {
                            let xv = xd[offset(&[n, ci, iy, ix], &xs)];
                            for o in 0..og {
                                for ky in 0..g.kh {
                                    let oy = (iy * g.sh + ky * g.dh) as isize - g.ph as isize;
                                    if oy < 0 || oy >= g.oh as isize {
                                        continue;
                                    }
                                    for kx in 0..g.kw {
                                        let ox = (ix * g.sw + kx * g.dw) as isize - g.pw as isize;
                                        if ox < 0 || ox >= g.ow as isize {
                                            continue;
                                        }
                                        let wv = wd[offset(&[ci, o, ky, kx], &ws)];
                                        y[offset(
                                            &[n, gi * og + o, oy as usize, ox as usize],
                                            &ys,
                                        )] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
