#!/usr/bin/env python3
"""Real clients against `modernft serve`: the `openai` package and huggingface_hub's InferenceClient
(pinned in scripts/requirements.txt), each next to `modernft embed` on the same texts.

    python scripts/check_clients.py MODEL_FOLDER [--binary target/release/modernft]

Starts `modernft serve --model MODEL_FOLDER --port 0`, then
- openai: `OpenAI(base_url=.../v1).embeddings.create(input=texts)` (the client asks for base64 by
  default and decodes it) and again with encoding_format="float";
- huggingface_hub: `InferenceClient(base_url).feature_extraction(text)` per text (POST /);
compares every vector with `modernft embed --normalize` (max abs difference ≤ 1e-5), prints the
differences and exits 1 if any is larger.
"""
import argparse
import json
import subprocess
import sys
import threading

import numpy as np
from huggingface_hub import InferenceClient
from openai import OpenAI

TEXTS = ["the movie was great", "a terrible , boring plot", "ok",
         "one of the best films of the year , with a cast that works", "what is a cat ?"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--binary", default="target/release/modernft")
    args = ap.parse_args()
    out = subprocess.run([args.binary, "embed", "--model", args.model, "--normalize"], input="\n".join(TEXTS) + "\n",
                         capture_output=True, text=True, check=True).stdout
    want = np.array([json.loads(line)["embedding"] for line in out.splitlines()])
    server = subprocess.Popen([args.binary, "serve", "--model", args.model, "--port", "0"], stderr=subprocess.PIPE, text=True)
    found = {}

    def read():
        for line in server.stderr:
            if "listening on http://" in line:
                found["addr"] = line.split("listening on http://")[1].strip()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        for _ in range(600):
            if "addr" in found:
                break
            threading.Event().wait(0.1)
        url = "http://" + found["addr"]
        openai = OpenAI(base_url=url + "/v1", api_key="unused")
        got = {
            "openai (base64, the default)": np.array([d.embedding for d in openai.embeddings.create(input=TEXTS, model="modernft").data]),
            "openai (float)": np.array([d.embedding for d in openai.embeddings.create(input=TEXTS, model="modernft", encoding_format="float").data]),
            "huggingface_hub feature_extraction": np.array([InferenceClient(base_url=url).feature_extraction(t)[0] for t in TEXTS]),
        }
        bad = 0
        for name, vectors in got.items():
            diff = float(np.abs(vectors - want).max())
            ok = vectors.shape == want.shape and diff <= 1e-5
            bad += not ok
            print(f"{'ok ' if ok else 'DIFF'} {name}: {vectors.shape[0]} x {vectors.shape[1]}, max |difference| to modernft embed {diff:.1e}")
        print("all equal" if not bad else f"{bad} client(s) differ")
        sys.exit(1 if bad else 0)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
