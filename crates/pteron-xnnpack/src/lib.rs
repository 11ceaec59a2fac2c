//! # pteron-xnnpack
//!
//! Brief overview: the `XnnpackBackend` delegate, executing XNNPACK payloads
//! (`XH00` header + `XN00`/`XN01` graph) with pteron-linalg kernels.
#![forbid(unsafe_code)]

mod bufplan;
pub mod error;
pub mod graph;
mod kernels;
pub mod plan;
mod qs8;
mod shape;

use std::sync::Arc;

use pteron_runtime::Registry;

pub use plan::{set_fusion, Fusion, XnnDelegate, XnnpackBackend};
pub use qs8::int8_steps_compiled;

pub use error::XnnError;
pub use graph::{parse, Graph};

/// The backend id ExecuTorch programs name.
pub const BACKEND_ID: &str = "XnnpackBackend";

/// Registers the backend under [`BACKEND_ID`].
pub fn register(reg: &mut Registry) {
    reg.register_backend(BACKEND_ID, Arc::new(XnnpackBackend));
}
