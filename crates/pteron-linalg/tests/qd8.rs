//! qd8 GEMM: every tier against an oracle written from the unpacked weights (the
//! documented XNNPACK arithmetic), bit for bit, plus a float sanity bound.

mod common;

use common::{for_each_isa, Rng};
use proptest::prelude::*;
use pteron_linalg::{
    qd8_gemm, qd8_quantize_row, qd8_quantize_row_with, set_num_threads, PackedQd8, Qd8Kind,
    Qd8Params, XnnArith,
};

struct Problem {
    kind: Qd8Kind,
    m: usize,
    n: usize,
    k: usize,
    x: Vec<f32>,
    w: Vec<i8>,
    scales: Vec<f32>,
    bias: Option<Vec<f32>>,
    lo: f32,
    hi: f32,
}

fn bf16(x: f32) -> f32 {
    let b = x.to_bits();
    f32::from_bits(b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000)
}

fn make(
    kind: Qd8Kind,
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
    clamp: bool,
    bias: bool,
) -> Problem {
    let mut r = Rng::new(seed);
    // Rows with varied ranges (all positive, all negative, mixed, zero).
    let mut x = Vec::with_capacity(m * k);
    for i in 0..m {
        let (off, amp) = [(0.0, 3.0), (2.0, 1.0), (-5.0, 2.0), (0.0, 0.0), (0.3, 0.01)][i % 5];
        for _ in 0..k {
            x.push(off + amp * r.f32());
        }
    }
    let w: Vec<i8> = (0..n * k)
        .map(|_| match kind {
            Qd8Kind::Qc8w => (r.next_u64() % 256) as u8 as i8,
            _ => (r.below(16) as i8) - 8,
        })
        .collect();
    let nb = match kind {
        Qd8Kind::Qb4w { block } => k.div_ceil(block),
        _ => 1,
    };
    let scales = (0..n * nb)
        .map(|_| {
            let s = 0.001 + 0.05 * (r.f32() + 1.0);
            if matches!(kind, Qd8Kind::Qb4w { .. }) {
                bf16(s)
            } else {
                s
            }
        })
        .collect();
    let bias = bias.then(|| r.vec(n));
    let (lo, hi) = if clamp {
        (-1.0, 2.5)
    } else {
        (f32::NEG_INFINITY, f32::INFINITY)
    };
    Problem {
        kind,
        m,
        n,
        k,
        x,
        w,
        scales,
        bias,
        lo,
        hi,
    }
}

/// The arithmetic of the module docs, from the unpacked weights.
fn oracle(p: &Problem, arith: XnnArith) -> Vec<f32> {
    let mut out = vec![0.0f32; p.m * p.n];
    for i in 0..p.m {
        let row = &p.x[i * p.k..(i + 1) * p.k];
        let mut q = vec![0i8; p.k];
        let qp = qd8_quantize_row_with(arith, row, &mut q);
        for j in 0..p.n {
            let wc = &p.w[j * p.k..(j + 1) * p.k];
            let b = p.bias.as_ref().map_or(0.0, |b| b[j]);
            let v = match p.kind {
                Qd8Kind::Qc8w | Qd8Kind::Qc4w => {
                    let acc: i32 = q
                        .iter()
                        .zip(wc)
                        .map(|(&a, &w)| (a as i32 - qp.zero_point) * w as i32)
                        .sum();
                    (acc as f32 * qp.inv_scale).mul_add(p.scales[j], b)
                }
                Qd8Kind::Qb4w { block } => {
                    let nb = p.k.div_ceil(block);
                    let sc = &p.scales[j * nb..(j + 1) * nb];
                    let mut ksum = 0.0f32;
                    for c in 0..p.k.div_ceil(16) {
                        let s: i32 = wc[c * 16..(c * 16 + 16).min(p.k)]
                            .iter()
                            .map(|&w| w as i32)
                            .sum();
                        ksum -= s as f32 * sc[c * 16 / block];
                    }
                    if arith == XnnArith::Avx512Vnni {
                        // Unsigned `q + 128`, one float sum per block.
                        let mut acc = ksum * (qp.zero_point + 128) as f32;
                        for (bi, &s) in sc.iter().enumerate() {
                            let x: i32 = (bi * block..((bi + 1) * block).min(p.k))
                                .map(|kk| (q[kk] as i32 + 128) * wc[kk] as i32)
                                .sum();
                            acc = (x as f32).mul_add(s, acc);
                        }
                        out[i * p.n + j] = (acc * qp.inv_scale + b).max(p.lo).min(p.hi);
                        continue;
                    }
                    let zpf = qp.zero_point as f32;
                    let mut lanes = [0.0 * zpf; 4];
                    lanes[0] = ksum * zpf;
                    for (bi, &s) in sc.iter().enumerate() {
                        let mut acc = [0i32; 4];
                        for kk in bi * block..((bi + 1) * block).min(p.k) {
                            acc[(kk % 8) / 2] += q[kk] as i32 * wc[kk] as i32;
                        }
                        for (l, &a) in lanes.iter_mut().zip(&acc) {
                            *l = (a as f32).mul_add(s, *l);
                        }
                    }
                    ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) * qp.inv_scale + b
                }
            };
            out[i * p.n + j] = v.max(p.lo).min(p.hi);
        }
    }
    out
}

/// Dequantized float matmul (what the quantized result approximates).
fn float_ref(p: &Problem) -> Vec<f32> {
    let mut out = vec![0.0f32; p.m * p.n];
    for i in 0..p.m {
        for j in 0..p.n {
            let mut s = p.bias.as_ref().map_or(0.0, |b| b[j]) as f64;
            for kk in 0..p.k {
                let sc = match p.kind {
                    Qd8Kind::Qb4w { block } => p.scales[j * p.k.div_ceil(block) + kk / block],
                    _ => p.scales[j],
                };
                s += p.x[i * p.k + kk] as f64 * (p.w[j * p.k + kk] as f32 * sc) as f64;
            }
            out[i * p.n + j] = (s as f32).max(p.lo).min(p.hi);
        }
    }
    out
}

fn run(p: &Problem, pad_a: usize, pad_c: usize, arith: XnnArith) -> Vec<f32> {
    let packed = PackedQd8::new(p.kind, p.n, p.k, &p.w, &p.scales, p.bias.as_deref())
        .unwrap()
        .with_arith(arith);
    let rl = packed.row_len();
    let lda = rl + pad_a;
    let mut a = vec![0x55u8 as i8; p.m * lda];
    let mut params = vec![Qd8Params::default(); p.m];
    for i in 0..p.m {
        params[i] =
            packed.quantize_row(&p.x[i * p.k..(i + 1) * p.k], &mut a[i * lda..i * lda + rl]);
    }
    let ldc = p.n + pad_c;
    let mut c = vec![f32::NAN; p.m * ldc];
    qd8_gemm(p.m, &a, lda, &params, &packed, &mut c, ldc, p.lo, p.hi);
    let mut out = Vec::with_capacity(p.m * p.n);
    for i in 0..p.m {
        out.extend_from_slice(&c[i * ldc..i * ldc + p.n]);
        assert!(
            c[i * ldc + p.n..(i + 1) * ldc].iter().all(|v| v.is_nan()),
            "wrote past n"
        );
    }
    out
}

/// Runs `f` under every ISA tier, then uncapped when that adds the AVX-512 VNNI
/// kernels, each with 1, 2 and 3 threads.
fn with_tiers(mut f: impl FnMut(&str)) {
    let mut threads = |tier: &str| {
        for t in [1, 2, 3] {
            set_num_threads(t);
            f(&format!("{tier} threads {t}"));
        }
        set_num_threads(0);
    };
    for_each_isa(|isa| threads(&format!("{isa:?}")));
    let _g = common::lock();
    if pteron_linalg::avx512_vnni() {
        threads("Avx512Vnni");
    }
}

fn check(p: &Problem, pad_a: usize, pad_c: usize, ctx: &str) {
    // Both of XNNPACK's arithmetics, each on every tier (the VNNI one runs on the
    // scalar path when capped, on the VNNI kernels uncapped).
    for arith in [XnnArith::Avx2, XnnArith::Avx512Vnni] {
        let want = oracle(p, arith);
        with_tiers(|tier| {
            let got = run(p, pad_a, pad_c, arith);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    g.to_bits() == w.to_bits(),
                    "{ctx} {arith:?} {tier}: [{}, {}] got {g}, want {w}",
                    i / p.n,
                    i % p.n
                );
            }
        });
    }
    let want = oracle(p, XnnArith::Avx2);
    // Within a few quantization steps of the float product.
    let fr = float_ref(p);
    for i in 0..p.m {
        let row = &p.x[i * p.k..(i + 1) * p.k];
        let range = row.iter().fold(0.0f32, |a, &v| a.max(v.abs())) * 2.0;
        for j in 0..p.n {
            let wsum: f32 = (0..p.k)
                .map(|kk| {
                    let sc = match p.kind {
                        Qd8Kind::Qb4w { block } => p.scales[j * p.k.div_ceil(block) + kk / block],
                        _ => p.scales[j],
                    };
                    (p.w[j * p.k + kk] as f32 * sc).abs()
                })
                .sum();
            // Quantization error, plus float cancellation of the zero-point term
            // (`zp · ksum` against `Σ q·w`, as in XNNPACK).
            let mut q = vec![0i8; p.k];
            let zp = qd8_quantize_row(row, &mut q).zero_point as f32;
            let tol = wsum * range / 255.0 + zp.abs() * wsum * 1e-6 + 1e-4;
            let (g, f) = (want[i * p.n + j], fr[i * p.n + j]);
            assert!(
                (g - f).abs() <= tol,
                "{ctx}: [{i}, {j}] {g} vs float {f} (tol {tol})"
            );
        }
    }
}

fn kinds() -> [Qd8Kind; 4] {
    [
        Qd8Kind::Qc8w,
        Qd8Kind::Qc4w,
        Qd8Kind::Qb4w { block: 32 },
        Qd8Kind::Qb4w { block: 64 },
    ]
}

#[test]
fn edge_shapes() {
    let mut seed = 1;
    for kind in kinds() {
        for &(m, n, k) in &[
            (1, 1, 1),
            (1, 8, 16),
            (1, 9, 17),
            (2, 7, 32),
            (3, 16, 64),
            (5, 17, 96),
            (4, 33, 128),
            (1, 24, 200),
            (6, 3, 33),
        ] {
            if let Qd8Kind::Qb4w { block } = kind {
                if k % block != 0 {
                    continue;
                }
            }
            for (clamp, bias) in [(false, false), (true, true)] {
                seed += 1;
                let p = make(kind, m, n, k, seed, clamp, bias);
                check(
                    &p,
                    seed as usize % 3 * 16,
                    seed as usize % 2,
                    &format!("{kind:?} {m}x{n}x{k}"),
                );
            }
        }
    }
}

#[test]
fn large_parallel_shapes() {
    // Big enough to split over threads in both dimensions.
    for (kind, m, n, k) in [
        (Qd8Kind::Qb4w { block: 32 }, 1, 520, 512),
        (Qd8Kind::Qb4w { block: 32 }, 37, 24, 256),
        (Qd8Kind::Qc8w, 9, 136, 300),
        (Qd8Kind::Qc4w, 64, 40, 160),
    ] {
        let p = make(kind, m, n, k, (m * n + k) as u64, true, true);
        check(&p, 0, 3, &format!("{kind:?} {m}x{n}x{k}"));
    }
}

#[test]
fn batched_block32_shapes() {
    // The batched path (8 rows and more, block 32): row tiles of 4 plus 1..3
    // remainder rows, partial 4-column halves, and K over several 64-block panels
    // (lanes carried between panels).
    let b32 = Qd8Kind::Qb4w { block: 32 };
    let mut seed = 100;
    for &(m, n, k) in &[
        (8, 8, 32),
        (9, 5, 64),
        (10, 3, 96),
        (11, 13, 2048),
        (12, 1, 2080),
        (17, 36, 4128),
        (64, 20, 160),
    ] {
        for (clamp, bias) in [(false, true), (true, false)] {
            seed += 1;
            let p = make(b32, m, n, k, seed, clamp, bias);
            check(
                &p,
                seed as usize % 3 * 16,
                seed as usize % 2,
                &format!("b32 {m}x{n}x{k}"),
            );
        }
    }
}

#[test]
fn row_counts_and_partial_tiles() {
    // Every register-tile height (1..=9 rows, and 37, 64 split into tiles of up
    // to 8), column counts that leave partial 8- and 4-column tiles, one block
    // and several, block 32 and larger.
    let mut seed = 500;
    for (block, k) in [(32, 32), (32, 96), (64, 64), (128, 256)] {
        for m in (1..=9).chain([37, 64]) {
            for n in [1, 4, 5, 8, 11, 20] {
                seed += 1;
                let p = make(
                    Qd8Kind::Qb4w { block },
                    m,
                    n,
                    k,
                    seed,
                    seed % 2 == 0,
                    seed % 3 != 0,
                );
                check(&p, 0, (seed % 2) as usize, &format!("b{block} {m}x{n}x{k}"));
            }
        }
    }
}

#[test]
fn quantize_rows_matches_quantize_row() {
    // Large enough to be split over the pool: same bytes and parameters as the
    // row-by-row form, padding between rows untouched.
    let (m, k) = (67, 1024);
    let p = make(Qd8Kind::Qb4w { block: 32 }, m, 8, k, 9, false, false);
    let packed = PackedQd8::new(p.kind, p.n, p.k, &p.w, &p.scales, None).unwrap();
    let rl = packed.row_len();
    let lda = rl + 7;
    let mut want = vec![3i8; m * lda];
    let mut want_p = vec![Qd8Params::default(); m];
    {
        // The scalar layout is the reference.
        let _g = common::lock();
        pteron_linalg::set_isa_cap(Some(pteron_linalg::Isa::Scalar));
        for i in 0..m {
            want_p[i] =
                packed.quantize_row(&p.x[i * k..(i + 1) * k], &mut want[i * lda..i * lda + rl]);
        }
        pteron_linalg::set_isa_cap(None);
    }
    with_tiers(|tier| {
        let mut got = vec![3i8; m * lda];
        let mut got_p = vec![Qd8Params::default(); m];
        packed.quantize_rows(m, &p.x, &mut got, lda, &mut got_p);
        assert_eq!(got, want, "{tier}");
        assert_eq!(got_p, want_p, "{tier}");
    });
}

#[test]
fn quantize_row_tiers_agree() {
    // The SIMD quantization against the scalar one, bit for bit: lengths around
    // the vector widths, and rows with zeros of both signs, NaNs (skipped by the
    // range), infinities and a constant row.
    let mut r = Rng::new(21);
    let mut rows: Vec<Vec<f32>> = Vec::new();
    for len in [0usize, 1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 100, 288, 1000] {
        for (off, amp) in [(0.0f32, 3.0f32), (2.0, 1.0), (-5.0, 2.0), (0.3, 1e-3)] {
            rows.push((0..len).map(|_| off + amp * r.f32()).collect());
        }
    }
    let mut special: Vec<f32> = (0..70).map(|_| r.f32()).collect();
    special[3] = f32::NAN;
    special[40] = -0.0;
    special[41] = 0.0;
    rows.push(special.clone());
    special[50] = f32::INFINITY;
    rows.push(special);
    rows.push(vec![-0.0; 40]);
    rows.push(vec![1.5; 37]);
    // Both parameter rules (signed `qd8` and unsigned `qdu8`).
    let quantize = || -> Vec<(i32, u32, Vec<i8>)> {
        [XnnArith::Avx2, XnnArith::Avx512Vnni]
            .iter()
            .flat_map(|&arith| {
                rows.iter().map(move |x| {
                    let mut q = vec![7i8; x.len() + 5];
                    let p = qd8_quantize_row_with(arith, x, &mut q);
                    (p.zero_point, p.inv_scale.to_bits(), q)
                })
            })
            .collect()
    };
    let want = {
        let _g = common::lock();
        pteron_linalg::set_isa_cap(Some(pteron_linalg::Isa::Scalar));
        let w = quantize();
        pteron_linalg::set_isa_cap(None);
        w
    };
    with_tiers(|tier| {
        for (i, (g, w)) in quantize().iter().zip(&want).enumerate() {
            assert_eq!(
                g,
                w,
                "{tier}: row {i} ({} values)",
                rows[i % rows.len()].len()
            );
        }
    });
}

#[test]
fn quantize_row_properties() {
    let mut r = Rng::new(7);
    for len in [1usize, 5, 31, 100] {
        for (off, amp) in [
            (0.0f32, 1.0f32),
            (3.0, 0.5),
            (-2.0, 0.1),
            (0.0, 0.0),
            (0.0, 1e-30),
        ] {
            let x: Vec<f32> = (0..len).map(|_| off + amp * r.f32()).collect();
            let mut q = vec![1i8; len + 16];
            let p = qd8_quantize_row(&x, &mut q);
            assert!((-128..=127).contains(&p.zero_point));
            assert!(q[len..].iter().all(|&v| v == 0), "padding zeroed");
            for (i, &v) in x.iter().enumerate() {
                let d = (q[i] as i32 - p.zero_point) as f32 * p.inv_scale;
                assert!(
                    (d - v).abs() <= p.inv_scale * 0.5001 + 1e-6,
                    "{v} -> {} -> {d}",
                    q[i]
                );
            }
            // Real zero is exactly representable.
            let (p2, _) = Qd8Params::from_range(
                x.iter().cloned().fold(f32::INFINITY, f32::min),
                x.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
            );
            assert_eq!(p, p2);
        }
    }
}

#[test]
fn bad_weights_are_errors() {
    assert!(PackedQd8::new(Qd8Kind::Qc8w, 2, 3, &[0; 5], &[1.0; 2], None).is_err());
    assert!(PackedQd8::new(Qd8Kind::Qc4w, 1, 2, &[9, 0], &[1.0], None).is_err());
    assert!(PackedQd8::new(
        Qd8Kind::Qb4w { block: 16 },
        1,
        32,
        &[0; 32],
        &[1.0; 2],
        None
    )
    .is_err());
    assert!(PackedQd8::new(
        Qd8Kind::Qb4w { block: 32 },
        1,
        64,
        &[0; 64],
        &[1.0; 1],
        None
    )
    .is_err());
    assert!(PackedQd8::new(Qd8Kind::Qc8w, 2, 2, &[0; 4], &[1.0; 2], Some(&[0.0; 3])).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn random_shapes(kind_i in 0usize..4, m in 1usize..19, n in 1usize..40, kb in 1usize..6, extra in 0usize..32,
                     clamp: bool, bias: bool, seed: u64) {
        let kind = kinds()[kind_i];
        let k = match kind { Qd8Kind::Qb4w { block } => kb * block, _ => kb * 20 + extra };
        let p = make(kind, m, n, k, seed, clamp, bias);
        check(&p, (seed % 3) as usize * 16, (seed % 2) as usize, &format!("{kind:?} {m}x{n}x{k}"));
    }
}

#[test]
fn unsigned_rule_is_the_signed_grid_shifted() {
    // `qdu8` quantizes with zero point `rne(-rmin · s)` in 0..=255 and the
    // multiplier `s` itself; stored signed, every value and the zero point are
    // shifted by -128 and dequantize to the same reals as the unsigned form.
    let mut r = Rng::new(99);
    for (off, amp) in [(0.0f32, 3.0f32), (2.0, 1.0), (-5.0, 2.0), (0.0, 0.0)] {
        let x: Vec<f32> = (0..100).map(|_| off + amp * r.f32()).collect();
        let mut q = vec![0i8; x.len()];
        let p = qd8_quantize_row_with(XnnArith::Avx512Vnni, &x, &mut q);
        let (mn, mx) = x
            .iter()
            .fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let s = if mn == mx { 1.0 } else { 255.0 / (mx - mn) };
        let zpu = (-mn * s).round_ties_even() as i32;
        assert_eq!(p.zero_point, zpu - 128, "range [{mn}, {mx}]");
        assert_eq!(p.inv_scale.to_bits(), (1.0 / s).to_bits());
        for (&v, &qi) in x.iter().zip(&q) {
            let u = ((v * s).min((255 - zpu) as f32).round_ties_even() as i32 + zpu).clamp(0, 255);
            assert_eq!(qi as i32 + 128, u, "{v}");
        }
    }
}

#[test]
fn packing_from_nibbles_matches_values() {
    // The stored int4 form (two `w + 8` nibbles per byte, low first, rows padded
    // to whole bytes) packs to the same kernels' results as the unpacked values,
    // and a short buffer is an error.
    let mut seed = 500;
    for kind in [Qd8Kind::Qc4w, Qd8Kind::Qb4w { block: 32 }] {
        for &(m, n, k) in &[
            (1, 9, 64),
            (3, 8, 96),
            (9, 11, 33),
            (2, 5, 31),
            (2, 37, 288),
        ] {
            if matches!(kind, Qd8Kind::Qb4w { .. }) && k % 32 != 0 {
                continue;
            }
            seed += 1;
            let p = make(kind, m, n, k, seed, true, true);
            let rb = k.div_ceil(2);
            let mut nib = vec![0u8; n * rb];
            for j in 0..n {
                for kk in 0..k {
                    let v = (p.w[j * k + kk] + 8) as u8;
                    nib[j * rb + kk / 2] |= if kk % 2 == 0 { v } else { v << 4 };
                }
            }
            let a = PackedQd8::new(kind, n, k, &p.w, &p.scales, p.bias.as_deref()).unwrap();
            let b =
                PackedQd8::from_nibbles(kind, n, k, &nib, &p.scales, p.bias.as_deref()).unwrap();
            assert_eq!(a.bytes(), b.bytes());
            let mut x = vec![0i8; m * a.row_len()];
            let mut params = vec![Qd8Params::default(); m];
            a.quantize_rows(m, &p.x, &mut x, a.row_len(), &mut params);
            let (mut ca, mut cb) = (vec![0.0f32; m * n], vec![0.0f32; m * n]);
            qd8_gemm(m, &x, a.row_len(), &params, &a, &mut ca, n, p.lo, p.hi);
            qd8_gemm(m, &x, b.row_len(), &params, &b, &mut cb, n, p.lo, p.hi);
            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&ca), bits(&cb), "{kind:?} {m}x{n}x{k}");
            assert!(PackedQd8::from_nibbles(kind, n, k, &nib[1..], &p.scales, None).is_err());
        }
    }
}

#[test]
fn vnni_panel_edge_shapes() {
    // The 16-column panel kernels of `qb4w` with the VNNI arithmetic (packed
    // uncapped on an AVX-512 VNNI CPU; the capped tiers pack the 8-column
    // tiles): every register-tile height (1..=9 rows, 64 and 65 split into
    // tiles of up to 6), column counts around the 16-column panels and their
    // groups of 2 and 4, K over one and several blocks and not a multiple of
    // the block (zero padded).
    let mut seed = 900;
    for (block, ks) in [(32, &[32usize, 40, 288][..]), (64, &[64, 100, 320][..])] {
        for m in (1..=9).chain([64, 65]) {
            for n in [1, 15, 16, 17, 33, 50, 70] {
                let k = ks[(m + n) % ks.len()];
                seed += 1;
                let p = make(
                    Qd8Kind::Qb4w { block },
                    m,
                    n,
                    k,
                    seed,
                    seed % 2 == 0,
                    seed % 3 != 0,
                );
                check(
                    &p,
                    (seed % 3) as usize * 16,
                    (seed % 2) as usize,
                    &format!("b{block} {m}x{n}x{k}"),
                );
            }
        }
    }
}

#[test]
fn packed_under_one_tier_runs_under_another() {
    // Weights packed uncapped (the 16-column panels on an AVX-512 VNNI CPU) or
    // capped to AVX2 (8-column tiles) compute the same bits when run under any
    // tier afterwards (the scalar path reads either layout), with either
    // arithmetic.
    let mut seed = 1200;
    for &(m, n, k, block) in &[
        (1, 17, 64, 32),
        (5, 40, 96, 32),
        (9, 33, 128, 64),
        (64, 20, 64, 32),
    ] {
        seed += 1;
        let p = make(Qd8Kind::Qb4w { block }, m, n, k, seed, true, true);
        for pack_cap in [None, Some(pteron_linalg::Isa::Avx2Fma)] {
            for arith in [XnnArith::Avx2, XnnArith::Avx512Vnni] {
                let want = oracle(&p, arith);
                let packed = {
                    let _g = common::lock();
                    pteron_linalg::set_isa_cap(pack_cap);
                    pteron_linalg::set_xnn_arith(Some(arith));
                    let w = PackedQd8::new(p.kind, n, k, &p.w, &p.scales, p.bias.as_deref());
                    pteron_linalg::set_xnn_arith(None);
                    pteron_linalg::set_isa_cap(None);
                    w.unwrap()
                };
                let rl = packed.row_len();
                let mut a = vec![0i8; m * rl];
                let mut params = vec![Qd8Params::default(); m];
                with_tiers(|tier| {
                    packed.quantize_rows(m, &p.x, &mut a, rl, &mut params);
                    let mut c = vec![f32::NAN; m * n];
                    qd8_gemm(m, &a, rl, &params, &packed, &mut c, n, p.lo, p.hi);
                    for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                        assert!(
                            g.to_bits() == w.to_bits(),
                            "{m}x{n}x{k} b{block} packed {pack_cap:?} {arith:?} {tier}: [{i}] got {g}, want {w}",
                        );
                    }
                });
            }
        }
    }
}
