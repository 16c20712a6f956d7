#!/usr/bin/env bash
# ncu on one forward or backward kernel of ours (through the CLI) and of FA2 (SDPA's flash
# kernel), same problem: what limits the kernel (tensor pipe, shared-memory wavefronts and bank
# conflicts, registers, warp stalls). Usage: OUT=dir CLI=build/tools/cli/flashattn \
#   bench/profile_kernel.sh [forward|backward=backward] [head_dim=128] [seqlen=4096] [causal=0]
# SOURCE=1 also writes ours' SASS with per-instruction executed counts ($OUT/sass_ours.csv)
# and a summary by opcode (where the instructions go) and by stall samples.
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
  python3 - "$OUT/sass_ours.csv" <<'PY'
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1], errors="replace")))
head = next((i for i, r in enumerate(rows) if "Source" in r), None)
if head is None:
    sys.exit("no SASS table in " + sys.argv[1])
cols = rows[head]
src = cols.index("Source")


def counted(prefix):
    """(row number, opcode, SASS text, count) for each instruction with a number in the column."""
    column = next((i for i, c in enumerate(cols) if c.startswith(prefix)), None)
    if column is None:
        return None
    found = []
    for number, r in enumerate(rows[head + 1:]):
        if len(r) <= max(src, column):
            continue
        try:
            n = int(float(r[column].replace(",", "") or 0))
        except ValueError:
            continue
        words = r[src].strip().split() or ["?"]
        op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
        found.append((number, op.split(".")[0], r[src].strip(), n))
    return found


def print_by_opcode(found, title, most):
    """Sums per opcode, the `most` largest with their share; returns the total."""
    by_op = collections.Counter()
    for _, op, _, n in found:
        by_op[op] += n
    total = sum(by_op.values())
    print(title.format(instructions=len(found), total=total))
    for op, n in by_op.most_common(most):
        print(f"{op:12s} {n:>14,} {100 * n / max(total, 1):5.1f}%")
    return total


print_by_opcode(counted("Instructions Executed"),
                "== ours SASS: {instructions} instructions in the kernel, {total:,} warp-instructions executed", 25)
# Where the warps wait: stall samples per opcode and the 30 instructions with the most.
stalled = counted("Warp Stall Sampling (All")
if stalled is not None:
    samples = print_by_opcode(stalled, "== ours stall samples: {total:,}", 15)
    for number, _, text, n in sorted(stalled, key=lambda x: -x[3])[:30]:
        print(f"{100 * n / max(samples, 1):5.1f}%  #{number:<5d} {text[:90]}")
PY
fi
