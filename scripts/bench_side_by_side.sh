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
  long-512 long-1024 long-2048 long-4096)
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

printf '%-24s %14s %14s %8s %12s %12s\n' case "modernft tok/s" "hf tok/s" ratio "modernft MiB" "hf MiB"
for name in "${ORDER[@]}"; do
  case $name in
    embed-sst2-e2e) e2e "$name" "" ""; continue ;;
    embed-sst2-e2e-bf16) e2e "$name" "--precision bf16" "--dtype bf16"; continue ;;
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
