#!/usr/bin/env bash
# Builds flashattn (Release) and runs the CLI's default problem with --check: batch 2, 16 heads,
# seqlen 2048, head_dim 64, causal, bf16, forward and backward, on the GPU when one is usable
# and on the CPU otherwise. Extra arguments go to the CLI (bash scripts/run.sh --help).
# CUDA kernels are built (FLASHATTN_CUDA=AUTO) for the present GPU's architecture only, and
# not at all when no GPU is present.
#   FLASHATTN_BUILD_DIR   build directory (default: build)
#   FLASHATTN_CMAKE_ARGS  extra CMake arguments, e.g. "-DFLASHATTN_ARCHS=90 -DFLASHATTN_HDIMS=64"
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/common.sh

bash scripts/install-deps.sh
build_dir=${FLASHATTN_BUILD_DIR:-build}
# Kernels only for the GPU that will run them; none where no GPU could (nvcc without a GPU).
cuda_args=(-DFLASHATTN_CUDA=AUTO)
if have_gpu; then
  arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '. ')
  [ -n "$arch" ] && cuda_args+=(-DFLASHATTN_ARCHS="$arch")
else
  echo "run.sh: no GPU found, building the CPU backends only"
  cuda_args=(-DFLASHATTN_CUDA=OFF)
fi
read -ra extra_cmake_args <<<"${FLASHATTN_CMAKE_ARGS:-}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cuda_args[@]}" \
  "${extra_cmake_args[@]}"
cmake --build "$build_dir" --target flashattn_cli -j "$(job_count)"
"$build_dir/tools/cli/flashattn" --check "$@"
