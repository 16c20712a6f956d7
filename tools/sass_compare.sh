#!/usr/bin/env bash
# Compares the machine code of two CUDA objects (e.g. one instance built by CMake and by
# bench/gpu.sh's tune step): the opcodes whose counts differ, and how many SASS lines differ
# once addresses are stripped. Needs cuobjdump (the GPU machine has it).
# Usage: tools/sass_compare.sh a.o b.o
set -euo pipefail
opcodes() {
  cuobjdump -sass "$1" | grep -oE '^\s+/\*[0-9a-f]{4}\*/\s+[^;]*' |
    sed -E 's#^\s+/\*[0-9a-f]+\*/\s+(@!?U?P[0-9T] )?##; s#[ .].*##' | sort | uniq -c | awk '{print $2, $1}' | sort
}
echo "opcode $1 $2 (counts that differ)"
join -a1 -a2 -e0 -o 0,1.2,2.2 <(opcodes "$1") <(opcodes "$2") | awk '$2 != $3'
strip() { cuobjdump -sass "$1" | sed -E 's#/\*[0-9a-f]+\*/##g'; }
echo "SASS lines: $(strip "$1" | wc -l) and $(strip "$2" | wc -l);" \
  "differing: $(diff <(strip "$1") <(strip "$2") | grep -c '^[<>]' || true)"
