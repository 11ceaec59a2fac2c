//! Conformance against vectors recorded from the reference Python libraries
//! (see `conformance/tokenizers/make_vectors.py`).

use std::path::PathBuf;

use pteron_tokenizers::{EncodeOptions, Format, Tokenizer};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn load_json(name: &str) -> Value {
    let bytes = std::fs::read(data(name)).unwrap_or_else(|e| panic!("read {name}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parse {name}: {e}"))
}

fn strings() -> Vec<String> {
    load_json("strings.json")
        .as_array()
        .expect("strings array")
        .iter()
        .map(|v| v.as_str().expect("string").to_string())
        .collect()
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// Collects mismatches and fails with a readable report.
#[derive(Default)]
struct Report {
    checked: usize,
    failures: Vec<String>,
}

impl Report {
    fn check<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, text: &str, got: T, want: T) {
        self.checked += 1;
        if got != want {
            self.failures.push(format!(
                "{what} for {text:?}:\n   got {got:?}\n  want {want:?}"
            ));
        }
    }

    fn finish(self, name: &str) {
        if !self.failures.is_empty() {
            let shown: Vec<_> = self.failures.iter().take(8).cloned().collect();
            panic!(
                "{name}: {} of {} checks failed; first ones:\n{}",
                self.failures.len(),
                self.checked,
                shown.join("\n")
            );
        }
        assert!(self.checked > 0, "{name}: no checks ran");
    }
}

fn stream_decode(tok: &Tokenizer, ids: &[u32]) -> String {
    let mut s = tok.stream_decoder();
    let mut out = String::new();
    for &id in ids {
        out.push_str(&s.push(id).expect("stream push"));
    }
    out.push_str(&s.finish());
    out
}

fn run_hf(name: &str, check_stream: bool) {
    let vectors = load_json(&format!("{name}.vectors.json"));
    let tok = Tokenizer::from_file(data(vectors["tokenizer"].as_str().unwrap())).expect("load");
    assert_eq!(tok.format(), Format::HuggingFace);
    let strings = strings();
    let cases = vectors["cases"].as_array().unwrap();
    assert_eq!(cases.len(), strings.len());
    let mut r = Report::default();
    for (s, case) in strings.iter().zip(cases) {
        let want = ids_of(&case["ids"]);
        let got = tok.encode(s, false).expect("encode");
        r.check("ids", s, &got, &want);
        if let Some(sp) = case.get("ids_special") {
            let hf = tok.as_hf().expect("hf");
            let sp = ids_of(sp);
            let got = hf.encode(s, true).expect("encode with specials");
            r.check("ids_special", s, got, sp.clone());
            let plain = case
                .get("ids_no_special")
                .map(ids_of)
                .unwrap_or_else(|| want.clone());
            let opts = EncodeOptions {
                parse_special: false,
                ..EncodeOptions::default()
            };
            r.check(
                "ids_no_special",
                s,
                tok.encode_with(s, &opts).expect("encode"),
                plain,
            );
            // add_bos goes through the post-processor when it prepends a token
            if sp.len() > want.len() && sp[1..=want.len()] == want[..] {
                let got = tok.encode(s, true).expect("encode with bos");
                r.check(
                    "add_bos",
                    s,
                    got[..sp.len() - 1].to_vec(),
                    sp[..sp.len() - 1].to_vec(),
                );
            }
        }
        let want_dec = case.get("decoded").and_then(Value::as_str).unwrap_or(s);
        let dec = tok.decode(&want).expect("decode");
        r.check("decode", s, dec.as_str(), want_dec);
        if case.get("ids_special").is_some() {
            let want_skip = case
                .get("decoded_skip_special")
                .and_then(Value::as_str)
                .unwrap_or(want_dec);
            r.check(
                "decode skip special",
                s,
                tok.decode_with(&want, true).expect("decode").as_str(),
                want_skip,
            );
        }
        // The stream treats a token after a special token as the start of
        // text (strips the dummy-prefix space); HF's one-shot decode does
        // not, so only compare sequences without special tokens.
        let has_special = want.iter().any(|&id| tok.is_special(id));
        if check_stream && !has_special && !dec.contains('\u{FFFD}') {
            r.check("stream decode", s, stream_decode(&tok, &want), dec);
        }
    }
    r.finish(name);
}

#[test]
fn hf_byte_level_bpe() {
    run_hf("bytelevel_bpe", true);
}

#[test]
fn hf_llama3_style_bpe() {
    run_hf("llama3_bpe", true);
}

#[test]
fn hf_sentencepiece_style_bpe() {
    run_hf("hf_sp_bpe", true);
}

#[test]
fn hf_metaspace_bpe() {
    run_hf("hf_sp_bpe_metaspace", false);
}

#[test]
fn hf_sentencepiece_style_unigram() {
    run_hf("hf_sp_unigram", true);
}

#[test]
fn hf_unigram() {
    run_hf("hf_unigram", false);
}

#[test]
fn hf_wordpiece() {
    run_hf("hf_wordpiece", false);
}

#[test]
fn tiktoken_llama3() {
    let vectors = load_json("llama3.vectors.json");
    let tok = Tokenizer::from_file(data("llama3.tiktoken")).expect("load");
    assert_eq!(tok.format(), Format::Tiktoken);
    assert_eq!(
        tok.vocab_size() as u64,
        vectors["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.bos_id().map(u64::from), vectors["bos_id"].as_u64());
    assert_eq!(tok.eos_ids()[0] as u64, vectors["eos_id"].as_u64().unwrap());
    let strings = strings();
    let mut r = Report::default();
    for (s, case) in strings.iter().zip(vectors["cases"].as_array().unwrap()) {
        let want = ids_of(&case["ids"]);
        r.check(
            "ids",
            s,
            tok.encode(s, false).expect("encode"),
            want.clone(),
        );
        let plain = case
            .get("ids_no_special")
            .map(ids_of)
            .unwrap_or_else(|| want.clone());
        let opts = EncodeOptions {
            parse_special: false,
            ..EncodeOptions::default()
        };
        r.check(
            "ids_no_special",
            s,
            tok.encode_with(s, &opts).expect("encode"),
            plain,
        );
        let want_dec = case.get("decoded").and_then(Value::as_str).unwrap_or(s);
        let dec = tok.decode(&want).expect("decode");
        r.check("decode", s, dec.as_str(), want_dec);
        if !dec.contains('\u{FFFD}') {
            r.check("stream decode", s, stream_decode(&tok, &want), dec);
        }
        let with_bos = tok.encode(s, true).expect("encode");
        r.check("bos", s, with_bos.first().copied(), tok.bos_id());
    }
    r.finish("tiktoken");
}

fn run_spm(name: &str) {
    let vectors = load_json(&format!("{name}.vectors.json"));
    let tok = Tokenizer::from_file(data(vectors["tokenizer"].as_str().unwrap())).expect("load");
    assert_eq!(tok.format(), Format::SentencePiece);
    assert_eq!(
        tok.vocab_size() as u64,
        vectors["vocab_size"].as_u64().unwrap()
    );
    assert_eq!(tok.bos_id().map(u64::from), vectors["bos_id"].as_u64());
    assert_eq!(
        tok.eos_ids().first().map(|&e| u64::from(e)),
        vectors["eos_id"].as_u64()
    );
    let strings = strings();
    let mut r = Report::default();
    for (s, case) in strings.iter().zip(vectors["cases"].as_array().unwrap()) {
        let want = ids_of(&case["ids"]);
        r.check(
            "ids",
            s,
            tok.encode(s, false).expect("encode"),
            want.clone(),
        );
        let want_dec = case.get("decoded").and_then(Value::as_str).unwrap_or(s);
        let dec = tok.decode(&want).expect("decode");
        r.check("decode", s, dec.as_str(), want_dec);
        if !dec.contains('\u{FFFD}') {
            r.check("stream decode", s, stream_decode(&tok, &want), dec);
        }
    }
    r.finish(name);
}

#[test]
fn sentencepiece_bpe() {
    run_spm("sp_bpe");
}

#[test]
fn sentencepiece_unigram() {
    run_spm("sp_unigram");
}

#[test]
fn sentencepiece_unigram_nmt_nfkc() {
    run_spm("sp_unigram_nfkc");
}

#[test]
fn llama2c() {
    let vectors = load_json("llama2c.vectors.json");
    let strings = strings();
    for file in ["tokenizer", "legacy_tokenizer"] {
        let tok = Tokenizer::from_file(data(vectors[file].as_str().unwrap())).expect("load");
        assert_eq!(tok.format(), Format::Llama2c);
        assert_eq!(
            tok.vocab_size() as u64,
            vectors["vocab_size"].as_u64().unwrap()
        );
        assert_eq!(tok.bos_id().map(u64::from), vectors["bos_id"].as_u64());
        let mut r = Report::default();
        for (s, case) in strings.iter().zip(vectors["cases"].as_array().unwrap()) {
            if case.get("skip").is_some() {
                continue;
            }
            if case.get("error").is_some() {
                r.check("error", s, tok.encode(s, true).is_err(), true);
                continue;
            }
            let want = ids_of(&case["ids"]);
            r.check("ids", s, tok.encode(s, true).expect("encode"), want.clone());
            let want_dec = case.get("decoded").and_then(Value::as_str).unwrap_or(s);
            let dec = tok.decode(&want).expect("decode");
            r.check("decode", s, dec.as_str(), want_dec);
            // per-token decode_token(prev, tok) chained from BOS
            let mut bytes = Vec::new();
            for w in want.windows(2) {
                bytes.extend(tok.decode_token(w[0], w[1]).expect("decode_token"));
            }
            r.check(
                "decode_token",
                s,
                String::from_utf8_lossy(&bytes).as_ref(),
                want_dec,
            );
            if !dec.contains('\u{FFFD}') {
                let mut sd = tok.stream_decoder();
                sd.set_prev(Some(want[0]));
                let mut out = String::new();
                for &id in &want[1..] {
                    out.push_str(&sd.push(id).expect("push"));
                }
                out.push_str(&sd.finish());
                r.check("stream decode", s, out, dec);
            }
        }
        r.finish(file);
    }
}
