//! Typed errors for every tokenizer operation.

use std::path::PathBuf;

/// Convenience alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while loading or running a tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The tokenizer file could not be read.
    #[error("cannot read tokenizer file {path}: {source}")]
    Io {
        /// Path that failed.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// None of the known formats accepted the bytes.
    #[error("unrecognized tokenizer format; tried: {tried}")]
    UnknownFormat {
        /// One entry per attempted format with the reason it was rejected.
        tried: String,
    },
    /// The file looks like the named format but a field is missing or wrong.
    #[error("malformed {format} tokenizer: {message}")]
    Malformed {
        /// Format name (`tokenizer.json`, `tiktoken`, `sentencepiece`, `llama2.c`).
        format: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The file uses a component this crate does not implement.
    #[error("unsupported {format} component: {feature}")]
    Unsupported {
        /// Format name.
        format: &'static str,
        /// The component (e.g. a normalizer type).
        feature: String,
    },
    /// A regular expression from the tokenizer could not be compiled or run.
    #[error("regex error for pattern {pattern:?}: {message}")]
    Regex {
        /// The offending pattern.
        pattern: String,
        /// Engine message.
        message: String,
    },
    /// A token id outside the vocabulary was passed to a decode function.
    #[error("token id {id} is out of range (vocabulary size {vocab_size})")]
    OutOfRange {
        /// The bad id.
        id: u32,
        /// Number of ids the tokenizer knows.
        vocab_size: usize,
    },
    /// The tokenizer refuses to encode this input (llama2.c rejects empty text,
    /// as ExecuTorch's `Llama2cTokenizer` does).
    #[error("cannot encode input: {0}")]
    Encode(String),
}

impl Error {
    pub(crate) fn malformed(format: &'static str, message: impl Into<String>) -> Self {
        Error::Malformed {
            format,
            message: message.into(),
        }
    }

    pub(crate) fn unsupported(format: &'static str, feature: impl Into<String>) -> Self {
        Error::Unsupported {
            format,
            feature: feature.into(),
        }
    }

    pub(crate) fn regex(pattern: &str, message: impl ToString) -> Self {
        Error::Regex {
            pattern: pattern.to_string(),
            message: message.to_string(),
        }
    }
}
