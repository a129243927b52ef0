#!/usr/bin/env bash
# Data-parallel training on one machine: ModernBERT-base (random init, the real config and
# tokenizer of ../shared) trained on IMDB reviews cut to 128 tokens, a global batch of 16 rows:
#   one process, batch 16, THREADS threads   vs   RANKS ranks (mpirun), batch 16/RANKS, 1 thread each
# alternated ROUNDS times. Prints each run's training tokens/s (the trainer's own count over all
# steps) and, for the MPI runs, the seconds spent in the all-reduce and their share.
#   cargo build --release --features mpi && ROUNDS=2 STEPS=6 bash scripts/bench_mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
STEPS=${STEPS:-6}
RANKS=${RANKS:-2}
THREADS=${THREADS:-$RANKS}
BIN=${BIN:-target/release/modernft}
PYTHON=${PYTHON:-python3}
WORK=${WORK:-$(mktemp -d)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# In a container that forbids cross-memory attach: OMPI_MCA_btl_vader_single_copy_mechanism=none
config() { # $1 name, $2 batch per process
  cat > "$WORK/$1.toml" <<TOML
[model]
config = "../shared/data/modernbert/ModernBERT-base/config.reconstructed.json"
tokenizer = "../shared/data/modernbert/tokenizer.json"
[data]
train = "../shared/data/imdb/imdb.jsonl"
max_length = 128
[training]
batch_size = $2
max_steps = $STEPS
eval_strategy = "no"
logging_steps = 1
shuffle = false
[output]
dir = "$WORK/$1"
TOML
}
report() { # $1 run folder, $2 label: tokens/s, all-reduce seconds and share
  "$PYTHON" - "$WORK/$1/metrics.jsonl" "$2" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if '"train"' in l]
last = lines[-1]
msg = f"{sys.argv[2]:<24} tokens/s (all steps) {last['tokens_per_second']:8.1f}"
if "allreduce_seconds" in last:
    msg += f"   all-reduce {last['allreduce_seconds']:.2f} s of {last['session_seconds']:.1f} s ({100 * last['allreduce_seconds'] / last['session_seconds']:.1f}%), {last['allreduce_seconds'] / len(lines):.3f} s per step"
print(msg)
PY
}
config single 16
config ranks $((16 / RANKS))
for round in $(seq 1 "$ROUNDS"); do
  rm -rf "$WORK/single" "$WORK/ranks"
  RAYON_NUM_THREADS=$THREADS "$BIN" train --quiet --config "$WORK/single.toml" > "$WORK/single.out" 2>&1 || { cat "$WORK/single.out"; exit 1; }
  report single "1 process x $THREADS threads"
  RAYON_NUM_THREADS=1 mpirun --oversubscribe --bind-to none -np "$RANKS" "$BIN" train --quiet --config "$WORK/ranks.toml" > "$WORK/ranks.out" 2>&1 || { cat "$WORK/ranks.out"; exit 1; }
  report ranks "$RANKS ranks x 1 thread"
done
