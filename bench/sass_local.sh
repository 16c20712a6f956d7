#!/usr/bin/env bash
# SASS of one generated instance on a machine without a GPU: compiles it to a cubin and
# disassembles it with cuobjdump + nvdisasm, which the CUDA toolkit here may lack; they come
# from PyPI's nvidia-cuda-cuobjdump / nvidia-cuda-nvdisasm wheels (downloaded once into
# SASS_TOOLS), then bench/sass_static.py summarises the loops of the matching functions.
# Usage: bench/sass_local.sh <instance, e.g. forward_bf16_w256_plain> [function filter]
#        [sass_static.py options]
# Env:   ARCH=90 (sm), NVCC_FLAGS="" (e.g. -DFLAG=0 for an A/B), OUT_DIR=/tmp/flashattn-sass
set -euo pipefail
cd "$(dirname "$0")/.."
instance=$1
filter=${2:-forward_kernel}
shift $(( $# > 1 ? 2 : 1 ))
ARCH=${ARCH:-90}
OUT_DIR=${OUT_DIR:-/tmp/flashattn-sass}
SASS_TOOLS=${SASS_TOOLS:-$HOME/.cache/flashattn-sass-tools}
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
mkdir -p "$OUT_DIR"

if ! command -v nvdisasm > /dev/null || ! command -v cuobjdump > /dev/null; then
  bin=$(find "$SASS_TOOLS" -path '*/bin/nvdisasm' 2> /dev/null | head -1 || true)
  if [[ -z "$bin" ]]; then
    mkdir -p "$SASS_TOOLS"
    python3 -m pip download --quiet --no-deps -d "$SASS_TOOLS" nvidia-cuda-cuobjdump \
      nvidia-cuda-nvdisasm
    for wheel in "$SASS_TOOLS"/*.whl; do python3 -m zipfile -e "$wheel" "$SASS_TOOLS"; done
    bin=$(find "$SASS_TOOLS" -path '*/bin/nvdisasm' | head -1)
    chmod +x "$(dirname "$bin")"/*
  fi
  export PATH="$(dirname "$bin"):$PATH"
fi

# The instances include the generated table of the configured build (any build folder has it).
generated=$(find . -maxdepth 3 -type d -name flashattn_cuda_generated | head -1)
[[ -n "$generated" ]] || { echo "configure a CUDA build first (cmake -B build ...)" >&2; exit 1; }
cubin="$OUT_DIR/$instance.sm$ARCH.cubin"
"$NVCC" -DFLASHATTN_WITH_CUDA=1 -Iinclude -Isrc -I"$generated" -O3 -DNDEBUG -std=c++17 \
  -gencode=arch=compute_$ARCH,code=sm_$ARCH -Xptxas=-v ${NVCC_FLAGS:-} -cubin -o "$cubin" \
  "src/cuda/instances/$instance.cu" 2>&1 | grep -E "Compiling|Used|spill" | paste - - - |
  sed -e 's/ptxas info *: //g' -e 's/Compiling entry function //' | cut -c1-220
cuobjdump -sass "$cubin" > "$OUT_DIR/$instance.sm$ARCH.sass"
python3 bench/sass_static.py "$OUT_DIR/$instance.sm$ARCH.sass" "$filter" "$@"
