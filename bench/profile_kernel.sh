#!/usr/bin/env bash
# ncu on one forward or backward kernel of ours (through the CLI) and of FA2 (SDPA's flash
# kernel), same problem: what limits the kernel (tensor pipe, shared-memory wavefronts and bank
# conflicts, registers, warp stalls). Usage: OUT=dir CLI=build/tools/cli/flashattn \
#   bench/profile_kernel.sh [forward|backward=backward] [head_dim=128] [seqlen=4096] [causal=0]
# SOURCE=1 also writes ours' SASS with per-instruction executed counts ($OUT/sass_ours.csv)
# and a summary by opcode (where the instructions go) and by stall samples, and the same for
# FA2 (bench/sass_summary.py).
set -uo pipefail
OUT=${OUT:-/tmp/flashattn-profile}
CLI=${CLI:-build-gpu/tools/cli/flashattn}
direction=${1:-backward}
d=${2:-128}
s=${3:-4096}
causal=${4:-0}
b=$((16384 / s))
h=$((2048 / d))
if [[ $direction == forward ]]; then
  ours_kernel=forward_kernel fa2_kernel=flash_fwd cli_mode=--no-backward fa2_backward=""
else
  ours_kernel=backward_kernel fa2_kernel=flash_bwd_dq_dk_dv cli_mode="" \
    fa2_backward="out.backward(torch.randn_like(out))"
fi
mkdir -p "$OUT"
metrics=sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active
metrics+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum
metrics+=,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum
metrics+=,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum
metrics+=,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum
metrics+=,smsp__inst_executed.sum,smsp__inst_executed_pipe_tensor.sum,gpu__time_duration.sum
for stall in barrier long_scoreboard short_scoreboard math_pipe_throttle mio_throttle wait \
  not_selected dispatch_stall lg_throttle membar no_instruction branch_resolving; do
  metrics+=,smsp__average_warps_issue_stalled_${stall}_per_issue_active.ratio
done
sections=(--section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats)
causal_flag=--no-causal
[[ $causal == 1 ]] && causal_flag=--causal
ncu -k regex:$ours_kernel -c 1 "${sections[@]}" --metrics "$metrics" \
  "$CLI" $cli_mode --backend cuda --batch "$b" --heads "$h" --seqlen "$s" --head-dim "$d" $causal_flag \
  --iters 1 --warmup 0 > "$OUT/ncu_ours.log" 2>&1
python3 - "$b" "$h" "$s" "$d" "$causal" "$fa2_backward" > "$OUT/fa2_driver.py" <<'PY'
import sys
b, h, s, d, causal = map(int, sys.argv[1:6])
backward = sys.argv[6]
print(f"""import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
q, k, v = (torch.randn({b}, {h}, {s}, {d}, device='cuda', dtype=torch.bfloat16, requires_grad=True) for _ in range(3))
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal={bool(causal)})
{backward}
torch.cuda.synchronize()""")
PY
ncu -k regex:$fa2_kernel -c 1 "${sections[@]}" --metrics "$metrics" python3 "$OUT/fa2_driver.py" \
  > "$OUT/ncu_fa2.log" 2>&1
for who in ours fa2; do
  echo "== $who $direction (d$d s$s causal=$causal)"
  grep -E "^  [a-z_]*(backward|bwd|forward|fwd)|Duration|Registers Per|Achieved Occupancy|Compute \(SM\) Throughput|Memory Throughput|hmma|bank_conflicts|wavefronts|inst_executed|issue_stalled|Warp Cycles Per Issued|Shared Memory Configuration Size|Dynamic Shared" "$OUT/ncu_$who.log" | head -40
done
if [[ ${SOURCE:-0} == 1 ]]; then
  ncu -k regex:$ours_kernel -c 1 --section SourceCounters --page source --print-source sass --csv \
    "$CLI" $cli_mode --backend cuda --batch "$b" --heads "$h" --seqlen "$s" --head-dim "$d" $causal_flag \
    --iters 1 --warmup 0 > "$OUT/sass_ours.csv" 2> "$OUT/sass_ours.err"
  # FA2's too: its instruction mix beside ours says where the extra instructions are.
  ncu -k regex:$fa2_kernel -c 1 --section SourceCounters --page source --print-source sass --csv \
    python3 "$OUT/fa2_driver.py" > "$OUT/sass_fa2.csv" 2> "$OUT/sass_fa2.err"
  for who in ours fa2; do
    python3 "$(dirname "$0")/sass_summary.py" "$who" "$OUT/sass_$who.csv"
  done
fi
