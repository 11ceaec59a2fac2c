#![allow(dead_code)]

use pteron_linalg::{set_isa_cap, supported_isas, Isa};
use std::sync::{Mutex, MutexGuard};

static ISA_LOCK: Mutex<()> = Mutex::new(());

/// Serialise tests that change the global ISA cap / thread count.
pub fn lock() -> MutexGuard<'static, ()> {
    ISA_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` once per supported ISA tier, with the cap set accordingly.
pub fn for_each_isa(mut f: impl FnMut(Isa)) {
    let _g = lock();
    for isa in supported_isas() {
        set_isa_cap(Some(isa));
        assert_eq!(pteron_linalg::isa(), isa);
        f(isa);
    }
    set_isa_cap(None);
}

/// Run `f` once per supported ISA tier (capped), then once uncapped when that adds
/// the AVX-512 extension (`label` names the tier).
pub fn for_each_tier(mut f: impl FnMut(&str)) {
    for_each_isa(|isa| f(&format!("{isa:?}")));
    let _g = lock();
    if pteron_linalg::avx512() {
        f("Avx512");
    }
}

/// Small deterministic RNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }
}

/// Relative-ish comparison: |g - w| <= tol * max(1, |w|); NaN must match NaN.
pub fn assert_close(got: &[f32], want: &[f32], tol: f32, ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_nan() {
            assert!(g.is_nan(), "{ctx}: [{i}] got {g}, want NaN");
            continue;
        }
        if g == w {
            // Also covers matching infinities (whose difference is NaN).
            continue;
        }
        let err = (g - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{ctx}: [{i}] got {g}, want {w} (err {err})"
        );
    }
}
