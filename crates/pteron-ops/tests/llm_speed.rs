//! Timing of per-token LLM operators at decode shapes (attention: one query row against a
//! KV cache), the per-token cost outside the linear layers.
//!
//! Run with `cargo test --release -p pteron-ops --test llm_speed -- --ignored --nocapture --test-threads=1`
//! (threads: the machine's cores, as in `pteron generate`). Prints the median time of one
//! `llama::custom_sdpa.out` call per shape and position, and of the SiLU gate's
//! `aten::sigmoid.out`.

use pteron_runtime::testing::{time_op, TestArg, TestTensor};
use pteron_runtime::ScalarType;

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

#[test]
#[ignore]
fn custom_sdpa_decode_timing() {
    let reg = pteron_ops::registry();
    // (name, query heads, KV heads, head dim, cache length)
    for (name, hq, hkv, d, cache) in [
        ("stories15M", 6, 6, 48, 256),
        ("Llama-3.2-1B", 32, 8, 64, 256),
    ] {
        for start in [31, 127, 191, 255] {
            let q = TestTensor::new(&[1, 1, hq, d], values(hq * d, 1));
            let k = TestTensor::new(&[1, cache, hkv, d], values(cache * hkv * d, 2));
            let v = TestTensor::new(&[1, cache, hkv, d], values(cache * hkv * d, 3));
            let args = vec![
                TestArg::Tensor(q),
                TestArg::Tensor(k),
                TestArg::Tensor(v),
                TestArg::Int(start as i64),
                TestArg::None,
                TestArg::Double(0.0),
                TestArg::Bool(true),
                TestArg::None,
                TestArg::Tensor(TestTensor::out(ScalarType::Float, &[1, 1, hq, d])),
                TestArg::Ref(8),
            ];
            let t = time_op(&reg, "llama::custom_sdpa.out", args, 2000).expect("custom_sdpa");
            println!(
                "custom_sdpa {name:<13} {hq:>2}/{hkv} heads x {d}, {:>3} keys: {:>7.2} us",
                start + 1,
                t.as_secs_f64() * 1e6
            );
        }
    }
}

#[test]
#[ignore]
fn elementwise_decode_timing() {
    let reg = pteron_ops::registry();
    // The feed-forward's SiLU gate at Llama-3.2-1B's hidden size.
    let x = TestTensor::new(&[1, 1, 8192], values(8192, 4));
    let args = vec![
        TestArg::Tensor(x),
        TestArg::Tensor(TestTensor::out(ScalarType::Float, &[1, 1, 8192])),
        TestArg::Ref(1),
    ];
    let t = time_op(&reg, "aten::sigmoid.out", args, 5000).expect("sigmoid");
    println!("sigmoid 8192 floats: {:>7.2} us", t.as_secs_f64() * 1e6);
}
