//! # pteron-xnnpack
//!
//! Brief overview: the `XnnpackBackend` delegate, executing XNNPACK payloads
//! (`XH00` header + `XN00`/`XN01` graph) with pteron-linalg kernels. (Work in progress.)
#![forbid(unsafe_code)]

use pteron_runtime::Registry;

/// The backend id ExecuTorch programs name.
pub const BACKEND_ID: &str = "XnnpackBackend";

/// Registers the backend (once implemented).
pub fn register(_reg: &mut Registry) {}
