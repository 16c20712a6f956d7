#!/usr/bin/env python3
"""Where a call's time goes: the GPU time of every kernel (and memset) of our backward or
forward and of FA2's (SDPA FLASH_ATTENTION), per call, from torch.profiler (CUPTI), beside the
call's event-timed GPU time. For the points where ours and FA2 are within a few per cent, to
tell the main kernel's share of the gap from the side passes' (delta, dQ conversion, clears).

Usage:
  kernel_times.py --lib build/libflashattn_bench.so --dims 64 --seqlens 512 [--forward]
"""
import collections
import warnings

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.profiler import ProfilerActivity, profile
import torch.nn.functional as F

import gpu_common as common
from gpu_backward import OursPoint, peer_backward, peer_states


def add_arguments(parser):
    parser.add_argument("--calls", type=int, default=20, help="profiled calls per side")
    parser.add_argument("--forward", action="store_true", help="the forward instead")


def kernel_times(fn, states, calls):
    """{kernel name: GPU us per call} over `calls` calls (states rotated), after a warm-up."""
    for state in states:
        fn(state)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for i in range(calls):
            fn(states[i % len(states)])
        torch.cuda.synchronize()
    totals = collections.defaultdict(float)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            totals[event.name] += event.device_time_total
    return {name: us / calls for name, us in totals.items()}


def short(name, width=70):
    name = name.replace("flashattn::cuda_sm80::", "").replace("pytorch_flash::", "")
    return name if len(name) <= width else name[:width - 3] + "..."


def report(label, times, event_ms):
    total = sum(times.values())
    print(f"  {label}: event-timed {event_ms * 1e3:8.1f} us, kernels {total:8.1f} us")
    for name, us in sorted(times.items(), key=lambda item: -item[1]):
        print(f"    {us:8.1f} us  {short(name)}")


def main():
    warnings.filterwarnings("ignore", message="Warning: Profiler clears events")
    args = common.parse_args(__doc__, iters=20, warmup=5, extra=add_arguments)
    ours = common.Ours(args.lib)
    generator = torch.Generator(device="cuda").manual_seed(0)
    for case in common.grid(args):
        causal = case["causal"]
        sets = common.inputs(case, generator)
        name = f"{case['dtype']} d{case['d']} s{case['seqlen']}{' causal' if causal else ''}"
        print(name, flush=True)
        try:
            sides = point_sides(args, ours, sets, causal)
        except common.FlashAttnBenchError as error:  # e.g. a tune shim built for another width
            print(f"  ours: {common.short_error(error)}")
            continue
        for label, fn, states in sides:
            event_ms = common.time_ms(fn, args.warmup, args.iters, states, hide_host=True)
            report(label, kernel_times(fn, states, args.calls), event_ms)
        del sets, sides
        torch.cuda.empty_cache()


def point_sides(args, ours, sets, causal):
    """(label, fn, states) of each side timed at a point: ours (and its deterministic mode, for
    the backward), FA2. Raises FlashAttnBenchError where the library has no kernel for it."""
    if not args.forward:
        point = OursPoint(ours, sets, causal)  # runs our forward
        states = peer_states(sets, SDPBackend.FLASH_ATTENTION, causal)
        return [("ours", lambda state: point.run(state, False), point.states),
                ("ours deterministic", lambda state: point.run(state, True), point.states),
                ("fa2", peer_backward, states)]
    q = sets[0][0]
    out = torch.empty_like(q)
    lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device="cuda", dtype=torch.float32)
    transposed = [[x.transpose(1, 2) for x in qkvd[:3]] for qkvd in sets]

    def ours_call(qkvd):
        ours.forward(*qkvd[:3], out, lse, causal)

    def peer_call(qkv):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            F.scaled_dot_product_attention(*qkv, is_causal=causal)

    ours_call(sets[0])
    return [("ours", ours_call, sets), ("fa2", peer_call, transposed)]


if __name__ == "__main__":
    main()
