//! NHWC convolution as an *indirect* GEMM: no im2col matrix is materialised and the
//! activations are never packed.
//!
//! The output is a `M × N` matrix (M = output pixels, N = output channels, row-major
//! with row stride `out_c`). Weights (`[out_c, kh, kw, in_c]`, XNNPACK's OHWI) are
//! packed once into 16-column panels `w[panel][k][16]` with `k = (ky*kw + kx)*in_c + ci`
//! and a padded bias. For a tile of [`MR`] output pixels the driver builds, per
//! *segment* of the k range, one pointer per pixel into the NHWC input (or into a zero
//! row for taps in the padding):
//! * when every pixel of the tile sees its full kernel row horizontally (always the
//!   case away from the left/right border), a segment is a whole kernel row
//!   (`kw*in_c` contiguous floats), so there are `kh` segments;
//! * otherwise a segment is one tap (`in_c` floats), `kh*kw` segments.
//!
//! The microkernel `f32_igemm_6x16__avx2_fma` (or its scalar twin; with AVX-512,
//! `f32_igemm_7x32__avx512f` on 7-pixel tiles over pairs of panels) walks the segments
//! broadcasting activations straight from those rows, starts from the bias and applies
//! the clamp in its epilogue. Tiles are grouped into tasks of (pixel range × panel
//! block) so that a block of panels stays in L2 while the task's pixel tiles stream
//! through, and each tile's rows are reused from L1 across the block's panels.
//! With several threads the tasks split the pixels, the panels or both, whichever
//! moves fewer bytes ([`ConvNhwc`]'s `split`).
//!
//! 3x3 stride-1 convolutions of 16..256 channels on maps of at least
//! [`WINOGRAD_MIN_PIXELS`] pixels run as Winograd F(2x2, 3x3) instead (see
//! `winograd.rs`): 2.25x fewer multiplies, the same microkernels.
//!
//! [`pointwise_depthwise_nhwc`] (`fused.rs`) fuses a pointwise convolution with the
//! depthwise convolution that reads its output: per band of depthwise output rows
//! the expanded rows it needs are computed into a per-thread scratch (overlap rows
//! carried from the previous band) and the depthwise reads them there, so the
//! expanded tensor never goes through memory. Same kernels, same bits.

use crate::gemm::clamp_nan;
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, F32Buf, SyncPtr};
use crate::{isa, Isa};

mod fused;
mod winograd;

pub use fused::{
    pointwise_depthwise_nhwc, pointwise_depthwise_pays, pointwise_depthwise_project_nhwc,
    pointwise_depthwise_project_scratch, pointwise_depthwise_scratch, Projection,
    FUSED_SCRATCH_FLOATS, FUSE_MIN_FLOATS,
};

/// Output pixels per microkernel tile (scalar and AVX2 tiers).
pub const MR: usize = 6;
/// Output pixels per microkernel tile of the AVX-512 tier.
pub const MR512: usize = 7;
/// Pointer slots per segment in a tile's pointer table (at least every tier's tile rows).
const PS: usize = 8;
/// Output channels per microkernel tile (one packed panel).
pub const NR: usize = 16;
/// Most segments (kernel taps) per tile; larger kernels are rejected by [`ConvNhwc::new`].
pub const MAX_SEGS: usize = 64;
/// Bytes of packed panels a task keeps hot while its pixel tiles stream through.
const PANEL_BLOCK_BYTES: usize = 192 * 1024;
/// How much more an activation byte that a panel block re-reads costs than a weight
/// byte in [`ConvNhwc::split`]. Splitting the panels over the threads makes each one
/// read every pixel, half of them just written by the other core (so fetched from
/// its cache), while the read-only weights that a pixel split makes every thread
/// stream come from the shared L3. Measured on mobilenet_v2 (fp32, 2 threads,
/// medians of 6 alternated runs): 3.549 ms at 1, 3.474 at 2, 3.479 at 4, 3.386 at
/// 8, 3.407 at 16, 3.495 with every layer split over the pixels; in the VM's slow
/// memory state 5.21 ms at 1 and 4.65 at 8.
const ACTIVATION_WEIGHT: f64 = 8.0;

/// Geometry of an NHWC convolution with `groups == 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvNhwcParams {
    pub in_c: usize,
    pub out_c: usize,
    pub kh: usize,
    pub kw: usize,
    /// Stride `(h, w)`.
    pub stride: (usize, usize),
    /// Dilation `(h, w)`.
    pub dilation: (usize, usize),
    /// Padding before the first row / column (the far side is implied by the
    /// output size passed to [`ConvNhwc::run`]).
    pub pad_top: usize,
    pub pad_left: usize,
}

impl ConvNhwcParams {
    /// A pointwise convolution: 1x1, stride 1, no padding.
    pub fn pointwise(in_c: usize, out_c: usize) -> Self {
        ConvNhwcParams {
            in_c,
            out_c,
            kh: 1,
            kw: 1,
            stride: (1, 1),
            dilation: (1, 1),
            pad_top: 0,
            pad_left: 0,
        }
    }
}

/// Microkernel tier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum IKern {
    Scalar,
    Avx2Fma,
    /// AVX-512F: 7-row tiles over pairs of panels (`f32_igemm_7x32__avx512f`), same
    /// packed layout as the other tiers.
    Avx512,
}

/// `(segments, floats per segment, A row pointers [seg][PS], packed panel, bias[16],
///   C tile, ldc, rows, cols, lo, hi)`.
type IgemmFn = unsafe fn(
    usize,
    usize,
    *const *const f32,
    *const f32,
    *const f32,
    *mut f32,
    usize,
    usize,
    usize,
    f32,
    f32,
);

impl IKern {
    /// Output pixels per tile.
    fn mr(self) -> usize {
        match self {
            IKern::Avx512 => MR512,
            _ => MR,
        }
    }

    /// Microkernel for a tile of `rows` (1..=MR) pixels: the full 6-row kernel, or on
    /// AVX2 a shorter one for the last tile (e.g. 7×7 maps: 49 = 8×6 + 1).
    /// A panel with at most 8 live columns (e.g. 24 = 16 + 8 output channels) uses an
    /// 8-wide kernel that skips the zero half.
    fn func(self, rows: usize, cols: usize) -> IgemmFn {
        match self {
            IKern::Scalar => f32_igemm_6x16__scalar,
            #[cfg(target_arch = "x86_64")]
            IKern::Avx2Fma => match (rows, cols <= 8) {
                (1, false) => x86::f32_igemm_rxh__avx2_fma::<1, 2>,
                (2, false) => x86::f32_igemm_rxh__avx2_fma::<2, 2>,
                (3, false) => x86::f32_igemm_rxh__avx2_fma::<3, 2>,
                (4, false) => x86::f32_igemm_rxh__avx2_fma::<4, 2>,
                (5, false) => x86::f32_igemm_rxh__avx2_fma::<5, 2>,
                (1, true) => x86::f32_igemm_rxh__avx2_fma::<1, 1>,
                (2, true) => x86::f32_igemm_rxh__avx2_fma::<2, 1>,
                (3, true) => x86::f32_igemm_rxh__avx2_fma::<3, 1>,
                (4, true) => x86::f32_igemm_rxh__avx2_fma::<4, 1>,
                (5, true) => x86::f32_igemm_rxh__avx2_fma::<5, 1>,
                (_, true) => x86::f32_igemm_rxh__avx2_fma::<6, 1>,
                (_, false) => x86::f32_igemm_6x16__avx2_fma,
            },
            #[cfg(not(target_arch = "x86_64"))]
            IKern::Avx2Fma => unreachable!("AVX2 kernel selected on a non-x86 target"),
            IKern::Avx512 => unreachable!("the AVX-512 tier walks its panels itself"),
        }
    }
}

/// A prepared NHWC convolution (weights packed once).
pub struct ConvNhwc {
    p: ConvNhwcParams,
    k: usize,
    panels: usize,
    w: F32Buf,
    bias: F32Buf,
    zeros: Vec<f32>,
    kern: IKern,
    /// 1x1, stride 1, no padding.
    pointwise: bool,
    /// Winograd F(2x2, 3x3) form of a 3x3 stride-1 convolution, used on maps of at
    /// least [`WINOGRAD_MIN_PIXELS`] output pixels.
    wino: Option<Box<winograd::Winograd>>,
}

/// Smallest output map (pixels per image) run through the Winograd transforms; on
/// smaller maps the padded tiles and the transforms cost more than they save.
pub const WINOGRAD_MIN_PIXELS: usize = 100;

/// Pointers of one tile: `ptrs[seg*PS + row]`.
struct TilePtrs {
    ptrs: [*const f32; PS * MAX_SEGS],
    nseg: usize,
    seg_len: usize,
}

/// The residual add of [`ConvNhwc::run_add`].
pub(super) struct Residual<'a> {
    pub(super) r: &'a [f32],
    pub(super) lo: f32,
    pub(super) hi: f32,
}

impl Residual<'_> {
    /// `o = clamp(o + r)` elementwise (selects, so that the loop vectorizes; NaN
    /// propagates like the elementwise add and clamp it replaces).
    pub(super) fn apply(&self, o: &mut [f32], r: &[f32]) {
        let (lo, hi) = (self.lo, self.hi);
        for (o, &r) in o.iter_mut().zip(r) {
            let v = *o + r;
            let t = if v < lo { lo } else { v };
            *o = if t > hi { hi } else { t };
        }
    }
}

impl ConvNhwc {
    /// Pack `weight` (`[out_c, kh, kw, in_c]`) and `bias` (`out_c`, or zeros).
    /// Returns `None` for empty or unsupported geometry (zero sizes/strides/dilations,
    /// more than [`MAX_SEGS`] taps, slices of the wrong length).
    pub fn new(p: ConvNhwcParams, weight: &[f32], bias: Option<&[f32]>) -> Option<ConvNhwc> {
        let taps = p.kh.checked_mul(p.kw)?;
        if p.in_c == 0
            || p.out_c == 0
            || taps == 0
            || taps > MAX_SEGS
            || p.stride.0 == 0
            || p.stride.1 == 0
            || p.dilation.0 == 0
            || p.dilation.1 == 0
        {
            return None;
        }
        let k = taps.checked_mul(p.in_c)?;
        if weight.len() != k.checked_mul(p.out_c)? || bias.is_some_and(|b| b.len() != p.out_c) {
            return None;
        }
        let panels = div_ceil(p.out_c, NR);
        let mut w = F32Buf::zeroed(panels * k * NR);
        {
            let dst = &mut w[..];
            for (co, row) in weight.chunks_exact(k).enumerate() {
                let (pi, l) = (co / NR, co % NR);
                let base = pi * k * NR + l;
                for (q, &v) in row.iter().enumerate() {
                    dst[base + q * NR] = v;
                }
            }
        }
        let mut bb = F32Buf::zeroed(panels * NR);
        if let Some(b) = bias {
            bb[..p.out_c].copy_from_slice(b);
        }
        let kern = match isa() {
            Isa::Scalar => IKern::Scalar,
            Isa::Avx2Fma if crate::avx512() => IKern::Avx512,
            Isa::Avx2Fma => IKern::Avx2Fma,
        };
        Some(ConvNhwc {
            p,
            k,
            panels,
            w,
            bias: bb,
            zeros: vec![0.0; p.kw * p.in_c],
            kern,
            pointwise: taps == 1 && p.stride == (1, 1) && p.pad_top == 0 && p.pad_left == 0,
            wino: if winograd::Winograd::eligible(&p) {
                Some(Box::new(winograd::Winograd::new(&p, weight, bias)?))
            } else {
                None
            },
        })
    }

    /// Parameters this convolution was built for.
    pub fn params(&self) -> &ConvNhwcParams {
        &self.p
    }

    /// Bytes of packed weights, bias and the zero row.
    pub fn packed_bytes(&self) -> usize {
        self.w.bytes()
            + self.bias.bytes()
            + self.zeros.len() * 4
            + self.wino.as_ref().map_or(0, |wg| wg.packed_bytes())
    }

    /// Fill the segment pointers of the tile of pixels `m0..m0+rows` (`rows <= mr`,
    /// the tier's tile height; slots `rows..mr` repeat the last pixel).
    #[allow(clippy::too_many_arguments)]
    fn tile_ptrs<'a>(
        &'a self,
        input: &'a [f32],
        (h, w): (usize, usize),
        (oh, ow): (usize, usize),
        m0: usize,
        rows: usize,
        mr: usize,
        t: &mut TilePtrs,
    ) {
        let p = &self.p;
        let c = p.in_c;
        let (sh, sw) = p.stride;
        let (dh, dw) = p.dilation;
        let ohw = oh * ow;
        if self.pointwise && (oh, ow) == (h, w) {
            // 1x1, stride 1, no padding, same size: pixel m reads input row m.
            t.nseg = 1;
            t.seg_len = c;
            for r in 0..mr {
                let off = (m0 + r.min(rows - 1)) * c;
                t.ptrs[r] = input[off..off + c].as_ptr();
            }
            return;
        }
        // Decode the pixels (one division, then stepping); rows past the tile repeat
        // its last pixel.
        let mut pix = [(0usize, 0usize, 0usize); PS];
        let pix = &mut pix[..mr];
        let mut full = p.kw == 1 || dw == 1;
        let (n, rem) = (m0 / ohw, m0 % ohw);
        let mut cur = (n, rem / ow, rem % ow);
        for (r, px) in pix.iter_mut().enumerate() {
            *px = cur;
            if r + 1 < rows {
                cur.2 += 1;
                if cur.2 == ow {
                    cur.2 = 0;
                    cur.1 += 1;
                    if cur.1 == oh {
                        cur.1 = 0;
                        cur.0 += 1;
                    }
                }
            }
            let x0 = px.2 * sw;
            if x0 < p.pad_left || x0 + (p.kw - 1) * dw >= p.pad_left + w {
                full = false;
            }
        }
        if full {
            let seg = p.kw * c;
            t.nseg = p.kh;
            t.seg_len = seg;
            // Offsets step by a row per kernel row: no per-tap multiplies or slicing.
            // A row `y` (padded coordinate) inside the input starts `off` floats in,
            // and `off + seg <= batch*h*w*c <= input.len()` because `n < batch`,
            // `y - pad_top < h` and the window columns `ix0..ix0+kw` lie in `0..w`
            // (`full`), so the pointer stays inside `input`.
            let base = input.as_ptr();
            let row_step = dh * w * c;
            let (n0, oy0, ox0) = pix[0];
            let last = pix[mr - 1];
            let y0 = oy0 * sh;
            if (last.0, last.1) == (n0, oy0)
                && y0 >= p.pad_top
                && y0 + (p.kh - 1) * dh < p.pad_top + h
            {
                // The common case: the tile's pixels lie in one output row and every
                // kernel row inside the input, so pointer (ky, r) is affine in both
                // (pixel r < rows is ox0 + r; the slots past the tile repeat the last
                // pixel). In bounds as argued below.
                let off0 = ((n0 * h + y0 - p.pad_top) * w + ox0 * sw - p.pad_left) * c;
                let px_step = sw * c;
                for (ky, slots) in t.ptrs.chunks_exact_mut(PS).take(p.kh).enumerate() {
                    let row = off0 + ky * row_step;
                    for (r, slot) in slots[..mr].iter_mut().enumerate() {
                        let off = row + r.min(rows - 1) * px_step;
                        debug_assert!(off + seg <= input.len());
                        *slot = base.wrapping_add(off);
                    }
                }
                return;
            }
            for (r, &(n, oy, ox)) in pix.iter().enumerate() {
                let ix0 = ox * sw - p.pad_left;
                let mut y = oy * sh;
                // Wrapping: negative while `y < pad_top` (then unused).
                let mut off = (n * h)
                    .wrapping_add(y)
                    .wrapping_sub(p.pad_top)
                    .wrapping_mul(w)
                    .wrapping_add(ix0)
                    .wrapping_mul(c);
                for ky in 0..p.kh {
                    t.ptrs[ky * PS + r] = if y >= p.pad_top && y - p.pad_top < h {
                        debug_assert!(off + seg <= input.len());
                        base.wrapping_add(off)
                    } else {
                        self.zeros.as_ptr()
                    };
                    y += dh;
                    off = off.wrapping_add(row_step);
                }
            }
        } else {
            t.nseg = p.kh * p.kw;
            t.seg_len = c;
            for (r, &(n, oy, ox)) in pix.iter().enumerate() {
                for ky in 0..p.kh {
                    let y = oy * sh + ky * dh;
                    let yok = y >= p.pad_top && y - p.pad_top < h;
                    for kx in 0..p.kw {
                        let x = ox * sw + kx * dw;
                        t.ptrs[(ky * p.kw + kx) * PS + r] =
                            if yok && x >= p.pad_left && x - p.pad_left < w {
                                let off = ((n * h + (y - p.pad_top)) * w + (x - p.pad_left)) * c;
                                input[off..off + c].as_ptr()
                            } else {
                                self.zeros.as_ptr()
                            };
                    }
                }
            }
        }
    }

    /// `(number of panel blocks, panels per block)`: a block of panels stays in L2
    /// while a task's pixel tiles stream through. The AVX-512 tier walks panels in
    /// pairs, so its blocks hold an even number of panels (but the last).
    fn panel_blocks(&self) -> (usize, usize) {
        let pair = usize::from(self.kern == IKern::Avx512) + 1;
        let even = |nb: usize| (div_ceil(nb, pair) * pair).min(self.panels);
        let nb = even((PANEL_BLOCK_BYTES / (self.k * NR * 4)).clamp(1, self.panels));
        let n_blocks = div_ceil(self.panels, nb);
        let nb = even(div_ceil(self.panels, n_blocks));
        (div_ceil(self.panels, nb), nb)
    }

    /// Runs the microkernel of this convolution's tier on one tile of `rows` pixels
    /// (pointers in `tp`) over panels `p0..p1`, writing output columns
    /// `p0*16..min(p1*16, out_c)` of the tile's rows at `c` (row stride `out_c`).
    ///
    /// # Safety
    /// `tp` holds `nseg` segments whose first `mr` slots (the tier's tile height) each
    /// point to `seg_len` readable floats, with `nseg * seg_len == k`; `p0 < p1 <=
    /// panels`; `c` is valid for writes of `rows <= mr` rows × those columns, with
    /// stride `out_c`, and no other thread accesses them.
    unsafe fn tile_panels(
        &self,
        tp: &TilePtrs,
        rows: usize,
        (p0, p1): (usize, usize),
        c: *mut f32,
        (lo, hi): (f32, f32),
    ) {
        let (k, ldc) = (self.k, self.p.out_c);
        let wbuf = &self.w[..];
        let bbuf = &self.bias[..];
        #[cfg(target_arch = "x86_64")]
        if self.kern == IKern::Avx512 {
            let n0 = p0 * NR;
            let cols = (p1 * NR).min(ldc) - n0;
            // SAFETY: AVX-512F/VL and AVX2+FMA are available (`kern` is `Avx512` only
            // when `avx512()` held at construction, which checks F/BW/VL/DQ on the CPU
            // and requires the AVX2+FMA tier). The pointers in `tp` are valid per this
            // function's contract; panels p0..p1 each hold k*16 floats at stride k*16
            // from `wbuf[p0*k*16]`, `bbuf[n0..]` holds (p1-p0)*16 floats; the C tile
            // is valid for writes (contract).
            unsafe {
                x512::f32_igemm_7x32__avx512f(
                    tp.nseg,
                    tp.seg_len,
                    tp.ptrs.as_ptr(),
                    wbuf[p0 * k * NR..p1 * k * NR].as_ptr(),
                    k * NR,
                    bbuf[n0..p1 * NR].as_ptr(),
                    c.add(n0),
                    ldc,
                    rows,
                    cols,
                    lo,
                    hi,
                );
            }
            return;
        }
        for pi in p0..p1 {
            let n0 = pi * NR;
            let cols = NR.min(ldc - n0);
            let kf = self.kern.func(rows, cols);
            let wp = &wbuf[pi * k * NR..(pi + 1) * k * NR];
            let bp = &bbuf[n0..n0 + NR];
            // SAFETY: the pointers in `tp` are valid per this function's contract; `wp`
            // holds k*16 = nseg*seg_len*16 floats and `bp` 16; the C tile (rows
            // 0..rows, columns n0..n0+cols, row stride ldc) is valid for writes
            // (contract). The AVX2 kernels are selected only when `isa()` reported
            // AVX2+FMA.
            unsafe {
                kf(
                    tp.nseg,
                    tp.seg_len,
                    tp.ptrs.as_ptr(),
                    wp.as_ptr(),
                    bp.as_ptr(),
                    c.add(n0),
                    ldc,
                    rows,
                    cols,
                    lo,
                    hi,
                );
            }
        }
    }

    /// Work split of a run: `(pixel chunks, panel blocks, panels per block)`.
    ///
    /// One thread takes one task (all tiles, L2-sized panel blocks). With more
    /// threads, enough tasks (about 12 per thread, fewer for small layers) are claimed
    /// dynamically so the threads finish together (12 per thread where the layer is
    /// big enough). The tasks come from splitting the pixels, the panels, or
    /// both, whichever moves the fewest bytes: every pixel chunk streams all the
    /// weights once, and every panel block re-reads its pixels' activations, which
    /// count [`ACTIVATION_WEIGHT`] times (see there). Most layers are split over
    /// the pixels; those whose weights dwarf their activations even then (7x7 maps
    /// with hundreds of channels) split their panels too.
    fn split(&self, m: usize, m_tiles: usize, threads: usize, flops: f64) -> (usize, usize, usize) {
        let (n_blocks, nb) = self.panel_blocks();
        if threads <= 1 || flops <= 400_000.0 {
            return (1, n_blocks, nb);
        }
        let want = (threads * 12)
            .min((flops / 150_000.0) as usize)
            .max(threads);
        let pair = usize::from(self.kern == IKern::Avx512) + 1;
        let max_blocks = div_ceil(self.panels, pair);
        let wbytes = (self.panels * self.k * NR * 4) as f64;
        let abytes = (m * self.k * 4) as f64 * ACTIVATION_WEIGHT;
        // Fewest tasks that still let dynamic claiming even out the threads (also
        // when another process takes a core for a while): as many as before this
        // search existed, so it only changes how small-map layers are cut.
        let min_tasks = want;
        // Uneven task counts leave a thread idle at the end: charged as the bytes that
        // the idle time could have moved (about 5 flops per byte).
        let compute = flops / 5.0;
        let mut best = (f64::INFINITY, 1, n_blocks, nb);
        for blocks in n_blocks..=max_blocks.max(n_blocks) {
            // Panels per block, a whole number of pairs (the AVX-512 tier).
            let per = (div_ceil(div_ceil(self.panels, blocks), pair) * pair).min(self.panels);
            let blocks = div_ceil(self.panels, per);
            let most = div_ceil(want, blocks).min(m_tiles);
            // `most` itself is always a candidate (the most tasks this block count
            // gives), so every block count offers at least one split.
            for c in 1..=most {
                let chunks = div_ceil(m_tiles, div_ceil(m_tiles, c));
                let tasks = chunks * blocks;
                if tasks < min_tasks && c < most {
                    continue;
                }
                let uneven = (div_ceil(tasks, threads) * threads) as f64 / tasks as f64 - 1.0;
                let cost = chunks as f64 * wbytes + blocks as f64 * abytes + uneven * compute;
                if cost < best.0 {
                    best = (cost, chunks, blocks, per);
                }
            }
        }
        (best.1, best.2, best.3)
    }

    /// Convolve `input` (`[batch, h, w, in_c]`) into `output` (`[batch, oh, ow,
    /// out_c]`), then clamp to `[lo, hi]` (NaN propagates). Taps that fall outside
    /// the input (padding) read zeros, so any `(oh, ow)` is accepted.
    ///
    /// # Panics
    /// If `input` or `output` is shorter than those shapes.
    pub fn run(
        &self,
        input: &[f32],
        (batch, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        output: &mut [f32],
        (lo, hi): (f32, f32),
    ) {
        self.run_impl(input, (batch, h, w), (oh, ow), output, (lo, hi), None);
    }

    /// [`ConvNhwc::run`] followed by a residual add: every output value `v` (already
    /// clamped to `[lo, hi]`) becomes `min(max(v + r, add_lo), add_hi)` (NaN
    /// propagates), `r` the value at the same index of `residual` (`[batch, oh, ow,
    /// out_c]`). The same bits as running the convolution, then an elementwise add
    /// and a clamp; the sums are made right after each tile is stored, while it is
    /// still in L1.
    ///
    /// # Panics
    /// As [`ConvNhwc::run`], and if `residual` is shorter than the output.
    #[allow(clippy::too_many_arguments)]
    pub fn run_add(
        &self,
        input: &[f32],
        (batch, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        output: &mut [f32],
        (lo, hi): (f32, f32),
        residual: &[f32],
        (add_lo, add_hi): (f32, f32),
    ) {
        let epi = Residual {
            r: residual,
            lo: add_lo,
            hi: add_hi,
        };
        self.run_impl(input, (batch, h, w), (oh, ow), output, (lo, hi), Some(epi));
    }

    fn run_impl(
        &self,
        input: &[f32],
        (batch, h, w): (usize, usize, usize),
        (oh, ow): (usize, usize),
        output: &mut [f32],
        (lo, hi): (f32, f32),
        residual: Option<Residual<'_>>,
    ) {
        let p = self.p;
        let m = batch * oh * ow;
        assert!(
            input.len() >= batch * h * w * p.in_c,
            "conv_nhwc: input too short"
        );
        assert!(output.len() >= m * p.out_c, "conv_nhwc: output too short");
        if let Some(res) = &residual {
            assert!(res.r.len() >= m * p.out_c, "conv_nhwc: residual too short");
        }
        if m == 0 {
            return;
        }
        if let Some(wg) = &self.wino {
            if oh * ow >= WINOGRAD_MIN_PIXELS {
                wg.run(self, input, (batch, h, w), (oh, ow), output, (lo, hi));
                if let Some(res) = &residual {
                    res.apply(&mut output[..m * p.out_c], &res.r[..m * p.out_c]);
                }
                return;
            }
        }
        let kern = self.kern;
        let mr = kern.mr();
        let m_tiles = div_ceil(m, mr);
        let threads = num_threads();
        let flops = 2.0 * m as f64 * p.out_c as f64 * self.k as f64;
        let (m_chunks, n_blocks, nb) = self.split(m, m_tiles, threads, flops);
        let per_chunk = div_ceil(m_tiles, m_chunks);
        let m_chunks = div_ceil(m_tiles, per_chunk);
        let out = SyncPtr(output.as_mut_ptr());
        let task = |t: usize| {
            let (mc, nbi) = (t % m_chunks, t / m_chunks);
            let (t0, t1) = (mc * per_chunk, ((mc + 1) * per_chunk).min(m_tiles));
            let (p0, p1) = (nbi * nb, ((nbi + 1) * nb).min(self.panels));
            let mut tp = TilePtrs {
                ptrs: [std::ptr::null(); PS * MAX_SEGS],
                nseg: 0,
                seg_len: 0,
            };
            for ti in t0..t1 {
                let m0 = ti * mr;
                let rows = mr.min(m - m0);
                self.tile_ptrs(input, (h, w), (oh, ow), m0, rows, mr, &mut tp);
                debug_assert_eq!(tp.nseg * tp.seg_len, self.k);
                // SAFETY: the pointers in `tp` were filled by `tile_ptrs` from `input`
                // (or the zero row); rows m0..m0+rows of the output (stride out_c) lie
                // in `output` (length asserted above) and the (tile, panel block)
                // pair belongs to this task only.
                unsafe {
                    self.tile_panels(&tp, rows, (p0, p1), out.get().add(m0 * p.out_c), (lo, hi))
                };
                if let Some(res) = &residual {
                    let (n0, n1) = (p0 * NR, (p1 * NR).min(p.out_c));
                    for row in m0..m0 + rows {
                        let at = row * p.out_c + n0;
                        // SAFETY: columns n0..n1 of output row `row` (< m, inside
                        // `output` as asserted above) belong to this task's (tile,
                        // panel block) pair only; no other reference to them exists
                        // while this slice lives.
                        let o =
                            unsafe { std::slice::from_raw_parts_mut(out.get().add(at), n1 - n0) };
                        res.apply(o, &res.r[at..at + (n1 - n0)]);
                    }
                }
            }
        };
        parallel_for(m_chunks * n_blocks, task);
    }
}

impl ConvNhwc {
    /// Whether this is a pointwise convolution (1x1, stride 1, no padding), the
    /// producer [`pointwise_depthwise_nhwc`] accepts.
    pub fn is_pointwise(&self) -> bool {
        self.pointwise
    }

    /// Pointwise convolution of `m` consecutive pixels (`input`: `m * in_c` floats,
    /// `output`: `m * out_c`) on the calling thread, with the same microkernels and
    /// per-pixel operation order as [`ConvNhwc::run`] (so the results are the same
    /// bits as the matching rows of a whole-tensor run).
    ///
    /// # Panics
    /// If the convolution is not pointwise or a slice is too short.
    pub(crate) fn run_pointwise_serial(
        &self,
        input: &[f32],
        m: usize,
        output: &mut [f32],
        clamp: (f32, f32),
    ) {
        assert!(
            self.pointwise,
            "run_pointwise_serial: not a pointwise convolution"
        );
        assert!(input.len() >= m * self.p.in_c && output.len() >= m * self.p.out_c);
        let mr = self.kern.mr();
        let (n_blocks, nb) = self.panel_blocks();
        let mut tp = TilePtrs {
            ptrs: [std::ptr::null(); PS * MAX_SEGS],
            nseg: 0,
            seg_len: 0,
        };
        let out = output.as_mut_ptr();
        for bi in 0..n_blocks {
            let (p0, p1) = (bi * nb, ((bi + 1) * nb).min(self.panels));
            for m0 in (0..m).step_by(mr) {
                let rows = mr.min(m - m0);
                self.tile_ptrs(input, (1, m), (1, m), m0, rows, mr, &mut tp);
                // SAFETY: `tile_ptrs` pointed every slot at an `in_c`-float pixel of
                // `input` (pointwise, same size: pixel m0+r, r < rows, all below m);
                // rows m0..m0+rows of the output (stride out_c) lie inside `output`
                // (length asserted above) and nothing else accesses it.
                unsafe { self.tile_panels(&tp, rows, (p0, p1), out.add(m0 * self.p.out_c), clamp) };
            }
        }
    }
}

/// Portable 6×16 indirect-GEMM microkernel (same contract as the AVX2 one).
///
/// # Safety
/// `a` holds `nseg*PS` pointer slots, the first `MR` of each segment valid for `seg` reads; `w` holds `nseg*seg*16`
/// floats, `bias` 16; `c` is valid for `mr` rows × `nr` columns with stride `ldc`.
#[allow(non_snake_case, clippy::too_many_arguments)]
unsafe fn f32_igemm_6x16__scalar(
    nseg: usize,
    seg: usize,
    a: *const *const f32,
    w: *const f32,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    lo: f32,
    hi: f32,
) {
    // SAFETY: sizes per the function contract.
    let (ptrs, w, bias) = unsafe {
        (
            std::slice::from_raw_parts(a, nseg * PS),
            std::slice::from_raw_parts(w, nseg * seg * NR),
            std::slice::from_raw_parts(bias, NR),
        )
    };
    let mut acc = [[0.0f32; NR]; MR];
    for row in acc.iter_mut() {
        row.copy_from_slice(bias);
    }
    for s in 0..nseg {
        let ws = &w[s * seg * NR..(s + 1) * seg * NR];
        for (r, row) in acc.iter_mut().enumerate() {
            // SAFETY: each pointer is valid for `seg` reads (contract).
            let x = unsafe { std::slice::from_raw_parts(ptrs[s * PS + r], seg) };
            for (q, &xv) in x.iter().enumerate() {
                for (o, &wv) in row.iter_mut().zip(&ws[q * NR..q * NR + NR]) {
                    *o += xv * wv;
                }
            }
        }
    }
    for (i, row) in acc.iter().enumerate().take(mr) {
        for (j, &v) in row.iter().enumerate().take(nr) {
            // SAFETY: i < mr, j < nr: inside the C tile (contract).
            unsafe { *c.add(i * ldc + j) = clamp_nan(v, lo, hi) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
mod x512 {
    use super::x86::{DwRun, Lanes};
    use super::{MR512, NR, PS};
    use std::arch::x86_64::*;

    /// `f32_igemm_7x32__avx512f`: one tile of 7 output pixels across a run of packed
    /// panels, two panels (32 columns, 14 zmm accumulators) at a time, the odd last
    /// one alone; per k step one aligned load per panel and one broadcast per pixel;
    /// a last block of at most 8 columns runs on ymm registers. Starts from the bias, clamps in the
    /// epilogue, stores the last columns masked and only the first `mr` rows.
    ///
    /// # Safety
    /// AVX-512F/VL and AVX2+FMA available; `a` holds `nseg*PS` pointer slots whose first `MR512` per
    /// segment are valid for `seg` reads; panel `i < ceil(nr/16)` holds `nseg*seg*16`
    /// floats at `w + i*kstride` (64-byte aligned); `bias` is valid for
    /// `ceil(nr/16)*16` reads; `c` is valid for `mr <= 7` rows × `nr` columns with row
    /// stride `ldc`.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn f32_igemm_7x32__avx512f(
        nseg: usize,
        seg: usize,
        a: *const *const f32,
        w: *const f32,
        kstride: usize,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        lo: f32,
        hi: f32,
    ) {
        let mut j = 0;
        // SAFETY: column block `j..` uses panels j/16 (and j/16 + 1 when more than 16
        // columns are left), all inside the contract's `ceil(nr/16)` panels. AVX2+FMA
        // and AVX-512VL come with AVX-512F here (`avx512()` requires the AVX2+FMA tier
        // and checks VL).
        unsafe {
            while j < nr {
                let (wj, bj, cj) = (w.add(j / NR * kstride), bias.add(j), c.add(j));
                let args = (nseg, seg, a, wj, kstride, bj, cj, ldc, mr, nr - j, lo, hi);
                // A last block of at most 8 columns in a panel runs on ymm halves
                // (half the FMA work of a zmm on the zero-padded lanes).
                match nr - j {
                    25.. => tile::<2, false>(args),
                    17..=24 => tile::<1, true>(args),
                    9..=16 => tile::<1, false>(args),
                    _ => tile::<0, true>(args),
                }
                j += 2 * NR;
            }
        }
    }

    /// Mask of the first `n.min(16)` lanes.
    #[inline]
    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Arguments of [`tile`]: those of [`f32_igemm_7x32__avx512f`] with `w`, `bias`,
    /// `c` at the block's first column and `nr` the columns left from there.
    type TileArgs = (
        usize,
        usize,
        *const *const f32,
        *const f32,
        usize,
        *const f32,
        *mut f32,
        usize,
        usize,
        usize,
        f32,
        f32,
    );

    /// A 7-row tile over `H` whole panels (zmm) then, if `T8`, the first 8 columns of
    /// panel `H` (ymm); stores the first `nr.min(16*H + 8*T8)` columns.
    ///
    /// # Safety
    /// As for [`f32_igemm_7x32__avx512f`] with `H + T8` panels available; AVX2+FMA and
    /// AVX-512F/VL available.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    #[inline]
    unsafe fn tile<const H: usize, const T8: bool>(
        (nseg, seg, a, w, kstride, bias, c, ldc, mr, nr, lo, hi): TileArgs,
    ) {
        // SAFETY: reads and writes per the contract (H + T8 panels, 7 valid pointers
        // per segment, mr rows and the tile's first nr columns of C, masked).
        unsafe {
            let mut b = [_mm512_setzero_ps(); H];
            for (h, bv) in b.iter_mut().enumerate() {
                *bv = _mm512_loadu_ps(bias.add(h * NR));
            }
            let b8 = if T8 {
                _mm256_loadu_ps(bias.add(H * NR))
            } else {
                _mm256_setzero_ps()
            };
            let mut acc = [b; MR512];
            let mut acc8 = [b8; MR512];
            let mut wp = w;
            for s in 0..nseg {
                let mut ap = [std::ptr::null::<f32>(); MR512];
                for (r, p) in ap.iter_mut().enumerate() {
                    *p = *a.add(s * PS + r);
                }
                for q in 0..seg {
                    let mut wv = [_mm512_setzero_ps(); H];
                    for (h, v) in wv.iter_mut().enumerate() {
                        *v = _mm512_load_ps(wp.add(h * kstride));
                    }
                    let w8 = if T8 {
                        _mm256_load_ps(wp.add(H * kstride))
                    } else {
                        _mm256_setzero_ps()
                    };
                    for r in 0..MR512 {
                        let x = *ap[r].add(q);
                        let xz = _mm512_set1_ps(x);
                        for h in 0..H {
                            acc[r][h] = _mm512_fmadd_ps(xz, wv[h], acc[r][h]);
                        }
                        if T8 {
                            acc8[r] = _mm256_fmadd_ps(_mm256_set1_ps(x), w8, acc8[r]);
                        }
                    }
                    wp = wp.add(NR);
                }
            }
            let (vlo, vhi) = (_mm512_set1_ps(lo), _mm512_set1_ps(hi));
            let mut mask = [0xffff as __mmask16; H];
            for (h, m) in mask.iter_mut().enumerate() {
                *m = lanes(nr.saturating_sub(h * NR));
            }
            let mask8 = lanes(nr.saturating_sub(H * NR).min(8)) as __mmask8;
            let full = nr >= H * NR + 8 * usize::from(T8);
            for r in 0..MR512 {
                if r < mr {
                    let row = c.add(r * ldc);
                    for h in 0..H {
                        let v = _mm512_min_ps(vhi, _mm512_max_ps(vlo, acc[r][h]));
                        if full {
                            _mm512_storeu_ps(row.add(h * NR), v);
                        } else {
                            _mm512_mask_storeu_ps(row.add(h * NR), mask[h], v);
                        }
                    }
                    if T8 {
                        let v = _mm256_min_ps(
                            _mm512_castps512_ps256(vhi),
                            _mm256_max_ps(_mm512_castps512_ps256(vlo), acc8[r]),
                        );
                        _mm256_mask_storeu_ps(row.add(H * NR), mask8, v);
                    }
                }
            }
        }
    }

    /// `f32_dwconv_KxK_sS__avx512f`: [`super::x86::dw_run`] on 16-channel zmm blocks.
    /// The AVX2 kernel keeps only `NP` (4) accumulators per 8 channels, each taking
    /// `K` dependent FMAs per kernel row; a zmm accumulator carries twice the lanes at
    /// the same latency.
    ///
    /// # Safety
    /// AVX-512F; otherwise as for [`super::x86::dw_run`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn dw_run<const K: usize, const S: usize>(r: &DwRun) {
        // SAFETY: forwarded contract; the zmm operations need AVX-512F (enabled here).
        unsafe { super::x86::dw_groups::<Zmm, K, S>(r) }
    }

    /// 16-lane zmm operations for the depthwise run kernel.
    #[derive(Clone, Copy)]
    pub(super) struct Zmm;

    impl Lanes for Zmm {
        type V = __m512;
        type M = __mmask16;
        const L: usize = 16;
        #[inline(always)]
        unsafe fn mask(n: usize) -> __mmask16 {
            lanes(n)
        }
        #[inline(always)]
        unsafe fn load<const FULL: bool>(p: *const f32, m: __mmask16) -> __m512 {
            // SAFETY: the caller has AVX-512F and `p` valid per the lanes of `m`.
            unsafe {
                if FULL {
                    _mm512_loadu_ps(p)
                } else {
                    _mm512_maskz_loadu_ps(m, p)
                }
            }
        }
        #[inline(always)]
        unsafe fn store<const FULL: bool>(p: *mut f32, m: __mmask16, v: __m512) {
            // SAFETY: as for `load`.
            unsafe {
                if FULL {
                    _mm512_storeu_ps(p, v)
                } else {
                    _mm512_mask_storeu_ps(p, m, v)
                }
            }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: the caller has AVX-512F.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m512 {
            // SAFETY: the caller has AVX-512F.
            unsafe { _mm512_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn clamp(v: __m512, lo: __m512, hi: __m512) -> __m512 {
            // SAFETY: the caller has AVX-512F.
            unsafe { _mm512_min_ps(hi, _mm512_max_ps(lo, v)) }
        }
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            // SAFETY: the caller has AVX-512F.
            unsafe { _mm512_setzero_ps() }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(non_snake_case)]
mod x86 {
    use super::{MR, NR, PS};
    use crate::gemm::x86::tail_mask;
    use std::arch::x86_64::*;

    /// 6×16 AVX2/FMA indirect-GEMM microkernel: 12 accumulators started from the
    /// bias, one broadcast per pixel and k step, clamp in the epilogue.
    ///
    /// # Safety
    /// AVX2+FMA available; otherwise as `f32_igemm_6x16__scalar`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn f32_igemm_6x16__avx2_fma(
        nseg: usize,
        seg: usize,
        a: *const *const f32,
        w: *const f32,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        lo: f32,
        hi: f32,
    ) {
        // SAFETY: all reads stay inside the ranges of the function contract: `a`
        // holds nseg*PS pointer slots (the first MR of each used), each valid for `seg` floats, `w` nseg*seg*16 floats.
        unsafe {
            let bias0 = _mm256_loadu_ps(bias);
            let bias1 = _mm256_loadu_ps(bias.add(8));
            let (mut c00, mut c01) = (bias0, bias1);
            let (mut c10, mut c11) = (bias0, bias1);
            let (mut c20, mut c21) = (bias0, bias1);
            let (mut c30, mut c31) = (bias0, bias1);
            let (mut c40, mut c41) = (bias0, bias1);
            let (mut c50, mut c51) = (bias0, bias1);
            let mut wp = w;
            for s in 0..nseg {
                let ap = a.add(s * PS);
                let a0 = *ap;
                let a1 = *ap.add(1);
                let a2 = *ap.add(2);
                let a3 = *ap.add(3);
                let a4 = *ap.add(4);
                let a5 = *ap.add(5);
                for q in 0..seg {
                    let b0 = _mm256_load_ps(wp);
                    let b1 = _mm256_load_ps(wp.add(8));
                    let v = _mm256_broadcast_ss(&*a0.add(q));
                    c00 = _mm256_fmadd_ps(v, b0, c00);
                    c01 = _mm256_fmadd_ps(v, b1, c01);
                    let v = _mm256_broadcast_ss(&*a1.add(q));
                    c10 = _mm256_fmadd_ps(v, b0, c10);
                    c11 = _mm256_fmadd_ps(v, b1, c11);
                    let v = _mm256_broadcast_ss(&*a2.add(q));
                    c20 = _mm256_fmadd_ps(v, b0, c20);
                    c21 = _mm256_fmadd_ps(v, b1, c21);
                    let v = _mm256_broadcast_ss(&*a3.add(q));
                    c30 = _mm256_fmadd_ps(v, b0, c30);
                    c31 = _mm256_fmadd_ps(v, b1, c31);
                    let v = _mm256_broadcast_ss(&*a4.add(q));
                    c40 = _mm256_fmadd_ps(v, b0, c40);
                    c41 = _mm256_fmadd_ps(v, b1, c41);
                    let v = _mm256_broadcast_ss(&*a5.add(q));
                    c50 = _mm256_fmadd_ps(v, b0, c50);
                    c51 = _mm256_fmadd_ps(v, b1, c51);
                    wp = wp.add(NR);
                }
            }
            let acc = [c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51];
            if mr == MR && nr == NR {
                // Full tile: clamp and store straight from the registers (the general
                // epilogue is not inlined and would spill the accumulators).
                let (vlo, vhi) = (_mm256_set1_ps(lo), _mm256_set1_ps(hi));
                for (i, v) in acc.iter().enumerate() {
                    let p = c.add((i / 2) * ldc + (i % 2) * 8);
                    _mm256_storeu_ps(p, _mm256_min_ps(vhi, _mm256_max_ps(vlo, *v)));
                }
            } else {
                store_clamped(&acc, c, ldc, mr, nr, lo, hi);
            }
        }
    }

    /// One output pixel of the depthwise convolution: `dst[ch] = clamp(bias[ch] +
    /// Σ input[io + ch] * weight[t*c + ch])` over the taps `(io, t)`, `c = dst.len()`.
    ///
    /// # Safety
    /// AVX2+FMA available; `input` valid at `io + ch` and `weight` at `t*c + ch` for
    /// every tap and `ch < c`; `bias` valid for `c` reads.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dw_pixel(
        input: *const f32,
        weight: *const f32,
        taps: &[(usize, usize)],
        bias: *const f32,
        dst: &mut [f32],
        lo: f32,
        hi: f32,
    ) {
        let c = dst.len();
        let d = dst.as_mut_ptr();
        let vlo = _mm256_set1_ps(lo);
        let vhi = _mm256_set1_ps(hi);
        let mut c0 = 0;
        // SAFETY: every access is at channel < c of a tap (contract); the tail is masked.
        unsafe {
            while c0 + 32 <= c {
                let mut a0 = _mm256_loadu_ps(bias.add(c0));
                let mut a1 = _mm256_loadu_ps(bias.add(c0 + 8));
                let mut a2 = _mm256_loadu_ps(bias.add(c0 + 16));
                let mut a3 = _mm256_loadu_ps(bias.add(c0 + 24));
                for &(io, t) in taps {
                    let x = input.add(io + c0);
                    let k = weight.add(t * c + c0);
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x), _mm256_loadu_ps(k), a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x.add(8)), _mm256_loadu_ps(k.add(8)), a1);
                    a2 =
                        _mm256_fmadd_ps(_mm256_loadu_ps(x.add(16)), _mm256_loadu_ps(k.add(16)), a2);
                    a3 =
                        _mm256_fmadd_ps(_mm256_loadu_ps(x.add(24)), _mm256_loadu_ps(k.add(24)), a3);
                }
                _mm256_storeu_ps(d.add(c0), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a0)));
                _mm256_storeu_ps(d.add(c0 + 8), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a1)));
                _mm256_storeu_ps(d.add(c0 + 16), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a2)));
                _mm256_storeu_ps(d.add(c0 + 24), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a3)));
                c0 += 32;
            }
            while c0 < c {
                let n = (c - c0).min(8);
                let m = tail_mask(n);
                let mut a = _mm256_maskload_ps(bias.add(c0), m);
                for &(io, t) in taps {
                    a = _mm256_fmadd_ps(
                        _mm256_maskload_ps(input.add(io + c0), m),
                        _mm256_maskload_ps(weight.add(t * c + c0), m),
                        a,
                    );
                }
                _mm256_maskstore_ps(d.add(c0), m, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a)));
                c0 += n;
            }
        }
    }

    /// Geometry of an interior run of a `K`×`K` depthwise convolution, stride `S`,
    /// dilation 1 (see [`dw_run`]).
    pub(super) struct DwRun {
        /// Input offset (floats) of tap `(ky0, 0)` of the run's first pixel.
        pub input: *const f32,
        /// Pixels in the run.
        pub npx: usize,
        /// Input row stride (`w*c` floats).
        pub rs: usize,
        /// Channels.
        pub c: usize,
        /// Valid kernel rows `ky0..ky1` (every column is valid).
        pub ky: (usize, usize),
        /// `[K*K, c]` weights, `c` bias.
        pub weight: *const f32,
        pub bias: *const f32,
        /// `npx*c` outputs.
        pub dst: *mut f32,
        pub lo: f32,
        pub hi: f32,
    }

    /// `f32_dwconv_KxK_sS__avx2_fma`: a run of output pixels of a depthwise convolution
    /// whose kernel columns all lie inside the input: pixel `j`, tap `(ky, kx)` reads
    /// `input + (ky-ky0)*rs + (j*S + kx)*c`. Groups of 4 pixels walk the channels in
    /// 8-lane blocks; per kernel row the `3*S + K` input columns the group needs are
    /// loaded once and feed every pixel that uses them (stride 1: 6 loads for 12 FMAs
    /// at 3×3), so the inner loop is bound by FMAs, not loads, and the group's input
    /// (kernel rows × columns × channels) is read as `K` contiguous streams.
    ///
    /// # Safety
    /// AVX2+FMA; for every pixel, valid kernel row and column, the `c` floats at the
    /// address above are readable; `weight` holds `K*K*c` floats, `bias` `c`, `dst`
    /// `npx*c` writable.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dw_run<const K: usize, const S: usize>(r: &DwRun) {
        // SAFETY: forwarded contract; the ymm operations need AVX2+FMA (enabled here).
        unsafe { dw_groups::<Ymm, K, S>(r) }
    }

    /// Vector operations the depthwise run kernel is written over (8-lane ymm for
    /// AVX2, 16-lane zmm for AVX-512). The methods carry no target features of their
    /// own: they are always inlined into a `#[target_feature]` entry point, which
    /// provides them.
    pub(super) trait Lanes {
        type V: Copy;
        type M: Copy;
        const L: usize;
        /// Mask of the first `n < L` lanes.
        unsafe fn mask(n: usize) -> Self::M;
        /// All lanes when `FULL`, else those of `m` (the others read as zero).
        unsafe fn load<const FULL: bool>(p: *const f32, m: Self::M) -> Self::V;
        unsafe fn store<const FULL: bool>(p: *mut f32, m: Self::M, v: Self::V);
        unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn splat(x: f32) -> Self::V;
        /// `min(hi, max(lo, v))` (NaN propagates).
        unsafe fn clamp(v: Self::V, lo: Self::V, hi: Self::V) -> Self::V;
        unsafe fn zero() -> Self::V;
    }

    /// 8-lane ymm operations (AVX2+FMA).
    #[derive(Clone, Copy)]
    pub(super) struct Ymm;

    impl Lanes for Ymm {
        type V = __m256;
        type M = __m256i;
        const L: usize = 8;
        #[inline(always)]
        unsafe fn mask(n: usize) -> __m256i {
            // SAFETY: the caller has AVX2; n < 8.
            unsafe { tail_mask(n) }
        }
        #[inline(always)]
        unsafe fn load<const FULL: bool>(p: *const f32, m: __m256i) -> __m256 {
            // SAFETY: the caller has AVX2 and `p` valid per the lanes of `m`.
            unsafe {
                if FULL {
                    _mm256_loadu_ps(p)
                } else {
                    _mm256_maskload_ps(p, m)
                }
            }
        }
        #[inline(always)]
        unsafe fn store<const FULL: bool>(p: *mut f32, m: __m256i, v: __m256) {
            // SAFETY: as for `load`.
            unsafe {
                if FULL {
                    _mm256_storeu_ps(p, v)
                } else {
                    _mm256_maskstore_ps(p, m, v)
                }
            }
        }
        #[inline(always)]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            // SAFETY: the caller has AVX2+FMA.
            unsafe { _mm256_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> __m256 {
            // SAFETY: the caller has AVX2.
            unsafe { _mm256_set1_ps(x) }
        }
        #[inline(always)]
        unsafe fn clamp(v: __m256, lo: __m256, hi: __m256) -> __m256 {
            // SAFETY: the caller has AVX2.
            unsafe { _mm256_min_ps(hi, _mm256_max_ps(lo, v)) }
        }
        #[inline(always)]
        unsafe fn zero() -> __m256 {
            // SAFETY: the caller has AVX2.
            unsafe { _mm256_setzero_ps() }
        }
    }

    /// The pixels of a [`dw_run`] in groups (8 pixels share more input columns, 12
    /// loads for 40 FMAs per kernel row at 5x5; at 3x3, and on 7-wide maps, 4 measured
    /// faster), then one by one.
    ///
    /// # Safety
    /// As for `dw_run`; the caller enables the target features `V` needs.
    #[inline(always)]
    pub(super) unsafe fn dw_groups<V: Lanes, const K: usize, const S: usize>(r: &DwRun) {
        let np = if K == 5 && S == 1 { 8 } else { 4 };
        let full = r.npx / np * np;
        // SAFETY: each group covers pixels inside the run (contract).
        unsafe {
            let mut j = 0;
            while j < full {
                if np == 8 {
                    dw_group::<V, K, S, 8>(r, j);
                } else {
                    dw_group::<V, K, S, 4>(r, j);
                }
                j += np;
            }
            while j < r.npx {
                dw_group::<V, K, S, 1>(r, j);
                j += 1;
            }
        }
    }

    /// Pixels `j..j+NP` of a [`dw_run`], all channels in `V::L`-lane blocks (the last
    /// one masked).
    ///
    /// # Safety
    /// As for `dw_groups`, with `j + NP <= npx`.
    #[inline(always)]
    unsafe fn dw_group<V: Lanes, const K: usize, const S: usize, const NP: usize>(
        r: &DwRun,
        j: usize,
    ) {
        let c = r.c;
        // SAFETY: all addresses are the contract's taps at channels < c; the channel
        // tail is masked (masked-off lanes are neither read nor written).
        unsafe {
            let x0 = r.input.add(j * S * c);
            let d0 = r.dst.add(j * c);
            let (lo, hi) = (V::splat(r.lo), V::splat(r.hi));
            let mut c0 = 0;
            let none = V::mask(0); // unused by the FULL loads and stores
            while c0 + V::L <= c {
                let acc = dw_block::<V, K, S, NP, true>(r, x0.add(c0), c0, none);
                for (p, a) in acc.iter().enumerate() {
                    V::store::<true>(d0.add(p * c + c0), none, V::clamp(*a, lo, hi));
                }
                c0 += V::L;
            }
            if c0 < c {
                let m = V::mask(c - c0);
                let acc = dw_block::<V, K, S, NP, false>(r, x0.add(c0), c0, m);
                for (p, a) in acc.iter().enumerate() {
                    V::store::<false>(d0.add(p * c + c0), m, V::clamp(*a, lo, hi));
                }
            }
        }
    }

    /// One `V::L`-channel block (channels `c0..`, lanes per `m` unless `FULL`) of `NP`
    /// pixels starting at `x` (tap `(ky0, 0)` of the first pixel, channel `c0`).
    ///
    /// # Safety
    /// As for `dw_group`.
    #[inline(always)]
    unsafe fn dw_block<
        V: Lanes,
        const K: usize,
        const S: usize,
        const NP: usize,
        const FULL: bool,
    >(
        r: &DwRun,
        x: *const f32,
        c0: usize,
        m: V::M,
    ) -> [V::V; NP] {
        let c = r.c;
        // SAFETY: forwarded contract; masked lanes are never touched.
        unsafe {
            let mut acc = [V::load::<FULL>(r.bias.add(c0), m); NP];
            let (ky0, ky1) = r.ky;
            let mut row = x;
            for ky in ky0..ky1 {
                let wr = r.weight.add(ky * K * c + c0);
                let mut wv = [V::zero(); K];
                for (kx, v) in wv.iter_mut().enumerate() {
                    *v = V::load::<FULL>(wr.add(kx * c), m);
                }
                // Input column q feeds pixel p through tap kx = q - p*S.
                for q in 0..(NP - 1) * S + K {
                    let xv = V::load::<FULL>(row.add(q * c), m);
                    for (p, a) in acc.iter_mut().enumerate() {
                        if q >= p * S && q - p * S < K {
                            *a = V::fma(xv, wv[q - p * S], *a);
                        }
                    }
                }
                row = row.add(r.rs);
            }
            acc
        }
    }

    /// `a = x` where `x > a` or `x` is NaN (the scalar rule, so a NaN sticks).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn max_step(a: __m256, x: __m256) -> __m256 {
        let take = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(x, a),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(x, x),
        );
        _mm256_blendv_ps(a, x, take)
    }

    /// One output pixel of max pooling over the taps at `input + io` (`(io, _)` in
    /// `taps`), clamped; `-inf` (clamped) when there are no taps.
    ///
    /// # Safety
    /// AVX2 available; `input` valid at `io + ch` for every tap and `ch < dst.len()`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn max_pixel(
        input: *const f32,
        taps: &[(usize, usize)],
        dst: &mut [f32],
        lo: f32,
        hi: f32,
    ) {
        let c = dst.len();
        let d = dst.as_mut_ptr();
        let vlo = _mm256_set1_ps(lo);
        let vhi = _mm256_set1_ps(hi);
        let ninf = _mm256_set1_ps(f32::NEG_INFINITY);
        let mut c0 = 0;
        // SAFETY: every access is at channel < c of a tap (contract); the tail is masked.
        unsafe {
            while c0 + 32 <= c {
                let (mut a0, mut a1, mut a2, mut a3) = (ninf, ninf, ninf, ninf);
                for &(io, _) in taps {
                    let x = input.add(io + c0);
                    a0 = max_step(a0, _mm256_loadu_ps(x));
                    a1 = max_step(a1, _mm256_loadu_ps(x.add(8)));
                    a2 = max_step(a2, _mm256_loadu_ps(x.add(16)));
                    a3 = max_step(a3, _mm256_loadu_ps(x.add(24)));
                }
                _mm256_storeu_ps(d.add(c0), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a0)));
                _mm256_storeu_ps(d.add(c0 + 8), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a1)));
                _mm256_storeu_ps(d.add(c0 + 16), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a2)));
                _mm256_storeu_ps(d.add(c0 + 24), _mm256_min_ps(vhi, _mm256_max_ps(vlo, a3)));
                c0 += 32;
            }
            while c0 < c {
                let n = (c - c0).min(8);
                let m = tail_mask(n);
                let mut a = ninf;
                for &(io, _) in taps {
                    a = max_step(a, _mm256_maskload_ps(input.add(io + c0), m));
                }
                _mm256_maskstore_ps(d.add(c0), m, _mm256_min_ps(vhi, _mm256_max_ps(vlo, a)));
                c0 += n;
            }
        }
    }

    /// `R`-row × `8*H`-column variant of `f32_igemm_6x16__avx2_fma` (R ≤ 6, H ∈ {1, 2})
    /// for the last tile of a convolution or a half-empty panel: reads only the first
    /// `R` pointers of each segment and the first `H` vectors of each packed row, writes
    /// `R` rows (`mr` is ignored; `nr <= 8*H`).
    ///
    /// # Safety
    /// As for `f32_igemm_6x16__avx2_fma` with `mr == R`, `nr <= 8*H`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn f32_igemm_rxh__avx2_fma<const R: usize, const H: usize>(
        nseg: usize,
        seg: usize,
        a: *const *const f32,
        w: *const f32,
        bias: *const f32,
        c: *mut f32,
        ldc: usize,
        _mr: usize,
        nr: usize,
        lo: f32,
        hi: f32,
    ) {
        // SAFETY: as in the 6-row kernel, restricted to the first R pointers/rows.
        unsafe {
            let bias0 = _mm256_loadu_ps(bias);
            let bias1 = _mm256_loadu_ps(bias.add(8));
            let mut acc = [[bias0, bias1]; R];
            let mut wp = w;
            for s in 0..nseg {
                let mut ap = [std::ptr::null::<f32>(); R];
                for (r, p) in ap.iter_mut().enumerate() {
                    *p = *a.add(s * PS + r);
                }
                for q in 0..seg {
                    let mut b = [_mm256_setzero_ps(); H];
                    for (hh, bv) in b.iter_mut().enumerate() {
                        *bv = _mm256_load_ps(wp.add(8 * hh));
                    }
                    for r in 0..R {
                        let v = _mm256_broadcast_ss(&*ap[r].add(q));
                        for hh in 0..H {
                            acc[r][hh] = _mm256_fmadd_ps(v, b[hh], acc[r][hh]);
                        }
                    }
                    wp = wp.add(NR);
                }
            }
            let mut flat = [_mm256_setzero_ps(); 2 * MR];
            for r in 0..R {
                flat[2 * r] = acc[r][0];
                flat[2 * r + 1] = acc[r][1];
            }
            store_clamped(&flat, c, ldc, R, nr.min(8 * H), lo, hi);
        }
    }

    /// Clamp and store a ≤6×16 tile held as `acc[2*row + half]`.
    ///
    /// # Safety
    /// AVX2 available; `c` valid for `mr` rows × `nr` columns with stride `ldc`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn store_clamped(
        acc: &[__m256; 2 * MR],
        c: *mut f32,
        ldc: usize,
        mr: usize,
        nr: usize,
        lo: f32,
        hi: f32,
    ) {
        let lo = _mm256_set1_ps(lo);
        let hi = _mm256_set1_ps(hi);
        // SAFETY: rows < mr, columns < nr (masked), per the contract.
        unsafe {
            if nr == NR {
                for i in 0..mr.min(MR) {
                    let row = c.add(i * ldc);
                    _mm256_storeu_ps(row, _mm256_min_ps(hi, _mm256_max_ps(lo, acc[2 * i])));
                    _mm256_storeu_ps(
                        row.add(8),
                        _mm256_min_ps(hi, _mm256_max_ps(lo, acc[2 * i + 1])),
                    );
                }
            } else {
                let m0 = tail_mask(nr.min(8));
                let m1 = tail_mask(nr.saturating_sub(8));
                for i in 0..mr.min(MR) {
                    let row = c.add(i * ldc);
                    let v0 = _mm256_min_ps(hi, _mm256_max_ps(lo, acc[2 * i]));
                    let v1 = _mm256_min_ps(hi, _mm256_max_ps(lo, acc[2 * i + 1]));
                    _mm256_maskstore_ps(row, m0, v0);
                    if nr > 8 {
                        _mm256_maskstore_ps(row.add(8), m1, v1);
                    }
                }
            }
        }
    }
}

/// Window geometry shared by the NHWC depthwise convolution and pooling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    /// Stride `(h, w)`; 0 is read as 1.
    pub stride: (usize, usize),
    /// Dilation `(h, w)`; 0 is read as 1.
    pub dilation: (usize, usize),
    pub pad_top: usize,
    pub pad_left: usize,
}

/// First and one-past-last tap `k < kn` whose coordinate `o*s + k*d - pad` lies in
/// `0..size` (the valid taps are contiguous).
#[inline]
fn taps(o: usize, s: usize, d: usize, pad: usize, kn: usize, size: usize) -> (usize, usize) {
    let base = o * s;
    let mut k0 = 0;
    while k0 < kn && base + k0 * d < pad {
        k0 += 1;
    }
    let mut k1 = k0;
    while k1 < kn && base + k1 * d < pad + size {
        k1 += 1;
    }
    (k0, k1)
}

/// Splits `rows` output rows of `row_len` floats into tasks (about 8 per thread, at
/// least `min_work` floats each) and runs `f(first_row, row_count, out_rows)` on each.
fn par_rows<F>(out: &mut [f32], rows: usize, row_len: usize, min_work: usize, f: F)
where
    F: Fn(usize, usize, &mut [f32]) + Sync,
{
    let out = &mut out[..rows * row_len];
    let threads = num_threads();
    let by_work = (rows * row_len / min_work.max(1)).max(1);
    let tasks = rows.min(threads * 8).min(by_work).max(1);
    if tasks <= 1 || threads <= 1 {
        f(0, rows, out);
        return;
    }
    let per = div_ceil(rows, tasks);
    let tasks = div_ceil(rows, per);
    let op = SyncPtr(out.as_mut_ptr());
    parallel_for(tasks, |t| {
        let r0 = t * per;
        let r1 = (r0 + per).min(rows);
        // SAFETY: tasks own disjoint row ranges [r0, r1) of `out`, whose length was
        // checked by the slicing above.
        let chunk = unsafe {
            std::slice::from_raw_parts_mut(op.get().add(r0 * row_len), (r1 - r0) * row_len)
        };
        f(r0, r1 - r0, chunk);
    });
}

/// Valid taps of one output pixel: `(input offset relative to the first valid tap,
/// tap index)` per tap, cached while consecutive pixels share the same tap rectangle.
struct TapList {
    key: Option<(usize, usize, usize, usize)>,
    list: [(usize, usize); MAX_SEGS],
    len: usize,
    /// Largest relative input offset in `list`.
    max_rel: usize,
}

/// Calls `f(first, taps, dst)` for every output pixel of rows `r0..r0+nrows` (`out`
/// holds those rows): `first` is the input offset of the pixel's first valid tap and
/// `taps` its valid taps as `(offset relative to first, tap index ky*kw + kx)`, every
/// `first + rel + c <= input_len` (checked). Requires `kh*kw <= MAX_SEGS`.
///
/// Before the pixels of a row with at least one valid kernel row `ky0..ky1`,
/// `run(first, npx, (ky0, ky1), dst)` is offered its interior run (pixels whose kernel
/// columns are all inside the input; `first` is the input offset of tap (ky0, 0) of
/// the run's first pixel, every valid tap of every run pixel is in bounds, checked);
/// if it returns true those pixels are skipped.
#[allow(clippy::too_many_arguments)]
fn for_each_pixel<F, R>(
    input_len: usize,
    (h, w, c): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    r0: usize,
    nrows: usize,
    out: &mut [f32],
    mut run: R,
    mut f: F,
) where
    F: FnMut(usize, &[(usize, usize)], &mut [f32]),
    R: FnMut(usize, usize, (usize, usize), &mut [f32]) -> bool,
{
    let (sh, sw) = (win.stride.0.max(1), win.stride.1.max(1));
    let (dh, dw) = (win.dilation.0.max(1), win.dilation.1.max(1));
    let mut tl = TapList {
        key: None,
        list: [(0, 0); MAX_SEGS],
        len: 0,
        max_rel: 0,
    };
    let row_len = ow * c;
    for (ri, orow) in out.chunks_exact_mut(row_len).take(nrows).enumerate() {
        let (n, oy) = ((r0 + ri) / oh, (r0 + ri) % oh);
        let (ky0, ky1) = taps(oy, sh, dh, win.pad_top, win.kh, h);
        // Interior run: pixels whose kernel columns all lie inside the input.
        let mut done = (0, 0);
        let span_w = (win.kw - 1) * dw;
        if ky0 < ky1 && win.pad_left + w > span_w {
            let ox_lo = win.pad_left.div_ceil(sw);
            let ox_hi = (win.pad_left + w - span_w).div_ceil(sw).min(ow);
            if ox_lo < ox_hi {
                let iy0 = oy * sh + ky0 * dh - win.pad_top;
                let first = ((n * h + iy0) * w + ox_lo * sw - win.pad_left) * c;
                let last =
                    first + ((ky1 - 1 - ky0) * dh * w + (ox_hi - 1 - ox_lo) * sw + span_w) * c;
                assert!(last + c <= input_len, "window run out of bounds");
                if run(
                    first,
                    ox_hi - ox_lo,
                    (ky0, ky1),
                    &mut orow[ox_lo * c..ox_hi * c],
                ) {
                    done = (ox_lo, ox_hi);
                }
            }
        }
        for (ox, dst) in orow.chunks_exact_mut(c).enumerate() {
            if ox >= done.0 && ox < done.1 {
                continue;
            }
            let (kx0, kx1) = taps(ox, sw, dw, win.pad_left, win.kw, w);
            if ky0 == ky1 || kx0 == kx1 {
                f(0, &[], dst);
                continue;
            }
            let key = (ky0, ky1, kx0, kx1);
            if tl.key != Some(key) {
                tl.key = Some(key);
                tl.len = 0;
                for ky in ky0..ky1 {
                    for kx in kx0..kx1 {
                        let rel = ((ky - ky0) * dh * w + (kx - kx0) * dw) * c;
                        tl.list[tl.len] = (rel, ky * win.kw + kx);
                        tl.len += 1;
                    }
                }
                tl.max_rel = ((ky1 - 1 - ky0) * dh * w + (kx1 - 1 - kx0) * dw) * c;
            }
            let iy0 = oy * sh + ky0 * dh - win.pad_top;
            let ix0 = ox * sw + kx0 * dw - win.pad_left;
            let first = ((n * h + iy0) * w + ix0) * c;
            assert!(
                first + tl.max_rel + c <= input_len,
                "window tap out of bounds"
            );
            f(first, &tl.list[..tl.len], dst);
        }
    }
}

/// Depthwise convolution with channel multiplier 1, NHWC: `input` `[batch, h, w, c]`,
/// `weight` `[kh*kw, c]`, `bias` `[c]`, output `[batch, oh, ow, c]` clamped to
/// `[lo, hi]` (NaN propagates). Taps in the padding are skipped. Output rows are split
/// across the thread pool.
///
/// # Panics
/// If a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn depthwise_nhwc(
    input: &[f32],
    (batch, h, w, c): (usize, usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    (lo, hi): (f32, f32),
    output: &mut [f32],
) {
    let taps_n = win.kh * win.kw;
    assert!(
        input.len() >= batch * h * w * c,
        "depthwise_nhwc: input too short"
    );
    assert!(
        weight.len() >= taps_n * c,
        "depthwise_nhwc: weight too short"
    );
    assert!(bias.len() >= c, "depthwise_nhwc: bias too short");
    assert!(
        output.len() >= batch * oh * ow * c,
        "depthwise_nhwc: output too short"
    );
    if batch * oh == 0 || ow * c == 0 {
        return;
    }
    par_rows(output, batch * oh, ow * c, 1 << 11, |r0, nrows, out| {
        dw_rows(
            input,
            (h, w, c),
            win,
            (oh, ow),
            weight,
            bias,
            (lo, hi),
            (r0, nrows),
            out,
        )
    });
}

/// Depthwise rows `r0..r0+nrows` (counted over `batch * oh`) of [`depthwise_nhwc`]
/// into `out` (those rows), on the calling thread. Every output pixel's value depends
/// only on the input values its window reads, the geometry and the tier (the same
/// kernel and the same order of taps wherever the pixel's rows are computed), which
/// the fused pointwise + depthwise path relies on.
#[allow(clippy::too_many_arguments)]
pub(super) fn dw_rows(
    input: &[f32],
    (h, w, c): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    (lo, hi): (f32, f32),
    (r0, nrows): (usize, usize),
    out: &mut [f32],
) {
    let taps_n = win.kh * win.kw;
    let row_len = ow * c;
    // The kernels' safety rests on these (callers check them too).
    assert!(weight.len() >= taps_n * c && bias.len() >= c && out.len() >= nrows * row_len);
    let avx = isa() == Isa::Avx2Fma && cfg!(target_arch = "x86_64") && taps_n <= MAX_SEGS;
    let zmm = avx && crate::avx512();
    let sw = win.stride.1.max(1);
    let (dh, dw) = (win.dilation.0.max(1), win.dilation.1.max(1));
    if avx {
        #[cfg(target_arch = "x86_64")]
        for_each_pixel(
            input.len(),
            (h, w, c),
            win,
            (oh, ow),
            r0,
            nrows,
            out,
            |first, npx, ky, dst| {
                let k = win.kh;
                if k != win.kw || (dh, dw) != (1, 1) || !matches!((k, sw), (3 | 5, 1 | 2)) {
                    return false;
                }
                let r = x86::DwRun {
                    input: input[first..].as_ptr(),
                    npx,
                    rs: w * c,
                    c,
                    ky,
                    weight: weight.as_ptr(),
                    bias: bias.as_ptr(),
                    dst: dst.as_mut_ptr(),
                    lo,
                    hi,
                };
                // SAFETY: AVX2+FMA detected (isa()); `for_each_pixel` checked that
                // every valid tap of the `npx` run pixels lies inside `input`, with
                // the steps dw_run uses (row w*c, pixel sw*c, column c: dilation
                // 1); weight holds k*k*c floats and bias >= c (asserted above);
                // `dst` is exactly npx*c floats.
                // With `zmm`, AVX-512F was detected too (`avx512()`). 3x3 stride 2
                // measured 2-3% faster on ymm, the other shapes 4-25% on zmm.
                unsafe {
                    match (k, sw, zmm) {
                        (3, 1, true) => x512::dw_run::<3, 1>(&r),
                        (3, 1, false) => x86::dw_run::<3, 1>(&r),
                        (3, _, _) => x86::dw_run::<3, 2>(&r),
                        (_, 1, true) => x512::dw_run::<5, 1>(&r),
                        (_, 1, false) => x86::dw_run::<5, 1>(&r),
                        (_, _, true) => x512::dw_run::<5, 2>(&r),
                        (_, _, false) => x86::dw_run::<5, 2>(&r),
                    }
                };
                true
            },
            |first, taps, dst| {
                // SAFETY: AVX2+FMA detected (isa()); `for_each_pixel` checked that
                // every tap's `c` floats lie inside `input`; tap indices are below
                // kh*kw, so weight rows lie inside `weight` (asserted above); `bias`
                // holds >= c floats and `dst` exactly c.
                unsafe {
                    x86::dw_pixel(
                        input.as_ptr().add(first),
                        weight.as_ptr(),
                        taps,
                        bias.as_ptr(),
                        dst,
                        lo,
                        hi,
                    )
                }
            },
        );
        return;
    }
    for_each_pixel_scalar(
        (h, w, c),
        win,
        (oh, ow),
        r0,
        nrows,
        out,
        |n, iy, ix, t, dst, first| {
            if first {
                dst.copy_from_slice(&bias[..c]);
            }
            if let Some(t) = t {
                let px = &input[((n * h + iy) * w + ix) * c..][..c];
                let wt = &weight[t * c..][..c];
                for ((o, &x), &k) in dst.iter_mut().zip(px).zip(wt) {
                    *o += x * k;
                }
            }
        },
    );
    for o in out[..nrows * row_len].iter_mut() {
        *o = clamp_nan(*o, lo, hi);
    }
}

/// Scalar driver: for every output pixel calls `f(n, iy, ix, Some(tap), dst, is_first)`
/// per valid tap (or once with `None` when there is none), `is_first` on the first call.
#[allow(clippy::too_many_arguments)]
fn for_each_pixel_scalar<F>(
    (h, w, c): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    r0: usize,
    nrows: usize,
    out: &mut [f32],
    mut f: F,
) where
    F: FnMut(usize, usize, usize, Option<usize>, &mut [f32], bool),
{
    let (sh, sw) = (win.stride.0.max(1), win.stride.1.max(1));
    let (dh, dw) = (win.dilation.0.max(1), win.dilation.1.max(1));
    for (ri, orow) in out.chunks_exact_mut(ow * c).take(nrows).enumerate() {
        let (n, oy) = ((r0 + ri) / oh, (r0 + ri) % oh);
        let (ky0, ky1) = taps(oy, sh, dh, win.pad_top, win.kh, h);
        for (ox, dst) in orow.chunks_exact_mut(c).enumerate() {
            let (kx0, kx1) = taps(ox, sw, dw, win.pad_left, win.kw, w);
            let mut first = true;
            for ky in ky0..ky1 {
                let iy = oy * sh + ky * dh - win.pad_top;
                for kx in kx0..kx1 {
                    let ix = ox * sw + kx * dw - win.pad_left;
                    f(n, iy, ix, Some(ky * win.kw + kx), dst, first);
                    first = false;
                }
            }
            if first {
                f(n, 0, 0, None, dst, true);
            }
        }
    }
}

/// Max pooling, NHWC: output `[batch, oh, ow, c]` is the maximum over the in-bounds
/// taps (`-inf` when there are none), NaN if any tap is NaN, then clamped to
/// `[lo, hi]`.
///
/// # Panics
/// If a slice is shorter than its shape.
pub fn max_pool_nhwc(
    input: &[f32],
    (batch, h, w, c): (usize, usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    (lo, hi): (f32, f32),
    output: &mut [f32],
) {
    assert!(
        input.len() >= batch * h * w * c,
        "max_pool_nhwc: input too short"
    );
    assert!(
        output.len() >= batch * oh * ow * c,
        "max_pool_nhwc: output too short"
    );
    let row_len = ow * c;
    if batch * oh == 0 || row_len == 0 {
        return;
    }
    let avx = isa() == Isa::Avx2Fma && cfg!(target_arch = "x86_64") && win.kh * win.kw <= MAX_SEGS;
    par_rows(output, batch * oh, row_len, 1 << 13, |r0, nrows, out| {
        if avx {
            #[cfg(target_arch = "x86_64")]
            for_each_pixel(
                input.len(),
                (h, w, c),
                win,
                (oh, ow),
                r0,
                nrows,
                out,
                |_, _, _, _| false,
                |first, taps, dst| {
                    // SAFETY: AVX2 detected (isa()); `for_each_pixel` checked that every
                    // tap's `c` floats lie inside `input`; `dst` holds c floats.
                    unsafe { x86::max_pixel(input.as_ptr().add(first), taps, dst, lo, hi) }
                },
            );
            return;
        }
        for_each_pixel_scalar(
            (h, w, c),
            win,
            (oh, ow),
            r0,
            nrows,
            out,
            |n, iy, ix, t, dst, first| {
                if first {
                    dst.fill(f32::NEG_INFINITY);
                }
                if t.is_some() {
                    let px = &input[((n * h + iy) * w + ix) * c..][..c];
                    for (a, &x) in dst.iter_mut().zip(px) {
                        if x > *a || x.is_nan() {
                            *a = x;
                        }
                    }
                }
            },
        );
        for o in out[..nrows * row_len].iter_mut() {
            *o = clamp_nan(*o, lo, hi);
        }
    });
}
