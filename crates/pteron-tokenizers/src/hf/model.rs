//! `model` section of tokenizer.json: BPE, Unigram, WordPiece, WordLevel.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use serde_json::Value;

use super::json::{arr, bool_or, get, obj, opt, opt_str, type_of, u32_of, usize_or, FORMAT};
use crate::error::{Error, Result};
use crate::trie::Trie;
use crate::util::byte_piece;

#[derive(Debug)]
pub(crate) struct Bpe {
    pub vocab: HashMap<String, u32>,
    merges: HashMap<(u32, u32), (u32, u32)>,
    unk: Option<u32>,
    fuse_unk: bool,
    byte_fallback: bool,
    prefix: Option<String>,
    suffix: Option<String>,
    ignore_merges: bool,
}

#[derive(Debug)]
pub(crate) struct Unigram {
    pub pieces: Vec<(String, f64)>,
    pub vocab: HashMap<String, u32>,
    trie: Trie,
    unk: Option<u32>,
    byte_fallback: bool,
    min_score: f64,
}

#[derive(Debug)]
pub(crate) struct WordPiece {
    pub vocab: HashMap<String, u32>,
    unk: String,
    prefix: String,
    max_chars: usize,
}

#[derive(Debug)]
pub(crate) struct WordLevel {
    pub vocab: HashMap<String, u32>,
    unk: Option<String>,
}

#[derive(Debug)]
pub(crate) enum Model {
    Bpe(Bpe),
    Unigram(Unigram),
    WordPiece(WordPiece),
    WordLevel(WordLevel),
}

fn vocab_map(v: &Value, what: &str) -> Result<HashMap<String, u32>> {
    let m = obj(v, what)?;
    let mut out = HashMap::with_capacity(m.len());
    for (k, id) in m {
        out.insert(k.clone(), u32_of(id, what)?);
    }
    Ok(out)
}

impl Model {
    pub(crate) fn from_json(v: &Value) -> Result<Self> {
        let m = obj(v, "model")?;
        // Older files omit `type` for BPE.
        let ty = match opt_str(m, "type", "model")? {
            Some(t) => t,
            None if m.contains_key("merges") => "BPE",
            None => type_of(m, "model")?,
        };
        match ty {
            "BPE" => Ok(Model::Bpe(Bpe::from_json(m)?)),
            "Unigram" => Ok(Model::Unigram(Unigram::from_json(m)?)),
            "WordPiece" => Ok(Model::WordPiece(WordPiece {
                vocab: vocab_map(get(m, "vocab", "WordPiece")?, "WordPiece vocab")?,
                unk: opt_str(m, "unk_token", "WordPiece")?
                    .unwrap_or("[UNK]")
                    .to_string(),
                prefix: opt_str(m, "continuing_subword_prefix", "WordPiece")?
                    .unwrap_or("##")
                    .to_string(),
                max_chars: usize_or(m, "max_input_chars_per_word", 100, "WordPiece")?,
            })),
            "WordLevel" => Ok(Model::WordLevel(WordLevel {
                vocab: vocab_map(get(m, "vocab", "WordLevel")?, "WordLevel vocab")?,
                unk: opt_str(m, "unk_token", "WordLevel")?.map(str::to_string),
            })),
            other => Err(Error::unsupported(FORMAT, format!("model {other}"))),
        }
    }

    pub(crate) fn tokenize(&self, word: &str, out: &mut Vec<u32>) -> Result<()> {
        match self {
            Model::Bpe(b) => b.tokenize(word, out),
            Model::Unigram(u) => u.tokenize(word, out),
            Model::WordPiece(w) => w.tokenize(word, out),
            Model::WordLevel(w) => match w.vocab.get(word) {
                Some(&id) => {
                    out.push(id);
                    Ok(())
                }
                None => {
                    let unk = w.unk.as_ref().and_then(|u| w.vocab.get(u)).ok_or_else(|| {
                        Error::Encode(format!(
                            "WordLevel: {word:?} not in vocabulary and no unk token"
                        ))
                    })?;
                    out.push(*unk);
                    Ok(())
                }
            },
        }
    }

    /// `(token, id)` pairs of the model vocabulary.
    pub(crate) fn vocab_iter(&self) -> Box<dyn Iterator<Item = (&str, u32)> + '_> {
        match self {
            Model::Bpe(b) => Box::new(b.vocab.iter().map(|(k, &v)| (k.as_str(), v))),
            Model::Unigram(u) => Box::new(
                u.pieces
                    .iter()
                    .enumerate()
                    .map(|(i, (p, _))| (p.as_str(), i as u32)),
            ),
            Model::WordPiece(w) => Box::new(w.vocab.iter().map(|(k, &v)| (k.as_str(), v))),
            Model::WordLevel(w) => Box::new(w.vocab.iter().map(|(k, &v)| (k.as_str(), v))),
        }
    }
}

impl Bpe {
    fn from_json(m: &serde_json::Map<String, Value>) -> Result<Self> {
        let vocab = vocab_map(get(m, "vocab", "BPE model")?, "BPE vocab")?;
        let prefix = opt_str(m, "continuing_subword_prefix", "BPE")?.map(str::to_string);
        let suffix = opt_str(m, "end_of_word_suffix", "BPE")?.map(str::to_string);
        let prefix_len = prefix.as_ref().map_or(0, String::len);
        let mut merges = HashMap::new();
        let list = match opt(m, "merges") {
            Some(v) => arr(v, "BPE merges")?.as_slice(),
            None => &[],
        };
        for (rank, mv) in list.iter().enumerate() {
            let (a, b): (&str, &str) = if let Some(s) = mv.as_str() {
                s.split_once(' ')
                    .ok_or_else(|| Error::malformed(FORMAT, format!("merge {s:?} is not `a b`")))?
            } else {
                let pair = arr(mv, "BPE merge")?;
                match pair.as_slice() {
                    [Value::String(a), Value::String(b)] => (a.as_str(), b.as_str()),
                    _ => return Err(Error::malformed(FORMAT, "merge must be a pair of strings")),
                }
            };
            let missing =
                |t: &str| Error::malformed(FORMAT, format!("merge token {t:?} not in vocabulary"));
            let a_id = *vocab.get(a).ok_or_else(|| missing(a))?;
            let b_id = *vocab.get(b).ok_or_else(|| missing(b))?;
            let tail = b.get(prefix_len..).unwrap_or("");
            let new = format!("{a}{tail}");
            let new_id = *vocab.get(&new).ok_or_else(|| missing(&new))?;
            let rank =
                u32::try_from(rank).map_err(|_| Error::malformed(FORMAT, "too many merges"))?;
            merges.insert((a_id, b_id), (rank, new_id));
        }
        let unk = match opt_str(m, "unk_token", "BPE")? {
            Some(u) => Some(*vocab.get(u).ok_or_else(|| {
                Error::malformed(FORMAT, format!("unk_token {u:?} not in vocabulary"))
            })?),
            None => None,
        };
        Ok(Bpe {
            vocab,
            merges,
            unk,
            fuse_unk: bool_or(m, "fuse_unk", false, "BPE")?,
            byte_fallback: bool_or(m, "byte_fallback", false, "BPE")?,
            prefix,
            suffix,
            ignore_merges: bool_or(m, "ignore_merges", false, "BPE")?,
        })
    }

    fn tokenize(&self, word: &str, out: &mut Vec<u32>) -> Result<()> {
        if word.is_empty() {
            return Ok(());
        }
        if self.ignore_merges {
            if let Some(&id) = self.vocab.get(word) {
                out.push(id);
                return Ok(());
            }
        }
        // Initial symbols.
        let mut syms: Vec<u32> = Vec::with_capacity(word.len());
        let mut unk: Option<u32> = None;
        let mut it = word.char_indices().peekable();
        while let Some((i, c)) = it.next() {
            let is_first = i == 0;
            let is_last = it.peek().is_none();
            let mut s = String::new();
            if !is_first {
                if let Some(p) = &self.prefix {
                    s.push_str(p);
                }
            }
            s.push(c);
            if is_last {
                if let Some(x) = &self.suffix {
                    s.push_str(x);
                }
            }
            if let Some(&id) = self.vocab.get(&s) {
                if let Some(u) = unk.take() {
                    syms.push(u);
                }
                syms.push(id);
                continue;
            }
            if self.byte_fallback {
                let ids: Option<Vec<u32>> = s
                    .bytes()
                    .map(|b| self.vocab.get(&byte_piece(b)).copied())
                    .collect();
                if let Some(ids) = ids {
                    syms.extend(ids);
                    continue;
                }
            }
            if let Some(u) = self.unk {
                match unk {
                    Some(_) if self.fuse_unk => {}
                    Some(prev) => {
                        syms.push(prev);
                        unk = Some(u);
                    }
                    None => unk = Some(u),
                }
            }
        }
        if let Some(u) = unk {
            syms.push(u);
        }
        self.merge_all(&mut syms);
        out.extend_from_slice(&syms);
        Ok(())
    }

    /// Applies merges lowest-rank first (leftmost on ties), like HF's `Word::merge_all`.
    fn merge_all(&self, syms: &mut Vec<u32>) {
        let n = syms.len();
        if n < 2 {
            return;
        }
        let mut ids = syms.clone();
        let mut alive = vec![true; n];
        let mut prev: Vec<isize> = (0..n as isize).map(|i| i - 1).collect();
        let mut next: Vec<isize> = (0..n as isize)
            .map(|i| if i + 1 < n as isize { i + 1 } else { -1 })
            .collect();
        let mut heap = BinaryHeap::new();
        for i in 0..n - 1 {
            if let Some(&(rank, new_id)) = self.merges.get(&(ids[i], ids[i + 1])) {
                heap.push(Reverse((rank, i, new_id)));
            }
        }
        while let Some(Reverse((_rank, pos, new_id))) = heap.pop() {
            if !alive[pos] || next[pos] < 0 {
                continue;
            }
            let right = next[pos] as usize;
            match self.merges.get(&(ids[pos], ids[right])) {
                Some(&(_, nid)) if nid == new_id => {}
                _ => continue,
            }
            ids[pos] = new_id;
            alive[right] = false;
            next[pos] = next[right];
            if next[right] >= 0 {
                prev[next[right] as usize] = pos as isize;
            }
            if prev[pos] >= 0 {
                let p = prev[pos] as usize;
                if let Some(&(r, nid)) = self.merges.get(&(ids[p], ids[pos])) {
                    heap.push(Reverse((r, p, nid)));
                }
            }
            if next[pos] >= 0 {
                let nx = next[pos] as usize;
                if let Some(&(r, nid)) = self.merges.get(&(ids[pos], ids[nx])) {
                    heap.push(Reverse((r, pos, nid)));
                }
            }
        }
        syms.clear();
        syms.extend(
            ids.iter()
                .zip(alive.iter())
                .filter(|(_, &a)| a)
                .map(|(&id, _)| id),
        );
    }
}

impl Unigram {
    fn from_json(m: &serde_json::Map<String, Value>) -> Result<Self> {
        let list = arr(get(m, "vocab", "Unigram model")?, "Unigram vocab")?;
        let mut pieces = Vec::with_capacity(list.len());
        for e in list {
            let pair = arr(e, "Unigram vocab entry")?;
            match pair.as_slice() {
                [Value::String(p), s] => {
                    let score = s.as_f64().ok_or_else(|| {
                        Error::malformed(FORMAT, "Unigram score must be a number")
                    })?;
                    pieces.push((p.clone(), score));
                }
                _ => {
                    return Err(Error::malformed(
                        FORMAT,
                        "Unigram vocab entry must be [piece, score]",
                    ))
                }
            }
        }
        let unk = match opt(m, "unk_id") {
            Some(v) => {
                let id = u32_of(v, "Unigram unk_id")?;
                if id as usize >= pieces.len() {
                    return Err(Error::malformed(FORMAT, "Unigram unk_id out of range"));
                }
                Some(id)
            }
            None => None,
        };
        let mut trie = Trie::new();
        let mut vocab = HashMap::with_capacity(pieces.len());
        let mut min_score = f64::INFINITY;
        for (i, (p, s)) in pieces.iter().enumerate() {
            vocab.insert(p.clone(), i as u32);
            trie.insert(p.as_bytes(), i as u32);
            min_score = min_score.min(*s);
        }
        Ok(Unigram {
            pieces,
            vocab,
            trie,
            unk,
            byte_fallback: bool_or(m, "byte_fallback", false, "Unigram")?,
            min_score,
        })
    }

    fn tokenize(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        const UNK_PENALTY: f64 = 10.0;
        let unk_score = self.min_score - UNK_PENALTY;
        let bytes = text.as_bytes();
        let n = bytes.len();
        // (score, start, id); start == usize::MAX means unset
        let mut best: Vec<(f64, usize, u32)> = vec![(0.0, usize::MAX, 0); n + 1];
        let mut pos = 0;
        while pos < n {
            let here = best[pos].0;
            let mblen = text[pos..].chars().next().map_or(1, char::len_utf8);
            let mut has_single = false;
            self.trie.common_prefixes(&bytes[pos..], |len, id| {
                let cand = self.pieces[id as usize].1 + here;
                let t = &mut best[pos + len];
                if t.1 == usize::MAX || cand > t.0 {
                    *t = (cand, pos, id);
                }
                if len == mblen {
                    has_single = true;
                }
            });
            if !has_single {
                let unk = self.unk.ok_or_else(|| {
                    Error::Encode("Unigram: unknown character and no unk_id".into())
                })?;
                let cand = unk_score + here;
                let t = &mut best[pos + mblen];
                if t.1 == usize::MAX || cand > t.0 {
                    *t = (cand, pos, unk);
                }
            }
            pos += mblen;
        }
        // Backtrack, fusing consecutive unknowns into one string.
        let mut rev: Vec<(usize, usize, u32)> = Vec::new();
        let mut end = n;
        while end > 0 {
            let (_, start, id) = best[end];
            if start == usize::MAX {
                return Err(Error::Encode("Unigram lattice has no path".into()));
            }
            rev.push((start, end, id));
            end = start;
        }
        rev.reverse();
        // (start, end, id, is_unk); consecutive unknowns are fused
        let mut tokens: Vec<(usize, usize, u32, bool)> = Vec::new();
        for (s, e, id) in rev {
            let is_unk = Some(id) == self.unk;
            if is_unk {
                if let Some(last) = tokens.last_mut() {
                    if last.3 {
                        last.1 = e;
                        continue;
                    }
                }
            }
            tokens.push((s, e, id, is_unk));
        }
        for (s, e, id, is_unk) in tokens {
            let piece = &text[s..e];
            if !is_unk {
                out.push(self.vocab.get(piece).copied().unwrap_or(id));
                continue;
            }
            // Fused unknown string: HF looks it up as a token first.
            if let Some(&id) = self.vocab.get(piece) {
                out.push(id);
                continue;
            }
            if self.byte_fallback {
                let ids: Option<Vec<u32>> = piece
                    .bytes()
                    .map(|b| self.vocab.get(&byte_piece(b)).copied())
                    .collect();
                if let Some(ids) = ids {
                    out.extend(ids);
                    continue;
                }
            }
            out.push(
                self.unk
                    .ok_or_else(|| Error::Encode("Unigram: missing unk_id".into()))?,
            );
        }
        Ok(())
    }
}

impl WordPiece {
    fn tokenize(&self, word: &str, out: &mut Vec<u32>) -> Result<()> {
        let unk = || {
            self.vocab.get(&self.unk).copied().ok_or_else(|| {
                Error::Encode(format!(
                    "WordPiece unk token {:?} not in vocabulary",
                    self.unk
                ))
            })
        };
        if word.chars().count() > self.max_chars {
            out.push(unk()?);
            return Ok(());
        }
        let mut start = 0;
        let mut found = Vec::new();
        while start < word.len() {
            let mut end = word.len();
            let mut cur = None;
            while start < end {
                let sub = &word[start..end];
                let key = if start > 0 {
                    format!("{}{}", self.prefix, sub)
                } else {
                    sub.to_string()
                };
                if let Some(&id) = self.vocab.get(&key) {
                    cur = Some(id);
                    break;
                }
                end -= word[start..end]
                    .chars()
                    .next_back()
                    .map_or(1, char::len_utf8);
            }
            match cur {
                Some(id) => {
                    found.push(id);
                    start = end;
                }
                None => {
                    out.push(unk()?);
                    return Ok(());
                }
            }
        }
        out.extend(found);
        Ok(())
    }
}
