//! Robustness: loaders must never panic on corrupted input, errors are
//! typed, and encode/decode behave on arbitrary text and ids.

use std::path::PathBuf;
use std::sync::OnceLock;

use proptest::prelude::*;
use pteron_tokenizers::{Error, Format, Tokenizer};
use serde_json::Value;

const FIXTURES: &[&str] = &[
    "bytelevel_bpe.tokenizer.json",
    "llama3_bpe.tokenizer.json",
    "hf_sp_bpe.tokenizer.json",
    "hf_sp_unigram.tokenizer.json",
    "hf_unigram.tokenizer.json",
    "hf_wordpiece.tokenizer.json",
    "llama3.tiktoken",
    "sp_bpe.model",
    "sp_unigram.model",
    "sp_unigram_nfkc.model",
    "llama2c.bin",
    "llama2c.legacy.bin",
];

fn read(name: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Deterministic xorshift generator for the fuzz loops.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const PROBES: &[&str] = &[
    "",
    "Hello world",
    " <s> x\t\n",
    "日本語 😀👨‍👩‍👧",
    "a<|endoftext|>b<|begin_of_text|>",
];

/// Whatever loads must also encode/decode without panicking.
fn exercise(t: &Tokenizer, rng: &mut Rng) {
    for p in PROBES {
        let _ = t.encode(p, true);
        let _ = t.encode(p, false);
    }
    let n = t.vocab_size().max(1);
    let ids: Vec<u32> = (0..16).map(|_| rng.below(n + 4) as u32).collect();
    let _ = t.decode(&ids);
    let _ = t.decode_with(&ids, true);
    let mut s = t.stream_decoder();
    for &id in &ids {
        let _ = s.push(id);
    }
    let _ = s.finish();
    for w in ids.windows(2) {
        let _ = t.decode_token(w[0], w[1]);
    }
    let _ = (
        t.bos_id(),
        t.eos_ids(),
        t.id_to_token(ids[0]),
        t.token_to_id("a"),
    );
}

fn try_all(data: &[u8], rng: &mut Rng) {
    if let Ok(t) = Tokenizer::from_bytes(data, None) {
        exercise(&t, rng);
    }
    for f in [
        Format::HuggingFace,
        Format::Tiktoken,
        Format::SentencePiece,
        Format::Llama2c,
    ] {
        if let Ok(t) = Tokenizer::from_bytes(data, Some(f)) {
            exercise(&t, rng);
        }
    }
}

#[test]
fn truncated_and_mutated_files_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for name in FIXTURES {
        let orig = read(name);
        // a few truncation points, including tiny prefixes
        for cut in [
            0,
            1,
            3,
            4,
            7,
            8,
            15,
            16,
            17,
            100,
            orig.len() / 2,
            orig.len() - 1,
        ] {
            try_all(&orig[..cut.min(orig.len())], &mut rng);
        }
        for _ in 0..12 {
            let mut d = orig.clone();
            for _ in 0..1 + rng.below(8) {
                let i = rng.below(d.len());
                match rng.below(3) {
                    0 => d[i] = rng.next() as u8,
                    1 => d[i] ^= 1 << rng.below(8),
                    _ => {
                        d.remove(i);
                    }
                }
            }
            try_all(&d, &mut rng);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(12345);
    for len in [0usize, 1, 2, 5, 16, 17, 64, 300, 2000] {
        for _ in 0..20 {
            let d: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            try_all(&d, &mut rng);
        }
    }
    // plausible-looking headers with hostile sizes
    let mut d = Vec::new();
    d.extend_from_slice(&u32::MAX.to_le_bytes());
    d.extend_from_slice(&1u32.to_le_bytes());
    d.extend_from_slice(&2u32.to_le_bytes());
    d.extend_from_slice(&7u32.to_le_bytes());
    d.extend_from_slice(&0f32.to_bits().to_le_bytes());
    d.extend_from_slice(&u32::MAX.to_le_bytes());
    try_all(&d, &mut rng);
    try_all(b"{}", &mut rng);
    try_all(b"QQ== 0\n", &mut rng);
    try_all(b"\x0a\x02\x0a\x00", &mut rng);
}

/// Replaces a random node of a JSON document with a value of another type.
fn mutate_json(v: &mut Value, rng: &mut Rng, depth: usize) {
    let replace = depth > 6 || rng.below(4) == 0;
    match v {
        Value::Object(m) if !replace && !m.is_empty() => {
            let k = m.keys().nth(rng.below(m.len())).cloned();
            if let Some(k) = k {
                if rng.below(5) == 0 {
                    m.remove(&k);
                } else if let Some(child) = m.get_mut(&k) {
                    mutate_json(child, rng, depth + 1);
                }
            }
        }
        Value::Array(a) if !replace && !a.is_empty() => {
            let i = rng.below(a.len());
            mutate_json(&mut a[i], rng, depth + 1);
        }
        _ => {
            *v = match rng.below(6) {
                0 => Value::Null,
                1 => Value::from(-1),
                2 => Value::from(u64::MAX),
                3 => Value::from("(?<"),
                4 => Value::Array(vec![Value::from(1.5)]),
                _ => Value::Bool(true),
            };
        }
    }
}

#[test]
fn structurally_mutated_json_never_panics() {
    let mut rng = Rng(777);
    for name in FIXTURES.iter().filter(|n| n.ends_with(".json")) {
        let orig: Value = serde_json::from_slice(&read(name)).expect("json");
        for _ in 0..25 {
            let mut v = orig.clone();
            for _ in 0..1 + rng.below(3) {
                mutate_json(&mut v, &mut rng, 0);
            }
            let bytes = serde_json::to_vec(&v).expect("serialize");
            match Tokenizer::from_bytes(&bytes, None) {
                Ok(t) => exercise(&t, &mut rng),
                Err(e) => assert!(
                    matches!(
                        e,
                        Error::Malformed { .. }
                            | Error::Unsupported { .. }
                            | Error::Regex { .. }
                            // the root itself was replaced by a non-object
                            | Error::UnknownFormat { .. }
                    ),
                    "{name}: unexpected error kind {e:?}"
                ),
            }
        }
    }
}

#[test]
fn typed_errors() {
    match Tokenizer::from_bytes(b"\xff\xfe garbage", None) {
        Err(Error::UnknownFormat { tried }) => {
            for f in ["tokenizer.json", "tiktoken", "sentencepiece", "llama2.c"] {
                assert!(tried.contains(f), "{tried}");
            }
        }
        other => panic!("expected UnknownFormat, got {other:?}"),
    }
    assert!(matches!(
        Tokenizer::from_bytes(br#"{"model": {"type": "BPE", "vocab": 5}}"#, None),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        Tokenizer::from_bytes(br#"{"model": {"type": "Fancy"}}"#, None),
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        Tokenizer::from_bytes(b"{ not json", None),
        Err(Error::Malformed { .. })
    ));
    assert!(matches!(
        Tokenizer::from_file("/nonexistent/tokenizer.model"),
        Err(Error::Io { .. })
    ));
    for name in FIXTURES {
        let t = Tokenizer::from_bytes(&read(name), None).expect(name);
        let bad = t.vocab_size() as u32 + 10;
        assert!(
            matches!(t.decode(&[bad]), Err(Error::OutOfRange { .. })),
            "{name}"
        );
        assert!(
            matches!(t.stream_decoder().push(bad), Err(Error::OutOfRange { .. })),
            "{name}"
        );
        assert!(t.decode_token(0, bad).is_err(), "{name}");
    }
    let l2c = Tokenizer::from_bytes(&read("llama2c.bin"), None).unwrap();
    assert!(matches!(l2c.encode("", true), Err(Error::Encode(_))));
}

#[test]
fn detection_and_metadata() {
    let expect = [
        ("bytelevel_bpe.tokenizer.json", Format::HuggingFace),
        ("llama3.tiktoken", Format::Tiktoken),
        ("sp_bpe.model", Format::SentencePiece),
        ("llama2c.bin", Format::Llama2c),
        ("llama2c.legacy.bin", Format::Llama2c),
    ];
    for (name, f) in expect {
        assert_eq!(
            Tokenizer::from_bytes(&read(name), None).unwrap().format(),
            f,
            "{name}"
        );
    }
    let t = Tokenizer::from_bytes(&read("llama3.tiktoken"), None).unwrap();
    let base = t.vocab_size() as u32 - 256;
    assert_eq!(t.token_to_id("<|begin_of_text|>"), Some(base));
    assert_eq!(t.token_to_id("<|end_of_text|>"), Some(base + 1));
    assert_eq!(t.token_to_id("<|eot_id|>"), Some(base + 9));
    assert_eq!(
        t.token_to_id("<|reserved_special_token_2|>"),
        Some(base + 12)
    );
    assert_eq!(
        t.token_to_id("<|reserved_special_token_245|>"),
        Some(base + 255)
    );
    assert!(t.is_special(base + 9));
    assert!(t.eos_ids().contains(&(base + 9)));
    let sp = Tokenizer::from_bytes(&read("sp_bpe.model"), None).unwrap();
    assert_eq!(sp.bos_id(), Some(1));
    assert_eq!(sp.eos_ids(), vec![2]);
    assert_eq!(sp.id_to_token(1).as_deref(), Some("<s>"));
    assert!(sp.is_special(1) && !sp.is_special(100));
    let hf = Tokenizer::from_bytes(&read("llama3_bpe.tokenizer.json"), None).unwrap();
    assert_eq!(hf.bos_id(), hf.token_to_id("<|begin_of_text|>"));
    assert!(hf
        .eos_ids()
        .contains(&hf.token_to_id("<|eot_id|>").unwrap()));
}

#[test]
fn stream_decoder_buffers_partial_utf8() {
    let t = Tokenizer::from_bytes(&read("llama3.tiktoken"), None).unwrap();
    // single-byte tokens 0..=255 are ranks of raw bytes in this file
    let euro = "€".as_bytes();
    let mut s = t.stream_decoder();
    assert_eq!(s.push(u32::from(euro[0])).unwrap(), "");
    assert_eq!(s.push(u32::from(euro[1])).unwrap(), "");
    assert_eq!(s.pending_bytes(), &euro[..2]);
    assert_eq!(s.push(u32::from(euro[2])).unwrap(), "€");
    assert_eq!(s.push(u32::from(b'!')).unwrap(), "!");
    assert_eq!(s.push(0xF0).unwrap(), "");
    assert_eq!(s.push(u32::from(b'x')).unwrap(), "\u{FFFD}x");
    assert_eq!(s.push(0xE2).unwrap(), "");
    assert_eq!(s.finish(), "\u{FFFD}");
}

fn loaded(name: &'static str) -> &'static Tokenizer {
    static CACHE: OnceLock<Vec<(&'static str, Tokenizer)>> = OnceLock::new();
    let all = CACHE.get_or_init(|| {
        FIXTURES
            .iter()
            .map(|n| (*n, Tokenizer::from_bytes(&read(n), None).expect(n)))
            .collect()
    });
    &all.iter().find(|(n, _)| *n == name).expect("fixture").1
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(
            prop_oneof![
                Just(" ".to_string()),
                Just("  ".to_string()),
                Just("\n".to_string()),
                Just("\t".to_string()),
                Just("é".to_string()),
                Just("e\u{301}".to_string()),
                Just("😀".to_string()),
                Just("👨‍👩‍👧".to_string()),
                Just("日本".to_string()),
                Just("123".to_string()),
                Just("<s>".to_string()),
                Just("<|endoftext|>".to_string()),
                "[a-zA-Z]{1,8}",
            ],
            0..12
        )
        .prop_map(|v| v.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn lossless_round_trips(s in any_text()) {
        // byte-level BPE, tiktoken: always lossless (specials included)
        for name in ["bytelevel_bpe.tokenizer.json", "llama3_bpe.tokenizer.json", "llama3.tiktoken"] {
            let t = loaded(name);
            let ids = t.encode(&s, false).unwrap();
            let want = if name.starts_with("llama3_bpe") {
                // NFC normalizer
                use unicode_normalization::UnicodeNormalization;
                s.nfc().collect::<String>()
            } else {
                s.clone()
            };
            prop_assert_eq!(t.decode(&ids).unwrap(), want, "{}", name);
        }
        // SentencePiece unigram without whitespace folding, byte fallback:
        // lossless for text that does not contain the control pieces.
        if !s.contains("<s>") {
            let t = loaded("sp_unigram.model");
            let ids = t.encode(&s, false).unwrap();
            prop_assert_eq!(t.decode(&ids).unwrap(), s.clone());
        }
    }

    #[test]
    fn encode_decode_never_panic(s in any_text(), raw in proptest::collection::vec(any::<u32>(), 0..24)) {
        for name in FIXTURES {
            let t = loaded(name);
            let ids = match t.encode(&s, true) {
                Ok(ids) => ids,
                Err(e) => {
                    prop_assert!(s.is_empty(), "{}: {:?}", name, e);
                    continue;
                }
            };
            // all produced ids decode
            t.decode(&ids).unwrap();
            let mut sd = t.stream_decoder();
            for &id in &ids {
                sd.push(id).unwrap();
            }
            sd.finish();
            // arbitrary ids: Ok or a typed out-of-range error
            let n = t.vocab_size() as u32;
            let ids: Vec<u32> = raw.iter().map(|&x| x % (n + 8)).collect();
            match t.decode(&ids) {
                Ok(_) => prop_assert!(ids.iter().all(|&i| i < n)),
                Err(Error::OutOfRange { id, .. }) => prop_assert!(id >= n),
                Err(e) => prop_assert!(false, "{}: {:?}", name, e),
            }
        }
    }
}
