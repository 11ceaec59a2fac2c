//! SentencePiece `.model` files (a serialized `ModelProto`), with BPE and
//! Unigram encoding, byte fallback and SentencePiece's decoding rules.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use std::borrow::Cow;

use crate::charsmap::CharsMap;
use crate::error::{Error, Result};
use crate::index::KeyIndex;
use crate::trie::Trie;
use crate::util::{byte_piece, parse_byte_piece};

const FORMAT: &str = "sentencepiece";
const SPACE: &str = "\u{2581}";

/// Byte span of a merged UNUSED piece -> spans of its two halves.
type Span = (usize, usize);
type RevMerge = HashMap<Span, (Span, Span)>;

/// Piece types from `sentencepiece_model.proto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceType {
    /// Ordinary piece.
    Normal,
    /// `<unk>`.
    Unknown,
    /// Control symbols such as `<s>`, `</s>`.
    Control,
    /// User-defined symbols (never split).
    UserDefined,
    /// Unused pieces.
    Unused,
    /// Byte-fallback pieces `<0xAB>`.
    Byte,
}

impl PieceType {
    fn from_proto(v: u64) -> Result<Self> {
        Ok(match v {
            1 => PieceType::Normal,
            2 => PieceType::Unknown,
            3 => PieceType::Control,
            4 => PieceType::UserDefined,
            5 => PieceType::Unused,
            6 => PieceType::Byte,
            other => {
                return Err(Error::malformed(
                    FORMAT,
                    format!("unknown piece type {other}"),
                ))
            }
        })
    }
}

/// The segmentation algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// Unigram language model (Viterbi).
    Unigram,
    /// Score-ordered BPE.
    Bpe,
}

// ---------------------------------------------------------------------------
// Minimal protobuf wire-format reader
// ---------------------------------------------------------------------------

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

enum Field<'a> {
    Varint(u64),
    Fixed32(u32),
    Fixed64,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| Error::malformed(FORMAT, "truncated varint"))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Error::malformed(FORMAT, "varint too long"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| Error::malformed(FORMAT, "truncated field"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Next `(field number, value)`, or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = key >> 3;
        if field == 0 {
            return Err(Error::malformed(FORMAT, "field number 0"));
        }
        let value = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed64
            }
            2 => {
                let n = usize::try_from(self.varint()?)
                    .map_err(|_| Error::malformed(FORMAT, "length too large"))?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Field::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            w => {
                return Err(Error::malformed(
                    FORMAT,
                    format!("unsupported wire type {w}"),
                ))
            }
        };
        Ok(Some((field, value)))
    }
}

fn utf8(b: &[u8], what: &str) -> Result<String> {
    String::from_utf8(b.to_vec())
        .map_err(|_| Error::malformed(FORMAT, format!("{what} is not UTF-8")))
}

#[derive(Debug)]
struct Piece {
    piece: String,
    score: f32,
    kind: PieceType,
}

#[derive(Debug)]
struct Spec {
    model_type: ModelType,
    byte_fallback: bool,
    treat_ws_as_suffix: bool,
    unk_surface: String,
    unk_piece: String,
    bos_piece: String,
    eos_piece: String,
    add_dummy_prefix: bool,
    remove_extra_ws: bool,
    escape_ws: bool,
    charsmap: Vec<u8>,
}

fn parse_model(data: &[u8]) -> Result<(Vec<Piece>, Spec)> {
    let mut pieces = Vec::new();
    let mut spec = Spec {
        model_type: ModelType::Unigram,
        byte_fallback: false,
        treat_ws_as_suffix: false,
        unk_surface: " \u{2047} ".to_string(),
        unk_piece: "<unk>".into(),
        bos_piece: "<s>".into(),
        eos_piece: "</s>".into(),
        add_dummy_prefix: true,
        remove_extra_ws: true,
        escape_ws: true,
        charsmap: Vec::new(),
    };
    let mut r = Reader::new(data);
    while let Some((field, value)) = r.next()? {
        match (field, value) {
            (1, Field::Bytes(b)) => {
                let mut p = Piece {
                    piece: String::new(),
                    score: 0.0,
                    kind: PieceType::Normal,
                };
                let mut has_piece = false;
                let mut pr = Reader::new(b);
                while let Some((f, v)) = pr.next()? {
                    match (f, v) {
                        (1, Field::Bytes(s)) => {
                            p.piece = utf8(s, "piece")?;
                            has_piece = true;
                        }
                        (2, Field::Fixed32(x)) => p.score = f32::from_bits(x),
                        (3, Field::Varint(t)) => p.kind = PieceType::from_proto(t)?,
                        (1..=3, _) => {
                            return Err(Error::malformed(FORMAT, "piece field has wrong wire type"))
                        }
                        _ => {}
                    }
                }
                if !has_piece {
                    return Err(Error::malformed(FORMAT, "piece without text"));
                }
                pieces.push(p);
            }
            (2, Field::Bytes(b)) => {
                let mut tr = Reader::new(b);
                while let Some((f, v)) = tr.next()? {
                    match (f, v) {
                        (3, Field::Varint(t)) => {
                            spec.model_type = match t {
                                1 => ModelType::Unigram,
                                2 => ModelType::Bpe,
                                3 => return Err(Error::unsupported(FORMAT, "model_type WORD")),
                                4 => return Err(Error::unsupported(FORMAT, "model_type CHAR")),
                                o => {
                                    return Err(Error::malformed(FORMAT, format!("model_type {o}")))
                                }
                            }
                        }
                        (24, Field::Varint(x)) => spec.treat_ws_as_suffix = x != 0,
                        (35, Field::Varint(x)) => spec.byte_fallback = x != 0,
                        (44, Field::Bytes(s)) => spec.unk_surface = utf8(s, "unk_surface")?,
                        (45, Field::Bytes(s)) => spec.unk_piece = utf8(s, "unk_piece")?,
                        (46, Field::Bytes(s)) => spec.bos_piece = utf8(s, "bos_piece")?,
                        (47, Field::Bytes(s)) => spec.eos_piece = utf8(s, "eos_piece")?,
                        _ => {}
                    }
                }
            }
            (3, Field::Bytes(b)) => {
                let mut nr = Reader::new(b);
                while let Some((f, v)) = nr.next()? {
                    match (f, v) {
                        (2, Field::Bytes(s)) => spec.charsmap = s.to_vec(),
                        (3, Field::Varint(x)) => spec.add_dummy_prefix = x != 0,
                        (4, Field::Varint(x)) => spec.remove_extra_ws = x != 0,
                        (5, Field::Varint(x)) => spec.escape_ws = x != 0,
                        _ => {}
                    }
                }
            }
            (1..=3, _) => {
                return Err(Error::malformed(
                    FORMAT,
                    "ModelProto field has wrong wire type",
                ))
            }
            _ => {}
        }
    }
    if pieces.is_empty() {
        return Err(Error::malformed(FORMAT, "no pieces"));
    }
    Ok((pieces, spec))
}

// ---------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------

/// A SentencePiece model.
#[derive(Debug)]
pub struct SentencePieceTokenizer {
    pieces: Vec<Piece>,
    spec: Spec,
    /// NORMAL, USER_DEFINED and UNUSED pieces, by text.
    normal: KeyIndex,
    /// Everything else (CONTROL, UNKNOWN, BYTE), by text.
    reserved: KeyIndex,
    unk_id: u32,
    byte_ids: [Option<u32>; 256],
    user_defined: Trie,
    has_user_defined: bool,
    trie: Trie,
    min_score: f32,
    max_score: f32,
    charsmap: Option<CharsMap>,
}

#[derive(PartialEq)]
struct Agenda {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}
impl Eq for Agenda {}
impl PartialOrd for Agenda {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Agenda {
    fn cmp(&self, other: &Self) -> Ordering {
        // max-heap: higher score first, then smaller `left`
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl SentencePieceTokenizer {
    /// Parses a serialized `ModelProto`.
    pub fn from_bytes(data: &[u8]) -> Result<Self> {
        let (pieces, spec) = parse_model(data)?;
        let charsmap = if spec.charsmap.is_empty() {
            None
        } else {
            Some(CharsMap::parse(&spec.charsmap, FORMAT)?)
        };
        if u32::try_from(pieces.len()).is_err() {
            return Err(Error::malformed(FORMAT, "too many pieces"));
        }
        let mut unk_id = None;
        let mut byte_ids = [None; 256];
        let mut user_defined = Trie::new();
        let mut has_user_defined = false;
        let mut trie = Trie::new();
        let (mut min_score, mut max_score) = (f32::MAX, f32::MIN);
        for (i, p) in pieces.iter().enumerate() {
            let id = i as u32;
            if p.piece.is_empty() {
                return Err(Error::malformed(FORMAT, format!("piece {i} is empty")));
            }
            let is_normal = matches!(
                p.kind,
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            );
            match p.kind {
                PieceType::UserDefined => {
                    user_defined.insert(p.piece.as_bytes(), id);
                    has_user_defined = true;
                }
                PieceType::Unknown => unk_id = Some(id),
                PieceType::Byte => {
                    if !spec.byte_fallback {
                        return Err(Error::malformed(FORMAT, "byte piece without byte_fallback"));
                    }
                    let b = parse_byte_piece(&p.piece).ok_or_else(|| {
                        Error::malformed(FORMAT, format!("bad byte piece {:?}", p.piece))
                    })?;
                    byte_ids[b as usize] = Some(id);
                }
                PieceType::Normal => {
                    min_score = min_score.min(p.score);
                    max_score = max_score.max(p.score);
                }
                _ => {}
            }
            // Only Unigram segmentation searches common prefixes.
            if is_normal && spec.model_type == ModelType::Unigram {
                trie.insert(p.piece.as_bytes(), id);
            }
        }
        let key = |id: u32| pieces[id as usize].piece.as_bytes();
        let is_normal = |id: &u32| {
            matches!(
                pieces[*id as usize].kind,
                PieceType::Normal | PieceType::UserDefined | PieceType::Unused
            )
        };
        let n = pieces.len() as u32;
        let (normal_ids, reserved_ids): (Vec<u32>, Vec<u32>) = (0..n).partition(is_normal);
        let dup = |id: u32| {
            Error::malformed(
                FORMAT,
                format!("duplicate piece {:?}", pieces[id as usize].piece),
            )
        };
        let normal = KeyIndex::build(normal_ids.into_iter(), key).map_err(dup)?;
        let reserved = KeyIndex::build(reserved_ids.into_iter(), key).map_err(dup)?;
        let unk_id = unk_id.ok_or_else(|| Error::malformed(FORMAT, "no UNKNOWN piece"))?;
        Ok(SentencePieceTokenizer {
            pieces,
            spec,
            normal,
            reserved,
            unk_id,
            byte_ids,
            user_defined,
            has_user_defined,
            trie,
            min_score,
            max_score,
            charsmap,
        })
    }

    /// The segmentation algorithm of this model.
    pub fn model_type(&self) -> ModelType {
        self.spec.model_type
    }

    fn key<'a>(&'a self) -> impl Fn(u32) -> &'a [u8] + 'a {
        |id| self.pieces[id as usize].piece.as_bytes()
    }

    /// The NORMAL, USER_DEFINED or UNUSED piece `piece`.
    fn normal_id(&self, piece: &str) -> Option<u32> {
        self.normal.get(piece.as_bytes(), self.key())
    }

    /// Any piece, reserved ones first.
    fn lookup(&self, piece: &str) -> Option<u32> {
        self.reserved
            .get(piece.as_bytes(), self.key())
            .or_else(|| self.normal_id(piece))
    }

    fn piece_to_id(&self, piece: &str) -> u32 {
        self.lookup(piece).unwrap_or(self.unk_id)
    }

    /// `Normalizer::NormalizePrefix`: user-defined symbols pass through,
    /// then the longest charsmap rule, else one character.
    fn normalize_prefix<'a>(&'a self, input: &'a str) -> (Cow<'a, str>, usize) {
        if self.has_user_defined {
            let mut best = 0;
            self.user_defined
                .common_prefixes(input.as_bytes(), |len, _| best = len);
            if best > 0 && input.is_char_boundary(best) {
                return (Cow::Borrowed(&input[..best]), best);
            }
        }
        if let Some(cm) = &self.charsmap {
            if let Some((len, rep)) = cm.longest_prefix(input.as_bytes()) {
                if input.is_char_boundary(len) {
                    return (String::from_utf8_lossy(rep), len);
                }
            }
        }
        let n = input.chars().next().map_or(input.len(), char::len_utf8);
        (Cow::Borrowed(&input[..n]), n)
    }

    /// SentencePiece `Normalizer::Normalize`.
    fn normalize(&self, text: &str) -> String {
        let s = &self.spec;
        let mut input = text;
        if s.remove_extra_ws {
            while !input.is_empty() {
                let (p, n) = self.normalize_prefix(input);
                if p != " " {
                    break;
                }
                input = &input[n..];
            }
        }
        if input.is_empty() {
            return String::new();
        }
        let ws = if s.escape_ws { SPACE } else { " " };
        let mut out = String::with_capacity(input.len() + 8);
        if !s.treat_ws_as_suffix && s.add_dummy_prefix {
            out.push_str(ws);
        }
        let mut prev_space = s.remove_extra_ws;
        while !input.is_empty() {
            let (p, n) = self.normalize_prefix(input);
            let mut sp: &str = &p;
            if prev_space {
                sp = sp.trim_start_matches(' ');
            }
            if !sp.is_empty() {
                for c in sp.chars() {
                    if s.escape_ws && c == ' ' {
                        out.push_str(SPACE);
                    } else {
                        out.push(c);
                    }
                }
                prev_space = sp.ends_with(' ');
            }
            input = &input[n..];
            if !s.remove_extra_ws {
                prev_space = false;
            }
        }
        if s.remove_extra_ws {
            while out.ends_with(ws) {
                out.truncate(out.len() - ws.len());
            }
        }
        if s.treat_ws_as_suffix && s.add_dummy_prefix {
            out.push_str(ws);
        }
        out
    }

    /// Length of the next symbol: the longest user-defined piece or one char.
    fn prefix_symbol(&self, text: &str) -> (usize, bool) {
        let mut best = 0;
        if self.has_user_defined {
            self.user_defined
                .common_prefixes(text.as_bytes(), |len, _| best = len);
        }
        if best > 0 {
            (best, true)
        } else {
            (text.chars().next().map_or(1, char::len_utf8), false)
        }
    }

    fn encode_bpe(&self, norm: &str) -> Vec<(usize, usize, u32)> {
        struct Sym {
            start: usize,
            end: usize,
            prev: isize,
            next: isize,
            freeze: bool,
        }
        let mut syms: Vec<Sym> = Vec::new();
        let mut pos = 0;
        while pos < norm.len() {
            let (len, freeze) = self.prefix_symbol(&norm[pos..]);
            let i = syms.len() as isize;
            syms.push(Sym {
                start: pos,
                end: pos + len,
                prev: i - 1,
                next: if pos + len < norm.len() { i + 1 } else { -1 },
                freeze,
            });
            pos += len;
        }
        let mut heap = BinaryHeap::new();
        let mut rev_merge: RevMerge = HashMap::new();
        let try_add = |syms: &Vec<Sym>,
                       heap: &mut BinaryHeap<Agenda>,
                       rev_merge: &mut RevMerge,
                       left: isize,
                       right: isize| {
            if left < 0 || right < 0 {
                return;
            }
            let (l, r) = (&syms[left as usize], &syms[right as usize]);
            if l.freeze || r.freeze {
                return;
            }
            let piece = &norm[l.start..r.end];
            if let Some(id) = self.normal_id(piece) {
                heap.push(Agenda {
                    score: self.pieces[id as usize].score,
                    left: left as usize,
                    right: right as usize,
                    size: piece.len(),
                });
                if self.pieces[id as usize].kind == PieceType::Unused {
                    rev_merge.insert((l.start, r.end), ((l.start, l.end), (r.start, r.end)));
                }
            }
        };
        for i in 1..syms.len() {
            try_add(&syms, &mut heap, &mut rev_merge, i as isize - 1, i as isize);
        }
        while let Some(top) = heap.pop() {
            let (l, r) = (&syms[top.left], &syms[top.right]);
            if l.start == l.end
                || r.start == r.end
                || (r.end - l.start) != top.size
                || l.next != top.right as isize
            {
                continue;
            }
            let new_end = r.end;
            let rnext = r.next;
            syms[top.left].end = new_end;
            syms[top.left].next = rnext;
            if rnext >= 0 {
                syms[rnext as usize].prev = top.left as isize;
            }
            let right = top.right;
            syms[right].start = 0;
            syms[right].end = 0;
            let lprev = syms[top.left].prev;
            try_add(&syms, &mut heap, &mut rev_merge, lprev, top.left as isize);
            try_add(&syms, &mut heap, &mut rev_merge, top.left as isize, rnext);
        }
        let mut out = Vec::new();
        let mut i: isize = if syms.is_empty() { -1 } else { 0 };
        while i >= 0 {
            let s = &syms[i as usize];
            self.resegment(norm, s.start, s.end, &rev_merge, &mut out);
            i = s.next;
        }
        out
    }

    fn resegment(
        &self,
        norm: &str,
        start: usize,
        end: usize,
        rev_merge: &RevMerge,
        out: &mut Vec<(usize, usize, u32)>,
    ) {
        let id = self.piece_to_id(&norm[start..end]);
        if self.pieces[id as usize].kind != PieceType::Unused {
            out.push((start, end, id));
            return;
        }
        match rev_merge.get(&(start, end)) {
            Some(&(a, b)) => {
                self.resegment(norm, a.0, a.1, rev_merge, out);
                self.resegment(norm, b.0, b.1, rev_merge, out);
            }
            None => out.push((start, end, id)),
        }
    }

    fn encode_unigram(&self, norm: &str) -> Vec<(usize, usize, u32)> {
        const UNK_PENALTY: f32 = 10.0;
        let unk_score = self.min_score - UNK_PENALTY;
        let bytes = norm.as_bytes();
        let n = bytes.len();
        // (score, start, id); start == usize::MAX means unset
        let mut best: Vec<(f32, usize, u32)> = vec![(0.0, usize::MAX, 0); n + 1];
        let mut pos = 0;
        while pos < n {
            let here = best[pos].0;
            let mblen = norm[pos..].chars().next().map_or(1, char::len_utf8);
            let mut has_single = false;
            self.trie.common_prefixes(&bytes[pos..], |len, id| {
                let p = &self.pieces[id as usize];
                if p.kind == PieceType::Unused {
                    return;
                }
                // The reference accumulates path scores in f32.
                let score: f32 = if p.kind == PieceType::UserDefined {
                    (len as f64 * f64::from(self.max_score) - 0.1) as f32
                } else {
                    p.score
                };
                let cand = score + here;
                let t = &mut best[pos + len];
                if t.1 == usize::MAX || cand > t.0 {
                    *t = (cand, pos, id);
                }
                if len == mblen {
                    has_single = true;
                }
            });
            if !has_single {
                let cand = unk_score + here;
                let t = &mut best[pos + mblen];
                if t.1 == usize::MAX || cand > t.0 {
                    *t = (cand, pos, self.unk_id);
                }
            }
            pos += mblen;
        }
        let mut out = Vec::new();
        let mut end = n;
        while end > 0 {
            let (_, start, id) = best[end];
            if start == usize::MAX || start >= end {
                break; // unreachable for well-formed input
            }
            out.push((start, end, id));
            end = start;
        }
        out.reverse();
        out
    }

    /// Encodes text like `SentencePieceProcessor::EncodeAsIds` (no BOS/EOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let norm = self.normalize(text);
        if norm.is_empty() {
            return Ok(Vec::new());
        }
        let segs = match self.spec.model_type {
            ModelType::Bpe => self.encode_bpe(&norm),
            ModelType::Unigram => self.encode_unigram(&norm),
        };
        let mut ids = Vec::with_capacity(segs.len());
        let mut prev_unk = false;
        for (s, e, id) in segs {
            let is_unk = id == self.unk_id;
            if is_unk && self.spec.byte_fallback {
                for b in norm[s..e].bytes() {
                    ids.push(self.byte_ids[b as usize].unwrap_or(self.unk_id));
                }
            } else if !(is_unk && prev_unk) {
                ids.push(id);
            }
            prev_unk = is_unk;
        }
        Ok(ids)
    }

    fn check(&self, id: u32) -> Result<&Piece> {
        self.pieces.get(id as usize).ok_or(Error::OutOfRange {
            id,
            vocab_size: self.pieces.len(),
        })
    }

    /// Decodes ids like `SentencePieceProcessor::DecodeIds`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        let flush = |bytes: &mut Vec<u8>, text: &mut String| {
            let mut rest: &[u8] = bytes;
            while !rest.is_empty() {
                match std::str::from_utf8(rest) {
                    Ok(s) => {
                        text.push_str(s);
                        break;
                    }
                    Err(e) => {
                        let v = e.valid_up_to();
                        text.push_str(std::str::from_utf8(&rest[..v]).unwrap_or_default());
                        // each structurally invalid byte becomes one U+FFFD
                        text.push('\u{FFFD}');
                        rest = &rest[v + 1..];
                    }
                }
            }
            bytes.clear();
        };
        let strip_bos_ws = self.spec.add_dummy_prefix || self.spec.remove_extra_ws;
        let mut is_bos_ws = true;
        let mut bos_ws_seen = false;
        for &id in ids {
            let p = self.check(id)?;
            if p.kind == PieceType::Byte {
                if let Some(b) = parse_byte_piece(&p.piece) {
                    bytes.push(b);
                }
                continue;
            }
            flush(&mut bytes, &mut text);
            if bos_ws_seen || !text.is_empty() {
                is_bos_ws = false;
            }
            let (piece, seen) = match p.kind {
                PieceType::Control => (String::new(), false),
                PieceType::Unknown => (self.spec.unk_surface.clone(), false),
                _ => {
                    let mut piece = p.piece.as_str();
                    let mut has = false;
                    if is_bos_ws && strip_bos_ws {
                        if let Some(rest) = piece.strip_prefix(SPACE) {
                            piece = rest;
                            has = true;
                        }
                        if self.spec.remove_extra_ws {
                            has = false;
                        }
                    }
                    (piece.replace(SPACE, " "), has)
                }
            };
            bos_ws_seen = seen;
            text.push_str(&piece);
        }
        flush(&mut bytes, &mut text);
        Ok(text)
    }

    /// Raw bytes of one token in a stream (`first`: nothing but control
    /// tokens precede it).
    pub fn token_bytes(&self, id: u32, first: bool) -> Result<Vec<u8>> {
        let p = self.check(id)?;
        Ok(match p.kind {
            PieceType::Control => Vec::new(),
            PieceType::Unknown => self.spec.unk_surface.as_bytes().to_vec(),
            PieceType::Byte => parse_byte_piece(&p.piece)
                .map(|b| vec![b])
                .unwrap_or_default(),
            _ => {
                let mut piece = p.piece.as_str();
                if first && (self.spec.add_dummy_prefix || self.spec.remove_extra_ws) {
                    piece = piece.strip_prefix(SPACE).unwrap_or(piece);
                }
                piece.replace(SPACE, " ").into_bytes()
            }
        })
    }

    /// Streaming variant of [`Self::token_bytes`] that follows
    /// `DecodeIds`' rule for the dummy-prefix space: `at_start` stays set
    /// while only control tokens (and, with `remove_extra_whitespaces`,
    /// pieces that decode to nothing) have been seen.
    pub(crate) fn stream_bytes(&self, id: u32, at_start: &mut bool) -> Result<Vec<u8>> {
        let p = self.check(id)?;
        let out = self.token_bytes(id, *at_start)?;
        match p.kind {
            PieceType::Control => {}
            PieceType::Normal | PieceType::UserDefined | PieceType::Unused if *at_start => {
                *at_start = self.spec.remove_extra_ws && out.is_empty();
            }
            _ => {
                if !out.is_empty() {
                    *at_start = false;
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
    fn control_id(&self, name: &str) -> Option<u32> {
        let id = self.piece_to_id(name);
        (self.pieces[id as usize].kind == PieceType::Control).then_some(id)
    }
    /// `<s>` id, if it is a control piece.
    pub fn bos_id(&self) -> Option<u32> {
        self.control_id(&self.spec.bos_piece)
    }
    /// `</s>` id, if it is a control piece.
    pub fn eos_id(&self) -> Option<u32> {
        self.control_id(&self.spec.eos_piece)
    }
    /// Id of the unknown piece.
    pub fn unk_id(&self) -> u32 {
        self.unk_id
    }
    pub(crate) fn token_to_id(&self, t: &str) -> Option<u32> {
        self.lookup(t)
    }
    pub(crate) fn id_to_token(&self, id: u32) -> Option<String> {
        self.pieces.get(id as usize).map(|p| p.piece.clone())
    }
    pub(crate) fn is_control(&self, id: u32) -> bool {
        self.pieces
            .get(id as usize)
            .is_some_and(|p| p.kind == PieceType::Control)
    }
    /// Byte-fallback piece id for a byte, if the model has one.
    pub fn byte_id(&self, b: u8) -> Option<u32> {
        self.byte_ids[b as usize].or_else(|| self.token_to_id(&byte_piece(b)))
    }
}
