#!/usr/bin/env python3
"""Backward benchmark on the FA2 grid: ours (through bench/gpu_shim.cpp; default and
deterministic) vs the backward of PyTorch SDPA's FLASH_ATTENTION (FlashAttention-2) and
CUDNN_ATTENTION backends, same process, same inputs.

Grid: 16k tokens (batch = 16384 / seqlen), hidden 2048 (heads = 2048 / d), d 64/128/256,
seqlen 512..16384, causal and not, bf16 and fp16. FLOPs: 2.5x the forward's 4*b*h*s*s*d (half
for causal).

What is timed is the backward alone:
- ours: one flashattn_bench_backward call (dq, dk, dv from q, k, v, dout and the O and LSE of
  our own untimed forward), workspace allocated once beforehand through PyTorch's allocator;
- peers: torch.autograd.grad(out, (q, k, v), dout, retain_graph=True) on a graph whose forward
  ran once, untimed, under sdpa_kernel(backend): each timed call runs the backend's backward
  kernels (and its dq/dk/dv allocations from PyTorch's cache), never the forward.
CUDA events around each call with the GPU kept busy for ~1 ms before the start event
(Timer.measure(hide_host=True), bench/attention.py), so host dispatch (ctypes, autograd) is not
timed for anyone; warm-up, median of --iters; input sets rotated past 3x L2 (one 320 MB set per
point on this grid already is). --deadline-s trims the timed calls (never below --min-iters),
not the points, when the grid would not fit.

Before timing, ours' dq/dk/dv (default and deterministic) are compared with SDPA FLASH's (cuDNN's
where FLASH cannot run): ||ours - peer|| / ||peer|| above 5e-2 (bench/attention.py's TOLERANCE)
is reported as a disagreement and not timed. The deterministic path is also run twice and must
be bitwise identical. "det cost" = ours-det time / ours time - 1.

Usage: gpu_backward.py --lib build/libflashattn_bench.so [--json out.json] [--deadline-s 200]
"""
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel

import gpu_common as common


def extra_args(parser):
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="wall budget of the whole grid: fewer timed calls per point, "
                             "never fewer than --min-iters, so that every point is measured")
    parser.add_argument("--min-iters", type=int, default=5)


def peer_states(sets, backend, causal, dropout_p=0.0):
    """One retained graph per input set: (leaves, out, dout) in SDPA's [b, h, s, d] view."""
    states = []
    for q, k, v, dout in sets:
        leaves = [x.detach().requires_grad_() for x in (q, k, v)]
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in leaves),
                                                 is_causal=causal, dropout_p=dropout_p)
        states.append((leaves, out, dout.transpose(1, 2)))
    return states


def peer_backward(state):
    leaves, out, dout = state
    return torch.autograd.grad(out, leaves, dout, retain_graph=True)


class OursPoint:
    """Our forward's O and LSE for every input set, and the gradient buffers and workspace."""

    def __init__(self, ours, sets, causal):
        self.ours, self.causal, self.states = ours, causal, []
        for q, k, v, dout in sets:
            out = torch.empty_like(q)
            lse = torch.empty(q.shape[0], q.shape[2], q.shape[1], device="cuda",
                              dtype=torch.float32)
            ours.forward(q, k, v, out, lse, causal)
            self.states.append((q, k, v, out, dout, lse))
        q, k, v = sets[0][:3]
        self.grads = [torch.empty_like(x) for x in (q, k, v)]
        self.workspace = {}

    def run(self, state, deterministic):
        if deterministic not in self.workspace:
            self.workspace[deterministic] = self.ours.backward_workspace(
                *state, *self.grads, self.causal, deterministic)
        self.ours.backward(*state, *self.grads, self.causal, deterministic,
                           self.workspace[deterministic])

    def checked_grads(self, deterministic):
        """Fresh dq, dk, dv of the first set (the buffers poisoned first: unwritten = NaN)."""
        for g in self.grads:
            g.fill_(float("nan"))
        self.run(self.states[0], deterministic)
        return [g.clone() for g in self.grads]


def seconds_of_one_call(fn):
    torch.cuda.synchronize()
    begin = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    return time.perf_counter() - begin


def agreement(grads, reference):
    errors = [common.rel_error(g, r) for g, r in zip(grads, reference)]
    return max(errors), {f"d{n}": float(f"{e:.3g}") for n, e in zip("qkv", errors)}


def iterations(args, started, points_left, seconds_per_round):
    """Timed calls for this point: --iters, fewer when the deadline would be missed."""
    if not args.deadline_s:
        return args.iters
    share = (args.deadline_s - (time.time() - started)) / max(1, points_left)
    fitting = int(0.85 * share / max(seconds_per_round, 1e-6)) - args.warmup
    return max(args.min_iters, min(args.iters, fitting))


def measure_point(case, ours, args, generator, started, points_left):
    causal = case["causal"]
    row = common.point_row(case)
    flops = common.forward_flops(case) * common.BACKWARD_FLOP_FACTOR
    row["flops"] = flops
    sets = common.inputs(case, generator)
    row["input_sets"] = len(sets)
    timed = {}  # name -> (function of a state, states)
    one_call_s = {}

    # Peers: graph once, gradients once (the check's reference, and the cost of one call).
    reference = None
    for name, backend in () if args.no_peers else common.PEERS:
        try:
            states = peer_states(sets, backend, causal)
            one_call_s[name] = seconds_of_one_call(lambda: peer_backward(states[0]))
            grads = peer_backward(states[0])  # like the leaves: [b, s, h, d]
            if reference is None:
                reference, row["reference"] = [g.float() for g in grads], name
            timed[name] = (peer_backward, states)
        except Exception as error:  # a peer that cannot run this point
            row[name + "_error"] = common.short_error(error)
        torch.cuda.synchronize()

    # Ours: our own forward's O and LSE, then the check against the peer.
    try:
        point = OursPoint(ours, sets, causal)
        for label, deterministic in (("ours", False), ("ours_det", True)):
            try:
                grads = point.checked_grads(deterministic)
                one_call_s[label] = seconds_of_one_call(
                    lambda: point.run(point.states[0], deterministic))
                if deterministic:
                    again = point.checked_grads(True)
                    row["det_bitwise"] = all(torch.equal(a, b) for a, b in zip(grads, again))
                if reference is not None:
                    worst, errors = agreement(grads, reference)
                    row[label + "_rel_err"] = errors
                    if not worst <= common.TOLERANCE["grad"]:
                        row[label + "_error"] = (f"disagrees with {row['reference']}: "
                                                 f"||ours - ref|| / ||ref|| = {worst:.3g} > "
                                                 f"{common.TOLERANCE['grad']}")
                        continue
                else:
                    row[label + "_unchecked"] = True
                timed[label] = ((lambda state, det=deterministic: point.run(state, det)),
                                point.states)
            except Exception as error:  # unsupported (code 2), failed, or a CUDA error
                row[label + "_error"] = ("unsupported: " if getattr(error, "code", 0) == 2
                                         else "") + common.short_error(error)
    except Exception as error:  # our forward failed
        row["ours_error"] = row["ours_det_error"] = "forward: " + common.short_error(error)

    per_round = sum(one_call_s.get(name, 0.0) for name in timed) + 1e-3 * len(timed)
    iters = iterations(args, started, points_left, per_round)
    row["iters"] = iters
    for name, (fn, states) in timed.items():
        try:
            ms = common.time_ms(fn, args.warmup, iters, states, hide_host=True)
            row[name + "_ms"] = ms
            row[name + "_tflops"] = common.tflops(flops, ms)
        except Exception as error:
            row[name + "_error"] = common.short_error(error)
    del sets, timed
    return row


def cell(row, name):
    if name + "_tflops" in row:
        return f"{row[name + '_tflops']:.1f}"
    error = row.get(name + "_error", "")
    if not error:
        return "-"
    return "unsup" if error.startswith("unsupported") else \
        "WRONG" if error.startswith("disagrees") else "err"


def ratio(row, a, b, fmt="{:.2f}"):
    x, y = row.get(a + "_tflops"), row.get(b + "_tflops")
    return fmt.format(x / y) if x and y else "-"


def print_table(rows):
    print("\nbackward TFLOP/s (2.5x forward FLOPs); unsup = unsupported, WRONG = disagrees "
          "with the peer's gradients (not timed), err = raised; det cost = ours-det time / "
          "ours time - 1")
    print(f"{'dtype':5} {'d':>3} {'seqlen':>6} {'causal':6} | {'ours':>6} {'ours-det':>8} "
          f"{'FA2':>6} {'cuDNN':>6} | {'ours/FA2':>8} {'ours/cuDNN':>10} {'det cost':>8} "
          f"{'det bitwise':>11} {'max rel err':>11}")
    for r in rows:
        det_cost = "-"
        if r.get("ours_ms") and r.get("ours_det_ms"):
            det_cost = f"{100 * (r['ours_det_ms'] / r['ours_ms'] - 1):+.0f}%"
        errors = r.get("ours_rel_err")
        worst = f"{max(errors.values()):.1e}" if errors else "-"
        bitwise = {True: "yes", False: "NO"}.get(r.get("det_bitwise"), "-")
        print(f"{r['dtype']:5} {r['d']:>3} {r['s']:>6} {'yes' if r['causal'] else 'no':6} | "
              f"{cell(r, 'ours'):>6} {cell(r, 'ours_det'):>8} {cell(r, 'fa2'):>6} "
              f"{cell(r, 'cudnn'):>6} | {ratio(r, 'ours', 'fa2'):>8} "
              f"{ratio(r, 'ours', 'cudnn'):>10} {det_cost:>8} {bitwise:>11} {worst:>11}")
    summary = [r["ours_tflops"] / r["fa2_tflops"] for r in rows
               if r.get("ours_tflops") and r.get("fa2_tflops")]
    costs = [r["ours_det_ms"] / r["ours_ms"] - 1 for r in rows
             if r.get("ours_ms") and r.get("ours_det_ms")]
    if summary:
        summary.sort()
        print(f"ours/FA2 over {len(summary)} points: median {summary[len(summary) // 2]:.2f}, "
              f"min {summary[0]:.2f}, max {summary[-1]:.2f}, >= 1.0 at "
              f"{sum(x >= 1.0 for x in summary)}")
    if costs:
        costs.sort()
        print(f"deterministic cost over {len(costs)} points: median "
              f"{100 * costs[len(costs) // 2]:+.0f}%, max {100 * costs[-1]:+.0f}%, within 15% "
              f"at {sum(c <= 0.15 for c in costs)}")


def main():
    args = common.parse_args(__doc__, iters=30, warmup=5, extra=extra_args)
    common.refuse_extras(args, "gpu_backward.py")
    ours = common.Ours(args.lib)
    env = common.environment(args)
    env["deadline_s"] = args.deadline_s
    print(json.dumps(env), flush=True)
    rows = []
    started = time.time()
    generator = torch.Generator(device="cuda").manual_seed(0)
    cases = common.grid(args)
    for index, case in enumerate(cases):
        row = measure_point(case, ours, args, generator, started, len(cases) - index)
        rows.append(row)
        torch.cuda.empty_cache()
        print(f"[{index + 1}/{len(cases)} {time.time() - started:.0f}s] {json.dumps(row)}",
              flush=True)
        common.write_json(args.json, env, rows, started)
    common.write_json(args.json, env, rows, started)
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
