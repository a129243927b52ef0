#!/usr/bin/env python3
"""Writes a random-init ModernBERT-base encoder (the real base config and tokenizer from ../shared) as a
transformers folder, so that `modernft embed` and hf_bench.py --model-dir time the same model end to end.
A second argument names another config.json (e.g. examples/sst2-small/config.json: hidden 256, 4 layers).

    python scripts/make_bench_model.py target/bench-model
    python scripts/make_bench_model.py target/bench-st-small examples/sst2-small/config.json
"""
import json
import shutil
import sys
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertModel

out = Path(sys.argv[1] if len(sys.argv) > 1 else "target/bench-model")
shared = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "modernbert"
config_path = Path(sys.argv[2]) if len(sys.argv) > 2 else shared / "ModernBERT-base" / "config.reconstructed.json"
config = json.loads(config_path.read_text())
config["architectures"] = ["ModernBertModel"]
torch.manual_seed(0)
model = ModernBertModel(ModernBertConfig(**config)).eval()
out.mkdir(parents=True, exist_ok=True)
model.save_pretrained(out)
for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
    shutil.copy(shared / name, out / name)
print(out)
