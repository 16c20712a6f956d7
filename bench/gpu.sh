#!/usr/bin/env bash
# The CUDA forward's whole GPU session in one call: configure + build (-j16), the GPU tests,
# compute-sanitizer (memcheck, racecheck, synccheck) on the small cases of every feature, an
# ncu look at one kernel, and the benchmark against PyTorch SDPA (FA2) and cuDNN.
#
# Run from the repository root on the GPU machine:  OUT=/path bench/gpu.sh
# Environment (all optional):
#   STEPS="build test bench sanitize ncu"   which steps, in this order
#   ARCHS=90 HDIMS=all DTYPES=all           the instance set (FLASHATTN_ARCHS / _HDIMS / _DTYPES)
#   BUILD=build-gpu                         build directory
#   GTEST_ROOT=dir                          a GoogleTest (include/, lib/) if the machine has none
#   TEST_FILTER='*'                         gtest filter of the test step
#   BENCH_ARGS=""                           extra arguments of bench/gpu_forward.py
#   TUNE_VARIANTS="128:128:64:4:0:0 ..."    step "tune": width:block_m:block_n:warps:prefetch:early_k
#                                           schedules of one width, each built beside the
#                                           default library and timed alone (bf16)
# Logs and JSON go to $OUT; the last lines printed are the summary and the benchmark table.
set -uo pipefail

OUT=${OUT:-/tmp/flashattn-gpu}
STEPS=${STEPS:-"build test bench sanitize ncu"}
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

step_build() {
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
  if [[ $status -ne 0 ]]; then tail -40 "$OUT/build.log"; exit 1; fi
}

step_test() {
  start=$(date +%s)
  "$BUILD/tests/forward_test" --gtest_filter="$TEST_FILTER" > "$OUT/test.log" 2>&1
  status=$?
  note "tests: rc=$status in $(( $(date +%s) - start )) s; $(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?,?' "$OUT/test.log" | tr '\n' ' ')"
  grep -E "^\[  FAILED  \] [A-Z]|Failure|max_error|describe" "$OUT/test.log" | sort -u | head -30
}

step_sanitize() {
  : > "$OUT/sanitizer.log"
  for tool in memcheck racecheck synccheck; do
    start=$(date +%s)
    compute-sanitizer --tool "$tool" --error-exitcode 99 "$BUILD/tests/forward_test" \
      --gtest_filter='Small/*:CudaForwardDropout*' >> "$OUT/sanitizer.log" 2>&1
    status=$?
    note "compute-sanitizer $tool: rc=$status in $(( $(date +%s) - start )) s; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$OUT/sanitizer.log" | tail -1)"
  done
}

step_ncu() {
  ncu --target-processes all -k "regex:forward_kernel|flash_fwd" -c 6 --section SpeedOfLight \
    --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis --section WarpStateStats \
    --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,smsp__sass_inst_executed_op_local_ld.sum,smsp__sass_inst_executed_op_local_st.sum \
    python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" --dtypes bf16 --dims 128 \
    --seqlens 4096 --iters 1 --warmup 0 > "$OUT/ncu.log" 2>&1
  note "ncu: rc=$? (d128 bf16 s4096, ours and SDPA flash, causal and not: $OUT/ncu.log)"
  grep -E "forward_kernel|Registers Per|hmma|bank_conflicts|wavefronts|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|local_|Stall|stall" "$OUT/ncu.log" | head -40
}

step_bench() {
  PYTHONUNBUFFERED=1 python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" \
    --json "$OUT/gpu_forward.json" $BENCH_ARGS > "$OUT/bench.log" 2>&1
  note "bench: rc=$? ($OUT/bench.log, $OUT/gpu_forward.json)"
}

step_tune() {
  # Each variant: the two instances of its width rebuilt with FLASHATTN_SM80_TUNE_*, a backend
  # that knows only that width, linked ahead of the default library into its own shim.
  local dir="$BUILD/tune" jobs=()
  mkdir -p "$dir"
  : > "$OUT/tune.log"
  for variant in $TUNE_VARIANTS; do
    IFS=: read -r width m n warps prefetch early <<< "$variant"
    local name="w${width}_m${m}_n${n}_w${warps}_p${prefetch}_e${early}" flags
    flags="-DFLASHATTN_SM80_TUNE_WIDTH=$width -DFLASHATTN_SM80_TUNE_M=$m -DFLASHATTN_SM80_TUNE_N=$n"
    flags+=" -DFLASHATTN_SM80_TUNE_WARPS=$warps -DFLASHATTN_SM80_TUNE_PREFETCH=$prefetch"
    flags+=" -DFLASHATTN_SM80_TUNE_EARLYK=$early"
    mkdir -p "$dir/$name"
    echo "FLASHATTN_FORWARD_INSTANCE(bf16, $width)" > "$dir/$name/flashattn_cuda_instances.inc"
    (
      for variant_kind in plain extras; do
        nvcc -O3 -std=c++17 -Xcompiler=-fPIC -gencode=arch=compute_90,code=sm_90 -Iinclude -Isrc \
          $flags -Xptxas=-v -c "src/cuda/instances/forward_bf16_w${width}_${variant_kind}.cu" \
          -o "$dir/$name/$variant_kind.o" 2> "$dir/$name/$variant_kind.ptxas" &
      done
      g++ -O2 -fPIC -std=c++20 -DFLASHATTN_WITH_CUDA=1 -Iinclude -Isrc -I"$dir/$name" \
        -I/usr/local/cuda/include -c src/cuda/sm80/backend.cpp -o "$dir/$name/backend.o" &&
      wait &&
      g++ -O2 -shared -fPIC -fopenmp -std=c++20 -Iinclude bench/gpu_shim.cpp "$dir/$name"/*.o \
        "$BUILD/libflashattn.a" -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread \
        -o "$dir/$name/libshim.so"
    ) > "$dir/$name/build.log" 2>&1 &
    jobs+=("$name:$width")
  done
  wait
  for job in "${jobs[@]}"; do
    local name=${job%%:*} width=${job##*:}
    echo "== $name $(grep -h -E 'bytes stack frame' "$dir/$name/plain.ptxas" | head -1)" >> "$OUT/tune.log"
    if [[ ! -f "$dir/$name/libshim.so" ]]; then
      tail -5 "$dir/$name/build.log" "$dir/$name/plain.ptxas" >> "$OUT/tune.log"; continue
    fi
    PYTHONUNBUFFERED=1 python3 bench/gpu_forward.py --lib "$dir/$name/libshim.so" --no-peers \
      --dtypes bf16 --dims "$width" --seqlens "${TUNE_SEQLENS:-1024,4096,16384}" 2>&1 |
      sed -n '/^dtype d/,$p' | tail -n +2 | sed "s/^/$name /" >> "$OUT/tune.log"
  done
  note "tune: $(echo $TUNE_VARIANTS | wc -w) variants ($OUT/tune.log)"
  cat "$OUT/tune.log"
}

for step in $STEPS; do "step_$step"; done

printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
if has_step bench; then sed -n '/^dtype d/,$p' "$OUT/bench.log"; fi
