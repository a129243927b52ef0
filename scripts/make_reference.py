#!/usr/bin/env python3
"""Writes the reference outputs that modernft's Rust parity tests compare against.

Run from the repository root (CPU only, pinned stack in scripts/requirements.txt):

    pip install -r scripts/requirements.txt
    python scripts/make_reference.py

It builds, deterministically from fixed seeds:
  tests/fixtures/tokenizer/tokenizer.json   a tiny byte-level BPE tokenizer framed like ModernBERT's
  tests/fixtures/tiny-v4/                   a tiny ModernBertForSequenceClassification, config in the
                                            transformers 4.x schema (global_attn_every_n_layers, ...)
  tests/fixtures/tiny-v5/                   another one saved by transformers 5 (layer_types,
                                            rope_parameters), mean pooling, every bias switched on
and, for each model, reference.safetensors with: the padded batch (input_ids, attention_mask, labels),
logits, last hidden state, loss, the gradient of every parameter (grad.<name>), and the logits after
3 AdamW steps with weight decay (decay/no-decay groups as transformers' Trainer builds them), plus
embed.json: pooled sentence vectors for the `modernft embed` CLI test.
The Rust tests never run Python; re-run this script only when the fixtures must change.
"""
import json
import os
import sys

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import ModernBertConfig, ModernBertForSequenceClassification, PreTrainedTokenizerFast
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")

SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]

WORDS = (
    "the a movie film was great terrible boring wonderful plot actors acting story not very really "
    "good bad loved hated it and but with of in to is this that funny sad long short music scenes "
    "ending beginning director camera slow fast brilliant awful predictable surprising characters"
).split()

BATCH_TEXTS = [
    "the movie was really wonderful and the actors were brilliant but the ending was slow and long",
    "a boring film with awful acting",
    "loved it",
]
EMBED_TEXTS = ["a wonderful film", "", "the plot was predictable and the music was awful, not funny at all"]


def corpus():
    g = torch.Generator().manual_seed(0)
    lines = []
    for _ in range(400):
        n = int(torch.randint(3, 15, (1,), generator=g))
        idx = torch.randint(0, len(WORDS), (n,), generator=g).tolist()
        lines.append(" ".join(WORDS[i] for i in idx))
    return lines + BATCH_TEXTS + EMBED_TEXTS


def build_tokenizer(out_dir):
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
        model_max_length=128,
    )
    return tok, fast


def base_config(tok):
    return dict(
        vocab_size=tok.get_vocab_size(),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        max_position_embeddings=128,
        local_attention=8,  # half-window 4: the 24-token row differs between local and global layers
        pad_token_id=tok.token_to_id("[PAD]"),
        cls_token_id=tok.token_to_id("[CLS]"),
        bos_token_id=tok.token_to_id("[CLS]"),
        sep_token_id=tok.token_to_id("[SEP]"),
        eos_token_id=tok.token_to_id("[SEP]"),
        initializer_range=0.02,
    )


def v4_config_json(tok):
    """A config.json exactly as transformers 4.x wrote them (the v4 schema)."""
    c = base_config(tok)
    c.update(
        architectures=["ModernBertForSequenceClassification"],
        model_type="modernbert",
        global_attn_every_n_layers=3,
        global_rope_theta=160000.0,
        local_rope_theta=10000.0,
        norm_eps=1e-5,
        layer_norm_eps=1e-5,
        norm_bias=False,
        attention_bias=False,
        mlp_bias=False,
        classifier_bias=False,
        classifier_pooling="cls",
        classifier_activation="gelu",
        hidden_activation="gelu",
        id2label={"0": "negative", "1": "positive"},
        label2id={"negative": 0, "positive": 1},
        transformers_version="4.48.0",
    )
    return c


def v5_config(tok):
    c = base_config(tok)
    c.update(
        layer_types=["full_attention", "sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 20000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 500.0},
        },
        norm_eps=1e-6,
        norm_bias=True,
        attention_bias=True,
        mlp_bias=True,
        classifier_bias=True,
        classifier_pooling="mean",
        classifier_activation="silu",
        hidden_activation="gelu",
        id2label={0: "a", 1: "b", 2: "c"},
        label2id={"a": 0, "b": 1, "c": 2},
    )
    return ModernBertConfig(**c)


def randomize(model, seed):
    """Weights far from the near-zero init, so that masks, rotary and norms visibly matter."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(0.15 * noise)


def no_decay(name):
    # transformers' Trainer: no weight decay for biases and LayerNorm weights.
    return name.endswith("bias") or "norm" in name


def link_tokenizer(out_dir):
    """out_dir/tokenizer.json as a link to the one tokenizer (fixtures are stored once: tests/it/layout.rs)."""
    link = os.path.join(out_dir, "tokenizer.json")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.join("..", "tokenizer", "tokenizer.json"), link)


def adamw(model):
    """torch AdamW (lr 1e-2) with Trainer's parameter groups: weight decay 0.01 except biases and norms."""
    groups = [
        {"params": [p for n, p in model.named_parameters() if not no_decay(n)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if no_decay(n)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=1e-2, betas=(0.9, 0.999), eps=1e-8)


def grads_then_adamw(model, ref, ids, mask, labels):
    """ref["grad.<name>"] from the gradients of the loss just backpropagated, then 3 AdamW steps on the
    batch and ref["logits_after_adamw"]."""
    for name, p in model.named_parameters():
        ref["grad." + name] = p.grad.detach().clone()
    model.zero_grad()
    opt = adamw(model)
    for _ in range(3):
        opt.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
    with torch.no_grad():
        ref["logits_after_adamw"] = model(input_ids=ids, attention_mask=mask).logits.float()


def references(model, fast, labels, out_dir):
    model.eval()  # dropout is 0 anyway; eval makes that explicit
    enc = fast(BATCH_TEXTS, padding=True, return_tensors="pt")
    ids, mask = enc["input_ids"], enc["attention_mask"]
    labels = torch.tensor(labels, dtype=torch.long)
    out = model(input_ids=ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    out.loss.backward()
    ref = {
        "input_ids": ids.to(torch.int64),
        "attention_mask": mask.to(torch.int64),
        "labels": labels,
        "logits": out.logits.detach().float(),
        "last_hidden_state": model.model(input_ids=ids, attention_mask=mask).last_hidden_state.detach(),
        "loss": out.loss.detach().reshape(1),
    }
    grads_then_adamw(model, ref, ids, mask, labels)
    save_file({k: v.contiguous() for k, v in ref.items()}, os.path.join(out_dir, "reference.safetensors"))


def embed_reference(model, fast, out_dir):
    """Pooled vectors of the encoder, as `modernft embed` must produce them."""
    model.eval()
    rows = {}
    with torch.no_grad():
        for pooling in ("cls", "mean"):
            vecs = []
            for text in EMBED_TEXTS:  # one at a time: no padding involved
                enc = fast([text], return_tensors="pt")
                h = model.model(**enc).last_hidden_state[0]
                v = h[0] if pooling == "cls" else h.mean(0)
                vecs.append(v.tolist())
            rows[pooling] = vecs
    with open(os.path.join(out_dir, "embed.json"), "w") as f:
        json.dump({"texts": EMBED_TEXTS, **rows}, f)


def main():
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}", file=sys.stderr)
    tok, fast = build_tokenizer(os.path.join(ROOT, "tokenizer"))

    # v4: write config.json by hand in the old schema, let transformers parse it.
    d4 = os.path.join(ROOT, "tiny-v4")
    os.makedirs(d4, exist_ok=True)
    with open(os.path.join(d4, "config.json"), "w") as f:
        json.dump(v4_config_json(tok), f, indent=2)
    torch.manual_seed(1)
    m4 = ModernBertForSequenceClassification(ModernBertConfig.from_pretrained(d4))
    assert m4.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    randomize(m4, 11)
    save_file({k: v.contiguous() for k, v in m4.state_dict().items()}, os.path.join(d4, "model.safetensors"),
              metadata={"format": "pt"})
    link_tokenizer(d4)
    m4 = ModernBertForSequenceClassification.from_pretrained(d4)  # reload: the file is the reference
    references(m4, fast, [1, 0, 1], d4)
    m4 = ModernBertForSequenceClassification.from_pretrained(d4)
    embed_reference(m4, fast, d4)

    d5 = os.path.join(ROOT, "tiny-v5")
    torch.manual_seed(2)
    m5 = ModernBertForSequenceClassification(v5_config(tok))
    randomize(m5, 22)
    m5.save_pretrained(d5)
    link_tokenizer(d5)
    m5 = ModernBertForSequenceClassification.from_pretrained(d5)
    references(m5, fast, [2, 0, 1], d5)
    print("wrote", ROOT, file=sys.stderr)


if __name__ == "__main__":
    main()
