#!/usr/bin/env bash
# What the `mpi` feature needs to build and run, from Debian's packages: Open MPI (mpirun, mpicc,
# its headers) and libclang (rsmpi generates its bindings with bindgen). Installs only what is missing.
set -euo pipefail
if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 && ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q openmpi-bin libopenmpi-dev libclang-dev
