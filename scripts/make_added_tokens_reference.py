#!/usr/bin/env python3
"""Added-token reference (tests/it/vocabulary.rs), from the pinned stack. Run from the repository root:

    python scripts/make_added_tokens_reference.py

Loads tests/fixtures/tiny-mlm (its tokenizer and ModernBertForMaskedLM), adds TOKENS with
`tokenizer.add_tokens` and grows the model with `resize_token_embeddings(len(tokenizer))` (the
default, mean_resizing=True), and writes tests/fixtures/added-tokens.json:
  tokens        each token's id after add_tokens (in the order given)
  len           len(tokenizer)
  encodings     TEXTS → input_ids with special tokens
  old_rows      the embedding rows before
  new_rows      the grown rows of model.embeddings.tok_embeddings.weight
  new_bias      the grown entries of decoder.bias
  vocab_size    config.vocab_size after the resize
"""
import json
import os

import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "tiny-mlm")
# New words, a phrase, a token the vocabulary already has ("the"), a repeat.
TOKENS = ["zebra", "quokka stew", "the", "COVID-19", "zebra"]
TEXTS = ["a zebra ate quokka stew", "thezebra and the COVID-19 test", "nothing new here", "zebra"]


def main():
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(FIXTURE)
    model = AutoModelForMaskedLM.from_pretrained(FIXTURE).eval()
    old = model.get_input_embeddings().weight.shape[0]
    tok.add_tokens(TOKENS)
    model.resize_token_embeddings(len(tok))
    emb = model.get_input_embeddings().weight.detach()
    out = {
        "tokens": [[t, tok.convert_tokens_to_ids(t)] for t in TOKENS],
        "len": len(tok),
        "encodings": [[t, tok(t)["input_ids"]] for t in TEXTS],
        "old_rows": old,
        "new_rows": emb[old:].tolist(),
        "new_bias": model.decoder.bias.detach()[old:].tolist(),
        "vocab_size": model.config.vocab_size,
    }
    with open(os.path.join(ROOT, "tests", "fixtures", "added-tokens.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("new_rows",)}))


if __name__ == "__main__":
    main()
