//! Token sampling, following ExecuTorch's llama2.c-derived `Sampler`
//! (`extension/llm/sampler/sampler.cpp`): argmax at temperature 0, otherwise
//! softmax of `logits / T` and one coin from an xorshift generator, used for top-k,
//! top-p (nucleus) or plain multinomial sampling.

/// A seeded sampler. Buffers are kept between calls (no allocation per token once
/// warmed up).
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f32,
    top_k: usize,
    top_p: f32,
    state: u64,
    probs: Vec<f32>,
    order: Vec<(f32, u32)>,
}

impl Sampler {
    /// `temperature <= 0` means greedy. `top_k = 0` disables top-k; `top_p` outside
    /// `(0, 1)` disables nucleus sampling. The seed's zero value is remapped (the
    /// xorshift state must be non-zero).
    pub fn new(temperature: f32, top_k: usize, top_p: f32, seed: u64) -> Self {
        Sampler {
            temperature,
            top_k,
            top_p,
            state: if seed == 0 {
                0x9E37_79B9_7F4A_7C15
            } else {
                seed
            },
            probs: Vec::new(),
            order: Vec::new(),
        }
    }

    /// A greedy (argmax) sampler.
    pub fn greedy() -> Self {
        Sampler::new(0.0, 0, 1.0, 1)
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature.is_nan() || self.temperature <= 0.0
    }

    fn random_u32(&mut self) -> u32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32) as u32
    }

    /// A float in `[0, 1)`.
    fn random_f32(&mut self) -> f32 {
        (self.random_u32() >> 8) as f32 / 16_777_216.0
    }

    /// Picks a token from `logits` (one row). Returns `None` for an empty row.
    pub fn sample(&mut self, logits: &[f32]) -> Option<u32> {
        if logits.is_empty() {
            return None;
        }
        if self.is_greedy() {
            return Some(argmax(logits));
        }
        let n = logits.len();
        self.probs.clear();
        self.probs
            .extend(logits.iter().map(|&x| x / self.temperature));
        softmax(&mut self.probs);
        let coin = self.random_f32();
        if self.top_k > 0 && self.top_k < n {
            return Some(self.sample_topk(coin));
        }
        if self.top_p > 0.0 && self.top_p < 1.0 {
            return Some(self.sample_topp(coin));
        }
        Some(sample_mult(&self.probs, coin))
    }

    fn sample_topk(&mut self, coin: f32) -> u32 {
        self.order.clear();
        self.order
            .extend(self.probs.iter().enumerate().map(|(i, &p)| (p, i as u32)));
        let k = self.top_k;
        self.order
            .select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
        let top = &mut self.order[..k];
        top.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let total: f32 = top.iter().map(|x| x.0).sum();
        let r = coin * total;
        let mut cdf = 0.0;
        for &(p, i) in top.iter() {
            cdf += p;
            if r < cdf {
                return i;
            }
        }
        top[k - 1].1
    }

    fn sample_topp(&mut self, coin: f32) -> u32 {
        let n = self.probs.len();
        // Tokens below this probability cannot be part of the nucleus.
        let cutoff = (1.0 - self.top_p) / (n.saturating_sub(1).max(1)) as f32;
        self.order.clear();
        self.order.extend(
            self.probs
                .iter()
                .enumerate()
                .filter(|(_, &p)| p >= cutoff)
                .map(|(i, &p)| (p, i as u32)),
        );
        if self.order.is_empty() {
            return argmax(&self.probs);
        }
        self.order.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut cum = 0.0f32;
        let mut last = self.order.len() - 1;
        for (i, &(p, _)) in self.order.iter().enumerate() {
            cum += p;
            if cum > self.top_p {
                last = i;
                break;
            }
        }
        let r = coin * cum;
        let mut cdf = 0.0;
        for &(p, i) in &self.order[..=last] {
            cdf += p;
            if r < cdf {
                return i;
            }
        }
        self.order[last].1
    }
}

/// Index of the largest value (the first one on ties; NaN never wins).
pub fn argmax(x: &[f32]) -> u32 {
    // Two passes the compiler vectorises: the largest value (eight running maxima,
    // `>` so NaN never wins), then its first position. Same answer as one scan that
    // keeps the first strictly larger value (-0.0 and 0.0 compare equal in both).
    let mut lanes = [f32::NEG_INFINITY; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut top = f32::NEG_INFINITY;
    for &v in lanes.iter().chain(chunks.remainder()) {
        if v > top {
            top = v;
        }
    }
    if top == f32::NEG_INFINITY {
        return 0;
    }
    x.iter().position(|&v| v == top).unwrap_or(0) as u32
}

/// The one-scan form [`argmax`] must agree with.
#[cfg(test)]
fn argmax_scan(x: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in x.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best as u32
}

fn softmax(x: &mut [f32]) {
    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut s = 0.0;
    for v in x.iter_mut() {
        *v = (*v - m).exp();
        s += *v;
    }
    if s > 0.0 {
        x.iter_mut().for_each(|v| *v /= s);
    }
}

fn sample_mult(probs: &[f32], coin: f32) -> u32 {
    let mut cdf = 0.0;
    for (i, &p) in probs.iter().enumerate() {
        cdf += p;
        if coin < cdf {
            return i as u32;
        }
    }
    (probs.len() - 1) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_first_on_ties() {
        let mut s = Sampler::greedy();
        assert_eq!(s.sample(&[0.0, 3.0, 3.0, -1.0]), Some(1));
        assert_eq!(s.sample(&[]), None);
    }

    #[test]
    fn argmax_agrees_with_a_single_scan() {
        let inf = f32::INFINITY;
        let cases: Vec<Vec<f32>> = vec![
            vec![],
            vec![f32::NAN; 11],
            vec![-inf; 9],
            vec![f32::NAN, -inf, 1.0, f32::NAN],
            vec![-0.0, 0.0, -0.0, 0.0, -1.0, -0.0, 0.0, -0.0, 0.0, -0.0],
            vec![-1.0, -0.0, -5.0, 0.0],
            vec![inf, 1.0, inf],
            (0..100).map(|i| ((i * 37 % 17) as f32).min(9.0)).collect(),
            (0..32000).map(|i| ((i as f32) * 0.013).sin()).collect(),
            (0..1001)
                .map(|i| if i % 7 == 3 { f32::NAN } else { -(i as f32) })
                .collect(),
        ];
        for (k, x) in cases.iter().enumerate() {
            assert_eq!(argmax(x), argmax_scan(x), "case {k}");
        }
    }

    #[test]
    fn seeded_sampling_is_deterministic_and_respects_top_k() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let run = |seed| {
            let mut s = Sampler::new(0.9, 3, 1.0, seed);
            (0..200)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        let a = run(42);
        assert_eq!(a, run(42));
        assert_ne!(a, run(43));
        let mut top: Vec<(f32, u32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &v)| (v, i as u32))
            .collect();
        top.sort_by(|x, y| y.0.total_cmp(&x.0));
        let allowed: Vec<u32> = top[..3].iter().map(|x| x.1).collect();
        assert!(a.iter().all(|t| allowed.contains(t)));
        // More than one distinct token is drawn.
        assert!(a.iter().any(|&t| t != a[0]));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        // One dominant token (p ~ 0.95) and many small ones: top_p 0.5 keeps only it.
        let mut logits = vec![0.0f32; 100];
        logits[7] = 8.0;
        let mut s = Sampler::new(1.0, 0, 0.5, 7);
        for _ in 0..100 {
            assert_eq!(s.sample(&logits), Some(7));
        }
        // Plain multinomial draws other tokens sometimes.
        let mut s = Sampler::new(3.0, 0, 1.0, 7);
        assert!((0..200).any(|_| s.sample(&logits) != Some(7)));
    }

    #[test]
    fn xorshift_matches_reference_sequence() {
        // state ^= state >> 12; state ^= state << 25; state ^= state >> 27;
        // (state * 0x2545F4914F6CDD1D) >> 32
        let mut s = Sampler::new(1.0, 0, 1.0, 1);
        let mut st: u64 = 1;
        for _ in 0..5 {
            st ^= st >> 12;
            st ^= st << 25;
            st ^= st >> 27;
            let want = (st.wrapping_mul(0x2545F4914F6CDD1D) >> 32) as u32;
            assert_eq!(s.random_u32(), want);
        }
    }
}
