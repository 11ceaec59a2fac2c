#!/usr/bin/env python3
"""Generate tokenizer fixtures and conformance vectors for pteron-tokenizers.

Runs fully offline. Trains small tokenizers with the reference Python
libraries (`tokenizers`, `sentencepiece`, `tiktoken`, `pytorch_tokenizers`),
encodes a deterministic set of test strings with them and writes everything
to crates/pteron-tokenizers/tests/data/.

Usage (from the repository root):
    conformance/.venv/bin/python conformance/tokenizers/make_vectors.py
"""

import base64
import json
import os
import random
import struct
import sys
import tempfile

import sentencepiece as spm
import tiktoken
from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "crates", "pteron-tokenizers", "tests", "data")

SEED = 20240611

LLAMA3_PAT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# --------------------------------------------------------------------------
# Text generation
# --------------------------------------------------------------------------

EN = (
    "the of and to in is was for that on as with by at from his it an were are "
    "which this be or has had not first one their its new after who they have her "
    "she two been other when there all during into school time may years more most "
    "only over city some world would where later up such used many can state about "
    "national out known university united then made model token runtime device "
    "tensor graph kernel memory buffer inference export program operator I'm you're "
    "we've they'll she'd it's don't can't won't"
).split()
FR = "le la les des une été très français où déjà garçon naïve cœur à ça Noël forêt".split()
DE = "über Straße schön Mädchen Größe fünf Äpfel Öl Übung weiß".split()
ES = "año niño señor mañana corazón canción ¿qué? ¡hola!".split()
RU = "привет мир это тест язык модель данные Москва ёлка".split()
EL = "γειά σου κόσμε αλφάβητο Ελλάδα λόγος".split()
ZH = "我们 你好 世界 中文 测试 模型 数据 北京 学习 计算机 语言".split()
JA = "こんにちは 世界 カタカナ ひらがな 東京 日本語 テスト".split()
KO = "안녕하세요 세계 한국어 테스트 서울".split()
AR = "مرحبا العالم اللغة العربية".split()
HI = "नमस्ते दुनिया हिन्दी भाषा".split()
TH = "สวัสดี ภาษาไทย".split()
EMOJI = [
    "😀", "🎉", "👍", "👍🏽", "❤️", "🇫🇷", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🤖", "🔥", "✨", "🧑‍💻", "🙂",
]
CODE = [
    "def foo(x):\n    return x + 1\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "fn main() {\n\tprintln!(\"{}\", 42);\n}",
    "if x == None:\n        pass",
    "let v: Vec<u32> = vec![1, 2, 3];",
    "<html><body class=\"x\">Hi</body></html>",
    "SELECT * FROM users WHERE id = 7;",
    "x = {'a': 1, \"b\": [2, 3]}",
    "#include <stdio.h>\nint main(void){return 0;}",
    "$ cargo test -- --nocapture",
    "a_b-c.d/e\\f|g&h",
    "print(f'{name!r:>10}')",
]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0915\u094d\u0937", "A\u030a"]
SPECIALS_IN_TEXT = ["<|endoftext|>", "<s>", "</s>", "<|begin_of_text|>", "<|eot_id|>", "<unk>", "<tool>", "<mask>"]

WORD_POOLS = [EN] * 6 + [FR, DE, ES, RU, EL, ZH, JA, KO, AR, HI, TH]


def rand_number(rng):
    k = rng.random()
    if k < 0.4:
        return str(rng.randint(0, 100))
    if k < 0.7:
        return str(rng.randint(0, 10 ** rng.randint(2, 12)))
    if k < 0.85:
        return f"{rng.uniform(-1000, 1000):.{rng.randint(1, 5)}f}"
    return "".join(rng.choice("0123456789") for _ in range(rng.randint(5, 25)))


def rand_ws(rng):
    return rng.choice([" ", " ", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\r\n", "    ", "\u00a0", "\u3000"])


def rand_sentence(rng, n_words):
    pool = rng.choice(WORD_POOLS)
    out = []
    for _ in range(n_words):
        r = rng.random()
        if r < 0.7:
            w = rng.choice(pool)
        elif r < 0.8:
            w = rand_number(rng)
        elif r < 0.85:
            w = rng.choice(EMOJI)
        elif r < 0.9:
            w = rng.choice(",.;:!?-()[]\"'") + rng.choice(pool)
        elif r < 0.93:
            w = rng.choice(COMBINING)
        else:
            w = rng.choice(pool).capitalize()
        out.append(w)
        out.append(rand_ws(rng) if rng.random() < 0.12 else " ")
    s = "".join(out).rstrip(" ")
    if rng.random() < 0.5:
        s += rng.choice([".", "!", "?", "...", ":", ""])
    return s


def training_text(rng):
    lines = []
    for _ in range(6000):
        r = rng.random()
        if r < 0.8:
            lines.append(rand_sentence(rng, rng.randint(3, 25)))
        elif r < 0.92:
            lines.append(rng.choice(CODE))
        else:
            lines.append(" ".join(rand_number(rng) for _ in range(rng.randint(1, 8))))
    return lines


def edge_cases():
    return [
        "",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n\n",
        "\r\n",
        "a",
        "Hello",
        "Hello world",
        " Hello world",
        "Hello  world",
        "Hello world ",
        "   leading and trailing   ",
        "tabs\tand\ttabs",
        "line1\nline2\r\nline3",
        "I'm here, you're there, they'll go. IT'S LOUD. We'VE",
        "1234567890",
        "3.14159 2.71828 1e10 -42 +7",
        "0000000000000000000000000000",
        "你好，世界！这是一个测试。",
        "日本語のテキストとカタカナ",
        "한국어 텍스트",
        "Привет, мир!",
        "Γειά σου Κόσμε",
        "مرحبا بالعالم",
        "नमस्ते दुनिया",
        "ภาษาไทย",
        "café naïve résumé",
        "cafe\u0301 nai\u0308ve",
        "\u00c5ngstr\u00f6m vs A\u030angstro\u0308m",
        "ﬁ ﬂ ① ２ ｶ ℌ ㎞",
        "emoji 😀 and 👨‍👩‍👧‍👦 family and flag 🇫🇷 and 👍🏽",
        "🏳️‍🌈🧑‍💻🤖",
        "😀😀😀😀",
        "def foo(x):\n    return x + 1\n",
        "    indented code\n\t\ttabbed",
        "fn main() { println!(\"hi\"); }",
        "<|endoftext|>",
        "Hello<|endoftext|>world",
        "Hello <|endoftext|> world",
        "<s>Hello</s>",
        "<s> Hello </s>",
        "text <s>inside</s> text",
        "<|begin_of_text|>Hi<|eot_id|>",
        "<|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>",
        "<unk>",
        "a<|endoftext|><|endoftext|>b",
        "▁already▁has▁metaspace",
        "multiple     spaces      here",
        "trailing newline\n",
        "\u200b zero width \u200d joiner",
        "\u00a0nbsp\u00a0",
        "\u3000ideographic\u3000space",
        "x" * 300,
        "ab" * 100,
        " ".join(["word"] * 50),
        "MiXeD CaSe TeXt",
        "UPPER CASE",
        "email@example.com https://example.com/path?q=1&r=2",
        "price: $12.99 (-15%)",
        "\\n is not a newline",
        "quotes: \"double\" 'single' `back`",
        "\x00\x01\x02 control",
        "\U0001f600",
        "\U00010348 gothic",
        "𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
        "ﷺ",
        "é",
        "e\u0301",
        "ß",
        "İstanbul",
        "a\tb\nc\rd",
        "..." ,
        "!!!???",
        "'s 't 're 've 'm 'll 'd",
        "123 4567 89012",
        "۱۲۳ ١٢٣ ๑๒๓",
        "Ⅻ ½ ²",
        "use <tool> now",
        "x<tool>y",
        "<tool>",
        "a  <mask> b",
        "word<mask>",
        "  <mask>",
        "<mask><mask>",
        "full！width？ ｈｅｌｌｏ",
        " line sep",
    ]


def test_strings(rng):
    out = edge_cases()
    while len(out) < 1800:
        r = rng.random()
        if r < 0.6:
            s = rand_sentence(rng, rng.randint(1, 18))
        elif r < 0.7:
            s = rng.choice(CODE)
            if rng.random() < 0.5:
                s = s.replace("    ", rng.choice(["\t", "  ", "        "]))
        elif r < 0.78:
            s = rand_ws(rng) + rand_sentence(rng, rng.randint(1, 6)) + rand_ws(rng)
        elif r < 0.85:
            a = rand_sentence(rng, rng.randint(1, 5))
            b = rand_sentence(rng, rng.randint(1, 5))
            s = a + rng.choice(["", " "]) + rng.choice(SPECIALS_IN_TEXT) + rng.choice(["", " "]) + b
        elif r < 0.9:
            s = "".join(rng.choice(EMOJI + COMBINING + ["\u200d", "\ufe0f"]) for _ in range(rng.randint(1, 6)))
        elif r < 0.95:
            s = rand_number(rng) + rand_ws(rng) + rand_number(rng)
        else:
            # random code points (valid, non-surrogate)
            cps = []
            for _ in range(rng.randint(1, 10)):
                c = rng.choice([rng.randint(0x20, 0x7E), rng.randint(0xA0, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                                rng.randint(0xE000, 0xFFFD), rng.randint(0x10000, 0x1FAFF)])
                cps.append(chr(c))
            s = "".join(cps)
        out.append(s)
    return out


# --------------------------------------------------------------------------
# Tokenizer construction
# --------------------------------------------------------------------------


def train_byte_level(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        min_frequency=2,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(lines, trainer)
    # an added (non-special) token with flags, and an extra special token
    tok.add_tokens([AddedToken("<tool>", single_word=True, lstrip=False, rstrip=False, normalized=False)])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False)])
    return tok


def llama3_style_from(byte_level):
    """Llama-3 style: Split(regex) + ByteLevel(use_regex=False), BOS template."""
    data = json.loads(byte_level.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] == "<|endoftext|>"]
    base = len(data["model"]["vocab"])
    for i, name in enumerate(["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]):
        data["added_tokens"].append({
            "id": base + i, "content": name, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": True,
        })
    data["normalizer"] = {"type": "NFC"}
    data["pre_tokenizer"] = {
        "type": "Sequence",
        "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PAT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ],
    }
    data["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                           {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                         {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                         {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [base],
                                                          "tokens": ["<|begin_of_text|>"]}},
            },
        ],
    }
    data["model"]["ignore_merges"] = True
    return Tokenizer.from_str(json.dumps(data))


def train_spm(lines, model_type, vocab_size, extra):
    prefix = os.path.join(tempfile.mkdtemp(), "m")
    extra = dict(extra)
    extra.setdefault("normalization_rule_name", "identity")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_prefix=prefix,
        model_type=model_type,
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.995,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        **extra,
    )
    with open(prefix + ".model", "rb") as f:
        return f.read()


def sp_to_hf_json(sp, model_type, llama_style=True):
    """Build a tokenizer.json equivalent in spirit to the SentencePiece model."""
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    added = []
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i):
            added.append({"id": i, "content": pieces[i], "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True})
    if model_type == "bpe":
        vocab = {p: i for i, p in enumerate(pieces)}
        merges = []
        for i, p in enumerate(pieces):
            if sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i) or len(p) < 2:
                continue
            for k in range(1, len(p)):
                a, b = p[:k], p[k:]
                if a in vocab and b in vocab:
                    merges.append((i, vocab[a], vocab[b], a, b))
        merges.sort()
        model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                 "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                 "vocab": vocab, "merges": [[m[3], m[4]] for m in merges]}
    else:
        model = {"type": "Unigram", "unk_id": sp.unk_id(), "byte_fallback": True,
                 "vocab": [[pieces[i], sp.get_score(i)] for i in range(n)]}
    if llama_style:
        normalizer = {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]}
        pre = None
        decoder = {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    else:
        normalizer = {"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "Strip", "strip_left": False, "strip_right": True}]}
        pre = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
        decoder = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}]}
    post = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [sp.bos_id()], "tokens": ["<s>"]}},
    }
    data = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
            "decoder": decoder, "model": model}
    return Tokenizer.from_str(json.dumps(data, ensure_ascii=False))


def train_hf_unigram(lines):
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(),
                                           normalizers.Replace(Regex(r"\s+"), " "), normalizers.NFC()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Punctuation(),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
    ])
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.UnigramTrainer(vocab_size=1200, special_tokens=["<unk>", "<s>", "</s>"],
                                      unk_token="<unk>", show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def train_hf_wordpiece(lines):
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents(), normalizers.Lowercase()]) \
        if False else normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=1200, special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                                        show_progress=False)
    tok.train_from_iterator(lines, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    return tok


def tiktoken_ranks_from_byte_level(tok):
    """Derive tiktoken mergeable ranks (bytes -> rank) from a byte-level BPE."""
    data = json.loads(tok.to_str())
    b2u = bytes_to_unicode()
    u2b = {v: k for k, v in b2u.items()}

    def to_bytes(s):
        return bytes(u2b[c] for c in s)

    ranks = {}
    for b in range(256):
        ranks[bytes([b])] = b
    for m in data["model"]["merges"]:
        a, b = m if isinstance(m, list) else m.split(" ", 1)
        merged = to_bytes(a) + to_bytes(b)
        if merged not in ranks:
            ranks[merged] = len(ranks)
    return ranks


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


# --------------------------------------------------------------------------
# Vector recording
# --------------------------------------------------------------------------


def dump(name, obj):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


def record_hf(name, tok, strings, n_bos=200):
    path = name + ".tokenizer.json"
    tok.save(os.path.join(OUT, path))
    tok = Tokenizer.from_file(os.path.join(OUT, path))
    cases = []
    for i, s in enumerate(strings):
        ids = tok.encode(s, add_special_tokens=False).ids
        dec = tok.decode(ids, skip_special_tokens=False)
        case = {"ids": ids}
        if dec != s:
            case["decoded"] = dec
        if i < n_bos:
            case["ids_special"] = tok.encode(s, add_special_tokens=True).ids
            tok.encode_special_tokens = True
            plain = tok.encode(s, add_special_tokens=False).ids
            tok.encode_special_tokens = False
            if plain != ids:
                case["ids_no_special"] = plain
            dec2 = tok.decode(ids, skip_special_tokens=True)
            if dec2 != dec:
                case["decoded_skip_special"] = dec2
        cases.append(case)
    dump(name + ".vectors.json", {"kind": "hf", "tokenizer": path, "cases": cases})


def record_spm(name, model_bytes, strings):
    path = name + ".model"
    with open(os.path.join(OUT, path), "wb") as f:
        f.write(model_bytes)
    sp = spm.SentencePieceProcessor(model_file=os.path.join(OUT, path))
    cases = []
    for s in strings:
        ids = sp.encode(s)
        dec = sp.decode(ids)
        case = {"ids": ids}
        if dec != s:
            case["decoded"] = dec
        cases.append(case)
    dump(name + ".vectors.json", {"kind": "sentencepiece", "tokenizer": path, "bos_id": sp.bos_id(),
                                  "eos_id": sp.eos_id(), "vocab_size": sp.get_piece_size(), "cases": cases})


def record_tiktoken(name, ranks, strings):
    from pytorch_tokenizers import TiktokenTokenizer

    path = name + ".tiktoken"
    with open(os.path.join(OUT, path), "wb") as f:
        for tb, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(tb) + b" " + str(r).encode() + b"\n")
    t = TiktokenTokenizer(os.path.join(OUT, path))
    cases = []
    for s in strings:
        ids = t.encode(s, bos=False, eos=False, allowed_special="all")
        plain = t.encode(s, bos=False, eos=False)
        dec = t.decode(ids)
        case = {"ids": ids}
        if plain != ids:
            case["ids_no_special"] = plain
        if dec != s:
            case["decoded"] = dec
        cases.append(case)
    dump(name + ".vectors.json", {"kind": "tiktoken", "tokenizer": path, "bos_id": t.bos_id, "eos_id": t.eos_id,
                                  "vocab_size": t.n_words, "cases": cases})


def read_llama2c_vocab(data):
    n, _bos, _eos, _maxlen = struct.unpack_from("<IIII", data, 0)
    off = 16
    vocab = []
    for _ in range(n):
        _score, ln = struct.unpack_from("<fI", data, off)
        off += 8
        vocab.append(data[off:off + ln])
        off += ln
    return vocab


def llama2c_piece(vocab, prev, tok):
    """ExecuTorch Llama2cTokenizer::decode(prev, tok) as bytes."""
    piece = vocab[tok]
    if prev == 1 and piece.startswith(b" "):
        piece = piece[1:]
    if len(piece) == 6 and piece.startswith(b"<0x") and piece.endswith(b">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece


def record_llama2c(name, sp_model_name, strings):
    from pytorch_tokenizers import CppLlama2cTokenizer, Llama2cTokenizer

    path = name + ".bin"
    Llama2cTokenizer(os.path.join(OUT, sp_model_name)).export(os.path.join(OUT, path))
    # Legacy llama2.c layout (karpathy/llama2.c): only i32 max_token_length header.
    with open(os.path.join(OUT, path), "rb") as f:
        data = f.read()
    with open(os.path.join(OUT, name + ".legacy.bin"), "wb") as f:
        f.write(data[12:])
    vocab = read_llama2c_vocab(data)
    t = CppLlama2cTokenizer()
    t.load(os.path.join(OUT, path))
    # The pybind binding only exposes decode(token) (no prev token); cross-check
    # our reading of the per-token decode on every id where it returns valid UTF-8.
    for tok in range(len(vocab)):
        try:
            ref = t.decode(tok).encode("utf-8")
        except UnicodeDecodeError:
            continue  # partial UTF-8 piece (byte fallback)
        mine = llama2c_piece(vocab, 0, tok)
        if mine == b"\x00":
            mine = b""  # C-string API truncates the NUL byte piece
        assert ref == mine, (tok, ref, mine)
    cases = []
    for s in strings:
        if "\x00" in s:
            cases.append({"skip": True})
            continue  # C string API: cannot represent NUL
        try:
            ids = list(t.encode(s, 1, 0))
        except RuntimeError:
            cases.append({"error": True})  # e.g. empty text: EncodeFailure
            continue
        out = b""
        prev = ids[0]
        for tok in ids[1:]:
            piece = llama2c_piece(vocab, prev, tok)
            out += piece
            prev = tok
        case = {"ids": ids}
        dec = out.decode("utf-8", "replace")
        if dec != s:
            case["decoded"] = dec
        cases.append(case)
    dump(name + ".vectors.json", {"kind": "llama2c", "tokenizer": path, "legacy_tokenizer": name + ".legacy.bin",
                                  "bos_id": t.bos_tok(), "eos_id": t.eos_tok(), "vocab_size": t.vocab_size(),
                                  "cases": cases})


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = random.Random(SEED)
    lines = training_text(rng)
    strings = test_strings(random.Random(SEED + 1))
    dump("strings.json", strings)

    bl = train_byte_level(lines)
    record_hf("bytelevel_bpe", bl, strings)
    record_hf("llama3_bpe", llama3_style_from(bl), strings)
    record_tiktoken("llama3", tiktoken_ranks_from_byte_level(bl), strings)

    sp_bpe = train_spm(lines, "bpe", 1000, {"remove_extra_whitespaces": True,
                                            "user_defined_symbols": ["<tool>"]})
    sp_uni = train_spm(lines, "unigram", 1000, {"remove_extra_whitespaces": False, "split_digits": True})
    # default SentencePiece normalization (nmt_nfkc precompiled charsmap)
    sp_nfkc = train_spm(lines, "unigram", 800, {"normalization_rule_name": "nmt_nfkc"})
    record_spm("sp_bpe", sp_bpe, strings)
    record_spm("sp_unigram", sp_uni, strings)
    # (first 1000 strings only: this model's charsmap alone is ~240 KB)
    record_spm("sp_unigram_nfkc", sp_nfkc, strings[:1000])

    sp1 = spm.SentencePieceProcessor(model_proto=sp_bpe)
    sp2 = spm.SentencePieceProcessor(model_proto=sp_uni)
    record_hf("hf_sp_bpe", sp_to_hf_json(sp1, "bpe"), strings)
    record_hf("hf_sp_bpe_metaspace", sp_to_hf_json(sp1, "bpe", llama_style=False), strings)
    record_hf("hf_sp_unigram", sp_to_hf_json(sp2, "unigram"), strings)
    record_hf("hf_unigram", train_hf_unigram(lines), strings)
    record_hf("hf_wordpiece", train_hf_wordpiece(lines), strings)

    record_llama2c("llama2c", "sp_bpe.model", strings)

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total / 1e6:.2f} MB to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
