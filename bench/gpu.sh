#!/usr/bin/env bash
# The CUDA kernels' whole GPU session in one call: configure + build (-j16), the GPU tests
# (forward_test, backward_test), compute-sanitizer (memcheck, racecheck, synccheck) on the small
# cases of every feature of both, the Python package's CUDA tests, and the benchmarks of the
# forward and the backward against PyTorch SDPA (FA2) and cuDNN; an ncu look at one kernel on
# request.
#
# Run from the repository root on the GPU machine:  OUT=/path bench/gpu.sh
# Environment (all optional):
#   STEPS="build test sanitize pytest bench"  which steps, in this order (also: ncu, profile, tune,
#                                           tune_backward, ncu_backward, kernel_times,
#                                           suite = bench/gpu_suite.sh, issue 7's benchmark
#                                           suite, in its own build directory, within what
#                                           TOTAL_S leaves: STEPS=suite alone is one ~6 min call)
#   SUITE_PREFIX=suite SUITE_ITERS=20 SUITE_ARGS=""  file names, timed calls, extra arguments
#                                           of the suite step
#   SUITE_COMMIT=<commit>                   recorded as the suite's commit (export it: the
#                                           device's copy of the tree may carry stale git data)
#   TOTAL_S=560                             wall budget of the whole call: the backward benchmark
#                                           trims its timed calls per point (not its points) to
#                                           end by then; sanitizer and test runs have timeouts
#   ARCHS=90 HDIMS=all DTYPES=all           the instance set (FLASHATTN_ARCHS / _HDIMS / _DTYPES)
#   BUILD=build-gpu                         build directory
#   CMAKE_EXTRA=""                          extra arguments of the configure step (split on
#                                           spaces; e.g. -DCMAKE_CUDA_FLAGS=-DFLAG=1)
#   CUDA_DEFINES=""                         "FLAG=1 OTHER=1": -D each, all in one
#                                           CMAKE_CUDA_FLAGS (a variant's tests with several)
#   GTEST_ROOT=dir                          a GoogleTest (include/, lib/) if the machine has none
#   TEST_FILTER='*'                         gtest filter of the test step (both binaries)
#   SMEM_CAPS="166912 101376"               the test step also runs the small cases of both
#                                           binaries under FLASHATTN_CUDA_SMEM_LIMIT = each (sm80's
#                                           and sm86's shared memory): the other tile configurations
#   SANITIZE_SMEM_CAPS="101376"             the sanitize step also runs memcheck and racecheck
#                                           under each (the compact configurations of sm86 / sm89)
#   TEST_TIMEOUT_S=180 SANITIZE_TIMEOUT_S=90  per binary, per sanitizer tool and binary (and
#                                           pytest: TEST_TIMEOUT_S), each cut so that
#   BENCH_RESERVE_S=200                     seconds of TOTAL_S stay for step bench
#   BENCH="forward backward"                which benchmarks step bench runs (BENCH=backward:
#                                           the backward alone)
#   BENCH_ARGS=""                           extra arguments of bench/gpu_forward.py
#   BWD_BENCH_ARGS=""                       extra arguments of bench/gpu_backward.py
#   PYTEST_ARGS="tests/python/test_cuda.py" what step pytest runs
#   NCU_DIMS=128 NCU_SEQLENS=4096           step "ncu": the forward's ncu look (ours and FA2)
#   NCU_BWD_POINT="256:4096"                step "ncu_backward": head_dim:seqlen of its ncu look
#                                           at the default library and the tune_backward shims
#   PROFILES="backward:128:4096:0"          step "profile": bench/profile_kernel.sh (SOURCE=1) per
#                                           entry direction:head_dim:seqlen:causal
#   KT_DIMS=64,128,256 KT_SEQLENS=512       step "kernel_times": bench/kernel_times.py (every
#   KT_ARGS=""                              kernel's GPU time per call, ours and FA2's) on the
#                                           default library and each tune_backward shim (after
#                                           step tune_backward; KT_ARGS=--forward: the forward)
#   TUNE_BWD_VARIANTS="name@128:-DFLAG=1+-DOTHER=0 ..."  step "tune_backward": backward variants
#                                           of one width each (nvcc flags joined by +), timed
#                                           with the default and FA2 (bench/ab_backward.py;
#                                           points: TUNE_BWD_SEQLENS, else TUNE_SEQLENS)
#   TUNE_VARIANTS="128:128:64:4:0:0 ..."    step "tune": width:block_m:block_n:warps:prefetch:early_k
#                                           [:nvcc flags joined by +] schedules of one width,
#                                           each built beside the default library into its own
#                                           shim; TUNE_AB=1 (default) times them all with the
#                                           default and FA2 interleaved in one process
#                                           (bench/ab_forward.py: TUNE_SEQLENS, TUNE_ARGS),
#                                           TUNE_AB=0 each alone through gpu_forward.py
# Logs and JSON go to $OUT; the last lines printed are the summary and the benchmark tables
# (forward, then backward).
set -uo pipefail

OUT=${OUT:-/tmp/flashattn-gpu}
STEPS=${STEPS:-"build test sanitize pytest bench"}
TOTAL_S=${TOTAL_S:-560}
ARCHS=${ARCHS:-90}
HDIMS=${HDIMS:-all}
DTYPES=${DTYPES:-all}
BUILD=${BUILD:-build-gpu}
TEST_FILTER=${TEST_FILTER:-'*'}
SMEM_CAPS=${SMEM_CAPS-"166912 101376"}
SANITIZE_SMEM_CAPS=${SANITIZE_SMEM_CAPS-"101376"}
TEST_TIMEOUT_S=${TEST_TIMEOUT_S:-180}
SANITIZE_TIMEOUT_S=${SANITIZE_TIMEOUT_S:-90}
BENCH_RESERVE_S=${BENCH_RESERVE_S:-200}
BENCH=${BENCH:-"forward backward"}
BENCH_ARGS=${BENCH_ARGS:-}
BWD_BENCH_ARGS=${BWD_BENCH_ARGS:-}
PYTEST_ARGS=${PYTEST_ARGS:-tests/python/test_cuda.py}
NCU_DIMS=${NCU_DIMS:-128}
NCU_SEQLENS=${NCU_SEQLENS:-4096}
PROFILES=${PROFILES:-"backward:128:4096:0"}
export PATH=$PATH:/usr/local/cuda/bin
mkdir -p "$OUT"
summary=()
note() { summary+=("$1"); echo "== $1"; }
script_start=$(date +%s)
seconds_left() { echo $(( TOTAL_S - ($(date +%s) - script_start) )); }
# A step's timeout: its own limit, cut so that BENCH_RESERVE_S stay for the benchmarks while
# they are still to run (at least 10 s: a run that cannot start in time says so).
bench_done=0
step_timeout() {
  local reserve=10 left
  has_step bench && (( ! bench_done )) && reserve=$BENCH_RESERVE_S
  left=$(( $(seconds_left) - reserve ))
  (( left < 10 )) && left=10
  (( left < $1 )) && echo "$left" || echo "$1"
}
# The gtest binaries the build produced (backward_test only once tests/cuda has it).
test_binaries() {
  local name
  for name in forward_test backward_test; do
    [[ -x "$BUILD/tests/$name" ]] && echo "$name"
  done
}
# Small, sanitizer-sized cases of each binary.
sanitize_filter() {
  case $1 in
    forward_test) echo 'Small/*:CudaForwardDropout*' ;;
    backward_test) echo 'CudaBackwardSmall*:SmallBackward/*' ;;
  esac
}

has_step() { [[ " $STEPS " == *" $1 "* ]]; }

step_build() {
  configure_args=()
  [[ -n "${GTEST_ROOT:-}" ]] && configure_args=(-DGTEST_ROOT="$GTEST_ROOT")
  if [[ -n "${CUDA_DEFINES:-}" ]]; then
    local defines=""
    for define in $CUDA_DEFINES; do defines+="${defines:+ }-D$define"; done
    configure_args+=("-DCMAKE_CUDA_FLAGS=$defines")
  fi
  start=$(date +%s)
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DFLASHATTN_CUDA=ON \
    -DFLASHATTN_ARCHS="$ARCHS" -DFLASHATTN_HDIMS="$HDIMS" -DFLASHATTN_DTYPES="$DTYPES" \
    -DFLASHATTN_BUILD_CLI=ON -DFLASHATTN_BUILD_PYTHON=ON -DFLASHATTN_PTXAS_VERBOSE=ON \
    "${configure_args[@]}" ${CMAKE_EXTRA:-} > "$OUT/build.log" 2>&1
  status=$?
  targets=(flashattn flashattn_cli forward_test)
  local missing=""
  # grep without -q reads all of ninja's output: an early exit would SIGPIPE ninja and, under
  # pipefail, make the target look absent.
  if ninja -C "$BUILD" -t targets all 2>/dev/null | grep '^backward_test:' > /dev/null; then
    targets+=(backward_test)
  else
    missing="; no backward_test target (tests/cuda/backward_test.cpp absent): not built"
  fi
  has_step pytest && targets+=(flashattn_c_abi)
  if [[ $status -eq 0 ]]; then
    { cmake --build "$BUILD" -j16 --target "${targets[@]}" &&
      g++ -O2 -shared -fPIC -fopenmp -std=c++20 -Iinclude bench/gpu_shim.cpp \
        "$BUILD/libflashattn.a" \
        -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread \
        -o "$BUILD/libflashattn_bench.so"; } >> "$OUT/build.log" 2>&1
    status=$?
  fi
  note "build (archs $ARCHS, hdims $HDIMS, dtypes $DTYPES, -j16, ${targets[*]}): rc=$status in $(( $(date +%s) - start )) s$missing"
  grep -E "spill|Used [0-9]+ registers" "$OUT/build.log" | sort | uniq -c | sort -rn | head -8
  if [[ $status -ne 0 ]]; then tail -40 "$OUT/build.log"; exit 1; fi
}

step_test() {
  local name status start limit
  for name in $(test_binaries); do
    start=$(date +%s)
    limit=$(step_timeout "$TEST_TIMEOUT_S")
    timeout "$limit" "$BUILD/tests/$name" --gtest_filter="$TEST_FILTER" \
      > "$OUT/test_$name.log" 2>&1
    status=$?
    note "tests $name: rc=$status$( ((status == 124)) && echo " (timed out after $limit s)") in $(( $(date +%s) - start )) s; $(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?,?' "$OUT/test_$name.log" | tr '\n' ' ')"
    grep -E "^\[  FAILED  \] [A-Z]|Failure|max_error|describe" "$OUT/test_$name.log" | sort -u | head -30
  done
  [[ -x "$BUILD/tests/backward_test" ]] || note "tests backward_test: not built"
  local cap
  for cap in $SMEM_CAPS; do
    for name in $(test_binaries); do
      start=$(date +%s)
      limit=$(step_timeout "$TEST_TIMEOUT_S")
      FLASHATTN_CUDA_SMEM_LIMIT=$cap timeout "$limit" "$BUILD/tests/$name" \
        --gtest_filter="$(sanitize_filter "$name")" > "$OUT/test_${name}_smem$cap.log" 2>&1
      status=$?
      note "tests $name, shared memory capped at $cap B (small cases): rc=$status in $(( $(date +%s) - start )) s; $(grep -E '^\[  (PASSED|FAILED|SKIPPED) *\] [0-9]+ tests?,?' "$OUT/test_${name}_smem$cap.log" | tr '\n' ' ')"
      grep -E "^\[  FAILED  \] [A-Z]|Failure" "$OUT/test_${name}_smem$cap.log" | sort -u | head -10
    done
  done
}

step_sanitize() {
  local name tool status start log limit
  for name in $(test_binaries); do
    log="$OUT/sanitizer_$name.log"
    : > "$log"
    for tool in memcheck racecheck synccheck; do
      start=$(date +%s)
      limit=$(step_timeout "$SANITIZE_TIMEOUT_S")
      timeout "$limit" compute-sanitizer --tool "$tool" --error-exitcode 99 \
        "$BUILD/tests/$name" --gtest_filter="$(sanitize_filter "$name")" >> "$log" 2>&1
      status=$?
      note "compute-sanitizer $tool $name: rc=$status$( ((status == 124)) && echo " (timed out after $limit s)") in $(( $(date +%s) - start )) s; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
    done
  done
  local cap
  for cap in $SANITIZE_SMEM_CAPS; do
    for name in $(test_binaries); do
      log="$OUT/sanitizer_${name}_smem$cap.log"
      : > "$log"
      for tool in memcheck racecheck; do
        start=$(date +%s)
        limit=$(step_timeout "$SANITIZE_TIMEOUT_S")
        FLASHATTN_CUDA_SMEM_LIMIT=$cap timeout "$limit" compute-sanitizer --tool "$tool" \
          --error-exitcode 99 "$BUILD/tests/$name" --gtest_filter="$(sanitize_filter "$name")" \
          >> "$log" 2>&1
        status=$?
        note "compute-sanitizer $tool $name, shared memory capped at $cap B: rc=$status$( ((status == 124)) && echo " (timed out after $limit s)") in $(( $(date +%s) - start )) s; $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$log" | tail -1)"
      done
    done
  done
}

step_pytest() {
  local start status
  start=$(date +%s)
  if ! python3 -c "import pytest" 2>/dev/null; then
    note "pytest: not run (pytest is not installed for python3 here)"
    return
  fi
  # The package from the source tree, its C library from the CMake tree (docs/python.md).
  PYTHONPATH=$PWD/python${PYTHONPATH:+:$PYTHONPATH} \
  FLASHATTN_C_LIBRARY=$(realpath "$BUILD")/python/flashattn/_C.so \
    timeout "$(step_timeout "$TEST_TIMEOUT_S")" python3 -m pytest $PYTEST_ARGS -q -rs \
      > "$OUT/pytest.log" 2>&1
  status=$?
  note "pytest $PYTEST_ARGS: rc=$status in $(( $(date +%s) - start )) s; $(tail -1 "$OUT/pytest.log")"
  grep -E "^(FAILED|ERROR) " "$OUT/pytest.log" | head -20
}

step_ncu() {
  ncu --target-processes all -k "regex:forward_kernel|flash_fwd" -c 6 --section SpeedOfLight \
    --section LaunchStats --section Occupancy --section ComputeWorkloadAnalysis --section WarpStateStats \
    --metrics sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,smsp__sass_inst_executed_op_local_ld.sum,smsp__sass_inst_executed_op_local_st.sum \
    python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" --dtypes bf16 \
    --dims "$NCU_DIMS" --seqlens "$NCU_SEQLENS" --iters 1 --warmup 0 > "$OUT/ncu.log" 2>&1
  note "ncu: rc=$? (d$NCU_DIMS bf16 s$NCU_SEQLENS, ours and SDPA flash, causal and not: $OUT/ncu.log)"
  grep -E "forward_kernel|Registers Per|hmma|bank_conflicts|wavefronts|Compute \(SM\) Throughput|Memory Throughput|Achieved Occupancy|local_|Stall|stall" "$OUT/ncu.log" | head -40
}

# ncu comparisons with FA2 and ours' per-instruction stall ranking (bench/profile_kernel.sh),
# one per PROFILES entry "direction:head_dim:seqlen:causal".
step_profile() {
  local entry
  for entry in $PROFILES; do
    OUT="$OUT/profile-${entry//:/-}" CLI="$BUILD/tools/cli/flashattn" SOURCE=1 \
      timeout "$(step_timeout 300)" bash bench/profile_kernel.sh ${entry//:/ } \
      > "$OUT/profile-${entry//:/-}.log" 2>&1
    note "profile $entry: rc=$? ($OUT/profile-${entry//:/-}.log)"
    tail -45 "$OUT/profile-${entry//:/-}.log"
  done
}

step_kernel_times() {
  # Per-kernel GPU times (bench/kernel_times.py: main kernel, passes, FA2's kernels) of the
  # default library and of each tune_backward shim, at KT_DIMS x KT_SEQLENS (bf16).
  local libs=("default=$BUILD/libflashattn_bench.so") entry name lib
  for lib in "$BUILD"/tune_backward/*/libshim.so; do
    [[ -f "$lib" ]] && libs+=("$(basename "$(dirname "$lib")")=$lib")
  done
  : > "$OUT/kernel_times.log"
  for entry in "${libs[@]}"; do
    name=${entry%%=*} lib=$(realpath "${entry#*=}")
    echo "== $name" >> "$OUT/kernel_times.log"
    (cd bench && timeout "$(step_timeout 120)" python3 kernel_times.py --lib "$lib" --dtypes bf16 \
      --dims "${KT_DIMS:-64,128,256}" --seqlens "${KT_SEQLENS:-512}" ${KT_ARGS:-}) \
      >> "$OUT/kernel_times.log" 2>&1
  done
  note "kernel_times: ${#libs[@]} libraries ($OUT/kernel_times.log)"
  grep -v -i "warn" "$OUT/kernel_times.log"
}

step_bench() {
  local start deadline
  bench_done=1
  if [[ " $BENCH " == *" forward "* ]]; then
    start=$(date +%s)
    PYTHONUNBUFFERED=1 python3 bench/gpu_forward.py --lib "$BUILD/libflashattn_bench.so" \
      --json "$OUT/gpu_forward.json" $BENCH_ARGS > "$OUT/bench.log" 2>&1
    note "bench forward: rc=$? in $(( $(date +%s) - start )) s ($OUT/bench.log, $OUT/gpu_forward.json)"
  fi
  if [[ " $BENCH " == *" backward "* ]]; then
    start=$(date +%s)
    # Whatever the budget leaves, less a margin for the exit; the script trims timed calls.
    deadline=$(( $(seconds_left) - 20 ))
    (( deadline < 60 )) && deadline=60
    PYTHONUNBUFFERED=1 python3 bench/gpu_backward.py --lib "$BUILD/libflashattn_bench.so" \
      --json "$OUT/gpu_backward.json" --deadline-s "$deadline" $BWD_BENCH_ARGS \
      > "$OUT/bench_backward.log" 2>&1
    note "bench backward: rc=$? in $(( $(date +%s) - start )) s, deadline $deadline s ($OUT/bench_backward.log, $OUT/gpu_backward.json)"
  fi
}

step_suite() {
  local start left
  start=$(date +%s)
  left=$(( $(seconds_left) - 10 ))
  OUT="$OUT" PREFIX="${SUITE_PREFIX:-suite}" ITERS="${SUITE_ITERS:-20}" WARMUP=3 \
    TOTAL_S="$left" ARCHS="$ARCHS" SUITE_ARGS="${SUITE_ARGS:-}" bash bench/gpu_suite.sh \
    > "$OUT/suite_step.log" 2>&1
  note "suite: rc=$? in $(( $(date +%s) - start )) s (budget $left s; $OUT/suite_step.log, $OUT/${SUITE_PREFIX:-suite}.json)"
  tail -25 "$OUT/suite_step.log"
}

# A tune variant's shim in dir: the two bf16 instances (plain, extras) of one direction and
# width rebuilt with the given nvcc flags, and a backend that knows only that width (its forward
# too, for the backward's O and LSE; the backward's passes too), linked ahead of the default
# library. Logs in dir.
build_variant_shim() {
  local dir=$1 direction=$2 width=$3 flags=$4
  mkdir -p "$dir"
  {
    echo "FLASHATTN_FORWARD_INSTANCE(bf16, $width)"
    [[ $direction == backward ]] && echo "FLASHATTN_BACKWARD_INSTANCE(bf16, $width)"
  } > "$dir/flashattn_cuda_instances.inc"
  (
    for variant_kind in plain extras; do
      nvcc -O3 -std=c++17 -Xcompiler=-fPIC -gencode=arch=compute_90,code=sm_90 -Iinclude -Isrc \
        $flags -Xptxas=-v -c "src/cuda/instances/${direction}_bf16_w${width}_${variant_kind}.cu" \
        -o "$dir/$variant_kind.o" 2> "$dir/$variant_kind.ptxas" &
    done
    # The backward's passes and the backend too, with the flags' -D entries: a flag may change
    # the workspace layout that they share with the kernels.
    if [[ $direction == backward ]]; then
      nvcc -O3 -std=c++17 -Xcompiler=-fPIC -gencode=arch=compute_90,code=sm_90 -Iinclude -Isrc \
        $flags -c src/cuda/sm80/backward_passes.cu -o "$dir/passes.o" 2> "$dir/passes.log" &
    fi
    g++ -O2 -fPIC -std=c++20 -DFLASHATTN_WITH_CUDA=1 -Iinclude -Isrc -I"$dir" \
      -I/usr/local/cuda/include $(printf '%s\n' $flags | grep '^-D' | tr '\n' ' ') \
      -c src/cuda/sm80/backend.cpp -o "$dir/backend.o" &&
    wait &&
    g++ -O2 -shared -fPIC -fopenmp -std=c++20 -Iinclude bench/gpu_shim.cpp "$dir"/*.o \
      "$BUILD/libflashattn.a" -L/usr/local/cuda/lib64 -lcudart_static -ldl -lrt -lpthread \
      -o "$dir/libshim.so"
  ) > "$dir/build.log" 2>&1
}

step_tune() {
  # Each variant: the two instances of its width rebuilt with FLASHATTN_SM80_TUNE_*, a backend
  # that knows only that width, linked ahead of the default library into its own shim.
  local dir="$BUILD/tune" jobs=()
  mkdir -p "$dir"
  : > "$OUT/tune.log"
  for variant in $TUNE_VARIANTS; do
    IFS=: read -r width m n warps prefetch early extra <<< "$variant"
    local name="w${width}_m${m}_n${n}_w${warps}_p${prefetch}_e${early}" flags
    [[ -n "$extra" ]] && name+="_$(tr -c 'A-Za-z0-9\n' '_' <<< "$extra")"
    flags="-DFLASHATTN_SM80_TUNE_WIDTH=$width -DFLASHATTN_SM80_TUNE_M=$m -DFLASHATTN_SM80_TUNE_N=$n"
    flags+=" -DFLASHATTN_SM80_TUNE_WARPS=$warps -DFLASHATTN_SM80_TUNE_PREFETCH=$prefetch"
    flags+=" -DFLASHATTN_SM80_TUNE_EARLYK=$early ${extra//+/ }"
    mkdir -p "$dir/$name"
    build_variant_shim "$dir/$name" forward "$width" "$flags" &
    jobs+=("$name:$width")
  done
  wait
  local shims=() widths=""
  for job in "${jobs[@]}"; do
    local name=${job%%:*} width=${job##*:}
    echo "== $name $(grep -h -E 'bytes stack frame' "$dir/$name/plain.ptxas" | head -1)" >> "$OUT/tune.log"
    if [[ ! -f "$dir/$name/libshim.so" ]]; then
      tail -5 "$dir/$name/build.log" "$dir/$name/plain.ptxas" >> "$OUT/tune.log"; continue
    fi
    shims+=("$name@$width=$(realpath "$dir/$name/libshim.so")")
    [[ ",$widths," == *",$width,"* ]] || widths+="${widths:+,}$width"
    [[ "${TUNE_AB:-1}" == 1 ]] && continue
    PYTHONUNBUFFERED=1 python3 bench/gpu_forward.py --lib "$dir/$name/libshim.so" --no-peers \
      --dtypes bf16 --dims "$width" --seqlens "${TUNE_SEQLENS:-1024,4096,16384}" ${TUNE_ARGS:-} 2>&1 |
      sed -n '/^dtype d/,$p' | tail -n +2 | sed "s/^/$name /" >> "$OUT/tune.log"
  done
  if [[ "${TUNE_AB:-1}" == 1 && ${#shims[@]} -gt 0 ]]; then
    (lib=$(realpath "$BUILD/libflashattn_bench.so") && cd bench && PYTHONUNBUFFERED=1 \
      python3 ab_forward.py --lib "$lib" --variants "${shims[@]}" --dtypes bf16 --dims "$widths" \
      --seqlens "${TUNE_SEQLENS:-1024,4096,16384}" ${TUNE_ARGS:-}) >> "$OUT/tune.log" 2>&1
  fi
  note "tune: $(echo $TUNE_VARIANTS | wc -w) variants ($OUT/tune.log)"
  cat "$OUT/tune.log"
}

step_tune_backward() {
  # Each variant name@width:flags (flags joined by +): the backward instances of that width
  # rebuilt with the flags, a backend that knows only that width, linked ahead of the default
  # library into its own shim; all timed with the default and FA2 interleaved in one process
  # (bench/ab_backward.py: TUNE_SEQLENS, TUNE_ARGS).
  local dir="$BUILD/tune_backward" jobs=()
  mkdir -p "$dir"
  : > "$OUT/tune_backward.log"
  for variant in $TUNE_BWD_VARIANTS; do
    local spec=${variant%%:*} extra=${variant#*:}
    local name=${spec%@*} width=${spec#*@}
    mkdir -p "$dir/$name"
    build_variant_shim "$dir/$name" backward "$width" "${extra//+/ }" &
    jobs+=("$name:$width")
  done
  wait
  local shims=() widths=""
  for job in "${jobs[@]}"; do
    local name=${job%%:*} width=${job##*:}
    echo "== $name@$width $(grep -h -E 'bytes stack frame' "$dir/$name/plain.ptxas" | tr '\n' ' ')" \
      >> "$OUT/tune_backward.log"
    if [[ ! -f "$dir/$name/libshim.so" ]]; then
      tail -5 "$dir/$name/build.log" "$dir/$name/plain.ptxas" >> "$OUT/tune_backward.log"; continue
    fi
    shims+=("$name@$width=$(realpath "$dir/$name/libshim.so")")
    [[ ",$widths," == *",$width,"* ]] || widths+="${widths:+,}$width"
  done
  if [[ ${#shims[@]} -gt 0 ]]; then
    (lib=$(realpath "$BUILD/libflashattn_bench.so") && cd bench && PYTHONUNBUFFERED=1 \
      timeout "$(step_timeout 400)" python3 ab_backward.py --lib "$lib" --variants "${shims[@]}" \
      --dtypes bf16 --dims "$widths" --seqlens "${TUNE_BWD_SEQLENS:-${TUNE_SEQLENS:-1024,4096,16384}}" \
      ${TUNE_ARGS:-}) >> "$OUT/tune_backward.log" 2>&1
  fi
  note "tune_backward: $(echo $TUNE_BWD_VARIANTS | wc -w) variants ($OUT/tune_backward.log)"
  cat "$OUT/tune_backward.log"
}

# ncu on the backward kernel of the default library and of each tune_backward shim named
# <name>_<head_dim> (run after step tune_backward), NCU_BWD_POINT="head_dim:seqlen" (bf16):
# shared-memory wavefronts and bank conflicts (every such counter this ncu knows),
# instructions, stalls.
step_ncu_backward() {
  local point=${NCU_BWD_POINT:-256:4096} d s metrics lib name
  d=${point%%:*} s=${point##*:}
  metrics=$(ncu --query-metrics 2>/dev/null | awk '{print $1}' |
    grep -E '^l1tex__data_(bank_conflicts|pipe_lsu_wavefronts)_pipe_lsu_mem_shared|^l1tex__data_pipe_lsu_wavefronts_mem_shared' |
    sed 's/$/.sum/' | sort -u | tr '\n' ',')
  metrics+=smsp__inst_executed.sum,gpu__time_duration.sum
  metrics+=,sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
  for stall in long_scoreboard short_scoreboard mio_throttle wait barrier; do
    metrics+=,smsp__average_warps_issue_stalled_${stall}_per_issue_active.ratio
  done
  : > "$OUT/ncu_backward.log"
  for lib in "default=$BUILD/libflashattn_bench.so" "$BUILD"/tune_backward/*/libshim.so; do
    if [[ $lib == default=* ]]; then
      name=default lib=${lib#default=}
    else
      name=$(basename "$(dirname "$lib")")
    fi
    [[ $name == default || $name == *_$d ]] || continue  # a shim knows only its own width
    lib=$(realpath "$lib")  # run from bench/
    echo "== $name d$d s$s" >> "$OUT/ncu_backward.log"
    (cd bench && timeout "$(step_timeout 120)" ncu -k regex:backward_kernel -c 1 --metrics "$metrics" \
      python3 gpu_backward.py --lib "$lib" --no-peers --dtypes bf16 --dims "$d" --seqlens "$s" \
      --iters 1 --warmup 0 --min-iters 1) > "$OUT/ncu_backward_$name.log" 2>&1
    grep -E "^ +(l1tex|smsp|gpu__|sm__)" "$OUT/ncu_backward_$name.log" >> "$OUT/ncu_backward.log" ||
      tail -5 "$OUT/ncu_backward_$name.log" >> "$OUT/ncu_backward.log"
  done
  note "ncu_backward d$d s$s ($OUT/ncu_backward.log)"
  cat "$OUT/ncu_backward.log"
}

for step in $STEPS; do "step_$step"; done

note "total: $(( $(date +%s) - script_start )) s (budget TOTAL_S=$TOTAL_S)"
printf '%s\n' "${summary[@]}" | tee "$OUT/summary.txt"
if has_step bench; then
  if [[ -f "$OUT/bench.log" && " $BENCH " == *" forward "* ]]; then
    echo; echo "forward TFLOP/s"; sed -n '/^dtype d/,$p' "$OUT/bench.log"
  fi
  if [[ -f "$OUT/bench_backward.log" && " $BENCH " == *" backward "* ]]; then
    echo; sed -n '/^backward TFLOP/,$p' "$OUT/bench_backward.log"
    grep -q '^backward TFLOP' "$OUT/bench_backward.log" || tail -20 "$OUT/bench_backward.log"
  fi
fi
