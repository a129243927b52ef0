#!/usr/bin/env bash
# Compile-checks `--features nccl` (= cuda + mpi + NCCL's all-reduce; every target: the library, the
# binary, the tests) on a machine without a GPU or a CUDA toolkit: scripts/mpi_deps.sh installs Open
# MPI and libclang, scripts/cuda_toolkit.sh nvcc from PyPI, candle's kernels
# are compiled for CUDA_COMPUTE_CAP (default 80), and rustc checks our code against candle's CUDA
# backend and cudarc's NCCL. Linking needs the NVIDIA driver's libcuda.so (and libnccl), so this stops
# short of it (`cargo check`).
# Its own target folder (target/cuda-check) keeps the default build's artifacts as they are.
set -euo pipefail
cd "$(dirname "$0")/.."
# nvcc compiles host code with g++.
command -v g++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; } >&2
bash scripts/mpi_deps.sh >&2
eval "$(bash scripts/cuda_toolkit.sh)"
nvcc --version | tail -n 1
start=$(date +%s)
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda-check} cargo check --locked --features nccl --all-targets
echo "check_cuda_build.sh: --features nccl (cuda, mpi) compiles ($(( $(date +%s) - start )) s)"
