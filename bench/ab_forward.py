#!/usr/bin/env python3
"""A/B of forward kernels in one process: several bench shims (libflashattn_bench.so builds, e.g.
the default library and bench/gpu.sh tune variants) and FA2 (SDPA FLASH_ATTENTION) timed on the
same inputs, interleaved point by point and round by round, so that the GPU's drift between
separate runs (clocks, temperature: +-5% on one point between calls) does not decide which
variant wins. GPU time as in gpu_forward.py (host dispatch hidden), median of --iters per round,
then the median over --rounds.

Each shim is loaded with its own symbols (ctypes: RTLD_LOCAL), so builds of the same library
coexist. A variant built for one tile width (bench/gpu.sh tune: its backend knows only that
width) is named name@width and timed only at the head dims of that width; the others show "-".
Usage:
  ab_forward.py --lib build/libflashattn_bench.so --variants name[@width]=path.so ... [--dims ...]
"""
import statistics

import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

import gpu_common as common

TILE_WIDTHS = (32, 64, 96, 128, 192, 256)  # src/cuda/sm80/forward_args.h kTileWidths


def tile_width(head_dim):
    """The kernel width a head dim runs at: the smallest tile width that holds it."""
    return next(width for width in TILE_WIDTHS if head_dim <= width)


def add_arguments(parser):
    parser.add_argument("--variants", nargs="*", default=[],
                        help="name[@width]=path of further shims, timed beside --lib (named "
                             "'default'); with @width only at the head dims of that tile width")
    parser.add_argument("--rounds", type=int, default=3)


def load_shims(args):
    """[(name, tile width or None, Ours)]: --lib as 'default', then each --variants entry."""
    shims = [("default", None, common.Ours(args.lib))]
    for variant in args.variants:
        name, path = variant.split("=", 1)
        name, _, width = name.partition("@")
        shims.append((name, int(width) if width else None, common.Ours(path)))
    return shims


def main():
    args = common.parse_args(__doc__, iters=10, warmup=3, extra=add_arguments)
    shims = load_shims(args)
    common.set_extras(args, [shim for _, _, shim in shims])
    names = [name for name, _, _ in shims] + ([] if args.no_peers else ["fa2"])
    print(f"{'point':24} " + " ".join(f"{name:>12}" for name in names) +
          "   (TFLOP/s, GPU time; median of rounds)")
    for case, sets, out, lse, transposed in common.forward_points(args):
        causal = case["causal"]
        # None: a variant of another tile width, which this build cannot run.
        calls = [None if width is not None and width != tile_width(case["d"]) else
                 (lambda qkv, shim=shim: shim.forward(*qkv[:3], out, lse, causal))
                 for _, width, shim in shims]
        inputs = [sets] * len(shims)
        if not args.no_peers:
            calls.append(lambda qkv: F.scaled_dot_product_attention(
                *qkv, is_causal=causal, dropout_p=args.dropout))
            inputs.append(transposed)
        flops = common.forward_flops(case)
        times = [[] for _ in calls]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # the shims ignore it
            for _ in range(args.rounds):
                for i, (call, states) in enumerate(zip(calls, inputs)):
                    if call is None:
                        continue
                    times[i].append(common.time_ms(call, args.warmup, args.iters, states,
                                                   hide_host=True))
        name = f"{case['dtype']} d{case['d']} s{case['seqlen']}{' causal' if causal else ''}"
        print(f"{name:24} " + " ".join(
            f"{common.tflops(flops, statistics.median(t)):12.1f}" if t else f"{'-':>12}"
            for t in times), flush=True)
        del sets, out, lse, transposed, calls, inputs


if __name__ == "__main__":
    main()
