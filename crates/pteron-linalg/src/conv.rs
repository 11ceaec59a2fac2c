//! 2-D convolution (NCHW / OIHW) and transposed convolution.

use crate::dwconv;
use crate::gemm::{gemm_multi, sgemm, Bias, GemmArgs, Kern, Panels, Prob, Src};
use crate::pool::parallel_for;
use crate::util::{div_ceil, SyncPtr};
use crate::Activation;

/// Parameters of a 2-D convolution over NCHW activations with OIHW weights
/// (`O = out_c`, `I = in_c / groups`). `stride`, `padding`, `dilation` are `(h, w)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub batch: usize,
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

fn conv_out(inp: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
    let eff = d.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let padded = inp.checked_add(p.checked_mul(2)?)?;
    if s == 0 || padded < eff {
        return None;
    }
    Some((padded - eff) / s + 1)
}

impl Conv2dParams {
    /// Output `(height, width)`, or `None` if the parameters are invalid (zero
    /// stride/dilation/kernel/groups, channels not divisible by groups, kernel
    /// larger than the padded input).
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        if self.groups == 0
            || !self.in_c.is_multiple_of(self.groups)
            || !self.out_c.is_multiple_of(self.groups)
            || self.k_h == 0
            || self.k_w == 0
            || self.dilation.0 == 0
            || self.dilation.1 == 0
        {
            return None;
        }
        let oh = conv_out(
            self.in_h,
            self.k_h,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
        )?;
        let ow = conv_out(
            self.in_w,
            self.k_w,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
        )?;
        Some((oh, ow))
    }

    /// Scratch `f32` elements needed by [`Conv2d::run`] / [`conv2d`]. Always 0:
    /// im2col is fused into the GEMM's B-panel packing (per-thread buffers), and
    /// depthwise kernels use per-thread padded row bands.
    pub fn scratch_len(&self) -> usize {
        0
    }

    fn is_depthwise(&self) -> bool {
        self.groups == self.in_c && self.out_c == self.in_c
    }

    fn is_pointwise(&self) -> bool {
        self.k_h == 1 && self.k_w == 1 && self.stride == (1, 1) && self.padding == (0, 0)
    }

    pub(crate) fn input_len(&self) -> usize {
        self.batch * self.in_c * self.in_h * self.in_w
    }

    pub(crate) fn weight_len(&self) -> usize {
        self.out_c * (self.in_c / self.groups.max(1)) * self.k_h * self.k_w
    }
}

/// Error for invalid parameters or mismatched buffer sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinalgError(pub String);

impl std::fmt::Display for LinalgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pteron-linalg: {}", self.0)
    }
}

impl std::error::Error for LinalgError {}

fn err<T>(msg: impl Into<String>) -> Result<T, LinalgError> {
    Err(LinalgError(msg.into()))
}

/// Implicit im2col matrix of one image/group: B(p, j) with
/// `p = (c*k_h + ky)*k_w + kx` and `j = oy*out_w + ox`.
#[derive(Clone, Copy)]
pub(crate) struct Im2colView<'a> {
    pub(crate) input: &'a [f32],
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) kh: usize,
    pub(crate) kw: usize,
    pub(crate) sh: usize,
    pub(crate) sw: usize,
    pub(crate) ph: usize,
    pub(crate) pw: usize,
    pub(crate) dh: usize,
    pub(crate) dw: usize,
    pub(crate) ow: usize,
}

impl Im2colView<'_> {
    /// Pack B rows `p0..p0+kc`, columns `j0..j0+lanes` into `r`-wide slivers.
    pub(crate) fn pack(
        &self,
        p0: usize,
        kc: usize,
        j0: usize,
        lanes: usize,
        r: usize,
        dst: &mut [f32],
    ) {
        let nsl = div_ceil(lanes, r);
        let plane = self.h * self.w;
        for s in 0..nsl {
            let jb = j0 + s * r;
            let l = r.min(lanes - s * r);
            // Split the sliver's lanes into runs that share an output row.
            let mut segs = [(0usize, 0usize, 0usize, 0usize); 16];
            let mut nseg = 0;
            let mut lane = 0;
            while lane < l {
                let j = jb + lane;
                let (oy, ox) = (j / self.ow, j % self.ow);
                let len = (l - lane).min(self.ow - ox);
                segs[nseg] = (lane, len, oy, ox);
                nseg += 1;
                lane += len;
            }
            let d = &mut dst[s * kc * r..(s + 1) * kc * r];
            let mut c = p0 / (self.kh * self.kw);
            let mut ky = (p0 / self.kw) % self.kh;
            let mut kx = p0 % self.kw;
            for p in 0..kc {
                let row = &mut d[p * r..p * r + r];
                row[l..].fill(0.0);
                let src = &self.input[c * plane..(c + 1) * plane];
                for &(ls, len, oy, ox0) in &segs[..nseg] {
                    let out = &mut row[ls..ls + len];
                    let iy = (oy * self.sh + ky * self.dh) as isize - self.ph as isize;
                    if iy < 0 || iy >= self.h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let irow = &src[iy as usize * self.w..(iy as usize + 1) * self.w];
                    let x0 = (ox0 * self.sw + kx * self.dw) as isize - self.pw as isize;
                    if self.sw == 1 {
                        let t_lo = (-x0).clamp(0, len as isize) as usize;
                        let t_hi = (self.w as isize - x0).clamp(0, len as isize) as usize;
                        if t_lo < t_hi {
                            out[..t_lo].fill(0.0);
                            out[t_hi..].fill(0.0);
                            let a = (x0 + t_lo as isize) as usize;
                            out[t_lo..t_hi].copy_from_slice(&irow[a..a + (t_hi - t_lo)]);
                        } else {
                            out.fill(0.0);
                        }
                    } else {
                        for (t, o) in out.iter_mut().enumerate() {
                            let x = x0 + (t * self.sw) as isize;
                            *o = if x >= 0 && (x as usize) < self.w {
                                irow[x as usize]
                            } else {
                                0.0
                            };
                        }
                    }
                }
                kx += 1;
                if kx == self.kw {
                    kx = 0;
                    ky += 1;
                    if ky == self.kh {
                        ky = 0;
                        c += 1;
                    }
                }
            }
        }
    }
}

enum ConvKind {
    Depthwise {
        weight: Vec<f32>,
        bias: Vec<f32>,
        /// Tap offsets within a band (`dwconv::prepare`).
        offs: Vec<usize>,
    },
    Gemm {
        /// One packed A (og × ig*kh*kw) per group.
        panels: Vec<Panels>,
        bias: Option<Vec<f32>>,
        pointwise: bool,
    },
}

/// A prepared convolution: weights are validated and packed once.
///
/// Strategy: depthwise (`groups == in_c == out_c`) uses direct SIMD kernels
/// vectorised along W (fast 3×3/5×5, stride 1/2 paths); 1×1 stride-1 unpadded
/// convs run GEMM directly on the NCHW planes (weights as A, input plane as B,
/// per-row bias, fused activation); everything else uses GEMM with im2col fused
/// into B-panel packing, one GEMM per (image, group), all in one parallel dispatch.
pub struct Conv2d {
    p: Conv2dParams,
    oh: usize,
    ow: usize,
    act: Activation,
    kind: ConvKind,
}

impl Conv2d {
    /// Validate parameters and pack `weight` (`[out_c, in_c/groups, k_h, k_w]`).
    pub fn new(
        p: Conv2dParams,
        weight: &[f32],
        bias: Option<&[f32]>,
        act: Activation,
    ) -> Result<Self, LinalgError> {
        let Some((oh, ow)) = p.out_hw() else {
            return err(format!("invalid conv2d parameters {p:?}"));
        };
        if weight.len() != p.weight_len() {
            return err(format!(
                "conv2d weight has {} elements, expected {}",
                weight.len(),
                p.weight_len()
            ));
        }
        if let Some(b) = bias {
            if b.len() != p.out_c {
                return err(format!(
                    "conv2d bias has {} elements, expected {}",
                    b.len(),
                    p.out_c
                ));
            }
        }
        let kind = if p.is_depthwise() {
            let Some(offs) = dwconv::prepare(&p) else {
                return err(format!(
                    "depthwise conv2d window too large for its band buffer: {p:?}"
                ));
            };
            ConvKind::Depthwise {
                offs,
                weight: weight.to_vec(),
                bias: bias.map_or_else(|| vec![0.0; p.out_c], |b| b.to_vec()),
            }
        } else {
            let kern = Kern::current();
            let og = p.out_c / p.groups;
            let kk = (p.in_c / p.groups) * p.k_h * p.k_w;
            let panels = (0..p.groups)
                .map(|g| Panels::pack(kern, kern.mr(), og, kk, &weight[g * og * kk..], kk, 1))
                .collect();
            ConvKind::Gemm {
                panels,
                bias: bias.map(|b| b.to_vec()),
                pointwise: p.is_pointwise(),
            }
        };
        Ok(Conv2d {
            p,
            oh,
            ow,
            act,
            kind,
        })
    }

    /// Parameters this convolution was built for.
    pub fn params(&self) -> &Conv2dParams {
        &self.p
    }

    /// Output `(height, width)`.
    pub fn out_hw(&self) -> (usize, usize) {
        (self.oh, self.ow)
    }

    /// Bytes of prepared weight storage.
    pub fn packed_bytes(&self) -> usize {
        match &self.kind {
            ConvKind::Depthwise {
                weight, bias, offs, ..
            } => (weight.len() + bias.len()) * 4 + offs.len() * 8,
            ConvKind::Gemm { panels, bias, .. } => {
                panels.iter().map(Panels::bytes).sum::<usize>()
                    + bias.as_ref().map_or(0, |b| b.len() * 4)
            }
        }
    }

    /// Run on `input` (`[batch, in_c, in_h, in_w]`) writing `output`
    /// (`[batch, out_c, oh, ow]`).
    ///
    /// # Panics
    /// If `input`/`output` are shorter than those sizes or `scratch` is shorter
    /// than [`Conv2dParams::scratch_len`].
    pub fn run(&self, input: &[f32], output: &mut [f32], scratch: &mut [f32]) {
        let p = &self.p;
        let (oh, ow) = (self.oh, self.ow);
        assert!(input.len() >= p.input_len(), "conv2d: input too short");
        assert!(
            output.len() >= p.batch * p.out_c * oh * ow,
            "conv2d: output too short"
        );
        assert!(
            scratch.len() >= p.scratch_len(),
            "conv2d: scratch too short"
        );
        match &self.kind {
            ConvKind::Depthwise { weight, bias, offs } => {
                dwconv::run(p, oh, ow, weight, bias, self.act, offs, input, output)
            }
            ConvKind::Gemm {
                panels,
                bias,
                pointwise,
            } => {
                let g = p.groups;
                let ig = p.in_c / g;
                let og = p.out_c / g;
                let hw = p.in_h * p.in_w;
                let ohw = oh * ow;
                let kk = ig * p.k_h * p.k_w;
                let kern = panels[0].kern;
                let cp = SyncPtr(output.as_mut_ptr());
                let act = self.act;
                gemm_multi(kern, p.batch * g, og, ohw, kk, |t| {
                    let (bi, gi) = (t / g, t % g);
                    let inp =
                        &input[(bi * p.in_c + gi * ig) * hw..(bi * p.in_c + (gi + 1) * ig) * hw];
                    let b = if *pointwise {
                        Src::Strided {
                            data: inp,
                            ls: 1,
                            ps: hw,
                        }
                    } else {
                        Src::Im2col(Im2colView {
                            input: inp,
                            h: p.in_h,
                            w: p.in_w,
                            kh: p.k_h,
                            kw: p.k_w,
                            sh: p.stride.0,
                            sw: p.stride.1,
                            ph: p.padding.0,
                            pw: p.padding.1,
                            dh: p.dilation.0,
                            dw: p.dilation.1,
                            ow,
                        })
                    };
                    Prob {
                        a: Src::Packed(panels[gi].view()),
                        b,
                        // Each (image, group) owns a disjoint og×ohw block of the
                        // output (length asserted above).
                        c: SyncPtr(cp.get().wrapping_add((bi * p.out_c + gi * og) * ohw)),
                        ldc: ohw,
                        alpha: 1.0,
                        beta: 0.0,
                        bias: match bias {
                            Some(b) => Bias::PerRow(&b[gi * og..(gi + 1) * og]),
                            None => Bias::None,
                        },
                        act,
                    }
                });
            }
        }
    }
}

/// One-shot convolution (packs the weights internally; allocates).
pub fn conv2d(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), LinalgError> {
    let conv = Conv2d::new(*p, weight, bias, act)?;
    let (oh, ow) = conv.out_hw();
    if input.len() < p.input_len() {
        return err("conv2d: input too short");
    }
    if output.len() < p.batch * p.out_c * oh * ow {
        return err("conv2d: output too short");
    }
    if scratch.len() < p.scratch_len() {
        return err("conv2d: scratch too short");
    }
    conv.run(input, output, scratch);
    Ok(())
}

/// Parameters of a transposed 2-D convolution (PyTorch `ConvTranspose2d`):
/// NCHW input, weight `[in_c, out_c/groups, k_h, k_w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvTranspose2dParams {
    pub batch: usize,
    pub in_c: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_c: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub output_padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
}

fn convt_out(inp: usize, k: usize, s: usize, p: usize, op: usize, d: usize) -> Option<usize> {
    if inp == 0 || s == 0 || d == 0 || k == 0 || (op >= s && op >= d) {
        return None;
    }
    let full = (inp - 1)
        .checked_mul(s)?
        .checked_add(d.checked_mul(k - 1)?)?
        .checked_add(op)?
        .checked_add(1)?;
    let out = full.checked_sub(p.checked_mul(2)?)?;
    if out == 0 {
        None
    } else {
        Some(out)
    }
}

impl ConvTranspose2dParams {
    /// Output `(height, width)` = `(in-1)*stride - 2*pad + dil*(k-1) + output_padding + 1`,
    /// or `None` if invalid (including `output_padding` not smaller than stride or dilation).
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        if self.groups == 0
            || !self.in_c.is_multiple_of(self.groups)
            || !self.out_c.is_multiple_of(self.groups)
        {
            return None;
        }
        let oh = convt_out(
            self.in_h,
            self.k_h,
            self.stride.0,
            self.padding.0,
            self.output_padding.0,
            self.dilation.0,
        )?;
        let ow = convt_out(
            self.in_w,
            self.k_w,
            self.stride.1,
            self.padding.1,
            self.output_padding.1,
            self.dilation.1,
        )?;
        Some((oh, ow))
    }

    /// Scratch `f32` elements needed: the column matrix of one (image, group),
    /// `(out_c/groups)*k_h*k_w * in_h*in_w`.
    pub fn scratch_len(&self) -> usize {
        (self.out_c / self.groups.max(1)) * self.k_h * self.k_w * self.in_h * self.in_w
    }

    /// Weight elements expected: `in_c * out_c/groups * k_h * k_w`.
    pub fn weight_len(&self) -> usize {
        self.in_c * (self.out_c / self.groups.max(1)) * self.k_h * self.k_w
    }
}

/// Transposed convolution: per (image, group) a GEMM `cols = W_gᵀ · X_g`
/// followed by a parallel col2im scatter-add into the (bias-initialised) output.
pub fn conv_transpose2d(
    p: &ConvTranspose2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
    scratch: &mut [f32],
) -> Result<(), LinalgError> {
    let Some((oh, ow)) = p.out_hw() else {
        return err(format!("invalid conv_transpose2d parameters {p:?}"));
    };
    if weight.len() != p.weight_len() {
        return err("conv_transpose2d: weight length mismatch");
    }
    if bias.is_some_and(|b| b.len() != p.out_c) {
        return err("conv_transpose2d: bias length mismatch");
    }
    let hw = p.in_h * p.in_w;
    let ohw = oh * ow;
    if input.len() < p.batch * p.in_c * hw {
        return err("conv_transpose2d: input too short");
    }
    if output.len() < p.batch * p.out_c * ohw {
        return err("conv_transpose2d: output too short");
    }
    if scratch.len() < p.scratch_len() {
        return err("conv_transpose2d: scratch too short");
    }
    let g = p.groups;
    let ig = p.in_c / g;
    let og = p.out_c / g;
    let kk = p.k_h * p.k_w;
    let m = og * kk;
    let cols = &mut scratch[..m * hw];
    for bi in 0..p.batch {
        for gi in 0..g {
            sgemm(GemmArgs {
                m,
                n: hw,
                k: ig,
                a: &weight[gi * ig * m..(gi + 1) * ig * m],
                lda: m,
                a_trans: true,
                b: &input[(bi * p.in_c + gi * ig) * hw..(bi * p.in_c + (gi + 1) * ig) * hw],
                ldb: hw,
                b_trans: false,
                c: cols,
                ldc: hw,
                beta: 0.0,
                alpha: 1.0,
                bias: Bias::None,
                act: Activation::None,
            });
            let cols_ref: &[f32] = cols;
            let out_g =
                &mut output[(bi * p.out_c + gi * og) * ohw..(bi * p.out_c + (gi + 1) * og) * ohw];
            let op = SyncPtr(out_g.as_mut_ptr());
            parallel_for(og, |o| {
                // SAFETY: task `o` exclusively owns output plane `o` of this group,
                // which lies inside `out_g` (length og*ohw).
                let plane = unsafe { std::slice::from_raw_parts_mut(op.get().add(o * ohw), ohw) };
                plane.fill(bias.map_or(0.0, |b| b[gi * og + o]));
                for ky in 0..p.k_h {
                    for kx in 0..p.k_w {
                        let row = &cols_ref[((o * p.k_h + ky) * p.k_w + kx) * hw..][..hw];
                        for iy in 0..p.in_h {
                            let oy = (iy * p.stride.0 + ky * p.dilation.0) as isize
                                - p.padding.0 as isize;
                            if oy < 0 || oy >= oh as isize {
                                continue;
                            }
                            let orow = &mut plane[oy as usize * ow..(oy as usize + 1) * ow];
                            let irow = &row[iy * p.in_w..(iy + 1) * p.in_w];
                            for (ix, &v) in irow.iter().enumerate() {
                                let ox = (ix * p.stride.1 + kx * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if ox >= 0 && (ox as usize) < ow {
                                    orow[ox as usize] += v;
                                }
                            }
                        }
                    }
                }
            });
        }
    }
    Ok(())
}
