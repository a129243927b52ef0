#!/usr/bin/env python3
"""sentence-transformers' side of the contrastive training benchmark (scripts/bench_side_by_side.sh,
case train-stsb-cosent): CoSENT on scored pairs with `SentenceTransformerTrainer`, as its docs train
an embedding model, timed around `trainer.train()`. Prints one JSON line.

    python scripts/make_bench_model.py target/bench-st-small examples/sst2-small/config.json
    python scripts/bench_st_train.py --model-dir target/bench-st-small --data target/bench-stsb-3000.jsonl

The model: the folder's encoder with mean pooling; the data: JSON lines with text_a, text_b, score.
Training arguments as modernft's run config in the same case: batch 32, one epoch, learning rate
3e-4 with 10% linear warm-up, weight decay 0.01, gradient clipping at 1.0, no evaluation, no
checkpoints; the optimizer is the trainer's default (`adamw_torch_fused`). --threads sets torch's.
"""
import argparse
import json
import os
import resource
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,  # noqa: E402
                                   SentenceTransformerTrainingArguments)
from sentence_transformers.sentence_transformer.losses import CoSENTLoss  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--data", required=True, help="JSON lines: text_a, text_b, score")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    rows = [json.loads(line) for line in open(args.data) if line.strip()]
    data = Dataset.from_dict({
        "sentence1": [r["text_a"] for r in rows],
        "sentence2": [r["text_b"] for r in rows],
        "score": [float(r["score"]) for r in rows],
    })
    encoder = Transformer(args.model_dir, max_seq_length=args.max_length)
    model = SentenceTransformer(modules=[encoder, Pooling(encoder.get_embedding_dimension(), "mean")], device="cpu")
    with tempfile.TemporaryDirectory() as out:
        targs = SentenceTransformerTrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch, num_train_epochs=args.epochs,
            learning_rate=3e-4, warmup_steps=0.1, weight_decay=0.01, max_grad_norm=1.0, lr_scheduler_type="linear",
            eval_strategy="no", save_strategy="no", logging_steps=10_000, report_to="none", seed=args.seed,
            use_cpu=True, disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=data, loss=CoSENTLoss(model, scale=20.0))
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
    tokens = sum(len(model.tokenizer(r[k], truncation=True, max_length=args.max_length)["input_ids"])
                 for r in rows for k in ("text_a", "text_b"))
    steps = result.global_step
    print(json.dumps({
        "tool": "sentence-transformers trainer.train()", "rows": len(rows), "steps": steps, "batch": args.batch,
        "seconds": seconds, "seconds_per_step": seconds / max(steps, 1), "tokens_per_epoch": tokens,
        "real_tokens_per_s": tokens * args.epochs / seconds, "final_loss": result.training_loss,
        "threads": args.threads, "optim": str(targs.optim),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
