//! Winograd F(2x2, 3x3) for 3x3, stride 1, undilated NHWC convolutions.
//!
//! Every 2x2 block of output pixels (a *tile*) is computed from the 4x4 input patch
//! around it: the patch is transformed (`V = Bᵀ d B`, additions only), each of the 16
//! transformed points is multiplied by its transformed filter (`U = G g Gᵀ`,
//! prepared once) as a pointwise GEMM over the channels, and the 16 products are
//! transformed back (`Y = Aᵀ M A`, additions only) into the 2x2 outputs, to which
//! the bias and the clamp are applied. That is 16 multiplies per input channel and
//! output channel for 4 outputs instead of 36: the GEMMs do 2.25x fewer FMAs than
//! the direct convolution, at the price of the two transforms and of rounding that
//! differs from direct summation by a few ulps per layer (the transforms' constants
//! are 0, ±1 and ±1/2, so they add no error of their own beyond the additions).
//! NaN inputs propagate as in the direct path; an infinite input can give NaN
//! (`inf - inf` inside the transforms) where direct summation gives ±inf.
//!
//! The GEMMs reuse the direct convolution's packed panels and microkernels (one
//! pointwise [`ConvNhwc`] per point). Tiles are processed in blocks: a task
//! transforms a block of tiles into thread-local scratch (`16 × tiles × in_c`),
//! runs the 16 GEMMs into more scratch (`16 × tiles × out_c`) while both stay in
//! L2, then writes the block's output pixels. Blocks are the unit of parallelism.

use super::{ConvNhwc, ConvNhwcParams, TilePtrs, MAX_SEGS, PS};
use crate::gemm::clamp_nan;
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch, SyncPtr, INITIAL_SCRATCH};
use crate::{isa, Isa};

/// Points of a transformed 4x4 tile.
const PTS: usize = 16;
/// Channels transformed per step (one zmm; the tail goes one channel at a time).
const LANES: usize = 16;

/// Prepared Winograd convolution: 16 pointwise GEMMs (in_c -> out_c, no bias) over
/// the transformed filters, and the bias added after the output transform.
pub(super) struct Winograd {
    u: Vec<ConvNhwc>,
    bias: Vec<f32>,
}

impl Winograd {
    /// Whether `p` is a convolution this path handles: 3x3, stride 1, dilation 1, at
    /// least 16 input and output channels (below that the direct kernel's tiles are
    /// mostly epilogue), and filters small enough that the 16 transformed filters
    /// stay in L2 while a block of tiles streams through them.
    pub(super) fn eligible(p: &ConvNhwcParams) -> bool {
        (p.kh, p.kw) == (3, 3)
            && p.stride == (1, 1)
            && p.dilation == (1, 1)
            && p.in_c >= 16
            && p.out_c >= 16
            && p.in_c * p.out_c <= 256 * 256
    }

    /// Transform `weight` (`[out_c, 3, 3, in_c]`) and keep `bias` (or zeros).
    pub(super) fn new(p: &ConvNhwcParams, weight: &[f32], bias: Option<&[f32]>) -> Option<Self> {
        let (c, k) = (p.in_c, p.out_c);
        if weight.len() != k * 9 * c {
            return None;
        }
        // u[pt][ko][ci] = (G g Gᵀ)[pt], computed in f64 and rounded once.
        let mut u = vec![0.0f32; PTS * k * c];
        for ko in 0..k {
            for ci in 0..c {
                let g = |a: usize, b: usize| f64::from(weight[((ko * 3 + a) * 3 + b) * c + ci]);
                // G g (4x3), then (G g) Gᵀ (4x4).
                let mut gg = [[0.0f64; 3]; 4];
                for (b, col) in (0..3).map(|b| (b, [g(0, b), g(1, b), g(2, b)])) {
                    let t = g_rows(col);
                    for i in 0..4 {
                        gg[i][b] = t[i];
                    }
                }
                for (i, row) in gg.iter().enumerate() {
                    for (j, v) in g_rows(*row).into_iter().enumerate() {
                        u[((i * 4 + j) * k + ko) * c + ci] = v as f32;
                    }
                }
            }
        }
        let pw = ConvNhwcParams::pointwise(c, k);
        let u = u
            .chunks_exact(k * c)
            .map(|w| ConvNhwc::new(pw, w, None))
            .collect::<Option<Vec<_>>>()?;
        let bias = match bias {
            Some(b) => b.to_vec(),
            None => vec![0.0; k],
        };
        Some(Winograd { u, bias })
    }

    /// Bytes of the transformed filters and the bias.
    pub(super) fn packed_bytes(&self) -> usize {
        self.u.iter().map(ConvNhwc::packed_bytes).sum::<usize>() + self.bias.len() * 4
    }

    /// [`ConvNhwc::run`] through the transforms (`conv` holds the geometry and the
    /// zero row; lengths were checked by the caller).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn run(
        &self,
        conv: &ConvNhwc,
        input: &[f32],
        (batch, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        output: &mut [f32],
        (lo, hi): (f32, f32),
    ) {
        let p = &conv.p;
        let (c, k) = (p.in_c, p.out_c);
        let (ty, tx) = (div_ceil(oh, 2), div_ceil(ow, 2));
        let n_tiles = batch * ty * tx;
        if n_tiles == 0 {
            return;
        }
        let mr = conv.kern.mr();
        // Tiles per block: the scratch of a block fits the per-thread reservation,
        // and when the transformed filters are small (<= 256 KiB) it leaves them room
        // in a 768 KiB share of L2 (measured: 64 channels at 56x56 7% faster than
        // with the whole reservation; larger filters gain more from big blocks, each
        // block streams all of them). With several threads, a whole number of
        // blocks per thread (2, or 4 when the filters are small).
        let u_bytes = PTS * c * k * 4;
        let budget = if u_bytes <= 256 << 10 {
            ((768 << 10) - u_bytes) / 4
        } else {
            INITIAL_SCRATCH
        };
        let tmax = (budget / (PTS * (c + k))).max(1);
        let mut blocks = div_ceil(n_tiles, tmax);
        let threads = num_threads();
        if threads > 1 {
            let per_thread = if u_bytes <= 256 << 10 { 4 } else { 2 };
            blocks = div_ceil(blocks.max(threads * per_thread), threads) * threads;
        }
        let bt = div_ceil(n_tiles, blocks.min(n_tiles));
        let blocks = div_ceil(n_tiles, bt);
        let tier = Tier::of(conv);
        let out = SyncPtr(output.as_mut_ptr());
        let out_len = output.len();
        let zeros = &conv.zeros[..c];
        parallel_for(blocks, |b| {
            let t0 = b * bt;
            let nt = bt.min(n_tiles - t0);
            with_scratch(PTS * bt * (c + k), |s| {
                let (v, m) = s.split_at_mut(PTS * bt * c);
                // Input transform.
                for j in 0..nt {
                    let (n, ti, tj) = decode(t0 + j, ty, tx);
                    let mut d = [zeros; PTS];
                    for (q, dq) in d.iter_mut().enumerate() {
                        let iy = (2 * ti + q / 4).wrapping_sub(p.pad_top);
                        let ix = (2 * tj + q % 4).wrapping_sub(p.pad_left);
                        if iy < h && ix < w {
                            *dq = &input[((n * h + iy) * w + ix) * c..][..c];
                        }
                    }
                    tier.input(&d, v, bt * c, j * c);
                }
                // 16 GEMMs: M[pt] (nt × k) = V[pt] (nt × c) · U[pt] (c × k).
                let mut tp = TilePtrs {
                    ptrs: [std::ptr::null(); PS * MAX_SEGS],
                    nseg: 1,
                    seg_len: c,
                };
                for (pt, u) in self.u.iter().enumerate() {
                    let a = &v[pt * bt * c..][..nt * c];
                    let mp = &mut m[pt * bt * k..][..nt * k];
                    for j in (0..nt).step_by(mr) {
                        let rows = mr.min(nt - j);
                        for r in 0..mr {
                            tp.ptrs[r] = a[(j + r.min(rows - 1)) * c..][..c].as_ptr();
                        }
                        let cp = mp[j * k..][..rows * k].as_mut_ptr();
                        // SAFETY: one segment of `c` floats per slot, each slot a row
                        // of `a` (a slice of this block's scratch); `u` is a pointwise
                        // convolution with k = c; the C tile is `rows` rows × `k`
                        // columns of `mp` (stride k), borrowed mutably here.
                        unsafe {
                            u.tile_panels(
                                &tp,
                                rows,
                                (0, u.panels),
                                cp,
                                (f32::NEG_INFINITY, f32::INFINITY),
                            )
                        };
                    }
                }
                // Output transform, bias and clamp into the block's output pixels.
                for j in 0..nt {
                    let (n, ti, tj) = decode(t0 + j, ty, tx);
                    let dst: [Option<&mut [f32]>; 4] = std::array::from_fn(|q| {
                        let (oy, ox) = (2 * ti + q / 2, 2 * tj + q % 2);
                        (oy < oh && ox < ow).then(|| {
                            let off = ((n * oh + oy) * ow + ox) * k;
                            assert!(off + k <= out_len, "conv_nhwc: output too short");
                            // SAFETY: `off..off+k` lies inside `output` (checked just
                            // above); output pixels belong to exactly one tile and
                            // tiles to exactly one block, so no other task touches
                            // them, and `output` stays borrowed for the dispatch.
                            unsafe { std::slice::from_raw_parts_mut(out.get().add(off), k) }
                        })
                    });
                    tier.output(m, bt * k, j * k, &self.bias, dst, (lo, hi));
                }
            });
        });
    }
}

/// Rows of `G x` for a 3-vector `x`: `[x0, (x0+x1+x2)/2, (x0-x1+x2)/2, x2]`.
fn g_rows(x: [f64; 3]) -> [f64; 4] {
    [
        x[0],
        0.5 * (x[0] + x[1] + x[2]),
        0.5 * (x[0] - x[1] + x[2]),
        x[2],
    ]
}

/// Tile index → (image, tile row, tile column).
fn decode(t: usize, ty: usize, tx: usize) -> (usize, usize, usize) {
    (t / (ty * tx), t / tx % ty, t % tx)
}

/// Instruction set the transforms are compiled for (the same safe code, vectorized
/// by the compiler for the tier's registers).
#[derive(Clone, Copy)]
enum Tier {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Tier {
    fn of(conv: &ConvNhwc) -> Tier {
        match isa() {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma if conv.kern == super::IKern::Avx512 => Tier::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => Tier::Avx2,
            _ => Tier::Scalar,
        }
    }

    /// `v[pt*stride + off ..][..c] = (Bᵀ d B)[pt]` for the 16 patch rows `d`.
    fn input(self, d: &[&[f32]; PTS], v: &mut [f32], stride: usize, off: usize) {
        match self {
            Tier::Scalar => input_tf(d, v, stride, off),
            // SAFETY: `Tier::Avx2` is chosen only when `isa()` reports AVX2+FMA; the
            // body is safe code.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => unsafe { x86::input_avx2(d, v, stride, off) },
            // SAFETY: `Tier::Avx512` is chosen only when the convolution's kernel is
            // the AVX-512 one (`avx512()` held); the body is safe code.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => unsafe { x86::input_avx512(d, v, stride, off) },
        }
    }

    /// `dst[q] = clamp((Aᵀ M A)[q] + bias)` for the 2x2 output pixels present.
    fn output(
        self,
        m: &[f32],
        stride: usize,
        off: usize,
        bias: &[f32],
        dst: [Option<&mut [f32]>; 4],
        lohi: (f32, f32),
    ) {
        match self {
            Tier::Scalar => output_tf(m, stride, off, bias, dst, lohi),
            // SAFETY: as in `input`.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx2 => unsafe { x86::output_avx2(m, stride, off, bias, dst, lohi) },
            // SAFETY: as in `input`.
            #[cfg(target_arch = "x86_64")]
            Tier::Avx512 => unsafe { x86::output_avx512(m, stride, off, bias, dst, lohi) },
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{input_tf, output_tf, PTS};

    /// [`input_tf`] compiled for AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn input_avx2(d: &[&[f32]; PTS], v: &mut [f32], stride: usize, off: usize) {
        input_tf(d, v, stride, off)
    }

    /// [`input_tf`] compiled for AVX-512F.
    ///
    /// # Safety
    /// AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn input_avx512(d: &[&[f32]; PTS], v: &mut [f32], stride: usize, off: usize) {
        input_tf(d, v, stride, off)
    }

    /// [`output_tf`] compiled for AVX2.
    ///
    /// # Safety
    /// AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn output_avx2(
        m: &[f32],
        stride: usize,
        off: usize,
        bias: &[f32],
        dst: [Option<&mut [f32]>; 4],
        lohi: (f32, f32),
    ) {
        output_tf(m, stride, off, bias, dst, lohi)
    }

    /// [`output_tf`] compiled for AVX-512F.
    ///
    /// # Safety
    /// AVX-512F available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn output_avx512(
        m: &[f32],
        stride: usize,
        off: usize,
        bias: &[f32],
        dst: [Option<&mut [f32]>; 4],
        lohi: (f32, f32),
    ) {
        output_tf(m, stride, off, bias, dst, lohi)
    }
}

#[inline(always)]
fn input_tf(d: &[&[f32]; PTS], v: &mut [f32], stride: usize, off: usize) {
    let c = d[0].len();
    let mut ch = 0;
    while ch + LANES <= c {
        input_lanes::<LANES>(d, v, stride, off, ch);
        ch += LANES;
    }
    while ch < c {
        input_lanes::<1>(d, v, stride, off, ch);
        ch += 1;
    }
}

/// `Bᵀ d B` on `L` channels from `ch`, with `Bᵀ = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]]`.
#[inline(always)]
fn input_lanes<const L: usize>(
    d: &[&[f32]; PTS],
    v: &mut [f32],
    stride: usize,
    off: usize,
    ch: usize,
) {
    // Plain loops, not `array::from_fn`: its closure is not always inlined into
    // the `#[target_feature]` callers, and then runs without their vector width.
    let mut x = [[0.0f32; L]; PTS];
    for (xq, dq) in x.iter_mut().zip(d) {
        xq.copy_from_slice(&dq[ch..ch + L]);
    }
    // Columns of Bᵀ d (rows of the patch combined), then rows of (Bᵀ d) B.
    let mut t = [[0.0f32; L]; PTS];
    for j in 0..4 {
        for l in 0..L {
            let (d0, d1, d2, d3) = (x[j][l], x[4 + j][l], x[8 + j][l], x[12 + j][l]);
            t[j][l] = d0 - d2;
            t[4 + j][l] = d1 + d2;
            t[8 + j][l] = d2 - d1;
            t[12 + j][l] = d1 - d3;
        }
    }
    for i in 0..4 {
        let mut r = [[0.0f32; L]; 4];
        for l in 0..L {
            let (a0, a1, a2, a3) = (
                t[4 * i][l],
                t[4 * i + 1][l],
                t[4 * i + 2][l],
                t[4 * i + 3][l],
            );
            r[0][l] = a0 - a2;
            r[1][l] = a1 + a2;
            r[2][l] = a2 - a1;
            r[3][l] = a1 - a3;
        }
        for (j, rv) in r.iter().enumerate() {
            v[(4 * i + j) * stride + off + ch..][..L].copy_from_slice(rv);
        }
    }
}

#[inline(always)]
fn output_tf(
    m: &[f32],
    stride: usize,
    off: usize,
    bias: &[f32],
    mut dst: [Option<&mut [f32]>; 4],
    lohi: (f32, f32),
) {
    let k = bias.len();
    let mut ch = 0;
    while ch + LANES <= k {
        output_lanes::<LANES>(m, stride, off, bias, &mut dst, lohi, ch);
        ch += LANES;
    }
    while ch < k {
        output_lanes::<1>(m, stride, off, bias, &mut dst, lohi, ch);
        ch += 1;
    }
}

/// `Aᵀ M A` on `L` channels from `ch`, with `Aᵀ = [[1,1,1,0],[0,1,-1,-1]]`, plus
/// the bias, clamped.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn output_lanes<const L: usize>(
    m: &[f32],
    stride: usize,
    off: usize,
    bias: &[f32],
    dst: &mut [Option<&mut [f32]>; 4],
    (lo, hi): (f32, f32),
    ch: usize,
) {
    let mut x = [[0.0f32; L]; PTS];
    for (q, xq) in x.iter_mut().enumerate() {
        xq.copy_from_slice(&m[q * stride + off + ch..][..L]);
    }
    let mut b = [0.0f32; L];
    b.copy_from_slice(&bias[ch..ch + L]);
    // s = Aᵀ M (2x4), then y = s A (2x2).
    let mut s = [[0.0f32; L]; 8];
    for j in 0..4 {
        for l in 0..L {
            let (m0, m1, m2, m3) = (x[j][l], x[4 + j][l], x[8 + j][l], x[12 + j][l]);
            s[j][l] = m0 + m1 + m2;
            s[4 + j][l] = m1 - m2 - m3;
        }
    }
    for i in 0..2 {
        let mut y = [[0.0f32; L]; 2];
        for l in 0..L {
            let (a0, a1, a2, a3) = (
                s[4 * i][l],
                s[4 * i + 1][l],
                s[4 * i + 2][l],
                s[4 * i + 3][l],
            );
            y[0][l] = clamp_nan(a0 + a1 + a2 + b[l], lo, hi);
            y[1][l] = clamp_nan(a1 - a2 - a3 + b[l], lo, hi);
        }
        for (j, yv) in y.iter().enumerate() {
            if let Some(o) = dst[2 * i + j].as_deref_mut() {
                o[ch..ch + L].copy_from_slice(yv);
            }
        }
    }
}
