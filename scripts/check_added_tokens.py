#!/usr/bin/env python3
"""A modernft model trained with `[model] add_tokens`, loaded by transformers as anyone would.

    python scripts/check_added_tokens.py RUN_OR_MODEL_FOLDER TOKEN [TOKEN ...] [--binary target/release/modernft]

Checks, with `AutoTokenizer` and `AutoModelFor...` on the folder alone:
- every token is one id in transformers' tokenizer, the id modernft's tokenizer.json gives it, and a
  text holding the tokens encodes to the same ids in both;
- config.json's vocab_size equals len(tokenizer) (or more) and the token-embedding rows;
- the logits are modernft's: `modernft predict --logits` (a classifier) or fill-mask scores (a
  masked-LM, through scripts/check_fill_mask.py's comparison) on texts holding the new tokens.
Exits 1 on any difference.
"""
import argparse
import json
import os
import subprocess
import sys

import torch
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("tokens", nargs="+")
    ap.add_argument("--binary", default="target/release/modernft")
    args = ap.parse_args()
    folder = os.path.join(args.model, "model") if os.path.isdir(os.path.join(args.model, "model")) else args.model
    bad = 0
    tok = AutoTokenizer.from_pretrained(folder)
    ours = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
    print(f"{folder}: transformers {type(tok).__name__}, len(tokenizer) = {len(tok)}")
    for t in args.tokens:
        theirs, mine = tok.convert_tokens_to_ids(t), ours.token_to_id(t)
        ok = theirs == mine and theirs is not None and theirs != tok.unk_token_id
        bad += not ok
        print(f"  {'ok ' if ok else 'DIFF'} {t!r}: transformers id {theirs}, tokenizer.json id {mine}")
    texts = [f"this {t} is here and {t} again" for t in args.tokens] + [" ".join(args.tokens)]
    for text in texts:
        theirs = tok(text)["input_ids"]
        mine = ours.encode(text).ids
        ok = theirs == mine
        bad += not ok
        print(f"  {'ok ' if ok else 'DIFF'} ids of {text!r}: {theirs}" + ("" if ok else f" vs tokenizer.json {mine}"))
    config = AutoConfig.from_pretrained(folder)
    arch = (config.architectures or ["ModernBertModel"])[0]
    model = (AutoModelForMaskedLM if arch.endswith("MaskedLM") else AutoModelForSequenceClassification).from_pretrained(folder).eval()
    rows = model.get_input_embeddings().weight.shape[0]
    ok = rows == config.vocab_size and config.vocab_size >= len(tok)
    bad += not ok
    print(f"  {'ok ' if ok else 'DIFF'} vocab_size {config.vocab_size}, embedding rows {rows}, len(tokenizer) {len(tok)}")
    if arch.endswith("MaskedLM"):
        masked = [f"the {t} was [MASK] ." for t in args.tokens] + [f"a [MASK] {t}" for t in args.tokens]
        out = subprocess.run([args.binary, "predict", "--model", args.model, "--input-format", "text"], input="\n".join(masked) + "\n",
                             capture_output=True, text=True, check=True).stdout.splitlines()
        for text, line in zip(masked, out):
            enc = tok(text, return_tensors="pt")
            with torch.no_grad():
                logits = model(**enc).logits[0]
            at = (enc["input_ids"][0] == tok.mask_token_id).nonzero()[0, 0]
            probs = logits[at].softmax(-1)
            top = probs.topk(5)
            mine = json.loads(line)["masks"][0]
            same = [m["token"] for m in mine] == top.indices.tolist() and max(abs(m["score"] - s) for m, s in zip(mine, top.values.tolist())) <= 1e-4
            bad += not same
            print(f"  {'ok ' if same else 'DIFF'} fill-mask {text!r}: modernft {[(m['token'], round(m['score'], 5)) for m in mine]}"
                  + ("" if same else f" vs transformers {list(zip(top.indices.tolist(), [round(s, 5) for s in top.values.tolist()]))}"))
    else:
        out = subprocess.run([args.binary, "predict", "--model", args.model, "--logits"], input="\n".join(texts) + "\n",
                             capture_output=True, text=True, check=True).stdout.splitlines()
        for text, line in zip(texts, out):
            with torch.no_grad():
                theirs = model(**tok(text, return_tensors="pt")).logits[0].tolist()
            mine = json.loads(line)["logits"]
            diff = max(abs(a - b) for a, b in zip(mine, theirs))
            ok = diff <= 1e-4
            bad += not ok
            print(f"  {'ok ' if ok else 'DIFF'} logits {text!r}: modernft {[round(x, 5) for x in mine]}, transformers {[round(x, 5) for x in theirs]} (max diff {diff:.1e})")
    print("all equal" if not bad else f"{bad} difference(s)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
