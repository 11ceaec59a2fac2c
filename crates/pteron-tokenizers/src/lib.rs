//! Pure-Rust tokenizers for on-device text generation with pteron.
//!
//! # Brief overview
//!
//! This crate loads the tokenizer files that ship next to ExecuTorch models
//! and turns text into token ids and back, without any C/C++ dependency and
//! without the runtime:
//!
//! * **Hugging Face `tokenizer.json`**: BPE (byte-level GPT-2 / Llama 3 style
//!   and SentencePiece-style with byte fallback), Unigram, WordPiece and
//!   WordLevel models; the common normalizers, pre-tokenizers,
//!   post-processors and decoders; added/special tokens with their
//!   `lstrip`/`rstrip`/`single_word`/`normalized` flags.
//! * **tiktoken** rank files with the Llama 3 special-token layout and
//!   pre-tokenization regex (as ExecuTorch's `pytorch-tokenizers` does).
//! * **SentencePiece `.model`** files (BPE and Unigram, byte fallback),
//!   parsed with a small hand-written protobuf reader.
//! * **llama2.c `tokenizer.bin`** files (both the original layout and the
//!   ExecuTorch export with a vocab-size/BOS/EOS header).
//!
//! [`Tokenizer`] wraps all four behind one API. The format is detected from
//! the file contents ([`Tokenizer::from_file`], [`Tokenizer::from_bytes`]),
//! trying each format in turn like ExecuTorch's runner. Decoding can be done
//! all at once ([`Tokenizer::decode`]) or incrementally with a
//! [`StreamDecoder`] that only ever yields complete UTF-8 text.
//!
//! ```no_run
//! use pteron_tokenizers::Tokenizer;
//! # fn main() -> Result<(), pteron_tokenizers::Error> {
//! let tok = Tokenizer::from_file("tokenizer.model")?;
//! let ids = tok.encode("Hello world", true)?;
//! let mut stream = tok.stream_decoder();
//! let mut text = String::new();
//! for &id in &ids[1..] {
//!     text.push_str(&stream.push(id)?);
//! }
//! text.push_str(&stream.finish());
//! # Ok(()) }
//! ```
//!
//! The behaviour of every format is checked against vectors produced by the
//! reference Python libraries (`tokenizers`, `sentencepiece`, `tiktoken`,
//! `pytorch-tokenizers`); see the crate README for how to regenerate them.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod charsmap;
mod error;
pub mod hf;
mod index;
pub mod llama2c;
pub mod sentencepiece;
pub mod tiktoken;
mod trie;
mod util;

use std::path::Path;

pub use error::{Error, Result};
pub use hf::HfTokenizer;
pub use llama2c::Llama2cTokenizer;
pub use sentencepiece::SentencePieceTokenizer;
pub use tiktoken::TiktokenTokenizer;

/// The on-disk tokenizer formats this crate understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Hugging Face `tokenizer.json`.
    HuggingFace,
    /// tiktoken rank file (Llama 3 layout).
    Tiktoken,
    /// SentencePiece `ModelProto` (`tokenizer.model`).
    SentencePiece,
    /// llama2.c / ExecuTorch `tokenizer.bin`.
    Llama2c,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::HuggingFace => "tokenizer.json",
            Format::Tiktoken => "tiktoken",
            Format::SentencePiece => "sentencepiece",
            Format::Llama2c => "llama2.c",
        }
    }
}

/// Options for [`Tokenizer::encode_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    /// Prepend the BOS token. For `tokenizer.json` this runs the
    /// post-processor (HF's `add_special_tokens=True`) when it adds a
    /// leading token, and otherwise prepends [`Tokenizer::bos_id`].
    pub add_bos: bool,
    /// Append the first EOS token.
    pub add_eos: bool,
    /// Recognise special tokens written in the text (tiktoken's
    /// `allowed_special="all"`; for `tokenizer.json`, `false` is HF's
    /// `encode_special_tokens=True`, non-special added tokens still match).
    /// SentencePiece and llama2.c never parse special tokens from text, like
    /// their references.
    pub parse_special: bool,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions {
            add_bos: false,
            add_eos: false,
            parse_special: true,
        }
    }
}

#[derive(Debug)]
enum Inner {
    Hf(Box<HfTokenizer>),
    Tiktoken(Box<TiktokenTokenizer>),
    SentencePiece(Box<SentencePieceTokenizer>),
    Llama2c(Box<Llama2cTokenizer>),
}

/// A loaded tokenizer of any supported format.
#[derive(Debug)]
pub struct Tokenizer {
    inner: Inner,
}

impl From<HfTokenizer> for Tokenizer {
    fn from(t: HfTokenizer) -> Self {
        Tokenizer {
            inner: Inner::Hf(Box::new(t)),
        }
    }
}
impl From<TiktokenTokenizer> for Tokenizer {
    fn from(t: TiktokenTokenizer) -> Self {
        Tokenizer {
            inner: Inner::Tiktoken(Box::new(t)),
        }
    }
}
impl From<SentencePieceTokenizer> for Tokenizer {
    fn from(t: SentencePieceTokenizer) -> Self {
        Tokenizer {
            inner: Inner::SentencePiece(Box::new(t)),
        }
    }
}
impl From<Llama2cTokenizer> for Tokenizer {
    fn from(t: Llama2cTokenizer) -> Self {
        Tokenizer {
            inner: Inner::Llama2c(Box::new(t)),
        }
    }
}

impl Tokenizer {
    /// Reads and loads a tokenizer file, detecting its format.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let data = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&data, None)
    }

    /// Loads a tokenizer from memory. With `hint`, only that format is tried;
    /// otherwise the formats are tried in turn: JSON (when the data starts
    /// with `{`), tiktoken, SentencePiece protobuf, llama2.c binary.
    pub fn from_bytes(data: &[u8], hint: Option<Format>) -> Result<Self> {
        if let Some(f) = hint {
            return Self::load_as(data, f);
        }
        let mut tried = Vec::new();
        let first = data.iter().copied().find(|b| !b.is_ascii_whitespace());
        let order: Vec<Format> = if first == Some(b'{') {
            vec![Format::HuggingFace]
        } else {
            let mut v = Vec::new();
            if tiktoken::looks_like_tiktoken(data) {
                v.push(Format::Tiktoken);
            } else {
                tried.push("tiktoken (not `base64 rank` lines)".to_string());
            }
            v.push(Format::SentencePiece);
            v.push(Format::Llama2c);
            v
        };
        if first != Some(b'{') {
            tried.insert(0, "tokenizer.json (does not start with `{`)".to_string());
        }
        for f in order {
            match Self::load_as(data, f) {
                Ok(t) => return Ok(t),
                // A JSON document is definitely meant as tokenizer.json:
                // report its real error.
                Err(e) if f == Format::HuggingFace => return Err(e),
                Err(e) => tried.push(format!("{} ({e})", f.name())),
            }
        }
        Err(Error::UnknownFormat {
            tried: tried.join("; "),
        })
    }

    fn load_as(data: &[u8], f: Format) -> Result<Self> {
        Ok(match f {
            Format::HuggingFace => HfTokenizer::from_bytes(data)?.into(),
            Format::Tiktoken => TiktokenTokenizer::from_bytes_llama3(data)?.into(),
            Format::SentencePiece => SentencePieceTokenizer::from_bytes(data)?.into(),
            Format::Llama2c => Llama2cTokenizer::from_bytes(data)?.into(),
        })
    }

    /// The underlying `tokenizer.json` tokenizer, if that is the format.
    pub fn as_hf(&self) -> Option<&HfTokenizer> {
        match &self.inner {
            Inner::Hf(t) => Some(t),
            _ => None,
        }
    }

    /// The underlying SentencePiece tokenizer, if that is the format.
    pub fn as_sentencepiece(&self) -> Option<&SentencePieceTokenizer> {
        match &self.inner {
            Inner::SentencePiece(t) => Some(t),
            _ => None,
        }
    }

    /// The detected format.
    pub fn format(&self) -> Format {
        match &self.inner {
            Inner::Hf(_) => Format::HuggingFace,
            Inner::Tiktoken(_) => Format::Tiktoken,
            Inner::SentencePiece(_) => Format::SentencePiece,
            Inner::Llama2c(_) => Format::Llama2c,
        }
    }

    /// Encodes text, optionally with BOS; special tokens in the text are
    /// recognised (see [`EncodeOptions`]).
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        self.encode_with(
            text,
            &EncodeOptions {
                add_bos,
                ..EncodeOptions::default()
            },
        )
    }

    /// Encodes text with explicit options.
    pub fn encode_with(&self, text: &str, opts: &EncodeOptions) -> Result<Vec<u32>> {
        let mut ids = match &self.inner {
            Inner::Hf(t) => {
                let via_post = opts.add_bos && t.post_adds_bos();
                let mut ids = t.encode_with(text, via_post, opts.parse_special)?;
                if opts.add_bos && !via_post {
                    if let Some(b) = t.bos_id() {
                        ids.insert(0, b);
                    }
                }
                ids
            }
            Inner::Tiktoken(t) => {
                let mut ids = t.encode(text, opts.parse_special)?;
                if opts.add_bos {
                    ids.insert(0, t.bos_id());
                }
                ids
            }
            Inner::SentencePiece(t) => {
                let mut ids = t.encode(text)?;
                if opts.add_bos {
                    if let Some(b) = t.bos_id() {
                        ids.insert(0, b);
                    }
                }
                ids
            }
            Inner::Llama2c(t) => t.encode(text, opts.add_bos, false)?,
        };
        if opts.add_eos {
            if let Some(&e) = self.eos_ids().first() {
                ids.push(e);
            }
        }
        Ok(ids)
    }

    /// Decodes ids to text, keeping special tokens' text where the format's
    /// reference does (HF, tiktoken); SentencePiece and llama2.c render
    /// control tokens as nothing.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_with(ids, false)
    }

    /// Decodes ids, optionally dropping special tokens.
    pub fn decode_with(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        match &self.inner {
            Inner::Hf(t) => t.decode(ids, skip_special),
            Inner::Tiktoken(t) => t.decode(ids, skip_special),
            Inner::SentencePiece(t) => t.decode(ids),
            Inner::Llama2c(t) => t.decode(ids),
        }
    }

    /// Raw bytes of `tok` when it follows `prev` (ExecuTorch's
    /// `decode(prev, tok)`): position-dependent rules such as dropping the
    /// leading space of the first word after BOS apply when `prev` is a
    /// special/control token. The bytes may be an incomplete UTF-8 sequence;
    /// use [`StreamDecoder`] to get text.
    pub fn decode_token(&self, prev: u32, tok: u32) -> Result<Vec<u8>> {
        self.token_bytes(Some(prev), tok)
    }

    fn token_bytes(&self, prev: Option<u32>, tok: u32) -> Result<Vec<u8>> {
        let first = prev.is_none_or(|p| self.is_special(p));
        match &self.inner {
            Inner::Hf(t) => t.token_bytes(tok, first),
            Inner::Tiktoken(t) => t.token_bytes(tok),
            Inner::SentencePiece(t) => t.token_bytes(tok, first),
            Inner::Llama2c(t) => t.token_bytes(prev, tok),
        }
    }

    /// A decoder for generated tokens that yields only complete UTF-8.
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder {
            tok: self,
            prev: None,
            pending: Vec::new(),
            at_start: true,
        }
    }

    /// Number of token ids (largest id + 1).
    pub fn vocab_size(&self) -> usize {
        match &self.inner {
            Inner::Hf(t) => t.vocab_size(),
            Inner::Tiktoken(t) => t.vocab_size(),
            Inner::SentencePiece(t) => t.vocab_size(),
            Inner::Llama2c(t) => t.vocab_size(),
        }
    }

    /// The beginning-of-sequence id, if the tokenizer has one.
    pub fn bos_id(&self) -> Option<u32> {
        match &self.inner {
            Inner::Hf(t) => t.bos_id(),
            Inner::Tiktoken(t) => Some(t.bos_id()),
            Inner::SentencePiece(t) => t.bos_id(),
            Inner::Llama2c(t) => Some(t.bos_id()),
        }
    }

    /// End-of-sequence ids (generation stops on any of them). For
    /// `tokenizer.json` these are found by well-known names.
    pub fn eos_ids(&self) -> Vec<u32> {
        match &self.inner {
            Inner::Hf(t) => t.eos_ids().to_vec(),
            Inner::Tiktoken(t) => t.eos_ids().to_vec(),
            Inner::SentencePiece(t) => t.eos_id().into_iter().collect(),
            Inner::Llama2c(t) => vec![t.eos_id()],
        }
    }

    /// Id of an exact vocabulary entry (raw piece, e.g. `▁hello`).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Hf(t) => t.token_to_id(token),
            Inner::Tiktoken(t) => t.token_to_id(token),
            Inner::SentencePiece(t) => t.token_to_id(token),
            Inner::Llama2c(t) => t.token_to_id(token),
        }
    }

    /// Raw vocabulary entry of an id (tiktoken/llama2.c bytes are decoded
    /// lossily).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        match &self.inner {
            Inner::Hf(t) => t.id_to_token(id),
            Inner::Tiktoken(t) => t.id_to_token(id),
            Inner::SentencePiece(t) => t.id_to_token(id),
            Inner::Llama2c(t) => t.id_to_token(id),
        }
    }

    /// Whether `id` is a special/control token.
    pub fn is_special(&self, id: u32) -> bool {
        match &self.inner {
            Inner::Hf(t) => t.is_special(id),
            Inner::Tiktoken(t) => t.is_special(id),
            Inner::SentencePiece(t) => t.is_control(id),
            Inner::Llama2c(t) => t.is_control(id),
        }
    }
}

/// Incremental decoder: feed generated ids one at a time and get back only
/// complete UTF-8 text; partial multi-byte sequences are buffered across
/// tokens.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tok: &'a Tokenizer,
    prev: Option<u32>,
    pending: Vec<u8>,
    /// SentencePiece: still expecting the dummy-prefix whitespace.
    at_start: bool,
}

impl StreamDecoder<'_> {
    /// Sets the token that precedes the first pushed one (typically the
    /// prompt's last token, or BOS).
    pub fn set_prev(&mut self, prev: Option<u32>) {
        self.prev = prev;
        self.at_start = prev.is_none_or(|p| self.tok.is_special(p));
    }

    /// Adds one token; returns the text that became complete (maybe empty).
    /// Invalid byte sequences are replaced by U+FFFD.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let bytes = match &self.tok.inner {
            Inner::SentencePiece(t) => t.stream_bytes(id, &mut self.at_start)?,
            _ => self.tok.token_bytes(self.prev, id)?,
        };
        self.prev = Some(id);
        self.pending.extend_from_slice(&bytes);
        Ok(util::take_complete_utf8(&mut self.pending))
    }

    /// Flushes buffered bytes (an incomplete sequence becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Bytes currently buffered waiting for the rest of a UTF-8 sequence.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }
}
