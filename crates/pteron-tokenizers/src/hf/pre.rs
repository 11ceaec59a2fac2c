//! `pre_tokenizer` section of tokenizer.json.

use std::sync::OnceLock;

use serde_json::Value;

use super::json::{arr, bool_or, char_field, get, obj, opt_str, type_of, FORMAT};
use super::split::{char_matches, compile, split_ranges, Behavior, Pattern};
use crate::error::{Error, Result};
use crate::util::byte_to_char;

/// GPT-2 pre-tokenization regex used by the ByteLevel pre-tokenizer.
pub(crate) const GPT2_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// A piece of text flowing through the pre-tokenizers. `first` is true when
/// the piece starts at offset 0 of the original input (HF's
/// `offsets_original().0 == 0`).
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    pub text: String,
    pub first: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PrependScheme {
    Always,
    First,
    Never,
}

impl PrependScheme {
    pub(crate) fn from_json(m: &serde_json::Map<String, Value>, what: &str) -> Result<Self> {
        match opt_str(m, "prepend_scheme", what)? {
            Some("always") => Ok(PrependScheme::Always),
            Some("first") => Ok(PrependScheme::First),
            Some("never") => Ok(PrependScheme::Never),
            Some(other) => Err(Error::malformed(
                FORMAT,
                format!("{what}: unknown prepend_scheme {other:?}"),
            )),
            None => Ok(if bool_or(m, "add_prefix_space", true, what)? {
                PrependScheme::Always
            } else {
                PrependScheme::Never
            }),
        }
    }
}

#[derive(Debug)]
pub(crate) enum PreTokenizer {
    Sequence(Vec<PreTokenizer>),
    ByteLevel {
        add_prefix_space: bool,
        regex: Option<Box<fancy_regex::Regex>>,
    },
    Split {
        pattern: Pattern,
        behavior: Behavior,
        invert: bool,
    },
    Metaspace {
        replacement: char,
        scheme: PrependScheme,
        split: bool,
    },
    Digits {
        individual: bool,
    },
    Whitespace,
    WhitespaceSplit,
    Punctuation(Behavior),
    Bert,
    CharDelimiter(char),
}

/// Punctuation as HF `tokenizers` sees it: ASCII punctuation or Unicode
/// category P*. HF's tables (`unicode_categories`) are at Unicode 9.0, so
/// BMP punctuation assigned later is excluded here too.
pub(crate) fn is_punctuation(c: char) -> bool {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    if c.is_ascii_punctuation() {
        return true;
    }
    if c.is_ascii() {
        return false;
    }
    const POST_UNICODE_9: &[(char, char)] = &[
        ('\u{0C77}', '\u{0C77}'),
        ('\u{0C84}', '\u{0C84}'),
        ('\u{1B4E}', '\u{1B4F}'),
        ('\u{1B7D}', '\u{1B7F}'),
        ('\u{2E45}', '\u{2E5D}'),
    ];
    if POST_UNICODE_9.iter().any(|&(a, b)| (a..=b).contains(&c)) {
        return false;
    }
    let re = RE.get_or_init(|| regex::Regex::new(r"^\p{P}$").ok());
    let mut buf = [0u8; 4];
    re.as_ref()
        .is_some_and(|re| re.is_match(c.encode_utf8(&mut buf)))
}

fn whitespace_regex() -> Option<&'static regex::Regex> {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| regex::Regex::new(r"\w+|[^\w\s]+").ok())
        .as_ref()
}

impl PreTokenizer {
    pub(crate) fn from_json(v: &Value) -> Result<Self> {
        let m = obj(v, "pre_tokenizer")?;
        let ty = type_of(m, "pre_tokenizer")?;
        Ok(match ty {
            "Sequence" => PreTokenizer::Sequence(
                arr(
                    get(m, "pretokenizers", "Sequence pre_tokenizer")?,
                    "pretokenizers",
                )?
                .iter()
                .map(PreTokenizer::from_json)
                .collect::<Result<_>>()?,
            ),
            "ByteLevel" => PreTokenizer::ByteLevel {
                add_prefix_space: bool_or(m, "add_prefix_space", true, "ByteLevel pre_tokenizer")?,
                regex: if bool_or(m, "use_regex", true, "ByteLevel pre_tokenizer")? {
                    Some(Box::new(compile(GPT2_PATTERN)?))
                } else {
                    None
                },
            },
            "Split" => PreTokenizer::Split {
                pattern: Pattern::from_json(
                    get(m, "pattern", "Split pre_tokenizer")?,
                    "Split pre_tokenizer",
                )?,
                behavior: Behavior::parse(opt_str(m, "behavior", "Split")?.unwrap_or("Isolated"))?,
                invert: bool_or(m, "invert", false, "Split pre_tokenizer")?,
            },
            "Metaspace" => PreTokenizer::Metaspace {
                replacement: char_field(m, "replacement", '\u{2581}', "Metaspace pre_tokenizer")?,
                scheme: PrependScheme::from_json(m, "Metaspace pre_tokenizer")?,
                split: bool_or(m, "split", true, "Metaspace pre_tokenizer")?,
            },
            "Digits" => PreTokenizer::Digits {
                individual: bool_or(m, "individual_digits", false, "Digits pre_tokenizer")?,
            },
            "Whitespace" => PreTokenizer::Whitespace,
            "WhitespaceSplit" => PreTokenizer::WhitespaceSplit,
            "Punctuation" => PreTokenizer::Punctuation(Behavior::parse(
                opt_str(m, "behavior", "Punctuation")?.unwrap_or("Isolated"),
            )?),
            "BertPreTokenizer" => PreTokenizer::Bert,
            "CharDelimiterSplit" => {
                PreTokenizer::CharDelimiter(char_field(m, "delimiter", ' ', "CharDelimiterSplit")?)
            }
            other => return Err(Error::unsupported(FORMAT, format!("pre_tokenizer {other}"))),
        })
    }

    pub(crate) fn run(&self, pieces: Vec<Piece>) -> Result<Vec<Piece>> {
        match self {
            PreTokenizer::Sequence(v) => {
                let mut cur = pieces;
                for p in v {
                    cur = p.run(cur)?;
                }
                Ok(cur)
            }
            _ => {
                let mut out = Vec::with_capacity(pieces.len());
                for p in pieces {
                    self.split_one(p, &mut out)?;
                }
                Ok(out)
            }
        }
    }

    fn split_one(&self, piece: Piece, out: &mut Vec<Piece>) -> Result<()> {
        let push_ranges =
            |text: &str, first: bool, ranges: Vec<(usize, usize)>, out: &mut Vec<Piece>| {
                for (s, e) in ranges {
                    out.push(Piece {
                        text: text[s..e].to_string(),
                        first: first && s == 0,
                    });
                }
            };
        match self {
            PreTokenizer::Sequence(_) => unreachable!("handled in run"),
            PreTokenizer::ByteLevel {
                add_prefix_space,
                regex,
            } => {
                let mut text = piece.text;
                if *add_prefix_space && !text.starts_with(' ') {
                    text.insert(0, ' ');
                }
                let ranges = match regex {
                    Some(re) => {
                        let mut ms = Vec::new();
                        for m in re.find_iter(&text) {
                            let m = m.map_err(|e| Error::regex(GPT2_PATTERN, e))?;
                            ms.push((m.start(), m.end()));
                        }
                        split_ranges(text.len(), &ms, Behavior::Isolated, false)
                    }
                    None if text.is_empty() => Vec::new(),
                    None => vec![(0, text.len())],
                };
                let table = byte_to_char();
                for (s, e) in ranges {
                    out.push(Piece {
                        text: text[s..e].bytes().map(|b| table[b as usize]).collect(),
                        first: piece.first && s == 0,
                    });
                }
            }
            PreTokenizer::Split {
                pattern,
                behavior,
                invert,
            } => {
                let ms = pattern.find(&piece.text)?;
                let r = split_ranges(piece.text.len(), &ms, *behavior, *invert);
                push_ranges(&piece.text, piece.first, r, out);
            }
            PreTokenizer::Metaspace {
                replacement,
                scheme,
                split,
            } => {
                let rep = replacement.to_string();
                let mut text = piece.text.replace(' ', &rep);
                let prepend = match scheme {
                    PrependScheme::Always => true,
                    PrependScheme::First => piece.first,
                    PrependScheme::Never => false,
                };
                if prepend && !text.starts_with(*replacement) {
                    text.insert(0, *replacement);
                }
                if *split {
                    let ms = char_matches(&text, |c| c == *replacement);
                    let r = split_ranges(text.len(), &ms, Behavior::MergedWithNext, false);
                    push_ranges(&text, piece.first, r, out);
                } else if !text.is_empty() {
                    out.push(Piece {
                        text,
                        first: piece.first,
                    });
                }
            }
            PreTokenizer::Digits { individual } => {
                let ms = char_matches(&piece.text, char::is_numeric);
                let b = if *individual {
                    Behavior::Isolated
                } else {
                    Behavior::Contiguous
                };
                let r = split_ranges(piece.text.len(), &ms, b, false);
                push_ranges(&piece.text, piece.first, r, out);
            }
            PreTokenizer::Whitespace => {
                let re = whitespace_regex()
                    .ok_or_else(|| Error::regex(r"\w+|[^\w\s]+", "failed to compile"))?;
                let ms: Vec<_> = re
                    .find_iter(&piece.text)
                    .map(|m| (m.start(), m.end()))
                    .collect();
                let r = split_ranges(piece.text.len(), &ms, Behavior::Removed, true);
                push_ranges(&piece.text, piece.first, r, out);
            }
            PreTokenizer::WhitespaceSplit => {
                let ms = char_matches(&piece.text, char::is_whitespace);
                let r = split_ranges(piece.text.len(), &ms, Behavior::Removed, false);
                push_ranges(&piece.text, piece.first, r, out);
            }
            PreTokenizer::Punctuation(b) => {
                let ms = char_matches(&piece.text, is_punctuation);
                let r = split_ranges(piece.text.len(), &ms, *b, false);
                push_ranges(&piece.text, piece.first, r, out);
            }
            PreTokenizer::Bert => {
                let mut tmp = Vec::new();
                PreTokenizer::WhitespaceSplit.split_one(piece, &mut tmp)?;
                for p in tmp {
                    PreTokenizer::Punctuation(Behavior::Isolated).split_one(p, out)?;
                }
            }
            PreTokenizer::CharDelimiter(d) => {
                let ms = char_matches(&piece.text, |c| c == *d);
                let r = split_ranges(piece.text.len(), &ms, Behavior::Removed, false);
                push_ranges(&piece.text, piece.first, r, out);
            }
        }
        Ok(())
    }
}
