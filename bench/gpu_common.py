"""What bench/gpu_forward.py and bench/gpu_backward.py share: ours through bench/gpu_shim.cpp
(ctypes), the FA2 grid and its inputs, the event timer, the peers, the environment record.

The grid (fa2_grid), the rotated input sets (make_inputs), the CUDA-event timer (Timer) and the
agreement measure (rel_error, TOLERANCE) are bench/attention.py's, so that the suite and these
scripts time the same way.
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import torch
from torch.nn.attention import SDPBackend

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attention import (TOLERANCE, Timer, fa2_grid, forward_flops,  # noqa: E402,F401
                       make_inputs, rel_error)

# The peers of both scripts: PyTorch SDPA's FlashAttention-2 and cuDNN backends.
PEERS = (("fa2", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION))
BACKWARD_FLOP_FACTOR = 2.5
NAN = float("nan")


def _strides(t):  # [b, s, h, d] -> (batch, row, head) element strides
    return (ctypes.c_int64 * 3)(t.stride(0), t.stride(1), t.stride(2))


def _dtype_code(t):
    return 0 if t.dtype == torch.float16 else 1


class FlashAttnBenchError(RuntimeError):
    def __init__(self, what, code, message):
        super().__init__(f"flashattn {what} failed ({code}): {message}")
        self.code = code  # flashattn::StatusCode; 2 = unsupported


class Ours:
    """flashattn_bench_forward / flashattn_bench_backward of the shim, on the current stream."""

    def __init__(self, path):
        lib = ctypes.CDLL(path)
        i64, vp, p64 = ctypes.c_int64, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64)
        sizes = [ctypes.c_int] + [i64] * 6
        self._forward = lib.flashattn_bench_forward
        self._forward.argtypes = sizes + [vp, p64] * 4 + [vp, ctypes.c_int, ctypes.c_float, vp,
                                                          ctypes.c_char_p, ctypes.c_int]
        self._forward.restype = ctypes.c_int
        self._backward = getattr(lib, "flashattn_bench_backward", None)  # older shims lack it
        if self._backward is not None:
            self._backward.argtypes = sizes + [vp, p64] * 5 + [vp] + [vp, p64] * 3 + [
                ctypes.c_int, ctypes.c_float, ctypes.c_int, vp, ctypes.POINTER(ctypes.c_uint64),
                vp, ctypes.c_char_p, ctypes.c_int]
            self._backward.restype = ctypes.c_int
        self._set_extras = getattr(lib, "flashattn_bench_set_extras", None)  # older shims lack it
        if self._set_extras is not None:
            self._set_extras.argtypes = [ctypes.c_float, ctypes.c_float, ctypes.c_uint64]
            self._set_extras.restype = None

    def set_extras(self, softcap, dropout_p, seed=1234):
        """Softcap / dropout for every later call (the extras kernels); 0 turns them off."""
        if self._set_extras is None:
            if softcap or dropout_p:
                raise FlashAttnBenchError("set_extras", 2, "the shim has no extras entry point")
            return
        self._set_extras(softcap, dropout_p, seed)

    @staticmethod
    def _check(what, code, error):
        if code != 0:
            raise FlashAttnBenchError(what, code, error.value.decode(errors="replace"))

    def forward(self, q, k, v, out, lse, causal):
        error = ctypes.create_string_buffer(512)
        b, s, h, d = q.shape
        code = self._forward(_dtype_code(q), b, s, k.shape[1], h, k.shape[2], d,
                             q.data_ptr(), _strides(q), k.data_ptr(), _strides(k), v.data_ptr(),
                             _strides(v), out.data_ptr(), _strides(out), lse.data_ptr(),
                             int(causal), 0.0, torch.cuda.current_stream().cuda_stream, error,
                             len(error))
        self._check("forward", code, error)

    def _call_backward(self, q, k, v, out, dout, lse, dq, dk, dv, causal, deterministic,
                       workspace, workspace_bytes):
        if self._backward is None:
            raise FlashAttnBenchError("backward", 2, "the shim has no flashattn_bench_backward")
        error = ctypes.create_string_buffer(512)
        b, s, h, d = q.shape
        code = self._backward(
            _dtype_code(q), b, s, k.shape[1], h, k.shape[2], d,
            q.data_ptr(), _strides(q), k.data_ptr(), _strides(k), v.data_ptr(), _strides(v),
            out.data_ptr(), _strides(out), dout.data_ptr(), _strides(dout), lse.data_ptr(),
            dq.data_ptr(), _strides(dq), dk.data_ptr(), _strides(dk), dv.data_ptr(),
            _strides(dv), int(causal), 0.0, int(deterministic), workspace, workspace_bytes,
            torch.cuda.current_stream().cuda_stream, error, len(error))
        self._check("backward", code, error)

    def backward_workspace(self, q, k, v, out, dout, lse, dq, dk, dv, causal, deterministic):
        """The workspace as a caller's allocator would hand it over (a torch uint8 tensor, so
        that the timed calls allocate nothing, as the peers' calls do through the cache)."""
        size = ctypes.c_uint64(0)
        self._call_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, deterministic, None,
                            ctypes.byref(size))
        return torch.empty(max(1, size.value), dtype=torch.uint8, device=q.device)

    def backward(self, q, k, v, out, dout, lse, dq, dk, dv, causal, deterministic, workspace):
        size = ctypes.c_uint64(workspace.numel())
        self._call_backward(q, k, v, out, dout, lse, dq, dk, dv, causal, deterministic,
                            workspace.data_ptr(), ctypes.byref(size))


def add_common_args(parser, iters, warmup):
    parser.add_argument("--lib", required=True, help="the shim (libflashattn_bench.so)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--iters", type=int, default=iters, help="timed calls (median)")
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--no-peers", action="store_true", help="time ours alone")
    parser.add_argument("--dtypes", default="bf16,fp16")
    parser.add_argument("--dims", default="64,128,256")
    parser.add_argument("--seqlens", default="512,1024,2048,4096,8192,16384")
    parser.add_argument("--tokens", type=int, default=16384, help="tokens per point")
    parser.add_argument("--hidden", type=int, default=2048, help="heads = hidden / d")
    parser.add_argument("--softcap", type=float, default=0.0,
                        help="ours with this softcap (the extras kernels); peers cannot: they "
                             "run without it, as a reference only")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="dropout_p for ours and the peers (training-mode SDPA)")


def parse_args(doc, iters, warmup, extra=None):
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, iters, warmup)
    if extra is not None:
        extra(parser)
    return parser.parse_args()


def set_extras(args, shims):
    """--softcap / --dropout on every shim (Ours) of a script."""
    for shim in shims:
        shim.set_extras(args.softcap, args.dropout)


def refuse_extras(args, script):
    """Scripts that do not time the extras kernels yet say so rather than ignore the options."""
    if args.softcap or args.dropout:
        sys.exit(f"{script}: --softcap / --dropout are not supported here "
                 "(gpu_forward.py, ab_forward.py, ab_backward.py only)")


def grid(args):
    """The FA2 grid's points (attention.fa2_grid dicts: dtype, d, seqlen, batch, heads, ...)."""
    return list(fa2_grid(args.dtypes.split(","), [int(s) for s in args.seqlens.split(",")],
                         [int(d) for d in args.dims.split(",")], args.tokens, args.hidden))


def point_row(case):
    """The JSON row of a point (keys of bench/gpu_forward_h100.json)."""
    return {"dtype": case["dtype"], "d": case["d"], "s": case["seqlen"], "b": case["batch"],
            "h": case["heads"], "causal": case["causal"]}


def l2_bytes():
    return getattr(torch.cuda.get_device_properties(0), "L2_cache_size", 0) or 50 << 20


def inputs(case, generator):
    """Rotated [q, k, v, dout] sets ([b, s, h, d]), together over 3x the L2 (one set on the FA2
    grid: 256 MB)."""
    sets, _ = make_inputs(dict(case, grid="fa2"), "cuda", l2_bytes(), generator)
    return sets


def forward_points(args):
    """Per point of the grid: (case, input sets [b, s, h, d], out and lse buffers for ours, the
    sets' q, k, v transposed to SDPA's [b, h, s, d]). Same seed, so the same inputs, in every
    script."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    for case in grid(args):
        sets = inputs(case, generator)
        q = sets[0][0]
        out = torch.empty_like(q)
        lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device="cuda", dtype=torch.float32)
        transposed = [[x.transpose(1, 2) for x in qkvd[:3]] for qkvd in sets]
        yield case, sets, out, lse, transposed
        del sets, q, out, lse, transposed  # before the next point's inputs are made


def environment(args):
    return {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(),
            "cudnn": torch.backends.cudnn.version(), "l2_bytes": l2_bytes(),
            "iters": args.iters, "warmup": args.warmup}


TIMER = Timer("cuda")


def time_ms(fn, warmup, iters, states=(None,), hide_host=False):
    """Median ms of fn(state), states rotated (Timer.measure of bench/attention.py)."""
    return TIMER.measure(lambda state: state, fn, list(states), warmup, iters, hide_host)[0]


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


def tflops(flops, ms):
    return flops / ms / 1e9 if ms else NAN


def short_error(error):
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


def write_json(path, env, rows, started):
    env["elapsed_s"] = time.time() - started
    if path:
        with open(path, "w") as f:
            json.dump({"env": env, "grid": rows}, f, indent=1)
