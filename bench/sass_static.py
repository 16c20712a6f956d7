"""Static look at a kernel's SASS (a cuobjdump -sass listing), without a GPU: for each function
whose name contains FILTER, its loops (backward branches, innermost first) with their opcode
counts, and with --blocks the basic blocks of the largest loop. Static counts include the cold
paths (a copy's scalar fallback, the mask), so the blocks say which code a step really runs.
Usage: sass_static.py <listing.sass> <function name filter> [--blocks] [--top N]
(bench/sass_local.sh writes the listing)."""
import argparse
import collections
import re

INSTRUCTION = re.compile(r"\s*/\*([0-9a-f]{4,})\*/\s+(@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)\s*([^;]*);")
TARGET = re.compile(r"0x([0-9a-f]+)")


def functions(text):
    """(name, [(address, predicate, opcode, operands)]) per function of the listing."""
    for chunk in re.split(r"\n\s*Function : ", text)[1:]:
        name, body = chunk.split("\n", 1)
        found = []
        for line in body.split("\n"):
            match = INSTRUCTION.match(line)
            if match:
                found.append((int(match.group(1), 16), match.group(2) or "", match.group(3),
                              match.group(4)))
        yield name.strip(), found


def branch_target(operands):
    match = TARGET.search(operands)
    return int(match.group(1), 16) if match else None


def opcode_counts(instructions, top):
    counts = collections.Counter(op.split(".")[0] for _, _, op, _ in instructions)
    return ", ".join(f"{op} {n}" for op, n in counts.most_common(top))


def loops(instructions):
    """(first, last) address of each backward branch's range, innermost (shortest) first."""
    found = []
    for address, _, op, operands in instructions:
        target = branch_target(operands) if op.startswith("BRA") else None
        if target is not None and target < address:
            found.append((target, address))
    return sorted(found, key=lambda span: span[1] - span[0])


def basic_blocks(instructions, first, last):
    """The blocks of [first, last]: split at branch targets and after branches."""
    targets = {branch_target(operands) for _, _, op, operands in instructions
               if op.startswith(("BRA", "BSSY", "BSYNC"))}
    blocks, current = [], []
    for instruction in instructions:
        if not first <= instruction[0] <= last:
            continue
        if instruction[0] in targets and current:
            blocks.append(current)
            current = []
        current.append(instruction)
        if instruction[2].startswith(("BRA", "EXIT")):
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("listing")
    parser.add_argument("filter")
    parser.add_argument("--blocks", action="store_true")
    parser.add_argument("--top", type=int, default=16)
    args = parser.parse_args()
    for name, instructions in functions(open(args.listing).read()):
        if args.filter not in name:
            continue
        print(f"{name}: {len(instructions)} instructions")
        spans = loops(instructions)
        for first, last in spans:
            body = [i for i in instructions if first <= i[0] <= last]
            print(f"  loop {first:#x}-{last:#x}: {len(body)}: {opcode_counts(body, args.top)}")
        if args.blocks and spans:
            first, last = max(spans, key=lambda span: span[1] - span[0])
            for block in basic_blocks(instructions, first, last):
                end = block[-1]
                print(f"    {block[0][0]:#07x} {len(block):4d}  {opcode_counts(block, 8)}"
                      f"  | {end[1]}{end[2]} {end[3][:40]}")


if __name__ == "__main__":
    main()
