#!/usr/bin/env bash
# The GPU check of #35, for a machine with an NVIDIA GPU (about 8 minutes on one H200):
#   1. builds `--features cuda` (release binary and the integration tests), unless BIN_DIR already
#      holds them (`modernft` and `it`, built elsewhere for this machine);
#   2. runs the parity tests (logits, hidden states, every gradient, AdamW steps, the masked LM, the
#      Trainer's 30 steps) on the GPU: MODERNFT_TEST_DEVICE=cuda;
#   3. trains configs/quickstart.toml with --device cuda;
#   4. benchmarks ModernBERT-base training (16 x 128 and 32 x 512, f32 and bf16) and embedding
#      (32 x 128) against PyTorch on the same GPU (scripts/bench_gpu_torch.py: sdpa, bf16 autocast,
#      fused AdamW), printing ratios (modernft tokens/s over PyTorch's).
# A failing step is reported and the next one runs; the exit status is 1 when any step failed.
#
#     bash scripts/device_check.sh [BIN_DIR]        # OUT=folder keeps the logs (default target/device-check)
#
# DEVICE=cpu SIZE=tiny bash scripts/device_check.sh target/release-bins runs the same steps on the CPU
# with a tiny model (a check of the script itself, with binaries built without CUDA).
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-}
OUT=${OUT:-target/device-check}
DEVICE=${DEVICE:-cuda}
SIZE=${SIZE:-base}
mkdir -p "$OUT"
rm -f "$OUT/bench.jsonl"
failed=0
step() { echo; echo "== $*"; }
fail() { echo "FAILED: $*"; failed=1; }

step "GPU"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || [ "$DEVICE" = cpu ] || fail "nvidia-smi"
command -v nvcc >/dev/null && nvcc --version | tail -n 1

if [ -z "$BIN" ]; then
  step "build --features cuda"
  export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}
  start=$(date +%s)
  cargo build --release --locked --features cuda 2>&1 | tail -n 3
  it=$(cargo test --release --locked --features cuda --no-run 2>&1 | grep -o 'target/release/deps/it-[0-9a-f]*' | tail -n 1)
  echo "built in $(( $(date +%s) - start )) s"
  BIN=$OUT/bin
  mkdir -p "$BIN"
  cp target/release/modernft "$BIN/" && [ -n "$it" ] && cp "$it" "$BIN/it" || fail "build"
fi
[ -x "$BIN/modernft" ] && [ -x "$BIN/it" ] || { echo "no modernft and it binaries in $BIN"; exit 1; }
# The test binary finds the fixtures and the binary here, wherever it was built.
export MODERNFT_REPO=$PWD MODERNFT_BIN=$(cd "$BIN" && pwd)/modernft

step "parity tests on $DEVICE (MODERNFT_TEST_DEVICE=$DEVICE)"
MODERNFT_TEST_DEVICE=$DEVICE timeout 300 "$BIN/it" parity:: trainer_parity:: --test-threads 1 2>&1 | tee "$OUT/parity.log" | grep -E "^test |test result" \
  || fail "parity tests"
grep -q "test result: ok" "$OUT/parity.log" || fail "parity tests"

step "train configs/quickstart.toml --device $DEVICE"
rm -rf "$OUT/quickstart"
sed "s#^dir = .*#dir = \"$OUT/quickstart\"#" configs/quickstart.toml > "$OUT/quickstart.toml"
start=$(date +%s)
timeout 300 "$BIN/modernft" train --config "$OUT/quickstart.toml" --device "$DEVICE" --quiet > "$OUT/quickstart.log" 2>&1 \
  && { tail -n 3 "$OUT/quickstart.log"; echo "trained in $(( $(date +%s) - start )) s"; } \
  || { tail -n 20 "$OUT/quickstart.log"; fail "quickstart on $DEVICE"; }

step "ModernBERT-$SIZE on $DEVICE: modernft bench against PyTorch (tokens/s)"
printf '%-26s %14s %14s %8s\n' case modernft pytorch ratio
bench() {
  local name=$1 mode=$2 batch=$3 seq=$4 dtype=$5
  local ours theirs a b
  ours=$(timeout 240 "$BIN/modernft" bench --device "$DEVICE" --size "$SIZE" --mode "$mode" --batch "$batch" --seq "$seq" \
    --steps 10 --warmup 3 --dtype "$dtype" 2>"$OUT/$name.err" | tail -n 1)
  theirs=$(timeout 240 python3 scripts/bench_gpu_torch.py --device "$DEVICE" --size "$SIZE" --mode "$mode" --batch "$batch" --seq "$seq" \
    --steps 10 --warmup 3 --dtype "$dtype" 2>>"$OUT/$name.err" | tail -n 1)
  echo "{\"case\": \"$name\", \"modernft\": ${ours:-null}, \"pytorch\": ${theirs:-null}}" >> "$OUT/bench.jsonl"
  a=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens_per_s'])" "$ours" 2>/dev/null)
  b=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['tokens_per_s'])" "$theirs" 2>/dev/null)
  if [ -n "$a" ] && [ -n "$b" ]; then
    python3 -c "import sys; a, b = float(sys.argv[2]), float(sys.argv[3]); print(f'{sys.argv[1]:<26} {a:14.0f} {b:14.0f} {a / b:8.2f}')" "$name" "$a" "$b"
  else
    echo "$name: no result ($(tail -n 2 "$OUT/$name.err" | tr '\n' ' '))"; fail "bench $name"
  fi
}
bench train-$SIZE-16x128 train 16 128 fp32
bench train-$SIZE-16x128-bf16 train 16 128 bf16
bench train-$SIZE-32x512 train 32 512 fp32
bench train-$SIZE-32x512-bf16 train 32 512 bf16
bench embed-$SIZE-32x128 embed 32 128 fp32
bench embed-$SIZE-32x128-bf16 embed 32 128 bf16

echo
[ "$failed" = 0 ] && echo "device_check.sh: every step passed" || echo "device_check.sh: some steps failed (above)"
exit "$failed"
