//! LLM custom operators (`llama::*`) emitted by `export_llm`. See the crate docs for
//! conventions.

use pteron_runtime::Registry;

pub(crate) fn register(_reg: &mut Registry) {}
