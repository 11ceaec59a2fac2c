//! Hugging Face `tokenizer.json` tokenizers.

mod decoder;
mod json;
mod model;
mod normalizer;
mod post;
mod pre;
mod split;

use std::collections::{HashMap, HashSet};

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

use self::decoder::Decoder;
use self::json::{arr, bool_or, get, obj, opt, str_field, u32_of, FORMAT};
use self::model::Model;
use self::normalizer::Normalizer;
use self::post::PostProcessor;
use self::pre::{Piece, PreTokenizer};
use crate::error::{Error, Result};

#[derive(Debug, Clone)]
struct AddedToken {
    id: u32,
    content: String,
    single_word: bool,
    lstrip: bool,
    rstrip: bool,
    normalized: bool,
    special: bool,
}

#[derive(Debug)]
struct Matcher {
    ac: AhoCorasick,
    /// pattern index -> index into `added`
    tokens: Vec<usize>,
}

/// A tokenizer loaded from a Hugging Face `tokenizer.json`.
#[derive(Debug)]
pub struct HfTokenizer {
    added: Vec<AddedToken>,
    raw_matcher: Option<Matcher>,
    norm_matcher: Option<Matcher>,
    normalizer: Option<Normalizer>,
    pre_tokenizer: Option<PreTokenizer>,
    model: Model,
    post: Option<PostProcessor>,
    decoder: Option<Decoder>,
    id_to_token: HashMap<u32, String>,
    token_to_id: HashMap<String, u32>,
    special_ids: HashSet<u32>,
    vocab_size: usize,
    bos: Option<u32>,
    eos: Vec<u32>,
}

enum Segment {
    Added(u32),
    Text(Piece),
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl HfTokenizer {
    /// Parses a `tokenizer.json` document.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(data)
            .map_err(|e| Error::malformed(FORMAT, format!("invalid JSON: {e}")))?;
        let m = obj(&root, "tokenizer.json root")?;
        let model = Model::from_json(get(m, "model", "root")?)?;
        let normalizer = opt(m, "normalizer")
            .map(Normalizer::from_json)
            .transpose()?;
        let pre_tokenizer = opt(m, "pre_tokenizer")
            .map(PreTokenizer::from_json)
            .transpose()?;
        let post = opt(m, "post_processor")
            .map(PostProcessor::from_json)
            .transpose()?;
        let decoder = opt(m, "decoder").map(Decoder::from_json).transpose()?;

        let mut added = Vec::new();
        if let Some(list) = opt(m, "added_tokens") {
            for t in arr(list, "added_tokens")? {
                let tm = obj(t, "added token")?;
                added.push(AddedToken {
                    id: u32_of(get(tm, "id", "added token")?, "added token id")?,
                    content: str_field(tm, "content", "added token")?.to_string(),
                    single_word: bool_or(tm, "single_word", false, "added token")?,
                    lstrip: bool_or(tm, "lstrip", false, "added token")?,
                    rstrip: bool_or(tm, "rstrip", false, "added token")?,
                    normalized: bool_or(tm, "normalized", false, "added token")?,
                    special: bool_or(tm, "special", false, "added token")?,
                });
            }
        }

        let mut id_to_token: HashMap<u32, String> = HashMap::new();
        let mut token_to_id: HashMap<String, u32> = HashMap::new();
        for (tok, id) in model.vocab_iter() {
            id_to_token.insert(id, tok.to_string());
            token_to_id.insert(tok.to_string(), id);
        }
        let mut special_ids = HashSet::new();
        for a in &added {
            id_to_token.insert(a.id, a.content.clone());
            token_to_id.insert(a.content.clone(), a.id);
            if a.special {
                special_ids.insert(a.id);
            }
        }
        let vocab_size = id_to_token
            .keys()
            .map(|&i| i as usize + 1)
            .max()
            .unwrap_or(0);

        let build =
            |want_normalized: bool, normalizer: Option<&Normalizer>| -> Result<Option<Matcher>> {
                let mut pats = Vec::new();
                let mut tokens = Vec::new();
                for (i, a) in added.iter().enumerate() {
                    if a.normalized != want_normalized || a.content.is_empty() {
                        continue;
                    }
                    let content = match (want_normalized, normalizer) {
                        (true, Some(n)) => n.normalize(&a.content)?,
                        _ => a.content.clone(),
                    };
                    if content.is_empty() {
                        continue;
                    }
                    pats.push(content);
                    tokens.push(i);
                }
                if pats.is_empty() {
                    return Ok(None);
                }
                let ac = AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(&pats)
                    .map_err(|e| Error::malformed(FORMAT, format!("added tokens: {e}")))?;
                Ok(Some(Matcher { ac, tokens }))
            };
        let raw_matcher = build(false, None)?;
        let norm_matcher = build(true, normalizer.as_ref())?;

        let bos = post
            .as_ref()
            .and_then(PostProcessor::leading_special)
            .or_else(|| {
                [
                    "<|begin_of_text|>",
                    "<s>",
                    "<bos>",
                    "<|startoftext|>",
                    "[CLS]",
                ]
                .iter()
                .find_map(|n| token_to_id.get(*n).copied())
            });
        let eos = [
            "<|end_of_text|>",
            "<|eot_id|>",
            "<|eom_id|>",
            "</s>",
            "<eos>",
            "<|endoftext|>",
            "<|im_end|>",
            "<end_of_turn>",
        ]
        .iter()
        .filter_map(|n| token_to_id.get(*n).copied())
        .collect();

        Ok(HfTokenizer {
            added,
            raw_matcher,
            norm_matcher,
            normalizer,
            pre_tokenizer,
            model,
            post,
            decoder,
            id_to_token,
            token_to_id,
            special_ids,
            vocab_size,
            bos,
            eos,
        })
    }

    /// HF `AddedVocabulary::find_matches`.
    fn split_added(
        &self,
        text: &str,
        first: bool,
        matcher: &Option<Matcher>,
        split_special: bool,
        out: &mut Vec<Segment>,
    ) {
        let Some(m) = matcher else {
            if !text.is_empty() {
                out.push(Segment::Text(Piece {
                    text: text.to_string(),
                    first,
                }));
            }
            return;
        };
        let mut start_offset = 0usize;
        let push_text = |s: usize, e: usize, out: &mut Vec<Segment>| {
            if e > s {
                out.push(Segment::Text(Piece {
                    text: text[s..e].to_string(),
                    first: first && s == 0,
                }));
            }
        };
        for mat in m.ac.find_iter(text) {
            let tok = &self.added[m.tokens[mat.pattern().as_usize()]];
            let (mut start, mut stop) = (mat.start(), mat.end());
            // HF `encode_special_tokens`: special tokens stay plain text.
            if !split_special && tok.special {
                continue;
            }
            if tok.single_word {
                let start_space =
                    start == 0 || !text[..start].chars().next_back().is_some_and(is_word_char);
                let stop_space =
                    stop == text.len() || !text[stop..].chars().next().is_some_and(is_word_char);
                if !start_space || !stop_space {
                    continue;
                }
            }
            if tok.lstrip {
                let mut ns = start;
                for (i, c) in text[..start].char_indices().rev() {
                    if c.is_whitespace() {
                        ns = i;
                    } else {
                        break;
                    }
                }
                start = ns.max(start_offset);
            }
            if tok.rstrip {
                for c in text[stop..].chars() {
                    if c.is_whitespace() {
                        stop += c.len_utf8();
                    } else {
                        break;
                    }
                }
            }
            if start_offset < start {
                push_text(start_offset, start, out);
            }
            out.push(Segment::Added(tok.id));
            start_offset = stop;
        }
        push_text(start_offset, text.len(), out);
    }

    /// Encodes `text`. With `add_special_tokens` the post-processor runs
    /// (e.g. a TemplateProcessing that prepends BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        self.encode_with(text, add_special_tokens, true)
    }

    /// Like [`Self::encode`]; with `split_special == false` special added
    /// tokens written in the text are encoded as ordinary text (HF's
    /// `encode_special_tokens = True`). Non-special added tokens still match.
    pub fn encode_with(
        &self,
        text: &str,
        add_special_tokens: bool,
        split_special: bool,
    ) -> Result<Vec<u32>> {
        let mut raw = Vec::new();
        self.split_added(text, true, &self.raw_matcher, split_special, &mut raw);
        let mut ids = Vec::new();
        for seg in raw {
            match seg {
                Segment::Added(id) => ids.push(id),
                Segment::Text(p) => {
                    let normalized = match &self.normalizer {
                        Some(n) => n.normalize(&p.text)?,
                        None => p.text,
                    };
                    let mut segs = Vec::new();
                    self.split_added(
                        &normalized,
                        p.first,
                        &self.norm_matcher,
                        split_special,
                        &mut segs,
                    );
                    for s in segs {
                        match s {
                            Segment::Added(id) => ids.push(id),
                            Segment::Text(piece) => {
                                let pieces = match &self.pre_tokenizer {
                                    Some(pt) => pt.run(vec![piece])?,
                                    None => vec![piece],
                                };
                                for w in pieces {
                                    self.model.tokenize(&w.text, &mut ids)?;
                                }
                            }
                        }
                    }
                }
            }
        }
        if add_special_tokens {
            if let Some(p) = &self.post {
                ids = p.process(ids);
            }
        }
        Ok(ids)
    }

    fn token_str(&self, id: u32) -> Result<&str> {
        self.id_to_token
            .get(&id)
            .map(String::as_str)
            .ok_or(Error::OutOfRange {
                id,
                vocab_size: self.vocab_size,
            })
    }

    /// Decodes ids through the decoder chain (HF `Tokenizer::decode`). Unlike
    /// HF, unknown ids are an error instead of being silently dropped.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut tokens = Vec::with_capacity(ids.len());
        for &id in ids {
            let t = self.token_str(id)?;
            if skip_special && self.special_ids.contains(&id) {
                continue;
            }
            tokens.push(t.to_string());
        }
        match &self.decoder {
            Some(d) => Ok(d.decode_chain(tokens)?.concat()),
            None => Ok(tokens.join(" ")),
        }
    }

    /// Raw bytes of one token in a stream. `first` marks the first token of
    /// the output.
    pub fn token_bytes(&self, id: u32, first: bool) -> Result<Vec<u8>> {
        let t = self.token_str(id)?;
        match &self.decoder {
            Some(d) => d.token_bytes(t, first),
            None => Ok(if first {
                t.as_bytes().to_vec()
            } else {
                format!(" {t}").into_bytes()
            }),
        }
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    pub(crate) fn bos_id(&self) -> Option<u32> {
        self.bos
    }
    pub(crate) fn eos_ids(&self) -> &[u32] {
        &self.eos
    }
    pub(crate) fn token_to_id(&self, t: &str) -> Option<u32> {
        self.token_to_id.get(t).copied()
    }
    pub(crate) fn id_to_token(&self, id: u32) -> Option<String> {
        self.id_to_token.get(&id).cloned()
    }
    pub(crate) fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains(&id)
    }
    /// Whether the post-processor prepends a token when special tokens are added.
    pub(crate) fn post_adds_bos(&self) -> bool {
        self.post
            .as_ref()
            .and_then(PostProcessor::leading_special)
            .is_some()
    }
}
