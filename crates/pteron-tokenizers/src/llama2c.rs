//! llama2.c `tokenizer.bin` files.
//!
//! Two layouts are accepted:
//! * ExecuTorch export (`pytorch_tokenizers.Llama2cTokenizer.export`):
//!   `u32 vocab_size, u32 bos, u32 eos, u32 max_token_length`, then per token
//!   `f32 score, u32 len, len bytes`.
//! * original llama2.c: `i32 max_token_length`, then the same per-token
//!   records until the end of the file (BOS = 1, EOS = 2).
//!
//! Encoding follows llama2.c / ExecuTorch's `Llama2cTokenizer::encode`: a
//! dummy `" "` prefix token, one token per UTF-8 code point (unknown code
//! points fall back to byte tokens `byte + 3`), then repeatedly merging the
//! adjacent pair whose concatenation has the highest score.

use std::collections::HashMap;

use crate::error::{Error, Result};

const FORMAT: &str = "llama2.c";

/// A llama2.c tokenizer.
#[derive(Debug)]
pub struct Llama2cTokenizer {
    vocab: Vec<Vec<u8>>,
    scores: Vec<f32>,
    lookup: HashMap<Vec<u8>, u32>,
    bos: u32,
    eos: u32,
    max_token_length: u32,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn u32(&mut self) -> Option<u32> {
        let b = self.data.get(self.pos..self.pos + 4)?;
        self.pos += 4;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn bytes(&mut self, n: usize) -> Option<Vec<u8>> {
        let end = self.pos.checked_add(n)?;
        let b = self.data.get(self.pos..end)?.to_vec();
        self.pos = end;
        Some(b)
    }
    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }
}

fn read_records(c: &mut Cursor<'_>, count: Option<usize>) -> Option<(Vec<Vec<u8>>, Vec<f32>)> {
    let mut vocab = Vec::new();
    let mut scores = Vec::new();
    loop {
        match count {
            Some(n) if vocab.len() == n => break,
            None if c.remaining() == 0 => break,
            _ => {}
        }
        let score = f32::from_bits(c.u32()?);
        let len = c.u32()? as usize;
        vocab.push(c.bytes(len)?);
        scores.push(score);
    }
    (c.remaining() == 0).then_some((vocab, scores))
}

impl Llama2cTokenizer {
    /// Parses either layout (see the module docs).
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        // ExecuTorch layout: the header's vocab size must account for the
        // whole file.
        let mut c = Cursor { data, pos: 0 };
        if let (Some(n), Some(bos), Some(eos), Some(max_len)) = (c.u32(), c.u32(), c.u32(), c.u32())
        {
            let n = n as usize;
            // each record takes at least 8 bytes
            if n > 0 && n <= c.remaining() / 8 && (bos as usize) < n && (eos as usize) < n {
                if let Some((vocab, scores)) = read_records(&mut c, Some(n)) {
                    return Self::build(vocab, scores, bos, eos, max_len);
                }
            }
        }
        let mut c = Cursor { data, pos: 0 };
        let max_len = c
            .u32()
            .ok_or_else(|| Error::malformed(FORMAT, "file shorter than its header"))?;
        let (vocab, scores) = read_records(&mut c, None)
            .ok_or_else(|| Error::malformed(FORMAT, "token records do not match the file size"))?;
        if vocab.len() < 3 {
            return Err(Error::malformed(
                FORMAT,
                "vocabulary needs at least <unk>, <s>, </s>",
            ));
        }
        Self::build(vocab, scores, 1, 2, max_len)
    }

    fn build(
        vocab: Vec<Vec<u8>>,
        scores: Vec<f32>,
        bos: u32,
        eos: u32,
        max_token_length: u32,
    ) -> Result<Self> {
        if vocab.is_empty() || u32::try_from(vocab.len()).is_err() {
            return Err(Error::malformed(FORMAT, "bad vocabulary size"));
        }
        let mut lookup = HashMap::with_capacity(vocab.len());
        for (i, v) in vocab.iter().enumerate() {
            // keep the first id for duplicated strings
            lookup.entry(v.clone()).or_insert(i as u32);
        }
        Ok(Llama2cTokenizer {
            vocab,
            scores,
            lookup,
            bos,
            eos,
            max_token_length,
        })
    }

    /// Longest token length declared by the file header.
    pub fn max_token_length(&self) -> u32 {
        self.max_token_length
    }

    /// Encodes like ExecuTorch's `Llama2cTokenizer::encode(text, bos, eos)`.
    /// Empty text is an error, as in the reference.
    pub fn encode(&self, text: &str, bos: bool, eos: bool) -> Result<Vec<u32>> {
        if text.is_empty() {
            return Err(Error::Encode(
                "llama2.c tokenizer cannot encode empty text".into(),
            ));
        }
        let mut tokens: Vec<u32> = Vec::with_capacity(text.len() + 3);
        if bos {
            tokens.push(self.bos);
        }
        if let Some(&sp) = self.lookup.get(b" ".as_slice()) {
            tokens.push(sp);
        }
        let bytes = text.as_bytes();
        let mut buf: Vec<u8> = Vec::with_capacity(4);
        for (i, &c) in bytes.iter().enumerate() {
            if c & 0xC0 != 0x80 {
                buf.clear();
            }
            buf.push(c);
            let next_is_cont = bytes.get(i + 1).is_some_and(|&n| n & 0xC0 == 0x80);
            if next_is_cont && buf.len() < 4 {
                continue;
            }
            match self.lookup.get(&buf) {
                Some(&id) => tokens.push(id),
                None => {
                    for &b in &buf {
                        tokens.push(u32::from(b) + 3);
                    }
                }
            }
            buf.clear();
        }
        let mut merged: Vec<u8> = Vec::new();
        loop {
            let mut best: Option<(f32, u32, usize)> = None;
            for i in 0..tokens.len().saturating_sub(1) {
                merged.clear();
                merged.extend_from_slice(self.piece(tokens[i]));
                merged.extend_from_slice(self.piece(tokens[i + 1]));
                if let Some(&id) = self.lookup.get(&merged) {
                    let score = self.scores[id as usize];
                    let better = match best {
                        None => score > -1e10,
                        Some((s, _, _)) => score > s,
                    };
                    if better {
                        best = Some((score, id, i));
                    }
                }
            }
            match best {
                Some((_, id, i)) => {
                    tokens[i] = id;
                    tokens.remove(i + 1);
                }
                None => break,
            }
        }
        if eos {
            tokens.push(self.eos);
        }
        Ok(tokens)
    }

    /// Piece bytes as a C string (up to the first NUL), like llama2.c sees them.
    fn piece(&self, id: u32) -> &[u8] {
        let v = self
            .vocab
            .get(id as usize)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        match v.iter().position(|&b| b == 0) {
            Some(p) => &v[..p],
            None => v,
        }
    }

    /// `decode(prev, token)` as ExecuTorch does: strips the leading space of
    /// a piece following BOS (or at the start, `prev == None`) and turns
    /// `<0xAB>` pieces into the raw byte.
    pub fn token_bytes(&self, prev: Option<u32>, id: u32) -> Result<Vec<u8>> {
        let v = self.vocab.get(id as usize).ok_or(Error::OutOfRange {
            id,
            vocab_size: self.vocab.len(),
        })?;
        let mut piece: &[u8] = v;
        if prev.is_none_or(|p| p == self.bos) && piece.first() == Some(&b' ') {
            piece = &piece[1..];
        }
        if let Some(rest) = piece.strip_prefix(b"<0x") {
            let hex: Vec<u8> = rest
                .iter()
                .take(2)
                .take_while(|b| b.is_ascii_hexdigit())
                .copied()
                .collect();
            if !hex.is_empty() {
                let s = std::str::from_utf8(&hex).unwrap_or("0");
                if let Ok(b) = u8::from_str_radix(s, 16) {
                    return Ok(vec![b]);
                }
            }
        }
        Ok(piece.to_vec())
    }

    /// Decodes a sequence: each token via [`Self::token_bytes`] with its
    /// predecessor, BOS/EOS render as nothing; invalid UTF-8 becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut out = Vec::new();
        let mut prev = None;
        for &id in ids {
            if id == self.bos || id == self.eos {
                if id as usize >= self.vocab.len() {
                    return Err(Error::OutOfRange {
                        id,
                        vocab_size: self.vocab.len(),
                    });
                }
                prev = Some(id);
                continue;
            }
            out.extend(self.token_bytes(prev, id)?);
            prev = Some(id);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab.len()
    }
    pub(crate) fn bos_id(&self) -> u32 {
        self.bos
    }
    pub(crate) fn eos_id(&self) -> u32 {
        self.eos
    }
    pub(crate) fn token_to_id(&self, t: &str) -> Option<u32> {
        self.lookup.get(t.as_bytes()).copied()
    }
    pub(crate) fn id_to_token(&self, id: u32) -> Option<String> {
        self.vocab
            .get(id as usize)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }
    pub(crate) fn is_control(&self, id: u32) -> bool {
        id == self.bos || id == self.eos
    }
}
