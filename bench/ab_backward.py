#!/usr/bin/env python3
"""A/B of backward kernels in one process: several bench shims (the default library and
bench/gpu.sh tune variants) and FA2's backward (SDPA FLASH_ATTENTION) timed on the same inputs,
interleaved point by point and round by round (as ab_forward.py does for the forward), so that
drift between separate runs does not decide which variant wins. GPU time as in
gpu_backward.py (host dispatch hidden), median of --iters per round, then the median over
--rounds. Each shim's gradients are checked against FA2's first (WRONG: not timed).

With --softcap / --dropout the shims run their extras kernels; FA2 cannot take a softcap (it
runs without, as a reference only) and draws its own dropout mask, so each shim's gradients are
checked against the first shim's (--lib: the library, which the tests hold to the CPU oracle).

A variant named name@width was built for that tile width only and is timed only there.
Usage:
  ab_backward.py --lib build/libflashattn_bench.so --variants name[@width]=path.so ... [--dims ...]
"""
import statistics

import torch
from torch.nn.attention import SDPBackend

import gpu_common as common
import ab_forward
from gpu_backward import OursPoint, agreement, peer_backward, peer_states


def add_arguments(parser):
    ab_forward.add_arguments(parser)  # --variants, --rounds
    parser.add_argument("--deterministic", action="store_true",
                        help="time the deterministic mode of every shim instead of the default")
    parser.add_argument("--time-wrong", action="store_true",
                        help="time shims whose gradients disagree too (probes that drop work)")


def main():
    args = common.parse_args(__doc__, iters=10, warmup=3, extra=add_arguments)
    shims = ab_forward.load_shims(args)
    common.set_extras(args, [shim for _, _, shim in shims])
    extras = bool(args.softcap or args.dropout)
    names = [name for name, _, _ in shims] + ["fa2"]
    print(f"{'point':24} " + " ".join(f"{name:>12}" for name in names) +
          f"   (backward TFLOP/s, GPU time; median of rounds"
          f"{'; ours deterministic' if args.deterministic else ''}"
          f"{'; extras: checked against ' + names[0] if extras else ''})")
    generator = torch.Generator(device="cuda").manual_seed(0)
    for case in common.grid(args):
        causal = case["causal"]
        sets = common.inputs(case, generator)
        states = peer_states(sets, SDPBackend.FLASH_ATTENTION, causal, args.dropout)
        reference = None if extras else [g.float() for g in peer_backward(states[0])]
        calls = []
        for name, width, shim in shims:
            if width is not None and width != ab_forward.tile_width(case["d"]):
                calls.append(None)
                continue
            point = OursPoint(shim, sets, causal)
            grads = point.checked_grads(args.deterministic)
            if reference is None:
                reference = [g.float() for g in grads]
            worst, _ = agreement(grads, reference)
            if not worst <= common.TOLERANCE["grad"]:
                print(f"  {name}: WRONG, ||ours - ref|| / ||ref|| = {worst:.3g}")
                if not args.time_wrong:
                    calls.append(None)
                    continue
            calls.append((lambda state, point=point: point.run(state, args.deterministic),
                          point.states))
        calls.append((peer_backward, states))
        flops = common.forward_flops(case) * common.BACKWARD_FLOP_FACTOR
        times = [[] for _ in calls]
        for _ in range(args.rounds):
            for i, call in enumerate(calls):
                if call is not None:
                    fn, call_states = call
                    times[i].append(common.time_ms(fn, args.warmup, args.iters, call_states,
                                                   hide_host=True))
        name = f"{case['dtype']} d{case['d']} s{case['seqlen']}{' causal' if causal else ''}"
        print(f"{name:24} " + " ".join(
            f"{common.tflops(flops, statistics.median(t)):12.1f}" if t else f"{'-':>12}"
            for t in times), flush=True)
        del sets, states, reference, calls
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
