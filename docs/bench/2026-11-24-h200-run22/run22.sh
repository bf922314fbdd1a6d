#!/usr/bin/env bash
# Device run 22 (one H200): where the eager copies and adds come from (probe_copies.py on the parent commit,
# bench_out/base, carried), then ClipAttention's k and v in one GEMM: trace128 before/after.
set -x
exec > >(tee -a $OUT/run22.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]|^   +[0-9.]+ ms .*(copy|Copy|cat|add|nvjet)" | head -40; }
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 200 python3 docs/bench/next/probe_copies.py 128 2>&1 | grep -v "^W1" | tail -32)
(cd bench_out/base && timeout 200 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 200 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
