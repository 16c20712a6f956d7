#!/usr/bin/env python3
"""Forward benchmark on the FA2 grid: ours (through bench/gpu_shim.cpp) vs PyTorch SDPA's
FLASH_ATTENTION (FlashAttention-2) and CUDNN_ATTENTION backends, same process, same inputs.

Grid: 16k tokens (batch = 16384 / seqlen), hidden 2048 (heads = 2048 / d), d 64/128/256,
seqlen 512..16384, causal and not, bf16 and fp16. CUDA events, warm-up, median of --iters.
Usage: gpu_forward.py --lib build/libflashattn_bench.so [--json out.json] [--quick]
"""
import argparse
import ctypes
import json
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
import torch.nn.functional as F


def load_ours(path):
    lib = ctypes.CDLL(path)
    fn = lib.flashattn_bench_forward
    i64, vp = ctypes.c_int64, ctypes.c_void_p
    p64 = ctypes.POINTER(ctypes.c_int64)
    fn.argtypes = [ctypes.c_int, i64, i64, i64, i64, i64, i64, vp, p64, vp, p64, vp, p64, vp, p64,
                   vp, ctypes.c_int, ctypes.c_float, vp, ctypes.c_char_p, ctypes.c_int]
    fn.restype = ctypes.c_int

    def strides(t):  # [b, s, h, d] -> (batch, row, head) element strides
        return (ctypes.c_int64 * 3)(t.stride(0), t.stride(1), t.stride(2))

    def forward(q, k, v, out, lse, causal):
        error = ctypes.create_string_buffer(512)
        b, s, h, d = q.shape
        code = fn(0 if q.dtype == torch.float16 else 1, b, s, k.shape[1], h, k.shape[2], d,
                  q.data_ptr(), strides(q), k.data_ptr(), strides(k), v.data_ptr(), strides(v),
                  out.data_ptr(), strides(out), lse.data_ptr(), int(causal), 0.0,
                  torch.cuda.current_stream().cuda_stream, error, len(error))
        if code != 0:
            raise RuntimeError(f"flashattn forward failed ({code}): {error.value.decode()}")
    return forward


def time_ms(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    return statistics.median(times), times


def time_pipelined_ms(fn, calls=20, repeats=5):
    """Per-call time of `calls` back-to-back launches between two events (host overhead
    hidden as long as the host keeps ahead of the GPU); median over `repeats`."""
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(calls):
            fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) / calls)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--lib", required=True)
    parser.add_argument("--json", default=None)
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-peers", action="store_true", help="time ours alone")
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--dims", default="64,128,256")
    parser.add_argument("--seqlens", default="512,1024,2048,4096,8192,16384")
    args = parser.parse_args()

    ours = load_ours(args.lib)
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    env = {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
           "cudnn": torch.backends.cudnn.version(), "iters": args.iters, "warmup": args.warmup}
    print(json.dumps(env), flush=True)
    rows = []
    started = time.time()
    for dtype_name in args.dtypes.split(","):
        for d in [int(x) for x in args.dims.split(",")]:
            for s in [int(x) for x in args.seqlens.split(",")]:
                for causal in (False, True):
                    b, h = 16384 // s, 2048 // d
                    torch.manual_seed(0)
                    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dtypes[dtype_name])
                               for _ in range(3))
                    out = torch.empty_like(q)
                    lse = torch.empty(b, h, s, device="cuda", dtype=torch.float32)
                    flops = 4 * b * h * s * s * d / (2 if causal else 1)
                    row = {"dtype": dtype_name, "d": d, "s": s, "b": b, "h": h, "causal": causal}
                    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
                    ms, _ = time_ms(lambda: ours(q, k, v, out, lse, causal), args.warmup, args.iters)
                    row["ours_ms"] = ms
                    row["ours_tflops"] = flops / ms / 1e9
                    row["ours_pipelined_tflops"] = flops / time_pipelined_ms(
                        lambda: ours(q, k, v, out, lse, causal)) / 1e9
                    peers = () if args.no_peers else (("fa2", SDPBackend.FLASH_ATTENTION),
                                                      ("cudnn", SDPBackend.CUDNN_ATTENTION))
                    for name, backend in peers:
                        try:
                            with sdpa_kernel(backend):
                                ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)
                                ms, _ = time_ms(lambda: F.scaled_dot_product_attention(
                                    qt, kt, vt, is_causal=causal), args.warmup, args.iters)
                            row[name + "_ms"] = ms
                            row[name + "_tflops"] = flops / ms / 1e9
                            with sdpa_kernel(backend):
                                row[name + "_pipelined_tflops"] = flops / time_pipelined_ms(
                                    lambda: F.scaled_dot_product_attention(
                                        qt, kt, vt, is_causal=causal)) / 1e9
                            if name == "fa2":
                                row["max_abs_diff_vs_fa2"] = (
                                    out - ref.transpose(1, 2)).abs().max().item()
                        except Exception as error:  # a peer that cannot run this point
                            row[name + "_error"] = str(error).splitlines()[0][:200]
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    del q, k, v, out, lse, qt, kt, vt
    env["elapsed_s"] = time.time() - started
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "grid": rows}, f, indent=1)

    print("\n(pipelined: 20 back-to-back calls between events, host overhead hidden)")
    print("dtype d     s     causal  ours   fa2    cudnn  ours/fa2 ours/cudnn  maxdiff   "
          "pipelined: ours  fa2   ours/fa2")
    for r in rows:
        fa2, cud = r.get("fa2_tflops"), r.get("cudnn_tflops")
        print(f"{r['dtype']:5} {r['d']:<5} {r['s']:<5} {str(r['causal']):6} "
              f"{r['ours_tflops']:6.1f} {fa2 or float('nan'):6.1f} {cud or float('nan'):6.1f} "
              f"{r['ours_tflops'] / fa2 if fa2 else float('nan'):8.2f} "
              f"{r['ours_tflops'] / cud if cud else float('nan'):10.2f}  "
              f"{r.get('max_abs_diff_vs_fa2', float('nan')):.2e}  "
              f"{r['ours_pipelined_tflops']:15.1f} {r.get('fa2_pipelined_tflops', float('nan')):5.1f} "
              f"{r['ours_pipelined_tflops'] / r.get('fa2_pipelined_tflops', float('nan')):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
