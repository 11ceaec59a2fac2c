//! # pteron-format
//!
//! Brief overview: readers for the files ExecuTorch's exporter writes, with
//! verification that is always on.
//!
//! * [`parse_program`] reads a `.pte` (`ET12` FlatBuffer, optional `eh00` extended header,
//!   appended segments) into a [`ProgramDesc`]: every method, value, instruction,
//!   operator and delegate, with every index, range and size checked. Bulk data
//!   (constants, delegate payloads, named data) is described by byte ranges into the
//!   caller's buffer, never copied.
//! * [`parse_ptd`] reads an external tensor-data file (`FT01` with `FH01` header).
//!
//! The crate knows nothing of execution. Bad input never panics: every failure is a
//! [`FormatError`] that says what is wrong and where
//! (`execution_plan[0] (forward).values[17].tensor.sizes`).
#![forbid(unsafe_code)]

mod error;
pub mod fb;
mod program;
mod ptd;
mod scalar_type;

pub use error::FormatError;
pub use program::{
    check_identifier, parse_program, parse_program_head, program_head_len, Allocation,
    DataLocation, DelegateData, DelegateDesc, ExtendedHeader, Instruction, OperatorDesc, PlanDesc,
    ProgramDesc, ShapeDynamism, SubsegmentDesc, TensorDesc, ValueDesc, MAX_RANK, MIN_HEAD_BYTES,
    SUPPORTED_SCHEMA_VERSION,
};
pub use ptd::{parse_ptd, FlatTensorDesc, NamedBlob, TensorLayout};
pub use scalar_type::ScalarType;
