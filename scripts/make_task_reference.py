#!/usr/bin/env python3
"""Reference outputs for the other tasks (tests/it/tasks_parity.rs), from the pinned Python stack plus
seqeval 1.2.2. Run from the repository root after scripts/make_reference.py:

    pip install -r scripts/requirements.txt
    python scripts/make_task_reference.py                 (--losses-only: only losses.json, no seqeval needed)

Writes:
  tests/fixtures/tiny-token/   ModernBertForTokenClassification (tiny-v4's encoder, a fresh 5-tag head)
                               + reference.safetensors: input_ids, attention_mask, labels (-100 on
                               every token but each word's first subword), logits, loss.
                               Words are joined by single spaces and tokenized as running text; a word's
                               tokens are found by character offsets (modernft's alignment).
  tests/fixtures/tasks/seqeval.json     seqeval's entity scores for fixed tag sequences (default and
                                        strict IOB2 modes).
  tests/fixtures/tasks/losses.json      sentence-transformers' MultipleNegativesRankingLoss (scale 20,
                                        cosine, hard negatives), CoSENTLoss (scale 20) and MatryoshkaLoss
                                        over MNRL (dims 32, 16, 8) on fixed batches, with a SentenceTransformer
                                        made of tiny-v4's encoder and mean pooling.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer, models
from sentence_transformers.sentence_transformer import losses
from transformers import ModernBertForTokenClassification, PreTrainedTokenizerFast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_reference import link_tokenizer  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
TAGS = ["B-loc", "B-per", "I-loc", "I-per", "O"]
SENTENCES = [
    (["John", "Smith", "visited", "the", "Empire", "State", "Building", "yesterday"],
     ["B-per", "I-per", "O", "O", "B-loc", "I-loc", "I-loc", "O"]),
    (["a", "wonderful", "film", "in", "Paris"], ["O", "O", "O", "O", "B-loc"]),
    (["Mary", "loved", "it", "!"], ["B-per", "O", "O", "O"]),
]


def tokenizer():
    return PreTrainedTokenizerFast(tokenizer_file=os.path.join(ROOT, "tiny-v4", "tokenizer.json"), unk_token="[UNK]",
                                   cls_token="[CLS]", sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]")


def aligned(tok, words, tags):
    """Words joined by spaces; each word's first token carries its tag. A token belongs to the word
    holding its first non-space character (byte-level BPE folds the preceding space into `Ġword`,
    whose offsets start at that space); space-only tokens belong to no word."""
    text = " ".join(words)
    spans, at = [], 0
    for w in words:
        spans.append((at, at + len(w)))
        at += len(w) + 1
    enc = tok(text, return_offsets_mapping=True)
    labels, seen = [], set()
    for (start, end), tid in zip(enc["offset_mapping"], enc["input_ids"]):
        first = next((p for p in range(start, end) if not text[p].isspace()), None)
        word = None if first is None else next((w for w, (s, e) in enumerate(spans) if s <= first < e), None)
        if end <= start or tid in (tok.cls_token_id, tok.sep_token_id) or word is None or word in seen:
            labels.append(-100)
            continue
        seen.add(word)
        labels.append(TAGS.index(tags[word]))
    return enc["input_ids"], labels


def token_reference():
    tok = tokenizer()
    out = os.path.join(ROOT, "tiny-token")
    torch.manual_seed(3)
    base = ModernBertForTokenClassification.from_pretrained(
        os.path.join(ROOT, "tiny-v4"), num_labels=len(TAGS), id2label=dict(enumerate(TAGS)),
        label2id={t: i for i, t in enumerate(TAGS)}, ignore_mismatched_sizes=True)
    with torch.no_grad():  # a head far from its near-zero init, so the logits mean something
        for name, p in base.named_parameters():
            if name.startswith(("head.", "classifier.")):
                p.copy_(torch.randn(p.shape) * 0.3 + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    base.save_pretrained(out)
    link_tokenizer(out)
    model = ModernBertForTokenClassification.from_pretrained(out).eval()
    rows = [aligned(tok, w, t) for w, t in SENTENCES]
    n = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tok.pad_token_id] * (n - len(r[0])) for r in rows])
    mask = torch.tensor([[1] * len(r[0]) + [0] * (n - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-100] * (n - len(r[1])) for r in rows])
    with torch.no_grad():
        o = model(input_ids=ids, attention_mask=mask, labels=labels)
    save_file({"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": o.logits.contiguous(),
               "loss": o.loss.reshape(1)}, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "sentences.json"), "w") as f:
        json.dump([{"tokens": w, "tags": t} for w, t in SENTENCES], f)


def seqeval_reference(out):
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    truth = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"],
             ["O", "B-LOC", "O", "O", "B-PER", "I-PER", "I-PER"],
             ["B-MISC", "I-MISC", "O", "B-ORG", "I-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-ORG"],
            ["O", "I-LOC", "O", "O", "B-PER", "I-PER", "I-ORG"],
            ["B-MISC", "I-MISC", "O", "B-ORG", "I-ORG", "I-ORG"]]
    res = {"truth": truth, "pred": pred}
    for name, kwargs in (("default", {}), ("strict", {"mode": "strict", "scheme": IOB2})):
        rep = classification_report(truth, pred, output_dict=True, zero_division=0, **kwargs)
        res[name] = {k: {m: float(v) for m, v in d.items()} for k, d in rep.items()}
    json.dump(res, open(os.path.join(out, "seqeval.json"), "w"), indent=1)


def loss_reference(out):
    t = models.Transformer(os.path.join(ROOT, "tiny-v4"), max_seq_length=128)
    t.tokenizer.pad_token = "[PAD]"  # tiny-v4 ships only tokenizer.json
    st = SentenceTransformer(modules=[t, models.Pooling(32, pooling_mode="mean")], device="cpu").eval()
    anchors = ["a wonderful film", "the plot was awful", "loved it", "a boring story with bad acting"]
    positives = ["a brilliant movie", "terrible story", "i really loved it", "the acting was bad and boring"]
    negatives = ["a terrible film", "the plot was great", "hated it", "a wonderful story with great acting"]
    pairs_a = ["a wonderful film", "the plot was awful", "loved it", "slow camera work", "funny and sad"]
    pairs_b = ["a brilliant movie", "the plot was great", "hated it", "fast camera", "sad but funny"]
    scores = [4.8, 1.0, 0.5, 2.5, 4.0]

    def features(texts):
        return st.tokenize(texts)

    with torch.no_grad():
        mnrl = losses.MultipleNegativesRankingLoss(st, scale=20.0)
        l_mnrl = mnrl([features(anchors), features(positives), features(negatives)], None).item()
        l_mnrl_pairs = mnrl([features(anchors), features(positives)], None).item()
        cosent = losses.CoSENTLoss(st, scale=20.0)
        l_cosent = cosent([features(pairs_a), features(pairs_b)], torch.tensor(scores)).item()
        mat = losses.MatryoshkaLoss(st, losses.MultipleNegativesRankingLoss(st, scale=20.0), matryoshka_dims=[32, 16, 8])
        l_mat = mat([features(anchors), features(positives)], None).item()
        # MNRL's directions and partition modes (sentence-transformers >= 5.2), with and without
        # hard negatives: key "mnrl_<directions joined by +>_<partition>[_negatives]".
        directions = {}
        for dirs in [("query_to_doc", "doc_to_query"), ("query_to_doc", "query_to_query"), ("query_to_doc", "doc_to_doc"),
                     ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")]:
            # sentence-transformers refuses per_direction with same-type terms (no positive in them).
            for partition in ["joint"] + (["per_direction"] if len(set(dirs) & {"query_to_query", "doc_to_doc"}) == 0 else []):
                loss = losses.MultipleNegativesRankingLoss(st, scale=20.0, directions=dirs, partition_mode=partition)
                key = "mnrl_" + "+".join(dirs) + "_" + partition
                directions[key] = loss([features(anchors), features(positives)], None).item()
                directions[key + "_negatives"] = loss([features(anchors), features(positives), features(negatives)], None).item()
        sym = losses.MultipleNegativesSymmetricRankingLoss(st, scale=20.0)
        directions["mnrl_symmetric_loss_class"] = sym([features(anchors), features(positives)], None).item()
    json.dump({"anchors": anchors, "positives": positives, "negatives": negatives, "pairs_a": pairs_a,
               "pairs_b": pairs_b, "scores": scores, "mnrl_with_negatives": l_mnrl, "mnrl": l_mnrl_pairs,
               "cosent": l_cosent, "matryoshka_mnrl_32_16_8": l_mat, "mnrl_directions": directions},
              open(os.path.join(out, "losses.json"), "w"), indent=1)


def main():
    print(f"torch {torch.__version__}", file=sys.stderr)
    out = os.path.join(ROOT, "tasks")
    os.makedirs(out, exist_ok=True)
    if "--losses-only" not in sys.argv:
        token_reference()
        seqeval_reference(out)
    loss_reference(out)
    print("wrote", out, file=sys.stderr)


if __name__ == "__main__":
    main()
