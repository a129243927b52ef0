#!/usr/bin/env python3
"""Generates the offline quickstart: a small sentiment dataset, a tokenizer trained on it, and a
small ModernBERT config to train from scratch (configs/quickstart.toml uses them).

    python scripts/make_quickstart.py     # writes examples/quickstart/

Reviews are built from templates; the label follows the polarity of the opinion words, flipped by
"not" / "never" before them, so a model must read word order, not just count words. Deterministic
(fixed seed); needs only the `tokenizers` package.
"""
import json
import os
import random

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "quickstart")
POS = "great wonderful brilliant moving delightful superb charming gripping funny beautiful clever fresh".split()
NEG = "terrible boring awful dull clumsy tedious bland forgettable messy lifeless predictable shallow".split()
NOUNS = "film movie story plot cast script ending soundtrack direction dialogue pacing acting camera work".split()
OPENERS = ["", "honestly ", "overall ", "to be fair ", "i thought ", "sadly ", "surprisingly "]
TAILS = ["", " from start to finish", " for most of its runtime", " , at least in the second half", " despite the hype",
         " and i would say so again", " , as the critics said"]


def clause(rng):
    positive = rng.random() < 0.5
    word = rng.choice(POS if positive else NEG)
    negated = rng.random() < 0.3
    noun = rng.choice(NOUNS)
    verb = rng.choice(["was", "is", "felt", "seemed"])
    text = f"the {noun} {verb} {'not ' if negated else ''}{rng.choice(['', 'very ', 'really ', 'quite '])}{word}"
    return text, positive != negated


def review(rng):
    # One or two clauses; with two, the second ("but ...") decides, as in real reviews.
    text, label = clause(rng)
    if rng.random() < 0.35:
        second, label = clause(rng)
        text = f"{text} , but {second}"
    return {"text": f"{rng.choice(OPENERS)}{text}{rng.choice(TAILS)}".strip(), "label": "positive" if label else "negative"}


def main():
    rng = random.Random(2024)
    os.makedirs(OUT, exist_ok=True)
    train = [review(rng) for _ in range(3000)]
    dev = [review(rng) for _ in range(500)]
    for name, rows in (("train.jsonl", train), ("dev.jsonl", dev)):
        with open(os.path.join(OUT, name), "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=512, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([r["text"] for r in train], trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(os.path.join(OUT, "tokenizer.json"))

    config = {
        "architectures": ["ModernBertForMaskedLM"],
        "model_type": "modernbert",
        "vocab_size": tok.get_vocab_size(),
        "hidden_size": 128,
        "intermediate_size": 192,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "max_position_embeddings": 128,
        "global_attn_every_n_layers": 2,
        "local_attention": 16,
        "global_rope_theta": 160000.0,
        "local_rope_theta": 10000.0,
        "pad_token_id": tok.token_to_id("[PAD]"),
        "cls_token_id": cls,
        "bos_token_id": cls,
        "sep_token_id": sep,
        "eos_token_id": sep,
        "classifier_pooling": "mean",
        "initializer_range": 0.02,
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
