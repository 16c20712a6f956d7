#!/usr/bin/env python3
"""Registers, spill bytes and stack per kernel from a ptxas -v log (FLASHATTN_PTXAS_VERBOSE=ON).

Reads the log on stdin (e.g. `ninja -v <objects> 2>&1 | tools/ptxas_report.py`) and prints one
line per compiled entry: the kernel's template arguments in short form, registers, spill
stores/loads and stack frame. Spills at 255 registers are what most often cost our kernels
speed (bench/NOTES.md), and ptxas prints them per entry without the name on the same line.
"""
import re
import subprocess
import sys

ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(sm_\d+a?)'")
FRAME = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
REGS = re.compile(r"Used (\d+) registers")


def short(mangled):
    try:
        name = subprocess.run(["c++filt", mangled], capture_output=True, text=True).stdout.strip()
    except OSError:
        return mangled
    return re.sub(r"flashattn::cuda_sm80::|\(flashattn::[^)]*\)", "", name)


def main():
    entry = arch = frame = None
    for line in sys.stdin:
        if m := ENTRY.search(line):
            entry, arch, frame = m.group(1), m.group(2), None
        elif (m := FRAME.search(line)) and entry:
            frame = m.groups()
        elif (m := REGS.search(line)) and entry:
            stack, stores, loads = frame or ("?", "?", "?")
            print(f"{m.group(1):>4} regs  spill st/ld {stores:>4}/{loads:<4} stack {stack:>4}  "
                  f"{arch}  {short(entry)}")
            entry = None


if __name__ == "__main__":
    main()
