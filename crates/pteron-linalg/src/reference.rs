//! Naive, obviously-correct reference implementations used as test oracles.
//! Accumulation is done in `f64`.

use crate::pool2d::Pool2dParams;
use crate::{Activation, Bias, Conv2dParams, ConvTranspose2dParams, GemmArgs};

fn a_at(a: &[f32], lda: usize, trans: bool, i: usize, p: usize) -> f32 {
    if trans {
        a[p * lda + i]
    } else {
        a[i * lda + p]
    }
}

/// Reference [`crate::sgemm`].
pub fn sgemm(args: GemmArgs<'_>) {
    sgemm_batched(1, 0, 0, 0, args)
}

/// Reference [`crate::sgemm_batched`].
pub fn sgemm_batched(
    batch: usize,
    stride_a: usize,
    stride_b: usize,
    stride_c: usize,
    args: GemmArgs<'_>,
) {
    let GemmArgs {
        m,
        n,
        k,
        a,
        lda,
        a_trans,
        b,
        ldb,
        b_trans,
        c,
        ldc,
        beta,
        alpha,
        bias,
        act,
    } = args;
    for t in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = a_at(&a[t * stride_a..], lda, a_trans, i, p) as f64;
                    let bv = a_at(&b[t * stride_b..], ldb, !b_trans, j, p) as f64;
                    s += av * bv;
                }
                let cidx = t * stride_c + i * ldc + j;
                let mut v = alpha as f64 * s;
                if beta != 0.0 {
                    v += beta as f64 * c[cidx] as f64;
                }
                v += match bias {
                    Bias::None => 0.0,
                    Bias::PerColumn(bc) => bc[j] as f64,
                    Bias::PerRow(br) => br[i] as f64,
                };
                c[cidx] = act.apply(v as f32);
            }
        }
    }
}

/// Reference [`crate::sgemm_packed`] taking the unpacked B (`k×n`, `b_trans` as in
/// [`crate::PackedB::new`]).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(
    m: usize,
    a: &[f32],
    lda: usize,
    a_trans: bool,
    k: usize,
    n: usize,
    b: &[f32],
    ldb: usize,
    b_trans: bool,
    c: &mut [f32],
    ldc: usize,
    bias: Bias<'_>,
    act: Activation,
) {
    sgemm(GemmArgs {
        m,
        n,
        k,
        a,
        lda,
        a_trans,
        b,
        ldb,
        b_trans,
        c,
        ldc,
        beta: 0.0,
        alpha: 1.0,
        bias,
        act,
    })
}

/// Reference 2-D convolution (NCHW, OIHW). Panics on invalid parameters.
pub fn conv2d(
    p: &Conv2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    act: Activation,
    output: &mut [f32],
) {
    let (oh, ow) = p.out_hw().expect("invalid conv params");
    let ig = p.in_c / p.groups;
    let og = p.out_c / p.groups;
    for b in 0..p.batch {
        for oc in 0..p.out_c {
            let g = oc / og;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = bias.map_or(0.0, |bv| bv[oc] as f64);
                    for ci in 0..ig {
                        let c = g * ig + ci;
                        for ky in 0..p.k_h {
                            for kx in 0..p.k_w {
                                let iy = (oy * p.stride.0 + ky * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= p.in_h as isize
                                    || ix >= p.in_w as isize
                                {
                                    continue;
                                }
                                let xv = input[((b * p.in_c + c) * p.in_h + iy as usize) * p.in_w
                                    + ix as usize];
                                let wv = weight[((oc * ig + ci) * p.k_h + ky) * p.k_w + kx];
                                s += xv as f64 * wv as f64;
                            }
                        }
                    }
                    output[((b * p.out_c + oc) * oh + oy) * ow + ox] = act.apply(s as f32);
                }
            }
        }
    }
}

/// Reference transposed convolution (PyTorch semantics). Panics on invalid parameters.
pub fn conv_transpose2d(
    p: &ConvTranspose2dParams,
    input: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    output: &mut [f32],
) {
    let (oh, ow) = p.out_hw().expect("invalid conv_transpose params");
    let ig = p.in_c / p.groups;
    let og = p.out_c / p.groups;
    let mut acc = vec![0.0f64; p.batch * p.out_c * oh * ow];
    for b in 0..p.batch {
        for ci in 0..p.in_c {
            let g = ci / ig;
            for iy in 0..p.in_h {
                for ix in 0..p.in_w {
                    let xv = input[((b * p.in_c + ci) * p.in_h + iy) * p.in_w + ix] as f64;
                    for o in 0..og {
                        let oc = g * og + o;
                        for ky in 0..p.k_h {
                            for kx in 0..p.k_w {
                                let oy = (iy * p.stride.0 + ky * p.dilation.0) as isize
                                    - p.padding.0 as isize;
                                let ox = (ix * p.stride.1 + kx * p.dilation.1) as isize
                                    - p.padding.1 as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let wv = weight[((ci * og + o) * p.k_h + ky) * p.k_w + kx] as f64;
                                acc[((b * p.out_c + oc) * oh + oy as usize) * ow + ox as usize] +=
                                    xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    for b in 0..p.batch {
        for oc in 0..p.out_c {
            for i in 0..oh * ow {
                let idx = (b * p.out_c + oc) * oh * ow + i;
                output[idx] = (acc[idx] + bias.map_or(0.0, |bv| bv[oc] as f64)) as f32;
            }
        }
    }
}

/// Reference max pooling (NaN propagates). Panics on invalid parameters.
pub fn max_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) {
    let (oh, ow) = p.out_hw().expect("invalid pool params");
    for pl in 0..p.batch * p.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut m = f32::NEG_INFINITY;
                for ky in 0..p.k_h {
                    for kx in 0..p.k_w {
                        let iy =
                            (oy * p.stride.0 + ky * p.dilation.0) as isize - p.padding.0 as isize;
                        let ix =
                            (ox * p.stride.1 + kx * p.dilation.1) as isize - p.padding.1 as isize;
                        if iy < 0 || ix < 0 || iy >= p.in_h as isize || ix >= p.in_w as isize {
                            continue;
                        }
                        let v = input[(pl * p.in_h + iy as usize) * p.in_w + ix as usize];
                        if v > m || v.is_nan() {
                            m = v;
                        }
                    }
                }
                output[(pl * oh + oy) * ow + ox] = m;
            }
        }
    }
}

/// Reference average pooling (PyTorch `avg_pool2d` semantics). Panics on invalid parameters.
pub fn avg_pool2d(p: &Pool2dParams, input: &[f32], output: &mut [f32]) {
    let (oh, ow) = p.out_hw().expect("invalid pool params");
    let (h, w) = (p.in_h as isize, p.in_w as isize);
    let (ph, pw) = (p.padding.0 as isize, p.padding.1 as isize);
    for pl in 0..p.batch * p.channels {
        for oy in 0..oh {
            for ox in 0..ow {
                let hs = oy as isize * p.stride.0 as isize - ph;
                let ws = ox as isize * p.stride.1 as isize - pw;
                let he = (hs + p.k_h as isize).min(h + ph);
                let we = (ws + p.k_w as isize).min(w + pw);
                let pool_size = (he - hs) * (we - ws);
                let (hs, ws, he, we) = (hs.max(0), ws.max(0), he.min(h), we.min(w));
                let out = &mut output[(pl * oh + oy) * ow + ox];
                if hs >= he || ws >= we {
                    *out = 0.0;
                    continue;
                }
                let mut s = 0.0f64;
                for iy in hs..he {
                    for ix in ws..we {
                        s += input[(pl * p.in_h + iy as usize) * p.in_w + ix as usize] as f64;
                    }
                }
                let div = match p.divisor_override {
                    Some(d) => d as f64,
                    None if p.count_include_pad => pool_size as f64,
                    None => ((he - hs) * (we - ws)) as f64,
                };
                *out = (s / div) as f32;
            }
        }
    }
}

/// Reference `exp`.
pub fn vexp(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = (*v as f64).exp() as f32);
}

/// Reference logistic sigmoid.
pub fn vsigmoid(x: &mut [f32]) {
    x.iter_mut()
        .for_each(|v| *v = (1.0 / (1.0 + (-(*v as f64)).exp())) as f32);
}

/// Reference `tanh`.
pub fn vtanh(x: &mut [f32]) {
    x.iter_mut().for_each(|v| *v = (*v as f64).tanh() as f32);
}

/// Reference erf (Abramowitz–Stegun 7.1.26 is too coarse; use a series/continued
/// fraction in f64 good to ~1e-15).
pub fn erf64(x: f64) -> f64 {
    let ax = x.abs();
    let r = if ax < 2.5 {
        // Maclaurin series.
        let mut term = ax;
        let mut sum = ax;
        let x2 = ax * ax;
        let mut n = 0.0;
        loop {
            n += 1.0;
            term *= -x2 / n;
            let t = term / (2.0 * n + 1.0);
            sum += t;
            if t.abs() <= 1e-17 * sum.abs() || n > 200.0 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // Continued fraction for erfc.
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        1.0 - (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f)
    };
    if x < 0.0 {
        -r
    } else {
        r
    }
}

/// Reference exact GELU: `x/2 * (1 + erf(x/√2))`.
pub fn vgelu(x: &mut [f32]) {
    x.iter_mut().for_each(|v| {
        let xv = *v as f64;
        *v = (0.5 * xv * (1.0 + erf64(xv / std::f64::consts::SQRT_2))) as f32
    });
}

/// Reference global average pooling (`f64` accumulation).
pub fn global_avg_pool_nchw(input: &[f32], n_c: usize, hw: usize, out: &mut [f32]) {
    for c in 0..n_c {
        let s: f64 = input[c * hw..(c + 1) * hw].iter().map(|&v| v as f64).sum();
        out[c] = (s / hw as f64) as f32;
    }
}

/// Reference clamp: `min(max(x, lo), hi)` with NaN inputs kept (PyTorch `clamp`).
pub fn clamp(x: f32, lo: f32, hi: f32) -> f32 {
    if x.is_nan() {
        x
    } else if x > hi || lo > hi {
        hi
    } else if x < lo {
        lo
    } else {
        x
    }
}

/// Naive int8 GEMM with fp32 requantization: `c[i][j] = requantize(bias[j] +
/// Σ_k (a[i][k] - izp) · w[j][k], scale[j])` (`w` is `n × k`, zero point 0;
/// `scales` has `n` entries or one).
#[allow(clippy::too_many_arguments)]
pub fn qgemm(
    m: usize,
    n: usize,
    k: usize,
    a: &[u8],
    lda: usize,
    a_unsigned: bool,
    izp: i32,
    w: &[i8],
    bias: Option<&[i32]>,
    scales: &[f32],
    q: crate::QOut,
    c: &mut [u8],
    ldc: usize,
) {
    for i in 0..m {
        for j in 0..n {
            let mut acc: i64 = bias.map_or(0, |b| b[j] as i64);
            for kk in 0..k {
                let x = crate::qgemm::qval(a[i * lda + kk], a_unsigned) - izp;
                acc += x as i64 * w[j * k + kk] as i64;
            }
            let s = if scales.len() == 1 {
                scales[0]
            } else {
                scales[j]
            };
            c[i * ldc + j] = crate::requantize(acc as i32, s, q);
        }
    }
}

/// Naive NHWC int8 convolution: filter `[cout][kh][kw][in_c / groups]`, output
/// `[batch][out_h][out_w][cout]`; out-of-bounds taps contribute nothing.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d_nhwc(
    g: &crate::QConvGeom,
    groups: usize,
    cout: usize,
    input: &[u8],
    a_unsigned: bool,
    izp: i32,
    w: &[i8],
    bias: Option<&[i32]>,
    scales: &[f32],
    q: crate::QOut,
    out: &mut [u8],
) {
    let cg = g.in_c / groups;
    let og = cout / groups;
    for n in 0..g.batch {
        for oy in 0..g.out_h {
            for ox in 0..g.out_w {
                for co in 0..cout {
                    let gi = co / og;
                    let mut acc: i64 = bias.map_or(0, |b| b[co] as i64);
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let iy = (oy * g.sh + ky * g.dh) as isize - g.pad_top as isize;
                            let ix = (ox * g.sw + kx * g.dw) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy as usize >= g.in_h || ix as usize >= g.in_w {
                                continue;
                            }
                            for ci in 0..cg {
                                let xi = ((n * g.in_h + iy as usize) * g.in_w + ix as usize)
                                    * g.in_c
                                    + gi * cg
                                    + ci;
                                let x = crate::qgemm::qval(input[xi], a_unsigned) - izp;
                                let wv = w[((co * g.kh + ky) * g.kw + kx) * cg + ci];
                                acc += x as i64 * wv as i64;
                            }
                        }
                    }
                    let s = if scales.len() == 1 {
                        scales[0]
                    } else {
                        scales[co]
                    };
                    out[((n * g.out_h + oy) * g.out_w + ox) * cout + co] =
                        crate::requantize(acc as i32, s, q);
                }
            }
        }
    }
}

/// Naive NHWC int8 depthwise convolution (multiplier 1), filter `[kh][kw][c]`.
#[allow(clippy::too_many_arguments)]
pub fn qdwconv_nhwc(
    g: &crate::QConvGeom,
    input: &[u8],
    a_unsigned: bool,
    izp: i32,
    w: &[i8],
    bias: Option<&[i32]>,
    scales: &[f32],
    q: crate::QOut,
    out: &mut [u8],
) {
    let c = g.in_c;
    let mut wt = Vec::with_capacity(c * g.kh * g.kw);
    for co in 0..c {
        for t in 0..g.kh * g.kw {
            wt.push(w[t * c + co]);
        }
    }
    // A depthwise convolution is a grouped one with one channel per group.
    qconv2d_nhwc(g, c, c, input, a_unsigned, izp, &wt, bias, scales, q, out);
}

/// Naive quantized add (XNNPACK `qs8_vadd` fixed-point formula), in i64.
pub fn qadd(a: &[u8], b: &[u8], p: &crate::QAddParams, out: &mut [u8]) {
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        let xa = crate::qgemm::qval(x, p.a_unsigned) as i64;
        let xb = crate::qgemm::qval(y, p.b_unsigned) as i64;
        let acc = p.bias as i64 + xa * p.a_mul as i64 + xb * p.b_mul as i64;
        let v = (acc >> p.shift) + p.out.zero_point as i64;
        *o = v.clamp(p.out.min as i64, p.out.max as i64) as u8;
    }
}

/// Reference NHWC convolution (`groups == 1`, weights `[out_c, kh, kw, in_c]`),
/// output `[batch, oh, ow, out_c]` clamped to `[lo, hi]`; taps outside the input
/// read zero.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_nhwc(
    p: &crate::nhwc::ConvNhwcParams,
    input: &[f32],
    (batch, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    (lo, hi): (f32, f32),
    output: &mut [f32],
) {
    let c = p.in_c;
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for co in 0..p.out_c {
                    let mut s = bias.map_or(0.0, |b| b[co] as f64);
                    for ky in 0..p.kh {
                        let iy =
                            (oy * p.stride.0 + ky * p.dilation.0) as isize - p.pad_top as isize;
                        if iy < 0 || iy >= h as isize {
                            continue;
                        }
                        for kx in 0..p.kw {
                            let ix = (ox * p.stride.1 + kx * p.dilation.1) as isize
                                - p.pad_left as isize;
                            if ix < 0 || ix >= w as isize {
                                continue;
                            }
                            let i0 = ((n * h + iy as usize) * w + ix as usize) * c;
                            let w0 = ((co * p.kh + ky) * p.kw + kx) * c;
                            for ci in 0..c {
                                s += input[i0 + ci] as f64 * weight[w0 + ci] as f64;
                            }
                        }
                    }
                    output[((n * oh + oy) * ow + ox) * p.out_c + co] = clamp(s as f32, lo, hi);
                }
            }
        }
    }
}

/// Reference NHWC depthwise convolution (multiplier 1, weights `[kh*kw, c]`), output
/// clamped to `[lo, hi]`; taps in the padding are skipped.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_nhwc(
    input: &[f32],
    (batch, h, w, c): (usize, usize, usize, usize),
    win: &crate::nhwc::Window,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    (lo, hi): (f32, f32),
    output: &mut [f32],
) {
    let (sh, sw) = (win.stride.0.max(1), win.stride.1.max(1));
    let (dh, dw) = (win.dilation.0.max(1), win.dilation.1.max(1));
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut s = bias[ch] as f64;
                    for ky in 0..win.kh {
                        for kx in 0..win.kw {
                            let iy = (oy * sh + ky * dh) as isize - win.pad_top as isize;
                            let ix = (ox * sw + kx * dw) as isize - win.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let x = input[((n * h + iy as usize) * w + ix as usize) * c + ch];
                            s += x as f64 * weight[(ky * win.kw + kx) * c + ch] as f64;
                        }
                    }
                    output[((n * oh + oy) * ow + ox) * c + ch] = clamp(s as f32, lo, hi);
                }
            }
        }
    }
}

/// Reference NHWC max pooling: max over in-bounds taps (`-inf` if none, NaN if any
/// tap is NaN), clamped to `[lo, hi]`.
pub fn max_pool_nhwc(
    input: &[f32],
    (batch, h, w, c): (usize, usize, usize, usize),
    win: &crate::nhwc::Window,
    (oh, ow): (usize, usize),
    (lo, hi): (f32, f32),
    output: &mut [f32],
) {
    let (sh, sw) = (win.stride.0.max(1), win.stride.1.max(1));
    let (dh, dw) = (win.dilation.0.max(1), win.dilation.1.max(1));
    for n in 0..batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..c {
                    let mut m = f32::NEG_INFINITY;
                    for ky in 0..win.kh {
                        for kx in 0..win.kw {
                            let iy = (oy * sh + ky * dh) as isize - win.pad_top as isize;
                            let ix = (ox * sw + kx * dw) as isize - win.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let x = input[((n * h + iy as usize) * w + ix as usize) * c + ch];
                            if x.is_nan() || m.is_nan() {
                                m = f32::NAN;
                            } else if x > m {
                                m = x;
                            }
                        }
                    }
                    output[((n * oh + oy) * ow + ox) * c + ch] = clamp(m, lo, hi);
                }
            }
        }
    }
}

/// Naive quantization of `f32` values to bytes: `round_even(clamp(x · inv,
/// min - zp, max - zp)) + zp`, NaN to the zero point.
pub fn quantize_q8(src: &[f32], inv: f32, q: crate::QOut, dst: &mut [u8]) {
    for (d, &v) in dst.iter_mut().zip(src) {
        let t = (v as f64 * inv as f64) as f32;
        let r = if t.is_nan() {
            0
        } else {
            let lo = (q.min - q.zero_point) as f32;
            let hi = (q.max - q.zero_point) as f32;
            t.clamp(lo, hi).round_ties_even() as i32
        };
        *d = (r + q.zero_point) as u8;
    }
}
