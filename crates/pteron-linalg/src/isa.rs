//! Runtime CPU capability detection with an optional cap.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Instruction-set tier used by the optimized kernels.
///
/// Tiers are ordered: `Scalar < Avx2Fma`. Capping to a lower tier is always
/// possible; asking for a higher tier than the CPU supports is clamped down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable scalar code (no explicit SIMD).
    Scalar,
    /// x86-64 AVX2 + FMA (256-bit vectors, fused multiply-add).
    Avx2Fma,
}

impl Isa {
    fn to_u8(self) -> u8 {
        match self {
            Isa::Scalar => 1,
            Isa::Avx2Fma => 2,
        }
    }

    fn from_u8(v: u8) -> Option<Isa> {
        match v {
            1 => Some(Isa::Scalar),
            2 => Some(Isa::Avx2Fma),
            _ => None,
        }
    }

    /// Parse the values accepted by `PTERON_CPU_CAP` (`scalar`, `avx2`).
    pub fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" => Some(Isa::Scalar),
            "avx2" | "avx2fma" | "avx2_fma" => Some(Isa::Avx2Fma),
            _ => None,
        }
    }
}

/// Programmatic cap; 0 = none (use the environment cap).
static OVERRIDE: AtomicU8 = AtomicU8::new(0);

fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Isa::Avx2Fma;
            }
        }
        Isa::Scalar
    })
}

fn env_cap() -> Option<Isa> {
    static ENV_CAP: OnceLock<Option<Isa>> = OnceLock::new();
    *ENV_CAP.get_or_init(|| {
        std::env::var("PTERON_CPU_CAP")
            .ok()
            .and_then(|v| Isa::parse(&v))
    })
}

/// Best instruction-set tier available on this CPU, after applying the cap
/// (`set_isa_cap`, else the `PTERON_CPU_CAP` environment variable, read once).
pub fn isa() -> Isa {
    let best = detected();
    let cap = Isa::from_u8(OVERRIDE.load(Ordering::Relaxed)).or_else(env_cap);
    match cap {
        Some(c) if c < best => c,
        _ => best,
    }
}

/// Whether kernels may use AVX-512 F/BW/VL/DQ (32 zmm registers, masks), an
/// extension above the [`Isa::Avx2Fma`] tier with the same switch as
/// [`avx512_vnni`]: the CPU has it, the tier is `Avx2Fma`, and no cap is in force
/// (any [`set_isa_cap`] or `PTERON_CPU_CAP=scalar|avx2` turns it off;
/// `PTERON_CPU_CAP=avx512` leaves it on).
pub fn avx512() -> bool {
    avx512_f_detected() && extension_allowed() && isa() == Isa::Avx2Fma
}

/// Whether no cap forbids the AVX-512 extensions.
fn extension_allowed() -> bool {
    static ENV_ALLOWS: OnceLock<bool> = OnceLock::new();
    if OVERRIDE.load(Ordering::Relaxed) != 0 {
        false
    } else {
        *ENV_ALLOWS.get_or_init(|| match std::env::var("PTERON_CPU_CAP") {
            Ok(v) => Isa::parse(&v).is_none(),
            Err(_) => true,
        })
    }
}

/// Whether the CPU has AVX-512 F/BW/VL/DQ (ignoring any cap).
pub(crate) fn avx512_f_detected() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Whether the int8 kernels may use AVX-512 VNNI (with F/BW/VL), an extension
/// above the [`Isa::Avx2Fma`] tier: the CPU has it, the tier is `Avx2Fma`, and no
/// cap is in force ([`set_isa_cap`] with any tier, or `PTERON_CPU_CAP=scalar|avx2`,
/// turns it off; `PTERON_CPU_CAP=avx512` leaves it on).
pub fn avx512_vnni() -> bool {
    vnni_detected() && extension_allowed() && isa() == Isa::Avx2Fma
}

/// Whether the CPU has AVX-512 F/BW/VL/VNNI (ignoring any cap).
pub(crate) fn vnni_detected() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// Override the cap programmatically (`None` reverts to the environment cap).
/// Any explicit cap also turns off the AVX-512 VNNI extension ([`avx512_vnni`]).
///
/// This is process-global; tests that sweep tiers should serialize on a lock.
/// Data pre-packed under one tier (e.g. [`crate::PackedB`], [`crate::Conv2d`])
/// keeps using the kernel it was packed for, which is always still supported.
pub fn set_isa_cap(cap: Option<Isa>) {
    OVERRIDE.store(cap.map_or(0, Isa::to_u8), Ordering::Relaxed);
}

/// All tiers this CPU supports (ignoring any cap), lowest first. Handy for tests.
pub fn supported_isas() -> Vec<Isa> {
    let best = detected();
    [Isa::Scalar, Isa::Avx2Fma]
        .into_iter()
        .filter(|&i| i <= best)
        .collect()
}

/// Which of XNNPACK's CPU-dependent arithmetics the dynamically quantized
/// (`qd8`) linears reproduce. XNNPACK picks its kernels by CPU, and the two
/// x86 families round differently, so ExecuTorch's outputs for the same
/// program differ in the last bits between machines; pteron follows the one
/// XNNPACK would use on this machine unless told otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum XnnArith {
    /// XNNPACK's AVX2 (and SSE) kernels: signed `qd8` activations, `qb4w` block
    /// sums kept in four float lanes per column.
    Avx2,
    /// XNNPACK's AVX-512 VNNI kernels: unsigned `qdu8` activations (their own
    /// zero-point rule), one float sum per column and block.
    Avx512Vnni,
}

impl XnnArith {
    /// Parses the values accepted by `PTERON_XNN_ARITH` (`avx2`, `avx512vnni`).
    pub fn parse(s: &str) -> Option<XnnArith> {
        match s.trim().to_ascii_lowercase().as_str() {
            "avx2" | "madd" => Some(XnnArith::Avx2),
            "avx512vnni" | "avx512_vnni" | "vnni" => Some(XnnArith::Avx512Vnni),
            _ => None,
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            XnnArith::Avx2 => "avx2",
            XnnArith::Avx512Vnni => "avx512vnni",
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            XnnArith::Avx2 => 1,
            XnnArith::Avx512Vnni => 2,
        }
    }
}

static ARITH_OVERRIDE: AtomicU8 = AtomicU8::new(0);

/// The arithmetic new [`crate::PackedQd8`] weights are packed for:
/// [`set_xnn_arith`], else `PTERON_XNN_ARITH` (read once), else the one XNNPACK
/// picks on this CPU ([`XnnArith::Avx512Vnni`] when [`avx512_vnni`] is on, so a
/// `PTERON_CPU_CAP` also selects [`XnnArith::Avx2`]).
pub fn xnn_arith() -> XnnArith {
    match ARITH_OVERRIDE.load(Ordering::Relaxed) {
        1 => return XnnArith::Avx2,
        2 => return XnnArith::Avx512Vnni,
        _ => {}
    }
    static ENV: OnceLock<Option<XnnArith>> = OnceLock::new();
    if let Some(a) = *ENV.get_or_init(|| {
        std::env::var("PTERON_XNN_ARITH")
            .ok()
            .and_then(|v| XnnArith::parse(&v))
    }) {
        return a;
    }
    if avx512_vnni() {
        XnnArith::Avx512Vnni
    } else {
        XnnArith::Avx2
    }
}

/// Overrides [`xnn_arith`] for weights packed from now on (`None` reverts to
/// the environment / CPU choice). Process-global, like [`set_isa_cap`].
pub fn set_xnn_arith(a: Option<XnnArith>) {
    ARITH_OVERRIDE.store(a.map_or(0, XnnArith::to_u8), Ordering::Relaxed);
}
