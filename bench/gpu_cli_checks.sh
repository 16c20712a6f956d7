#!/usr/bin/env bash
# A quick sweep of the CLI's --check (forward + backward against the fp64 reference) on the
# GPU over every feature and tile width: the smoke test of a fresh kernel before the full
# GoogleTest suites. Usage: CLI=build/tools/cli/flashattn bench/gpu_cli_checks.sh
set -uo pipefail
CLI=${CLI:-build-gpu/tools/cli/flashattn}
common=(--backend cuda --check --iters 1 --warmup 0)
cases=(
  "--heads 4 --seqlen 2048 --head-dim 64"
  "--heads 2 --seqlen 1023 --head-dim 128 --no-causal"
  "--heads 2 --seqlen 203 --head-dim 256"
  "--heads 2 --seqlen 300 --head-dim 160 --no-causal"
  "--heads 2 --seqlen 113 --head-dim 80"
  "--heads 2 --seqlen 129 --head-dim 17 --no-causal"
  "--heads 8 --heads-kv 2 --seqlen-q 113 --seqlen-k 300 --head-dim 64"
  "--heads 8 --heads-kv 1 --seqlen-q 300 --seqlen-k 113 --head-dim 128"
  "--heads 2 --seqlen 257 --head-dim 64 --softcap 30 --no-causal"
  "--heads 2 --seqlen 257 --head-dim 128 --alibi"
  "--heads 2 --seqlen 257 --head-dim 64 --dropout 0.17 --seed 7"
  "--heads 2 --seqlen 257 --head-dim 256 --dropout 0.1 --softcap 20 --alibi --no-causal"
  "--heads 2 --seqlen 500 --head-dim 64 --window-left 64 --window-right 16"
  "--heads 2 --seqlen 500 --head-dim 192 --window-left 100"
  "--heads 3 --varlen 0:5,113:203,300:100,64:64 --head-dim 64"
  "--heads 3 --varlen 77:1,1:77,200:0 --head-dim 256 --no-causal"
  "--heads 2 --seqlen 1000 --head-dim 128 --dtype fp16"
  "--heads 2 --seqlen 1000 --head-dim 96 --dtype fp16 --no-causal --dropout 0.2"
  "--heads 4 --seqlen 2048 --head-dim 64 --deterministic"
  "--heads 4 --heads-kv 2 --seqlen 1024 --head-dim 256 --deterministic --no-causal"
  "--heads 2 --seqlen 300 --head-dim 64 --scale -0.3 --no-causal"
)
pass=0
fail=0
for args in "${cases[@]}"; do
  # shellcheck disable=SC2086
  if output=$("$CLI" "${common[@]}" $args 2>&1); then
    pass=$((pass + 1))
    echo "PASS  $args"
  else
    fail=$((fail + 1))
    echo "FAIL  $args"
    echo "$output" | grep -iE "check|error|max|fail|dq|dk|dv" | head -12 | sed 's/^/      /'
  fi
done
echo "cli checks: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
