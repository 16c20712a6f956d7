"""Summary of one kernel's SASS from ncu's SourceCounters page (csv): warp-instructions executed
per opcode, stall samples per opcode and per instruction, and per stall reason the opcodes that
carry it (which instructions wait for the MIO queue, for results, at barriers).
Usage: sass_summary.py <label> <sass.csv> (bench/profile_kernel.sh SOURCE=1 writes the csv)."""
import collections
import csv
import sys

label, path = sys.argv[1], sys.argv[2]
rows = list(csv.reader(open(path, errors="replace")))
head = next((i for i, r in enumerate(rows) if "Source" in r), None)
if head is None:
    sys.exit(f"no SASS table in {path}")
cols = rows[head]
src = cols.index("Source")


def counted(prefix):
    """(row number, opcode, SASS text, count) for each instruction with a number in the column."""
    column = next((i for i, c in enumerate(cols) if c.startswith(prefix)), None)
    if column is None:
        return None
    found = []
    for number, r in enumerate(rows[head + 1:]):
        if len(r) <= max(src, column):
            continue
        try:
            n = int(float(r[column].replace(",", "") or 0))
        except ValueError:
            continue
        words = r[src].strip().split() or ["?"]
        op = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
        found.append((number, op.split(".")[0], r[src].strip(), n))
    return found


def print_by_opcode(found, title, most):
    """Sums per opcode, the `most` largest with their share; returns the total."""
    by_op = collections.Counter()
    for _, op, _, n in found:
        by_op[op] += n
    total = sum(by_op.values())
    print(title.format(instructions=len(found), total=total))
    for op, n in by_op.most_common(most):
        print(f"{op:12s} {n:>14,} {100 * n / max(total, 1):5.1f}%")
    return total


print_by_opcode(counted("Instructions Executed"),
                "== " + label + " SASS: {instructions} instructions in the kernel, {total:,} warp-instructions executed", 25)
# Where the warps wait: stall samples per opcode and the 30 instructions with the most.
stalled = counted("Warp Stall Sampling (All")
if stalled is not None:
    samples = print_by_opcode(stalled, "== " + label + " stall samples: {total:,}", 15)
    for number, _, text, n in sorted(stalled, key=lambda x: -x[3])[:30]:
        print(f"{100 * n / max(samples, 1):5.1f}%  #{number:<5d} {text[:90]}")
# Per stall reason (ncu's stall_* columns): its samples and the opcodes that carry most of them.
for reason in ("mio", "short_sb", "long_sb", "wait", "math", "lg", "barrier", "not_selected",
               "dispatch", "branch_resolving", "no_inst"):
    found = counted(f"stall_{reason}")
    if not found:
        continue
    by_op = collections.Counter()
    for _, op, _, n in found:
        by_op[op] += n
    print(f"== {label} stall_{reason}: {sum(by_op.values()):,} samples; " +
          ", ".join(f"{op} {n:,}" for op, n in by_op.most_common(5)))
# Where the shared-memory bank conflicts are: the instructions with excess wavefronts (ncu's
# "L1 Wavefronts Shared Excessive" column, where this ncu has it).
excessive = counted("L1 Wavefronts Shared Excessive")
if excessive is not None:
    total = sum(n for *_, n in excessive)
    print(f"== {label} excess shared wavefronts: {total:,}")
    for number, _, text, n in sorted(excessive, key=lambda x: -x[3])[:12]:
        if n > 0:
            print(f"{n:>14,}  #{number:<5d} {text[:90]}")
