#!/usr/bin/env bash
# Two modernft binaries (before and after a change) and transformers (../shared/bench/hf_bench.py),
# alternated on the same cases, round by round, on the same machine; prints tok/s of each run and the
# ratios to transformers, then times `modernft embed` end to end with each binary and compares their
# vectors. Needs `pip install -r ../shared/bench/requirements.txt`.
#
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
#   cargo build --release
#   OLD=/tmp/old/target/release/modernft NEW=target/release/modernft ROUNDS=2 bash scripts/bench_old_new.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${OLD:?set OLD to the binary before the change}
NEW=${NEW:-target/release/modernft}
ROUNDS=${ROUNDS:-2}
SST2=../shared/data/sst2/train.jsonl
declare -A CASES=(
  [train-sst2-grouped]="--data $SST2 --mode train --rows 256 --batch 16 --group-by-length"
  [embed-sst2]="--data $SST2 --mode embed --rows 2048 --batch 32"
)
metric() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print(round(r.get('real_tokens_per_s') or r.get('tokens_per_s') or r['batch']*r['seq']/r['seconds_per_step'],1))" "$1"; }
ratio() { python3 -c "print(round($1/$2,3))"; }
for round in $(seq "$ROUNDS"); do
  for name in train-sst2-grouped embed-sst2; do
    args=${CASES[$name]}
    old=$("$OLD" bench --threads 2 $args | tail -n 1)
    new=$("$NEW" bench --threads 2 $args | tail -n 1)
    hf=$(python ../shared/bench/hf_bench.py --threads 2 $args | tail -n 1)
    a=$(metric "$old"); b=$(metric "$new"); c=$(metric "$hf")
    echo "$name #$round  old $a  new $b  transformers $c  tok/s;  old/hf $(ratio "$a" "$c")  new/hf $(ratio "$b" "$c")"
  done
done
# End to end: `modernft embed` on a random-init ModernBERT-base folder, 2048 SST-2 rows.
[ -f target/bench-model/model.safetensors ] || python scripts/make_bench_model.py target/bench-model >/dev/null
head -n 2048 "$SST2" > target/bench-sst2-2048.jsonl
for round in $(seq "$ROUNDS"); do
  for label in old new; do
    bin=$OLD; [ "$label" = new ] && bin=$NEW
    t0=$(date +%s.%N)
    "$bin" embed --model target/bench-model --input target/bench-sst2-2048.jsonl --batch-size 32 --format npy > "target/e2e-$label.npy"
    t1=$(date +%s.%N)
    echo "embed-sst2-e2e #$round  $label  $(python3 -c "print(round($t1-$t0,2))") s"
  done
done
python3 -c "
import numpy as np
a, b = np.load('target/e2e-old.npy'), np.load('target/e2e-new.npy')
print('embed-sst2-e2e vectors: shape', a.shape, 'max |old - new|', float(abs(a - b).max()))"
