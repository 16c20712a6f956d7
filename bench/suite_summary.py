#!/usr/bin/env python3
"""The headline table of a benchmark-suite JSON (bench/attention.py), as bench/NOTES.md shows it.

Per grid and dtype: the median TFLOP/s of ours, SDPA FLASH (FA2) and cuDNN, forward and backward,
and ours / FA2 per point as median (min-max) with the number of points at >= 1.0; then the best
points of ours, the d128 s16k bf16 figures, the largest peer-vs-ours errors and the records that
were not timed (errors, disagreements).

    python3 bench/suite_summary.py bench/results/h100-2026-11-23c.json
"""
import argparse
import collections
import json
import statistics


def point_key(record):
    return (record["grid"], record["dtype"], record["d"], str(record.get("seqlen", record.get("point"))),
            record["causal"])


def ratio_text(ratios):
    if not ratios:
        return "-"
    return "%.2f (%.2f–%.2f), ≥1 at %d" % (statistics.median(ratios), min(ratios), max(ratios),
                                           sum(r >= 1.0 for r in ratios))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a JSON written by bench/attention.py --json")
    records = json.load(open(parser.parse_args().json))["records"]
    by_key = {point_key(r) + (r["impl"], r["mode"]): r for r in records}
    points = sorted({point_key(r) for r in records}, key=str)

    def tflops(point, impl, mode):
        record = by_key.get(point + (impl, mode))
        return record["tflops"] if record and record["status"] == "ok" else None

    def median_text(values):
        values = [v for v in values if v is not None]
        return "%.0f" % statistics.median(values) if values else "-"

    def ratios(selected, mode):
        pairs = [(tflops(p, "ours", mode), tflops(p, "sdpa-flash", mode)) for p in selected]
        return [ours / peer for ours, peer in pairs if ours and peer]

    print("| grid (points) | dtype | ours fwd | FA2 fwd | cuDNN fwd | ours/FA2 fwd | ours bwd | "
          "FA2 bwd | cuDNN bwd | ours/FA2 bwd | ours/FA2 fwd+bwd |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for grid in ("fa2", "gqa", "varlen"):
        for dtype in ("bf16", "fp16"):
            selected = [p for p in points if p[0] == grid and p[1] == dtype]
            if not selected:
                continue
            row = ["%s (%d)" % (grid, len(selected)), dtype]
            for mode in ("fwd", "bwd"):
                row += [median_text(tflops(p, impl, mode) for p in selected)
                        for impl in ("ours", "sdpa-flash", "sdpa-cudnn")]
                row.append(ratio_text(ratios(selected, mode)))
            row.append(ratio_text(ratios(selected, "fwdbwd")))
            print("| " + " | ".join(row) + " |")

    for mode in ("fwd", "bwd"):
        timed = [r for r in records if r["impl"] == "ours" and r["mode"] == mode and r["status"] == "ok"]
        if timed:
            best = max(timed, key=lambda r: r["tflops"])
            print("best ours %s: %.1f TFLOP/s (%.2f of the GEMM ceiling), %s %s d%s s%s causal=%s" % (
                mode, best["tflops"], best["frac_gemm"], best["grid"], best["dtype"], best["d"],
                best.get("seqlen"), best["causal"]))
    for causal in (False, True):
        point = ("fa2", "bf16", 128, "16384", causal)
        figures = {impl: [tflops(point, impl, m) for m in ("fwd", "bwd", "fwdbwd")]
                   for impl in ("ours", "sdpa-flash", "sdpa-cudnn")}
        print("d128 s16k bf16 causal=%s fwd/bwd/fwdbwd: %s" % (causal, figures))
    largest = {}
    for r in records:
        if r["status"] == "ok" and r["impl"] != "ours" and r.get("rel_err") is not None:
            what = (r["impl"], "forward" if r["mode"] == "fwd" else "gradients")
            largest[what] = max(largest.get(what, 0.0), r["rel_err"])
    print("largest |peer - ours| / |ours|:", {"%s %s" % k: "%.1e" % v for k, v in sorted(largest.items())})
    untimed = collections.Counter((r["impl"], r["grid"], r["status"]) for r in records if r["status"] != "ok")
    print("not timed:", dict(untimed))


if __name__ == "__main__":
    main()
