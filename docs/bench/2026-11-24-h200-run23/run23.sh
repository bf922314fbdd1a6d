#!/usr/bin/env bash
# Device run 23 (one H200): the TemporalTransformer's proj_out and residual compiled together, the sum in x's memory
# layout (fold a view): trace128 on the parent commit (bench_out/base, carried) and on this code, then probe_copies.
set -x
exec > >(tee -a $OUT/run23.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]|^   +[0-9.]+ ms .*(copy|Copy|cat|add|triton)" | head -36; }
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 190 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 190 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
timeout 150 python3 docs/bench/next/probe_copies.py 128 2>&1 | grep -v "^W1" | tail -12
