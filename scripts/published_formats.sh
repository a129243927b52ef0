#!/usr/bin/env bash
# Trains and scores from data files in the shapes their authors publish, with config keys only (#33):
#   1. AG News-style: headerless CSV, "label","title","description" with labels 1..K, and classes.txt
#   2. TREC-style: `LABEL:fine text` lines in ISO-8859-1
#   3. WNUT17: a CoNLL test split (no telling extension) beside JSONL training and dev splits
# The files are written from ../shared's SST-2 and WNUT17 (SST-2's sentiment stands in for the topic
# and question classes), then each is trained on the small from-scratch model of configs/sst2-small.toml
# and scored with `modernft eval`. Needs a release build and ../shared.
#
#   cargo build --release && STEPS=300 bash scripts/published_formats.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-target/published-formats}
STEPS=${STEPS:-300}
MF=./target/release/modernft
mkdir -p "$OUT"
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = lambda path: [json.loads(l) for l in open(path)]
train, dev = rows("../shared/data/sst2/train.jsonl"), rows("../shared/data/sst2/dev.jsonl")
def q(s): return '"' + s.replace('"', '""') + '"'
# 1. AG News's layout: label 1..K first, a title and a description, no header; names in classes.txt.
for name, data in (("train", train), ("test", dev)):
    with open(f"{out}/ag_{name}.csv", "w") as f:
        for r in data:
            words = r["text"].split()
            f.write(",".join([q(str(1 + (r["label"] == "positive"))), q(" ".join(words[:3])), q(" ".join(words[3:]))]) + "\n")
with open(f"{out}/classes.txt", "w") as f:
    f.write("Negative\nPositive\n")
# 2. TREC's layout: COARSE:fine text, ISO-8859-1, CRLF line ends.
for name, data in (("train_5500.label", train), ("TREC_10.label", dev)):
    with open(f"{out}/{name}", "wb") as f:
        for r in data:
            coarse = "POS" if r["label"] == "positive" else "NEG"
            f.write(f"{coarse}:sst {r['text'].strip()}\r\n".encode("latin-1", errors="replace"))
PY
cp ../shared/data/wnut17/emerging.dev.conll "$OUT/emerging.test.annotated"

common=(--set "model.config=examples/sst2-small/config.json" --set "model.tokenizer=../shared/data/modernbert/tokenizer.json"
  --set "training.max_steps=$STEPS" --set "training.eval_strategy=no" --set "training.learning_rate=5e-4" --overwrite --quiet)

cat > "$OUT/ag.toml" <<EOF
[model]
config = "examples/sst2-small/config.json"
[data]
train = "$OUT/ag_train.csv"
test = "$OUT/ag_test.csv"
header = false
columns = ["label", "title", "description"]
text_column = ["title", "description"]
label_names = "$OUT/classes.txt"
max_length = 64
[training]
batch_size = 32
group_by_length = true
[output]
dir = "$OUT/runs/ag"
EOF
cat > "$OUT/trec.toml" <<EOF
[model]
config = "examples/sst2-small/config.json"
[data]
train = "$OUT/train_5500.label"
test = "$OUT/TREC_10.label"
format = "lines"
pattern = '^(?P<label>[A-Z]+):\S+ (?P<text>.*)$'
encoding = "latin-1"
max_length = 64
[training]
batch_size = 32
group_by_length = true
[output]
dir = "$OUT/runs/trec"
EOF
cat > "$OUT/wnut.toml" <<EOF
task = "token-classification"
[model]
config = "examples/sst2-small/config.json"
[data]
train = "../shared/data/wnut17/train.jsonl"
validation = "../shared/data/wnut17/dev.jsonl"
max_length = 128
[data.test]
path = "$OUT/emerging.test.annotated"
format = "conll"
[training]
batch_size = 16
group_by_length = true
[output]
dir = "$OUT/runs/wnut"
EOF
for name in ag trec wnut; do
  start=$(date +%s)
  $MF train --config "$OUT/$name.toml" "${common[@]}"
  echo "== $name: trained $STEPS steps in $(( $(date +%s) - start )) s; test split:"
  $MF eval --model "$OUT/runs/$name" --config "$OUT/runs/$name/config.toml" --split test --json \
    | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print({k: r[k] for k in ('rows', 'labels', 'accuracy', 'f1', 'precision', 'recall') if k in r})"
done
