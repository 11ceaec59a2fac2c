//! # pteron-runtime
//!
//! Brief overview: executes verified ExecuTorch programs.
//!
//! * [`Program`] holds the file bytes and its verified description
//!   ([`pteron_format::ProgramDesc`]), plus any `.ptd` data files.
//! * [`Method::load`] builds one method: planned arenas allocated once, every value
//!   materialised, every operator resolved through a [`Registry`] (all missing ones
//!   reported together), delegates initialised by their [`Backend`].
//! * [`Method::execute`] runs the instruction list; it allocates nothing.
//!
//! The runtime knows no concrete operator: kernels register by name and see their
//! arguments through [`KernelCtx`], which hands out borrow-checked views of planned
//! memory (see the `kernel` module docs for how that stays safe without `unsafe`).
#![forbid(unsafe_code)]

mod error;
mod kernel;
mod memory;
mod method;
mod program;
mod tensor;
pub mod testing;
mod value;

/// Types whose all-zero bytes are a valid value (what [`try_zeroed_vec`] allocates).
pub use bytemuck::Zeroable;
pub use error::{Error, KernelError, KernelErrorKind, MissingOp, Result};
pub use kernel::{
    Backend, BackendInitCtx, DelegateHandle, FusionFactory, FusionRule, IntList, Kernel, KernelCtx,
    KernelFactory, KernelFn, NodeProfile, OpImpl, OptTensorList, PrepareCtx, Registry, TensorList,
};
pub use memory::{
    bytes_from_slice, bytes_from_vec, try_zeroed_vec, AlignedBuf, ByteSource, Bytes, DataLoader,
    F32Buf, FileLoader,
};
pub use method::{copy_reorder, MemoryReport, Method, OpProfile, MAX_INSTRUCTIONS};
pub use program::{IoInfo, MethodMeta, Program, TensorInfo};
pub use pteron_format::{ScalarType, ShapeDynamism};
pub use tensor::{
    strides_for, DimOrder, Element, Shape, Storage, TensorMut, TensorRef, TensorValue,
};
pub use value::{Scalar, Value};
