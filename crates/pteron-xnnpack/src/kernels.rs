//! NHWC kernels that pteron-linalg does not provide directly (depthwise, pooling,
//! im2col, data movement, broadcasting elementwise). All slices were sized at init;
//! nothing here allocates.

use crate::graph::{BinOp, ConvParams, PoolParams, UnOp};
use crate::shape::Dims;
use pteron_linalg::{elementwise, vmath};
use std::sync::{Mutex, PoisonError};

/// im2col of one group for an NHWC input: rows (n, oy, ox), columns (ky, kx, ci).
#[allow(clippy::too_many_arguments)]
pub fn im2col(
    input: &[f32],
    (b, h, w, c): (usize, usize, usize, usize),
    p: &ConvParams,
    (oh, ow): (usize, usize),
    c0: usize,
    cg: usize,
    out: &mut [f32],
) {
    let (dh, dw) = (p.dh.max(1), p.dw.max(1));
    let (sh, sw) = (p.sh.max(1), p.sw.max(1));
    let k = p.kh * p.kw * cg;
    let mut row = 0;
    for n in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                let dst = &mut out[row * k..(row + 1) * k];
                let mut o = 0;
                for ky in 0..p.kh {
                    let iy = (oy * sh + ky * dh) as isize - p.pad_top as isize;
                    for kx in 0..p.kw {
                        let ix = (ox * sw + kx * dw) as isize - p.pad_left as isize;
                        let d = &mut dst[o..o + cg];
                        if iy < 0 || ix < 0 || iy as usize >= h || ix as usize >= w {
                            d.fill(0.0);
                        } else {
                            let s = ((n * h + iy as usize) * w + ix as usize) * c + c0;
                            d.copy_from_slice(&input[s..s + cg]);
                        }
                        o += cg;
                    }
                }
                row += 1;
            }
        }
    }
}

/// Most tasks one parallel kernel call splits its output into (the cells live on
/// the stack, so the split allocates nothing).
const MAX_TASKS: usize = 64;

/// Runs `f(first_row, rows)` over `rows` rows of `row_len` floats of `out`, split
/// into contiguous row ranges across `pteron_linalg::parallel_for`. Each task owns
/// a disjoint `&mut` sub-slice (behind an uncontended mutex: safe Rust, no
/// allocation). Small jobs (under `min_work` floats per task) run inline.
fn par_rows<F>(out: &mut [f32], rows: usize, row_len: usize, min_work: usize, f: F)
where
    F: Fn(usize, &mut [f32]) + Sync,
{
    let out = &mut out[..rows * row_len];
    let threads = pteron_linalg::num_threads().max(1);
    let by_work = (rows * row_len / min_work.max(1)).max(1);
    let tasks = rows.min(threads * 4).min(by_work).min(MAX_TASKS);
    if tasks <= 1 || row_len == 0 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(tasks);
    let tasks = rows.div_ceil(per);
    let mut chunks = out.chunks_mut(per * row_len);
    let cells: [Mutex<&mut [f32]>; MAX_TASKS] =
        std::array::from_fn(|_| Mutex::new(chunks.next().unwrap_or_default()));
    pteron_linalg::parallel_for(tasks, |t| {
        let mut guard = cells[t].lock().unwrap_or_else(PoisonError::into_inner);
        f(t * per, &mut guard);
    });
}

/// Depthwise convolution, NHWC; weights `[kh*kw, cout]`, `cout = cin * mult`.
#[allow(clippy::too_many_arguments)]
pub fn depthwise(
    input: &[f32],
    (b, h, w, cin): (usize, usize, usize, usize),
    p: &ConvParams,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    mult: usize,
    (lo, hi): (f32, f32),
    out: &mut [f32],
) {
    let cout = cin * mult;
    let (dh, dw) = (p.dh.max(1), p.dw.max(1));
    let (sh, sw) = (p.sh.max(1), p.sw.max(1));
    for n in 0..b {
        for oy in 0..oh {
            for ox in 0..ow {
                let o0 = ((n * oh + oy) * ow + ox) * cout;
                let acc = &mut out[o0..o0 + cout];
                acc.copy_from_slice(&bias[..cout]);
                for ky in 0..p.kh {
                    let iy = (oy * sh + ky * dh) as isize - p.pad_top as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    for kx in 0..p.kw {
                        let ix = (ox * sw + kx * dw) as isize - p.pad_left as isize;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        let i0 = ((n * h + iy as usize) * w + ix as usize) * cin;
                        let px = &input[i0..i0 + cin];
                        let wt = &weight[(ky * p.kw + kx) * cout..(ky * p.kw + kx + 1) * cout];
                        if mult == 1 {
                            for ((a, &x), &k) in acc.iter_mut().zip(px).zip(wt) {
                                *a += x * k;
                            }
                        } else {
                            for (c, (a, &k)) in acc.iter_mut().zip(wt).enumerate() {
                                *a += px[c / mult] * k;
                            }
                        }
                    }
                }
                clamp(acc, lo, hi);
            }
        }
    }
}

/// Clamps in place (no-op for an infinite range). NaN propagates.
pub fn clamp(x: &mut [f32], lo: f32, hi: f32) {
    if lo == f32::NEG_INFINITY && hi == f32::INFINITY {
        return;
    }
    // Selects, not conditional stores, so that the loop vectorizes (the branchy form
    // compiled to a scalar loop: 2 ns per element, e.g. 0.4 ms after each of
    // resnet18's 56x56x64 residual adds).
    for v in x {
        let t = if *v < lo { lo } else { *v };
        *v = if t > hi { hi } else { t };
    }
}

/// Max or average pooling, NHWC. Average divides by the number of in-bounds taps.
pub fn pool(
    input: &[f32],
    (b, h, w, c): (usize, usize, usize, usize),
    p: &PoolParams,
    (oh, ow): (usize, usize),
    max: bool,
    out: &mut [f32],
) {
    let (dh, dw) = (p.dh.max(1), p.dw.max(1));
    let (sh, sw) = (p.sh.max(1), p.sw.max(1));
    let row_len = ow * c;
    if b * oh == 0 || row_len == 0 {
        return;
    }
    // Output rows (n, oy) are independent: split them across the thread pool.
    par_rows(out, b * oh, row_len, 1 << 14, |r0, chunk| {
        for (ri, orow) in chunk.chunks_exact_mut(row_len).enumerate() {
            let (n, oy) = ((r0 + ri) / oh, (r0 + ri) % oh);
            for ox in 0..ow {
                let acc = &mut orow[ox * c..(ox + 1) * c];
                acc.fill(if max { f32::NEG_INFINITY } else { 0.0 });
                let mut count = 0usize;
                for ky in 0..p.kh {
                    let iy = (oy * sh + ky * dh) as isize - p.pad_top as isize;
                    if iy < 0 || iy as usize >= h {
                        continue;
                    }
                    for kx in 0..p.kw {
                        let ix = (ox * sw + kx * dw) as isize - p.pad_left as isize;
                        if ix < 0 || ix as usize >= w {
                            continue;
                        }
                        count += 1;
                        let i0 = ((n * h + iy as usize) * w + ix as usize) * c;
                        let px = &input[i0..i0 + c];
                        if max {
                            for (a, &x) in acc.iter_mut().zip(px) {
                                // NaN propagates.
                                if x > *a || x.is_nan() {
                                    *a = x;
                                }
                            }
                        } else {
                            for (a, &x) in acc.iter_mut().zip(px) {
                                *a += x;
                            }
                        }
                    }
                }
                if !max {
                    let inv = 1.0 / count.max(1) as f32;
                    for a in acc.iter_mut() {
                        *a *= inv;
                    }
                }
            }
        }
    });
}

/// Global average pooling, NHWC -> N11C.
pub fn global_avg(input: &[f32], (b, h, w, c): (usize, usize, usize, usize), out: &mut [f32]) {
    let inv = 1.0 / (h * w).max(1) as f32;
    for n in 0..b {
        let acc = &mut out[n * c..(n + 1) * c];
        acc.fill(0.0);
        for px in input[n * h * w * c..(n + 1) * h * w * c].chunks_exact(c.max(1)) {
            for (a, &x) in acc.iter_mut().zip(px) {
                *a += x;
            }
        }
        for a in acc.iter_mut() {
            *a *= inv;
        }
    }
}

fn strides(d: &Dims) -> [usize; 8] {
    let mut s = [0usize; 8];
    let mut acc = 1;
    for i in (0..d.rank()).rev() {
        s[i] = acc;
        acc *= d.get(i);
    }
    s
}

/// `(batch, rows, cols)` when a transpose is a batched matrix transpose
/// (`out[b][c][r] = in[b][r][c]`) once size-1 axes are dropped and input axes that
/// stay adjacent and in order are merged: NCHW ↔ NHWC and 2-D transposes.
fn as_matrix_transpose(id: &Dims, perm: &[usize]) -> Option<(usize, usize, usize)> {
    // Input axes of size > 1 renumbered in order (`at`); the output's axes in that
    // numbering, where runs of consecutive ones merge into `(first, size)` groups.
    let mut at = [0usize; 8];
    let mut k = 0;
    for (a, slot) in at.iter_mut().enumerate().take(id.rank()) {
        *slot = k;
        k += usize::from(id.get(a) != 1);
    }
    let mut groups: [(usize, usize); 8] = [(0, 1); 8];
    let mut n = 0;
    let mut last = usize::MAX;
    for &p in perm {
        let (a, d) = (at[p], id.get(p));
        if d == 1 {
            continue;
        }
        if n > 0 && a == last.wrapping_add(1) {
            groups[n - 1].1 *= d;
        } else {
            groups[n] = (a, d);
            n += 1;
        }
        last = a;
    }
    // The groups' input order: a matrix transpose swaps the last two of them.
    match &groups[..n] {
        [] | [_] => Some((1, 1, id.numel())),
        [(a, c), (b, r)] if a > b => Some((1, *r, *c)),
        [(z, bt), (a, c), (b, r)] if z < b && a > b => Some((*bt, *r, *c)),
        _ => None,
    }
}

/// Generic N-d transpose: `out[i] = in[perm-mapped index]`.
pub fn transpose(input: &[f32], id: &Dims, perm: &[usize], out: &mut [f32], od: &Dims) {
    if let Some((batch, rows, cols)) = as_matrix_transpose(id, perm) {
        pteron_linalg::transpose_f32(input, batch, rows, cols, out);
        return;
    }
    let is = strides(id);
    let r = od.rank();
    let mut st = [0usize; 8];
    for k in 0..r {
        st[k] = is[perm[k]];
    }
    let numel = od.numel();
    if numel == 0 {
        return;
    }
    if r == 0 {
        out[0] = input[0];
        return;
    }
    // The last two output dimensions are copied as one 2-D block (an NCHW → NHWC
    // input transpose has only 3 channels in the last one).
    let (rows, row_st, lead) = if r >= 2 {
        (od.get(r - 2), st[r - 2], r - 2)
    } else {
        (1, 0, 0)
    };
    let inner = od.get(r - 1);
    let inner_st = st[r - 1];
    let block = rows * inner;
    let mut idx = [0usize; 8];
    let mut o = 0;
    while o < numel {
        let mut base = 0;
        for k in 0..lead {
            base += idx[k] * st[k];
        }
        for (i, orow) in out[o..o + block].chunks_exact_mut(inner).enumerate() {
            let b = base + i * row_st;
            for (j, v) in orow.iter_mut().enumerate() {
                *v = input[b + j * inner_st];
            }
        }
        o += block;
        // increment the leading index
        let mut k = lead;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < od.get(k) {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Constant padding, N-d.
pub fn pad(input: &[f32], id: &Dims, pre: &[usize], value: f32, out: &mut [f32], od: &Dims) {
    let numel = od.numel();
    out[..numel].fill(value);
    let r = id.rank();
    if id.numel() == 0 {
        return;
    }
    if r == 0 {
        out[0] = input[0];
        return;
    }
    let os = strides(od);
    let inner = id.get(r - 1);
    let mut idx = [0usize; 8];
    let mut i = 0;
    let total = id.numel();
    while i < total {
        let mut o = pre[r - 1];
        for k in 0..r - 1 {
            o += (idx[k] + pre[k]) * os[k];
        }
        out[o..o + inner].copy_from_slice(&input[i..i + inner]);
        i += inner;
        let mut k = r - 1;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < id.get(k) {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Static slice, N-d.
pub fn slice(input: &[f32], id: &Dims, offsets: &[usize], out: &mut [f32], od: &Dims) {
    let r = od.rank();
    let numel = od.numel();
    if numel == 0 {
        return;
    }
    if r == 0 {
        out[0] = input[0];
        return;
    }
    let is = strides(id);
    let inner = od.get(r - 1);
    let mut idx = [0usize; 8];
    let mut o = 0;
    while o < numel {
        let mut base = offsets[r - 1];
        for k in 0..r - 1 {
            base += (idx[k] + offsets[k]) * is[k];
        }
        out[o..o + inner].copy_from_slice(&input[base..base + inner]);
        o += inner;
        let mut k = r - 1;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < od.get(k) {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Bilinear resize NHWC. `align_corners` or half-pixel centers (XNNPACK default),
/// `tf_legacy`: asymmetric (no half-pixel offset).
#[allow(clippy::too_many_arguments)]
pub fn resize_bilinear(
    input: &[f32],
    (b, h, w, c): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    align_corners: bool,
    tf_legacy: bool,
    out: &mut [f32],
) {
    let coord = |o: usize, insz: usize, outsz: usize| -> (usize, usize, f32) {
        let (scale, src) = if align_corners {
            let s = if outsz > 1 {
                (insz - 1) as f32 / (outsz - 1) as f32
            } else {
                0.0
            };
            (s, o as f32 * s)
        } else if tf_legacy {
            let s = insz as f32 / outsz as f32;
            (s, o as f32 * s)
        } else {
            let s = insz as f32 / outsz as f32;
            (s, ((o as f32 + 0.5) * s - 0.5).max(0.0))
        };
        let _ = scale;
        let i0 = (src.floor() as usize).min(insz - 1);
        let i1 = (i0 + 1).min(insz - 1);
        let a = (src - i0 as f32).clamp(0.0, 1.0);
        (i0, i1, a)
    };
    if h == 0 || w == 0 {
        return;
    }
    for n in 0..b {
        for oy in 0..oh {
            let (y0, y1, ay) = coord(oy, h, oh);
            for ox in 0..ow {
                let (x0, x1, ax) = coord(ox, w, ow);
                let o0 = ((n * oh + oy) * ow + ox) * c;
                let p = |y: usize, x: usize| ((n * h + y) * w + x) * c;
                let (tl, tr, bl, br) = (p(y0, x0), p(y0, x1), p(y1, x0), p(y1, x1));
                for k in 0..c {
                    let t = input[tl + k] + (input[tr + k] - input[tl + k]) * ax;
                    let bo = input[bl + k] + (input[br + k] - input[bl + k]) * ax;
                    out[o0 + k] = t + (bo - t) * ay;
                }
            }
        }
    }
}

/// Softmax over the last dimension.
pub fn softmax(input: &[f32], rows: usize, n: usize, out: &mut [f32]) {
    if n == 0 {
        return;
    }
    for r in 0..rows {
        let x = &input[r * n..(r + 1) * n];
        let y = &mut out[r * n..(r + 1) * n];
        let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        for (o, &v) in y.iter_mut().zip(x) {
            *o = v - m;
        }
        vmath::vexp(y);
        let s: f32 = y.iter().sum();
        let inv = 1.0 / s;
        for o in y.iter_mut() {
            *o *= inv;
        }
    }
}

#[inline(always)]
fn bin(op: BinOp, a: f32, b: f32) -> f32 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Min => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.min(b)
            }
        }
        BinOp::Max => {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        }
        BinOp::Prelu => {
            if a < 0.0 {
                a * b
            } else {
                a
            }
        }
    }
}

fn bin_slices(op: BinOp, a: &[f32], b: &[f32], out: &mut [f32]) {
    macro_rules! go {
        ($f:expr) => {
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o = $f(x, y);
            }
        };
    }
    // The four arithmetic ops go to linalg's vector kernels (bit-identical to the
    // scalar expressions on every tier).
    match op {
        BinOp::Add => elementwise::add(a, b, out),
        BinOp::Sub => elementwise::sub(a, b, out),
        BinOp::Mul => elementwise::mul(a, b, out),
        BinOp::Div => elementwise::div(a, b, out),
        _ => go!(|x, y| bin(op, x, y)),
    }
}

/// Broadcasting binary op (shapes aligned right).
pub fn binary(op: BinOp, a: &[f32], ad: &Dims, b: &[f32], bd: &Dims, out: &mut [f32], od: &Dims) {
    let numel = od.numel();
    if numel == 0 {
        return;
    }
    let out = &mut out[..numel];
    if ad == od && bd == od {
        bin_slices(op, &a[..numel], &b[..numel], out);
        return;
    }
    if bd.numel() == 1 && ad.numel() == numel {
        let y = b[0];
        for (o, &x) in out.iter_mut().zip(a) {
            *o = bin(op, x, y);
        }
        return;
    }
    if ad.numel() == 1 && bd.numel() == numel {
        let x = a[0];
        for (o, &y) in out.iter_mut().zip(b) {
            *o = bin(op, x, y);
        }
        return;
    }
    let r = od.rank();
    let stride_of = |d: &Dims| {
        let mut s = [0usize; 8];
        let off = r - d.rank();
        let mut acc = 1;
        for i in (0..d.rank()).rev() {
            s[i + off] = if d.get(i) == 1 { 0 } else { acc };
            acc *= d.get(i);
        }
        s
    };
    let (sa, sb) = (stride_of(ad), stride_of(bd));
    let inner = od.get(r - 1);
    let (ia, ib) = (sa[r - 1], sb[r - 1]);
    let mut idx = [0usize; 8];
    let mut o = 0;
    while o < numel {
        let (mut pa, mut pb) = (0, 0);
        for k in 0..r - 1 {
            pa += idx[k] * sa[k];
            pb += idx[k] * sb[k];
        }
        let dst = &mut out[o..o + inner];
        if ia == 1 && ib == 1 {
            bin_slices(op, &a[pa..pa + inner], &b[pb..pb + inner], dst);
        } else {
            for (j, v) in dst.iter_mut().enumerate() {
                *v = bin(op, a[pa + j * ia], b[pb + j * ib]);
            }
        }
        o += inner;
        let mut k = r - 1;
        while k > 0 {
            k -= 1;
            idx[k] += 1;
            if idx[k] < od.get(k) {
                break;
            }
            idx[k] = 0;
        }
    }
}

/// Elementwise unary op, in place on `x` (already a copy of the input).
pub fn unary(op: UnOp, x: &mut [f32], lo: f32, hi: f32) {
    match op {
        UnOp::Clamp | UnOp::Copy | UnOp::Convert => {}
        UnOp::Sigmoid => vmath::vsigmoid(x),
        UnOp::Tanh => vmath::vtanh(x),
        UnOp::Gelu => vmath::vgelu(x),
        UnOp::Exp => vmath::vexp(x),
        UnOp::Hardswish => x
            .iter_mut()
            .for_each(|v| *v = *v * ((*v + 3.0).clamp(0.0, 6.0) / 6.0)),
        UnOp::Floor => x.iter_mut().for_each(|v| *v = v.floor()),
        UnOp::Ceil => x.iter_mut().for_each(|v| *v = v.ceil()),
        UnOp::Sqrt => x.iter_mut().for_each(|v| *v = v.sqrt()),
        UnOp::Rsqrt => x.iter_mut().for_each(|v| *v = 1.0 / v.sqrt()),
        UnOp::Square => x.iter_mut().for_each(|v| *v *= *v),
        UnOp::Neg => x.iter_mut().for_each(|v| *v = -*v),
        UnOp::Abs => x.iter_mut().for_each(|v| *v = v.abs()),
        UnOp::Log => x.iter_mut().for_each(|v| *v = v.ln()),
        UnOp::Sin => x.iter_mut().for_each(|v| *v = v.sin()),
        UnOp::Cos => x.iter_mut().for_each(|v| *v = v.cos()),
        UnOp::LeakyRelu(s) => x.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v *= s
            }
        }),
        UnOp::Elu(alpha) => x.iter_mut().for_each(|v| {
            if *v < 0.0 {
                *v = alpha * (v.exp() - 1.0)
            }
        }),
    }
    clamp(x, lo, hi);
}

/// Adds a transposed convolution's GEMM columns onto its NHWC output (col2im).
/// `cols` holds, per input pixel of `(batch, h, w)`, `kh * kw * group_out` values ordered
/// `(ky, kx, co)`; tap `(ky, kx)` of input `(iy, ix)` lands on output
/// `(iy * sh + ky * dh - pad_top, ix * sw + kx * dw - pad_left)`, channels from `c0`.
pub(crate) fn col2im_add(
    cols: &[f32],
    (b, h, w): (usize, usize, usize),
    p: &ConvParams,
    (oh, ow): (usize, usize),
    c0: usize,
    out: &mut [f32],
) {
    let go = p.group_out;
    let cout = p.groups * go;
    let per_px = p.kh * p.kw * go;
    if per_px == 0 {
        return;
    }
    let tap = |i: usize, k: usize, s: usize, d: usize, pad: usize, lim: usize| {
        (i * s + k * d).checked_sub(pad).filter(|&o| o < lim)
    };
    for (px, row) in cols.chunks_exact(per_px).take(b * h * w).enumerate() {
        let (n, iy, ix) = (px / (h * w), px / w % h, px % w);
        for ky in 0..p.kh {
            let Some(oy) = tap(iy, ky, p.sh, p.dh, p.pad_top, oh) else {
                continue;
            };
            for kx in 0..p.kw {
                let Some(ox) = tap(ix, kx, p.sw, p.dw, p.pad_left, ow) else {
                    continue;
                };
                let src = &row[(ky * p.kw + kx) * go..][..go];
                let dst = &mut out[((n * oh + oy) * ow + ox) * cout + c0..][..go];
                for (d, &v) in dst.iter_mut().zip(src) {
                    *d += v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn lcg(seed: &mut u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn out_size(i: usize, k: usize, s: usize, d: usize, pa: usize, pb: usize) -> usize {
        (i + pa + pb - (k - 1) * d - 1) / s + 1
    }

    /// The previous path: im2col per channel (one group each) + a dot product with
    /// the channel's taps, then bias and clamp.
    #[allow(clippy::too_many_arguments)]
    fn reference(
        input: &[f32],
        dims: (usize, usize, usize, usize),
        p: &ConvParams,
        (oh, ow): (usize, usize),
        weight: &[f32],
        bias: &[f32],
        (lo, hi): (f32, f32),
        out: &mut [f32],
    ) {
        let c = dims.3;
        let m = dims.0 * oh * ow;
        let k = p.kh * p.kw;
        let mut col = vec![0.0f32; m * k];
        for ch in 0..c {
            im2col(input, dims, p, (oh, ow), ch, 1, &mut col);
            for r in 0..m {
                let mut acc = bias[ch];
                for t in 0..k {
                    acc += col[r * k + t] * weight[t * c + ch];
                }
                out[r * c + ch] = acc;
            }
        }
        clamp(&mut out[..m * c], lo, hi);
    }

    #[test]
    fn depthwise_direct_matches_im2col() {
        let mut seed = 7u64;
        let cases = [
            // (b, h, w, c, k, stride, dilation, pads t/l/b/r, clamp)
            (1, 7, 9, 3, 3, 1, 1, (1, 1, 1, 1), false),
            (2, 8, 8, 17, 3, 2, 1, (0, 0, 1, 1), true),
            (1, 11, 6, 33, 5, 1, 1, (2, 2, 2, 2), false),
            (1, 10, 13, 25, 5, 2, 1, (2, 1, 2, 3), true),
            (1, 5, 5, 8, 3, 1, 2, (2, 2, 2, 2), false),
            (3, 4, 3, 1, 3, 2, 1, (1, 0, 1, 0), true),
            (1, 12, 12, 40, 3, 2, 1, (1, 1, 1, 1), true),
            (1, 3, 3, 19, 5, 1, 1, (4, 4, 4, 4), false),
            // large enough to be split across threads
            (2, 40, 37, 27, 3, 1, 1, (1, 1, 1, 1), true),
            (1, 57, 45, 45, 5, 2, 1, (2, 2, 2, 2), false),
        ];
        for &(b, h, w, c, k, s, d, (pt, pl, pb, pr), clamped) in &cases {
            let p = ConvParams {
                kh: k,
                kw: k,
                sh: s,
                sw: s,
                dh: d,
                dw: d,
                pad_top: pt,
                pad_left: pl,
                pad_bottom: pb,
                pad_right: pr,
                groups: c,
                group_in: 1,
                group_out: 1,
                adj_h: 0,
                adj_w: 0,
            };
            let oh = out_size(h, k, s, d, pt, pb);
            let ow = out_size(w, k, s, d, pl, pr);
            let input = lcg(&mut seed, b * h * w * c);
            let weight = lcg(&mut seed, k * k * c);
            let bias = lcg(&mut seed, c);
            let range = if clamped {
                (-0.5, 0.75)
            } else {
                (f32::NEG_INFINITY, f32::INFINITY)
            };
            let n = b * oh * ow * c;
            let mut want = vec![0.0f32; n];
            reference(
                &input,
                (b, h, w, c),
                &p,
                (oh, ow),
                &weight,
                &bias,
                range,
                &mut want,
            );
            for threads in [1, 3] {
                pteron_linalg::set_num_threads(threads);
                let mut got = vec![f32::NAN; n];
                pteron_linalg::nhwc::depthwise_nhwc(
                    &input,
                    (b, h, w, c),
                    &p.window(),
                    (oh, ow),
                    &weight,
                    &bias,
                    range,
                    &mut got,
                );
                for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - e).abs() <= 1e-5 * (1.0 + e.abs()),
                        "case {:?} idx {i}: {g} vs {e}",
                        (b, h, w, c, k, s, d)
                    );
                }
            }
        }
    }

    #[test]
    fn clamp_matches_sequential_ifs() {
        let mut seed = 3u64;
        let mut x = lcg(&mut seed, 1000);
        x[5] = f32::NAN;
        x[6] = f32::INFINITY;
        x[7] = f32::NEG_INFINITY;
        x[8] = -0.0;
        for (lo, hi) in [
            (0.0, f32::INFINITY),
            (0.0, 6.0),
            (-0.25, 0.5),
            (f32::NEG_INFINITY, 0.1),
            (0.5, -0.5),
        ] {
            let mut got = x.clone();
            clamp(&mut got, lo, hi);
            for (&g, &v) in got.iter().zip(&x) {
                let mut e = v;
                if e < lo {
                    e = lo;
                }
                if e > hi {
                    e = hi;
                }
                assert_eq!(g.to_bits(), e.to_bits(), "clamp({v}, {lo}, {hi})");
            }
        }
    }

    #[test]
    fn matrix_transposes_recognised() {
        let m = |s: &[usize], p: &[usize]| as_matrix_transpose(&Dims::new(s).unwrap(), p);
        assert_eq!(m(&[1, 3, 224, 224], &[0, 2, 3, 1]), Some((1, 3, 224 * 224)));
        assert_eq!(m(&[2, 7, 7, 1280], &[0, 3, 1, 2]), Some((2, 49, 1280)));
        assert_eq!(m(&[5, 6], &[1, 0]), Some((1, 5, 6)));
        assert_eq!(m(&[2, 1, 3], &[0, 2, 1]), Some((1, 1, 6)));
        assert_eq!(m(&[2, 3, 4], &[0, 1, 2]), Some((1, 1, 24)));
        assert_eq!(m(&[2, 3, 4], &[2, 1, 0]), None);
        assert_eq!(m(&[2, 3, 4], &[1, 0, 2]), None);
        assert_eq!(m(&[2, 3, 4, 5], &[0, 3, 2, 1]), None);
    }

    #[test]
    fn transpose_matches_index_oracle() {
        // Every permutation of ranks 1..=4 on small odd shapes, plus the NCHW → NHWC
        // input transpose of a 3-channel image.
        fn perms(r: usize) -> Vec<Vec<usize>> {
            if r == 0 {
                return vec![vec![]];
            }
            let mut all = Vec::new();
            for p in perms(r - 1) {
                for pos in 0..r {
                    let mut q = p.clone();
                    q.insert(pos, r - 1);
                    all.push(q);
                }
            }
            all
        }
        let mut seed = 5u64;
        let mut cases: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
        for shape in [vec![7], vec![3, 5], vec![2, 3, 4], vec![2, 3, 1, 5]] {
            for p in perms(shape.len()) {
                cases.push((shape.clone(), p));
            }
        }
        cases.push((vec![1, 3, 6, 7], vec![0, 2, 3, 1]));
        // Batched matrix transposes large enough for the 8x8 / 3-row SIMD blocks,
        // with unit axes in between.
        cases.push((vec![1, 3, 20, 21], vec![0, 2, 3, 1]));
        cases.push((vec![2, 16, 9, 10], vec![0, 2, 3, 1]));
        cases.push((vec![2, 9, 10, 16], vec![0, 3, 1, 2]));
        cases.push((vec![2, 1, 24, 1, 17], vec![0, 4, 2, 3, 1]));
        cases.push((vec![24, 1, 17], vec![1, 2, 0]));
        for (shape, perm) in cases {
            let id = Dims::new(&shape).unwrap();
            let oshape: Vec<usize> = perm.iter().map(|&k| shape[k]).collect();
            let od = Dims::new(&oshape).unwrap();
            let input = lcg(&mut seed, id.numel());
            let mut got = vec![f32::NAN; od.numel()];
            transpose(&input, &id, &perm, &mut got, &od);
            // out[o] at output coordinates q reads input coordinates p[perm[k]] = q[k].
            let is = strides(&id);
            let os = strides(&od);
            for (o, &g) in got.iter().enumerate() {
                let mut src = 0;
                for k in 0..oshape.len() {
                    src += (o / os[k] % oshape[k]) * is[perm[k]];
                }
                assert_eq!(g, input[src], "{shape:?} perm {perm:?} at {o}");
            }
        }
    }

    #[test]
    fn pool_is_thread_count_independent() {
        let mut seed = 11u64;
        let (b, h, w, c) = (2, 33, 29, 24);
        let p = PoolParams {
            pad_top: 1,
            pad_right: 1,
            pad_bottom: 1,
            pad_left: 1,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            dh: 1,
            dw: 1,
        };
        let (oh, ow) = (h, w);
        let input = lcg(&mut seed, b * h * w * c);
        for max in [false, true] {
            // Serial reference: one thread runs every row inline.
            let mut want = vec![0.0f32; b * oh * ow * c];
            pteron_linalg::set_num_threads(1);
            pool(&input, (b, h, w, c), &p, (oh, ow), max, &mut want);
            pteron_linalg::set_num_threads(3);
            let mut got = vec![f32::NAN; want.len()];
            pool(&input, (b, h, w, c), &p, (oh, ow), max, &mut got);
            assert_eq!(got, want);
            // Spot-check one interior and one corner pixel against a direct sum.
            for &(n, oy, ox, ch) in &[(1, 5, 7, 3), (0, 0, 0, 23)] {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                let mut cnt = 0;
                for iy in oy.max(1) - 1..(oy + 2).min(h) {
                    for ix in ox.max(1) - 1..(ox + 2).min(w) {
                        let x = input[((n * h + iy) * w + ix) * c + ch];
                        acc = if max { acc.max(x) } else { acc + x };
                        cnt += 1;
                    }
                }
                if !max {
                    acc /= cnt as f32;
                }
                let g = got[((n * oh + oy) * ow + ox) * c + ch];
                assert!((g - acc).abs() <= 1e-5, "{g} vs {acc}");
            }
        }
    }
}
