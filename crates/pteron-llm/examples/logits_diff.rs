//! Diagnostic: feed a forced token sequence through a model and compare each
//! step's logits with reference logits recorded by ExecuTorch.
//!
//! `cargo run --release -p pteron-llm --example logits_diff -- MODEL.pte TOKENIZER REF.json REF_LOGITS.npy`
//! where REF.json holds `prompt_ids` and `gen` (the reference's greedy tokens) and
//! REF_LOGITS.npy the reference logits `[steps, vocab]` (prefill first).
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let mut r = pteron_llm::Runner::load(&a[1], &a[2]).expect("load");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a[3]).unwrap()).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let (prompt, gen) = (ids(&j["prompt_ids"]), ids(&j["gen"]));
    let want = pteron::npy::read_npy(&a[4]).unwrap();
    let vocab = want.shape[1];
    let want: Vec<f32> = want.to_f64().into_iter().map(|x| x as f32).collect();
    for s in 0..want.len() / vocab {
        let got = if s == 0 {
            r.prefill(&prompt)
        } else {
            r.prefill(&[gen[s - 1]])
        }
        .expect("forward")
        .to_vec();
        let w = &want[s * vocab..(s + 1) * vocab];
        let maxd = got
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        let am = |v: &[f32]| (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b });
        let (ga, wa) = (am(&got), am(w));
        let mut sorted = w.to_vec();
        sorted.sort_by(|a, b| b.total_cmp(a));
        println!(
            "step {s:2}: max |diff| {maxd:.3e}  argmax pteron {ga} ref {wa}  ref top-2 gap {:.4}",
            sorted[0] - sorted[1]
        );
    }
}
