"""Step 1 of the LLM fixtures: a 512-token SentencePiece BPE tokenizer trained on a
generated corpus, and a random Llama-style checkpoint for `params.json`.

Also writes `checkpoint_small.pth` for `params_small.json` (dim 32, EOS never
greedy-chosen). Weights are scaled so activations keep roughly unit variance through the residual
stream (linear weights ~ N(0, 1/fan_in)) and the output projection is amplified so
greedy decoding is decisive but still changes from token to token.

Usage: conformance/.venv/bin/python conformance/llm/make_tokenizer_and_checkpoint.py OUT_DIR
"""
import io
import json
import os
import random
import sys

import sentencepiece as spm
import torch

HERE = os.path.dirname(os.path.abspath(__file__))

WORDS = (
    "once upon a time there was little girl named lily she liked to play outside "
    "with her dog in the park one day saw big red ball under tree and wanted it "
    "mom said we can go home now because sun is hot but they were happy together "
    "the cat jumped over fence ran away bird sang song small boy tom found shiny "
    "stone river water cold friend helped him climb hill blue sky cloud rain wind "
    "café naïve résumé über 東京 ÿ"
).split()


def corpus(n=4000, seed=0):
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(4, 14)
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        s = s[0].upper() + s[1:] + rng.choice([".", "!", "?", ","])
        lines.append(s)
    return lines


def train_tokenizer(out_dir, vocab=512):
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()),
        model_writer=model,
        vocab_size=vocab,
        model_type="bpe",
        byte_fallback=True,
        character_coverage=1.0,
        bos_id=1,
        eos_id=2,
        unk_id=0,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
        normalization_rule_name="identity",
    )
    path = os.path.join(out_dir, "tokenizer.model")
    with open(path, "wb") as fh:
        fh.write(model.getvalue())
    return path


def make_checkpoint(out_dir, params, seed=1234, out_gain=4.0, filename="checkpoint.pth", no_eos=False):
    from executorch.examples.models.llama.llama_transformer import construct_transformer
    from executorch.examples.models.llama.model_args import ModelArgs

    args = ModelArgs(max_seq_len=128, max_context_len=128, **params)
    model = construct_transformer(args)
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, t in model.state_dict().items():
        if name.endswith("norm.weight") or "norm" in name.split(".")[-2]:
            v = torch.ones_like(t) + 0.1 * torch.randn(t.shape, generator=g)
        elif name == "tok_embeddings.weight":
            v = torch.randn(t.shape, generator=g)
        elif t.dim() == 2:
            fan_in = t.shape[1]
            gain = out_gain if name == "output.weight" else 1.0
            v = torch.randn(t.shape, generator=g) * (gain / fan_in ** 0.5)
        else:
            # Buffers (rope tables, caches) are recomputed by the model: skip.
            continue
        sd[name] = v.contiguous()
    if no_eos:
        # EOS (id 2) gets a zero output row: its logit stays 0 while the others spread
        # by ~out_gain, so greedy decoding runs the full 64 tokens.
        sd["output.weight"][2].zero_()
    path = os.path.join(out_dir, filename)
    torch.save(sd, path)
    return path


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(HERE, "params.json")) as fh:
        params = json.load(fh)
    print(train_tokenizer(out_dir, params["vocab_size"]))
    print(make_checkpoint(out_dir, params))
    # A narrower model (dim 32) for the newer fixtures, to keep the committed data small.
    with open(os.path.join(HERE, "params_small.json")) as fh:
        small = json.load(fh)
    print(make_checkpoint(out_dir, small, filename="checkpoint_small.pth", no_eos=True))


if __name__ == "__main__":
    main()
