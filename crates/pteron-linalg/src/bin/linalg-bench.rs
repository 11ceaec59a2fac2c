//! Micro/macro benchmarks for pteron-linalg (std::time only).
//!
//! `cargo run --release -p pteron-linalg --bin linalg-bench [-- --threads N] [--isa scalar|avx2]`
//! (no `--isa`: the best tier, with the AVX-512 kernels where the CPU has them)

use pteron_linalg::nhwc::{
    depthwise_nhwc, max_pool_nhwc, pointwise_depthwise_nhwc, ConvNhwc, ConvNhwcParams, Window,
};
use pteron_linalg::{
    pool2d, qadd, qconv2d_nhwc, qdwconv_nhwc, qgemm, quantize_q8, set_isa_cap, set_num_threads,
    sgemm, sgemm_packed, Activation, Bias, Conv2d, Conv2dParams, GemmArgs, Isa, PackedB, PackedQDw,
    PackedQs8, QAddParams, QConvGeom, QOut,
};
use pteron_linalg::{qd8_gemm, PackedQd8, Qd8Kind, Qd8Params};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// On-CPU nanoseconds of the calling thread (Linux schedstat), if available.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Seconds per call of `f`: the best batch (wall clock). With one thread the
/// calling thread's on-CPU time is used instead when available, which is robust
/// against other processes competing for the (shared) cores.
fn time<F: FnMut()>(mut f: F) -> f64 {
    f();
    let t = Instant::now();
    f();
    let one = t.elapsed().as_secs_f64().max(1e-7);
    let iters = ((2e-3 / one) as usize).clamp(1, 10_000);
    let use_cpu = pteron_linalg::num_threads() == 1 && thread_cpu_ns().is_some();
    let mut best = f64::INFINITY;
    let start = Instant::now();
    let mut batches = 0;
    let mut total_iters = 0usize;
    let c0 = thread_cpu_ns().unwrap_or(0);
    while batches < 5 || (start.elapsed() < Duration::from_millis(400) && batches < 200) {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        best = best.min(t.elapsed().as_secs_f64() / iters as f64);
        batches += 1;
        total_iters += iters;
    }
    // schedstat advances at scheduler ticks, so use the mean over the whole run.
    let cpu = thread_cpu_ns().unwrap_or(0).saturating_sub(c0) as f64 * 1e-9;
    if use_cpu && cpu > 0.0 {
        (cpu / total_iters as f64).min(best)
    } else {
        best
    }
}

fn fill(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).max(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect()
}

fn report(name: &str, flops: f64, secs: f64) {
    println!(
        "{name:<44} {:>9.1} us {:>8.1} GFLOPS",
        secs * 1e6,
        flops / secs / 1e9
    );
}

fn bench_gemm(name: &str, m: usize, n: usize, k: usize) {
    if !selected(name) {
        return;
    }
    let a = fill(m * k, 1);
    let b = fill(k * n, 2);
    let mut c = vec![0.0; m * n];
    let s = time(|| {
        sgemm(GemmArgs {
            m,
            n,
            k,
            a: &a,
            lda: k,
            a_trans: false,
            b: &b,
            ldb: n,
            b_trans: false,
            c: &mut c,
            ldc: n,
            beta: 0.0,
            alpha: 1.0,
            bias: Bias::None,
            act: Activation::None,
        });
        black_box(&c);
    });
    report(name, 2.0 * (m * n * k) as f64, s);
}

#[allow(clippy::too_many_arguments)]
fn conv_p(in_c: usize, hw: usize, out_c: usize, k: usize, s: usize, groups: usize) -> Conv2dParams {
    Conv2dParams {
        batch: 1,
        in_c,
        in_h: hw,
        in_w: hw,
        out_c,
        k_h: k,
        k_w: k,
        stride: (s, s),
        padding: (k / 2, k / 2),
        dilation: (1, 1),
        groups,
    }
}

fn conv_flops(p: &Conv2dParams) -> f64 {
    let (oh, ow) = p.out_hw().unwrap();
    2.0 * (p.out_c * oh * ow * (p.in_c / p.groups) * p.k_h * p.k_w) as f64
}

struct Layer {
    conv: Conv2d,
    p: Conv2dParams,
    out: Vec<f32>,
}

fn layer(p: Conv2dParams, act: Activation) -> Layer {
    let w = fill(p.out_c * (p.in_c / p.groups) * p.k_h * p.k_w, 7);
    let b = fill(p.out_c, 8);
    let (oh, ow) = p.out_hw().unwrap();
    Layer {
        conv: Conv2d::new(p, &w, Some(&b), act).unwrap(),
        p,
        out: vec![0.0; p.out_c * oh * ow],
    }
}

/// `--filter SUBSTR`: only run micro benchmarks whose name contains SUBSTR.
fn selected(name: &str) -> bool {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--filter") {
        Some(i) => args.get(i + 1).is_some_and(|f| name.contains(f.as_str())),
        None => true,
    }
}

/// NHWC indirect-GEMM convolution `in_c -> out_c`, `k`×`k` stride `s`, pad `k/2`, on
/// an `hw`×`hw` input (ReLU fused).
fn bench_nhwc(name: &str, in_c: usize, hw: usize, out_c: usize, k: usize, s: usize) {
    if !selected(name) {
        return;
    }
    let p = ConvNhwcParams {
        in_c,
        out_c,
        kh: k,
        kw: k,
        stride: (s, s),
        dilation: (1, 1),
        pad_top: k / 2,
        pad_left: k / 2,
    };
    let w = fill(out_c * k * k * in_c, 7);
    let bias = fill(out_c, 8);
    let conv = ConvNhwc::new(p, &w, Some(&bias)).expect("supported conv");
    let o = (hw + 2 * (k / 2) - k) / s + 1;
    let x = fill(hw * hw * in_c, 3);
    let mut out = vec![0.0; o * o * out_c];
    let t = time(|| {
        conv.run(&x, (1, hw, hw), (o, o), &mut out, (0.0, f32::INFINITY));
        black_box(&out);
    });
    report(name, 2.0 * (o * o * out_c * k * k * in_c) as f64, t);
}

/// NHWC depthwise `k`x`k` (pad k/2) and, for k = 3, max pool 3x3 (pad 1) on `c`
/// channels.
fn bench_nhwc_window(k: usize, c: usize, hw: usize, s: usize) {
    let win = Window {
        kh: k,
        kw: k,
        stride: (s, s),
        dilation: (1, 1),
        pad_top: k / 2,
        pad_left: k / 2,
    };
    let o = (hw - 1) / s + 1;
    let x = fill(hw * hw * c, 3);
    let wt = fill(k * k * c, 4);
    let bias = fill(c, 5);
    let mut out = vec![0.0; o * o * c];
    let name = format!("dwconv_nhwc {k}x{k}/{s} {c} @{hw}");
    if selected(&name) {
        let t = time(|| {
            depthwise_nhwc(
                &x,
                (1, hw, hw, c),
                &win,
                (o, o),
                &wt,
                &bias,
                (0.0, 6.0),
                &mut out,
            );
            black_box(&out);
        });
        report(&name, 2.0 * (o * o * c * k * k) as f64, t);
    }
    let name = format!("maxpool_nhwc 3x3/{s} {c} @{hw}");
    if k == 3 && selected(&name) {
        let t = time(|| {
            max_pool_nhwc(
                &x,
                (1, hw, hw, c),
                &win,
                (o, o),
                (f32::NEG_INFINITY, f32::INFINITY),
                &mut out,
            );
            black_box(&out);
        });
        report(&name, (o * o * c * 9) as f64, t);
    }
}

/// MobileNet's expand 1x1 `in_c -> c` (ReLU6) then depthwise 3x3 stride `s` (pad 1,
/// ReLU6) on an `hw`x`hw` map: the two kernels one after the other through the
/// whole expanded tensor, and fused into row bands (`pointwise_depthwise_nhwc`).
fn bench_pw_dw(in_c: usize, c: usize, hw: usize, s: usize) {
    let p = ConvNhwcParams::pointwise(in_c, c);
    let conv = ConvNhwc::new(p, &fill(c * in_c, 7), Some(&fill(c, 8))).expect("supported conv");
    let win = Window {
        kh: 3,
        kw: 3,
        stride: (s, s),
        dilation: (1, 1),
        pad_top: 1,
        pad_left: 1,
    };
    let o = (hw - 1) / s + 1;
    let x = fill(hw * hw * in_c, 3);
    let (wt, bias) = (fill(9 * c, 4), fill(c, 5));
    let mut mid = vec![0.0; hw * hw * c];
    let mut out = vec![0.0; o * o * c];
    let flops = 2.0 * (hw * hw * c * in_c + o * o * c * 9) as f64;
    let r6 = (0.0, 6.0);
    let name = format!("pw_dw_nhwc {in_c}->{c} @{hw} 3x3/{s} unfused");
    if selected(&name) {
        let t = time(|| {
            conv.run(&x, (1, hw, hw), (hw, hw), &mut mid, r6);
            depthwise_nhwc(&mid, (1, hw, hw, c), &win, (o, o), &wt, &bias, r6, &mut out);
            black_box(&out);
        });
        report(&name, flops, t);
    }
    let name = format!("pw_dw_nhwc {in_c}->{c} @{hw} 3x3/{s} fused");
    if selected(&name) {
        let t = time(|| {
            pointwise_depthwise_nhwc(
                &conv,
                r6,
                &x,
                (1, hw, hw),
                &win,
                (o, o),
                &wt,
                &bias,
                r6,
                &mut out,
            );
            black_box(&out);
        });
        report(&name, flops, t);
    }
}

fn bench_conv(name: &str, p: Conv2dParams) {
    if !selected(name) {
        return;
    }
    let mut l = layer(p, Activation::Relu6);
    let x = fill(p.in_c * p.in_h * p.in_w, 3);
    let s = time(|| {
        l.conv.run(&x, &mut l.out, &mut []);
        black_box(&l.out);
    });
    report(name, conv_flops(&p), s);
}

/// Run a chain of layers; each reads the previous output when the shapes line up,
/// else the (large) random buffer `x`.
fn run_chain(layers: &mut [Layer], x: &[f32]) {
    for i in 0..layers.len() {
        let (before, rest) = layers.split_at_mut(i);
        let l = &mut rest[0];
        let need = l.p.in_c * l.p.in_h * l.p.in_w;
        let input = match before.last() {
            Some(prev) if prev.out.len() == need => &prev.out[..],
            _ => &x[..need],
        };
        l.conv.run(input, &mut l.out, &mut []);
    }
}

fn mobilenet_v2() -> (Vec<Layer>, f64) {
    let r6 = Activation::Relu6;
    let mut v = vec![layer(conv_p(3, 224, 32, 3, 2, 1), r6)];
    let mut c = 32;
    let mut hw = 112;
    // t=1 block.
    v.push(layer(conv_p(c, hw, c, 3, 1, c), r6));
    v.push(layer(conv_p(c, hw, 16, 1, 1, 1), Activation::None));
    c = 16;
    for &(t, oc, n, s) in &[
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ] {
        for i in 0..n {
            let st = if i == 0 { s } else { 1 };
            let e = c * t;
            v.push(layer(conv_p(c, hw, e, 1, 1, 1), r6));
            v.push(layer(conv_p(e, hw, e, 3, st, e), r6));
            hw = hw.div_ceil(st);
            v.push(layer(conv_p(e, hw, oc, 1, 1, 1), Activation::None));
            c = oc;
        }
    }
    v.push(layer(conv_p(c, hw, 1280, 1, 1, 1), r6));
    let flops = v.iter().map(|l| conv_flops(&l.p)).sum::<f64>() + 2.0 * 1280.0 * 1000.0;
    (v, flops)
}

fn resnet18() -> (Vec<Layer>, f64) {
    let r = Activation::Relu;
    let mut v = vec![layer(conv_p(3, 224, 64, 7, 2, 1), r)];
    let mut c = 64;
    let mut hw = 56;
    for &(oc, s) in &[(64, 1), (128, 2), (256, 2), (512, 2)] {
        for b in 0..2 {
            let st = if b == 0 { s } else { 1 };
            v.push(layer(conv_p(c, hw, oc, 3, st, 1), r));
            if st != 1 || c != oc {
                let mut ds = conv_p(c, hw, oc, 1, st, 1);
                ds.padding = (0, 0);
                v.push(layer(ds, Activation::None));
            }
            hw = hw.div_ceil(st);
            v.push(layer(conv_p(oc, hw, oc, 3, 1, 1), r));
            c = oc;
        }
    }
    let flops = v.iter().map(|l| conv_flops(&l.p)).sum::<f64>() + 2.0 * 512.0 * 1000.0;
    (v, flops)
}

fn bench_fc(
    name: &str,
    in_f: usize,
    out_f: usize,
    x: &[f32],
    out: &mut [f32],
    packed: &PackedB,
) -> f64 {
    let s = time(|| {
        sgemm_packed(
            1,
            x,
            in_f,
            false,
            packed,
            out,
            out_f,
            Bias::None,
            Activation::None,
        );
        black_box(&out);
    });
    report(name, 2.0 * (in_f * out_f) as f64, s);
    s
}

/// qd8 linear: quantize the `m` rows, then the integer GEMM (what one XNNPACK
/// dynamically quantized fully-connected node does). Reports GOPS (2·m·n·k) and
/// the weight bytes streamed per second.
fn bench_qd8(name: &str, kind: Qd8Kind, m: usize, n: usize, k: usize) {
    if !selected(name) {
        return;
    }
    let x = fill(m * k, 11);
    let wf = fill(n * k, 12);
    let (w, nb): (Vec<i8>, usize) = match kind {
        Qd8Kind::Qc8w => (wf.iter().map(|v| (v * 255.0) as i8).collect(), 1),
        Qd8Kind::Qc4w => (wf.iter().map(|v| (v * 15.0) as i8).collect(), 1),
        Qd8Kind::Qb4w { block } => (wf.iter().map(|v| (v * 15.0) as i8).collect(), k / block),
    };
    let scales = vec![0.01f32; n * nb];
    let packed = PackedQd8::new(kind, n, k, &w, &scales, None).expect("pack");
    let kp = packed.row_len();
    let mut qa = vec![0i8; m * kp];
    let mut qp = vec![Qd8Params::default(); m];
    let mut out = vec![0.0f32; m * n];
    let s = time(|| {
        packed.quantize_rows(m, &x, &mut qa, kp, &mut qp);
        qd8_gemm(
            m,
            &qa,
            kp,
            &qp,
            &packed,
            &mut out,
            n,
            f32::NEG_INFINITY,
            f32::INFINITY,
        );
        black_box(&out);
    });
    println!(
        "{name:<44} {:>9.1} us {:>8.1} GOPS {:>7.1} GMAC/s {:>6.1} GB/s of weights",
        s * 1e6,
        2.0 * (m * n * k) as f64 / s / 1e9,
        (m * n * k) as f64 / s / 1e9,
        packed.bytes() as f64 / s / 1e9
    );
}

/// qd8 decode (`m = 1`) through `copies` different weight matrices in turn, so
/// that they come from DRAM rather than cache (an LLM decode step).
fn bench_qd8_cold(name: &str, kind: Qd8Kind, n: usize, k: usize, copies: usize) {
    if !selected(name) {
        return;
    }
    let x = fill(k, 11);
    let w: Vec<i8> = fill(n * k, 12).iter().map(|v| (v * 7.0) as i8).collect();
    let scales = match kind {
        Qd8Kind::Qb4w { block } => vec![0.01f32; n * (k / block)],
        _ => vec![0.01f32; n],
    };
    let packed: Vec<PackedQd8> = (0..copies)
        .map(|_| PackedQd8::new(kind, n, k, &w, &scales, None).expect("pack"))
        .collect();
    let kp = packed[0].row_len();
    let mut qa = vec![0i8; kp];
    let mut qp = vec![Qd8Params::default(); 1];
    let mut out = vec![0.0f32; n];
    let s = time(|| {
        for p in &packed {
            p.quantize_rows(1, &x, &mut qa, kp, &mut qp);
            let (lo, hi) = (f32::NEG_INFINITY, f32::INFINITY);
            qd8_gemm(1, &qa, kp, &qp, p, &mut out, n, lo, hi);
        }
        black_box(&out);
    }) / copies as f64;
    println!(
        "{name:<44} {:>9.1} us per matrix {:>6.1} GB/s of weights",
        s * 1e6,
        packed[0].bytes() as f64 / s / 1e9
    );
}

/// Packing `qb4w` weights from the stored nibbles (part of a model's load time).
fn bench_qd8_pack(name: &str, block: usize, n: usize, k: usize) {
    if !selected(name) {
        return;
    }
    let nib: Vec<u8> = fill(n * k / 2, 13)
        .iter()
        .map(|v| (v * 127.0 + 128.0) as u8)
        .collect();
    let scales = vec![0.01f32; n * (k / block)];
    let kind = Qd8Kind::Qb4w { block };
    let s = time(|| {
        black_box(PackedQd8::from_nibbles(kind, n, k, &nib, &scales, None).expect("pack"));
    });
    println!(
        "{name:<44} {:>9.1} us {:>6.1} GB/s of weights",
        s * 1e6,
        (n * k / 2) as f64 / s / 1e9
    );
}

/// f32 packed GEMM and int8 qgemm on the same `m × n × k` (NHWC 1x1-conv shape).
fn bench_qgemm(name: &str, m: usize, n: usize, k: usize) {
    let fname = format!("sgemm_packed {name}");
    let qname = format!("qgemm {name}");
    if selected(&fname) {
        let a = fill(m * k, 1);
        let w = fill(n * k, 2);
        let pb = PackedB::new(k, n, &w, k, true);
        let mut c = vec![0.0; m * n];
        let s = time(|| {
            sgemm_packed(
                m,
                &a,
                k,
                false,
                &pb,
                &mut c,
                n,
                Bias::None,
                Activation::None,
            );
            black_box(&c);
        });
        report(&fname, 2.0 * (m * n * k) as f64, s);
    }
    if selected(&qname) {
        let a: Vec<u8> = fill(m * k, 3)
            .iter()
            .map(|v| (v * 250.0) as i8 as u8)
            .collect();
        let w: Vec<i8> = fill(n * k, 4).iter().map(|v| (v * 250.0) as i8).collect();
        let scales: Vec<f32> = (0..n).map(|j| 0.001 + j as f32 * 1e-5).collect();
        let pk = PackedQs8::new(k, n, &w, k, None, 3, false, &scales, QOut::qs8(-2));
        let mut c = vec![0u8; m * n];
        let s = time(|| {
            qgemm(m, &a, k, &pk, &mut c, n);
            black_box(&c);
        });
        report(&qname, 2.0 * (m * n * k) as f64, s);
    }
}

/// Geometry of a `k`×`k` stride `s` window with padding `k/2` on one `hw`×`hw`
/// image of `c` channels.
fn square_geom(c: usize, hw: usize, k: usize, s: usize) -> QConvGeom {
    let pad = k / 2;
    let o = (hw + 2 * pad - k) / s + 1;
    QConvGeom {
        batch: 1,
        in_h: hw,
        in_w: hw,
        in_c: c,
        out_h: o,
        out_w: o,
        kh: k,
        kw: k,
        sh: s,
        sw: s,
        dh: 1,
        dw: 1,
        pad_top: pad,
        pad_left: pad,
    }
}

/// Int8 NHWC convolution `in_c -> out_c`, `k`×`k` stride `s`, pad `k/2`, on an
/// `hw`×`hw` input (im2col rows built while packing, no scratch copy).
fn bench_qconv(name: &str, in_c: usize, hw: usize, out_c: usize, k: usize, s: usize) {
    if !selected(name) {
        return;
    }
    let g = square_geom(in_c, hw, k, s);
    let o = g.out_h;
    let x: Vec<u8> = fill(hw * hw * in_c, 7)
        .iter()
        .map(|v| (v * 250.0) as i8 as u8)
        .collect();
    let kk = k * k * in_c;
    let w: Vec<i8> = fill(out_c * kk, 8)
        .iter()
        .map(|v| (v * 250.0) as i8)
        .collect();
    let pk = [
        PackedQs8::new(kk, out_c, &w, kk, None, 1, false, &[0.001], QOut::qs8(0))
            .with_conv_taps(in_c, k),
    ];
    let mut out = vec![0u8; o * o * out_c];
    let t = time(|| {
        qconv2d_nhwc(&g, &x, &pk, 1, &mut out);
        black_box(&out);
    });
    report(name, 2.0 * (o * o * out_c * kk) as f64, t);
}

/// Int8 depthwise (NHWC, padding 1 or 2) on `c` channels of `hw × hw`.
fn bench_qdw(name: &str, c: usize, hw: usize, k: usize, stride: usize) {
    if !selected(name) {
        return;
    }
    let g = square_geom(c, hw, k, stride);
    let o = g.out_h;
    let x: Vec<u8> = fill(hw * hw * c, 5)
        .iter()
        .map(|v| (v * 250.0) as i8 as u8)
        .collect();
    let w: Vec<i8> = fill(k * k * c, 6)
        .iter()
        .map(|v| (v * 250.0) as i8)
        .collect();
    let pk = PackedQDw::new(k * k, c, &w, None, 1, false, &[0.01], QOut::qs8(0));
    let mut out = vec![0u8; o * o * c];
    let s = time(|| {
        qdwconv_nhwc(&g, &x, &pk, &mut out);
        black_box(&out);
    });
    report(name, 2.0 * (o * o * c * k * k) as f64, s);
}

/// Attention over a KV cache for one decoded token: scores of one query row against
/// `n` key rows of 48 floats (row stride 288 = 6 heads), then `p · V` over them.
fn bench_attention_rows(n: usize) {
    let name = format!("attention rows d48 x{n} (dot_rows + axpy_rows)");
    if !selected(&name) {
        return;
    }
    let (d, stride) = (48, 288);
    let q = fill(d, 11);
    let kv = fill((n - 1) * stride + d, 12);
    let mut p = vec![0.0f32; n];
    let mut acc = vec![0.0f32; d];
    let s = time(|| {
        pteron_linalg::vmath::dot_rows(&q, &kv, stride, &mut p);
        pteron_linalg::vmath::axpy_rows(&p, &kv, stride, &mut acc);
        black_box(&acc);
    });
    report(&name, 4.0 * (n * d) as f64, s);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--threads" => {
                set_num_threads(args[i + 1].parse().expect("thread count"));
                i += 1;
            }
            "--filter" => i += 1,
            "--isa" => {
                set_isa_cap(Isa::parse(&args[i + 1]));
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    println!(
        "pteron-linalg bench: isa={:?} avx512={} threads={}",
        pteron_linalg::isa(),
        pteron_linalg::avx512(),
        pteron_linalg::num_threads()
    );
    println!("-- GEMM");
    bench_gemm("sgemm 512x512x512", 512, 512, 512);
    bench_gemm("sgemm 16x12544x32 (1x1 32->16 @112)", 16, 12544, 32);
    bench_gemm("sgemm 64x3136x576 (3x3 64->64 @56 im2col)", 64, 3136, 576);
    bench_gemm("sgemm 1x1000x1280 (gemv row-major B)", 1, 1000, 1280);
    let w = fill(1280 * 1000, 5);
    let x = fill(1280, 6);
    let mut out = vec![0.0; 1000];
    let packed = PackedB::new(1280, 1000, &w, 1280, true);
    if selected("sgemm_packed 1x1280x1000 (Linear)") {
        bench_fc(
            "sgemm_packed 1x1280x1000 (Linear)",
            1280,
            1000,
            &x,
            &mut out,
            &packed,
        );
    }
    println!("-- Conv2d");
    bench_conv("conv 1x1 32->16 @112", conv_p(32, 112, 16, 1, 1, 1));
    bench_conv("conv 1x1 96->24 @56", conv_p(96, 56, 24, 1, 1, 1));
    bench_conv("conv 1x1 960->160 @7", conv_p(960, 7, 160, 1, 1, 1));
    bench_conv("conv 3x3 64->64 @56", conv_p(64, 56, 64, 3, 1, 1));
    bench_conv("conv 3x3 256->256 @14", conv_p(256, 14, 256, 3, 1, 1));
    bench_conv("conv 7x7/2 3->64 @224", conv_p(3, 224, 64, 7, 2, 1));
    bench_conv("conv 3x3/2 3->32 @224", conv_p(3, 224, 32, 3, 2, 1));
    bench_conv("dwconv 3x3 32 @112", conv_p(32, 112, 32, 3, 1, 32));
    bench_conv("dwconv 3x3/2 96 @112", conv_p(96, 112, 96, 3, 2, 96));
    bench_conv("dwconv 3x3 960 @7", conv_p(960, 7, 960, 3, 1, 960));
    bench_conv("dwconv 5x5 64 @56", conv_p(64, 56, 64, 5, 1, 64));
    println!("-- Attention (vmath rows)");
    bench_attention_rows(64);
    bench_attention_rows(256);
    println!("-- Int8 (qs8 x qc8w -> qs8, fp32 requantization) vs f32 on the same shapes");
    bench_qgemm("12544x16x32 (1x1 32->16 @112)", 12544, 16, 32);
    bench_qgemm("12544x96x16 (1x1 16->96 @112)", 12544, 96, 16);
    bench_qgemm("3136x144x24 (1x1 24->144 @56)", 3136, 144, 24);
    bench_qgemm("3136x24x144 (1x1 144->24 @56)", 3136, 24, 144);
    bench_qgemm("784x32x192 (1x1 192->32 @28)", 784, 32, 192);
    bench_qgemm("49x160x960 (1x1 960->160 @7)", 49, 160, 960);
    bench_qgemm("3136x64x576 (3x3 64->64 @56 im2col)", 3136, 64, 576);
    bench_qgemm("196x256x2304 (3x3 256->256 @14 im2col)", 196, 256, 2304);
    bench_qgemm("49x512x4608 (3x3 512->512 @7 im2col)", 49, 512, 4608);
    bench_qgemm("1x1000x1280 (Linear)", 1, 1000, 1280);
    if selected("qadd 56x56x24") {
        let n = 56 * 56 * 24;
        let a: Vec<u8> = fill(n, 7).iter().map(|v| (v * 250.0) as i8 as u8).collect();
        let b: Vec<u8> = fill(n, 8).iter().map(|v| (v * 250.0) as i8 as u8).collect();
        let p = QAddParams {
            a_mul: 700_000,
            b_mul: 1_000_000,
            bias: 1 << 19,
            shift: 20,
            a_unsigned: false,
            b_unsigned: false,
            out: QOut::qs8(1),
        };
        let mut o = vec![0u8; n];
        let s = time(|| {
            qadd(&a, &b, &p, &mut o);
            black_box(&o);
        });
        report("qadd 56x56x24", n as f64, s);
    }
    if selected("qmaxpool 3x3/2 64 @112") {
        let g = square_geom(64, 112, 3, 2);
        let x: Vec<u8> = fill(112 * 112 * 64, 3)
            .iter()
            .map(|v| (v * 250.0) as i8 as u8)
            .collect();
        let mut o = vec![0u8; g.out_h * g.out_w * 64];
        let s = time(|| {
            pteron_linalg::qmaxpool_nhwc(&g, &x, QOut::qs8(0), &mut o);
            black_box(&o);
        });
        report("qmaxpool 3x3/2 64 @112", (o.len() * 9) as f64, s);
    }
    if selected("nchw_to_nhwc_u8 3x224x224") {
        let x: Vec<u8> = fill(3 * 224 * 224, 4)
            .iter()
            .map(|v| (v * 250.0) as i8 as u8)
            .collect();
        let mut o = vec![0u8; x.len()];
        let s = time(|| {
            pteron_linalg::nchw_to_nhwc_u8(&x, 1, 3, 224 * 224, &mut o);
            black_box(&o);
        });
        report("nchw_to_nhwc_u8 3x224x224", x.len() as f64, s);
    }
    if selected("transpose_u8 3136x64") {
        let x: Vec<u8> = fill(3136 * 64, 4)
            .iter()
            .map(|v| (v * 250.0) as i8 as u8)
            .collect();
        let mut o = vec![0u8; x.len()];
        let s = time(|| {
            pteron_linalg::transpose_u8(&x, 1, 3136, 64, &mut o);
            black_box(&o);
        });
        report(
            "transpose_u8 3136x64 (NHWC->NCHW 56x56x64)",
            x.len() as f64,
            s,
        );
    }
    println!("-- f32 layout transposes");
    for (name, rows, cols) in [
        ("transpose_f32 3x50176 (NCHW->NHWC 3x224x224)", 3, 224 * 224),
        ("transpose_f32 12544x96 (NHWC->NCHW 112x112x96)", 12544, 96),
        ("transpose_f32 96x12544 (NCHW->NHWC 96x112x112)", 96, 12544),
        ("transpose_f32 49x1280 (NHWC->NCHW 7x7x1280)", 49, 1280),
    ] {
        if selected(name) {
            let x = fill(rows * cols, 4);
            let mut o = vec![0.0f32; x.len()];
            let s = time(|| {
                pteron_linalg::transpose_f32(&x, 1, rows, cols, &mut o);
                black_box(&o);
            });
            report(name, x.len() as f64, s);
        }
    }
    if selected("quantize_q8") {
        let n = 3 * 224 * 224;
        let x = fill(n, 9);
        let mut out = vec![0u8; n];
        let t = time(|| {
            quantize_q8(&x, 37.0, QOut::qs8(3), &mut out);
            black_box(&out);
        });
        println!(
            "{:<44} {:>9.1} us {:>8.2} Gelem/s",
            "quantize_q8 3x224x224",
            t * 1e6,
            n as f64 / t / 1e9
        );
    }
    bench_qconv("qconv 3x3/2 3->32 @224", 3, 224, 32, 3, 2);
    bench_qconv("qconv 3x3 64->64 @56", 64, 56, 64, 3, 1);
    bench_qconv("qconv 7x7/2 3->64 @224", 3, 224, 64, 7, 2);
    bench_qconv("qconv 3x3 128->128 @28", 128, 28, 128, 3, 1);
    bench_qconv("qconv 3x3 256->256 @14", 256, 14, 256, 3, 1);
    bench_qconv("qconv 3x3 512->512 @7", 512, 7, 512, 3, 1);
    bench_qconv("qconv 3x3/2 64->128 @56", 64, 56, 128, 3, 2);
    bench_qconv("qconv 3x3/2 256->512 @14", 256, 14, 512, 3, 2);
    bench_qconv("qconv 1x1/2 128->256 @28", 128, 28, 256, 1, 2);
    bench_qdw("qdwconv 3x3 32 @112", 32, 112, 3, 1);
    bench_qdw("qdwconv 3x3/2 96 @112", 96, 112, 3, 2);
    bench_qdw("qdwconv 3x3 960 @7", 960, 7, 3, 1);
    bench_qdw("qdwconv 5x5 64 @56", 64, 56, 5, 1);
    println!("-- NHWC conv (f32_igemm_6x16 / f32_igemm_7x32 with AVX-512, XNNPACK backend; 3x3/1 from 16 to 256 channels on maps of >= 100 pixels: Winograd F(2x2,3x3))");
    bench_nhwc("conv_nhwc 1x1 32->16 @112", 32, 112, 16, 1, 1);
    bench_nhwc("conv_nhwc 1x1 16->96 @112", 16, 112, 96, 1, 1);
    bench_nhwc("conv_nhwc 1x1 24->144 @56", 24, 56, 144, 1, 1);
    bench_nhwc("conv_nhwc 1x1 144->24 @56", 144, 56, 24, 1, 1);
    bench_nhwc("conv_nhwc 1x1 960->160 @7", 960, 7, 160, 1, 1);
    bench_nhwc("conv_nhwc 1x1 160->960 @7", 160, 7, 960, 1, 1);
    bench_nhwc("conv_nhwc 1x1 320->1280 @7", 320, 7, 1280, 1, 1);
    bench_nhwc("conv_nhwc 3x3/2 3->32 @224", 3, 224, 32, 3, 2);
    bench_nhwc("conv_nhwc 7x7/2 3->64 @224", 3, 224, 64, 7, 2);
    bench_nhwc("conv_nhwc 3x3 64->64 @56", 64, 56, 64, 3, 1);
    bench_nhwc("conv_nhwc 3x3 128->128 @28", 128, 28, 128, 3, 1);
    bench_nhwc("conv_nhwc 3x3 256->256 @14", 256, 14, 256, 3, 1);
    bench_nhwc("conv_nhwc 3x3 512->512 @7", 512, 7, 512, 3, 1);
    bench_nhwc_window(3, 32, 112, 1);
    bench_nhwc_window(3, 96, 112, 2);
    bench_nhwc_window(3, 144, 56, 1);
    bench_nhwc_window(3, 960, 7, 1);
    bench_nhwc_window(3, 64, 112, 2);
    bench_nhwc_window(5, 240, 28, 1);
    bench_nhwc_window(5, 144, 56, 2);
    bench_pw_dw(16, 96, 112, 2);
    bench_pw_dw(24, 144, 56, 1);
    bench_pw_dw(32, 192, 28, 1);
    bench_pw_dw(96, 576, 14, 1);
    bench_pw_dw(160, 960, 7, 1);
    bench_pw_dw(32, 32, 112, 1);
    println!("-- Pooling");
    let mut pp = pool2d::Pool2dParams::new(1, 64, (112, 112), (3, 3), (2, 2));
    pp.padding = (1, 1);
    let px = fill(64 * 112 * 112, 9);
    let mut py = vec![0.0; 64 * 56 * 56];
    if selected("maxpool 3x3/2 64 @112") {
        let s = time(|| pool2d::max_pool2d(&pp, &px, &mut py).unwrap());
        report("maxpool 3x3/2 64 @112", (64 * 56 * 56 * 9) as f64, s);
    }
    if selected("avgpool 2x2/2 64 @112") {
        let ap = pool2d::Pool2dParams::new(1, 64, (112, 112), (2, 2), (2, 2));
        let s = time(|| pool2d::avg_pool2d(&ap, &px, &mut py).unwrap());
        report("avgpool 2x2/2 64 @112", (64 * 56 * 56 * 4) as f64, s);
    }
    if selected("global_avg_pool 1280 @7") {
        let mut g = vec![0.0; 1280];
        let s = time(|| pteron_linalg::global_avg_pool_nchw(&px[..1280 * 49], 1280, 49, &mut g));
        report("global_avg_pool 1280 @7", (1280 * 49) as f64, s);
    }
    println!("-- Elementwise (n = 96*56*56)");
    let n = 96 * 56 * 56;
    let (ea, eb) = (&px[..n], &px[n..2 * n]);
    let mut eo = vec![0.0; n];
    if selected("elementwise add") {
        let s = time(|| pteron_linalg::elementwise::add(ea, eb, &mut eo));
        report("elementwise add", n as f64, s);
    }
    if selected("elementwise clamp") {
        let s = time(|| pteron_linalg::elementwise::clamp(ea, 0.0, 6.0, &mut eo));
        report("elementwise clamp", n as f64, s);
    }
    println!("-- qd8 (dynamically quantized int8 activations x int8/int4 weights)");
    let b32 = Qd8Kind::Qb4w { block: 32 };
    bench_qd8("qd8 qb4w 1x288x288 (15M attention)", b32, 1, 288, 288);
    bench_qd8("qd8 qb4w 1x288x768 (15M ffn)", b32, 1, 768, 288);
    bench_qd8("qd8 qb4w 1x288x32000 (15M output)", b32, 1, 32000, 288);
    bench_qd8("qd8 qb4w 1x2048x8192", b32, 1, 8192, 2048);
    bench_qd8("qd8 qb4w 4x2048x8192", b32, 4, 8192, 2048);
    bench_qd8("qd8 qb4w 1x8192x2048", b32, 1, 2048, 8192);
    bench_qd8("qd8 qb4w 64x2048x8192", b32, 64, 8192, 2048);
    bench_qd8("qd8 qb4w 64x8192x2048", b32, 64, 2048, 8192);
    bench_qd8("qd8 qb4w 8x2048x8192", b32, 8, 8192, 2048);
    bench_qd8(
        "qd8 qb4w 64x2048x8192 (group 128)",
        Qd8Kind::Qb4w { block: 128 },
        64,
        8192,
        2048,
    );
    bench_qd8("qd8 qb4w 128x288x768", b32, 128, 768, 288);
    bench_qd8(
        "qd8 qb4w 128x768x288 (15M prefill ffn down)",
        b32,
        128,
        288,
        768,
    );
    bench_qd8(
        "qd8 qb4w 128x288x32000 (15M prefill output)",
        b32,
        128,
        32000,
        288,
    );
    bench_qd8_cold(
        "qd8 qb4w 1x2048x8192 from DRAM (16 matrices)",
        b32,
        8192,
        2048,
        16,
    );
    bench_qd8_cold(
        "qd8 qc8w 1x2048x8192 from DRAM (8 matrices)",
        Qd8Kind::Qc8w,
        8192,
        2048,
        8,
    );
    bench_qd8_pack("qd8 pack qb4w 2048x8192", 32, 8192, 2048);
    bench_qd8_pack("qd8 pack qb4w 288x32000", 32, 32000, 288);
    bench_qd8("qd8 qc8w 1x2048x8192", Qd8Kind::Qc8w, 1, 8192, 2048);
    bench_qd8("qd8 qc4w 64x2048x8192", Qd8Kind::Qc4w, 64, 8192, 2048);
    println!("-- Networks (conv + FC layers only; no adds/pools)");
    for (name, (mut layers, flops), in_f) in [
        ("MobileNetV2 1x3x224x224", mobilenet_v2(), 1280),
        ("ResNet18 1x3x224x224", resnet18(), 512),
    ] {
        if !selected(name) {
            continue;
        }
        let x = fill(96 * 112 * 112, 4);
        let w = fill(in_f * 1000, 5);
        let fc = PackedB::new(in_f, 1000, &w, in_f, true);
        let feat = fill(in_f, 6);
        let mut out = vec![0.0; 1000];
        let s = time(|| {
            run_chain(&mut layers, &x);
            sgemm_packed(
                1,
                &feat,
                in_f,
                false,
                &fc,
                &mut out,
                1000,
                Bias::None,
                Activation::None,
            );
            black_box(&out);
        });
        if args.iter().any(|a| a == "--layers") {
            for l in layers.iter_mut() {
                let need = l.p.in_c * l.p.in_h * l.p.in_w;
                let t = time(|| l.conv.run(&x[..need], &mut l.out, &mut []));
                let p = &l.p;
                report(
                    &format!(
                        "  {}x{}/{} {}->{} g{} @{}",
                        p.k_h, p.k_w, p.stride.0, p.in_c, p.out_c, p.groups, p.in_h
                    ),
                    conv_flops(p),
                    t,
                );
            }
        }
        println!(
            "{name:<44} {:>9.3} ms {:>8.1} GFLOPS ({} conv layers, {:.2} GFLOP)",
            s * 1e3,
            flops / s / 1e9,
            layers.len(),
            flops / 1e9
        );
    }
}
