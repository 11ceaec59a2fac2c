//! Max / average 2-D pooling over NCHW tensors (PyTorch semantics: padding,
//! dilation (max only), `ceil_mode`, `count_include_pad`, `divisor_override`).
//! Parallelised over channel planes; interior windows take a branch-free path.

use crate::pool::{num_threads, parallel_for};
use crate::util::SyncPtr;
use crate::LinalgError;

/// Pooling parameters; `stride`, `padding`, `dilation` are `(h, w)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub k_h: usize,
    pub k_w: usize,
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    /// Used by max pooling only (avg pooling requires `(1, 1)`).
    pub dilation: (usize, usize),
    pub ceil_mode: bool,
    /// Avg only: count padded positions in the divisor.
    pub count_include_pad: bool,
    /// Avg only: fixed divisor.
    pub divisor_override: Option<usize>,
}

impl Pool2dParams {
    /// Simple constructor: no padding, dilation 1, floor mode, count_include_pad = true.
    pub fn new(
        batch: usize,
        channels: usize,
        in_hw: (usize, usize),
        k: (usize, usize),
        stride: (usize, usize),
    ) -> Self {
        Pool2dParams {
            batch,
            channels,
            in_h: in_hw.0,
            in_w: in_hw.1,
            k_h: k.0,
            k_w: k.1,
            stride,
            padding: (0, 0),
            dilation: (1, 1),
            ceil_mode: false,
            count_include_pad: true,
            divisor_override: None,
        }
    }

    /// Output `(h, w)` or `None` if invalid (zero sizes, padding above half the
    /// kernel, window larger than the padded input, zero divisor override).
    pub fn out_hw(&self) -> Option<(usize, usize)> {
        if self.divisor_override == Some(0) {
            return None;
        }
        let oh = pool_out(
            self.in_h,
            self.k_h,
            self.stride.0,
            self.padding.0,
            self.dilation.0,
            self.ceil_mode,
        )?;
        let ow = pool_out(
            self.in_w,
            self.k_w,
            self.stride.1,
            self.padding.1,
            self.dilation.1,
            self.ceil_mode,
        )?;
        Some((oh, ow))
    }
}

fn pool_out(inp: usize, k: usize, s: usize, p: usize, d: usize, ceil: bool) -> Option<usize> {
    if inp == 0 || k == 0 || s == 0 || d == 0 || p > k / 2 {
        return None;
    }
    let eff = d * (k - 1) + 1;
    let padded = inp + 2 * p;
    if padded < eff {
        return None;
    }
    let num = padded - eff;
    let mut out = if ceil { num.div_ceil(s) } else { num / s } + 1;
    // The last window must start inside the input or the left padding.
    if ceil && (out - 1) * s >= inp + p {
        out -= 1;
    }
    Some(out)
}

fn check(p: &Pool2dParams, input: &[f32], output: &[f32]) -> Result<(usize, usize), LinalgError> {
    let (oh, ow) = p
        .out_hw()
        .ok_or_else(|| LinalgError(format!("invalid pool2d parameters {p:?}")))?;
    if input.len() < p.batch * p.channels * p.in_h * p.in_w {
        return Err(LinalgError("pool2d: input too short".into()));
    }
    if output.len() < p.batch * p.channels * oh * ow {
        return Err(LinalgError("pool2d: output too short".into()));
    }
    Ok((oh, ow))
}

fn for_planes(
    p: &Pool2dParams,
    oh: usize,
    ow: usize,
    output: &mut [f32],
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let planes = p.batch * p.channels;
    let op = SyncPtr(output.as_mut_ptr());
    let work = planes * oh * ow * p.k_h * p.k_w;
    let run = |pl: usize| {
        // SAFETY: each plane index is visited by exactly one task and planes are
        // disjoint ranges of `output`, whose length was checked.
        let out = unsafe { std::slice::from_raw_parts_mut(op.get().add(pl * oh * ow), oh * ow) };
        f(pl, out);
    };
    if num_threads() > 1 && work > 100_000 {
        parallel_for(planes, run);
    } else {
        (0..planes).for_each(run);
    }
}

/// Max pooling. NaN inputs propagate; windows entirely in padding give `-inf`.
pub fn max_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) -> Result<(), LinalgError> {
    let (oh, ow) = check(p, input, output)?;
    let (h, w) = (p.in_h, p.in_w);
    for_planes(p, oh, ow, output, |pl, out| {
        let x = &input[pl * h * w..(pl + 1) * h * w];
        for oy in 0..oh {
            // Valid ky range for this output row.
            let y0 = (oy * p.stride.0) as isize - p.padding.0 as isize;
            for ox in 0..ow {
                let x0 = (ox * p.stride.1) as isize - p.padding.1 as isize;
                let mut m = f32::NEG_INFINITY;
                for ky in 0..p.k_h {
                    let iy = y0 + (ky * p.dilation.0) as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let row = &x[iy as usize * w..(iy as usize + 1) * w];
                    for kx in 0..p.k_w {
                        let ix = x0 + (kx * p.dilation.1) as isize;
                        if ix < 0 || ix >= w as isize {
                            continue;
                        }
                        let v = row[ix as usize];
                        if v > m || v.is_nan() {
                            m = v;
                        }
                    }
                }
                out[oy * ow + ox] = m;
            }
        }
    });
    Ok(())
}

/// Average pooling (`dilation` must be `(1, 1)`).
pub fn avg_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) -> Result<(), LinalgError> {
    if p.dilation != (1, 1) {
        return Err(LinalgError("avg_pool2d: dilation must be 1".into()));
    }
    let (oh, ow) = check(p, input, output)?;
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let (ph, pw) = (p.padding.0 as isize, p.padding.1 as isize);
    for_planes(p, oh, ow, output, |pl, out| {
        let x = &input[pl * p.in_h * p.in_w..(pl + 1) * p.in_h * p.in_w];
        for oy in 0..oh {
            let hs = oy as isize * p.stride.0 as isize - ph;
            let he = (hs + p.k_h as isize).min(h + ph);
            for ox in 0..ow {
                let ws = ox as isize * p.stride.1 as isize - pw;
                let we = (ws + p.k_w as isize).min(w + pw);
                let pool_size = (he - hs) * (we - ws);
                let (hs, ws, he, we) = (hs.max(0), ws.max(0), he.min(h), we.min(w));
                if hs >= he || ws >= we {
                    out[oy * ow + ox] = 0.0;
                    continue;
                }
                let mut s = 0.0f32;
                for iy in hs..he {
                    let row = &x[iy as usize * p.in_w..];
                    s += row[ws as usize..we as usize].iter().sum::<f32>();
                }
                let div = match p.divisor_override {
                    Some(d) => d as f32,
                    None if p.count_include_pad => pool_size as f32,
                    None => ((he - hs) * (we - ws)) as f32,
                };
                out[oy * ow + ox] = s / div;
            }
        }
    });
    Ok(())
}
