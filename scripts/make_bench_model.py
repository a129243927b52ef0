#!/usr/bin/env python3
"""Writes a random-init ModernBERT-base encoder (the real base config and tokenizer from ../shared) as a
transformers folder, so that `modernft embed` and hf_bench.py --model-dir time the same model end to end.

    python scripts/make_bench_model.py target/bench-model
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertModel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench-model")
shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "modernbert"
config = json.loads((shared / "ModernBERT-base" / "config.reconstructed.json").read_text())
config["architectures"] = ["ModernBertModel"]
torch.manual_seed(0)
model = ModernBertModel(ModernBertConfig(**config)).eval()
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
    shutil.copy(shared / name, out / name)
print(out)
