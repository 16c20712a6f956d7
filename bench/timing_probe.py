#!/usr/bin/env python3
"""Where a single timed forward call's time goes, ours beside FA2 (SDPA FLASH_ATTENTION): the
same point timed four ways, each the median of --iters, interleaved over --rounds:

  single     start event, the call, stop event, synchronize (gpu_forward.py's "with host" column);
  hidden     the same with the GPU held busy (torch.cuda._sleep) before the start event, so
             that the host has issued the call before the events start counting: GPU time only (gpu_forward.py's main figure);
  pipelined  20 back-to-back calls between two events;
  host_us    wall time of the Python call itself, the GPU busy with an earlier sleep.

single - hidden is what the host costs a lone call; hidden vs pipelined says whether the GPU
runs the kernel slower after idling.
Usage: timing_probe.py --lib build/libflashattn_bench.so [--dims 256 --seqlens 4096 ...]
"""
import statistics
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import gpu_common as common


def host_us(fn, calls=20):
    times = []
    for _ in range(calls):
        torch.cuda._sleep(20_000_000)  # ~10 ms of GPU busy: the call queues, never waits
        begin = time.perf_counter()
        fn()
        times.append((time.perf_counter() - begin) * 1e6)
        torch.cuda.synchronize()
    return statistics.median(times)


def probe(case, ours, sets, out, lse, transposed, args):
    causal = case["causal"]
    q, k, v, _ = sets[0]
    qt, kt, vt = transposed[0]
    flops = common.forward_flops(case)
    callers = (("ours", lambda: ours.forward(q, k, v, out, lse, causal)),
               ("fa2", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)))
    name = f"{case['dtype']} d{case['d']} s{case['seqlen']}{' causal' if causal else ''}"
    for _ in range(args.rounds):
        for who, fn in callers:
            single = common.time_ms(lambda _: fn(), args.warmup, args.iters)
            hidden = common.time_ms(lambda _: fn(), args.warmup, args.iters, hide_host=True)
            pipelined = common.time_pipelined_ms(fn)
            print(f"{name:24} {who:5} {common.tflops(flops, single):7.1f} "
                  f"{common.tflops(flops, hidden):7.1f} {common.tflops(flops, pipelined):7.1f} "
                  f"{host_us(fn):8.1f}", flush=True)


def main():
    args = common.parse_args(__doc__, iters=20, warmup=3, extra=lambda p: p.add_argument(
        "--rounds", type=int, default=2))
    common.refuse_extras(args, "timing_probe.py")
    ours = common.Ours(args.lib)
    print(f"{'point':24} {'who':5} {'single':>7} {'hidden':>7} {'pipe':>7} {'host_us':>8}"
          "   (TFLOP/s; host in us)")
    for case, sets, out, lse, transposed in common.forward_points(args):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # ours ignores it
            probe(case, ours, sets, out, lse, transposed, args)


if __name__ == "__main__":
    main()
