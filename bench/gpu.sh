#!/usr/bin/env bash
# The CUDA forward's whole GPU session in one call: configure + build (-j16), the GPU tests,
# compute-sanitizer (memcheck, racecheck, synccheck) on the small cases of every feature, an
# ncu look at one kernel, and the benchmark against PyTorch SDPA (FA2) and cuDNN.
#
# Run from the repository root on the GPU machine:  OUT=/path bench/gpu.sh
# Environment (all optional):
#   STEPS="build test sanitize ncu bench"   which steps, in this order
#   ARCHS=90 HDIMS=all DTYPES=all           the instance set (FLASHATTN_ARCHS / _HDIMS / _DTYPES)
#   BUILD=build-gpu                         build directory
#   GTEST_ROOT=dir                          a GoogleTest (include/, lib/) if the machine has none
#   TEST_FILTER='*'                         gtest filter of the test step
#   BENCH_ARGS=""                           extra arguments of bench/gpu_forward.py
# Logs and JSON go to $OUT; the last lines printed are the summary and the benchmark table.
set -uo pipefail

OUT=${OUT:-/tmp/flashattn-gpu}
STEPS=${STEPS:-"build test sanitize ncu bench"}
ARCHS=${ARCHS:-90}
HDIMS=${HDIMS:-all}
DTYPES=${DTYPES:-all}
BUILD=${BUILD:-build-gpu}
TEST_FILTER=${TEST_FILTER:-'*'}
BENCH_ARGS=${BENCH_ARGS:-}
export PATH=$PATH:/usr/local/cuda/bin
mkdir -p "$OUT"
summary=()
note() { summary+=("$1"); echo "== $1"; }

has_step() { [[ " $STEPS " == *" $1 "* ]]; }

if has_step build; then
  gtest_args=()
  [[ -n "${GTEST_ROOT:-}" ]] && gtest_args=(-DGTEST_ROOT="$GTEST_ROOT")
  start=$(date +%s)
  { cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHATTN_CUDA=ON \
      -DFLASHATTN_ARCHS="$ARCHS" -DFLASHATTN_HDIMS="$HDIMS" -DFLASHATTN_DTYPES="$DTYPES" \
      -DFLASHATTN_BUILD_CLI=OFF -DFLASHATTN_PTXAS_VERBOSE=ON "${gtest_args[@]}" &&
    cmake --build "$BUILD" -j16 --target flashattn forward_test &&
    g++ -O2 -shared -fPIC -fopenmp -std=c++20 -Iinclude bench/gpu_shim.cpp \
      "$BUILD/libflashattn.a" \
      -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread \
      -o "$BUILD/libflashattn_bench.so"; } > "$OUT/build.log" 2>&1
  status=$?
  note "build (archs $ARCHS, hdims $HDIMS, dtypes $DTYPES, -j16): rc=$status in $(( $(date +%s) - start )) s"
  grep -E "spill|Used [0-9]+ registers" "$OUT/build.log" | sort | uniq -c | sort -rn | head -8
  [[ $status -ne 0 ]] && { tail -40 "$OUT/build.log"; exit 1; }
fi

if has_step test; then
  start=$(date +%s)
  "$BUILD/tests/forward_test" --gtest_filter="$TEST_FILTER" > "$OUT/test.log" 2>&1
  status=$?
  note "tests: rc=$status in $(( $(date +%s) - start )) s; $(grep -E '^\[  PASSED  \]|^\[  FAILED  \]|^\[  SKIPPED \]' "$OUT/test.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED  \]|Failure|expected|actual" "$OUT/test.log" | head -30
fi

if has_step sanitize; then
  : > "$OUT/sanitizer.log"
  for tool in memcheck racecheck synccheck; do
    start=$(date +%s)
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$BUILD/tests/forward_test" \
      --gtest_filter='Small/*:CudaForwardDropout*' >> "$OUT/sanitizer.log" 2>&1
    status=$?
    note "compute-sanitizer $tool: rc=$status in $(( $(date +%s) - start )) s; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1)"
  done
fi

if has_step ncu; then
  ncu --target-processes all -k regex:forward_kernel -c 2 --section SpeedOfLight \
    --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis \
    --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,smsp__inst_executed_op_ldsm.sum,local_load_bytes,local_store_bytes \
    python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" --dtypes bf16 --dims 128 \
    --seqlens 4096 --iters 1 --warmup 0 > "$OUT/ncu.log" 2>&1
  note "ncu: rc=$? (d128 bf16 s4096, causal and not: $OUT/ncu.log)"
  grep -E "forward_kernel|Registers Per|hmma|bank_conflicts|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|local_" "$OUT/ncu.log" | head -30
fi

if has_step bench; then
  PYTHONUNBUFFERED=1 python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" \
    --json "$OUT/gpu_forward.json" $BENCH_ARGS > "$OUT/bench.log" 2>&1
  note "bench: rc=$? ($OUT/bench.log, $OUT/gpu_forward.json)"
fi

printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
if has_step bench; then sed -n '/^dtype d/,$p' "$OUT/bench.log"; fi
