#!/usr/bin/env python3
"""CPU attention: flashattn's cpu_tiled against torch's scaled_dot_product_attention.

Same machine, same thread count, same shapes (batch 1, heads 8, seqlen x head_dim x causal,
fp32 and bf16), forward and backward. Ours is timed by the Google Benchmark binary
(build with -DFLASHATTN_BUILD_BENCH=ON) in a subprocess; torch in this process. The two are
interleaved round by round so that load from other processes hits both alike, and each
reports the median over rounds. FLOPs as FlashAttention-2 counts them (forward
4*b*h*sq*sk*d, half for causal; backward 2.5x the forward).

    python3 bench/cpu_vs_torch.py --bench build/bench/cpu_attention_bench --threads 2 \
        --json bench/cpu_vs_torch.json
"""

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import time

import torch
import torch.nn.functional as F

DTYPES = {"fp32": (0, torch.float32), "bf16": (1, torch.bfloat16)}


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor()


def flops(seqlen, dim, causal, direction, heads=8, batch=1):
    forward = 4.0 * batch * heads * seqlen * seqlen * dim * (0.5 if causal else 1.0)
    return forward if direction == "fwd" else 2.5 * forward


def ours_ms(binary, threads, direction, dtype, seqlen, dim, causal, min_time):
    """Milliseconds per call of our backend (Google Benchmark's real time)."""
    name = "BM_Forward" if direction == "fwd" else "BM_Backward"
    code = DTYPES[dtype][0]
    pattern = f"^{name}/dtype:{code}/seqlen:{seqlen}/dim:{dim}/causal:{int(causal)}/"
    env = dict(os.environ, FLASHATTN_BENCH_THREADS=str(threads))
    out = subprocess.run(
        [binary, f"--benchmark_filter={pattern}", f"--benchmark_min_time={min_time}",
         "--benchmark_format=json"],
        capture_output=True, text=True, check=True, env=env).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type") == "iteration"]
    if len(runs) != 1:
        raise RuntimeError(f"expected one benchmark for {pattern}, got {len(runs)}")
    run = runs[0]
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[run["time_unit"]]
    return run["real_time"] * scale


def torch_ms(direction, dtype, seqlen, dim, causal, min_time):
    """Median milliseconds per call of torch SDPA (forward, or backward alone)."""
    torch_dtype = DTYPES[dtype][1]
    gen = torch.Generator().manual_seed(0)
    shape = (1, 8, seqlen, dim)
    q, k, v = (torch.randn(shape, generator=gen).to(torch_dtype).requires_grad_(direction == "bwd")
               for _ in range(3))
    if direction == "fwd":
        def call():
            with torch.no_grad():
                F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    else:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        dout = torch.randn(shape, generator=gen).to(torch_dtype)

        def call():
            torch.autograd.grad(out, (q, k, v), dout, retain_graph=True)
    call()  # warm-up (and oneDNN kernel creation)
    times = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        call()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", default="build/bench/cpu_attention_bench")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement")
    parser.add_argument("--seqlens", default="1024,4096")
    parser.add_argument("--dims", default="64,128")
    parser.add_argument("--dtypes", default="fp32,bf16")
    parser.add_argument("--directions", default="fwd,bwd")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cases = list(itertools.product(args.directions.split(","), args.dtypes.split(","),
                                   [int(s) for s in args.seqlens.split(",")],
                                   [int(d) for d in args.dims.split(",")], [False, True]))
    samples = {case: ([], []) for case in cases}
    for _ in range(args.rounds):
        for case in cases:
            samples[case][0].append(ours_ms(args.bench, args.threads, *case, args.min_time))
            samples[case][1].append(torch_ms(*case, args.min_time))

    rows = []
    print(f"device: {cpu_model()}, threads {args.threads}, torch {torch.__version__}, "
          f"median of {args.rounds} interleaved rounds")
    print("| dir | dtype | seqlen | d | causal | ours ms | ours TFLOP/s | torch ms | "
          "torch TFLOP/s | ours/torch speed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in cases:
        direction, dtype, seqlen, dim, causal = case
        ours = statistics.median(samples[case][0])
        theirs = statistics.median(samples[case][1])
        work = flops(seqlen, dim, causal, direction)
        row = dict(direction=direction, dtype=dtype, seqlen=seqlen, head_dim=dim, causal=causal,
                   ours_ms=ours, ours_tflops=work / ours * 1e-9, torch_ms=theirs,
                   torch_tflops=work / theirs * 1e-9, speed_ratio=theirs / ours,
                   ours_samples=samples[case][0], torch_samples=samples[case][1])
        rows.append(row)
        print(f"| {direction} | {dtype} | {seqlen} | {dim} | {'yes' if causal else 'no'} | "
              f"{ours:.2f} | {row['ours_tflops']:.3f} | {theirs:.2f} | "
              f"{row['torch_tflops']:.3f} | {row['speed_ratio']:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(device=cpu_model(), threads=args.threads, torch=torch.__version__,
                           rounds=args.rounds, results=rows), f, indent=1)


if __name__ == "__main__":
    main()
