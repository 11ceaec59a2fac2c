//! Timing of `aten::convolution.out` on the convolutions of MobileNetV2 (1×3×224×224).
//!
//! Run with `cargo test --release -p pteron-ops --test nn_speed -- --ignored --nocapture`.
//! Per layer it prints: the prepared path (`pteron_linalg::Conv2d::run`, what the
//! kernel calls when the weight is a load-time constant), the whole `run_op` call
//! with a constant weight (argument copies + load-time packing + run), and
//! `run_op` with a run-time weight (im2col into load-time scratch + sgemm, the
//! dynamic-shape path).

use std::time::Instant;

use pteron_linalg::{Activation, Conv2d, Conv2dParams};
use pteron_runtime::testing::{run_op, TestArg, TestTensor};
use pteron_runtime::ScalarType;

struct Layer {
    cin: usize,
    cout: usize,
    k: usize,
    s: usize,
    groups: usize,
    h: usize,
}

fn mobilenet_v2_convs() -> Vec<Layer> {
    let mut v = vec![Layer {
        cin: 3,
        cout: 32,
        k: 3,
        s: 2,
        groups: 1,
        h: 224,
    }];
    let (mut c, mut h) = (32, 112);
    for &(t, co, n, s) in &[
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let hidden = c * t;
            if t != 1 {
                v.push(Layer {
                    cin: c,
                    cout: hidden,
                    k: 1,
                    s: 1,
                    groups: 1,
                    h,
                });
            }
            v.push(Layer {
                cin: hidden,
                cout: hidden,
                k: 3,
                s: stride,
                groups: hidden,
                h,
            });
            h = (h + 2 - 3) / stride + 1;
            v.push(Layer {
                cin: hidden,
                cout: co,
                k: 1,
                s: 1,
                groups: 1,
                h,
            });
            c = co;
        }
    }
    v.push(Layer {
        cin: 320,
        cout: 1280,
        k: 1,
        s: 1,
        groups: 1,
        h: 7,
    });
    v
}

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn median_ms(iters: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..iters)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn args(l: &Layer, x: &[f32], w: &[f32], b: &[f32], constant: bool) -> Vec<TestArg> {
    let p = l.k / 2;
    let oh = (l.h + 2 * p - l.k) / l.s + 1;
    let wt = TestTensor::new(&[l.cout, l.cin / l.groups, l.k, l.k], w.to_vec());
    let bt = TestTensor::new(&[l.cout], b.to_vec());
    vec![
        TestArg::Tensor(TestTensor::new(&[1, l.cin, l.h, l.h], x.to_vec())),
        if constant {
            TestArg::Const(wt)
        } else {
            TestArg::Tensor(wt)
        },
        if constant {
            TestArg::Const(bt)
        } else {
            TestArg::Tensor(bt)
        },
        TestArg::IntList(vec![l.s as i64; 2]),
        TestArg::IntList(vec![p as i64; 2]),
        TestArg::IntList(vec![1, 1]),
        TestArg::Bool(false),
        TestArg::IntList(vec![0, 0]),
        TestArg::Int(l.groups as i64),
        TestArg::Tensor(TestTensor::out(ScalarType::Float, &[1, l.cout, oh, oh])),
        TestArg::Ref(9),
    ]
}

#[test]
#[ignore]
fn convolution_mobilenet_v2_224() {
    let reg = pteron_ops::registry();
    let layers = mobilenet_v2_convs();
    let (mut t_prep, mut t_const, mut t_rt) = (0.0, 0.0, 0.0);
    let mut flops = 0.0;
    println!(
        "{:>5} {:>5} {:>2} {:>2} {:>5} {:>4} | {:>9} {:>9} {:>9}",
        "cin", "cout", "k", "s", "grp", "h", "prep ms", "op+pack", "op rt-w"
    );
    for (i, l) in layers.iter().enumerate() {
        let p = l.k / 2;
        let oh = (l.h + 2 * p - l.k) / l.s + 1;
        let x = data(l.cin * l.h * l.h, i as u32 + 1);
        let w = data(l.cout * (l.cin / l.groups) * l.k * l.k, i as u32 + 100);
        let b = data(l.cout, i as u32 + 200);
        let params = Conv2dParams {
            batch: 1,
            in_c: l.cin,
            in_h: l.h,
            in_w: l.h,
            out_c: l.cout,
            k_h: l.k,
            k_w: l.k,
            stride: (l.s, l.s),
            padding: (p, p),
            dilation: (1, 1),
            groups: l.groups,
        };
        let conv = Conv2d::new(params, &w, Some(&b), Activation::None).unwrap();
        let mut y = vec![0.0f32; l.cout * oh * oh];
        let a = median_ms(20, || conv.run(&x, &mut y, &mut []));
        let c = median_ms(5, || {
            run_op(&reg, "aten::convolution.out", args(l, &x, &w, &b, true)).unwrap();
        });
        let r = median_ms(5, || {
            run_op(&reg, "aten::convolution.out", args(l, &x, &w, &b, false)).unwrap();
        });
        // Check the op agrees with the prepared conv.
        let out = run_op(&reg, "aten::convolution.out", args(l, &x, &w, &b, true)).unwrap();
        let got = out[9].tensor().to_vec::<f32>();
        let err = got
            .iter()
            .zip(&y)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-3, "layer {i}: op differs from Conv2d by {err}");
        flops += 2.0 * (l.cout * oh * oh * (l.cin / l.groups) * l.k * l.k) as f64;
        t_prep += a;
        t_const += c;
        t_rt += r;
        println!(
            "{:>5} {:>5} {:>2} {:>2} {:>5} {:>4} | {a:>9.3} {c:>9.3} {r:>9.3}",
            l.cin, l.cout, l.k, l.s, l.groups, l.h
        );
    }
    println!(
        "total: prepared {t_prep:.2} ms ({:.1} GFLOP/s), op+pack {t_const:.2} ms, op with run-time weights {t_rt:.2} ms; {:.0} MFLOP, {} threads",
        flops / t_prep / 1e6,
        flops / 1e6,
        pteron_linalg::num_threads()
    );
}
