//! Int8 kernels (qgemm, int8 conv, int8 depthwise) against the naive oracles in
//! `reference`, bit for bit, under every ISA tier and with 1 and 3 threads.

mod common;

use common::{for_each_isa, Rng};
use proptest::prelude::*;
use pteron_linalg::{
    qconv2d_nhwc, qdwconv_nhwc, qgemm, reference, set_num_threads, PackedQDw, PackedQs8, QConvGeom,
    QOut,
};

fn bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn weights(rng: &mut Rng, n: usize) -> Vec<i8> {
    (0..n).map(|_| rng.next_u64() as i8).collect()
}

/// Random output quantization: zero point, optionally a ReLU-like lower bound.
fn qout(rng: &mut Rng, unsigned: bool) -> QOut {
    let (lo, hi) = if unsigned { (0, 255) } else { (-128, 127) };
    let zp = lo + rng.below(256) as i32;
    let min = if rng.below(3) == 0 { zp } else { lo };
    let max = if rng.below(4) == 0 { hi - 20 } else { hi };
    QOut {
        zero_point: zp,
        min: min.min(max),
        max,
        unsigned,
    }
    .checked()
    .expect("non-empty range")
}

/// Scales spread so that outputs span the range and saturate sometimes.
fn scales(rng: &mut Rng, n: usize, k: usize, per_channel: bool) -> Vec<f32> {
    let base = 1.0 / (64.0 * (k.max(1) as f32).sqrt());
    let cnt = if per_channel { n } else { 1 };
    (0..cnt)
        .map(|_| base * (0.25 + 4.0 * (rng.f32() + 1.0)))
        .collect()
}

/// Runs `f` under every ISA tier, then uncapped when that adds the AVX-512 VNNI
/// kernels, each with 1, 2 and 3 threads.
fn with_threads(mut f: impl FnMut(&str)) {
    let threads = |f: &mut dyn FnMut(&str), tier: &str| {
        let before = pteron_linalg::num_threads();
        for t in [1, 2, 3] {
            set_num_threads(t);
            f(&format!("{tier} threads {t}"));
        }
        set_num_threads(before);
    };
    for_each_isa(|isa| threads(&mut f, &format!("{isa:?}")));
    let _g = common::lock();
    if pteron_linalg::avx512_vnni() {
        threads(&mut f, "Avx512Vnni");
    }
}

#[allow(clippy::too_many_arguments)]
fn check_qgemm(
    m: usize,
    n: usize,
    k: usize,
    pad: usize,
    unsigned: bool,
    bias: bool,
    per_channel: bool,
    seed: u64,
) {
    let mut rng = Rng::new(seed);
    let (lda, ldc) = (k + pad, n + pad);
    let a = bytes(&mut rng, m * lda);
    let w = weights(&mut rng, n * k);
    let b: Vec<i32> = (0..n)
        .map(|_| (rng.next_u64() % 20001) as i32 - 10000)
        .collect();
    let bias = bias.then_some(&b[..]);
    let izp = if unsigned {
        rng.below(256) as i32
    } else {
        rng.below(256) as i32 - 128
    };
    let s = scales(&mut rng, n, k, per_channel);
    let q = qout(&mut rng, !unsigned);
    let mut want = vec![0xAAu8; m * ldc];
    reference::qgemm(
        m, n, k, &a, lda, unsigned, izp, &w, bias, &s, q, &mut want, ldc,
    );
    let pk = PackedQs8::new(k, n, &w, k, bias, izp, unsigned, &s, q);
    with_threads(|ctx| {
        let mut got = vec![0xAAu8; m * ldc];
        qgemm(m, &a, lda, &pk, &mut got, ldc);
        assert_eq!(
            got, want,
            "{ctx}: m {m} n {n} k {k} pad {pad} unsigned {unsigned} seed {seed}"
        );
    });
}

#[test]
fn qgemm_edge_shapes() {
    let mut seed = 1;
    for &m in &[1usize, 2, 5, 6, 7, 13, 64] {
        for &n in &[1usize, 8, 15, 16, 17, 40] {
            for &k in &[0usize, 1, 2, 3, 8, 31, 130, 2500] {
                seed += 1;
                check_qgemm(
                    m,
                    n,
                    k,
                    (seed % 3) as usize,
                    seed % 4 == 0,
                    seed % 5 != 0,
                    seed % 2 == 0,
                    seed,
                );
            }
        }
    }
}

#[test]
fn qgemm_saturates_both_ways() {
    // Huge scale: every output hits min or max (float clamp before conversion).
    let (m, n, k) = (7, 17, 40);
    let mut rng = Rng::new(9);
    let a = bytes(&mut rng, m * k);
    let w = weights(&mut rng, n * k);
    let q = QOut::qs8(3);
    let mut want = vec![0u8; m * n];
    reference::qgemm(
        m,
        n,
        k,
        &a,
        k,
        false,
        -5,
        &w,
        None,
        &[255.0],
        q,
        &mut want,
        n,
    );
    assert!(want
        .iter()
        .all(|&v| v as i8 == -128 || v as i8 == 127 || v as i8 == 3));
    let pk = PackedQs8::new(k, n, &w, k, None, -5, false, &[255.0], q);
    with_threads(|ctx| {
        let mut got = vec![0u8; m * n];
        qgemm(m, &a, k, &pk, &mut got, n);
        assert_eq!(got, want, "{ctx}");
    });
}

#[test]
fn requantize_rounds_ties_to_even() {
    let q = QOut::qs8(0);
    assert_eq!(pteron_linalg::requantize(5, 0.5, q) as i8, 2);
    assert_eq!(pteron_linalg::requantize(7, 0.5, q) as i8, 4);
    assert_eq!(pteron_linalg::requantize(-5, 0.5, q) as i8, -2);
    assert_eq!(pteron_linalg::requantize(i32::MAX, 1.0, q) as i8, 127);
    assert_eq!(pteron_linalg::requantize(i32::MIN, 1.0, q) as i8, -128);
}

#[allow(clippy::too_many_arguments)]
fn geom(
    batch: usize,
    hw: (usize, usize),
    c: usize,
    k: (usize, usize),
    s: usize,
    d: usize,
    pad: (usize, usize, usize, usize),
) -> Option<QConvGeom> {
    let (pt, pl, pb, pr) = pad;
    let eh = (k.0 - 1) * d + 1;
    let ew = (k.1 - 1) * d + 1;
    let oh = (hw.0 + pt + pb).checked_sub(eh)? / s + 1;
    let ow = (hw.1 + pl + pr).checked_sub(ew)? / s + 1;
    Some(QConvGeom {
        batch,
        in_h: hw.0,
        in_w: hw.1,
        in_c: c,
        out_h: oh,
        out_w: ow,
        kh: k.0,
        kw: k.1,
        sh: s,
        sw: s,
        dh: d,
        dw: d,
        pad_top: pt,
        pad_left: pl,
    })
}

fn check_conv(g: &QConvGeom, groups: usize, og: usize, unsigned: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let cg = g.in_c / groups;
    let cout = og * groups;
    let x = bytes(&mut rng, g.batch * g.in_h * g.in_w * g.in_c);
    let k = g.kh * g.kw * cg;
    let w = weights(&mut rng, cout * k);
    let b: Vec<i32> = (0..cout)
        .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
        .collect();
    let izp = if unsigned {
        rng.below(256) as i32
    } else {
        rng.below(256) as i32 - 128
    };
    let s = scales(&mut rng, cout, k, true);
    let q = qout(&mut rng, unsigned);
    let olen = g.batch * g.out_h * g.out_w * cout;
    let mut want = vec![0u8; olen];
    reference::qconv2d_nhwc(
        g,
        groups,
        cout,
        &x,
        unsigned,
        izp,
        &w,
        Some(&b),
        &s,
        q,
        &mut want,
    );
    let packed: Vec<PackedQs8> = (0..groups)
        .map(|gi| {
            PackedQs8::new(
                k,
                og,
                &w[gi * og * k..],
                k,
                Some(&b[gi * og..]),
                izp,
                unsigned,
                &s[gi * og..(gi + 1) * og],
                q,
            )
        })
        .collect();
    // One group with at most 4 channels also runs on the tap-major layout.
    let taps: Vec<PackedQs8> = packed
        .iter()
        .map(|p| {
            p.clone()
                .with_conv_taps(if groups == 1 { cg } else { 0 }, g.kw)
        })
        .collect();
    with_threads(|ctx| {
        for (layout, pk) in [("rows", &packed), ("taps", &taps)] {
            let mut got = vec![0x55u8; olen];
            qconv2d_nhwc(g, &x, pk, izp as u8, &mut got);
            assert_eq!(
                got, want,
                "{ctx} {layout}: {g:?} groups {groups} og {og} seed {seed}"
            );
        }
    });
}

fn check_dw(g: &QConvGeom, unsigned: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let c = g.in_c;
    let taps = g.kh * g.kw;
    let x = bytes(&mut rng, g.batch * g.in_h * g.in_w * c);
    let w = weights(&mut rng, taps * c);
    let b: Vec<i32> = (0..c)
        .map(|_| (rng.next_u64() % 4001) as i32 - 2000)
        .collect();
    let izp = if unsigned {
        rng.below(256) as i32
    } else {
        rng.below(256) as i32 - 128
    };
    let s = scales(&mut rng, c, taps, true);
    let q = qout(&mut rng, unsigned);
    let olen = g.batch * g.out_h * g.out_w * c;
    let mut want = vec![0u8; olen];
    reference::qdwconv_nhwc(g, &x, unsigned, izp, &w, Some(&b), &s, q, &mut want);
    let pk = PackedQDw::new(taps, c, &w, Some(&b), izp, unsigned, &s, q);
    with_threads(|ctx| {
        let mut got = vec![0x55u8; olen];
        qdwconv_nhwc(g, &x, &pk, &mut got);
        assert_eq!(got, want, "{ctx}: {g:?} seed {seed}");
    });
}

#[test]
fn qconv_edge_shapes() {
    let cases = [
        // (batch, hw, c, k, stride, dilation, pad, groups, og)
        (1, (5, 5), 3, (3, 3), 1, 1, (1, 1, 1, 1), 1, 8),
        (2, (7, 6), 16, (1, 1), 1, 1, (0, 0, 0, 0), 1, 17),
        (1, (8, 8), 4, (1, 1), 2, 1, (0, 0, 0, 0), 1, 5),
        (1, (9, 7), 6, (3, 3), 2, 1, (1, 0, 1, 1), 2, 7),
        (1, (6, 6), 5, (5, 5), 1, 2, (4, 4, 4, 4), 1, 3),
        (1, (3, 3), 1, (3, 3), 1, 1, (0, 0, 0, 0), 1, 1),
        (1, (2, 2), 8, (3, 3), 1, 1, (2, 2, 2, 2), 4, 2),
        // Weights over the cache threshold: the panel-outer path.
        (1, (5, 4), 96, (3, 3), 1, 1, (1, 1, 1, 1), 1, 130),
        (1, (7, 7), 48, (3, 3), 2, 1, (1, 1, 1, 1), 2, 120),
        // Indirect VNNI path (4·j channels per group): 8x8 taps (the limit is 64),
        // a 9x9 kernel (packed rows instead), and rows past the last row block.
        (1, (9, 10), 8, (8, 8), 1, 1, (3, 4, 4, 3), 1, 33),
        (1, (9, 9), 4, (9, 9), 1, 1, (4, 4, 4, 4), 1, 16),
        (3, (5, 3), 24, (3, 3), 2, 1, (1, 1, 1, 1), 3, 48),
        // First layers: 3 channels, 3x3/2 and 7x7/2 (the tap-major path).
        (1, (17, 15), 3, (3, 3), 2, 1, (1, 1, 1, 1), 1, 32),
        (2, (13, 12), 3, (7, 7), 2, 1, (3, 3, 3, 3), 1, 40),
        (1, (6, 7), 4, (2, 3), 1, 2, (0, 1, 2, 0), 1, 9),
        // A first layer large enough that the padded input is filled by several tasks.
        (2, (130, 127), 3, (3, 3), 2, 1, (1, 1, 1, 1), 1, 16),
    ];
    for (i, &(b, hw, c, k, s, d, pad, groups, og)) in cases.iter().enumerate() {
        let g = geom(b, hw, c, k, s, d, pad).expect("valid");
        check_conv(&g, groups, og, i % 2 == 1, 100 + i as u64);
    }
    // Rows dilated but columns not (the kernel-row path), 1 and 2 channels, and an
    // output that leaves input columns unread.
    for (i, &(c, dh, kw, pad_left)) in [(1, 2, 5, 2), (2, 3, 3, 0), (3, 2, 7, 3)]
        .iter()
        .enumerate()
    {
        let mut g = geom(1, (11, 13), c, (3, kw), 2, 1, (1, pad_left, 0, 0)).expect("valid");
        g.dh = dh;
        g.out_h = (g.in_h + 1 - (2 * dh + 1)) / 2 + 1;
        check_conv(&g, 1, 19, i == 1, 150 + i as u64);
    }
}

#[test]
fn qdwconv_edge_shapes() {
    let cases = [
        (1, (7, 7), 16, (3, 3), 1, 1, (1, 1, 1, 1)),
        (1, (8, 9), 32, (3, 3), 2, 1, (0, 1, 1, 0)),
        (2, (5, 5), 21, (5, 5), 1, 1, (2, 2, 2, 2)),
        (1, (10, 10), 48, (5, 5), 2, 1, (2, 2, 2, 2)),
        (1, (6, 6), 3, (3, 3), 1, 2, (2, 2, 2, 2)),
        (1, (4, 4), 16, (1, 1), 1, 1, (0, 0, 0, 0)),
        (1, (3, 3), 17, (3, 3), 1, 1, (0, 0, 0, 0)),
        (1, (12, 12), 16, (9, 9), 1, 1, (4, 4, 4, 4)),
        (1, (1, 1), 32, (3, 3), 1, 1, (1, 1, 1, 1)),
    ];
    for (i, &(b, hw, c, k, s, d, pad)) in cases.iter().enumerate() {
        let g = geom(b, hw, c, k, s, d, pad).expect("valid");
        check_dw(&g, i % 3 == 2, 200 + i as u64);
    }
}

/// Max pooling against a naive oracle (max over in-bounds taps of the values as
/// signed or unsigned bytes, then the clamp).
fn check_qmaxpool(g: &QConvGeom, unsigned: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let c = g.in_c;
    let x = bytes(&mut rng, g.batch * g.in_h * g.in_w * c);
    let q = qout(&mut rng, unsigned);
    let olen = g.batch * g.out_h * g.out_w * c;
    let val = |b: u8| if unsigned { b as i32 } else { b as i8 as i32 };
    let mut want = vec![0u8; olen];
    for (o, wv) in want.iter_mut().enumerate() {
        let (ch, px) = (o % c, o / c);
        let (n, oy, ox) = (
            px / (g.out_h * g.out_w),
            (px / g.out_w) % g.out_h,
            px % g.out_w,
        );
        let mut best = if unsigned { 0 } else { -128 };
        for ky in 0..g.kh {
            for kx in 0..g.kw {
                let iy = (oy * g.sh + ky * g.dh) as isize - g.pad_top as isize;
                let ix = (ox * g.sw + kx * g.dw) as isize - g.pad_left as isize;
                if iy >= 0 && ix >= 0 && (iy as usize) < g.in_h && (ix as usize) < g.in_w {
                    let i = ((n * g.in_h + iy as usize) * g.in_w + ix as usize) * c + ch;
                    best = best.max(val(x[i]));
                }
            }
        }
        *wv = best.clamp(q.min, q.max) as u8;
    }
    with_threads(|ctx| {
        let mut got = vec![0x5Au8; olen];
        pteron_linalg::qmaxpool_nhwc(g, &x, q, &mut got);
        assert_eq!(got, want, "{ctx}: {g:?} {q:?}");
    });
}

#[test]
fn qmaxpool_edge_shapes() {
    let cases = [
        // The resnet stem pool (3x3/2, padding 1) and smaller odd shapes.
        (1, (112, 112), 64, (3, 3), 2, 1, (1, 1, 1, 1)),
        (2, (7, 9), 5, (2, 2), 2, 1, (0, 0, 1, 1)),
        (1, (6, 5), 17, (3, 2), 1, 2, (2, 1, 2, 0)),
        (1, (1, 1), 3, (3, 3), 1, 1, (1, 1, 1, 1)),
    ];
    for (i, &(b, hw, c, k, s, d, pad)) in cases.iter().enumerate() {
        let g = geom(b, hw, c, k, s, d, pad).expect("valid");
        check_qmaxpool(&g, i % 2 == 0, 500 + i as u64);
    }
}

/// A byte transpose kernel: `(x, batch, rows, cols, out)` with
/// `out[b][c][r] = x[b][r][c]` (`nchw_to_nhwc_u8` takes rows = C, cols = H·W).
type ByteTranspose = fn(&[u8], usize, usize, usize, &mut [u8]);

fn check_transpose(f: ByteTranspose, batch: usize, rows: usize, cols: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = bytes(&mut rng, batch * rows * cols);
    let mut want = vec![0u8; x.len()];
    for b in 0..batch {
        for r in 0..rows {
            for c in 0..cols {
                want[(b * cols + c) * rows + r] = x[(b * rows + r) * cols + c];
            }
        }
    }
    with_threads(|ctx| {
        let mut got = vec![0x22u8; x.len()];
        f(&x, batch, rows, cols, &mut got);
        assert_eq!(got, want, "{ctx}: batch {batch} rows {rows} cols {cols}");
    });
}

#[test]
fn byte_transpose_edge_shapes() {
    // transpose_u8: NHWC -> NCHW of a 56x56x64 activation, whole and ragged 16x16
    // blocks; nchw_to_nhwc_u8: the RGB input (3 channels), few and many channels.
    type Shapes = [(usize, usize, usize); 5];
    let cases: [(ByteTranspose, Shapes); 2] = [
        (
            pteron_linalg::transpose_u8,
            [
                (1, 3136, 64),
                (2, 16, 16),
                (1, 17, 33),
                (3, 15, 48),
                (1, 1, 1),
            ],
        ),
        (
            pteron_linalg::nchw_to_nhwc_u8,
            [
                (1, 3, 224 * 224),
                (2, 3, 65),
                (1, 1, 1),
                (3, 7, 130),
                (1, 16, 64),
            ],
        ),
    ];
    for (k, (f, shapes)) in cases.iter().enumerate() {
        for (i, &(b, r, c)) in shapes.iter().enumerate() {
            check_transpose(*f, b, r, c, 600 + 10 * k as u64 + i as u64);
        }
    }
}

fn check_qadd(n: usize, shift: u32, seed: u64) {
    let mut rng = Rng::new(seed);
    let a = bytes(&mut rng, n);
    let b = bytes(&mut rng, n);
    let unsigned = rng.below(2) == 0;
    let m = 1i32 << (shift - 8).min(20);
    let p = pteron_linalg::QAddParams {
        a_mul: (rng.below(m as usize) as i32 + 1) * if rng.below(4) == 0 { -1 } else { 1 },
        b_mul: rng.below(m as usize) as i32 + 1,
        bias: (1 << (shift - 1)) - rng.below(1 << 20) as i32,
        shift,
        a_unsigned: rng.below(2) == 0,
        b_unsigned: rng.below(2) == 0,
        out: qout(&mut rng, unsigned),
    };
    let mut want = vec![0u8; n];
    reference::qadd(&a, &b, &p, &mut want);
    with_threads(|ctx| {
        let mut got = vec![0x33u8; n];
        pteron_linalg::qadd(&a, &b, &p, &mut got);
        assert_eq!(got, want, "{ctx}: n {n} {p:?}");
    });
}

#[test]
fn qadd_edge_lengths() {
    // 70000: the parallel chunked path (≥ 64K elements), with a ragged tail.
    for (i, &n) in [0usize, 1, 15, 16, 17, 33, 1000, 70_000].iter().enumerate() {
        check_qadd(n, 12 + (i as u32 * 3) % 19, 300 + i as u64);
    }
}

fn check_quantize(n: usize, unsigned: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let q = qout(&mut rng, unsigned);
    let inv = 1.0 / (0.001 + rng.f32().abs() * 0.1);
    let mut src: Vec<f32> = (0..n).map(|_| rng.f32() * 300.0 / inv).collect();
    // Exact ties, NaN, infinities and values far out of range.
    for (i, v) in src.iter_mut().enumerate() {
        match i % 23 {
            3 => *v = (i as f32 - 50.5) / inv,
            7 => *v = f32::NAN,
            11 => *v = f32::INFINITY,
            13 => *v = f32::NEG_INFINITY,
            17 => *v = -1e30,
            _ => {}
        }
    }
    let mut want = vec![0u8; n];
    reference::quantize_q8(&src, inv, q, &mut want);
    with_threads(|ctx| {
        let mut got = vec![0x77u8; n];
        pteron_linalg::quantize_q8(&src, inv, q, &mut got);
        assert_eq!(got, want, "{ctx}: n {n} {q:?}");
    });
}

#[test]
fn quantize_edge_lengths() {
    // 70000: the parallel chunked path (≥ 64K elements), with a ragged tail.
    for (i, &n) in [0usize, 1, 15, 16, 17, 33, 1000, 70_000].iter().enumerate() {
        check_quantize(n, i % 2 == 0, 400 + i as u64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn quantize_random(n in 0usize..200, unsigned: bool, seed: u64) {
        check_quantize(n, unsigned, seed);
    }

    #[test]
    fn qadd_random(n in 0usize..200, shift in 12u32..31, seed: u64) {
        check_qadd(n, shift, seed);
    }

    #[test]
    fn qgemm_random(m in 1usize..40, n in 1usize..50, k in 0usize..200, pad in 0usize..3,
                    unsigned: bool, bias: bool, per_channel: bool, seed: u64) {
        check_qgemm(m, n, k, pad, unsigned, bias, per_channel, seed);
    }

    #[test]
    fn qconv_random(b in 1usize..3, h in 1usize..9, w in 1usize..9, cg in 1usize..6, groups in 1usize..3,
                    og in 1usize..20, kh in 1usize..4, kw in 1usize..4, s in 1usize..3, d in 1usize..3,
                    pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
                    unsigned: bool, seed: u64) {
        if let Some(g) = geom(b, (h, w), cg * groups, (kh, kw), s, d, (pt, pl, pb, pr)) {
            check_conv(&g, groups, og, unsigned, seed);
        }
    }

    /// Groups of a multiple of 4 channels (the indirect VNNI path), taps up to 5×5.
    #[test]
    fn qconv_random_c4(b in 1usize..3, h in 1usize..8, w in 1usize..8, cg4 in 1usize..5, groups in 1usize..3,
                       og in 1usize..40, kh in 1usize..6, kw in 1usize..6, s in 1usize..3, d in 1usize..3,
                       pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
                       unsigned: bool, seed: u64) {
        if let Some(g) = geom(b, (h, w), 4 * cg4 * groups, (kh, kw), s, d, (pt, pl, pb, pr)) {
            check_conv(&g, groups, og, unsigned, seed);
        }
    }

    #[test]
    fn qmaxpool_random(b in 1usize..3, h in 1usize..10, w in 1usize..10, c in 1usize..40,
                       kh in 1usize..4, kw in 1usize..4, s in 1usize..3, d in 1usize..3,
                       pt in 0usize..2, pl in 0usize..2, pb in 0usize..2, pr in 0usize..2,
                       unsigned: bool, seed: u64) {
        if let Some(g) = geom(b, (h, w), c, (kh, kw), s, d, (pt, pl, pb, pr)) {
            check_qmaxpool(&g, unsigned, seed);
        }
    }

    #[test]
    fn nchw_to_nhwc_random(b in 1usize..3, c in 1usize..40, hw in 1usize..300, seed: u64) {
        check_transpose(pteron_linalg::nchw_to_nhwc_u8, b, c, hw, seed);
    }

    #[test]
    fn transpose_u8_random(b in 1usize..3, rows in 1usize..70, cols in 1usize..70, seed: u64) {
        check_transpose(pteron_linalg::transpose_u8, b, rows, cols, seed);
    }

    #[test]
    fn qdwconv_random(b in 1usize..3, h in 1usize..10, w in 1usize..10, c in 1usize..50,
                      k in prop::sample::select(vec![1usize, 3, 5]), s in 1usize..3, d in 1usize..3,
                      pt in 0usize..3, pl in 0usize..3, pb in 0usize..3, pr in 0usize..3,
                      unsigned: bool, seed: u64) {
        if let Some(g) = geom(b, (h, w), c, (k, k), s, d, (pt, pl, pb, pr)) {
            check_dw(&g, unsigned, seed);
        }
    }
}
