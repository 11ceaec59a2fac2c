mod common;

use common::{assert_close, for_each_isa, Rng};
use proptest::prelude::*;
use pteron_linalg::{reference, Activation, Bias, GemmArgs, PackedB};

const TOL: f32 = 1e-4;

#[derive(Clone, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    a_trans: bool,
    b_trans: bool,
    pad_a: usize,
    pad_b: usize,
    pad_c: usize,
    alpha: f32,
    beta: f32,
    bias: u8,
    act: Activation,
}

fn acts() -> [Activation; 4] {
    [
        Activation::None,
        Activation::Relu,
        Activation::Relu6,
        Activation::Clamp {
            min: -0.25,
            max: 0.5,
        },
    ]
}

/// Run optimized vs reference sgemm for a case; returns nothing, panics on mismatch.
fn check_case(c: &Case, seed: u64, ctx: &str) {
    let mut rng = Rng::new(seed);
    let lda = if c.a_trans { c.m } else { c.k } + c.pad_a;
    let ldb = if c.b_trans { c.k } else { c.n } + c.pad_b;
    let ldc = c.n + c.pad_c;
    let a_len = if c.a_trans { c.k * lda } else { c.m * lda };
    let b_len = if c.b_trans { c.n * ldb } else { c.k * ldb };
    let a = rng.vec(a_len);
    let b = rng.vec(b_len);
    let mut c0 = rng.vec(c.m * ldc);
    if c.beta == 0.0 {
        // C must not be read when beta == 0.
        c0.iter_mut().for_each(|v| *v = f32::NAN);
    }
    let bias_v = rng.vec(c.m.max(c.n));
    let bias = match c.bias {
        1 => Bias::PerColumn(&bias_v[..c.n]),
        2 => Bias::PerRow(&bias_v[..c.m]),
        _ => Bias::None,
    };
    let mut got = c0.clone();
    let mut want = c0.clone();
    pteron_linalg::sgemm(GemmArgs {
        m: c.m,
        n: c.n,
        k: c.k,
        a: &a,
        lda,
        a_trans: c.a_trans,
        b: &b,
        ldb,
        b_trans: c.b_trans,
        c: &mut got,
        ldc,
        beta: c.beta,
        alpha: c.alpha,
        bias,
        act: c.act,
    });
    reference::sgemm(GemmArgs {
        m: c.m,
        n: c.n,
        k: c.k,
        a: &a,
        lda,
        a_trans: c.a_trans,
        b: &b,
        ldb,
        b_trans: c.b_trans,
        c: &mut want,
        ldc,
        beta: c.beta,
        alpha: c.alpha,
        bias,
        act: c.act,
    });
    // Padding columns of C (j >= n) must be untouched.
    for i in 0..c.m {
        for j in c.n..ldc {
            let idx = i * ldc + j;
            assert!(
                got[idx].to_bits() == c0[idx].to_bits(),
                "{ctx}: padding of C modified at ({i},{j}) {c:?}"
            );
            want[idx] = got[idx];
        }
    }
    assert_close(&got, &want, TOL, &format!("{ctx} {c:?}"));
}

const EDGE: [usize; 11] = [1, 2, 3, 5, 7, 8, 15, 16, 17, 31, 33];

#[test]
fn sgemm_edge_shapes_all_variants() {
    for_each_isa(|isa| {
        let mut idx = 0usize;
        for &m in &EDGE {
            for &n in &EDGE {
                for &k in &EDGE {
                    idx += 1;
                    let case = Case {
                        m,
                        n,
                        k,
                        a_trans: idx % 2 == 1,
                        b_trans: (idx / 2) % 2 == 1,
                        pad_a: idx % 3,
                        pad_b: (idx / 3) % 4,
                        pad_c: (idx / 5) % 3,
                        alpha: [1.0, 0.5, -2.0][idx % 3],
                        beta: [0.0, 1.0, 0.0, -0.75][(idx / 7) % 4],
                        bias: (idx % 5 % 3) as u8,
                        act: acts()[(idx / 11) % 4],
                    };
                    check_case(&case, idx as u64, &format!("{isa:?}"));
                }
            }
        }
    });
}

#[test]
fn sgemm_every_transpose_bias_act_combo() {
    for_each_isa(|isa| {
        let mut seed = 1;
        for a_trans in [false, true] {
            for b_trans in [false, true] {
                for bias in 0..3u8 {
                    for act in acts() {
                        for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0), (-1.0, 0.25)] {
                            seed += 1;
                            let case = Case {
                                m: 13,
                                n: 37,
                                k: 19,
                                a_trans,
                                b_trans,
                                pad_a: 2,
                                pad_b: 5,
                                pad_c: 3,
                                alpha,
                                beta,
                                bias,
                                act,
                            };
                            check_case(&case, seed, &format!("{isa:?}"));
                        }
                    }
                }
            }
        }
    });
}

#[test]
fn sgemm_large_multi_block() {
    // Crosses k-blocks (KC=256), m- and n-blocks, and exercises the thread pool.
    for_each_isa(|isa| {
        for (i, &(m, n, k)) in [
            (100, 300, 520),
            (97, 250, 257),
            (200, 49, 960),
            (16, 3136, 27),
        ]
        .iter()
        .enumerate()
        {
            let case = Case {
                m,
                n,
                k,
                a_trans: i == 1,
                b_trans: i == 2,
                pad_a: 1,
                pad_b: 0,
                pad_c: 2,
                alpha: 1.0,
                beta: if i == 0 { 0.5 } else { 0.0 },
                bias: (i % 3) as u8,
                act: acts()[i % 4],
            };
            check_case(&case, 77 + i as u64, &format!("{isa:?}"));
        }
    });
}

#[test]
fn sgemm_k_zero_and_empty() {
    for_each_isa(|isa| {
        for &(m, n) in &[(3, 5), (1, 7), (8, 16)] {
            let case = Case {
                m,
                n,
                k: 0,
                a_trans: false,
                b_trans: false,
                pad_a: 0,
                pad_b: 0,
                pad_c: 1,
                alpha: 1.0,
                beta: 0.5,
                bias: 1,
                act: Activation::Relu,
            };
            check_case(&case, 5, &format!("{isa:?}"));
        }
        // m == 0 / n == 0: nothing happens, even with empty slices.
        let mut c: Vec<f32> = vec![];
        pteron_linalg::sgemm(GemmArgs {
            m: 0,
            n: 0,
            k: 4,
            a: &[],
            lda: 4,
            a_trans: false,
            b: &[],
            ldb: 0,
            b_trans: false,
            c: &mut c,
            ldc: 0,
            beta: 0.0,
            alpha: 1.0,
            bias: Bias::None,
            act: Activation::None,
        });
    });
}

#[test]
fn gemv_paths() {
    for_each_isa(|isa| {
        for (i, &(n, k)) in [(1000, 1280), (7, 3), (33, 100), (64, 1), (257, 513)]
            .iter()
            .enumerate()
        {
            for b_trans in [false, true] {
                for a_trans in [false, true] {
                    let case = Case {
                        m: 1,
                        n,
                        k,
                        a_trans,
                        b_trans,
                        pad_a: 2,
                        pad_b: 3,
                        pad_c: 0,
                        alpha: 0.5,
                        beta: if b_trans { 1.0 } else { 0.0 },
                        bias: (i % 3) as u8,
                        act: acts()[i % 4],
                    };
                    check_case(&case, i as u64, &format!("{isa:?}"));
                }
            }
        }
    });
}

#[test]
fn sgemm_batched_matches_reference() {
    for_each_isa(|isa| {
        let mut rng = Rng::new(9);
        let (batch, m, n, k) = (5, 9, 21, 14);
        let (sa, sb, sc) = (m * k + 3, k * n + 1, m * n + 7);
        let a = rng.vec(sa * batch);
        let b = rng.vec(sb * batch);
        let c0 = rng.vec(sc * batch);
        let bias = rng.vec(n);
        let mk = |c: &mut [f32], f: fn(usize, usize, usize, usize, GemmArgs<'_>)| {
            f(
                batch,
                sa,
                sb,
                sc,
                GemmArgs {
                    m,
                    n,
                    k,
                    a: &a,
                    lda: k,
                    a_trans: false,
                    b: &b,
                    ldb: n,
                    b_trans: false,
                    c,
                    ldc: n,
                    beta: 1.0,
                    alpha: 2.0,
                    bias: Bias::PerColumn(&bias),
                    act: Activation::Relu,
                },
            )
        };
        let mut got = c0.clone();
        let mut want = c0.clone();
        mk(&mut got, pteron_linalg::sgemm_batched);
        mk(&mut want, reference::sgemm_batched);
        assert_close(&got, &want, TOL, &format!("{isa:?} batched"));
    });
}

#[test]
fn sgemm_packed_matches_reference() {
    for_each_isa(|isa| {
        let mut rng = Rng::new(11);
        for &(m, n, k) in &[
            (1, 1000, 1280),
            // GEMV tasks of more slivers than one pass keeps (16) at 2 threads, and
            // several k-blocks with many slivers at 1 thread.
            (1, 2100, 40),
            (1, 300, 700),
            (5, 37, 300),
            (64, 17, 9),
            (1, 5, 3),
            (33, 130, 600),
        ] {
            for b_trans in [false, true] {
                let ldb = if b_trans { k + 1 } else { n + 2 };
                let b = rng.vec(if b_trans { n * ldb } else { k * ldb });
                let a = rng.vec(m * k);
                let bias = rng.vec(n);
                let packed = PackedB::new(k, n, &b, ldb, b_trans);
                assert!(packed.bytes() >= n * k * 4);
                let mut got = vec![f32::NAN; m * n];
                let mut want = vec![0.0; m * n];
                pteron_linalg::sgemm_packed(
                    m,
                    &a,
                    k,
                    false,
                    &packed,
                    &mut got,
                    n,
                    Bias::PerColumn(&bias),
                    Activation::Relu6,
                );
                reference::sgemm_packed(
                    m,
                    &a,
                    k,
                    false,
                    k,
                    n,
                    &b,
                    ldb,
                    b_trans,
                    &mut want,
                    n,
                    Bias::PerColumn(&bias),
                    Activation::Relu6,
                );
                assert_close(
                    &got,
                    &want,
                    TOL,
                    &format!("{isa:?} packed {m}x{n}x{k} bt={b_trans}"),
                );
            }
        }
    });
}

#[test]
#[should_panic(expected = "A slice too short")]
fn sgemm_panics_on_short_a() {
    let mut c = vec![0.0; 4];
    pteron_linalg::sgemm(GemmArgs {
        m: 2,
        n: 2,
        k: 2,
        a: &[1.0; 3],
        lda: 2,
        a_trans: false,
        b: &[1.0; 4],
        ldb: 2,
        b_trans: false,
        c: &mut c,
        ldc: 2,
        beta: 0.0,
        alpha: 1.0,
        bias: Bias::None,
        act: Activation::None,
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn sgemm_random_shapes(
        m in 1usize..70, n in 1usize..90, k in 0usize..300,
        a_trans: bool, b_trans: bool,
        pad_a in 0usize..4, pad_b in 0usize..4, pad_c in 0usize..4,
        ab in 0usize..3, bias in 0u8..3, act in 0usize..4, seed: u64,
    ) {
        let (alpha, beta) = [(1.0, 0.0), (0.5, 1.0), (-1.5, 0.5)][ab];
        let case = Case { m, n, k, a_trans, b_trans, pad_a, pad_b, pad_c, alpha, beta, bias, act: acts()[act] };
        for_each_isa(|isa| check_case(&case, seed, &format!("{isa:?}")));
    }
}
