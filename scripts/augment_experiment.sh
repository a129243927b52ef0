#!/usr/bin/env bash
# Does [data.augment] help on a small labelled set? SST-2 subset, the small from-scratch ModernBERT
# of configs/sst2-small.toml, the same number of optimizer steps with and without augmentation,
# several seeds; prints the final dev accuracy (all 872 rows of ../shared SST-2 dev) of every run.
#   ROWS=500 SEEDS="1 2 3" STEPS=320 bash scripts/augment_experiment.sh
# Needs the release binary (cargo build --release), ../shared, and python with scripts/requirements.txt
# (wn, for the synonyms file). PYTHON=/path/to/python picks the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-500}
SEEDS=${SEEDS:-"1 2 3"}
STEPS=${STEPS:-320}
PYTHON=${PYTHON:-python3}
AUGMENT=${AUGMENT:-"synonym_replacement = 0.1
random_insertion = 0.1
random_swap = 0.1
random_deletion = 0.1
copies = 4"}
SST2=../shared/data/sst2
BIN=target/release/modernft
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# A fixed random subset of the training rows (the same for every run).
"$PYTHON" - "$SST2/train.jsonl" "$WORK/train.jsonl" "$ROWS" <<'PY'
import random, sys
rows = open(sys.argv[1], encoding="utf-8").read().splitlines()
random.Random(0).shuffle(rows)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(rows[: int(sys.argv[3])]) + "\n")
PY
"$PYTHON" scripts/make_synonyms.py --data "$WORK/train.jsonl" --out "$WORK/synonyms.tsv"
config() { # $1 = out dir, $2 = seed, $3 = augment section (or empty)
  cat <<TOML
[model]
config = "examples/sst2-small/config.json"
tokenizer = "$SST2/../modernbert/tokenizer.json"
[data]
train = "$WORK/train.jsonl"
validation = "$SST2/dev.jsonl"
max_length = 64
$3
[training]
learning_rate = 5e-4
batch_size = 16
eval_batch_size = 128
max_steps = $STEPS
weight_decay = 0.01
warmup_ratio = 0.06
eval_strategy = "no"
seed = $2
logging_steps = 1000
[output]
dir = "$1"
TOML
}
echo "rows=$ROWS steps=$STEPS batch=16 seeds=$SEEDS"
echo "augment: $(echo "$AUGMENT" | tr '\n' ' ')"
printf '%-10s %-6s %-10s %s\n' setting seed dev_acc train_s
for seed in $SEEDS; do
  for setting in none augment; do
    section=""
    if [ "$setting" = augment ]; then section=$(printf '[data.augment]\n%s\nsynonyms = "%s"\n' "$AUGMENT" "$WORK/synonyms.tsv"); fi
    config "$WORK/run-$setting-$seed" "$seed" "$section" > "$WORK/$setting-$seed.toml"
    start=$(date +%s.%N)
    "$BIN" train --quiet --config "$WORK/$setting-$seed.toml" > "$WORK/$setting-$seed.out" 2>&1 || { cat "$WORK/$setting-$seed.out"; exit 1; }
    end=$(date +%s.%N)
    acc=$(grep '"type":"final"' "$WORK/run-$setting-$seed/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(round(json.loads(sys.stdin.readline())["accuracy"], 4))')
    printf '%-10s %-6s %-10s %.0f\n' "$setting" "$seed" "$acc" "$(echo "$end - $start" | bc)"
  done
done
