mod common;

use common::{assert_close, for_each_isa, Rng};
use proptest::prelude::*;
use pteron_linalg::pool2d::{avg_pool2d, max_pool2d, Pool2dParams};
use pteron_linalg::{reference, vmath};

/// Compare both pools with the reference on every ISA tier; with `nans`, a few
/// inputs are NaN (max must propagate them exactly where the reference does).
fn check_pool_with(p: &Pool2dParams, seed: u64, nans: bool) {
    let (oh, ow) = p.out_hw().expect("valid");
    let mut rng = Rng::new(seed);
    let mut x = rng.vec(p.batch * p.channels * p.in_h * p.in_w);
    if nans {
        for _ in 0..(x.len() / 17).max(1) {
            let i = rng.below(x.len());
            x[i] = f32::NAN;
        }
    }
    let n = p.batch * p.channels * oh * ow;
    let mut want = vec![0.0; n];
    reference::max_pool2d(p, &x, &mut want);
    let mut want_avg = vec![0.0; n];
    if p.dilation == (1, 1) {
        reference::avg_pool2d(p, &x, &mut want_avg);
    }
    for_each_isa(|isa| {
        let mut got = vec![f32::NAN; n + 3];
        max_pool2d(p, &x, &mut got[..n]).unwrap();
        assert_close(&got[..n], &want, 0.0, &format!("{isa:?} max {p:?}"));
        if p.dilation == (1, 1) {
            avg_pool2d(p, &x, &mut got[..n]).unwrap();
            assert_close(&got[..n], &want_avg, 1e-5, &format!("{isa:?} avg {p:?}"));
        }
        assert!(got[n..].iter().all(|v| v.is_nan()), "wrote past output");
    });
}

fn check_pool(p: &Pool2dParams, seed: u64) {
    check_pool_with(p, seed, false);
}

#[test]
fn pool_cases() {
    let mut p = Pool2dParams::new(1, 64, (112, 112), (3, 3), (2, 2));
    p.padding = (1, 1);
    check_pool(&p, 1);
    // Global average pool.
    check_pool(&Pool2dParams::new(2, 5, (7, 7), (7, 7), (1, 1)), 2);
    // Ceil mode, exclude pad, divisor override.
    let mut q = Pool2dParams::new(1, 3, (10, 11), (3, 2), (2, 3));
    q.padding = (1, 1);
    q.ceil_mode = true;
    q.count_include_pad = false;
    check_pool(&q, 3);
    q.divisor_override = Some(4);
    check_pool(&q, 4);
    // Wide rows (vector main loops + tails), strides 1-3, dilation, NaNs.
    for (i, &(hw, k, s, pad, dil)) in [
        ((9, 37), 3, 1, 1, 1),
        ((20, 45), 3, 2, 1, 1),
        ((17, 50), 2, 2, 0, 1),
        ((13, 40), 5, 3, 2, 1),
        ((15, 33), 3, 2, 1, 2),
    ]
    .iter()
    .enumerate()
    {
        let mut p = Pool2dParams::new(2, 3, hw, (k, k), (s, s));
        p.padding = (pad, pad);
        p.dilation = (dil, dil);
        check_pool_with(&p, 10 + i as u64, false);
        check_pool_with(&p, 20 + i as u64, true);
        p.ceil_mode = true;
        p.count_include_pad = false;
        if p.out_hw().is_some() {
            check_pool_with(&p, 30 + i as u64, true);
        }
    }
    // NaN propagates through max.
    let p = Pool2dParams::new(1, 1, (2, 2), (2, 2), (1, 1));
    let mut out = [0.0];
    max_pool2d(&p, &[1.0, f32::NAN, 3.0, 2.0], &mut out).unwrap();
    assert!(out[0].is_nan());
    // Invalid: padding more than half the kernel.
    let mut bad = Pool2dParams::new(1, 1, (4, 4), (2, 2), (1, 1));
    bad.padding = (2, 0);
    assert!(bad.out_hw().is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn pool_random(
        c in 1usize..4, h in 1usize..15, w in 1usize..15, k in (1usize..5, 1usize..5),
        s in (1usize..4, 1usize..4), pad in (0usize..3, 0usize..3), dil in (1usize..3, 1usize..3),
        ceil: bool, cip: bool, div in 0usize..3, seed: u64,
    ) {
        let mut p = Pool2dParams::new(1, c, (h, w), k, s);
        p.padding = pad;
        p.dilation = dil;
        p.ceil_mode = ceil;
        p.count_include_pad = cip;
        p.divisor_override = if div == 2 { Some(3) } else { None };
        if p.out_hw().is_some() {
            check_pool_with(&p, seed, seed % 4 == 0);
        }
    }
}

fn check_vfun(f: fn(&mut [f32]), r: fn(&mut [f32]), xs: &[f32], rel: f32, abs: f32, name: &str) {
    let mut got = xs.to_vec();
    let mut want = xs.to_vec();
    f(&mut got);
    r(&mut want);
    for i in 0..xs.len() {
        let (g, w) = (got[i], want[i]);
        if w.is_nan() {
            assert!(g.is_nan(), "{name}({}) = {g}, want NaN", xs[i]);
            continue;
        }
        if w.is_infinite() {
            assert_eq!(g, w, "{name}({})", xs[i]);
            continue;
        }
        let err = (g - w).abs();
        assert!(
            err <= rel * w.abs() + abs,
            "{name}({}) = {g}, want {w}, err {err}",
            xs[i]
        );
    }
}

#[test]
fn vmath_accuracy() {
    let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.01).collect();
    let mut rng = Rng::new(5);
    xs.extend((0..997).map(|_| rng.f32() * 90.0));
    xs.extend([
        0.0,
        -0.0,
        1e-30,
        -1e-30,
        88.7,
        89.0,
        -87.0,
        -100.0,
        -110.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    for_each_isa(|isa| {
        let ctx = format!("{isa:?}");
        check_vfun(
            vmath::vexp,
            reference::vexp,
            &xs,
            1e-6,
            1e-37,
            &format!("{ctx} exp"),
        );
        check_vfun(
            vmath::vsigmoid,
            reference::vsigmoid,
            &xs,
            1e-6,
            1e-37,
            &format!("{ctx} sigmoid"),
        );
        check_vfun(
            vmath::vtanh,
            reference::vtanh,
            &xs,
            2e-6,
            1e-37,
            &format!("{ctx} tanh"),
        );
        let finite: Vec<f32> = xs.iter().copied().filter(|v| v.is_finite()).collect();
        let abs_tol: Vec<f32> = finite.clone();
        let _ = abs_tol;
        check_vfun(
            vmath::vgelu,
            reference::vgelu,
            &finite,
            1e-5,
            2e-6,
            &format!("{ctx} gelu"),
        );
    });
}

mod elementwise_tests {
    use super::common::{assert_close, for_each_isa, Rng};
    use proptest::prelude::*;
    use pteron_linalg::{elementwise as ew, global_avg_pool_nchw, reference};

    /// Values with specials mixed in.
    fn values(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n)
            .map(|_| match rng.below(20) {
                0 => f32::NAN,
                1 => f32::INFINITY,
                2 => f32::NEG_INFINITY,
                3 => 0.0,
                4 => -0.0,
                _ => rng.f32() * 10.0,
            })
            .collect()
    }

    /// Bitwise equality except that any NaN matches any NaN.
    fn same(got: &[f32], want: &[f32], ctx: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g.is_nan() && w.is_nan()) || g.to_bits() == w.to_bits() || (g == 0.0 && w == 0.0),
                "{ctx}: [{i}] got {g}, want {w}"
            );
        }
    }

    fn check_all(n: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let a = values(&mut rng, n);
        let b = values(&mut rng, n);
        let s = rng.f32() * 4.0;
        let (lo, hi) = (rng.f32() * 3.0 - 1.0, rng.f32() * 3.0 + 1.0);
        type Bin = fn(&[f32], &[f32], &mut [f32]);
        type Oracle = fn(f32, f32) -> f32;
        let bins: [(&str, Bin, Oracle); 4] = [
            ("add", ew::add, |x, y| x + y),
            ("sub", ew::sub, |x, y| x - y),
            ("mul", ew::mul, |x, y| x * y),
            ("div", ew::div, |x, y| x / y),
        ];
        for_each_isa(|isa| {
            let mut out = vec![0.0; n];
            for (name, f, r) in bins {
                f(&a, &b, &mut out);
                let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| r(x, y)).collect();
                same(&out, &want, &format!("{isa:?} {name} n={n}"));
            }
            ew::add_scalar(&a, s, &mut out);
            same(
                &out,
                &a.iter().map(|&x| x + s).collect::<Vec<_>>(),
                "add_scalar",
            );
            ew::mul_scalar(&a, s, &mut out);
            same(
                &out,
                &a.iter().map(|&x| x * s).collect::<Vec<_>>(),
                "mul_scalar",
            );
            for (l, h) in [(lo, hi), (hi, lo), (0.0, 6.0)] {
                ew::clamp(&a, l, h, &mut out);
                let want: Vec<f32> = a.iter().map(|&x| reference::clamp(x, l, h)).collect();
                same(&out, &want, &format!("{isa:?} clamp({l}, {h}) n={n}"));
            }
            ew::relu(&a, &mut out);
            let want: Vec<f32> = a
                .iter()
                .map(|&x| reference::clamp(x, 0.0, f32::INFINITY))
                .collect();
            same(&out, &want, &format!("{isa:?} relu n={n}"));
        });
    }

    #[test]
    fn elementwise_edges_and_long() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100] {
            check_all(n, n as u64);
        }
        // Long enough to be split over the thread pool.
        check_all(140_001, 99);
    }

    #[test]
    #[should_panic(expected = "length mismatch")]
    fn elementwise_length_mismatch_panics() {
        let mut out = [0.0; 3];
        ew::add(&[1.0; 3], &[1.0; 2], &mut out);
    }

    fn check_gap(n_c: usize, hw: usize, seed: u64) {
        let mut rng = Rng::new(seed);
        let x = rng.vec(n_c * hw);
        let mut want = vec![0.0; n_c];
        reference::global_avg_pool_nchw(&x, n_c, hw, &mut want);
        for_each_isa(|isa| {
            let mut got = vec![f32::NAN; n_c + 2];
            global_avg_pool_nchw(&x, n_c, hw, &mut got);
            assert_close(&got[..n_c], &want, 1e-5, &format!("{isa:?} gap {n_c}x{hw}"));
            assert!(got[n_c..].iter().all(|v| v.is_nan()), "wrote past output");
        });
    }

    #[test]
    fn global_avg_pool_cases() {
        check_gap(1280, 49, 1);
        check_gap(512, 49, 2);
        check_gap(3, 1, 3);
        check_gap(5, 33, 4);
        check_gap(64, 56 * 56, 5);
        check_gap(0, 7, 6);
        let mut out = [0.0; 2];
        global_avg_pool_nchw(&[], 2, 0, &mut out);
        assert!(out.iter().all(|v| v.is_nan()));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn elementwise_random(n in 0usize..300, seed: u64) {
            check_all(n, seed);
        }

        #[test]
        fn global_avg_pool_random(n_c in 0usize..20, hw in 0usize..200, seed: u64) {
            if hw > 0 {
                check_gap(n_c, hw, seed);
            }
        }
    }
}

#[test]
fn dot_and_axpy_match_across_tiers_and_f64() {
    let mut r = Rng::new(41);
    for n in [0usize, 1, 7, 8, 9, 16, 47, 48, 100, 257] {
        let a = r.vec(n);
        let b = r.vec(n);
        let y0 = r.vec(n);
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let mut dots = Vec::new();
        let mut axpys = Vec::new();
        for_each_isa(|_| {
            dots.push(vmath::dot(&a, &b));
            let mut y = y0.clone();
            vmath::axpy(0.75, &a, &mut y);
            axpys.push(y);
        });
        assert!(
            dots.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()),
            "dot n={n}: {dots:?}"
        );
        assert!(
            (dots[0] as f64 - exact).abs() <= 1e-5 * (1.0 + n as f64),
            "dot n={n}"
        );
        assert!(axpys.windows(2).all(|w| w[0] == w[1]), "axpy n={n}");
        for i in 0..n {
            assert_eq!(
                axpys[0][i],
                0.75f32.mul_add(a[i], y0[i]),
                "axpy n={n} [{i}]"
            );
        }
    }
}

/// `dot_rows`/`axpy_rows` give exactly what `dot`/`axpy` row by row give, on each tier
/// (and the tiers agree with each other, as `dot`/`axpy` are bit-identical across them).
fn check_rows(d: usize, n: usize, stride: usize, seed: u64) {
    let mut r = Rng::new(seed);
    let a = r.vec(d);
    let b = r.vec((n - 1) * stride + d);
    let mut p = r.vec(n);
    p[n / 2] = 0.0;
    for_each_isa(|isa| {
        let mut out = vec![0.0; n];
        vmath::dot_rows(&a, &b, stride, &mut out);
        let mut y = a.clone();
        vmath::axpy_rows(&p, &b, stride, &mut y);
        let mut y2 = a.clone();
        for c in 0..n {
            let row = &b[c * stride..c * stride + d];
            assert_eq!(
                out[c].to_bits(),
                vmath::dot(&a, row).to_bits(),
                "{isa:?} dot row {c} d={d} n={n} stride={stride}"
            );
            if p[c] != 0.0 {
                vmath::axpy(p[c], row, &mut y2);
            }
        }
        assert_eq!(y, y2, "{isa:?} axpy_rows d={d} n={n} stride={stride}");
    });
}

#[test]
fn dot_rows_and_axpy_rows_equal_their_row_by_row_forms() {
    for (d, n, stride) in [
        (48usize, 5usize, 48usize),
        (7, 3, 20),
        (64, 1, 64),
        (16, 9, 32),
        (48, 67, 288),
        (130, 13, 131),
        (72, 4, 72),
        (8, 8, 8),
        (1, 6, 3),
        (200, 9, 256),
    ] {
        check_rows(d, n, stride, 43);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn dot_rows_and_axpy_rows_random(d in 1usize..160, n in 1usize..70, extra in 0usize..40, seed: u64) {
        check_rows(d, n, d + extra, seed);
    }
}

/// Equal bits, or both NaN (any payload).
fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Asserts `got(x)` and `want(x)` have the same bits ([`same_bits`]) for both
/// signs of every bit pattern in `picks` that `keep` accepts; the message names
/// `what` the reference is, the count compared and a few differences.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn assert_same_as(
    what: &str,
    picks: impl Iterator<Item = u32>,
    keep: impl Fn(f32) -> bool,
    got: impl Fn(f32) -> f32,
    want: impl Fn(f32) -> f32,
) {
    let mut bad = Vec::new();
    let mut n = 0usize;
    for bits in picks {
        for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
            if !keep(x) {
                continue;
            }
            n += 1;
            let (g, w) = (got(x), want(x));
            if !same_bits(g, w) {
                bad.push((x, g, w));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {n} differ from {what}, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
}

/// `vmath`'s exp follows glibc's `expf` arithmetic: on glibc (where Rust's
/// `f32::exp` is that `expf`) the results are identical over the whole range.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exp_matches_glibc_expf() {
    let (lo, hi) = (-104.5f32, 89.0f32);
    // Every 61st bit pattern of each sign over the range (with +-0, specials).
    assert_same_as(
        "expf",
        (0u32..0x8000_0000)
            .step_by(61)
            .chain([0, 0x7f80_0000, 0x7fc0_0000]),
        |x| x.is_nan() || (lo..=hi).contains(&x) || x.is_infinite(),
        pteron_linalg::vmath::exp_scalar,
        f32::exp,
    );
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::{c_char, CStr};
    extern "C" {
        fn erff(x: f32) -> f32;
        fn gnu_get_libc_version() -> *const c_char;
    }
    /// The platform `erff`.
    pub fn platform_erff(x: f32) -> f32 {
        // SAFETY: `erff` is a pure libm function of one float.
        unsafe { erff(x) }
    }
    /// glibc's `(major, minor)` version.
    pub fn version() -> (u32, u32) {
        // SAFETY: glibc returns a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(gnu_get_libc_version()) };
        let v = v.to_str().unwrap_or("0.0");
        let mut it = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    }
}

/// `vmath::erf_f32` follows the `erff` of glibc up to 2.40 (fdlibm's, which
/// ExecuTorch calls on the reference machine; glibc 2.41 replaced it with a
/// correctly rounded one): identical results on every sampled float, the
/// subnormals, the interval ends and the specials.
#[test]
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn erf_matches_glibc_erff() {
    let ver = glibc::version();
    if ver >= (2, 41) {
        eprintln!("skipped: glibc {ver:?} has a different erff than the reference's 2.36");
        return;
    }
    let ends = [
        0x0400_0000u32,
        0x3180_0000,
        0x3f58_0000,
        0x3fa0_0000,
        0x4036_db6e,
        0x40c0_0000,
    ];
    let picks = (0u32..0x8000_0000)
        .step_by(127)
        .chain(0..4096)
        .chain(ends.iter().flat_map(|&e| e - 64..e + 64))
        .chain([0x7f80_0000, 0x7fc0_0000]);
    assert_same_as(
        "erff",
        picks,
        |_| true,
        pteron_linalg::vmath::erf_f32,
        glibc::platform_erff,
    );
}

/// The SIMD `vexp` gives the scalar `exp_scalar` bit for bit (every tier computes
/// the same function), including the ends of the range and the specials.
#[test]
fn vexp_matches_exp_scalar() {
    let mut xs: Vec<f32> = (0u32..0x8000_0000)
        .step_by(997)
        .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
        .filter(|x| (-110.0..=95.0).contains(x))
        .collect();
    xs.extend([
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        88.72283,
        88.722_84,
        -103.97207,
        -103.972_08,
        0.0,
        -0.0,
    ]);
    let mut got = xs.clone();
    pteron_linalg::vmath::vexp(&mut got);
    for (&x, &g) in xs.iter().zip(&got) {
        let w = pteron_linalg::vmath::exp_scalar(x);
        assert!(same_bits(g, w), "exp({x}): vexp {g}, exp_scalar {w}");
    }
}
