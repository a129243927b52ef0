#!/usr/bin/env bash
# Runs modernft's benchmark and transformers' (../shared/bench/hf_bench.py) back to back on the same
# machine, case by case, and prints each case's throughput ratio (modernft / transformers; > 1 means
# modernft is faster). Needs `pip install -r ../shared/bench/requirements.txt` and a release build.
#
#   cargo build --release && bash scripts/bench_side_by_side.sh            # all cases
#   bash scripts/bench_side_by_side.sh embed-sst2                          # one case by name
set -euo pipefail
cd "$(dirname "$0")/.."
HF="python ../shared/bench/hf_bench.py --threads 2"
MF="./target/release/modernft bench --threads 2"
SST2=../shared/data/sst2/train.jsonl
OUT=${OUT:-bench-results.jsonl}

declare -A CASES=(
  [train-base-16x128]="--size base --mode train --batch 16 --seq 128 --steps 3 --warmup 1"
  [embed-base-32x128]="--size base --mode embed --batch 32 --seq 128 --steps 5 --warmup 2"
  [train-sst2]="--data $SST2 --mode train --rows 256 --batch 16"
  [train-sst2-grouped]="--data $SST2 --mode train --rows 256 --batch 16 --group-by-length"
  [embed-sst2]="--data $SST2 --mode embed --rows 2048 --batch 32"
  [embed-sst2-grouped]="--data $SST2 --mode embed --rows 2048 --batch 32 --group-by-length"
)
ORDER=(train-base-16x128 embed-base-32x128 train-sst2 train-sst2-grouped embed-sst2 embed-sst2-grouped)
[ $# -gt 0 ] && ORDER=("$@")

metric() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(r.get('real_tokens_per_s') or r.get('tokens_per_s') or r['batch']*r['seq']/r['seconds_per_step'])" "$1"; }
rss() { python3 -c "import json,sys; print(round(json.loads(sys.argv[1])['peak_rss_mib']))" "$1"; }

printf '%-22s %14s %14s %8s %12s %12s\n' case "modernft tok/s" "hf tok/s" ratio "modernft MiB" "hf MiB"
for name in "${ORDER[@]}"; do
  args=${CASES[$name]}
  mf=$($MF $args | tail -n 1)
  hf=$($HF $args | tail -n 1)
  echo "{\"case\": \"$name\", \"modernft\": $mf, \"transformers\": $hf}" >> "$OUT"
  a=$(metric "$mf"); b=$(metric "$hf")
  printf '%-22s %14.1f %14.1f %8.2f %12s %12s\n' "$name" "$a" "$b" "$(python3 -c "print($a/$b)")" "$(rss "$mf")" "$(rss "$hf")"
done
