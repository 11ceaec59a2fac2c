//! # pteron-llm
//!
//! Brief overview: generate text with LLM programs exported by ExecuTorch's
//! `export_llm` (`forward(tokens, input_pos)` with the KV cache in mutable buffers),
//! behaving like ExecuTorch's C++ `TextLLMRunner`.
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use pteron_llm::{GenerationConfig, Runner};
//! let mut r = Runner::load("model.pte", "tokenizer.model")?;
//! let cfg = GenerationConfig { max_new_tokens: Some(32), ..GenerationConfig::greedy() };
//! let out = r.generate("Once upon a time", &cfg, |ev| {
//!     print!("{}", ev.text);
//!     ControlFlow::Continue(())
//! })?;
//! eprintln!("{:?}: {}", out.stop, out.stats);
//! # Ok::<(), pteron_llm::LlmError>(())
//! ```
//!
//! * [`Metadata`]: the program's constant methods (`get_max_seq_len`, ...), with the
//!   reference runner's defaults for missing ones.
//! * [`Runner`]: prefill (one call with dynamic shapes, else token by token; prompts
//!   longer than the method's token bound are chunked), a decode loop, stop at EOS /
//!   `max_new_tokens` / the context limit / cancellation ([`StopReason`]), multi-turn
//!   use keeping the KV cache, [`Runner::reset`]. Programs without a KV cache
//!   (`forward(tokens)`, the whole sequence re-fed each step) and `prefill`/`decode`
//!   method pairs (sharing the KV-cache arena) run too.
//! * [`Sampler`]: greedy, temperature, top-k, top-p with a seeded xorshift RNG.
//! * [`Stats`]: load time, time to first token, prefill and decode rates.
#![forbid(unsafe_code)]

use std::fmt;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pteron::format::ShapeDynamism;
use pteron::{IoInfo, Module, ModuleError, Scalar, ScalarType, TensorRef, Value};
use pteron_tokenizers::{EncodeOptions, Tokenizer};

mod sampler;
pub use sampler::{argmax, Sampler};

/// Everything that can go wrong while loading a model or generating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LlmError {
    /// Reading, verifying, loading or executing the program failed.
    #[error(transparent)]
    Module(#[from] ModuleError),
    /// The tokenizer could not be loaded or failed to encode/decode.
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] pteron_tokenizers::Error),
    /// A method the runner needs is absent.
    #[error("the program has no '{name}' method (it has: {available}); is it an export_llm LLM program?")]
    MissingMethod { name: String, available: String },
    /// A required metadata method is absent.
    #[error("the program has no '{name}' metadata method; export it with export_llm (it always writes {name})")]
    MissingMetadata { name: &'static str },
    /// A metadata method returned something other than the expected scalar(s).
    #[error("metadata method '{name}': {reason}")]
    BadMetadata { name: String, reason: String },
    /// `forward` does not look like an LLM decoder.
    #[error("method '{method}' has an unexpected signature: {reason}")]
    BadSignature { method: String, reason: String },
    /// The tokenizer can produce ids the model has no logits/embeddings for.
    #[error("the tokenizer has {tokenizer} tokens but the model's vocabulary is {model}: they do not belong together")]
    VocabMismatch { tokenizer: usize, model: usize },
    /// The prompt does not fit in the remaining context.
    #[error(
        "the prompt is {prompt_tokens} tokens but only {available} of the model's {max_context_len}-token context are free (position {pos}); shorten it, reset, or enable truncation"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        pos: usize,
        available: usize,
        max_context_len: usize,
    },
    /// The prompt encoded to no tokens.
    #[error("the prompt is empty (no tokens to prefill)")]
    EmptyPrompt,
    /// A token id given to the model is outside its vocabulary.
    #[error("token id {token} is outside the model's vocabulary of {vocab}")]
    TokenOutOfRange { token: u64, vocab: usize },
    /// The model's logits could not be read.
    #[error("logits: {0}")]
    Logits(String),
}

pub type Result<T, E = LlmError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Metadata

/// The program's metadata, read from its constant methods like the reference runner
/// (`llm_runner_helper.cpp::get_llm_metadata`).
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    /// Most tokens one `forward` call takes (required: `get_max_seq_len`).
    pub max_seq_len: usize,
    /// KV cache length (`get_max_context_len`, default `max_seq_len`).
    pub max_context_len: usize,
    /// `get_bos_id`, else the tokenizer's.
    pub bos_id: Option<u32>,
    /// `get_eos_ids` if present, else the tokenizer's EOS.
    pub eos_ids: Vec<u32>,
    /// `use_kv_cache` (default true).
    pub use_kv_cache: bool,
    /// `use_sdpa_with_kv_cache` (default false).
    pub use_sdpa_with_kv_cache: bool,
    /// `enable_dynamic_shape` (default false): prefill the prompt in one call.
    pub enable_dynamic_shape: bool,
    /// The model's vocabulary (`get_vocab_size`, else the logits width).
    pub vocab_size: usize,
    /// `get_n_layers`, if present.
    pub n_layers: Option<usize>,
    /// Every metadata method with its scalar outputs, by name.
    pub methods: Vec<(String, Vec<Scalar>)>,
}

impl Metadata {
    /// The raw outputs of metadata method `name`, if the program has it.
    pub fn get(&self, name: &str) -> Option<&[Scalar]> {
        self.methods
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

const DECODER: &str = "forward";
/// Used for prefill (and decode) when there is no `forward` (the reference runner's
/// `kPrefillMethod`).
const PREFILL: &str = "prefill";
/// When present, runs the decode steps (`kDecodeMethod`).
const DECODE: &str = "decode";

fn read_metadata_methods(module: &mut Module) -> Result<Vec<(String, Vec<Scalar>)>> {
    let names: Vec<String> = module
        .program()
        .method_names()
        .map(str::to_string)
        .collect();
    let mut out = Vec::new();
    for name in names {
        let meta = module.method_meta(&name)?;
        if !meta.inputs.is_empty() || meta.num_instructions != 0 || name == DECODER {
            continue;
        }
        let m = module.method(&name)?;
        m.execute().map_err(ModuleError::from)?;
        let mut vals = Vec::new();
        for i in 0..m.num_outputs() {
            match m.output_value(i).map_err(ModuleError::from)? {
                Value::Scalar(s) => vals.push(s.get()),
                other => {
                    return Err(LlmError::BadMetadata {
                        name,
                        reason: format!("output {i} is a {}, expected a scalar", other.kind()),
                    })
                }
            }
        }
        out.push((name, vals));
    }
    Ok(out)
}

fn meta_int(methods: &[(String, Vec<Scalar>)], name: &str) -> Result<Option<i64>> {
    let Some((_, v)) = methods.iter().find(|(n, _)| n == name) else {
        return Ok(None);
    };
    match v.first().copied() {
        Some(Scalar::Int(i)) => Ok(Some(i)),
        Some(Scalar::Bool(b)) => Ok(Some(b as i64)),
        other => Err(LlmError::BadMetadata {
            name: name.to_string(),
            reason: format!("expected one Int, got {other:?}"),
        }),
    }
}

fn meta_usize(methods: &[(String, Vec<Scalar>)], name: &str) -> Result<Option<usize>> {
    match meta_int(methods, name)? {
        None => Ok(None),
        Some(v) => usize::try_from(v)
            .map(Some)
            .map_err(|_| LlmError::BadMetadata {
                name: name.to_string(),
                reason: format!("negative value {v}"),
            }),
    }
}

fn meta_bool(methods: &[(String, Vec<Scalar>)], name: &str, default: bool) -> Result<bool> {
    Ok(meta_int(methods, name)?.map_or(default, |v| v != 0))
}

fn meta_id(name: &str, v: i64) -> Result<u32> {
    u32::try_from(v).map_err(|_| LlmError::BadMetadata {
        name: name.to_string(),
        reason: format!("token id {v} out of range"),
    })
}

// ---------------------------------------------------------------------------
// The decoder

/// `forward`'s signature: token dtype, the token-dimension bound, whether positions
/// are one start index (`[1]`) or one per token (`cache_position [S]`).
#[derive(Debug, Clone, Copy)]
struct Decoder {
    /// The method's name (`forward`, `prefill` or `decode`).
    method: &'static str,
    token_dtype: ScalarType,
    /// Upper bound on tokens per call (1 for static exports).
    max_tokens_per_call: usize,
    dynamic: bool,
    /// `Some(dtype)` when the method takes a position input.
    pos_dtype: Option<ScalarType>,
    per_token_positions: bool,
    vocab: usize,
}

fn bad_sig(reason: impl Into<String>) -> LlmError {
    bad_sig_in(DECODER, reason)
}

fn bad_sig_in(method: &str, reason: impl Into<String>) -> LlmError {
    LlmError::BadSignature {
        method: method.to_string(),
        reason: reason.into(),
    }
}

fn inspect_decoder(module: &Module, name: &'static str) -> Result<Decoder> {
    let meta = module.method_meta(name)?;
    let tok = match meta.inputs.first() {
        Some(IoInfo::Tensor(t)) => t.clone(),
        _ => return Err(bad_sig_in(name, "input 0 (tokens) must be a tensor")),
    };
    if tok.sizes.len() != 2 || tok.sizes[0] != 1 {
        return Err(bad_sig_in(
            name,
            format!("tokens must be [1, S], declared {:?}", tok.sizes),
        ));
    }
    if !matches!(tok.dtype, ScalarType::Long | ScalarType::Int) {
        return Err(bad_sig_in(
            name,
            format!("tokens must be int64 or int32, declared {}", tok.dtype),
        ));
    }
    let (pos_dtype, per_token_positions) = match meta.inputs.get(1) {
        None => (None, false),
        Some(IoInfo::Tensor(p)) => {
            if !matches!(p.dtype, ScalarType::Long | ScalarType::Int) || p.sizes.len() != 1 {
                return Err(bad_sig_in(
                    name,
                    format!(
                        "input_pos must be a 1-D int tensor, declared {} {:?}",
                        p.dtype, p.sizes
                    ),
                ));
            }
            (Some(p.dtype), p.sizes[0] > 1)
        }
        Some(_) => return Err(bad_sig_in(name, "input 1 (input_pos) must be a tensor")),
    };
    if meta.inputs.len() > 2 {
        return Err(bad_sig_in(
            name,
            format!("expected 1 or 2 inputs, found {}", meta.inputs.len()),
        ));
    }
    let vocab = match meta.outputs.as_slice() {
        [IoInfo::Tensor(o)] => *o
            .sizes
            .last()
            .ok_or_else(|| bad_sig_in(name, "logits have rank 0"))?,
        other => {
            return Err(bad_sig_in(
                name,
                format!(
                    "expected exactly one tensor output (logits), found {} outputs",
                    other.len()
                ),
            ))
        }
    };
    let dynamic = tok.dynamism != ShapeDynamism::Static;
    Ok(Decoder {
        method: name,
        token_dtype: tok.dtype,
        max_tokens_per_call: tok.sizes[1].max(1),
        dynamic,
        pos_dtype,
        per_token_positions,
        vocab,
    })
}

// ---------------------------------------------------------------------------
// Configuration, events, results

/// Generation settings (the reference `GenerationConfig` plus sampling options).
#[derive(Debug, Clone)]
pub struct GenerationConfig {
    /// Most tokens to generate; `None` fills the context.
    pub max_new_tokens: Option<usize>,
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: usize,
    /// Nucleus threshold; values outside `(0, 1)` disable it.
    pub top_p: f32,
    /// RNG seed for sampling; `None` uses the clock (like the reference).
    pub seed: Option<u64>,
    /// BOS tokens to prepend when the context is empty (position 0).
    pub num_bos: usize,
    /// EOS tokens to append to the prompt.
    pub num_eos: usize,
    /// Keep generating through EOS.
    pub ignore_eos: bool,
    /// Report the prompt's text through the callback first.
    pub echo: bool,
    /// Drop the oldest prompt tokens (keeping BOS) instead of failing when the
    /// prompt does not fit.
    pub truncate_prompt: bool,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        GenerationConfig {
            max_new_tokens: None,
            temperature: 0.8,
            top_k: 0,
            top_p: 0.9,
            seed: None,
            num_bos: 1,
            num_eos: 0,
            ignore_eos: false,
            echo: false,
            truncate_prompt: false,
        }
    }
}

impl GenerationConfig {
    /// Greedy decoding (temperature 0).
    pub fn greedy() -> Self {
        GenerationConfig {
            temperature: 0.0,
            ..Default::default()
        }
    }
}

/// What the callback receives.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent<'a> {
    /// The token id (`None` for echoed prompt text).
    pub token: Option<u32>,
    /// Text that became complete with this token (valid UTF-8; may be empty while
    /// a multi-byte character is incomplete).
    pub text: &'a str,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced an end-of-sequence token.
    Eos(u32),
    /// `max_new_tokens` tokens were generated.
    MaxNewTokens,
    /// The KV cache is full (`max_context_len` positions used).
    ContextFull,
    /// The callback returned `Break` or the stop flag was set.
    Cancelled,
}

/// Timings and counts, like the reference runner's `Stats`.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub load: Duration,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// Prompt tokens dropped by `truncate_prompt`.
    pub truncated_prompt_tokens: usize,
    /// Tokenizer encode time.
    pub encode: Duration,
    /// Prefill (prompt evaluation) time.
    pub prefill: Duration,
    /// From the start of `generate` to the first generated token.
    pub time_to_first_token: Duration,
    /// Decode time (after the first token).
    pub decode: Duration,
    /// Time in the sampler.
    pub sampling: Duration,
    /// Number of `forward` calls.
    pub forward_calls: usize,
}

fn rate(n: usize, d: Duration) -> f64 {
    let s = d.as_secs_f64();
    if s > 0.0 {
        n as f64 / s
    } else {
        0.0
    }
}

impl Stats {
    pub fn prefill_tokens_per_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill)
    }
    /// Tokens generated after the first one, per second of decode time.
    pub fn decode_tokens_per_s(&self) -> f64 {
        rate(self.generated_tokens.saturating_sub(1), self.decode)
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "load {:.1} ms | prompt {} tok, prefill {:.1} ms ({:.1} tok/s) | first token {:.1} ms | generated {} tok, decode {:.1} ms ({:.1} tok/s)",
            self.load.as_secs_f64() * 1e3,
            self.prompt_tokens,
            self.prefill.as_secs_f64() * 1e3,
            self.prefill_tokens_per_s(),
            self.time_to_first_token.as_secs_f64() * 1e3,
            self.generated_tokens,
            self.decode.as_secs_f64() * 1e3,
            self.decode_tokens_per_s(),
        )?;
        if self.truncated_prompt_tokens > 0 {
            write!(
                f,
                " | {} prompt tokens truncated",
                self.truncated_prompt_tokens
            )?;
        }
        Ok(())
    }
}

/// Where the decode steps' time went (see [`Runner::decode_profile`]).
#[derive(Debug, Clone, Default)]
pub struct DecodeProfile {
    /// Decode-step `forward` calls covered.
    pub steps: usize,
    /// Time per operator (fused groups and delegate calls included).
    pub ops: Vec<pteron::OpProfile>,
    /// Per delegate instance (handle, backend id), the time per node.
    pub delegates: Vec<(usize, String, Vec<pteron::NodeProfile>)>,
}

/// The result of one [`Runner::generate`] call.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The prompt's token ids as fed (after BOS/truncation).
    pub prompt_tokens: Vec<u32>,
    /// Generated ids (including a final EOS, if any).
    pub tokens: Vec<u32>,
    /// Generated text (without the echoed prompt).
    pub text: String,
    pub stop: StopReason,
    pub stats: Stats,
}

// ---------------------------------------------------------------------------
// Runner

/// Options for [`Runner::load_with`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Kernel threads (`None`: all cores).
    pub threads: Option<usize>,
    /// Extra `.ptd` weight files.
    pub data_files: Vec<std::path::PathBuf>,
}

/// The program side: the loaded module, its metadata and the cache position.
struct Engine {
    module: Module,
    meta: Metadata,
    /// The prefill method (`forward` or `prefill`).
    dec: Decoder,
    /// The decode-step method (`decode`, else the same as `dec`).
    step: Decoder,
    /// Planned arenas (indices `1..=shared_arenas`) shared by `dec` and `step`.
    shared_arenas: usize,
    /// Whether `step` currently holds the shared arenas.
    arenas_in_step: bool,
    /// Positions of the KV cache in use (without a KV cache: tokens in `history`).
    pos: usize,
    /// Without a KV cache: every token of the conversation, re-fed on each call.
    history: Vec<u32>,
    logits: Vec<f32>,
    tok_buf: Vec<u8>,
    pos_buf: Vec<u8>,
    /// Time the decode steps per operator (see [`Runner::set_profiling`]).
    profiling: bool,
    /// Decode steps run since profiling was (re)started.
    profiled_steps: usize,
}

impl Engine {
    fn too_long(&self, n: usize) -> LlmError {
        LlmError::PromptTooLong {
            prompt_tokens: n,
            pos: self.pos,
            available: self.context_len().saturating_sub(self.pos),
            max_context_len: self.context_len(),
        }
    }

    /// Positions usable in one conversation: the KV cache length, or without a KV cache
    /// also the token input's bound (the whole sequence goes in every call).
    fn context_len(&self) -> usize {
        if self.meta.use_kv_cache {
            self.meta.max_context_len
        } else {
            self.meta.max_context_len.min(self.dec.max_tokens_per_call)
        }
    }

    /// Runs `forward` on `tokens` at positions `pos..`, leaving the last position's
    /// logits in `self.logits`. Checks ids and the context bound; does not chunk.
    /// Without a KV cache the whole conversation so far plus `tokens` is fed, as the
    /// reference runner does.
    /// `decode_step` selects the decode method (when the program has one).
    fn forward(&mut self, tokens: &[u32], stats: &mut Stats, decode_step: bool) -> Result<()> {
        let d = if decode_step { self.step } else { self.dec };
        let n = tokens.len();
        let fed = if self.meta.use_kv_cache {
            n
        } else {
            self.history.len() + n
        };
        if n == 0 || fed > d.max_tokens_per_call {
            return Err(LlmError::Logits(format!(
                "internal: {fed} tokens in one call to '{}' (bound {})",
                d.method, d.max_tokens_per_call
            )));
        }
        if self.pos + n > self.context_len() {
            return Err(self.too_long(n));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.meta.vocab_size) {
            return Err(LlmError::TokenOutOfRange {
                token: t as u64,
                vocab: self.meta.vocab_size,
            });
        }
        // (`history` stays empty with a KV cache.)
        let ids = self.history.iter().chain(tokens).map(|&t| t as i64);
        fill_ints(&mut self.tok_buf, d.token_dtype, ids);
        // Shared KV-cache arenas go to the method about to run.
        let in_step = d.method == self.step.method && d.method != self.dec.method;
        if self.shared_arenas > 0 && in_step != self.arenas_in_step {
            for i in 1..=self.shared_arenas {
                self.module
                    .exchange_arena(self.dec.method, self.step.method, i)?;
            }
            self.arenas_in_step = in_step;
        }
        let m = self.module.method(d.method)?;
        let tok_t = TensorRef::new(d.token_dtype, &[1, fed], None, &self.tok_buf)
            .map_err(|source| ModuleError::Input { index: 0, source })?;
        m.set_input(0, tok_t).map_err(ModuleError::from)?;
        if let Some(pdt) = d.pos_dtype {
            let start = self.pos as i64;
            let np = if d.per_token_positions { n } else { 1 };
            fill_ints(&mut self.pos_buf, pdt, (0..np as i64).map(|i| start + i));
            let pos_t = TensorRef::new(pdt, &[np], None, &self.pos_buf)
                .map_err(|source| ModuleError::Input { index: 1, source })?;
            m.set_input(1, pos_t).map_err(ModuleError::from)?;
        }
        m.execute().map_err(ModuleError::from)?;
        stats.forward_calls += 1;
        self.profiled_steps += usize::from(decode_step);
        let out = m.output(0).map_err(ModuleError::from)?;
        read_last_row(&out, &mut self.logits)?;
        self.pos += n;
        if !self.meta.use_kv_cache {
            self.history.extend_from_slice(tokens);
        }
        Ok(())
    }

    /// Feeds `tokens` (one call per chunk of the method's token bound with dynamic
    /// shapes, one call per token for static exports).
    fn prefill(&mut self, tokens: &[u32], stats: &mut Stats) -> Result<()> {
        if tokens.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        if tokens.len() > self.context_len().saturating_sub(self.pos) {
            return Err(self.too_long(tokens.len()));
        }
        let chunk = if !self.meta.use_kv_cache {
            // The whole sequence goes in one call (it fits: checked above).
            tokens.len()
        } else if self.dec.dynamic {
            self.dec.max_tokens_per_call
        } else if self.dec.max_tokens_per_call == 1 {
            1
        } else {
            return Err(bad_sig(format!(
                "a static token input of {} tokens per call is not supported (expected 1 or a dynamic bound)",
                self.dec.max_tokens_per_call
            )));
        };
        for c in tokens.chunks(chunk) {
            self.forward(c, stats, false)?;
        }
        Ok(())
    }
}

/// A text-generation session over one program and tokenizer.
pub struct Runner {
    engine: Engine,
    tokenizer: Tokenizer,
    /// The last generated token, not yet fed to the model (fed first on the next turn).
    pending: Option<u32>,
    stop: Arc<AtomicBool>,
    load_time: Duration,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runner")
            .field("meta", &self.engine.meta)
            .field("pos", &self.engine.pos)
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// Loads a `.pte` program and a tokenizer file (any format `pteron-tokenizers` reads).
    pub fn load(model: impl AsRef<Path>, tokenizer: impl AsRef<Path>) -> Result<Runner> {
        Self::load_with(model, tokenizer, &LoadOptions::default())
    }

    pub fn load_with(
        model: impl AsRef<Path>,
        tokenizer: impl AsRef<Path>,
        opts: &LoadOptions,
    ) -> Result<Runner> {
        let t0 = Instant::now();
        if let Some(n) = opts.threads {
            pteron::set_num_threads(n.max(1));
        }
        let (model, tokenizer) = (model.as_ref(), tokenizer.as_ref());
        // The tokenizer is built on a second thread while the program is read,
        // verified and its decoder method loaded (weights pre-packed).
        let mut r = std::thread::scope(|s| -> Result<Runner> {
            let tok = s.spawn(|| Tokenizer::from_file(tokenizer));
            let mut module = Module::from_file(model)?;
            for d in &opts.data_files {
                module.add_data_file(d)?;
            }
            // The methods `new` picks (loading is idempotent).
            let has = |m: &Module, n: &str| m.program().method_names().any(|x| x == n);
            let first = if has(&module, DECODER) {
                DECODER
            } else {
                PREFILL
            };
            for name in [first, DECODE] {
                if has(&module, name) {
                    module.method(name)?;
                }
            }
            let tok = match tok.join() {
                Ok(t) => t?,
                Err(panic) => std::panic::resume_unwind(panic),
            };
            Self::new(module, tok)
        })?;
        r.load_time = t0.elapsed();
        Ok(r)
    }

    /// Builds a runner from a loaded module and tokenizer: reads the metadata, checks
    /// the decoder's signature and the tokenizer against the model, loads `forward`.
    pub fn new(mut module: Module, tokenizer: Tokenizer) -> Result<Runner> {
        let t0 = Instant::now();
        let has = |n: &str| module.program().method_names().any(|m| m == n);
        // As the reference: `forward`, else `prefill`; a `decode` method, if any, runs
        // the decode steps.
        let prefill_name = if has(DECODER) {
            DECODER
        } else if has(PREFILL) {
            PREFILL
        } else {
            return Err(LlmError::MissingMethod {
                name: DECODER.to_string(),
                available: module
                    .program()
                    .method_names()
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        };
        let decode_name = if has(DECODE) { DECODE } else { prefill_name };
        let methods = read_metadata_methods(&mut module)?;
        let max_seq_len =
            meta_usize(&methods, "get_max_seq_len")?.ok_or(LlmError::MissingMetadata {
                name: "get_max_seq_len",
            })?;
        let dec = inspect_decoder(&module, prefill_name)?;
        let step = inspect_decoder(&module, decode_name)?;
        if step.vocab != dec.vocab
            || step.pos_dtype.is_some() != dec.pos_dtype.is_some()
            || step.per_token_positions && !dec.per_token_positions
        {
            return Err(bad_sig_in(
                decode_name,
                format!("its inputs/outputs do not match '{prefill_name}''s"),
            ));
        }
        // Planned arenas past the first hold the shared mutable buffers (KV caches in
        // memory id 2 with `share_mutable_buffers`): both methods must run on them.
        let shared_arenas = if decode_name == prefill_name {
            0
        } else {
            let a = module.method_meta(prefill_name)?.planned_buffers.len();
            let b = module.method_meta(decode_name)?.planned_buffers.len();
            if a != b {
                return Err(bad_sig_in(
                    decode_name,
                    format!("{b} planned arenas but '{prefill_name}' has {a}; cannot share its KV cache"),
                ));
            }
            a.saturating_sub(1)
        };
        let max_context_len = meta_usize(&methods, "get_max_context_len")?.unwrap_or(max_seq_len);
        let vocab_size = meta_usize(&methods, "get_vocab_size")?.unwrap_or(dec.vocab);
        if vocab_size != dec.vocab {
            return Err(bad_sig(format!(
                "logits have {} entries but get_vocab_size says {vocab_size}",
                dec.vocab
            )));
        }
        if tokenizer.vocab_size() > vocab_size {
            return Err(LlmError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: vocab_size,
            });
        }
        let bos_id = match meta_int(&methods, "get_bos_id")? {
            Some(v) => Some(meta_id("get_bos_id", v)?),
            None => tokenizer.bos_id(),
        };
        let eos_ids = match methods.iter().find(|(n, _)| n == "get_eos_ids") {
            Some((_, v)) => v
                .iter()
                .map(|s| match s.to_i64() {
                    Some(i) => meta_id("get_eos_ids", i),
                    None => Err(LlmError::BadMetadata {
                        name: "get_eos_ids".into(),
                        reason: "expected Ints".into(),
                    }),
                })
                .collect::<Result<Vec<_>>>()?,
            None => tokenizer.eos_ids(),
        };
        // `use_kv_cache` decides the generation strategy (as in the reference); the
        // signature must agree: a position input exactly when there is a cache.
        let use_kv_cache = meta_bool(&methods, "use_kv_cache", true)?;
        if use_kv_cache != dec.pos_dtype.is_some() {
            return Err(bad_sig(if use_kv_cache {
                "use_kv_cache is true but forward takes no position input"
            } else {
                "use_kv_cache is false but forward takes a position input"
            }));
        }
        if !use_kv_cache && !dec.dynamic {
            return Err(bad_sig(format!(
                "without a KV cache the whole sequence is fed each step, which needs a dynamic token dimension (declared static {:?}); export with model.enable_dynamic_shape=True",
                [1, dec.max_tokens_per_call]
            )));
        }
        let meta = Metadata {
            max_seq_len,
            max_context_len,
            bos_id,
            eos_ids,
            use_kv_cache,
            use_sdpa_with_kv_cache: meta_bool(&methods, "use_sdpa_with_kv_cache", false)?,
            enable_dynamic_shape: meta_bool(&methods, "enable_dynamic_shape", false)?,
            vocab_size,
            n_layers: meta_usize(&methods, "get_n_layers")?,
            methods,
        };
        module.method(prefill_name)?;
        module.method(decode_name)?;
        Ok(Runner {
            engine: Engine {
                module,
                meta,
                dec,
                step,
                shared_arenas,
                arenas_in_step: false,
                pos: 0,
                history: Vec::with_capacity(if use_kv_cache { 0 } else { max_context_len }),
                logits: Vec::new(),
                tok_buf: Vec::new(),
                pos_buf: Vec::new(),
                profiling: false,
                profiled_steps: 0,
            },
            tokenizer,
            pending: None,
            stop: Arc::new(AtomicBool::new(false)),
            load_time: t0.elapsed(),
        })
    }

    pub fn metadata(&self) -> &Metadata {
        &self.engine.meta
    }
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    /// KV-cache positions in use.
    pub fn pos(&self) -> usize {
        self.engine.pos
    }
    /// The methods that run prefill and decode steps: `("forward", "forward")`, or
    /// `("prefill", "decode")` for programs with that pair (which share the KV-cache
    /// arenas).
    pub fn decoder_methods(&self) -> (&'static str, &'static str) {
        (self.engine.dec.method, self.engine.step.method)
    }
    /// Whether the prompt is prefilled in one call per chunk (dynamic token dim).
    pub fn parallel_prefill(&self) -> bool {
        self.engine.dec.dynamic
    }
    /// Time spent loading (program, tokenizer, metadata, method).
    pub fn load_time(&self) -> Duration {
        self.load_time
    }
    /// A flag that cancels the running generation when set (checked per token); it
    /// is cleared at the start of each `generate`.
    pub fn stop_handle(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }
    /// Forgets the conversation: the next prompt starts at position 0. (Stale cache
    /// rows are overwritten before they can be attended to.)
    pub fn reset(&mut self) {
        self.engine.pos = 0;
        self.engine.history.clear();
        self.pending = None;
    }

    /// Times the decode steps of the following [`Runner::generate`] calls per operator
    /// and, inside delegates, per node (read with [`Runner::decode_profile`]). Each
    /// call restarts the tables after its prefill, so they cover the last call's decode
    /// steps only. Costs two clock reads per instruction and per delegate node.
    pub fn set_profiling(&mut self, on: bool) {
        self.engine.profiling = on;
        if !on {
            if let Ok(m) = self.engine.module.method(self.engine.step.method) {
                m.set_profiling(false);
            }
        }
    }

    /// With profiling on: the last call's decode steps, time per operator (most
    /// expensive first) and per delegate node, summed over the steps (see
    /// [`pteron::Method::profile`], [`pteron::Method::delegate_profile`]), and the number
    /// of decode-step `forward` calls they cover.
    pub fn decode_profile(&mut self) -> Result<DecodeProfile> {
        let m = self.engine.module.method(self.engine.step.method)?;
        Ok(DecodeProfile {
            steps: self.engine.profiled_steps,
            ops: m.profile(),
            delegates: m.delegate_profile(),
        })
    }

    /// Feeds `tokens` at the current position and returns the last logits.
    pub fn prefill(&mut self, tokens: &[u32]) -> Result<&[f32]> {
        let mut stats = Stats::default();
        if let Some(p) = self.pending.take() {
            self.engine.prefill(&[p], &mut stats)?;
        }
        self.engine.prefill(tokens, &mut stats)?;
        Ok(&self.engine.logits)
    }

    /// Encodes `prompt` like [`Runner::generate`] does (BOS only at position 0).
    pub fn encode_prompt(&self, prompt: &str, cfg: &GenerationConfig) -> Result<Vec<u32>> {
        let bos = if self.engine.pos == 0 && self.pending.is_none() {
            cfg.num_bos
        } else {
            0
        };
        let mut ids = Vec::new();
        if let Some(b) = self.engine.meta.bos_id {
            ids.extend(std::iter::repeat_n(b, bos));
        }
        ids.extend(self.tokenizer.encode_with(
            prompt,
            &EncodeOptions {
                add_bos: false,
                ..EncodeOptions::default()
            },
        )?);
        if let Some(&e) = self.engine.meta.eos_ids.first() {
            ids.extend(std::iter::repeat_n(e, cfg.num_eos));
        }
        Ok(ids)
    }

    /// Generates a continuation of `prompt`. `on_token` receives the text of each
    /// token as it becomes valid UTF-8 (and the prompt first, with `echo`); returning
    /// `ControlFlow::Break(())` stops generation. Consecutive calls continue the
    /// conversation in the same KV cache (chat) until [`Runner::reset`].
    pub fn generate(
        &mut self,
        prompt: &str,
        cfg: &GenerationConfig,
        mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Generation> {
        let t_start = Instant::now();
        let ids = self.encode_prompt(prompt, cfg)?;
        let encode = t_start.elapsed();
        if cfg.echo {
            if let ControlFlow::Break(()) = on_token(TokenEvent {
                token: None,
                text: prompt,
            }) {
                return Ok(Generation {
                    prompt_tokens: ids,
                    tokens: vec![],
                    text: String::new(),
                    stop: StopReason::Cancelled,
                    stats: Stats {
                        encode,
                        load: self.load_time,
                        ..Stats::default()
                    },
                });
            }
        }
        let mut g = self.run(ids, cfg, &mut on_token, t_start)?;
        g.stats.encode = encode;
        Ok(g)
    }

    /// Like [`Runner::generate`] with the prompt already tokenized (BOS/EOS are
    /// taken as given).
    pub fn generate_from_ids(
        &mut self,
        prompt: &[u32],
        cfg: &GenerationConfig,
        mut on_token: impl FnMut(TokenEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Generation> {
        self.run(prompt.to_vec(), cfg, &mut on_token, Instant::now())
    }

    fn run(
        &mut self,
        mut prompt: Vec<u32>,
        cfg: &GenerationConfig,
        on_token: &mut dyn FnMut(TokenEvent<'_>) -> ControlFlow<()>,
        t_start: Instant,
    ) -> Result<Generation> {
        self.stop.store(false, Ordering::Relaxed);
        let mut stats = Stats {
            load: self.load_time,
            ..Stats::default()
        };
        let ctx = self.engine.context_len();
        // The previous turn's last token was sampled but never fed: feed it first.
        let carried: Vec<u32> = self.pending.into_iter().collect();
        if prompt.is_empty() && carried.is_empty() {
            return Err(LlmError::EmptyPrompt);
        }
        // Like the reference: pos + prompt must leave room for one generated token.
        let used = self.engine.pos + carried.len();
        let avail = ctx.saturating_sub(used);
        if prompt.len() >= avail {
            if !cfg.truncate_prompt || avail < 2 {
                return Err(LlmError::PromptTooLong {
                    prompt_tokens: prompt.len() + carried.len(),
                    pos: self.engine.pos,
                    available: ctx.saturating_sub(self.engine.pos + 1),
                    max_context_len: ctx,
                });
            }
            let keep = avail - 1;
            let bos = self.engine.meta.bos_id;
            let from = usize::from(used == 0 && bos.is_some() && prompt.first() == bos.as_ref());
            let drop = prompt.len() - keep;
            prompt.drain(from..from + drop);
            stats.truncated_prompt_tokens = drop;
        }
        if let Some(&t) = prompt
            .iter()
            .find(|&&t| t as usize >= self.engine.meta.vocab_size)
        {
            return Err(LlmError::TokenOutOfRange {
                token: t as u64,
                vocab: self.engine.meta.vocab_size,
            });
        }
        self.pending = None;
        let mut feed = carried;
        feed.extend_from_slice(&prompt);
        stats.prompt_tokens = feed.len();
        let t_prefill = Instant::now();
        self.engine.prefill(&feed, &mut stats)?;
        stats.prefill = t_prefill.elapsed();
        if self.engine.profiling {
            self.engine
                .module
                .method(self.engine.step.method)?
                .set_profiling(true);
            self.engine.profiled_steps = 0;
        }

        let seed = cfg.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
        let mut sampler = Sampler::new(cfg.temperature, cfg.top_k, cfg.top_p, seed);
        // Each sampled token but the last needs a free position to be fed.
        let limit_ctx = ctx.saturating_sub(self.engine.pos) + 1;
        let max_new = cfg.max_new_tokens.unwrap_or(usize::MAX).min(limit_ctx);
        let context_limited = cfg.max_new_tokens.is_none_or(|m| m > limit_ctx);
        let mut stop = if context_limited {
            StopReason::ContextFull
        } else {
            StopReason::MaxNewTokens
        };

        let Runner {
            engine,
            tokenizer,
            stop: stop_flag,
            ..
        } = self;
        let mut decoder = tokenizer.stream_decoder();
        decoder.set_prev(feed.last().copied());
        let mut tokens: Vec<u32> = Vec::new();
        let mut text = String::new();
        let mut decode_start: Option<Instant> = None;
        while tokens.len() < max_new {
            let ts = Instant::now();
            let tok = sampler
                .sample(&engine.logits)
                .ok_or_else(|| LlmError::Logits("the model returned empty logits".into()))?;
            stats.sampling += ts.elapsed();
            if tokens.is_empty() {
                stats.time_to_first_token = t_start.elapsed();
                decode_start = Some(Instant::now());
            }
            tokens.push(tok);
            let piece = decoder.push(tok)?;
            text.push_str(&piece);
            let flow = on_token(TokenEvent {
                token: Some(tok),
                text: &piece,
            });
            if !cfg.ignore_eos && engine.meta.eos_ids.contains(&tok) {
                stop = StopReason::Eos(tok);
                break;
            }
            if flow.is_break() || stop_flag.load(Ordering::Relaxed) {
                stop = StopReason::Cancelled;
                break;
            }
            if tokens.len() >= max_new {
                break;
            }
            engine.forward(&[tok], &mut stats, true)?;
        }
        let rest = decoder.finish();
        if !rest.is_empty() {
            text.push_str(&rest);
            let _ = on_token(TokenEvent {
                token: None,
                text: &rest,
            });
        }
        if let Some(d) = decode_start {
            stats.decode = d.elapsed();
        }
        stats.generated_tokens = tokens.len();
        // The last token was sampled but not fed; keep it for the next turn unless it
        // ended the sequence or there is no room left for it.
        self.pending = match (stop, tokens.last()) {
            (StopReason::Eos(_), _) | (_, None) => None,
            (_, Some(&t)) if self.engine.pos < ctx => Some(t),
            _ => None,
        };
        Ok(Generation {
            prompt_tokens: prompt,
            tokens,
            text,
            stop,
            stats,
        })
    }
}

fn fill_ints(buf: &mut Vec<u8>, dt: ScalarType, vals: impl Iterator<Item = i64>) {
    buf.clear();
    for v in vals {
        match dt {
            ScalarType::Int => buf.extend_from_slice(&(v as i32).to_le_bytes()),
            _ => buf.extend_from_slice(&v.to_le_bytes()),
        }
    }
}

fn read_last_row(t: &TensorRef<'_>, out: &mut Vec<f32>) -> Result<()> {
    let sizes = t.sizes();
    let v = *sizes
        .last()
        .ok_or_else(|| LlmError::Logits("rank-0 logits".into()))?;
    let n = t.numel();
    if v == 0 || n < v {
        return Err(LlmError::Logits(format!("logits of shape {sizes:?}")));
    }
    if !t.is_contiguous() {
        return Err(LlmError::Logits("non-contiguous logits".into()));
    }
    let start = n - v;
    out.clear();
    let err = |e: pteron::KernelError| LlmError::Logits(e.to_string());
    match t.dtype() {
        ScalarType::Float => out.extend_from_slice(&t.as_slice::<f32>().map_err(err)?[start..]),
        ScalarType::Half => out.extend(
            t.as_slice::<half::f16>().map_err(err)?[start..]
                .iter()
                .map(|x| x.to_f32()),
        ),
        ScalarType::BFloat16 => out.extend(
            t.as_slice::<half::bf16>().map_err(err)?[start..]
                .iter()
                .map(|x| x.to_f32()),
        ),
        other => {
            return Err(LlmError::Logits(format!(
                "unsupported logits dtype {other}"
            )))
        }
    }
    Ok(())
}
