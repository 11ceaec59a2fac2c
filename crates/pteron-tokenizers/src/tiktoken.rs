//! tiktoken BPE files (`base64(token) rank` per line) with the Llama 3
//! special-token layout and pre-tokenization regex, as used by ExecuTorch's
//! `pytorch-tokenizers` `TiktokenTokenizer`.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

use crate::error::{Error, Result};
use crate::util::tiktoken_merge;

const FORMAT: &str = "tiktoken";

/// The Llama 3 pre-tokenization regex (`CL100K_PAT_STR` in pytorch-tokenizers).
pub const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Number of special tokens appended after the base vocabulary.
pub const LLAMA3_NUM_SPECIAL_TOKENS: usize = 256;

/// The Llama 3 special tokens, in id order (`base + index`).
pub fn llama3_special_tokens() -> Vec<String> {
    let basic = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|finetune_right_pad_id|>",
        "<|step_id|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|eom_id|>",
        "<|eot_id|>",
        "<|python_tag|>",
        "<|image|>",
    ];
    let mut out: Vec<String> = basic.iter().map(|s| s.to_string()).collect();
    let reserved = LLAMA3_NUM_SPECIAL_TOKENS - basic.len();
    out.extend((0..reserved).map(|i| format!("<|reserved_special_token_{}|>", i + 2)));
    out
}

/// Parses the lines of a tiktoken file into `(token bytes, rank)` pairs.
pub(crate) fn parse_ranks(data: &[u8]) -> Result<Vec<(Vec<u8>, u32)>> {
    let text = std::str::from_utf8(data)
        .map_err(|_| Error::malformed(FORMAT, "file is not valid UTF-8 text"))?;
    let engine = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (lineno, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let (tok, rank) = line.split_once(' ').ok_or_else(|| {
            Error::malformed(
                FORMAT,
                format!("line {}: expected `base64 rank`", lineno + 1),
            )
        })?;
        let bytes = engine.decode(tok).map_err(|e| {
            Error::malformed(FORMAT, format!("line {}: bad base64: {e}", lineno + 1))
        })?;
        let rank: u32 = rank.trim().parse().map_err(|_| {
            Error::malformed(FORMAT, format!("line {}: bad rank {rank:?}", lineno + 1))
        })?;
        out.push((bytes, rank));
    }
    if out.is_empty() {
        return Err(Error::malformed(FORMAT, "no tokens"));
    }
    Ok(out)
}

/// A tiktoken tokenizer.
#[derive(Debug)]
pub struct TiktokenTokenizer {
    encoder: HashMap<Vec<u8>, u32>,
    decoder: HashMap<u32, Vec<u8>>,
    special: HashMap<String, u32>,
    special_decoder: HashMap<u32, String>,
    special_matcher: Option<AhoCorasick>,
    special_ids_by_pattern: Vec<u32>,
    regex: fancy_regex::Regex,
    pattern: String,
    vocab_size: usize,
    bos: u32,
    eos: Vec<u32>,
}

impl TiktokenTokenizer {
    /// Loads a tiktoken file with the Llama 3 regex and special tokens.
    pub fn from_bytes_llama3(data: &[u8]) -> Result<Self> {
        Self::from_bytes(data, LLAMA3_PATTERN, &llama3_special_tokens())
    }

    /// Loads a tiktoken file with a custom pattern and special tokens. The
    /// special tokens get ids `num_base_tokens + index`, where
    /// `num_base_tokens` is the number of lines in the file (as
    /// pytorch-tokenizers does). BOS is `<|begin_of_text|>` if present,
    /// otherwise the first special token.
    pub fn from_bytes(data: &[u8], pattern: &str, special_tokens: &[String]) -> Result<Self> {
        let ranks = parse_ranks(data)?;
        let mut encoder = HashMap::with_capacity(ranks.len());
        let mut decoder = HashMap::with_capacity(ranks.len());
        for (bytes, rank) in ranks {
            if decoder.insert(rank, bytes.clone()).is_some() {
                return Err(Error::malformed(FORMAT, format!("duplicate rank {rank}")));
            }
            if encoder.insert(bytes, rank).is_some() {
                return Err(Error::malformed(FORMAT, "duplicate token"));
            }
        }
        let base = u32::try_from(encoder.len())
            .map_err(|_| Error::malformed(FORMAT, "too many tokens"))?;
        let mut special = HashMap::new();
        let mut special_decoder = HashMap::new();
        for (i, name) in special_tokens.iter().enumerate() {
            let id = base + i as u32;
            special.insert(name.clone(), id);
            special_decoder.insert(id, name.clone());
        }
        let max_rank = decoder.keys().copied().max().unwrap_or(0);
        let vocab_size = (base as usize + special_tokens.len()).max(max_rank as usize + 1);
        let special_ids_by_pattern: Vec<u32> = special_tokens
            .iter()
            .map(|name| special[name.as_str()])
            .collect();
        let special_matcher = if special_tokens.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(special_tokens)
                    .map_err(|e| Error::malformed(FORMAT, e.to_string()))?,
            )
        };
        let regex = fancy_regex::Regex::new(pattern).map_err(|e| Error::regex(pattern, e))?;
        let bos = special
            .get("<|begin_of_text|>")
            .copied()
            .or_else(|| special_ids_by_pattern.first().copied())
            .unwrap_or(0);
        let eos = ["<|end_of_text|>", "<|eot_id|>", "<|eom_id|>"]
            .iter()
            .filter_map(|n| special.get(*n).copied())
            .collect();
        Ok(Self {
            encoder,
            decoder,
            special,
            special_decoder,
            special_matcher,
            special_ids_by_pattern,
            regex,
            pattern: pattern.to_string(),
            vocab_size,
            bos,
            eos,
        })
    }

    fn encode_ordinary(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        for m in self.regex.find_iter(text) {
            let m = m.map_err(|e| Error::regex(&self.pattern, e))?;
            let piece = m.as_str().as_bytes();
            if let Some(&r) = self.encoder.get(piece) {
                out.push(r);
                continue;
            }
            for r in tiktoken_merge(&self.encoder, piece) {
                if r == u32::MAX {
                    return Err(Error::Encode(
                        "tiktoken vocabulary cannot represent a byte sequence (missing single-byte tokens)"
                            .into(),
                    ));
                }
                out.push(r);
            }
        }
        Ok(())
    }

    /// Encodes text; special tokens in the text are recognised when
    /// `parse_special` is set (tiktoken's `allowed_special="all"`), otherwise
    /// they are encoded as ordinary text.
    pub fn encode(&self, text: &str, parse_special: bool) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        match (&self.special_matcher, parse_special) {
            (Some(m), true) => {
                let mut start = 0;
                for mat in m.find_iter(text) {
                    self.encode_ordinary(&text[start..mat.start()], &mut out)?;
                    out.push(self.special_ids_by_pattern[mat.pattern().as_usize()]);
                    start = mat.end();
                }
                self.encode_ordinary(&text[start..], &mut out)?;
            }
            _ => self.encode_ordinary(text, &mut out)?,
        }
        Ok(out)
    }

    /// Raw bytes of one token.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        if let Some(b) = self.decoder.get(&id) {
            Ok(b.clone())
        } else if let Some(s) = self.special_decoder.get(&id) {
            Ok(s.as_bytes().to_vec())
        } else {
            Err(Error::OutOfRange {
                id,
                vocab_size: self.vocab_size,
            })
        }
    }

    /// Decodes ids to text (invalid UTF-8 replaced by U+FFFD, like tiktoken's
    /// `errors="replace"`). Special tokens are skipped when `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::new();
        for &id in ids {
            if skip_special && self.special_decoder.contains_key(&id) {
                continue;
            }
            bytes.extend_from_slice(&self.token_bytes(id)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    pub(crate) fn bos_id(&self) -> u32 {
        self.bos
    }
    pub(crate) fn eos_ids(&self) -> &[u32] {
        &self.eos
    }
    pub(crate) fn token_to_id(&self, token: &str) -> Option<u32> {
        self.special
            .get(token)
            .copied()
            .or_else(|| self.encoder.get(token.as_bytes()).copied())
    }
    pub(crate) fn id_to_token(&self, id: u32) -> Option<String> {
        self.special_decoder.get(&id).cloned().or_else(|| {
            self.decoder
                .get(&id)
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
    }
    pub(crate) fn is_special(&self, id: u32) -> bool {
        self.special_decoder.contains_key(&id)
    }
}

/// Quick structural check used by format detection.
pub(crate) fn looks_like_tiktoken(data: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(data) else {
        return false;
    };
    let mut lines = text.lines().filter(|l| !l.is_empty()).peekable();
    if lines.peek().is_none() {
        return false;
    }
    lines.take(16).all(|l| {
        let l = l.trim_end_matches('\r');
        match l.split_once(' ') {
            Some((tok, rank)) => {
                !tok.is_empty()
                    && tok
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
                    && !rank.is_empty()
                    && rank.bytes().all(|b| b.is_ascii_digit())
            }
            None => false,
        }
    })
}
