#!/usr/bin/env python3
"""Host (Python) time per call of flashattn's torch entry points on tiny inputs, where the
kernels cost next to nothing and what is left is the binding: argument checks, tensor
allocation, ctypes structs, autograd.

The GPU suite times flashattn.flash_attn_func one call at a time between CUDA events, so at short
sequences this overhead is part of what it reports. Each case runs --calls calls back to back
with no synchronisation inside the loop (on CUDA the kernels queue behind the host), --repeats
times; the median of the repeats is printed in microseconds per call. On CUDA the same shape also
runs through PyTorch SDPA's FLASH_ATTENTION backend, the overhead to compare against.

Usage: PYTHONPATH=python python3 bench/host_overhead.py [--device cpu|cuda] [--threads N]
       [--json out.json]
"""

import argparse
import json
import platform
import statistics
import time

import torch

import flashattn


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--calls", type=int, default=2000, help="calls per repeat")
    parser.add_argument("--repeats", type=int, default=7, help="repeats; the median is reported")
    parser.add_argument("--shape", type=int, nargs=4, metavar=("B", "S", "H", "D"),
                        help="q, k, v shape [batch, seqlen, heads, head_dim]; default "
                             "[1, 1, 1, 8] fp32 on the cpu (no kernel time to speak of), "
                             "[1, 128, 1, 64] bf16 on cuda")
    parser.add_argument("--threads", type=int,
                        help="torch.set_num_threads first (the cpu kernels use that many): 1 "
                             "keeps OpenMP wake-ups out of the host time on the cpu")
    parser.add_argument("--json", metavar="PATH", help="also write the results here")
    return parser.parse_args()


def make_inputs(shape, dtype, device, requires_grad):
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=generator).to(device=device, dtype=dtype)
            .requires_grad_(requires_grad) for _ in range(3)]


def forward_case(attention, q, k, v):
    def call():
        with torch.no_grad():
            attention(q, k, v)
    return call


def forward_backward_case(attention, q, k, v):
    dout = torch.ones_like(attention(q, k, v))

    def call():
        # autograd.grad rather than .backward(): no accumulation into .grad between calls.
        torch.autograd.grad(attention(q, k, v), (q, k, v), dout)
    return call


def backward_case(attention, q, k, v):
    out = attention(q, k, v)
    dout = torch.ones_like(out)

    def call():
        # The suite's "bwd" mode: the backward alone. The graph is kept for the next call.
        torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
    return call


def cases(args):
    """(name, call) pairs; each call is one forward, one backward, or one of each."""
    device = args.device
    on_cuda = device == "cuda"
    dtype = torch.bfloat16 if on_cuda else torch.float32
    shape = args.shape or ((1, 128, 1, 64) if on_cuda else (1, 1, 1, 8))
    batch, seqlen, heads, head_dim = shape

    q, k, v = make_inputs(shape, dtype, device, requires_grad=False)
    yield "flashattn forward", forward_case(flashattn.flash_attn_func, q, k, v)

    varlen = [t.reshape(batch * seqlen, heads, head_dim) for t in (q, k, v)]
    cu_seqlens = torch.arange(0, (batch + 1) * seqlen, seqlen, dtype=torch.int32, device=device)

    def varlen_attention(q, k, v):
        return flashattn.flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, seqlen, seqlen)
    yield "flashattn varlen forward", forward_case(varlen_attention, *varlen)

    q, k, v = make_inputs(shape, dtype, device, requires_grad=True)
    yield "flashattn backward", backward_case(flashattn.flash_attn_func, q, k, v)
    yield "flashattn forward+backward", forward_backward_case(flashattn.flash_attn_func, q, k, v)

    if on_cuda:
        # SDPA wants [batch, heads, seqlen, head_dim].
        from torch.nn.attention import SDPBackend, sdpa_kernel
        from torch.nn.functional import scaled_dot_product_attention

        def sdpa(q, k, v):
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                return scaled_dot_product_attention(q, k, v)
        sdpa_shape = (batch, heads, seqlen, head_dim)
        q, k, v = make_inputs(sdpa_shape, dtype, device, requires_grad=False)
        yield "sdpa flash forward", forward_case(sdpa, q, k, v)
        q, k, v = make_inputs(sdpa_shape, dtype, device, requires_grad=True)
        yield "sdpa flash backward", backward_case(sdpa, q, k, v)
        yield "sdpa flash forward+backward", forward_backward_case(sdpa, q, k, v)


def time_case(call, args):
    """Median microseconds per call: host time to issue the calls, and with the final sync."""
    synchronize = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    for _ in range(min(args.calls, 200)):  # warm-up: allocator, caches, lazy init
        call()
    synchronize()
    host, synced = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.calls):
            call()
        issued = time.perf_counter()
        synchronize()
        done = time.perf_counter()
        host.append((issued - start) / args.calls * 1e6)
        synced.append((done - start) / args.calls * 1e6)
    return {"host_us": statistics.median(host), "synced_us": statistics.median(synced),
            "host_us_min": min(host), "host_us_max": max(host)}


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"device": args.device, "calls": args.calls, "repeats": args.repeats,
               "torch": torch.__version__, "python": platform.python_version(),
               "flashattn": flashattn.__version__, "threads": torch.get_num_threads(),
               "cases": {}}
    if args.device == "cuda":
        results["gpu"] = torch.cuda.get_device_name()
    print(f"{'case':32} {'host us/call':>13} {'synced':>9} {'min..max':>16}")
    for name, call in cases(args):
        try:
            row = time_case(call, args)
        except flashattn.FlashAttnUnsupportedError as error:  # e.g. a build without a backward
            print(f"{name:32} unsupported: {error}", flush=True)
            continue
        results["cases"][name] = row
        print(f"{name:32} {row['host_us']:13.1f} {row['synced_us']:9.1f} "
              f"{row['host_us_min']:7.1f}..{row['host_us_max']:<7.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
