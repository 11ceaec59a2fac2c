mod common;

use common::{assert_close, for_each_isa, Rng};
use proptest::prelude::*;
use pteron_linalg::{
    conv2d, conv_transpose2d, reference, Activation, Conv2d, Conv2dParams, ConvTranspose2dParams,
};

const TOL: f32 = 1e-4;

fn check_conv(p: &Conv2dParams, act: Activation, with_bias: bool, seed: u64, ctx: &str) {
    let (oh, ow) = p.out_hw().expect("valid params");
    let mut rng = Rng::new(seed);
    let input = rng.vec(p.batch * p.in_c * p.in_h * p.in_w);
    let weight = rng.vec(p.out_c * (p.in_c / p.groups) * p.k_h * p.k_w);
    let bias = rng.vec(p.out_c);
    let bias = with_bias.then_some(&bias[..]);
    let out_len = p.batch * p.out_c * oh * ow;
    let mut want = vec![0.0; out_len];
    reference::conv2d(p, &input, &weight, bias, act, &mut want);
    // Prepared conv, output pre-filled with NaN garbage (must be fully overwritten).
    let conv = Conv2d::new(*p, &weight, bias, act).expect("new");
    let mut scratch = vec![0.0; p.scratch_len()];
    let mut got = vec![f32::NAN; out_len + 3];
    conv.run(&input, &mut got, &mut scratch);
    assert!(
        got[out_len..].iter().all(|v| v.is_nan()),
        "{ctx}: wrote past output"
    );
    assert_close(&got[..out_len], &want, TOL, &format!("{ctx} {p:?} {act:?}"));
    // One-shot API gives the same.
    let mut got2 = vec![0.0; out_len];
    conv2d(p, &input, &weight, bias, act, &mut got2, &mut scratch).expect("conv2d");
    assert_close(&got2, &want, TOL, &format!("{ctx} oneshot {p:?}"));
}

#[allow(clippy::too_many_arguments)]
fn params(
    batch: usize,
    in_c: usize,
    hw: (usize, usize),
    out_c: usize,
    k: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> Conv2dParams {
    Conv2dParams {
        batch,
        in_c,
        in_h: hw.0,
        in_w: hw.1,
        out_c,
        k_h: k.0,
        k_w: k.1,
        stride,
        padding,
        dilation,
        groups,
    }
}

#[test]
fn conv_pointwise() {
    for_each_isa(|isa| {
        let ctx = format!("{isa:?}");
        check_conv(
            &params(1, 32, (20, 21), 16, (1, 1), (1, 1), (0, 0), (1, 1), 1),
            Activation::Relu6,
            true,
            1,
            &ctx,
        );
        check_conv(
            &params(2, 7, (5, 3), 13, (1, 1), (1, 1), (0, 0), (1, 1), 1),
            Activation::None,
            false,
            2,
            &ctx,
        );
        // Grouped 1x1 and strided/padded 1x1 (im2col path).
        check_conv(
            &params(1, 8, (9, 9), 12, (1, 1), (1, 1), (0, 0), (1, 1), 4),
            Activation::Relu,
            true,
            3,
            &ctx,
        );
        check_conv(
            &params(1, 6, (9, 10), 5, (1, 1), (2, 2), (1, 0), (1, 1), 1),
            Activation::None,
            true,
            4,
            &ctx,
        );
        // Large K crossing k-blocks.
        check_conv(
            &params(1, 300, (7, 7), 40, (1, 1), (1, 1), (0, 0), (1, 1), 1),
            Activation::Relu,
            true,
            5,
            &ctx,
        );
    });
}

/// Depthwise task splitting (small planes batched per task, row bands, phase-split
/// bands for strides 1/2/3, odd and even padding) at several thread counts.
#[test]
fn conv_depthwise_tasks_and_phases() {
    let default_threads = pteron_linalg::num_threads();
    for_each_isa(|isa| {
        for threads in [1usize, 2, 3] {
            pteron_linalg::set_num_threads(threads);
            let ctx = format!("{isa:?} threads={threads}");
            let mut seed = 100;
            for &(b, c, h, w) in &[
                (1, 40, 7, 7),
                (2, 9, 14, 14),
                (1, 3, 64, 61),
                (1, 2, 130, 9),
            ] {
                for &(k, s, pad) in &[
                    (3, 1, 1),
                    (3, 2, 1),
                    (3, 2, 0),
                    (5, 2, 2),
                    (3, 3, 1),
                    (4, 2, 1),
                ] {
                    let p = params(b, c, (h, w), c, (k, k), (s, s), (pad, pad), (1, 1), c);
                    if p.out_hw().is_none() {
                        continue;
                    }
                    seed += 1;
                    check_conv(&p, Activation::Relu6, seed % 2 == 0, seed, &ctx);
                }
            }
            // Stride 2 with dilation 2 along W (taps land in one phase).
            let p = params(1, 3, (21, 26), 3, (3, 3), (2, 2), (2, 2), (2, 2), 3);
            check_conv(&p, Activation::None, true, 7, &ctx);
        }
        pteron_linalg::set_num_threads(default_threads);
    });
}

#[test]
fn conv_depthwise_fast_paths() {
    for_each_isa(|isa| {
        let ctx = format!("{isa:?}");
        let mut seed = 10;
        for k in [3usize, 5] {
            for s in [1usize, 2] {
                for &(h, w) in &[(112, 112), (7, 7), (14, 15), (1, 1), (9, 40), (33, 70)] {
                    for pad in [k / 2, 0] {
                        let p = params(1, 5, (h, w), 5, (k, k), (s, s), (pad, pad), (1, 1), 5);
                        if p.out_hw().is_none() {
                            continue;
                        }
                        seed += 1;
                        check_conv(
                            &p,
                            [Activation::Relu6, Activation::None][seed as usize % 2],
                            seed % 3 != 0,
                            seed,
                            &ctx,
                        );
                    }
                }
            }
        }
        // Generic paths: 7x7, asymmetric kernel/stride/padding, dilation, stride 3, batch 2.
        check_conv(
            &params(2, 3, (20, 23), 3, (7, 7), (1, 1), (3, 3), (1, 1), 3),
            Activation::None,
            true,
            40,
            &ctx,
        );
        check_conv(
            &params(1, 4, (17, 29), 4, (3, 5), (2, 1), (1, 2), (1, 1), 4),
            Activation::Relu,
            true,
            41,
            &ctx,
        );
        check_conv(
            &params(1, 2, (19, 19), 2, (3, 3), (1, 1), (2, 2), (2, 2), 2),
            Activation::None,
            false,
            42,
            &ctx,
        );
        check_conv(
            &params(1, 3, (25, 31), 3, (3, 3), (3, 3), (1, 1), (1, 3), 3),
            Activation::Relu6,
            true,
            43,
            &ctx,
        );
        check_conv(
            &params(1, 2, (30, 60), 2, (3, 3), (2, 9), (1, 1), (1, 1), 2),
            Activation::None,
            true,
            44,
            &ctx,
        );
    });
}

#[test]
fn conv_general_im2col() {
    for_each_isa(|isa| {
        let ctx = format!("{isa:?}");
        // ResNet stem-like.
        check_conv(
            &params(1, 3, (32, 30), 16, (7, 7), (2, 2), (3, 3), (1, 1), 1),
            Activation::Relu,
            true,
            50,
            &ctx,
        );
        // 3x3 same.
        check_conv(
            &params(1, 16, (14, 14), 24, (3, 3), (1, 1), (1, 1), (1, 1), 1),
            Activation::None,
            true,
            51,
            &ctx,
        );
        // Grouped, dilated, asymmetric.
        check_conv(
            &params(2, 6, (11, 13), 9, (3, 2), (2, 1), (2, 1), (2, 3), 3),
            Activation::Relu6,
            true,
            52,
            &ctx,
        );
        // Channel multiplier (groups == in_c but out_c = 2*in_c): not the depthwise kernel.
        check_conv(
            &params(1, 4, (10, 10), 8, (3, 3), (1, 1), (1, 1), (1, 1), 4),
            Activation::None,
            true,
            53,
            &ctx,
        );
        // Many output channels: B (im2col) packed once into the shared buffer.
        check_conv(
            &params(2, 20, (9, 8), 130, (3, 3), (1, 1), (1, 1), (1, 1), 1),
            Activation::Relu,
            true,
            55,
            &ctx,
        );
        check_conv(
            &params(1, 300, (5, 5), 200, (1, 1), (1, 1), (0, 0), (1, 1), 1),
            Activation::None,
            true,
            56,
            &ctx,
        );
        // Output width 1, tall.
        check_conv(
            &params(1, 5, (40, 3), 7, (3, 3), (1, 1), (0, 0), (1, 1), 1),
            Activation::None,
            false,
            54,
            &ctx,
        );
    });
}

#[test]
fn conv_invalid_params_rejected() {
    let bad = params(1, 3, (4, 4), 4, (5, 5), (1, 1), (0, 0), (1, 1), 1);
    assert!(bad.out_hw().is_none());
    assert!(Conv2d::new(bad, &[0.0; 300], None, Activation::None).is_err());
    let good = params(1, 4, (4, 4), 4, (3, 3), (1, 1), (1, 1), (1, 1), 2);
    let e = Conv2d::new(good, &[0.0; 3], None, Activation::None)
        .err()
        .expect("length error");
    assert!(e.to_string().contains("weight"));
    assert!(params(1, 3, (4, 4), 4, (1, 1), (1, 1), (0, 0), (1, 1), 2)
        .out_hw()
        .is_none());
    assert!(params(1, 4, (4, 4), 4, (1, 1), (0, 1), (0, 0), (1, 1), 1)
        .out_hw()
        .is_none());
}

fn check_convt(p: &ConvTranspose2dParams, with_bias: bool, seed: u64, ctx: &str) {
    let (oh, ow) = p.out_hw().expect("valid");
    let mut rng = Rng::new(seed);
    let input = rng.vec(p.batch * p.in_c * p.in_h * p.in_w);
    let weight = rng.vec(p.weight_len());
    let bias = rng.vec(p.out_c);
    let bias = with_bias.then_some(&bias[..]);
    let n = p.batch * p.out_c * oh * ow;
    let mut want = vec![0.0; n];
    reference::conv_transpose2d(p, &input, &weight, bias, &mut want);
    let mut got = vec![f32::NAN; n];
    let mut scratch = vec![f32::NAN; p.scratch_len()];
    conv_transpose2d(p, &input, &weight, bias, &mut got, &mut scratch).expect("convt");
    assert_close(&got, &want, TOL, &format!("{ctx} {p:?}"));
}

#[allow(clippy::too_many_arguments)]
fn tparams(
    batch: usize,
    in_c: usize,
    hw: (usize, usize),
    out_c: usize,
    k: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    output_padding: (usize, usize),
    dilation: (usize, usize),
    groups: usize,
) -> ConvTranspose2dParams {
    ConvTranspose2dParams {
        batch,
        in_c,
        in_h: hw.0,
        in_w: hw.1,
        out_c,
        k_h: k.0,
        k_w: k.1,
        stride,
        padding,
        output_padding,
        dilation,
        groups,
    }
}

#[test]
fn conv_transpose_cases() {
    for_each_isa(|isa| {
        let ctx = format!("{isa:?}");
        check_convt(
            &tparams(1, 4, (5, 6), 3, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1),
            true,
            1,
            &ctx,
        );
        check_convt(
            &tparams(2, 6, (4, 4), 4, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1), 2),
            false,
            2,
            &ctx,
        );
        check_convt(
            &tparams(1, 3, (7, 5), 6, (3, 2), (1, 3), (0, 1), (0, 2), (2, 1), 3),
            true,
            3,
            &ctx,
        );
        check_convt(
            &tparams(1, 8, (9, 9), 8, (1, 1), (1, 1), (0, 0), (0, 0), (1, 1), 1),
            true,
            4,
            &ctx,
        );
    });
    // output_padding must be smaller than stride or dilation.
    assert!(
        tparams(1, 1, (3, 3), 1, (3, 3), (1, 1), (0, 0), (1, 1), (1, 1), 1)
            .out_hw()
            .is_none()
    );
}

fn conv_strategy() -> impl Strategy<Value = (Conv2dParams, usize, bool, u64)> {
    (
        1usize..3,
        1usize..4,
        1usize..5,
        1usize..4,
        (1usize..6, 1usize..6),
        (1usize..4, 1usize..4),
        (0usize..3, 0usize..3),
        (1usize..3, 1usize..3),
        (1usize..20, 1usize..20),
        (0usize..4, any::<bool>(), any::<u64>(), any::<bool>()),
    )
        .prop_filter_map(
            "valid conv",
            |(batch, groups, icg, ocg, k, s, pad, d, hw, (act, bias, seed, dw))| {
                let (in_c, out_c) = if dw {
                    (groups * 2, groups * 2)
                } else {
                    (groups * icg, groups * ocg)
                };
                let groups = if dw { in_c } else { groups };
                let p = Conv2dParams {
                    batch,
                    in_c,
                    in_h: hw.0,
                    in_w: hw.1,
                    out_c,
                    k_h: k.0,
                    k_w: k.1,
                    stride: s,
                    padding: pad,
                    dilation: d,
                    groups,
                };
                p.out_hw().map(|_| (p, act, bias, seed))
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn conv_random_params((p, act, bias, seed) in conv_strategy()) {
        let act = [Activation::None, Activation::Relu, Activation::Relu6, Activation::Clamp { min: -0.3, max: 0.2 }][act];
        for_each_isa(|isa| check_conv(&p, act, bias, seed, &format!("{isa:?}")));
    }

    #[test]
    fn conv_transpose_random(
        batch in 1usize..3, groups in 1usize..3, icg in 1usize..4, ocg in 1usize..4,
        k in (1usize..5, 1usize..5), s in (1usize..4, 1usize..4), pad in (0usize..3, 0usize..3),
        opad in (0usize..3, 0usize..3), d in (1usize..3, 1usize..3), hw in (1usize..9, 1usize..9),
        bias: bool, seed: u64,
    ) {
        let p = tparams(batch, groups * icg, hw, groups * ocg, k, s, pad, opad, d, groups);
        if p.out_hw().is_some() {
            for_each_isa(|isa| check_convt(&p, bias, seed, &format!("{isa:?}")));
        }
    }
}
