#!/usr/bin/env bash
# Runs the reader fuzz harness (tests/it/fuzz.rs) for as long as asked, a new seed each round.
#   bash scripts/fuzz.sh [SECONDS] [CASES_PER_READER]      (defaults: 600 s, 2000 cases)
# A failure prints the seed and the shrunk mutation list; rerun one round with
#   MODERNFT_FUZZ_SEED=N MODERNFT_FUZZ_CASES=M cargo test --test it fuzz:: -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
cases=${2:-2000}
end=$(( $(date +%s) + seconds ))
seed=${MODERNFT_FUZZ_SEED:-$(date +%s)}
cargo test --test it --no-run
while [ "$(date +%s)" -lt "$end" ]; do
  echo "== seed $seed, $cases cases per reader"
  MODERNFT_FUZZ_SEED=$seed MODERNFT_FUZZ_CASES=$cases cargo test --test it fuzz:: -- --nocapture 2>&1 | grep -E "^fuzz|panicked|FAILED|test result"
  seed=$((seed + 1))
done
