#!/usr/bin/env bash
# The benchmark suite's GPU session in one call: builds the Python package's C library with
# CUDA, then runs bench/attention.py (fa2, gqa and varlen grids; ours vs every peer present),
# writing JSON, PNG charts, a log and the summary table under $OUT.
#
# Run from the repository root on the GPU machine:  OUT=/path bench/gpu_suite.sh
# Environment (all optional):
#   ARCHS=90 BUILD=build-suite     FLASHATTN_ARCHS and the build directory
#   ITERS=20 WARMUP=3              timed calls per measurement (median) and warm-up calls
#   TOTAL_S=480                    wall budget of the whole script: bench/attention.py starts no
#                                  new point after TOTAL_S - (build time) - 45 s; the points
#                                  left are recorded as "skipped" (fp16 of gqa/varlen go last)
#   PREFIX=suite                   file names under $OUT
#   SUITE_ARGS=""                  extra arguments of bench/attention.py
#   SUITE_COMMIT=<commit>          recorded in the JSON as the commit measured; export it on a
#                                  GPU machine whose copy of the tree may carry stale git data
# The last lines printed are the summary and the bf16 rows of the table (TFLOP/s fwd/bwd).
set -uo pipefail

OUT=${OUT:-/tmp/flashattn-suite}
ARCHS=${ARCHS:-90}
BUILD=${BUILD:-build-suite}
ITERS=${ITERS:-20}
WARMUP=${WARMUP:-3}
TOTAL_S=${TOTAL_S:-480}
PREFIX=${PREFIX:-suite}
SUITE_ARGS=${SUITE_ARGS:-}
export PATH=$PATH:/usr/local/cuda/bin
mkdir -p "$OUT"
start=$(date +%s)

{ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHATTN_CUDA=ON \
    -DFLASHATTN_ARCHS="$ARCHS" -DFLASHATTN_BUILD_TESTS=OFF -DFLASHATTN_BUILD_CLI=OFF \
    -DFLASHATTN_BUILD_PYTHON=ON &&
  cmake --build "$BUILD" -j16 --target flashattn_c_abi; } > "$OUT/build.log" 2>&1
status=$?
built=$(( $(date +%s) - start ))
echo "== build (archs $ARCHS, -j16, target flashattn_c_abi): rc=$status in $built s"
if [[ $status -ne 0 ]]; then tail -40 "$OUT/build.log"; exit 1; fi

# The package from the source tree, its C library from the CMake tree (docs/python.md).
export PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH}
export FLASHATTN_C_LIBRARY=$PWD/$BUILD/python/flashattn/_C.so
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw \
  --format=csv 2>&1
python3 -c "import flashattn; print('flashattn', flashattn.__version__, 'cuda:', flashattn.cuda_available())"

deadline=$(( TOTAL_S - built - 45 ))
python3 bench/attention.py --device cuda --iters "$ITERS" --warmup "$WARMUP" \
  --deadline-s "$deadline" --json "$OUT/$PREFIX.json" --png-prefix "$OUT/$PREFIX" \
  --table "$OUT/$PREFIX-table.txt" $SUITE_ARGS > "$OUT/$PREFIX.log" 2>&1
status=$?
echo "== suite: rc=$status in $(( $(date +%s) - start - built )) s (deadline $deadline s;" \
  "$OUT/$PREFIX.log, $OUT/$PREFIX.json)"
grep -E "^(device|ceilings|wrote|plot failed|Traceback)|Error" "$OUT/$PREFIX.log" | head -12
if [[ $status -ne 0 ]]; then tail -30 "$OUT/$PREFIX.log"; exit 1; fi
head -2 "$OUT/$PREFIX-table.txt"
grep -E "^[a-z0-9]+ +bf16 " "$OUT/$PREFIX-table.txt"
