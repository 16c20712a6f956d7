#!/usr/bin/env python3
"""Forward benchmark on the FA2 grid: ours (through bench/gpu_shim.cpp) vs PyTorch SDPA's
FLASH_ATTENTION (FlashAttention-2) and CUDNN_ATTENTION backends, same process, same inputs.

Grid: 16k tokens (batch = 16384 / seqlen), hidden 2048 (heads = 2048 / d), d 64/128/256,
seqlen 512..16384, causal and not, bf16 and fp16. Each point is timed three ways for everyone
(shared helpers: bench/gpu_common.py):
- GPU time, the table's main figure: CUDA events around each call with the GPU kept busy for
  ~1 ms before the start event (Timer.measure(hide_host=True), bench/attention.py), so that host
  dispatch is timed for no one, as in bench/gpu_backward.py; warm-up, median of --iters, in
  --rounds rounds that take turns among ours and the peers, the median of the rounds;
- "with host": the same without the busy GPU, so the host's dispatch before the kernel starts is
  counted (ours goes through ctypes and the bench shim, not the Python package: the package's
  own host time is bench/host_overhead.py's);
- "pipelined": 20 back-to-back calls between two events.
Usage: gpu_forward.py --lib build/libflashattn_bench.so [--json out.json]
"""
import contextlib
import json
import statistics
import sys
import time

import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

import gpu_common as common


def main():
    args = common.parse_args(__doc__, iters=30, warmup=5, extra=lambda parser: parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the GPU-time measurement"))
    ours = common.Ours(args.lib)
    common.set_extras(args, [ours])
    env = common.environment(args)
    env.update(softcap=args.softcap, dropout=args.dropout)
    print(json.dumps(env), flush=True)
    rows = []
    started = time.time()
    for case, sets, out, lse, transposed in common.forward_points(args):
        causal = case["causal"]
        flops = common.forward_flops(case)
        row = common.point_row(case)
        qt, kt, vt = transposed[0]

        def ours_call(qkv):
            ours.forward(*qkv[:3], out, lse, causal)

        def peer_call(qkv):
            F.scaled_dot_product_attention(*qkv, is_causal=causal, dropout_p=args.dropout)

        # (name, SDPA backend or None for ours, call, its input sets); peers that cannot run
        # this point are dropped with their error.
        runners = [("ours", None, ours_call, sets)]
        for name, backend in () if args.no_peers else common.PEERS:
            try:
                with sdpa_kernel(backend):
                    ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                runners.append((name, backend, peer_call, transposed))
                if name == "fa2" and not (args.softcap or args.dropout):
                    ours_call(sets[0])
                    row["max_abs_diff_vs_fa2"] = (out - ref.transpose(1, 2)).abs().max().item()
            except Exception as error:  # a peer that cannot run this point
                row[name + "_error"] = common.short_error(error)

        def timing(backend):
            return sdpa_kernel(backend) if backend is not None else contextlib.nullcontext()

        # GPU time in --rounds rounds, everyone once per round: the GPU's drift (clocks after the
        # inputs' creation, temperature) is shared out rather than charged to whoever goes first.
        gpu_ms = {name: [] for name, *_ in runners}
        for _ in range(args.rounds):
            for name, backend, call, states in runners:
                with timing(backend):
                    gpu_ms[name].append(common.time_ms(call, args.warmup, args.iters, states,
                                                       hide_host=True))
        for name, backend, call, states in runners:
            with timing(backend):
                ms = statistics.median(gpu_ms[name])
                with_host = common.time_ms(call, args.warmup, args.iters, states)
                pipelined = common.time_pipelined_ms(lambda: call(states[0]))
            row[name + "_ms"] = ms
            row[name + "_tflops"] = common.tflops(flops, ms)
            row[name + "_with_host_tflops"] = common.tflops(flops, with_host)
            row[name + "_pipelined_tflops"] = common.tflops(flops, pipelined)
        rows.append(row)
        print(json.dumps(row), flush=True)
        del sets, out, lse, qt, kt, vt, transposed, runners
    common.write_json(args.json, env, rows, started)

    nan = common.NAN
    print("\n(TFLOP/s of GPU time; with host: the host's dispatch counted; pipelined: 20 "
          "back-to-back calls)")
    print("dtype d     s     causal  ours   fa2    cudnn  ours/fa2 ours/cudnn  maxdiff   "
          "with host: ours/fa2  pipelined: ours  fa2   ours/fa2")
    for r in rows:
        fa2, cud = r.get("fa2_tflops"), r.get("cudnn_tflops")
        print(f"{r['dtype']:5} {r['d']:<5} {r['s']:<5} {str(r['causal']):6} "
              f"{r['ours_tflops']:6.1f} {fa2 or nan:6.1f} {cud or nan:6.1f} "
              f"{r['ours_tflops'] / fa2 if fa2 else nan:8.2f} "
              f"{r['ours_tflops'] / cud if cud else nan:10.2f}  "
              f"{r.get('max_abs_diff_vs_fa2', nan):.2e}  "
              f"{r['ours_with_host_tflops'] / r.get('fa2_with_host_tflops', nan):19.2f}  "
              f"{r['ours_pipelined_tflops']:15.1f} {r.get('fa2_pipelined_tflops', nan):5.1f} "
              f"{r['ours_pipelined_tflops'] / r.get('fa2_pipelined_tflops', nan):8.2f}")
    ratios = sorted(r["ours_tflops"] / r["fa2_tflops"] for r in rows if r.get("fa2_tflops"))
    if ratios:
        print(f"ours/fa2 (GPU time) over {len(ratios)} points: median "
              f"{statistics.median(ratios):.2f}, min {ratios[0]:.2f}, max {ratios[-1]:.2f}, "
              f">= 1.0 at {sum(x >= 1.0 for x in ratios)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
