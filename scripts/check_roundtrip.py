#!/usr/bin/env python3
"""Checks modernft's exports with the Python libraries and writes what they compute, so that the Rust
tests (tests/it/roundtrip.rs) can compare modernft's own outputs against it without Python.

Re-run from the repository root (after `cargo build --release`) when the export format changes:

    ./target/release/modernft train --config tests/fixtures/roundtrip/train.toml --overwrite
    ./target/release/modernft save runs/roundtrip --out tests/fixtures/roundtrip/hf --overwrite
    ./target/release/modernft save runs/roundtrip --out tests/fixtures/roundtrip/st \\
        --format sentence-transformers --pooling mean --normalize --overwrite
    python scripts/check_roundtrip.py

It writes tests/fixtures/roundtrip/expected.json with:
  - hf_logits: AutoModelForSequenceClassification + AutoTokenizer on the `hf` export, for TEXTS;
  - st_embeddings: SentenceTransformer(path).encode on the `st` export, for TEXTS;
  - eval_accuracy: transformers' accuracy of tests/fixtures/tiny-v4 (saved by transformers, with its
    own id2label) on tests/fixtures/roundtrip/eval.jsonl, whose labels are label *names*.
"""
import json
import os
import sys

import torch
import transformers
from sentence_transformers import SentenceTransformer
from transformers import AutoModelForSequenceClassification, AutoTokenizer

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(FIX, "roundtrip")
TEXTS = ["a wonderful film", "the plot was predictable and the acting awful", "loved it", "not good , not bad",
         "the camera work was slow but the ending was brilliant and surprising"]


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", file=sys.stderr)
    hf = os.path.join(OUT, "hf")
    tok = AutoTokenizer.from_pretrained(hf)
    model = AutoModelForSequenceClassification.from_pretrained(hf).eval()
    with torch.no_grad():
        enc = tok(TEXTS, padding=True, return_tensors="pt")
        logits = model(**enc).logits.tolist()
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]

    st = SentenceTransformer(os.path.join(OUT, "st"), device="cpu")
    vectors = st.encode(TEXTS, convert_to_numpy=True).tolist()

    # A checkpoint saved by transformers, scored by transformers, on data labelled with names.
    rows = [json.loads(l) for l in open(os.path.join(FIX, "trainer", "train.jsonl"))]
    ref = AutoModelForSequenceClassification.from_pretrained(os.path.join(FIX, "tiny-v4")).eval()
    names = ref.config.id2label
    with open(os.path.join(OUT, "eval.jsonl"), "w") as f:
        for r in rows:
            f.write(json.dumps({"text": r["text"], "label": names[r["label"]]}) + "\n")
    ref_tok = AutoTokenizer.from_pretrained(hf)  # the same tokenizer.json, with special tokens set
    correct = 0
    with torch.no_grad():
        for r in rows:
            pred = ref(**ref_tok([r["text"]], return_tensors="pt")).logits.argmax(-1).item()
            correct += int(pred == r["label"])
    expected = {"texts": TEXTS, "labels": labels, "hf_logits": logits, "st_embeddings": vectors,
                "eval_accuracy": correct / len(rows), "eval_rows": len(rows)}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    print("hf logits", [[round(x, 4) for x in l] for l in logits[:2]], "st dim", len(vectors[0]),
          "eval accuracy", expected["eval_accuracy"], file=sys.stderr)


if __name__ == "__main__":
    main()
