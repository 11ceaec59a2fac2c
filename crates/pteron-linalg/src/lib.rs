//! # pteron-linalg
//!
//! ## Brief overview
//!
//! Numeric primitives for the pteron ExecuTorch runtime. This crate knows nothing
//! about `.pte` files; it provides fast, tested `f32` kernels:
//!
//! * [`sgemm`], [`sgemm_batched`], [`sgemm_packed`] with [`PackedB`]: a blocked GEMM
//!   (packed A/B panels, k-blocking with `KC = 256`, register-tiled microkernels
//!   `f32_gemm_6x16__avx2_fma` / `f32_gemm_4x4__scalar`, fused alpha/beta, bias and
//!   clamp activations) parallelised over output tiles, plus gemv fast paths for `m == 1`.
//! * [`Conv2d`] / [`conv2d`]: NCHW convolution (1×1 as direct GEMM on the planes,
//!   depthwise direct SIMD kernels, general case as GEMM with im2col fused into
//!   panel packing) and [`conv_transpose2d`].
//! * [`nhwc`]: NHWC convolution as an indirect GEMM ([`nhwc::ConvNhwc`]: packed
//!   16-column weight panels, `f32_igemm_6x16__avx2_fma` or, with AVX-512,
//!   `f32_igemm_7x32__avx512f` (7-pixel tiles over panel pairs, masked edges) reading
//!   activation rows in place, no im2col; depthwise runs on ymm or zmm lanes), for the
//!   XNNPACK backend's NHWC graphs; [`nhwc::pointwise_depthwise_nhwc`] runs a 1x1
//!   convolution and the depthwise convolution reading its output together in row
//!   bands, the expanded tensor held only band by band in L2 (same bits as unfused).
//! * [`pool2d`]: max/avg pooling (AVX2: separable vertical/horizontal passes over
//!   phase-split rows) and [`global_avg_pool_nchw`]; [`vmath`]: vectorised
//!   exp/sigmoid/tanh/gelu.
//! * [`elementwise`]: vectorised slice kernels for the operator crate:
//!   [`elementwise::add`], [`elementwise::sub`], [`elementwise::mul`],
//!   [`elementwise::div`] (`(a, b, out)`), [`elementwise::add_scalar`],
//!   [`elementwise::mul_scalar`] (`(a, s, out)`), [`elementwise::clamp`]
//!   (`(x, lo, hi, out)`) and [`elementwise::relu`] (`(x, out)`). All slices have
//!   equal lengths; results are bit-identical on every ISA tier and NaN propagates.
//! * [`qd8_gemm`] with [`PackedQd8`]: dynamically quantized int8 rows ([`qd8_quantize_row`])
//!   times int8/int4 weights (per channel or per block), with XNNPACK's `qd8-f32-*` arithmetic.
//! * Int8 ([`qgemm`] with [`PackedQs8`], [`qconv2d_nhwc`], [`qdwconv_nhwc`] with
//!   [`PackedQDw`]): int8 × int8 → int32 with fused per-channel fp32 requantization
//!   to `qs8`/`qu8` ([`requantize`], XNNPACK's `qs8_qc8w` semantics); AVX2
//!   `vpmaddwd` kernels, AVX-512 VNNI `vpdpbusd` GEMM kernels ([`avx512_vnni`]) and
//!   bit-identical scalar ones.
//! * [`parallel_for`]: a persistent, allocation-free scoped thread pool.
//! * [`reference`]: naive, obviously-correct versions of everything, used as test oracles.
//!
//! SIMD is selected at run time ([`isa`]): AVX2+FMA on x86-64 when detected, else
//! portable scalar code. `PTERON_CPU_CAP=scalar|avx2` or [`set_isa_cap`] lowers the tier.
//! Kernels that have one also use AVX-512 above the AVX2 tier when the CPU has it
//! and no cap is set ([`avx512`] for F/BW/VL/DQ, [`avx512_vnni`] for the int8 dot
//! products; `PTERON_CPU_CAP=avx2` turns both off, `PTERON_CPU_CAP=avx512` keeps them).
//!
//! This is the only pteron crate that uses `unsafe` (SIMD intrinsics, raw pointers
//! for disjoint parallel writes, lifetime erasure in the pool); every block carries
//! a `// SAFETY:` justification.

mod conv;
mod dwconv;
pub mod elementwise;
mod gemm;
mod isa;
pub mod membw;
pub mod nhwc;
mod pool;
pub mod pool2d;
mod qconv;
mod qd8;
mod qgemm;
pub mod reference;
mod transpose;
mod util;
pub use util::F32Buf;
pub mod vmath;

pub use conv::{
    conv2d, conv_transpose2d, Conv2d, Conv2dParams, ConvTranspose2dParams, LinalgError,
};
pub use gemm::{sgemm, sgemm_batched, sgemm_packed, Bias, GemmArgs, PackedB};
pub use isa::{
    avx512, avx512_vnni, isa, set_isa_cap, set_xnn_arith, supported_isas, xnn_arith, Isa, XnnArith,
};
pub use pool::{num_threads, parallel_for, set_num_threads};
pub use pool2d::global_avg_pool_nchw;
pub use qconv::{
    im2col_q8, nchw_to_nhwc_u8, qconv2d_nhwc, qdwconv_nhwc, qmaxpool_nhwc, transpose_u8, PackedQDw,
    QConvGeom,
};
pub use qd8::{qd8_gemm, qd8_quantize_row, qd8_quantize_row_with, PackedQd8, Qd8Kind, Qd8Params};
pub use qgemm::{qadd, qgemm, quantize_q8, requantize, PackedQs8, QAddParams, QOut, QMR, QNR};
pub use transpose::transpose_f32;

/// Activation fused into the output of GEMM/conv kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity.
    None,
    /// `max(x, 0)`.
    Relu,
    /// `min(max(x, 0), 6)`.
    Relu6,
    /// `min(max(x, min), max)`.
    Clamp { min: f32, max: f32 },
}

impl Activation {
    /// Apply to one value (NaN propagates).
    pub fn apply(self, x: f32) -> f32 {
        match gemm::act_bounds(self) {
            Some((lo, hi)) => gemm::clamp_nan(x, lo, hi),
            None => x,
        }
    }
}
