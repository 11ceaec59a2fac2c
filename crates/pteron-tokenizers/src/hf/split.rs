//! Pattern matching and split behaviours shared by normalizers and
//! pre-tokenizers (mirrors the semantics of HF `tokenizers`).

use serde_json::Value;

use super::json::{obj, FORMAT};
use crate::error::{Error, Result};

/// A `{"String": ..}` or `{"Regex": ..}` pattern.
#[derive(Debug)]
pub(crate) enum Pattern {
    Str(String),
    Regex(Box<fancy_regex::Regex>, String),
}

impl Pattern {
    pub(crate) fn from_json(v: &Value, what: &str) -> Result<Self> {
        if let Some(s) = v.as_str() {
            // Some older files give a bare string.
            return Ok(Pattern::Str(s.to_string()));
        }
        let m = obj(v, what)?;
        if let Some(s) = m.get("String").and_then(Value::as_str) {
            Ok(Pattern::Str(s.to_string()))
        } else if let Some(r) = m.get("Regex").and_then(Value::as_str) {
            Ok(Pattern::Regex(Box::new(compile(r)?), r.to_string()))
        } else {
            Err(Error::malformed(
                FORMAT,
                format!("{what}: pattern must be {{\"String\":..}} or {{\"Regex\":..}}"),
            ))
        }
    }

    /// Non-overlapping matches `(start, end)` in byte offsets.
    pub(crate) fn find(&self, text: &str) -> Result<Vec<(usize, usize)>> {
        match self {
            Pattern::Str(s) => {
                if s.is_empty() {
                    return Ok(Vec::new());
                }
                Ok(text
                    .match_indices(s.as_str())
                    .map(|(i, m)| (i, i + m.len()))
                    .collect())
            }
            Pattern::Regex(re, src) => {
                let mut out = Vec::new();
                for m in re.find_iter(text) {
                    let m = m.map_err(|e| Error::regex(src, e))?;
                    out.push((m.start(), m.end()));
                }
                Ok(out)
            }
        }
    }

    pub(crate) fn replace_all(&self, text: &str, content: &str) -> Result<String> {
        let ms = self.find(text)?;
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for (s, e) in ms {
            out.push_str(&text[last..s]);
            out.push_str(content);
            last = e;
        }
        out.push_str(&text[last..]);
        Ok(out)
    }
}

pub(crate) fn compile(pattern: &str) -> Result<fancy_regex::Regex> {
    fancy_regex::Regex::new(pattern).map_err(|e| Error::regex(pattern, e))
}

/// How matched delimiters are kept when splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

impl Behavior {
    pub(crate) fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "Removed" => Behavior::Removed,
            "Isolated" => Behavior::Isolated,
            "MergedWithPrevious" => Behavior::MergedWithPrevious,
            "MergedWithNext" => Behavior::MergedWithNext,
            "Contiguous" => Behavior::Contiguous,
            other => {
                return Err(Error::malformed(
                    FORMAT,
                    format!("unknown split behavior {other:?}"),
                ))
            }
        })
    }
}

/// Turns a list of matches into `(range, is_match)` covering the whole text.
pub(crate) fn with_gaps(len: usize, matches: &[(usize, usize)]) -> Vec<((usize, usize), bool)> {
    if len == 0 {
        return vec![((0, 0), false)];
    }
    let mut out = Vec::with_capacity(matches.len() * 2 + 1);
    let mut prev = 0;
    for &(s, e) in matches {
        if prev != s {
            out.push(((prev, s), false));
        }
        out.push(((s, e), true));
        prev = e;
    }
    if prev != len {
        out.push(((prev, len), false));
    }
    out
}

/// Matches of a character predicate: every matching char is its own match.
pub(crate) fn char_matches(text: &str, pred: impl Fn(char) -> bool) -> Vec<(usize, usize)> {
    text.char_indices()
        .filter(|&(_, c)| pred(c))
        .map(|(i, c)| (i, i + c.len_utf8()))
        .collect()
}

/// Applies a split behaviour; returns the byte ranges of the resulting
/// non-empty pieces.
pub(crate) fn split_ranges(
    len: usize,
    matches: &[(usize, usize)],
    behavior: Behavior,
    invert: bool,
) -> Vec<(usize, usize)> {
    let mut parts = with_gaps(len, matches);
    if invert {
        for p in parts.iter_mut() {
            p.1 = !p.1;
        }
    }
    let ranges: Vec<(usize, usize)> = match behavior {
        Behavior::Isolated => parts.into_iter().map(|(r, _)| r).collect(),
        Behavior::Removed => parts
            .into_iter()
            .filter(|(_, m)| !m)
            .map(|(r, _)| r)
            .collect(),
        Behavior::MergedWithPrevious => {
            let mut acc: Vec<(usize, usize)> = Vec::new();
            let mut prev_match = false;
            for (r, m) in parts {
                if m && !prev_match {
                    if let Some(last) = acc.last_mut() {
                        last.1 = r.1;
                    } else {
                        acc.push(r);
                    }
                } else {
                    acc.push(r);
                }
                prev_match = m;
            }
            acc
        }
        Behavior::MergedWithNext => {
            let mut acc: Vec<(usize, usize)> = Vec::new();
            let mut prev_match = false;
            parts.reverse();
            for (r, m) in parts {
                if m && !prev_match {
                    if let Some(last) = acc.last_mut() {
                        last.0 = r.0;
                    } else {
                        acc.push(r);
                    }
                } else {
                    acc.push(r);
                }
                prev_match = m;
            }
            acc.reverse();
            acc
        }
        Behavior::Contiguous => {
            let mut acc: Vec<(usize, usize)> = Vec::new();
            let mut prev_match = false;
            for (r, m) in parts {
                if m == prev_match {
                    if let Some(last) = acc.last_mut() {
                        last.1 = r.1;
                    } else {
                        acc.push(r);
                    }
                } else {
                    acc.push(r);
                }
                prev_match = m;
            }
            acc
        }
    };
    ranges.into_iter().filter(|(s, e)| e > s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaviors() {
        let text = "a-b--c";
        let m = char_matches(text, |c| c == '-');
        let pieces = |b, inv| {
            split_ranges(text.len(), &m, b, inv)
                .into_iter()
                .map(|(s, e)| &text[s..e])
                .collect::<Vec<_>>()
        };
        assert_eq!(pieces(Behavior::Removed, false), ["a", "b", "c"]);
        assert_eq!(
            pieces(Behavior::Isolated, false),
            ["a", "-", "b", "-", "-", "c"]
        );
        assert_eq!(
            pieces(Behavior::MergedWithPrevious, false),
            ["a-", "b-", "-", "c"]
        );
        assert_eq!(
            pieces(Behavior::MergedWithNext, false),
            ["a", "-b", "-", "-c"]
        );
        assert_eq!(
            pieces(Behavior::Contiguous, false),
            ["a", "-", "b", "--", "c"]
        );
        assert_eq!(pieces(Behavior::Removed, true), ["-", "-", "-"]);
    }
}
