#!/usr/bin/env python3
"""Bar charts of bench/attention.py's JSON in the style of FlashAttention-2's README figures:
one panel per head dim (or dtype), bars grouped by seqlen, one row per mode and mask, ours
highlighted. Points where an implementation did not run show its status under the group.

    python3 bench/plot.py results.json --png-prefix bench/results/h100-2026-11-23
"""

import argparse
import json

COLORS = {"ours": "#d62728", "sdpa-flash": "#1f77b4", "sdpa-cudnn": "#2ca02c",
          "sdpa-efficient": "#9467bd", "sdpa-math": "#8c8c8c", "flashinfer": "#ff7f0e",
          "fa3": "#17becf", "fa4": "#bcbd22", "fa2-pkg": "#7f7f7f", "xformers": "#e377c2"}
MODE_TITLES = {"fwd": "forward", "bwd": "backward", "fwdbwd": "forward + backward"}
SHORT = {"unsupported": "n/a", "disagrees": "wrong", "error": "err", "skipped": "skip"}


def figures(records, device):
    """(name, records, panel key, panel title) per figure."""
    grids = sorted({r["grid"] for r in records}, key=["fa2", "gqa", "varlen"].index)
    for grid in grids:
        rows = [r for r in records if r["grid"] == grid]
        if device == "cpu":
            yield grid, rows, lambda r: (r["dtype"], r["d"]), lambda k: f"{k[0]} d{k[1]}"
        elif grid == "fa2":
            for dtype in sorted({r["dtype"] for r in rows}):
                yield (f"{grid}-{dtype}", [r for r in rows if r["dtype"] == dtype],
                       lambda r: r["d"], lambda k: f"head dim {k}")
        elif grid == "gqa":
            yield grid, rows, lambda r: r["dtype"], lambda k: f"{k}, 32 q / 8 kv heads, d128"
        else:
            yield grid, rows, lambda r: (r["dtype"], r["d"]), lambda k: f"{k[0]} d{k[1]}"


def group_key(r):
    return (r.get("mix", ""), r["seqlen"]) if r["grid"] == "varlen" else r["seqlen"]


def group_label(r):
    return r["mix"] if r["grid"] == "varlen" else (f"{r['seqlen'] // 1024}k"
                                                  if r["seqlen"] >= 1024 else str(r["seqlen"]))


def plot_figure(result, name, rows, panel_of, panel_title, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = result["env"]
    impls = [i for i in env["peers"] if any(r["impl"] == i for r in rows)]
    panels = sorted({panel_of(r) for r in rows})
    lines = [(mode, causal) for mode in ("fwd", "bwd", "fwdbwd") for causal in (False, True)]
    fig, axes = plt.subplots(len(lines), len(panels), squeeze=False,
                             figsize=(4.6 * len(panels) + 1, 2.6 * len(lines)))
    width = 0.8 / max(1, len(impls))
    for row, (mode, causal) in enumerate(lines):
        for col, panel in enumerate(panels):
            ax = axes[row][col]
            cell = [r for r in rows if panel_of(r) == panel and r["mode"] == mode
                    and r["causal"] == causal]
            groups = sorted({group_key(r) for r in cell})
            labels = {group_key(r): group_label(r) for r in cell}
            top = max([r.get("tflops", 0) for r in cell] + [1])
            for index, impl in enumerate(impls):
                for g, group in enumerate(groups):
                    match = [r for r in cell if r["impl"] == impl and group_key(r) == group]
                    if not match:
                        continue
                    r = match[0]
                    x = g + (index - (len(impls) - 1) / 2) * width
                    if r["status"] == "ok":
                        bar = ax.bar(x, r["tflops"], width, color=COLORS.get(impl, "#444"),
                                     edgecolor="black" if impl == "ours" else "none",
                                     linewidth=1.2)
                        ax.bar_label(bar, fmt="%.0f" if top >= 20 else "%.2f", fontsize=5.5,
                                     rotation=90, padding=1)
                    else:
                        ax.text(x, top * 0.02, SHORT[r["status"]], rotation=90, fontsize=5.5,
                                ha="center", va="bottom", color=COLORS.get(impl, "#444"))
            ax.set_xticks(range(len(groups)))
            ax.set_xticklabels([labels[g] for g in groups], fontsize=7)
            ax.set_ylim(0, top * 1.25)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{MODE_TITLES[mode]}, {'causal' if causal else 'no mask'}, "
                         f"{panel_title(panel)}", fontsize=8)
            if col == 0:
                ax.set_ylabel("TFLOP/s", fontsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS.get(i, "#444")) for i in impls]
    fig.legend(handles, [env["peers"][i] for i in impls], loc="upper center",
               bbox_to_anchor=(0.5, 0.985), ncol=len(impls), fontsize=8, frameon=False)
    gemm = ", ".join(f"{k} {v}" for k, v in result["ceilings"].items())
    fig.suptitle(f"{name} on {env['device']} ({env['date_utc']} UTC, torch {env['torch']}); "
                 f"ceilings: {gemm}; n/a = not supported", fontsize=8, y=0.998)
    fig.tight_layout(rect=(0, 0, 1, 0.965))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(result, prefix):
    device = "cpu" if "cpus" in result["env"] else "cuda"
    paths = []
    for name, rows, panel_of, panel_title in figures(result["records"], device):
        if rows:
            paths.append(plot_figure(result, name, rows, panel_of, panel_title,
                                     f"{prefix}-{name}.png"))
    return paths


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("json")
    parser.add_argument("--png-prefix", required=True)
    args = parser.parse_args()
    with open(args.json) as f:
        result = json.load(f)
    for path in plot_all(result, args.png_prefix):
        print(path)


if __name__ == "__main__":
    main()
