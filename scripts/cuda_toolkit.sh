#!/usr/bin/env bash
# A CUDA 13.2 compiler toolchain from PyPI, for building `--features cuda` on a machine without the
# CUDA toolkit (CI, a laptop, a container). Installs the pinned NVIDIA wheels into a virtual
# environment and prints the environment a build needs; use it as
#
#     eval "$(bash scripts/cuda_toolkit.sh)"          # once per shell
#     cargo build --release --features cuda
#
# Why these wheels and versions:
# - `nvidia-cuda-nvcc` for CUDA 13 ships `nvcc` (the CUDA 12 `-cu12` wheel does not); `-crt`, `-cccl`
#   (`nv/target`, needed by cuda_fp16.h), `-runtime` (headers, libcudart) and `nvidia-nvvm` (cicc)
#   complete it. All five must be the same release: a newer `nvidia-nvvm` writes PTX that the
#   older `ptxas` refuses ("Unsupported .version 9.5; current version is '9.2'").
# - 13.2: cudarc 0.19.10, which candle 0.11.1 uses, knows CUDA versions up to 13.4 and reads the
#   version from `nvcc --version`; 13.2 is the newest release with all five wheels published.
# - candle's kernel build (cudaforge) asks `nvidia-smi` for the GPU's compute capability; without a
#   GPU it needs CUDA_COMPUTE_CAP (80 = Ampere A100, 90 = Hopper, 89 = Ada; set yours before running
#   this to keep it).
#
# Linking a binary also needs the driver's libcuda.so and cuBLAS, cuRAND and NVRTC, which a machine
# with an NVIDIA driver and the CUDA runtime libraries has; CI without a GPU compile-checks only
# (`cargo check --features cuda`, scripts/check_cuda_build.sh).
set -euo pipefail
VENV=${CUDA_TOOLKIT_VENV:-$(cd "$(dirname "$0")/.." && pwd)/target/cuda-toolkit}
VERSION=13.2.86
if [ ! -x "$VENV/bin/pip" ]; then
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV" >&2; then
    # Debian and Ubuntu ship venv apart from python3.
    rm -rf "$VENV"
    { apt-get update -qq && apt-get install -y -qq python3-venv; } >&2 || sudo apt-get install -y -qq python3-venv >&2
    python3 -m venv "$VENV" >&2
  fi
fi
"$VENV/bin/pip" install -q --disable-pip-version-check \
  "nvidia-cuda-nvcc==$VERSION" "nvidia-cuda-crt==$VERSION" "nvidia-cuda-cccl==$VERSION" \
  "nvidia-cuda-runtime==$VERSION" "nvidia-nvvm==$VERSION" >&2
ROOT=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/cu13 | head -n 1)
[ -x "$ROOT/bin/nvcc" ] || { echo "cuda_toolkit.sh: no nvcc under $ROOT" >&2; exit 1; }
echo "export PATH=\"$ROOT/bin:\$PATH\""
echo "export CUDA_HOME=\"$ROOT\""
echo "export CUDA_COMPUTE_CAP=\"${CUDA_COMPUTE_CAP:-80}\""
echo "export LIBRARY_PATH=\"$ROOT/lib:\${LIBRARY_PATH:-}\""
