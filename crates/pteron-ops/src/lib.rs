//! # pteron-ops
//!
//! Brief overview: the operator kernels pteron runs, registered by their ExecuTorch
//! names (`"aten::add.out"`). Kernels are thin adapters: they read arguments through
//! [`pteron_runtime::KernelCtx`], check dtypes and shapes, resize outputs within their
//! bounds, and call `pteron-linalg` for the heavy lifting.
//!
//! Conventions for every kernel:
//! * Argument positions follow the ExecuTorch stack: schema arguments in order
//!   (including `out`), then one trailing entry for the return value.
//! * Never allocate in `run`: scratch memory is created in a factory at load
//!   ([`pteron_runtime::Registry::register_factory`]).
//! * Never panic on bad arguments: return a [`pteron_runtime::KernelError`] naming the
//!   argument and what is wrong.
//! * Shared helpers (dtype dispatch, promotion, broadcasting) live in [`util`].
#![forbid(unsafe_code)]

use pteron_runtime::Registry;

pub mod util;

mod binary;
mod extra;
mod fuse;
mod llm;
mod nn;
mod prim;
mod quantized;
mod reduce;
mod shape;
mod unary;

/// Registers every kernel of this crate.
pub fn register_all(reg: &mut Registry) {
    prim::register(reg);
    unary::register(reg);
    binary::register(reg);
    shape::register(reg);
    reduce::register(reg);
    nn::register(reg);
    fuse::register(reg);
    llm::register(reg);
    quantized::register(reg);
    extra::register(reg);
}

/// A registry with every kernel of this crate.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register_all(&mut r);
    r
}
