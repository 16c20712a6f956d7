#!/usr/bin/env bash
# Peak RSS of the cpu_tiled forward at long seqlens (batch 1, one head, head_dim 64, fp32):
# runs BM_ForwardMemory of cpu_attention_bench once per seqlen under /usr/bin/time -v and
# prints seqlen, peak RSS, and RSS per key. A forward that kept the seqlen^2 score matrix would
# need 4 * seqlen^2 bytes (4 GiB at 32k); the tiled one grows linearly.
#
#   bench/cpu_memory.sh build/bench/cpu_attention_bench [seqlens...]
set -euo pipefail

bench=${1:-build/bench/cpu_attention_bench}
shift || true
seqlens=("$@")
if [ ${#seqlens[@]} -eq 0 ]; then seqlens=(8192 16384 32768); fi

printf '%8s %14s %16s %22s\n' seqlen peak_rss_MiB bytes_per_token scores_if_materialised_MiB
for seqlen in "${seqlens[@]}"; do
  report=$(mktemp)
  /usr/bin/time -v "$bench" --benchmark_filter="^BM_ForwardMemory/seqlen:${seqlen}/" \
    >/dev/null 2>"$report"
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$report")
  rm -f "$report"
  awk -v s="$seqlen" -v kib="$kib" 'BEGIN {
    printf "%8d %14.1f %16.0f %22.0f\n", s, kib / 1024, kib * 1024 / s, 4 * s * s / 1048576 }'
done
