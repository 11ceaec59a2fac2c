//! SentencePiece "precompiled charsmap" normalization rules: a darts-clone
//! double-array trie over UTF-8 input prefixes whose values point into a blob
//! of NUL-terminated replacement strings.

use crate::error::{Error, Result};

#[derive(Debug)]
pub(crate) struct CharsMap {
    units: Vec<u32>,
    normalized: Vec<u8>,
}

fn has_leaf(u: u32) -> bool {
    (u >> 8) & 1 == 1
}
fn value(u: u32) -> u32 {
    u & 0x7FFF_FFFF
}
fn label(u: u32) -> u32 {
    u & (0x8000_0000 | 0xFF)
}
fn offset(u: u32) -> u32 {
    (u >> 10) << ((u & (1 << 9)) >> 6)
}

impl CharsMap {
    pub(crate) fn parse(blob: &[u8], format: &'static str) -> Result<Self> {
        let bad = || Error::malformed(format, "corrupted precompiled charsmap");
        let head = blob.get(..4).ok_or_else(bad)?;
        let trie_len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let trie = blob
            .get(4..4usize.checked_add(trie_len).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        if trie.len() % 4 != 0 || trie.is_empty() {
            return Err(bad());
        }
        let units = trie
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(CharsMap {
            units,
            normalized: blob[4 + trie_len..].to_vec(),
        })
    }

    /// Longest rule matching a prefix of `key` (among the first 32 matches,
    /// like SentencePiece): `(prefix length, replacement bytes)`.
    pub(crate) fn longest_prefix(&self, key: &[u8]) -> Option<(usize, &[u8])> {
        let mut best: Option<(usize, u32)> = None;
        let mut found = 0;
        let mut pos = offset(*self.units.first()?) as usize;
        for (i, &b) in key.iter().enumerate() {
            pos ^= b as usize;
            let unit = *self.units.get(pos)?;
            if label(unit) != u32::from(b) {
                break;
            }
            pos ^= offset(unit) as usize;
            if has_leaf(unit) {
                if found < 32 {
                    let v = value(*self.units.get(pos)?);
                    if best.is_none_or(|(l, _)| i + 1 > l) {
                        best = Some((i + 1, v));
                    }
                }
                found += 1;
            }
        }
        let (len, v) = best?;
        let start = v as usize;
        let rest = self.normalized.get(start..)?;
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        Some((len, &rest[..end]))
    }
}
