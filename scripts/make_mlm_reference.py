#!/usr/bin/env python3
"""Masked-LM reference (tests/it/parity.rs, `masked_lm_matches_transformers`), from the pinned stack.
Run from the repository root after scripts/make_reference.py:

    python scripts/make_mlm_reference.py

Writes tests/fixtures/tiny-mlm/: a ModernBertForMaskedLM with tiny-v4's encoder and a randomised head
and decoder bias (decoder weight tied to the token embeddings, saved by save_pretrained), its
tokenizer, and reference.safetensors with
  input_ids, attention_mask   the make_reference batch, some tokens replaced by [MASK] or another token
  labels                      the original ids at the masked tokens, -100 elsewhere
  logits                      every token's logits (sparse_prediction off), [batch, seq, vocab]
  loss                        ForMaskedLMLoss (mean cross-entropy over the masked tokens)
  grad.<name>                 every parameter's gradient (the tied embedding once, both uses summed)
  logits_after_adamw          logits after 3 AdamW steps (lr 1e-2, weight decay 0.01 but not on
                              biases and norms), the weights still tied.
"""
import os
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import BATCH_TEXTS, ROOT, grads_then_adamw, link_tokenizer  # noqa: E402


def main():
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", file=sys.stderr)
    src, out = os.path.join(ROOT, "tiny-v4"), os.path.join(ROOT, "tiny-mlm")
    os.makedirs(out, exist_ok=True)
    config = ModernBertConfig.from_pretrained(src)
    config.architectures = ["ModernBertForMaskedLM"]
    config.id2label, config.label2id = {0: "LABEL_0", 1: "LABEL_1"}, {"LABEL_0": 0, "LABEL_1": 1}
    torch.manual_seed(3)
    model = ModernBertForMaskedLM(config)
    encoder = ModernBertForMaskedLM.from_pretrained(src).model  # tiny-v4's encoder (its classifier unused)
    model.model.load_state_dict(encoder.state_dict())
    g = torch.Generator().manual_seed(33)
    with torch.no_grad():  # a head far from its init, so that its logits mean something
        for name, p in model.named_parameters():
            if name.startswith("head.") or name == "decoder.bias":
                noise = torch.randn(p.shape, generator=g)
                p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.15 * noise)
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight
    model.save_pretrained(out)
    link_tokenizer(out)
    model = ModernBertForMaskedLM.from_pretrained(out)  # the file is the reference
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight
    model.eval()

    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(out, "tokenizer.json"), unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")
    enc = fast(BATCH_TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"].clone(), enc["attention_mask"]
    labels = torch.full_like(ids, -100)
    mg = torch.Generator().manual_seed(5)
    for r in range(ids.shape[0]):
        n = int(mask[r].sum())
        for p in range(1, n - 1):  # never [CLS] or [SEP]
            if torch.rand(1, generator=mg).item() < 0.3:
                labels[r, p] = ids[r, p]
                u = torch.rand(1, generator=mg).item()
                if u < 0.8:
                    ids[r, p] = fast.mask_token_id
                elif u < 0.9:
                    ids[r, p] = int(torch.randint(5, config.vocab_size, (1,), generator=mg))
    assert (labels != -100).sum() >= 10

    o = model(input_ids=ids, attention_mask=mask, labels=labels)
    o.loss.backward()
    ref = {"input_ids": ids, "attention_mask": mask.to(torch.int64), "labels": labels,
           "logits": o.logits.detach().float(), "loss": o.loss.detach().reshape(1)}
    grads_then_adamw(model, ref, ids, mask, labels)
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out, "reference.safetensors"))
    print("wrote", out, "with", sorted(k for k in ref if not k.startswith("grad.")), file=sys.stderr)


if __name__ == "__main__":
    main()
