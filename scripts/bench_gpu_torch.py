#!/usr/bin/env python3
"""PyTorch's side of the GPU benchmark (scripts/device_check.sh): random-init ModernBERT (hf_bench.py's
sizes) trained or run for embeddings on a CUDA device with sdpa attention, f32 or
bf16 autocast, AdamW(fused=True). Prints one JSON line like `modernft bench` (tokens_per_s).

    python scripts/bench_gpu_torch.py --size base --mode train --batch 16 --seq 128 --dtype bf16
"""
import argparse
import json
import sys
import time

import torch
from transformers import ModernBertConfig, ModernBertForSequenceClassification, ModernBertModel

# hf_bench.py's sizes (../shared/bench, which does not travel to a GPU machine): the same configs.
TINY_SPECIAL = dict(pad_token_id=3, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2)
SIZES = {
    "tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=96,
                 vocab_size=512, max_position_embeddings=512, global_attn_every_n_layers=3,
                 local_attention=16, **TINY_SPECIAL),
    "base": dict(hidden_size=768, num_hidden_layers=22, num_attention_heads=12, intermediate_size=1152,
                 vocab_size=50368, global_attn_every_n_layers=3, local_attention=128,
                 global_rope_theta=160000.0, local_rope_theta=10000.0, norm_eps=1e-5),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=sorted(SIZES), default="base")
    ap.add_argument("--mode", choices=["train", "embed"], default="train")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N (cpu for a smoke run)")
    args = ap.parse_args()
    torch.manual_seed(0)
    # f32 products as modernft's (candle's default): no TF32.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = torch.device(args.device)
    cfg = ModernBertConfig(**SIZES[args.size], num_labels=2, attn_implementation="sdpa")
    model = (ModernBertForSequenceClassification if args.mode == "train" else ModernBertModel)(cfg).to(dev)
    g = torch.Generator().manual_seed(1234)
    ids = torch.randint(5, cfg.vocab_size, (args.batch, args.seq), generator=g).to(dev)
    mask = torch.ones_like(ids)
    labels = (torch.arange(args.batch) % 2).to(dev)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16")
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    if args.mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01, fused=dev.type == "cuda")

        def step():
            with autocast:
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.inference_mode(), autocast:
                h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)

    for _ in range(args.warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    secs = time.perf_counter() - t
    print(json.dumps({
        "tool": "pytorch", "device": str(dev), "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None, "mode": args.mode,
        "size": args.size, "batch": args.batch, "seq": args.seq, "dtype": args.dtype, "steps": args.steps,
        "seconds_per_step": secs / args.steps, "tokens_per_s": args.batch * args.seq * args.steps / secs,
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    sys.exit(main())
