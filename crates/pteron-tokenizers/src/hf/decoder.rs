//! `decoder` section of tokenizer.json.

use serde_json::Value;

use super::json::{arr, char_field, get, obj, str_field, type_of, usize_or, FORMAT};
use super::pre::PrependScheme;
use super::split::Pattern;
use crate::error::{Error, Result};
use crate::util::{char_to_byte, parse_byte_piece};

#[derive(Debug)]
pub(crate) enum Decoder {
    Sequence(Vec<Decoder>),
    ByteLevel,
    Metaspace {
        replacement: char,
        scheme: PrependScheme,
    },
    ByteFallback,
    Fuse,
    Strip {
        content: char,
        start: usize,
        stop: usize,
    },
    Replace {
        pattern: Pattern,
        content: String,
    },
    WordPiece {
        prefix: String,
        cleanup: bool,
    },
    BpeSuffix {
        suffix: String,
    },
}

fn wordpiece_cleanup(s: &str) -> String {
    s.replace(" .", ".")
        .replace(" ?", "?")
        .replace(" !", "!")
        .replace(" ,", ",")
        .replace(" ' ", "'")
        .replace(" n't", "n't")
        .replace(" 'm", "'m")
        .replace(" do not", " don't")
        .replace(" 's", "'s")
        .replace(" 've", "'ve")
        .replace(" 're", "'re")
}

/// Bytes of a byte-level token string (chars outside the byte alphabet are
/// kept as their UTF-8 encoding, like HF).
pub(crate) fn byte_level_bytes(token: &str) -> Vec<u8> {
    let map = char_to_byte();
    let mapped: Option<Vec<u8>> = token.chars().map(|c| map.get(&c).copied()).collect();
    mapped.unwrap_or_else(|| token.as_bytes().to_vec())
}

impl Decoder {
    pub(crate) fn from_json(v: &Value) -> Result<Self> {
        let m = obj(v, "decoder")?;
        let ty = type_of(m, "decoder")?;
        Ok(match ty {
            "Sequence" => Decoder::Sequence(
                arr(get(m, "decoders", "Sequence decoder")?, "decoders")?
                    .iter()
                    .map(Decoder::from_json)
                    .collect::<Result<_>>()?,
            ),
            "ByteLevel" => Decoder::ByteLevel,
            "Metaspace" => Decoder::Metaspace {
                replacement: char_field(m, "replacement", '\u{2581}', "Metaspace decoder")?,
                scheme: PrependScheme::from_json(m, "Metaspace decoder")?,
            },
            "ByteFallback" => Decoder::ByteFallback,
            "Fuse" => Decoder::Fuse,
            "Strip" => Decoder::Strip {
                content: char_field(m, "content", ' ', "Strip decoder")?,
                start: usize_or(m, "start", 0, "Strip decoder")?,
                stop: usize_or(m, "stop", 0, "Strip decoder")?,
            },
            "Replace" => Decoder::Replace {
                pattern: Pattern::from_json(
                    get(m, "pattern", "Replace decoder")?,
                    "Replace decoder",
                )?,
                content: str_field(m, "content", "Replace decoder")?.to_string(),
            },
            "WordPiece" => Decoder::WordPiece {
                prefix: super::json::opt_str(m, "prefix", "WordPiece decoder")?
                    .unwrap_or("##")
                    .to_string(),
                cleanup: super::json::bool_or(m, "cleanup", true, "WordPiece decoder")?,
            },
            "BPEDecoder" => Decoder::BpeSuffix {
                suffix: super::json::opt_str(m, "suffix", "BPEDecoder")?
                    .unwrap_or("</w>")
                    .to_string(),
            },
            other => return Err(Error::unsupported(FORMAT, format!("decoder {other}"))),
        })
    }

    /// HF `decode_chain`: transforms the list of token strings.
    pub(crate) fn decode_chain(&self, tokens: Vec<String>) -> Result<Vec<String>> {
        Ok(match self {
            Decoder::Sequence(v) => {
                let mut cur = tokens;
                for d in v {
                    cur = d.decode_chain(cur)?;
                }
                cur
            }
            Decoder::ByteLevel => {
                let bytes: Vec<u8> = tokens.iter().flat_map(|t| byte_level_bytes(t)).collect();
                vec![String::from_utf8_lossy(&bytes).into_owned()]
            }
            Decoder::Metaspace {
                replacement,
                scheme,
            } => tokens
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t.chars()
                        .filter_map(|c| {
                            if c == *replacement {
                                if i == 0 && *scheme != PrependScheme::Never {
                                    None
                                } else {
                                    Some(' ')
                                }
                            } else {
                                Some(c)
                            }
                        })
                        .collect()
                })
                .collect(),
            Decoder::ByteFallback => {
                let mut out = Vec::with_capacity(tokens.len());
                let mut pending: Vec<u8> = Vec::new();
                let flush = |pending: &mut Vec<u8>, out: &mut Vec<String>| {
                    if pending.is_empty() {
                        return;
                    }
                    match String::from_utf8(std::mem::take(pending)) {
                        Ok(s) => out.push(s),
                        Err(e) => {
                            for _ in 0..e.as_bytes().len() {
                                out.push("\u{FFFD}".to_string());
                            }
                        }
                    }
                };
                for t in tokens {
                    if let Some(b) = parse_byte_piece(&t) {
                        pending.push(b);
                    } else {
                        flush(&mut pending, &mut out);
                        out.push(t);
                    }
                }
                flush(&mut pending, &mut out);
                out
            }
            Decoder::Fuse => vec![tokens.concat()],
            Decoder::Strip {
                content,
                start,
                stop,
            } => tokens
                .into_iter()
                .map(|t| {
                    let chars: Vec<char> = t.chars().collect();
                    let mut s = 0;
                    while s < *start && s < chars.len() && chars[s] == *content {
                        s += 1;
                    }
                    let mut e = chars.len();
                    let mut k = 0;
                    while k < *stop && e > s && chars[e - 1] == *content {
                        e -= 1;
                        k += 1;
                    }
                    chars[s..e].iter().collect()
                })
                .collect(),
            Decoder::Replace { pattern, content } => tokens
                .iter()
                .map(|t| pattern.replace_all(t, content))
                .collect::<Result<_>>()?,
            Decoder::WordPiece { prefix, cleanup } => tokens
                .into_iter()
                .enumerate()
                .map(|(i, t)| {
                    let mut t = if i != 0 {
                        if let Some(rest) = t.strip_prefix(prefix.as_str()) {
                            rest.to_string()
                        } else {
                            format!(" {t}")
                        }
                    } else {
                        t
                    };
                    if *cleanup {
                        t = wordpiece_cleanup(&t);
                    }
                    t
                })
                .collect(),
            Decoder::BpeSuffix { suffix } => {
                let n = tokens.len();
                tokens
                    .into_iter()
                    .enumerate()
                    .map(|(i, t)| t.replace(suffix.as_str(), if i + 1 == n { "" } else { " " }))
                    .collect()
            }
        })
    }

    /// Raw bytes for one token during streaming. `first` is true for the
    /// first token of the output (position-dependent rules apply).
    pub(crate) fn token_bytes(&self, token: &str, first: bool) -> Result<Vec<u8>> {
        // Work on bytes; string-level steps apply when the bytes are UTF-8.
        let mut cur: Vec<u8> = token.as_bytes().to_vec();
        self.apply_bytes(&mut cur, first)?;
        Ok(cur)
    }

    fn apply_bytes(&self, cur: &mut Vec<u8>, first: bool) -> Result<()> {
        let as_str = |b: &Vec<u8>| String::from_utf8(b.clone()).ok();
        match self {
            Decoder::Sequence(v) => {
                for d in v {
                    d.apply_bytes(cur, first)?;
                }
            }
            Decoder::ByteLevel => {
                if let Some(s) = as_str(cur) {
                    *cur = byte_level_bytes(&s);
                }
            }
            Decoder::Metaspace {
                replacement,
                scheme,
            } => {
                if let Some(s) = as_str(cur) {
                    let mut t: String = s
                        .chars()
                        .map(|c| if c == *replacement { ' ' } else { c })
                        .collect();
                    if first && *scheme != PrependScheme::Never && s.starts_with(*replacement) {
                        t.remove(0);
                    }
                    *cur = t.into_bytes();
                }
            }
            Decoder::ByteFallback => {
                if let Some(b) = as_str(cur).as_deref().and_then(parse_byte_piece) {
                    *cur = vec![b];
                }
            }
            Decoder::Fuse => {}
            Decoder::Strip { content, start, .. } => {
                if first {
                    if let Some(s) = as_str(cur) {
                        let mut it = s.as_str();
                        let mut k = 0;
                        while k < *start {
                            match it.strip_prefix(*content) {
                                Some(rest) => it = rest,
                                None => break,
                            }
                            k += 1;
                        }
                        *cur = it.as_bytes().to_vec();
                    }
                }
            }
            Decoder::Replace { pattern, content } => {
                if let Some(s) = as_str(cur) {
                    *cur = pattern.replace_all(&s, content)?.into_bytes();
                }
            }
            Decoder::WordPiece { prefix, .. } => {
                if let Some(s) = as_str(cur) {
                    let t = if first {
                        s
                    } else if let Some(rest) = s.strip_prefix(prefix.as_str()) {
                        rest.to_string()
                    } else {
                        format!(" {s}")
                    };
                    *cur = t.into_bytes();
                }
            }
            Decoder::BpeSuffix { suffix } => {
                if let Some(s) = as_str(cur) {
                    *cur = s.replace(suffix.as_str(), " ").into_bytes();
                }
            }
        }
        Ok(())
    }
}
