mod common;

use common::{assert_close, for_each_tier, Rng};
use proptest::prelude::*;
use pteron_linalg::nhwc::{
    depthwise_nhwc, max_pool_nhwc, pointwise_depthwise_nhwc, pointwise_depthwise_project_nhwc,
    pointwise_depthwise_project_scratch, pointwise_depthwise_scratch, ConvNhwc, ConvNhwcParams,
    Projection, Window, WINOGRAD_MIN_PIXELS,
};
use pteron_linalg::{num_threads, reference, set_num_threads};

const TOL: f32 = 1e-4;

/// Natural output size for padding `pad` on both sides (at least 1).
fn out_size(inp: usize, k: usize, s: usize, pad: usize, d: usize) -> usize {
    let eff = d * (k - 1) + 1;
    ((inp + 2 * pad).saturating_sub(eff) / s + 1).max(1)
}

/// The output map `wn` gives on an `h` x `w` input (no extra padding rows).
fn natural_out(wn: &Window, (h, w): (usize, usize)) -> (usize, usize) {
    (
        out_size(h, wn.kh, wn.stride.0, wn.pad_top, wn.dilation.0),
        out_size(w, wn.kw, wn.stride.1, wn.pad_left, wn.dilation.1),
    )
}

#[allow(clippy::too_many_arguments)]
fn check(
    p: ConvNhwcParams,
    (batch, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    bias: bool,
    clamp: (f32, f32),
    seed: u64,
    ctx: &str,
) {
    let mut rng = Rng::new(seed);
    let input = rng.vec(batch * h * w * p.in_c);
    let weight = rng.vec(p.out_c * p.kh * p.kw * p.in_c);
    let b = rng.vec(p.out_c);
    let b = bias.then_some(&b[..]);
    let n_out = batch * oh * ow * p.out_c;
    let mut want = vec![0.0; n_out];
    reference::conv2d_nhwc(
        &p,
        &input,
        (batch, h, w),
        (oh, ow),
        &weight,
        b,
        clamp,
        &mut want,
    );
    let conv = ConvNhwc::new(p, &weight, b).expect("supported");
    let prev = num_threads();
    for threads in [1, 2, 3] {
        set_num_threads(threads);
        let mut got = vec![f32::NAN; n_out + 5];
        conv.run(&input, (batch, h, w), (oh, ow), &mut got, clamp);
        assert!(
            got[n_out..].iter().all(|v| v.is_nan()),
            "{ctx}: wrote past output"
        );
        assert_close(
            &got[..n_out],
            &want,
            TOL,
            &format!(
                "{ctx} threads={threads} {p:?} in={:?} out={:?}",
                (batch, h, w),
                (oh, ow)
            ),
        );
    }
    set_num_threads(prev);
}

#[allow(clippy::too_many_arguments)]
fn params(
    in_c: usize,
    out_c: usize,
    k: (usize, usize),
    stride: (usize, usize),
    dilation: (usize, usize),
    pad: (usize, usize),
) -> ConvNhwcParams {
    ConvNhwcParams {
        in_c,
        out_c,
        kh: k.0,
        kw: k.1,
        stride,
        dilation,
        pad_top: pad.0,
        pad_left: pad.1,
    }
}

fn natural(p: &ConvNhwcParams, h: usize, w: usize) -> (usize, usize) {
    (
        out_size(h, p.kh, p.stride.0, p.pad_top, p.dilation.0),
        out_size(w, p.kw, p.stride.1, p.pad_left, p.dilation.1),
    )
}

#[test]
fn nhwc_edge_shapes() {
    let inf = f32::INFINITY;
    let cases = [
        // 1x1 (MobileNet pointwise), N a multiple of 16, M not a multiple of 6.
        (
            params(16, 96, (1, 1), (1, 1), (1, 1), (0, 0)),
            (1, 11, 13),
            (0.0, 6.0),
        ),
        // N tails (1, 8, 13, 17, 33 columns).
        (
            params(5, 1, (1, 1), (1, 1), (1, 1), (0, 0)),
            (1, 3, 4),
            (-inf, inf),
        ),
        (
            params(24, 8, (1, 1), (1, 1), (1, 1), (0, 0)),
            (2, 5, 5),
            (-inf, inf),
        ),
        (
            params(7, 13, (1, 1), (1, 1), (1, 1), (0, 0)),
            (1, 7, 7),
            (0.0, inf),
        ),
        (
            params(9, 17, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 7, 7),
            (-inf, inf),
        ),
        (
            params(33, 33, (3, 3), (2, 2), (1, 1), (1, 1)),
            (2, 9, 8),
            (-0.5, 0.5),
        ),
        // Strided 1x1 (ResNet downsample), 3x3 stride 1/2, deep K.
        (
            params(20, 32, (1, 1), (2, 2), (1, 1), (0, 0)),
            (1, 14, 14),
            (-inf, inf),
        ),
        (
            params(64, 64, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 10, 12),
            (0.0, inf),
        ),
        (
            params(300, 40, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 7, 7),
            (0.0, inf),
        ),
        // First layers: 7x7/2 pad 3 and 3x3/2 on 3 channels.
        (
            params(3, 64, (7, 7), (2, 2), (1, 1), (3, 3)),
            (1, 30, 29),
            (0.0, inf),
        ),
        (
            params(3, 32, (3, 3), (2, 2), (1, 1), (1, 1)),
            (1, 23, 24),
            (0.0, 6.0),
        ),
        // Output rows of 15 and 29 pixels: 7-pixel tiles inside one row (pointers
        // affine in tap row and pixel), tiles across rows and images, a tile ending
        // early (the last one), and the padded top and bottom rows.
        (
            params(3, 32, (3, 3), (2, 2), (1, 1), (1, 1)),
            (2, 30, 30),
            (0.0, 6.0),
        ),
        (
            params(4, 24, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 5, 29),
            (-inf, inf),
        ),
        // Dilation, non-square kernels and strides, padding only on one side.
        (
            params(6, 10, (3, 3), (1, 1), (2, 2), (2, 2)),
            (1, 9, 9),
            (-inf, inf),
        ),
        (
            params(4, 18, (1, 5), (1, 2), (1, 1), (0, 2)),
            (1, 6, 11),
            (-inf, inf),
        ),
        (
            params(4, 18, (5, 2), (3, 1), (1, 3), (1, 0)),
            (1, 12, 9),
            (-inf, inf),
        ),
        // AVX-512 tier: panel pairs with a partial or a lone last panel (24, 40, 56, 48
        // columns), 7x7 maps (M = 49 = 7 tiles of 7), several panel blocks (deep K).
        (
            params(16, 24, (1, 1), (1, 1), (1, 1), (0, 0)),
            (1, 7, 7),
            (0.0, 6.0),
        ),
        (
            params(12, 40, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 9, 5),
            (-inf, inf),
        ),
        (
            params(10, 56, (3, 3), (2, 1), (1, 1), (1, 0)),
            (1, 11, 9),
            (-0.5, 0.5),
        ),
        (
            params(32, 48, (1, 1), (1, 1), (1, 1), (0, 0)),
            (1, 8, 8),
            (-inf, inf),
        ),
        (
            params(420, 80, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 7, 7),
            (0.0, inf),
        ),
        // Kernel larger than the input (every tap row partly in the padding).
        (
            params(2, 3, (5, 5), (1, 1), (1, 1), (2, 2)),
            (1, 2, 3),
            (-inf, inf),
        ),
    ];
    for_each_tier(|isa| {
        for (i, (p, (b, h, w), clamp)) in cases.iter().enumerate() {
            let ctx = format!("{isa} case {i}");
            let out = natural(p, *h, *w);
            check(*p, (*b, *h, *w), out, i % 2 == 0, *clamp, i as u64, &ctx);
        }
        // An output larger than the natural one (asymmetric padding at the far side).
        let p = params(8, 20, (3, 3), (2, 2), (1, 1), (1, 1));
        check(
            p,
            (1, 8, 8),
            (5, 6),
            true,
            (-inf, inf),
            99,
            &format!("{isa} far pad"),
        );
    });
}

#[test]
fn nhwc_nan_propagates_and_rejects_bad_params() {
    for_each_tier(|isa| {
        let p = params(4, 5, (1, 1), (1, 1), (1, 1), (0, 0));
        let w = vec![1.0; 20];
        let conv = ConvNhwc::new(p, &w, None).unwrap();
        let mut input = vec![0.5; 4 * 4];
        input[6] = f32::NAN;
        let mut out = vec![0.0; 4 * 5];
        conv.run(&input, (1, 2, 2), (2, 2), &mut out, (0.0, 1.0));
        for (i, v) in out.iter().enumerate() {
            assert_eq!(v.is_nan(), i / 5 == 1, "{isa} [{i}] = {v}");
        }
    });
    let p = params(4, 5, (1, 1), (1, 1), (1, 1), (0, 0));
    assert!(ConvNhwc::new(p, &[0.0; 19], None).is_none());
    assert!(ConvNhwc::new(p, &[0.0; 20], Some(&[0.0; 4])).is_none());
    let big = params(1, 1, (9, 9), (1, 1), (1, 1), (0, 0));
    assert!(ConvNhwc::new(big, &[0.0; 81], None).is_none());
    let zs = params(1, 1, (1, 1), (0, 1), (1, 1), (0, 0));
    assert!(ConvNhwc::new(zs, &[0.0; 1], None).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn nhwc_random(
        in_c in 1usize..20, out_c in 1usize..72, k in (1usize..5, 1usize..5),
        s in (1usize..4, 1usize..4), d in (1usize..3, 1usize..3), pad in (0usize..3, 0usize..3),
        batch in 1usize..3, hw in (1usize..12, 1usize..12), extra in (0usize..2, 0usize..2),
        bias: bool, act in 0usize..3, seed: u64,
    ) {
        let p = params(in_c, out_c, k, s, d, pad);
        let (oh, ow) = natural(&p, hw.0, hw.1);
        let clamp = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, f32::INFINITY), (-0.3, 0.2)][act];
        for_each_tier(|isa| {
            check(p, (batch, hw.0, hw.1), (oh + extra.0, ow + extra.1), bias, clamp, seed, isa);
        });
    }
}

/// 3x3 stride-1 convolutions with at least 16 input and output channels and maps of
/// at least [`WINOGRAD_MIN_PIXELS`] output pixels take the Winograd F(2x2, 3x3) path: odd map sizes
/// (partial tiles), channel counts off the 16-lane and 16-column grids, padding 0..2,
/// outputs larger than the natural size, batches, clamps, 1/2/3 threads per tier.
#[test]
fn nhwc_winograd_edge_shapes() {
    let inf = f32::INFINITY;
    let cases = [
        (
            params(16, 16, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 10, 10),
            (-inf, inf),
        ),
        (
            params(17, 33, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 10, 11),
            (0.0, inf),
        ),
        (
            params(64, 64, (3, 3), (1, 1), (1, 1), (1, 1)),
            (2, 13, 12),
            (0.0, 6.0),
        ),
        (
            params(20, 40, (3, 3), (1, 1), (1, 1), (0, 0)),
            (1, 13, 12),
            (-0.5, 0.5),
        ),
        (
            params(31, 24, (3, 3), (1, 1), (1, 1), (2, 2)),
            (1, 8, 9),
            (-inf, inf),
        ),
        (
            params(48, 100, (3, 3), (1, 1), (1, 1), (1, 0)),
            (3, 10, 12),
            (0.0, inf),
        ),
        (
            params(128, 128, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 15, 14),
            (0.0, inf),
        ),
        (
            params(160, 160, (3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 10, 11),
            (-inf, inf),
        ),
    ];
    for_each_tier(|isa| {
        for (i, (p, (b, h, w), clamp)) in cases.iter().enumerate() {
            let ctx = format!("{isa} winograd case {i}");
            let (oh, ow) = natural(p, *h, *w);
            assert!(
                oh * ow >= WINOGRAD_MIN_PIXELS,
                "{ctx}: map too small for the Winograd path"
            );
            check(
                *p,
                (*b, *h, *w),
                (oh, ow),
                i % 2 == 0,
                *clamp,
                40 + i as u64,
                &ctx,
            );
            check(
                *p,
                (*b, *h, *w),
                (oh + 1, ow + 2),
                true,
                *clamp,
                50 + i as u64,
                &ctx,
            );
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn nhwc_winograd_random(
        in_c in 16usize..70, out_c in 16usize..70, pad in (0usize..3, 0usize..3),
        batch in 1usize..3, hw in (10usize..20, 10usize..20), extra in (0usize..2, 0usize..2),
        bias: bool, act in 0usize..3, seed: u64,
    ) {
        let p = params(in_c, out_c, (3, 3), (1, 1), (1, 1), pad);
        let (oh, ow) = natural(&p, hw.0, hw.1);
        let clamp = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, f32::INFINITY), (-0.3, 0.2)][act];
        for_each_tier(|isa| {
            check(p, (batch, hw.0, hw.1), (oh + extra.0, ow + extra.1), bias, clamp, seed, isa);
        });
    }
}

fn win(k: (usize, usize), s: (usize, usize), d: (usize, usize), pad: (usize, usize)) -> Window {
    Window {
        kh: k.0,
        kw: k.1,
        stride: s,
        dilation: d,
        pad_top: pad.0,
        pad_left: pad.1,
    }
}

/// Depthwise and max pooling against the oracles (NaNs sprinkled into the pool input).
fn check_window(
    wn: Window,
    (batch, h, w, c): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
    clamp: (f32, f32),
    seed: u64,
    ctx: &str,
) {
    let mut rng = Rng::new(seed);
    let input = rng.vec(batch * h * w * c);
    let weight = rng.vec(wn.kh * wn.kw * c);
    let bias = rng.vec(c);
    let n_out = batch * oh * ow * c;
    let dims = (batch, h, w, c);
    let mut want = vec![0.0; n_out];
    reference::depthwise_nhwc(
        &input,
        dims,
        &wn,
        (oh, ow),
        &weight,
        &bias,
        clamp,
        &mut want,
    );
    let mut pin = input.clone();
    for i in (0..pin.len()).step_by(37) {
        pin[i] = f32::NAN;
    }
    let mut want_p = vec![0.0; n_out];
    reference::max_pool_nhwc(&pin, dims, &wn, (oh, ow), clamp, &mut want_p);
    let prev = num_threads();
    for threads in [1, 2, 3] {
        set_num_threads(threads);
        let ctx = format!("{ctx} threads={threads} {wn:?} {dims:?} -> {:?}", (oh, ow));
        let mut got = vec![f32::NAN; n_out + 3];
        depthwise_nhwc(&input, dims, &wn, (oh, ow), &weight, &bias, clamp, &mut got);
        assert!(
            got[n_out..].iter().all(|v| v.is_nan()),
            "{ctx}: wrote past output"
        );
        assert_close(&got[..n_out], &want, TOL, &format!("{ctx} depthwise"));
        let mut got = vec![f32::NAN; n_out + 3];
        max_pool_nhwc(&pin, dims, &wn, (oh, ow), clamp, &mut got);
        assert!(
            got[n_out..].iter().all(|v| v.is_nan()),
            "{ctx}: wrote past output"
        );
        assert_close(&got[..n_out], &want_p, 0.0, &format!("{ctx} max pool"));
    }
    set_num_threads(prev);
}

#[test]
fn nhwc_depthwise_and_pool_edge_shapes() {
    let inf = f32::INFINITY;
    let cases = [
        // MobileNet: 3x3 s1/s2 pad 1 with 32/96/144 channels; ResNet max pool 3x3/2.
        (
            win((3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 9, 10, 32),
            (0.0, 6.0),
        ),
        (
            win((3, 3), (2, 2), (1, 1), (1, 1)),
            (1, 11, 11, 96),
            (0.0, 6.0),
        ),
        (
            win((3, 3), (1, 1), (1, 1), (1, 1)),
            (2, 4, 4, 144),
            (-inf, inf),
        ),
        // Channel tails (1, 5, 8, 13, 40), dilation, 5x5, 1xN / Nx1, stride 3.
        (
            win((3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 5, 5, 1),
            (-inf, inf),
        ),
        (
            win((3, 3), (2, 1), (2, 2), (2, 2)),
            (1, 8, 7, 5),
            (-0.5, 0.5),
        ),
        (
            win((5, 5), (1, 1), (1, 1), (2, 2)),
            (1, 6, 6, 8),
            (-inf, inf),
        ),
        (
            win((1, 4), (1, 3), (1, 1), (0, 1)),
            (1, 3, 10, 13),
            (0.0, inf),
        ),
        (
            win((2, 1), (2, 1), (1, 1), (0, 0)),
            (1, 7, 3, 40),
            (-inf, inf),
        ),
        // Kernel larger than the input.
        (
            win((5, 5), (1, 1), (1, 1), (2, 2)),
            (1, 2, 1, 9),
            (-inf, inf),
        ),
        // The K×K stride 1/2 run kernels (f32_dwconv_{3x3,5x5}_s{1,2}): rows of 4-pixel
        // groups plus 1..3 leftover pixels, channel tails, clipped top/bottom rows,
        // asymmetric and zero padding.
        (
            win((3, 3), (1, 1), (1, 1), (1, 1)),
            (1, 6, 15, 17),
            (0.0, 6.0),
        ),
        (
            win((3, 3), (2, 2), (1, 1), (0, 1)),
            (2, 9, 18, 24),
            (-inf, inf),
        ),
        (
            win((5, 5), (1, 1), (1, 1), (2, 2)),
            (1, 7, 14, 9),
            (-0.5, 0.5),
        ),
        (
            win((5, 5), (2, 2), (1, 1), (2, 1)),
            (1, 12, 21, 40),
            (0.0, inf),
        ),
        (
            win((3, 3), (1, 1), (1, 1), (0, 0)),
            (1, 5, 13, 3),
            (-inf, inf),
        ),
    ];
    for_each_tier(|isa| {
        for (i, (wn, dims, clamp)) in cases.iter().enumerate() {
            let (oh, ow) = natural_out(wn, (dims.1, dims.2));
            check_window(
                *wn,
                *dims,
                (oh, ow),
                *clamp,
                i as u64,
                &format!("{isa} case {i}"),
            );
        }
        // Output larger than natural: whole rows/columns of padding (no taps).
        let wn = win((2, 2), (2, 2), (1, 1), (0, 0));
        check_window(
            wn,
            (1, 4, 4, 11),
            (3, 4),
            (-inf, inf),
            77,
            &format!("{isa} far pad"),
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn nhwc_window_random(
        c in 1usize..50, k in (1usize..5, 1usize..5), s in (1usize..4, 1usize..4),
        d in (1usize..3, 1usize..3), pad in (0usize..3, 0usize..3), batch in 1usize..3,
        hw in (1usize..10, 1usize..10), extra in (0usize..2, 0usize..2), act in 0usize..3, seed: u64,
    ) {
        let wn = win(k, s, d, pad);
        let oh = out_size(hw.0, k.0, s.0, pad.0, d.0) + extra.0;
        let ow = out_size(hw.1, k.1, s.1, pad.1, d.1) + extra.1;
        let clamp = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, 6.0), (-0.3, 0.2)][act];
        for_each_tier(|isa| {
            check_window(wn, (batch, hw.0, hw.1, c), (oh, ow), clamp, seed, isa);
        });
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
    /// Square 3x3 / 5x5 windows with stride 1 or 2 and dilation 1 (the shapes that take
    /// the vectorized run kernels), on rows wide enough for several pixel groups.
    #[test]
    fn nhwc_depthwise_run_random(
        c in 1usize..40, k in prop::sample::select(vec![3usize, 5]), s in (1usize..3, 1usize..3),
        pad in (0usize..3, 0usize..3), batch in 1usize..3, hw in (1usize..12, 1usize..24),
        act in 0usize..3, seed: u64,
    ) {
        let wn = win((k, k), s, (1, 1), pad);
        let oh = out_size(hw.0, k, s.0, pad.0, 1);
        let ow = out_size(hw.1, k, s.1, pad.1, 1);
        let clamp = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, 6.0), (-0.3, 0.2)][act];
        for_each_tier(|isa| {
            check_window(wn, (batch, hw.0, hw.1, c), (oh, ow), clamp, seed, isa);
        });
    }
}

/// Fused pointwise + depthwise against the two unfused kernels on the whole tensor
/// (`ConvNhwc::run`, then `depthwise_nhwc`): the same bits, at 1-3 threads.
#[allow(clippy::too_many_arguments)]
fn check_fused(
    (cin, c): (usize, usize),
    wn: Window,
    (batch, h, w): (usize, usize, usize),
    (oh, ow): (usize, usize),
    conv_clamp: (f32, f32),
    clamp: (f32, f32),
    seed: u64,
    ctx: &str,
) {
    let mut rng = Rng::new(seed);
    let input = rng.vec(batch * h * w * cin);
    let pw = rng.vec(c * cin);
    let pb = rng.vec(c);
    let dw = rng.vec(wn.kh * wn.kw * c);
    let db = rng.vec(c);
    let conv = ConvNhwc::new(ConvNhwcParams::pointwise(cin, c), &pw, Some(&pb)).expect("supported");
    assert!(
        pointwise_depthwise_scratch(&wn, w, c).is_some(),
        "{ctx}: fits"
    );
    let n_out = batch * oh * ow * c;
    let prev = num_threads();
    for threads in [1, 2, 3] {
        set_num_threads(threads);
        let ctx = format!(
            "{ctx} threads={threads} {cin}->{c} {wn:?} {:?} -> {:?}",
            (batch, h, w),
            (oh, ow)
        );
        let mut mid = vec![0.0; batch * h * w * c];
        conv.run(&input, (batch, h, w), (h, w), &mut mid, conv_clamp);
        let mut want = vec![0.0; n_out];
        depthwise_nhwc(
            &mid,
            (batch, h, w, c),
            &wn,
            (oh, ow),
            &dw,
            &db,
            clamp,
            &mut want,
        );
        let mut got = vec![f32::NAN; n_out + 3];
        pointwise_depthwise_nhwc(
            &conv,
            conv_clamp,
            &input,
            (batch, h, w),
            &wn,
            (oh, ow),
            &dw,
            &db,
            clamp,
            &mut got,
        );
        assert_fused_bits(&got, &want, &ctx);
        if pointwise_depthwise_project_scratch(&wn, w, c, ow).is_some() {
            check_projected(
                &conv,
                conv_clamp,
                &input,
                (batch, h, w),
                &wn,
                (oh, ow),
                (&dw, &db, clamp),
                &want,
                seed,
                &ctx,
            );
        }
    }
    set_num_threads(prev);
}

/// The fused projection (`pointwise_depthwise_project_nhwc`) against a pointwise
/// `ConvNhwc::run` of the unfused depthwise output `dw_out`, then (odd seeds) an
/// elementwise add of a residual and its clamp: the same bits.
#[allow(clippy::too_many_arguments)]
fn check_projected(
    conv: &ConvNhwc,
    conv_clamp: (f32, f32),
    input: &[f32],
    (batch, h, w): (usize, usize, usize),
    wn: &Window,
    (oh, ow): (usize, usize),
    (dw, db, clamp): (&[f32], &[f32], (f32, f32)),
    dw_out: &[f32],
    seed: u64,
    ctx: &str,
) {
    let c = conv.params().out_c;
    let mut rng = Rng::new(seed ^ 0x5eed);
    let pco = 1 + (seed as usize % 37);
    let pw = rng.vec(pco * c);
    let pb = rng.vec(pco);
    let proj = ConvNhwc::new(ConvNhwcParams::pointwise(c, pco), &pw, Some(&pb)).expect("supported");
    let n = batch * oh * ow * pco;
    let residual = rng.vec(n);
    let with_add = seed % 2 == 1;
    let (pclamp, aclamp) = ((-0.4, 0.7), (-0.5, 0.6));
    let mut want = vec![0.0; n];
    proj.run(dw_out, (batch, oh, ow), (oh, ow), &mut want, pclamp);
    if with_add {
        for (o, &r) in want.iter_mut().zip(&residual) {
            let v = *o + r;
            *o = if v < aclamp.0 {
                aclamp.0
            } else if v > aclamp.1 {
                aclamp.1
            } else {
                v
            };
        }
    }
    let pj = Projection {
        conv: &proj,
        clamp: pclamp,
        residual: with_add.then_some(&residual[..]),
        add_clamp: aclamp,
    };
    let mut got = vec![f32::NAN; n + 3];
    pointwise_depthwise_project_nhwc(
        conv,
        conv_clamp,
        input,
        (batch, h, w),
        wn,
        (oh, ow),
        dw,
        db,
        clamp,
        &pj,
        &mut got,
    );
    assert_fused_bits(&got, &want, &format!("{ctx} projected (add {with_add})"));
}

/// `got` (the fused result, NaN-filled past the output) holds `want`'s bits and
/// nothing was written past them.
fn assert_fused_bits(got: &[f32], want: &[f32], ctx: &str) {
    let n = want.len();
    assert!(
        got[n..].iter().all(|v| v.is_nan()),
        "{ctx}: wrote past output"
    );
    for (i, (g, e)) in got[..n].iter().zip(want).enumerate() {
        assert!(
            g.to_bits() == e.to_bits(),
            "{ctx}: [{i}] fused {g} != unfused {e}"
        );
    }
}

#[test]
fn nhwc_fused_pointwise_depthwise_edge_shapes() {
    let inf = f32::INFINITY;
    let r6 = (0.0, 6.0);
    let none = (-inf, inf);
    #[rustfmt::skip]
    let cases = [
        // MobileNet-like: expand then 3x3 s1/s2 pad 1.
        ((16, 96), win((3, 3), (2, 2), (1, 1), (1, 1)), (1, 12, 12), r6, r6),
        ((24, 144), win((3, 3), (1, 1), (1, 1), (1, 1)), (1, 9, 8), r6, r6),
        // Wide rows (several bands per strip, overlap rows carried between bands).
        ((7, 190), win((3, 3), (1, 1), (1, 1), (1, 1)), (1, 13, 70), r6, none),
        ((5, 190), win((3, 3), (2, 2), (1, 1), (1, 1)), (2, 15, 71), none, r6),
        ((3, 201), win((5, 5), (1, 1), (1, 1), (2, 2)), (1, 11, 66), (-0.5, 0.5), none),
        ((9, 170), win((5, 5), (2, 2), (1, 1), (2, 1)), (1, 17, 80), none, (-0.3, 0.2)),
        ((4, 150), win((3, 3), (1, 1), (1, 1), (0, 0)), (1, 12, 90), none, none),
        // 1-row and 1-column maps, odd sizes, channel tails, batch 2.
        ((3, 5), win((3, 3), (1, 1), (1, 1), (1, 1)), (1, 1, 7), r6, r6),
        ((3, 13), win((3, 3), (2, 2), (1, 1), (1, 1)), (1, 9, 1), none, none),
        ((1, 1), win((3, 3), (1, 1), (1, 1), (1, 1)), (1, 1, 1), none, none),
        ((17, 33), win((5, 5), (2, 2), (1, 1), (2, 2)), (2, 7, 9), r6, (-1.0, 1.0)),
        ((8, 40), win((3, 3), (2, 2), (1, 1), (0, 0)), (2, 6, 6), (0.0, inf), none),
        // Padding 2 with a 3x3 window (whole rows of padding), dilation, 1xN.
        ((6, 24), win((3, 3), (1, 1), (1, 1), (2, 2)), (1, 4, 5), none, none),
        ((6, 20), win((3, 3), (1, 1), (2, 2), (2, 2)), (1, 8, 9), r6, none),
        ((6, 11), win((1, 4), (1, 3), (1, 1), (0, 1)), (1, 3, 10), none, r6),
    ];
    for_each_tier(|isa| {
        for (i, (ch, wn, dims, cc, dc)) in cases.iter().enumerate() {
            let (oh, ow) = natural_out(wn, (dims.1, dims.2));
            check_fused(
                *ch,
                *wn,
                *dims,
                (oh, ow),
                *cc,
                *dc,
                i as u64,
                &format!("{isa} case {i}"),
            );
        }
        // Output taller than natural: bands made only of padding rows.
        let wn = win((3, 3), (2, 2), (1, 1), (1, 1));
        check_fused(
            (4, 9),
            wn,
            (1, 5, 5),
            (6, 3),
            none,
            none,
            99,
            &format!("{isa} far pad"),
        );
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn nhwc_fused_pointwise_depthwise_random(
        cin in 1usize..20, c in 1usize..200, k in prop::sample::select(vec![1usize, 3, 5]),
        s in (1usize..3, 1usize..3), pad in (0usize..3, 0usize..3), batch in 1usize..3,
        hw in (1usize..20, 1usize..80), act in (0usize..3, 0usize..3), seed: u64,
    ) {
        let wn = win((k, k), s, (1, 1), pad);
        let oh = out_size(hw.0, k, s.0, pad.0, 1);
        let ow = out_size(hw.1, k, s.1, pad.1, 1);
        let cl = [(f32::NEG_INFINITY, f32::INFINITY), (0.0, 6.0), (-0.3, 0.2)];
        for_each_tier(|isa| {
            check_fused((cin, c), wn, (batch, hw.0, hw.1), (oh, ow), cl[act.0], cl[act.1], seed, isa);
        });
    }
}
