//! A pointwise (1x1) convolution fused with the depthwise convolution that reads its
//! output (MobileNet's "expand" then "depthwise" steps), run in horizontal bands of
//! depthwise output rows so the expanded tensor is never written to memory.
//!
//! The output rows of every image are cut into *strips*, a few per thread (the tasks
//! of one `parallel_for`, numbered top to bottom). The pool hands each thread a
//! contiguous range of tasks, so a thread usually runs the strip just below its
//! previous one: it then starts from the expanded rows that strip left in its
//! scratch. Only where a thread's range starts (or a strip was taken by another
//! thread) are the `kh - stride` rows the two strips share computed twice.
//! A strip is walked in *bands* of a few output rows: for each band the expanded rows
//! its windows read (rows in the padding are not computed) are produced by the
//! pointwise convolution into a per-thread scratch (the thread-local scratch, at
//! most 512 KiB, so it stays in L2), then the depthwise convolution of the band reads
//! them there. Rows the previous band of the strip already computed (the `kh - stride`
//! rows the windows of neighbouring bands share) are moved to the top of the scratch
//! instead of being computed again, so only strip boundaries recompute rows.
//!
//! Both halves call the single-threaded forms of the unfused kernels
//! ([`ConvNhwc::run_pointwise_serial`], `dw_rows`) on the same values, so the
//! results are bit-identical to running [`ConvNhwc::run`] then
//! [`depthwise_nhwc`](super::depthwise_nhwc) on the whole tensor.

use super::{dw_rows, ConvNhwc, Residual, Window};
use crate::pool::{num_threads, parallel_for};
use crate::util::{div_ceil, with_scratch_kept, SyncPtr, INITIAL_SCRATCH};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most scratch floats a fused run may need per thread: half the per-thread scratch
/// reserved when the pool starts, so a fused run never grows it.
pub const FUSED_SCRATCH_FLOATS: usize = INITIAL_SCRATCH / 2;
/// Bytes of expanded rows a band aims to hold: half of Zen 4's 1 MiB L2. Taller
/// bands restart the kernels and carry overlap rows less often (`linalg-bench
/// --filter pw_dw`, 1 thread, 24->144 @56 3x3/1: 362 us with 64 KiB bands, 332 with
/// 128 KiB, 313 with 256 KiB, 301 with 512 KiB; 298 unfused in that loop, where the
/// expanded tensor stays in L3).
const BAND_BYTES: usize = FUSED_SCRATCH_FLOATS * 4;
/// Smallest expanded map (floats per image) worth fusing: below it the expanded
/// tensor stays in cache anyway, and the rows recomputed at strip boundaries and
/// the weights streamed once per band cost more than the traffic saved
/// (`linalg-bench --filter pw_dw`: 96->576 @14 and 160->960 @7 break even on 1
/// thread and are 5% / 4-40% slower fused on 2 (123 vs 129 us, 86-120 vs 123 us);
/// 32->192 @28 is 17% faster on 2 threads (82 vs 68 us); in mobilenet_v2 the
/// 112x112 and 56x56 pairs gain most).
pub const FUSE_MIN_FLOATS: usize = 128 * 1024;

/// Whether fusing pays for an expanded map of `h` x `w` x `c` (see
/// [`FUSE_MIN_FLOATS`]); [`pointwise_depthwise_nhwc`] runs any size.
pub fn pointwise_depthwise_pays(h: usize, w: usize, c: usize) -> bool {
    h.saturating_mul(w).saturating_mul(c) >= FUSE_MIN_FLOATS
}

/// Strips per thread (with several threads): enough for a thread held up by another
/// process to lose work to the others in pieces.
const STRIPS_PER_THREAD: usize = 4;

/// Numbers the fused runs, so that a thread only picks up rows it left in its
/// scratch during the same run.
static RUNS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// What this thread's scratch holds after its last strip: `(run, next task,
    /// first row, end row)`: expanded rows `first..end` of the image of `next task - 1`
    /// at the top of the scratch.
    static CARRY: Cell<(u64, usize, usize, usize)> = const { Cell::new((0, 0, 0, 0)) };
}

/// Rows of the window (`(kh - 1) * dh + 1`).
fn span(win: &Window) -> usize {
    (win.kh.max(1) - 1) * win.dilation.0.max(1) + 1
}

/// `(band output rows, scratch floats)` of a fused run over maps `w` pixels wide with
/// `c` expanded channels.
fn band_geometry(win: &Window, w: usize, c: usize) -> (usize, usize) {
    let rl = (w * c).max(1);
    let sh = win.stride.0.max(1);
    let span = span(win);
    let want_rows = (BAND_BYTES / 4 / rl).max(span);
    let band = (want_rows - span) / sh + 1;
    (band, ((band - 1) * sh + span).saturating_mul(rl))
}

/// Scratch floats per thread a fused run over `w`-pixel-wide maps with `c` expanded
/// channels needs, or `None` when even a one-row band would not fit in
/// [`FUSED_SCRATCH_FLOATS`] (then run the two convolutions separately).
pub fn pointwise_depthwise_scratch(win: &Window, w: usize, c: usize) -> Option<usize> {
    let need = span(win).checked_mul(w)?.checked_mul(c)?;
    if need > FUSED_SCRATCH_FLOATS || win.kh == 0 || win.kw == 0 {
        return None;
    }
    // At most max(BAND_BYTES / 4, need) floats: within the limit.
    Some(band_geometry(win, w, c).1)
}

/// Scratch floats per thread [`pointwise_depthwise_project_nhwc`] needs (the
/// expanded band and the depthwise band of `ow` output pixels per row), or `None`
/// when that exceeds the thread's reserved scratch (then do not fuse the projection).
pub fn pointwise_depthwise_project_scratch(
    win: &Window,
    w: usize,
    c: usize,
    ow: usize,
) -> Option<usize> {
    let expanded = pointwise_depthwise_scratch(win, w, c)?;
    let (band, _) = band_geometry(win, w, c);
    let total = band
        .checked_mul(ow)?
        .checked_mul(c)?
        .checked_add(expanded)?;
    (total <= 2 * FUSED_SCRATCH_FLOATS).then_some(total)
}

/// `depthwise(clamp(conv(input)))`: the pointwise convolution `conv` (clamped to
/// `conv_clamp`) of `input` (`[batch, h, w, in_c]`) gives the `[batch, h, w, c]`
/// tensor (`c = conv`'s `out_c`) that the depthwise convolution (`win`, `weight`
/// `[kh*kw, c]`, `bias` `[c]`, clamp `clamp`) reads, writing `output` `[batch, oh,
/// ow, c]`; that tensor is produced band by band in a per-thread scratch and never
/// stored whole. Same bits as running [`ConvNhwc::run`] then
/// [`depthwise_nhwc`](super::depthwise_nhwc).
///
/// # Panics
/// If `conv` is not pointwise, the geometry needs more scratch than
/// [`pointwise_depthwise_scratch`] allows, or a slice is shorter than its shape.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_depthwise_nhwc(
    conv: &ConvNhwc,
    conv_clamp: (f32, f32),
    input: &[f32],
    (batch, h, w): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    clamp: (f32, f32),
    output: &mut [f32],
) {
    pw_dw(
        conv,
        conv_clamp,
        input,
        (batch, h, w),
        win,
        (oh, ow),
        (weight, bias, clamp),
        None,
        output,
    );
}

/// The pointwise convolution that reads a fused depthwise convolution's output
/// ([`pointwise_depthwise_project_nhwc`]), with an optional residual add.
pub struct Projection<'a> {
    /// A pointwise convolution whose `in_c` is the depthwise channel count.
    pub conv: &'a ConvNhwc,
    /// Its clamp.
    pub clamp: (f32, f32),
    /// `[batch, oh, ow, out_c]` values added to its output, then clamped to
    /// `add_clamp` (as [`ConvNhwc::run_add`]); `None`: no add.
    pub residual: Option<&'a [f32]>,
    pub add_clamp: (f32, f32),
}

/// [`pointwise_depthwise_nhwc`] followed by the pointwise convolution `proj` of the
/// depthwise output (and its residual add): each band of depthwise rows goes to a
/// second per-thread scratch region and `proj` turns it into `output` rows (`[batch,
/// oh, ow, proj.conv.out_c]`) while it is still in L2, so neither the expanded
/// tensor nor the depthwise output is stored whole. Same bits as the three (four)
/// steps run apart.
///
/// # Panics
/// As [`pointwise_depthwise_nhwc`], and if `proj.conv` is not pointwise, its `in_c`
/// differs from the depthwise channels, or `output` or the residual is shorter than
/// its shape.
#[allow(clippy::too_many_arguments)]
pub fn pointwise_depthwise_project_nhwc(
    conv: &ConvNhwc,
    conv_clamp: (f32, f32),
    input: &[f32],
    (batch, h, w): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    weight: &[f32],
    bias: &[f32],
    clamp: (f32, f32),
    proj: &Projection<'_>,
    output: &mut [f32],
) {
    let pc = proj.conv.params();
    assert!(
        proj.conv.is_pointwise() && pc.in_c == conv.params().out_c,
        "pointwise_depthwise_project_nhwc: projection does not fit"
    );
    if let Some(r) = proj.residual {
        assert!(
            r.len() >= batch * oh * ow * pc.out_c,
            "pointwise_depthwise_project_nhwc: residual too short"
        );
    }
    pw_dw(
        conv,
        conv_clamp,
        input,
        (batch, h, w),
        win,
        (oh, ow),
        (weight, bias, clamp),
        Some(proj),
        output,
    );
}

#[allow(clippy::too_many_arguments)]
fn pw_dw(
    conv: &ConvNhwc,
    conv_clamp: (f32, f32),
    input: &[f32],
    (batch, h, w): (usize, usize, usize),
    win: &Window,
    (oh, ow): (usize, usize),
    (weight, bias, clamp): (&[f32], &[f32], (f32, f32)),
    proj: Option<&Projection<'_>>,
    output: &mut [f32],
) {
    assert!(
        conv.is_pointwise(),
        "pointwise_depthwise_nhwc: not a pointwise convolution"
    );
    let (cin, c) = (conv.params().in_c, conv.params().out_c);
    let scratch = pointwise_depthwise_scratch(win, w, c)
        .expect("pointwise_depthwise_nhwc: band does not fit the scratch");
    assert!(
        input.len() >= batch * h * w * cin,
        "pointwise_depthwise_nhwc: input too short"
    );
    assert!(
        weight.len() >= win.kh * win.kw * c && bias.len() >= c,
        "pointwise_depthwise_nhwc: weight or bias too short"
    );
    // Depthwise output row, and output row (the projection's when there is one).
    let row_dw = ow * c;
    let row_out = ow * proj.map_or(c, |p| p.conv.params().out_c);
    assert!(
        output.len() >= batch * oh * row_out,
        "pointwise_depthwise_nhwc: output too short"
    );
    if batch * oh == 0 || row_out == 0 {
        return;
    }
    let (band, _) = band_geometry(win, w, c);
    // With a projection, the band's depthwise rows go to a second scratch region.
    let dw_need = match proj {
        Some(_) => {
            pointwise_depthwise_project_scratch(win, w, c, ow)
                .expect("pointwise_depthwise_project_nhwc: bands do not fit the scratch")
                - scratch
        }
        None => 0,
    };
    let (sh, pt) = (win.stride.0.max(1), win.pad_top);
    let span = span(win);
    let rl = w * c;
    let threads = num_threads();
    let flops = 2.0 * (batch * h * w) as f64 * (cin * c) as f64;
    let strips = if threads > 1 && flops > 400_000.0 {
        div_ceil(threads * STRIPS_PER_THREAD, batch).min(oh)
    } else {
        1
    };
    let op = SyncPtr(output.as_mut_ptr());
    let run = RUNS.fetch_add(1, Ordering::Relaxed) + 1;
    let task = |t: usize| {
        let (n, j) = (t / strips, t % strips);
        let (s0, s1) = (j * oh / strips, (j + 1) * oh / strips);
        if s0 == s1 {
            return;
        }
        let x = &input[n * h * w * cin..(n + 1) * h * w * cin];
        // SAFETY: strip j of image n owns output rows s0..s1 of that image, disjoint
        // from every other task's, and inside `output` (length asserted above).
        let out = unsafe {
            std::slice::from_raw_parts_mut(
                op.get().add((n * oh + s0) * row_out),
                (s1 - s0) * row_out,
            )
        };
        with_scratch_kept(scratch + dw_need, |buf, kept| {
            let (buf, dw_buf) = buf.split_at_mut(scratch);
            // Expanded rows plo..phi of this image sit at the top of `buf`: none, or
            // when this thread ran the strip just above (its tasks are contiguous),
            // what that strip's last band left there.
            let (mut plo, mut phi) = (0usize, 0usize);
            let (crun, next, clo, chi) = CARRY.get();
            if kept && j > 0 && crun == run && next == t {
                (plo, phi) = (clo, chi);
            }
            let mut oy0 = s0;
            while oy0 < s1 {
                let oy1 = (oy0 + band).min(s1);
                // Input rows the band's windows read, clipped to the map.
                let top = oy0 * sh;
                let lo = top.saturating_sub(pt).min(h);
                let hi = ((oy1 - 1) * sh + span).saturating_sub(pt).clamp(lo, h);
                let first_new = if phi > lo && lo >= plo && phi > plo {
                    if lo > plo {
                        buf.copy_within((lo - plo) * rl..(phi - plo) * rl, 0);
                    }
                    phi
                } else {
                    lo
                };
                if hi > first_new {
                    let dst = &mut buf[(first_new - lo) * rl..(hi - lo) * rl];
                    let src = &x[first_new * w * cin..hi * w * cin];
                    conv.run_pointwise_serial(src, (hi - first_new) * w, dst, conv_clamp);
                }
                (plo, phi) = (lo, hi.max(first_new));
                // The band's rows as a map of `hi - lo` rows whose top padding makes
                // its row 0 global row `lo`: every output row keeps exactly the taps
                // that lie inside the whole map (lo..hi holds all of those).
                let bw = Window {
                    pad_top: (lo + pt).saturating_sub(top),
                    ..*win
                };
                let rows = oy1 - oy0;
                let dst = &mut out[(oy0 - s0) * row_out..(oy1 - s0) * row_out];
                let dw_dst = match proj {
                    Some(_) => &mut dw_buf[..rows * row_dw],
                    None => &mut *dst,
                };
                dw_rows(
                    &buf[..(hi - lo) * rl],
                    (hi - lo, w, c),
                    &bw,
                    (rows, ow),
                    weight,
                    bias,
                    clamp,
                    (0, rows),
                    dw_dst,
                );
                if let Some(pj) = proj {
                    pj.conv.run_pointwise_serial(
                        &dw_buf[..rows * row_dw],
                        rows * ow,
                        dst,
                        pj.clamp,
                    );
                    if let Some(r) = pj.residual {
                        let at = (n * oh + oy0) * row_out;
                        let res = Residual {
                            r,
                            lo: pj.add_clamp.0,
                            hi: pj.add_clamp.1,
                        };
                        res.apply(dst, &r[at..at + rows * row_out]);
                    }
                }
                oy0 = oy1;
            }
            CARRY.set((run, t + 1, plo, phi));
        });
    };
    parallel_for(batch * strips, task);
}
