#!/usr/bin/env python3
"""Attention benchmark suite: ours (the flashattn Python package) against every peer present,
forward, backward and forward+backward, in one process on the same inputs.

Peers (bench/attention_peers.py): PyTorch SDPA's FLASH_ATTENTION (FA2), CUDNN_ATTENTION,
EFFICIENT_ATTENTION and MATH (small sizes only) backends; FlashInfer, FA3, FA4, the flash_attn
2.x package and xformers when importable. Before timing, each peer's output (and gradients) is
compared with ours; a peer that disagrees is reported and not timed. Where ours cannot run a
mode (the CUDA backward today) its records say "unsupported" and the gradients of the first
peer that runs are the reference instead.

Timing: CUDA events around each call (perf_counter on the CPU), warm-up, median of --iters,
input sets rotated so that the cache does not hold them. A forward is one call between two
events, so host time (dispatch, wrappers) counts at short sizes; a backward is timed after an
untimed forward, which is still running when the backward is issued, so host time is hidden. FLOPs as FlashAttention-2 counts them:
forward 4*b*h*sq*sk*d, half for causal, backward 2.5x, forward+backward 3.5x; varlen sums over
sequences. The GEMM and copy ceilings are measured in the same run; each result is also given
as a fraction of the GEMM ceiling.

Grids: fa2 (16k tokens, hidden 2048, d 64/128/256, seqlen 512..16384), gqa (32 query heads,
8 KV heads, d 128, 16k tokens), varlen (16k tokens in sequences of 128..8192, hidden 2048,
d 64/128); all causal and not, in --dtypes. --device cpu runs a small grid on the CPU backend
against torch's CPU SDPA; --quick shrinks every grid for a smoke test.

    python3 bench/attention.py --json out.json --png-prefix out [--iters 20] [--quick]
    python3 bench/attention.py --device cpu --threads 2 --json cpu.json --png-prefix cpu
"""

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import attention_peers  # noqa: E402

MODES = ("fwd", "bwd", "fwdbwd")
FLOP_FACTOR = {"fwd": 1.0, "bwd": 2.5, "fwdbwd": 3.5}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
# ||peer - reference|| / ||reference|| above this is a disagreement (bf16 rounding of two
# correct implementations lands near 3e-3 for outputs, 1e-2 for gradients).
TOLERANCE = {"fwd": 2e-2, "grad": 5e-2}
# Clock cycles of the GPU spin that Timer.measure(hide_host=True) puts ahead of a timed call:
# about 1 ms at H100 clocks, 10x the host time of an autograd backward call.
HOST_HIDING_CYCLES = 2_000_000


# --- grids ------------------------------------------------------------------------------------

def fa2_grid(dtypes, seqlens, dims, tokens=16384, hidden=2048):
    for dtype in dtypes:
        for d in dims:
            for s in seqlens:
                for causal in (False, True):
                    yield dict(grid="fa2", dtype=dtype, d=d, seqlen=s, batch=max(1, tokens // s),
                               heads=hidden // d, heads_k=hidden // d, causal=causal)


def gqa_grid(dtypes, seqlens, tokens=16384, heads=32, heads_k=8, d=128):
    for dtype in dtypes:
        for s in seqlens:
            for causal in (False, True):
                yield dict(grid="gqa", dtype=dtype, d=d, seqlen=s, batch=max(1, tokens // s),
                           heads=heads, heads_k=heads_k, causal=causal)


def varlen_mixes(tokens, shortest, longest, seed=0):
    """Two fixed mixes of sequence lengths summing to `tokens`: halving (longest, longest/2, ...,
    shortest, shortest...) and a seeded log-uniform draw."""
    halving, s = [], longest
    while sum(halving) + s <= tokens and s >= shortest:
        halving.append(s)
        s //= 2
    while sum(halving) + shortest <= tokens:
        halving.append(shortest)
    generator = torch.Generator().manual_seed(seed)
    drawn = []
    while True:
        u = torch.rand((), generator=generator).item()
        s = int(round(math.exp(math.log(shortest) + u * (math.log(longest) - math.log(shortest)))))
        s = max(shortest, min(longest, s, tokens - sum(drawn)))
        if sum(drawn) + s > tokens or s < shortest:
            break
        drawn.append(s)
    if sum(drawn) < tokens:
        drawn.append(tokens - sum(drawn))
    return {"halving": halving, "random": drawn}


def varlen_grid(dtypes, dims, tokens=16384, hidden=2048, shortest=128, longest=8192):
    for dtype in dtypes:
        for d in dims:
            for mix, lengths in varlen_mixes(tokens, shortest, longest).items():
                for causal in (False, True):
                    yield dict(grid="varlen", dtype=dtype, d=d, seqlen=max(lengths), mix=mix,
                               seqlens=lengths, batch=len(lengths), heads=hidden // d,
                               heads_k=hidden // d, causal=causal)


def forward_flops(case):
    lengths = case.get("seqlens") or [case["seqlen"]] * case["batch"]
    total = sum(4.0 * case["heads"] * s * s * case["d"] for s in lengths)
    return total * (0.5 if case["causal"] else 1.0)


def point_label(case):
    if case["grid"] == "varlen":
        return f"{case['mix']} d{case['d']}"
    return str(case["seqlen"])


# --- inputs and timing -------------------------------------------------------------------------

def make_inputs(case, device, cache_bytes, generator):
    """Rotated input sets (q, k, v, dout; varlen adds cu_seqlens), enough that together they
    exceed 3x the last-level cache."""
    dtype = DTYPES[case["dtype"]]
    h, hk, d = case["heads"], case["heads_k"], case["d"]
    if case["grid"] == "varlen":
        total = sum(case["seqlens"])
        shapes = [(total, h, d), (total, hk, d), (total, hk, d), (total, h, d)]
    else:
        b, s = case["batch"], case["seqlen"]
        shapes = [(b, s, h, d), (b, s, hk, d), (b, s, hk, d), (b, s, h, d)]
    set_bytes = sum(math.prod(shape) for shape in shapes) * torch.finfo(dtype).bits // 8
    count = min(8, max(1, math.ceil(3 * cache_bytes / set_bytes)))
    sets = []
    for _ in range(count):
        tensors = [torch.randn(shape, generator=generator, device=device, dtype=dtype)
                   for shape in shapes]
        sets.append(tensors)
    cu = None
    if case["grid"] == "varlen":
        cu = torch.zeros(len(case["seqlens"]) + 1, dtype=torch.int32)
        cu[1:] = torch.tensor(case["seqlens"]).cumsum(0)
        cu = cu.to(device)
    return sets, cu


class Timer:
    def __init__(self, device):
        self.device = device

    def sync(self):
        if self.device == "cuda":
            torch.cuda.synchronize()

    def measure(self, setup, timed, sets, warmup, iters, hide_host=False):
        """Median milliseconds of timed(state) over iters, setup(inputs) -> state untimed,
        inputs rotated; also the spread (min, max). hide_host (CUDA): the GPU spins for about
        a millisecond (torch.cuda._sleep) before the start event, so that the host has issued
        the call by the time the events start counting: they time the GPU work alone."""
        for i in range(warmup):
            timed(setup(sets[i % len(sets)]))
        self.sync()
        times = []
        for i in range(iters):
            state = setup(sets[i % len(sets)])
            if self.device == "cuda":
                start = torch.cuda.Event(enable_timing=True)
                stop = torch.cuda.Event(enable_timing=True)
                if hide_host:
                    torch.cuda._sleep(HOST_HIDING_CYCLES)
                start.record()
                timed(state)
                stop.record()
                stop.synchronize()
                times.append(start.elapsed_time(stop))
            else:
                begin = time.perf_counter()
                timed(state)
                times.append((time.perf_counter() - begin) * 1e3)
        return statistics.median(times), min(times), max(times)


def rel_error(value, reference):
    value, reference = value.double(), reference.double()
    if not torch.isfinite(value).all():
        return float("inf")
    return ((value - reference).norm() / reference.norm().clamp_min(1e-30)).item()


def is_unsupported(error):
    return isinstance(error, NotImplementedError) or "Unsupported" in type(error).__name__


class Runner:
    """Calls of one implementation on one case, in the three modes."""

    def __init__(self, impl, case, cu):
        self.impl, self.case, self.cu = impl, case, cu

    def call(self, q, k, v):
        if self.case["grid"] == "varlen":
            return self.impl.varlen(q, k, v, self.cu, max(self.case["seqlens"]),
                                    self.case["causal"])
        return self.impl.dense(q, k, v, self.case["causal"])

    def forward(self, tensors):
        with torch.no_grad():
            return self.call(*tensors[:3])

    def with_grad(self, tensors):
        leaves = [t.detach().requires_grad_() for t in tensors[:3]]
        return leaves, self.call(*leaves), tensors[3]

    @staticmethod
    def grads(state):
        leaves, out, dout = state
        return torch.autograd.grad(out, leaves, dout)

    def mode_functions(self, mode):
        """(setup, timed) for Timer.measure."""
        if mode == "fwd":
            return (lambda tensors: tensors), self.forward
        if mode == "bwd":
            return self.with_grad, self.grads
        return (lambda tensors: tensors), lambda tensors: self.grads(self.with_grad(tensors))


# --- ceilings ----------------------------------------------------------------------------------

def ceilings(device, timer, iters):
    result = {}
    if device == "cuda":
        n, gemm_dtypes, copy_bytes = 8192, ("bf16", "fp16"), 1 << 30
    else:
        n, gemm_dtypes, copy_bytes = 2048, ("fp32", "bf16"), 256 << 20
    for name in gemm_dtypes:
        a = torch.randn(n, n, device=device, dtype=DTYPES[name])
        b = torch.randn(n, n, device=device, dtype=DTYPES[name])
        ms, _, _ = timer.measure(lambda x: x, lambda x: torch.mm(*x), [(a, b)], 3,
                                 max(5, iters if device == "cuda" else 3))
        result[f"gemm_{name}_{n}^3_TFLOPs"] = round(2.0 * n ** 3 / ms / 1e9, 2)
        del a, b
    src = torch.randn(copy_bytes // 4, device=device, dtype=torch.float32)
    dst = torch.empty_like(src)
    ms, _, _ = timer.measure(lambda x: x, lambda x: dst.copy_(x), [src], 3, max(5, iters))
    result[f"copy_{copy_bytes >> 20}MiB_TBps_read_plus_write"] = round(2.0 * copy_bytes / ms / 1e9, 3)
    del src, dst
    return result


def gemm_ceiling(ceiling, device, dtype):
    """The ceiling a result is measured against: bf16 GEMM on the GPU (all dtypes), the GEMM
    of the same dtype on the CPU."""
    name = "bf16" if device == "cuda" else dtype
    return next((v for k, v in ceiling.items() if k.startswith(f"gemm_{name}_")), None)


# --- environment -------------------------------------------------------------------------------

def command_output(args):
    try:
        return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device, absent, impls):
    env = {
        "torch": torch.__version__, "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "commit": os.environ.get("SUITE_COMMIT") or command_output(["git", "rev-parse", "HEAD"]),
        "peers": {impl.name: impl.label for impl in impls}, "absent": absent,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    try:
        import flashattn
        env["flashattn"] = flashattn.__version__
        env["flashattn_library"] = os.environ.get("FLASHATTN_C_LIBRARY") or flashattn.__file__
        env["flashattn_cuda"] = bool(flashattn.cuda_available())
    except Exception as error:  # noqa: BLE001
        env["flashattn"] = f"{type(error).__name__}: {error}"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        env.update(device=props.name, sms=props.multi_processor_count,
                   memory_GiB=round(props.total_memory / 2 ** 30, 1),
                   l2_bytes=getattr(props, "L2_cache_size", None), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(),
                   driver=command_output(["nvidia-smi", "--query-gpu=driver_version",
                                          "--format=csv,noheader"]))
    else:
        model = None
        for line in (command_output(["lscpu"]) or "").splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
        env.update(device=model or platform.processor(), cpus=os.cpu_count(),
                   l2_bytes=None)
    return env


def cache_bytes(device, env):
    if device == "cuda":
        return env.get("l2_bytes") or 50 << 20
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
        return int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]]
    except (OSError, ValueError, KeyError):
        return 32 << 20


# --- one case ----------------------------------------------------------------------------------

def run_case(case, impls, args, timer, ceiling, cache, generator):
    """Records of every implementation and mode of one case."""
    sets, cu = make_inputs(case, args.device, cache, generator)
    fwd_flops = forward_flops(case)
    peak = gemm_ceiling(ceiling, args.device, case["dtype"])
    records, reference = [], {}

    def record(impl, mode, status, **fields):
        rec = {k: v for k, v in case.items() if k != "seqlens"}
        if "seqlens" in case:
            rec["seqlens"] = case["seqlens"]
        rec.update(impl=impl.name, mode=mode, status=status, input_sets=len(sets))
        rec.update(fields)
        records.append(rec)
        return rec

    checked = sets[0]
    runners = []
    for impl in impls:
        runner = Runner(impl, case, cu)
        if args.device not in impl.devices:
            continue
        if impl.name == "sdpa-math" and case["seqlen"] > args.math_max_seqlen:
            continue
        runners.append(runner)

    # Correctness first: ours is the reference; where ours cannot run a mode, the first peer
    # that runs it is.
    outputs = {}
    for runner in runners:
        name = runner.impl.name
        outputs[name] = {}
        try:
            with runner.impl.context():
                out = runner.forward(checked)
            timer.sync()
            outputs[name]["fwd"] = out.float()
        except Exception as error:  # noqa: BLE001
            outputs[name]["fwd"] = error
        try:
            with runner.impl.context():
                grads = runner.grads(runner.with_grad(checked))
            timer.sync()
            outputs[name]["grad"] = [g.float() for g in grads]
        except Exception as error:  # noqa: BLE001
            outputs[name]["grad"] = error
    for kind in ("fwd", "grad"):
        for name in [r.impl.name for r in runners]:
            value = outputs[name][kind]
            if not isinstance(value, Exception):
                reference[kind] = name
                break

    for runner in runners:
        impl = runner.impl
        for mode in MODES:
            kind = "fwd" if mode == "fwd" else "grad"
            value = outputs[impl.name][kind]
            if isinstance(value, Exception):
                status = "unsupported" if is_unsupported(value) else "error"
                record(impl, mode, status, reason=f"{type(value).__name__}: {value}"[:400])
                continue
            if mode == "fwdbwd" and isinstance(outputs[impl.name]["fwd"], Exception):
                record(impl, mode, "error", reason="forward failed")
                continue
            ref_name = reference[kind]
            ref_value = outputs[ref_name][kind]
            if kind == "fwd":
                err = rel_error(value, ref_value)
            else:
                err = max(rel_error(g, r) for g, r in zip(value, ref_value))
            if ref_name != impl.name and not err <= TOLERANCE[kind]:
                record(impl, mode, "disagrees", rel_err=err, reference=ref_name,
                       reason=f"||{impl.name} - {ref_name}|| / ||{ref_name}|| = {err:.3g} > "
                              f"{TOLERANCE[kind]}")
                continue
            setup, timed = runner.mode_functions(mode)
            try:
                with impl.context():
                    ms, fastest, slowest = timer.measure(setup, timed, sets, args.warmup,
                                                         args.iters)
            except Exception as error:  # noqa: BLE001
                record(impl, mode, "error", reason=f"{type(error).__name__}: {error}"[:400])
                continue
            flops = fwd_flops * FLOP_FACTOR[mode]
            tflops = flops / ms / 1e9
            record(impl, mode, "ok", ms=float(f"{ms:.5g}"), ms_min=float(f"{fastest:.5g}"),
                   ms_max=float(f"{slowest:.5g}"), iters=args.iters, tflops=float(f"{tflops:.4g}"),
                   frac_gemm=float(f"{tflops / peak:.4g}") if peak else None,
                   rel_err=err, reference=ref_name, flops=flops)
    del sets, outputs
    return records


# --- main --------------------------------------------------------------------------------------

def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny grids, few iterations")
    parser.add_argument("--grids", default="fa2,gqa,varlen")
    parser.add_argument("--dtypes", default=None, help="default bf16,fp16 (cuda), fp32,bf16 (cpu)")
    parser.add_argument("--extra-dtypes-grids", default="fa2,gqa,varlen",
                        help="grids that also run the dtypes after the first")
    parser.add_argument("--dims", default=None, help="fa2 head dims (default 64,128,256)")
    parser.add_argument("--seqlens", default=None, help="fa2/gqa seqlens (default 512..16384)")
    parser.add_argument("--tokens", type=int, default=None, help="tokens per point (16384)")
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--math-max-seqlen", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch and ours)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="stop timing new points after this many seconds (rest: skipped)")
    parser.add_argument("--json", default=None)
    parser.add_argument("--png-prefix", default=None)
    parser.add_argument("--table", default=None, help="also write the summary table here")
    return parser.parse_args()


def build_cases(args):
    cpu = args.device == "cpu"
    dtypes = (args.dtypes or ("fp32,bf16" if cpu else "bf16,fp16")).split(",")
    if args.quick:
        seqlens, dims, tokens = [128, 256], [64, 128], args.tokens or 512
    elif cpu:
        seqlens, dims, tokens = [256, 512, 1024, 2048], [64, 128], args.tokens or 2048
    else:
        seqlens, dims, tokens = [512, 1024, 2048, 4096, 8192, 16384], [64, 128, 256], \
            args.tokens or 16384
    if args.seqlens:
        seqlens = [int(s) for s in args.seqlens.split(",")]
    if args.dims:
        dims = [int(d) for d in args.dims.split(",")]
    hidden = 512 if (cpu or args.quick) else 2048
    grids = args.grids.split(",")
    extra = args.extra_dtypes_grids.split(",")
    # The first dtype of every grid first, then the others: a deadline cuts the extras.
    cases = []
    for pass_dtypes in ([dtypes[0]], dtypes[1:]):
        for grid in grids:
            if not pass_dtypes or (pass_dtypes != [dtypes[0]] and grid not in extra):
                continue
            if grid == "fa2":
                cases += fa2_grid(pass_dtypes, seqlens, dims, tokens, hidden)
            elif grid == "gqa":
                heads = 8 if (cpu or args.quick) else 32
                cases += gqa_grid(pass_dtypes, seqlens, tokens, heads, heads // 4,
                                  64 if (cpu or args.quick) else 128)
            elif grid == "varlen":
                longest = max(seqlens) // 2 if (cpu or args.quick) else 8192
                shortest = min(seqlens) // 2 if (cpu or args.quick) else 128
                cases += varlen_grid(pass_dtypes, dims[:2], tokens, hidden, shortest, longest)
            else:
                raise SystemExit(f"unknown grid {grid}")
    return cases


def summary_table(records):
    """One line per point: TFLOP/s of each implementation, fwd and bwd."""
    points, impls = {}, []
    for r in records:
        key = (r["grid"], r["dtype"], r["d"], point_label(r), r["causal"])
        points.setdefault(key, {})[(r["impl"], r["mode"])] = r
        if r["impl"] not in impls:
            impls.append(r["impl"])

    def cell(r):
        if r is None:
            return "-"
        if r["status"] == "ok":
            return f"{r['tflops']:.3g}"
        return {"unsupported": "unsup", "disagrees": "WRONG", "error": "err",
                "skipped": "skip"}[r["status"]]

    header = "grid   dtype d   point        causal " + " ".join(f"{i[:14]:>14}" for i in impls)
    lines = ["TFLOP/s fwd/bwd (unsup = unsupported, WRONG = disagrees with reference, "
             "err = raised, skip = deadline)", header]
    for key, cells in points.items():
        grid, dtype, d, label, causal = key
        values = [f"{cell(cells.get((i, 'fwd')))}/{cell(cells.get((i, 'bwd')))}" for i in impls]
        lines.append(f"{grid:6} {dtype:5} {d:<3} {label:12} {'yes' if causal else 'no ':6} "
                     + " ".join(f"{v:>14}" for v in values))
    return "\n".join(lines)


def main():
    args = parse_args()
    if args.quick:
        args.iters, args.warmup = min(args.iters, 5), min(args.warmup, 1)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device (use --device cpu)")
    started = time.time()
    timer = Timer(args.device)
    impls, absent = attention_peers.available(args.device)
    env = environment(args.device, absent, impls)
    cache = cache_bytes(args.device, env)
    print(f"device {env['device']}, torch {env['torch']}, implementations "
          f"{[i.name for i in impls]}, absent {list(absent)}", flush=True)
    ceiling = ceilings(args.device, timer, args.iters)
    print(f"ceilings {ceiling}", flush=True)
    cases = build_cases(args)
    generator = torch.Generator(device=args.device).manual_seed(0)
    result = {"env": env, "ceilings": ceiling, "config": vars(args), "records": []}

    def save():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=1)

    for index, case in enumerate(cases):
        elapsed = time.time() - started
        if args.deadline_s and elapsed > args.deadline_s:
            for impl in impls:
                for mode in MODES:
                    rec = {k: v for k, v in case.items()}
                    rec.update(impl=impl.name, mode=mode, status="skipped",
                               reason=f"deadline {args.deadline_s:.0f} s reached")
                    result["records"].append(rec)
            continue
        records = run_case(case, impls, args, timer, ceiling, cache, generator)
        result["records"] += records
        if args.device == "cuda":
            torch.cuda.empty_cache()
        ok = {f"{r['impl']}/{r['mode']}": r.get("tflops", r["status"]) for r in records}
        print(f"[{index + 1}/{len(cases)} {elapsed:.0f}s] {case['grid']} {case['dtype']} "
              f"d{case['d']} {point_label(case)} causal={case['causal']}: {ok}", flush=True)
        save()
    result["wall_s"] = round(time.time() - started, 1)
    save()
    if args.png_prefix:
        try:
            import plot
            for path in plot.plot_all(result, args.png_prefix):
                print(f"wrote {path}")
        except Exception as error:  # noqa: BLE001 - the JSON is what matters
            print(f"plot failed: {type(error).__name__}: {error}")
    table = summary_table(result["records"])
    if args.table:
        with open(args.table, "w") as f:
            f.write(table + "\n")
    print(f"ceilings {ceiling}; wall {result['wall_s']} s")
    print(table)


if __name__ == "__main__":
    main()
