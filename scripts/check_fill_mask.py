#!/usr/bin/env python3
"""`modernft predict` on a masked-LM next to transformers' pipeline("fill-mask") on the same folder.

    python scripts/check_fill_mask.py RUN_OR_MODEL_FOLDER [--binary target/release/modernft]

For each text (one [MASK] each), prints both top-5 lists and checks that the tokens are the same, in
the same order, with the same token_str and sequence, and scores within 1e-4. Exits 1 when they differ.
"""
import argparse
import json
import os
import subprocess
import sys

from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast, pipeline

TEXTS = ["the movie was [MASK] .", "a [MASK] and moving film", "the plot is [MASK] but the acting is great",
         "i did n't like the [MASK] at all", "one of the [MASK] films of the year"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--binary", default="target/release/modernft")
    args = ap.parse_args()
    folder = os.path.join(args.model, "model") if os.path.isdir(os.path.join(args.model, "model")) else args.model
    ours = subprocess.run([args.binary, "predict", "--model", args.model, "--input-format", "text"], input="\n".join(TEXTS) + "\n",
                          capture_output=True, text=True, check=True).stdout.splitlines()
    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"), mask_token="[MASK]",
                                  cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", unk_token="[UNK]")
    fill = pipeline("fill-mask", model=AutoModelForMaskedLM.from_pretrained(folder), tokenizer=tok, top_k=5, device="cpu")
    bad = 0
    for text, line in zip(TEXTS, ours):
        mine = json.loads(line)["masks"][0]
        theirs = fill(text)
        print(text)
        for m, t in zip(mine, theirs):
            same = (m["token"], m["token_str"], m["sequence"]) == (t["token"], t["token_str"], t["sequence"]) and abs(m["score"] - t["score"]) <= 1e-4
            bad += not same
            print(f"  {'ok ' if same else 'DIFF'} modernft {m['token']:>6} {m['token_str']!r:>14} {m['score']:.5f}   "
                  f"transformers {t['token']:>6} {t['token_str']!r:>14} {t['score']:.5f}")
            if m["sequence"] != t["sequence"]:
                print(f"       sequence {m['sequence']!r} vs {t['sequence']!r}")
    print("same top-5 tokens and scores" if bad == 0 else f"{bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
