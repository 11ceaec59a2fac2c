use thiserror::Error;

/// Why a file was rejected. Every variant names what is wrong and where.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum FormatError {
    /// The buffer is shorter than the format's fixed header.
    #[error("file is too short: {len} bytes, need at least {need}")]
    TooShort { len: usize, need: usize },
    /// The FlatBuffers file identifier is not the expected one.
    #[error("wrong file identifier {found:?}, expected {expected:?}{hint}")]
    Identifier {
        found: String,
        expected: &'static str,
        hint: &'static str,
    },
    /// The extended (`eh00`/`FH01`) header is malformed or inconsistent with the file.
    #[error("invalid {header} header: {reason}")]
    Header {
        header: &'static str,
        reason: String,
    },
    /// The schema version is newer than this runtime reads.
    #[error(
        "schema version {found} is newer than the highest this runtime supports ({supported})"
    )]
    Version { found: u32, supported: u32 },
    /// A structural or semantic inconsistency, located by a path such as
    /// `execution_plan[0].values[17].tensor.sizes`.
    #[error("invalid program at {at}: {reason}")]
    Invalid { at: String, reason: String },
}

impl FormatError {
    pub(crate) fn invalid(at: impl Into<String>, reason: impl Into<String>) -> Self {
        FormatError::Invalid {
            at: at.into(),
            reason: reason.into(),
        }
    }
}

/// Attach a location to a low-level FlatBuffers error.
pub(crate) trait At<T> {
    fn at(self, path: impl FnOnce() -> String) -> Result<T, FormatError>;
}

impl<T> At<T> for Result<T, crate::fb::FbError> {
    fn at(self, path: impl FnOnce() -> String) -> Result<T, FormatError> {
        self.map_err(|e| FormatError::invalid(path(), e.to_string()))
    }
}
