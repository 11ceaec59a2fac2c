//! # pteron-llm
//!
//! Brief overview: generate text with LLM programs exported by ExecuTorch's
//! `export_llm` (`forward(tokens, input_pos)` with a KV cache in mutable buffers).
//! (Work in progress.)
#![forbid(unsafe_code)]
