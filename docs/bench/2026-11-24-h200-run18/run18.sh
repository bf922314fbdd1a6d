#!/usr/bin/env bash
# Device run 18 (one H200): the TemporalTransformer's residual in frames-major memory. Same-call A/B at n = 128 with
# trace128.py (before: bench_out/base = git archive of the parent commit, carried), then bench's full table with
# its check on this code.
set -x
exec > >(tee -a $OUT/run18.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]" ; }
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 150 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 150 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
timeout 330 python3 bench.py --compile --cuda-graph --json $OUT/after.json 2>&1 | grep -v "^W1" | tail -6
