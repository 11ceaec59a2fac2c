//! `normalizer` section of tokenizer.json.

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::json::{arr, bool_or, get, obj, str_field, type_of, FORMAT};
use super::split::Pattern;
use crate::error::{Error, Result};
use crate::util::byte_to_char;

#[derive(Debug)]
pub(crate) enum Normalizer {
    Sequence(Vec<Normalizer>),
    Nfc,
    Nfd,
    Nfkc,
    Nfkd,
    Lowercase,
    Strip { left: bool, right: bool },
    StripAccents,
    Prepend(String),
    Replace { pattern: Pattern, content: String },
    ByteLevel,
}

impl Normalizer {
    pub(crate) fn from_json(v: &Value) -> Result<Self> {
        let m = obj(v, "normalizer")?;
        let ty = type_of(m, "normalizer")?;
        Ok(match ty {
            "Sequence" => Normalizer::Sequence(
                arr(get(m, "normalizers", "Sequence normalizer")?, "normalizers")?
                    .iter()
                    .map(Normalizer::from_json)
                    .collect::<Result<_>>()?,
            ),
            "NFC" => Normalizer::Nfc,
            "NFD" => Normalizer::Nfd,
            "NFKC" => Normalizer::Nfkc,
            "NFKD" => Normalizer::Nfkd,
            "Lowercase" => Normalizer::Lowercase,
            "Strip" => Normalizer::Strip {
                left: bool_or(m, "strip_left", true, "Strip normalizer")?,
                right: bool_or(m, "strip_right", true, "Strip normalizer")?,
            },
            "StripAccents" => Normalizer::StripAccents,
            "Prepend" => {
                Normalizer::Prepend(str_field(m, "prepend", "Prepend normalizer")?.to_string())
            }
            "Replace" => Normalizer::Replace {
                pattern: Pattern::from_json(
                    get(m, "pattern", "Replace normalizer")?,
                    "Replace normalizer",
                )?,
                content: str_field(m, "content", "Replace normalizer")?.to_string(),
            },
            "ByteLevel" => Normalizer::ByteLevel,
            other => return Err(Error::unsupported(FORMAT, format!("normalizer {other}"))),
        })
    }

    pub(crate) fn normalize(&self, s: &str) -> Result<String> {
        Ok(match self {
            Normalizer::Sequence(v) => {
                let mut cur = s.to_string();
                for n in v {
                    cur = n.normalize(&cur)?;
                }
                cur
            }
            Normalizer::Nfc => s.nfc().collect(),
            Normalizer::Nfd => s.nfd().collect(),
            Normalizer::Nfkc => s.nfkc().collect(),
            Normalizer::Nfkd => s.nfkd().collect(),
            // char-wise lowercase (no final-sigma context rule), like HF
            Normalizer::Lowercase => s.chars().flat_map(char::to_lowercase).collect(),
            Normalizer::Strip { left, right } => {
                let mut t = s;
                if *left {
                    t = t.trim_start();
                }
                if *right {
                    t = t.trim_end();
                }
                t.to_string()
            }
            Normalizer::StripAccents => s
                .chars()
                .filter(|&c| !unicode_normalization::char::is_combining_mark(c))
                .collect(),
            Normalizer::Prepend(p) => {
                if s.is_empty() {
                    String::new()
                } else {
                    format!("{p}{s}")
                }
            }
            Normalizer::Replace { pattern, content } => pattern.replace_all(s, content)?,
            Normalizer::ByteLevel => {
                let table = byte_to_char();
                s.bytes().map(|b| table[b as usize]).collect()
            }
        })
    }
}
