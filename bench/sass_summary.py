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
    """(row number, opcode, SASS text, count) for each instruction with a number in the column
    named `prefix` (else the first whose name starts with it)."""
    column = cols.index(prefix) if prefix in cols else next(
        (i for i, c in enumerate(cols) if c.startswith(prefix)), None)
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


def by_opcode(found):
    """The counts of `counted` summed per opcode."""
    sums = collections.Counter()
    for _, op, _, n in found:
        sums[op] += n
    return sums


def print_by_opcode(found, title, most):
    """Sums per opcode, the `most` largest with their share; returns the total."""
    by_op = by_opcode(found)
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
    by_op = by_opcode(found)
    print(f"== {label} stall_{reason}: {sum(by_op.values()):,} samples; " +
          ", ".join(f"{op} {n:,}" for op, n in by_op.most_common(5)))
# Where the shared-memory bank conflicts are: the instructions whose shared wavefronts exceed
# the ideal (this ncu leaves its "L1 Wavefronts Shared Excessive" column at zero, but fills the
# wavefronts and their ideal).
wavefronts = counted("L1 Wavefronts Shared")
ideal = counted("L1 Wavefronts Shared Ideal")
if wavefronts and ideal:
    ideal_of = {number: n for number, _, _, n in ideal}
    excess = [(n - ideal_of.get(number, 0), number, text) for number, _, text, n in wavefronts]
    print(f"== {label} shared wavefronts: {sum(n for *_, n in wavefronts):,}, "
          f"above the ideal: {sum(e for e, *_ in excess):,}")
    for e, number, text in sorted(excess, reverse=True)[:12]:
        if e > 0:
            print(f"{e:>14,}  #{number:<5d} {text[:90]}")
