//! Typed errors of payload parsing, verification, compilation and execution.

use pteron_format::fb::FbError;
use pteron_runtime::KernelError;
use thiserror::Error;

/// Everything that can go wrong with an XNNPACK payload.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum XnnError {
    /// The `XH00` header is malformed (offsets, sizes, region order).
    #[error("XNNPACK header: {0}")]
    Header(String),
    /// The FlatBuffer identifier is not `XN00`/`XN01`.
    #[error("XNNPACK graph has identifier {0:?}, expected \"XN00\" or \"XN01\"")]
    Identifier([u8; 4]),
    /// A FlatBuffers decoding failure at a path inside the graph.
    #[error("XNNPACK graph {at}: {err}")]
    Fb { at: String, err: FbError },
    /// A value is malformed or inconsistent.
    #[error("XNNPACK graph value {index}: {msg}")]
    Value { index: usize, msg: String },
    /// Constant data is missing, truncated or of the wrong size.
    #[error("XNNPACK constant {index}: {msg}")]
    Constant { index: usize, msg: String },
    /// A node is malformed, references a missing value, or is not supported.
    #[error("XNNPACK node {index} ({kind}): {msg}")]
    Node {
        index: usize,
        kind: &'static str,
        msg: String,
    },
    /// The node type is valid but not implemented by this backend.
    #[error("XNNPACK node {index} ({kind}) is not supported: {msg}")]
    Unsupported {
        index: usize,
        kind: &'static str,
        msg: String,
    },
    /// The delegate call's arguments do not match the graph's external values.
    #[error("XNNPACK delegate arguments: {0}")]
    Args(String),
    /// A shape does not fit the buffers planned at init, or is inconsistent at run time.
    #[error("XNNPACK shape: {0}")]
    Shape(String),
    /// A buffer the graph declares could not be allocated at init.
    #[error("XNNPACK {what}: cannot allocate {bytes} bytes")]
    Alloc { what: String, bytes: u128 },
}

impl XnnError {
    pub(crate) fn fb(at: impl Into<String>) -> impl FnOnce(FbError) -> XnnError {
        let at = at.into();
        move |err| XnnError::Fb { at, err }
    }
    pub(crate) fn node(index: usize, kind: &'static str, msg: impl Into<String>) -> XnnError {
        XnnError::Node {
            index,
            kind,
            msg: msg.into(),
        }
    }
}

impl From<XnnError> for KernelError {
    fn from(e: XnnError) -> KernelError {
        match e {
            XnnError::Unsupported { .. } => KernelError::unsupported(e.to_string()),
            XnnError::Shape(_) => KernelError::resize(e.to_string()),
            _ => KernelError::invalid(e.to_string()),
        }
    }
}
