#!/usr/bin/env bash
# Runs modernft's benchmark and transformers' (../shared/bench/hf_bench.py) back to back on the same
# machine, case by case, and prints each case's throughput ratio (modernft / transformers; > 1 means
# modernft is faster). Needs `pip install -r ../shared/bench/requirements.txt` and a release build.
#
#   cargo build --release && bash scripts/bench_side_by_side.sh            # all cases
#   bash scripts/bench_side_by_side.sh embed-sst2                          # one case by name
#   ROUNDS=3 bash scripts/bench_side_by_side.sh train-base-16x128          # alternate 3 times, median
#
# Cases named *-e2e time `modernft embed` end to end (process start to last vector written, tokenizer
# and weight loading included) on a random-init ModernBERT-base folder written by
# scripts/make_bench_model.py, against hf_bench.py's timed forward passes over the same rows and model
# (its loading and tokenizing are not timed, so the ratio is conservative for modernft).
# Cases named long-N embed one N-token document: local layers are banded in modernft.
# Case train-stsb-cosent trains a small ModernBERT (examples/sst2-small/config.json: hidden 256, 4
# layers, the real 50,368-token vocabulary; random init written once by scripts/make_bench_model.py)
# contrastively (CoSENT) on the first 3,000 STS-B pairs, batch 32, one epoch: `modernft train`'s
# training loop (its "training time") against sentence-transformers' `trainer.train()`
# (scripts/bench_st_train.py; needs `datasets` and `accelerate` from scripts/requirements.txt). The
# ratio is of seconds (> 1: modernft faster); "modernft wall" is the whole command, start to exit.
set -euo pipefail
cd "$(dirname "$0")/.."
HF="python ../shared/bench/hf_bench.py --threads 2"
MF="./target/release/modernft bench --threads 2"
SST2=../shared/data/sst2/train.jsonl
OUT=${OUT:-bench-results.jsonl}
# Machine speed drifts by 10-20% over minutes on shared hosts: ROUNDS=3 alternates the two tools
# three times per case and prints every round's ratio and their median.
ROUNDS=${ROUNDS:-1}

declare -A CASES=(
  [train-base-16x128]="--size base --mode train --batch 16 --seq 128 --steps 3 --warmup 1"
  [embed-base-32x128]="--size base --mode embed --batch 32 --seq 128 --steps 5 --warmup 2"
  [train-sst2]="--data $SST2 --mode train --rows 256 --batch 16"
  [train-sst2-grouped]="--data $SST2 --mode train --rows 256 --batch 16 --group-by-length"
  [embed-sst2]="--data $SST2 --mode embed --rows 2048 --batch 32"
  [embed-sst2-grouped]="--data $SST2 --mode embed --rows 2048 --batch 32 --group-by-length"
  [train-base-16x128-bf16]="--size base --mode train --batch 16 --seq 128 --steps 3 --warmup 1 --dtype bf16"
  [train-sst2-grouped-bf16]="--data $SST2 --mode train --rows 256 --batch 16 --group-by-length --dtype bf16"
  [embed-base-32x128-bf16]="--size base --mode embed --batch 32 --seq 128 --steps 5 --warmup 2 --dtype bf16"
  [embed-sst2-bf16]="--data $SST2 --mode embed --rows 2048 --batch 32 --dtype bf16"
  [embed-sst2-grouped-bf16]="--data $SST2 --mode embed --rows 2048 --batch 32 --group-by-length --dtype bf16"
  [long-512]="--size base --mode embed --batch 1 --seq 512 --steps 3 --warmup 1"
  [long-1024]="--size base --mode embed --batch 1 --seq 1024 --steps 3 --warmup 1"
  [long-2048]="--size base --mode embed --batch 1 --seq 2048 --steps 2 --warmup 1"
  [long-4096]="--size base --mode embed --batch 1 --seq 4096 --steps 2 --warmup 1"
)
ORDER=(train-base-16x128 embed-base-32x128 train-sst2 train-sst2-grouped embed-sst2 embed-sst2-grouped
  train-base-16x128-bf16 train-sst2-grouped-bf16 embed-base-32x128-bf16 embed-sst2-bf16 embed-sst2-grouped-bf16 embed-sst2-e2e embed-sst2-e2e-bf16
  long-512 long-1024 long-2048 long-4096 train-stsb-cosent)
[ $# -gt 0 ] && ORDER=("$@")

metric() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r.get('real_tokens_per_s') or r.get('tokens_per_s') or r['batch']*r['seq']/r['seconds_per_step'])" "$1"; }
rss() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['peak_rss_mib']))" "$1"; }

# End to end: `modernft embed` wall time vs hf_bench's timed forwards, same model folder and rows.
e2e() {
  local name=$1 ours=$2 theirs=$3
  [ -f target/bench-model/model.safetensors ] || python scripts/make_bench_model.py target/bench-model >/dev/null
  head -n 2048 "$SST2" > target/bench-sst2-2048.jsonl
  local t0 t1 rss
  t0=$(date +%s.%N)
  rss=$( { /usr/bin/time -f "%M" ./target/release/modernft embed --model target/bench-model \
      --input target/bench-sst2-2048.jsonl --batch-size 32 --format npy $ours > /dev/null; } 2>&1 | tail -n 1)
  t1=$(date +%s.%N)
  local hf
  hf=$($HF --model-dir target/bench-model --data target/bench-sst2-2048.jsonl --mode embed --rows 2048 --batch 32 $theirs | tail -n 1)
  local mf="{\"tool\": \"modernft embed\", \"seconds\": $(python3 -c "print($t1-$t0)"), \"peak_rss_mib\": $((rss / 1024)), \"args\": \"$ours\"}"
  echo "{\"case\": \"$name\", \"modernft\": $mf, \"transformers\": $hf}" >> "$OUT"
  python3 - "$mf" "$hf" "$name" <<'PY'
import json, sys
mf, hf, name = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
tokens = hf["real_tokens"]
a, b = tokens / mf["seconds"], hf["real_tokens_per_s"]
print(f"{name:<24} {a:14.1f} {b:14.1f} {a / b:8.2f} {mf['peak_rss_mib']:>12} {round(hf['peak_rss_mib']):>12}")
PY
}

# Contrastive training: modernft's loop against sentence-transformers' trainer.train(), ROUNDS times.
st_train() {
  local name=$1 model=target/bench-st-small data=target/bench-stsb-3000.jsonl cfg=target/bench-st-cosent.toml
  [ -f $model/model.safetensors ] || python scripts/make_bench_model.py $model examples/sst2-small/config.json >/dev/null 2>&1
  head -n 3000 ../shared/data/stsb/train.jsonl > $data
  printf '%s\n' 'task = "embedding"' '[model]' "name = \"$model\"" 'pooling = "mean"' '[data]' "train = \"$data\"" \
    'text_column = "text_a"' 'text_pair_column = "text_b"' 'label_column = "score"' 'max_length = 128' '[training]' \
    'embedding_loss = "cosent"' 'loss_scale = 20.0' 'learning_rate = 3e-4' 'batch_size = 32' 'epochs = 1' \
    'weight_decay = 0.01' 'warmup_ratio = 0.1' 'max_grad_norm = 1.0' 'eval_strategy = "no"' 'logging_steps = 10000' \
    '[output]' 'dir = "target/bench-st-run"' > $cfg
  printf '%-24s %12s %14s %12s %8s %12s %12s\n' case "modernft s" "modernft wall" "s-t s" ratio "modernft MiB" "s-t MiB"
  local ratios=() round t0 t1 out st loop wall rss label
  for round in $(seq "$ROUNDS"); do
    t0=$(date +%s.%N)
    out=$( { /usr/bin/time -f "rss %M" ./target/release/modernft train --config $cfg --overwrite --quiet; } 2>&1 )
    t1=$(date +%s.%N)
    st=$(python scripts/bench_st_train.py --model-dir $model --data $data --batch 32 --threads 2 2>/dev/null | tail -n 1)
    loop=$(echo "$out" | sed -n 's/.*training time *\([0-9.]*\) s.*/\1/p')
    rss=$(( $(echo "$out" | sed -n 's/^rss \([0-9]*\)$/\1/p') / 1024 ))
    wall=$(python3 -c "print(round($t1 - $t0, 2))")
    echo "{\"case\": \"$name\", \"round\": $round, \"modernft\": {\"train_seconds\": $loop, \"wall_seconds\": $wall, \"peak_rss_mib\": $rss}, \"sentence_transformers\": $st}" >> "$OUT"
    ratios+=("$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['seconds'] / $loop)" "$st")")
    label=$name; [ "$ROUNDS" -gt 1 ] && label="$name #$round"
    python3 -c "
import json, sys
st = json.loads(sys.argv[1])
print(f\"{sys.argv[2]:<24} {float(sys.argv[3]):12.1f} {float(sys.argv[4]):14.1f} {st['seconds']:12.1f} {st['seconds'] / float(sys.argv[3]):8.2f} {sys.argv[5]:>12} {round(st['peak_rss_mib']):>12}\")
" "$st" "$label" "$loop" "$wall" "$rss"
  done
  if [ "$ROUNDS" -gt 1 ]; then
    printf '%-24s %12s %14s %12s %8.2f\n' "$name median" "" "" "" "$(python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}")"
  fi
}

header() { printf '%-24s %14s %14s %8s %12s %12s\n' case "modernft tok/s" "hf tok/s" ratio "modernft MiB" "hf MiB"; }
headed=0
for name in "${ORDER[@]}"; do
  [ "$name" != train-stsb-cosent ] && [ $headed = 0 ] && { header; headed=1; }
  case $name in
    embed-sst2-e2e) e2e "$name" "" ""; continue ;;
    embed-sst2-e2e-bf16) e2e "$name" "--precision bf16" "--dtype bf16"; continue ;;
    train-stsb-cosent) st_train "$name"; headed=0; continue ;;
  esac
  args=${CASES[$name]}
  ratios=()
  for round in $(seq "$ROUNDS"); do
    mf=$($MF $args | tail -n 1)
    hf=$($HF $args | tail -n 1)
    echo "{\"case\": \"$name\", \"round\": $round, \"modernft\": $mf, \"transformers\": $hf}" >> "$OUT"
    a=$(metric "$mf"); b=$(metric "$hf")
    ratios+=("$(python3 -c "print($a/$b)")")
    label=$name; [ "$ROUNDS" -gt 1 ] && label="$name #$round"
    printf '%-24s %14.1f %14.1f %8.2f %12s %12s\n' "$label" "$a" "$b" "${ratios[-1]}" "$(rss "$mf")" "$(rss "$hf")"
  done
  if [ "$ROUNDS" -gt 1 ]; then
    printf '%-24s %14s %14s %8.2f\n' "$name median" "" "" "$(python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}")"
  fi
done
