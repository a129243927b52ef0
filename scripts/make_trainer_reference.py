#!/usr/bin/env python3
"""Trains the tiny reference model with transformers' Trainer and records every step's loss.

Run from the repository root after scripts/make_reference.py (it starts from tests/fixtures/tiny-v4):

    python scripts/make_trainer_reference.py

Recipe (mirrored by tests/it/trainer_parity.rs): 40 rows in file order (no shuffling), batch 4,
gradient accumulation 2 (5 optimizer steps per epoch), 6 epochs = 30 steps, AdamW (Trainer's default
optimizer) lr 1e-3, weight decay 0.01 (not on biases/norms), linear schedule with 3 warm-up steps,
max_grad_norm 1.0, dropout 0 (the fixture's config), seed 0.

One deliberate setting: `trainer.model_accepts_loss_kwargs = False`. ModernBertForSequenceClassification's
forward takes **kwargs, so Trainer 5.24 passes `num_items_in_batch` and then does NOT divide the loss by
the accumulation steps, but the model's CrossEntropyLoss ignores `num_items_in_batch`: micro-batch means
are summed (logged losses and gradients double with accumulation 2). With the flag, Trainer takes its
own path for per-batch-mean losses and divides by the accumulation steps, which is the intended mean
over the accumulated batch and what modernft implements.

Writes tests/fixtures/trainer/{train.jsonl, eval.jsonl, reference.json}.
"""
import json
import os
import sys

import torch
import transformers
from torch.utils.data import SequentialSampler
from transformers import (DataCollatorWithPadding, ModernBertForSequenceClassification, PreTrainedTokenizerFast,
                          Trainer, TrainerCallback, TrainingArguments)

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "tests", "fixtures")
OUT = os.path.join(FIX, "trainer")
POSITIVE = {"great", "wonderful", "good", "loved", "brilliant", "funny", "surprising"}
WORDS = (
    "the a movie film was great terrible boring wonderful plot actors acting story not very really "
    "good bad loved hated it and but with of in to is this that funny sad long short music scenes "
    "ending beginning director camera slow fast brilliant awful predictable surprising characters"
).split()


def rows(n, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        k = int(torch.randint(3, 18, (1,), generator=g))
        words = [WORDS[i] for i in torch.randint(0, len(WORDS), (k,), generator=g).tolist()]
        out.append({"text": " ".join(words), "label": int(any(w in POSITIVE for w in words))})
    return out


class Rows(torch.utils.data.Dataset):
    def __init__(self, enc, labels):
        self.enc, self.labels = enc, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.enc["input_ids"][i], "attention_mask": self.enc["attention_mask"][i], "labels": self.labels[i]}


class InOrder(Trainer):
    def _get_train_sampler(self, *args, **kwargs):
        return SequentialSampler(self.train_dataset)


class Record(TrainerCallback):
    def __init__(self):
        self.losses, self.grad_norms, self.lrs = [], [], []

    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])
            self.grad_norms.append(float(logs["grad_norm"]))
            self.lrs.append(logs["learning_rate"])


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    train = rows(40, 5)
    evals = rows(6, 6)
    for name, data in (("train.jsonl", train), ("eval.jsonl", evals)):
        with open(os.path.join(OUT, name), "w") as f:
            for r in data:
                f.write(json.dumps(r) + "\n")

    tok = PreTrainedTokenizerFast(tokenizer_file=os.path.join(FIX, "tiny-v4", "tokenizer.json"),
                                  unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]",
                                  mask_token="[MASK]")
    enc = tok([r["text"] for r in train], truncation=True, max_length=128)
    ds = Rows(enc, [r["label"] for r in train])
    model = ModernBertForSequenceClassification.from_pretrained(os.path.join(FIX, "tiny-v4"))
    args = TrainingArguments(
        output_dir="/tmp/modernft-trainer-reference",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        num_train_epochs=6,
        learning_rate=1e-3,
        weight_decay=0.01,
        lr_scheduler_type="linear",
        warmup_steps=3,
        max_grad_norm=1.0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        seed=0,
        dataloader_drop_last=False,
        use_cpu=True,
    )
    rec = Record()
    trainer = InOrder(model=model, args=args, train_dataset=ds, data_collator=DataCollatorWithPadding(tok),
                      callbacks=[rec])
    trainer.model_accepts_loss_kwargs = False  # see the module docstring
    trainer.train()
    model.eval()
    e = tok([r["text"] for r in evals], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**e).logits
    ref = {"losses": rec.losses, "grad_norms": rec.grad_norms, "learning_rates": rec.lrs,
           "final_logits": logits.tolist(), "optimizer": args.optim}
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(ref, f, indent=1)
    print(len(rec.losses), "steps; losses", [round(x, 4) for x in rec.losses[:5]], "...", file=sys.stderr)


if __name__ == "__main__":
    main()
