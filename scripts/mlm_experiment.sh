#!/usr/bin/env bash
# Does masked-LM domain adaptation pay? The small from-scratch ModernBERT of configs/sst2-small.toml:
#   adapted: MLM_STEPS of task = "mlm" (configs/mlm.toml) on unlabelled in-domain text (the SST-2
#            training sentences and the IMDB reviews of ../shared, labels not read), then FT_STEPS of
#            classification on ROWS labelled SST-2 rows;
#   random:  the same classification from random init for MLM_STEPS + FT_STEPS steps (the same
#            number of optimizer steps in all), and for FT_STEPS steps.
# Prints the dev accuracy (all 872 SST-2 dev rows) of each, for each fine-tuning learning rate in
# FT_LRS (every arm gets the same grid) and each fine-tuning seed in SEEDS (default 1: the head's
# initialisation, the batch order, dropout), then per arm and rate the mean, lowest and highest.
#   ROWS=1000 MLM_STEPS=1000 FT_STEPS=300 MLM_LENGTH=128 SEEDS="1 2 3" bash scripts/mlm_experiment.sh
# MLM_MODEL=runs/x/checkpoint-2000 fine-tunes an existing masked-LM run's weights instead of
# pretraining (MLM_STEPS then says how many steps it had, for the same-budget arm); ARMS picks
# some of: adapted same-budget same-finetune.
# Needs the release binary (cargo build --release) and ../shared.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=${ROWS:-1000}
MLM_STEPS=${MLM_STEPS:-1000}
FT_STEPS=${FT_STEPS:-300}
MLM_LENGTH=${MLM_LENGTH:-128}
SEEDS=${SEEDS:-${SEED:-1}}
FT_LRS=${FT_LRS:-5e-4}
MLM_MODEL=${MLM_MODEL:-}
ARMS=${ARMS:-adapted same-budget same-finetune}
PYTHON=${PYTHON:-python3}
SST2=../shared/data/sst2
BIN=target/release/modernft
WORK=${WORK:-$(mktemp -d)}
echo "work folder: $WORK"
"$PYTHON" - "$SST2/train.jsonl" ../shared/data/imdb/imdb.jsonl "$WORK" "$ROWS" <<'PY'
import json, random, sys
sst2, imdb, work, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
train = open(sst2, encoding="utf-8").read().splitlines()
with open(f"{work}/corpus.txt", "w", encoding="utf-8") as out:
    for path in (sst2, imdb):
        for line in open(path, encoding="utf-8"):
            text = " ".join(json.loads(line)["text"].split())
            if text:
                out.write(text + "\n")
random.Random(0).shuffle(train)
open(f"{work}/labelled.jsonl", "w", encoding="utf-8").write("\n".join(train[:rows]) + "\n")
PY
echo "corpus: $(wc -l < "$WORK/corpus.txt") documents; labelled: $ROWS rows"
if [ -z "$MLM_MODEL" ]; then
  start=$(date +%s)
  "$BIN" train --quiet --config configs/mlm.toml --set "data.train=\"$WORK/corpus.txt\"" \
    --set "training.max_steps=$MLM_STEPS" --set "data.max_length=$MLM_LENGTH" --set "training.seed=${SEEDS%% *}" --set "output.dir=\"$WORK/mlm\"" > "$WORK/mlm.out" 2>&1 || { cat "$WORK/mlm.out"; exit 1; }
  echo "mlm: $MLM_STEPS steps of $MLM_LENGTH-token blocks in $(( $(date +%s) - start )) s; $(grep -A0 'validation ' "$WORK/mlm.out" | sed 's/^ *//')"
  MLM_MODEL="$WORK/mlm/model"
fi
finetune() { # $1 name, $2 model lines, $3 steps, $4 learning rate
  cat > "$WORK/$1.toml" <<TOML
$2
[data]
train = "$WORK/labelled.jsonl"
validation = "$SST2/dev.jsonl"
max_length = 64
[training]
learning_rate = $4
batch_size = 32
eval_batch_size = 128
max_steps = $3
weight_decay = 0.01
warmup_ratio = 0.06
eval_strategy = "no"
seed = $SEED
logging_steps = 1000
[output]
dir = "$WORK/$1"
TOML
  local t0=$(date +%s)
  "$BIN" train --quiet --config "$WORK/$1.toml" > "$WORK/$1.out" 2>&1 || { cat "$WORK/$1.out"; exit 1; }
  acc=$(grep '"type":"final"' "$WORK/$1/metrics.jsonl" | "$PYTHON" -c 'import json,sys; print(round(json.loads(sys.stdin.readline())["accuracy"], 4))')
  printf '%-40s %6s steps  dev accuracy %s  (%d s)\n' "$1" "$3" "$acc" "$(( $(date +%s) - t0 ))"
}
SCRATCH=$'[model]\nconfig = "examples/sst2-small/config.json"\ntokenizer = "../shared/data/modernbert/tokenizer.json"'
arm() { case " $ARMS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
for SEED in $SEEDS; do
  for lr in $FT_LRS; do
    if arm adapted; then finetune "adapted-then-finetuned-lr$lr-seed$SEED" "$(printf '[model]\nname = "%s"' "$MLM_MODEL")" "$FT_STEPS" "$lr"; fi
    if arm same-budget; then finetune "random-init-same-budget-lr$lr-seed$SEED" "$SCRATCH" "$(( MLM_STEPS + FT_STEPS ))" "$lr"; fi
    if arm same-finetune; then finetune "random-init-same-finetune-lr$lr-seed$SEED" "$SCRATCH" "$FT_STEPS" "$lr"; fi
  done
done | tee "$WORK/results.txt"
# Per arm and learning rate over the seeds: mean, lowest, highest.
"$PYTHON" - "$WORK/results.txt" <<'PY2'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    m = re.match(r"(\S+)-seed\d+\s+(\d+) steps\s+dev accuracy (\S+)", line)
    if m:
        runs.setdefault((m.group(1), m.group(2)), []).append(float(m.group(3)))
print(f"\n{'arm':<40} {'steps':>6}  seeds  mean    lowest  highest")
for (name, steps), accs in runs.items():
    print(f"{name:<40} {steps:>6}  {len(accs):>5}  {statistics.mean(accs):.4f}  {min(accs):.4f}  {max(accs):.4f}")
PY2
