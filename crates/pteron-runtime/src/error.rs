use pteron_format::FormatError;
use thiserror::Error;

/// What kind of failure a kernel or delegate reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelErrorKind {
    /// An argument has the wrong kind, value or shape.
    InvalidArgument,
    /// The kernel does not handle this dtype (or dtype combination).
    Dtype,
    /// An output could not be resized (static shape, bound exceeded, rank change).
    Resize,
    /// A valid program feature this kernel does not implement.
    NotSupported,
    /// A bug or broken invariant.
    Internal,
}

impl core::fmt::Display for KernelErrorKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            KernelErrorKind::InvalidArgument => "invalid argument",
            KernelErrorKind::Dtype => "unsupported dtype",
            KernelErrorKind::Resize => "cannot resize output",
            KernelErrorKind::NotSupported => "not supported",
            KernelErrorKind::Internal => "internal error",
        })
    }
}

/// A failure inside one kernel or delegate call. The executor wraps it in
/// [`Error::Kernel`] with the method, instruction and operator.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{kind}: {msg}")]
pub struct KernelError {
    pub kind: KernelErrorKind,
    pub msg: String,
}

impl KernelError {
    pub fn new(kind: KernelErrorKind, msg: impl Into<String>) -> Self {
        KernelError {
            kind,
            msg: msg.into(),
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::new(KernelErrorKind::InvalidArgument, msg)
    }
    pub fn dtype(msg: impl Into<String>) -> Self {
        Self::new(KernelErrorKind::Dtype, msg)
    }
    pub fn resize(msg: impl Into<String>) -> Self {
        Self::new(KernelErrorKind::Resize, msg)
    }
    pub fn unsupported(msg: impl Into<String>) -> Self {
        Self::new(KernelErrorKind::NotSupported, msg)
    }
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(KernelErrorKind::Internal, msg)
    }
    /// Prefixes the message with the argument position it concerns.
    pub fn at_arg(mut self, arg: usize) -> Self {
        self.msg = format!("argument {arg}: {}", self.msg);
        self
    }
}

/// An operator the registry cannot run, found while loading a method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingOp {
    pub instruction: usize,
    pub op: String,
}

/// Every failure of loading or running a program.
#[derive(Debug, Error)]
pub enum Error {
    /// The file failed to parse or verify.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// No method of that name.
    #[error("method '{name}' not found; the program has: {}", available.join(", "))]
    MethodNotFound {
        name: String,
        available: Vec<String>,
    },
    /// Operators with no kernel in this build; every one is listed.
    #[error(
        "method '{method}': {} operator(s) have no kernel in this build: {}",
        distinct_ops(missing),
        format_missing(missing)
    )]
    MissingKernels {
        method: String,
        missing: Vec<MissingOp>,
    },
    /// A delegate names a backend that is not registered.
    #[error("method '{method}': delegate {delegate} uses backend '{backend}', which is not registered (available: {})", available.join(", "))]
    BackendNotFound {
        method: String,
        delegate: usize,
        backend: String,
        available: Vec<String>,
    },
    /// A backend refused its payload at load.
    #[error("method '{method}': delegate {delegate} ({backend}) failed to initialise: {source}")]
    BackendInit {
        method: String,
        delegate: usize,
        backend: String,
        source: KernelError,
    },
    /// A kernel rejected its arguments at load (prepare) time.
    #[error("method '{method}', instruction {instruction} ({op}): {source}")]
    Prepare {
        method: String,
        instruction: usize,
        op: String,
        source: KernelError,
    },
    /// A kernel or delegate failed while executing.
    #[error("method '{method}', instruction {instruction} ({op}): {source}")]
    Kernel {
        method: String,
        instruction: usize,
        op: String,
        source: KernelError,
    },
    /// The program is well-formed but cannot be run (unsupported feature, bad instruction).
    #[error("method '{method}': {reason}")]
    Unsupported { method: String, reason: String },
    /// A problem with method inputs (count, dtype, shape).
    #[error("method '{method}', input {index}: {reason}")]
    Input {
        method: String,
        index: usize,
        reason: String,
    },
    /// An output index or kind problem.
    #[error("method '{method}', output {index}: {reason}")]
    Output {
        method: String,
        index: usize,
        reason: String,
    },
    /// External data (`.ptd`) is missing or does not match.
    #[error("method '{method}', value {value}: external data '{key}': {reason}")]
    ExternalData {
        method: String,
        value: usize,
        key: String,
        reason: String,
    },
    /// Reading part of the program file failed (with a file loader: a short read means
    /// the file was truncated or changed after it was opened).
    #[error("reading {what} (bytes {offset}..+{len} of the program file): {source}")]
    Read {
        what: String,
        offset: u64,
        len: usize,
        source: std::io::Error,
    },
    /// Execution exceeded the instruction budget (a loop that never ends).
    #[error(
        "method '{method}': executed more than {limit} instructions; stopping (infinite loop?)"
    )]
    InstructionLimit { method: String, limit: u64 },
    /// Run-time control flow or value error outside a kernel.
    #[error("method '{method}', instruction {instruction}: {reason}")]
    Execution {
        method: String,
        instruction: usize,
        reason: String,
    },
}

pub type Result<T, E = Error> = core::result::Result<T, E>;

fn distinct_ops(missing: &[MissingOp]) -> usize {
    let mut ops: Vec<&str> = missing.iter().map(|m| m.op.as_str()).collect();
    ops.sort_unstable();
    ops.dedup();
    ops.len()
}

/// `aten::add.out (instructions 1, 5), aten::relu.out (instruction 2)`, in first-use order.
fn format_missing(missing: &[MissingOp]) -> String {
    let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
    for m in missing {
        match groups.iter_mut().find(|(o, _)| *o == m.op) {
            Some((_, v)) => v.push(m.instruction),
            None => groups.push((&m.op, vec![m.instruction])),
        }
    }
    groups
        .iter()
        .map(|(op, ix)| {
            let shown: Vec<String> = ix.iter().take(8).map(|i| i.to_string()).collect();
            let more = if ix.len() > 8 {
                format!(", ... {} more", ix.len() - 8)
            } else {
                String::new()
            };
            let word = if ix.len() == 1 {
                "instruction"
            } else {
                "instructions"
            };
            format!("{op} ({word} {}{more})", shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
