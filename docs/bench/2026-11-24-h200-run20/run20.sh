#!/usr/bin/env bash
# Device run 20 (one H200): the temporal GroupNorms' moments frame by frame (clip_parallel.group_moments), against
# the parent commit (bench_out/base: git archive of HEAD, carried): the moments probe, then trace128 before/after.
set -x
exec > >(tee -a $OUT/run20.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]|^   +[0-9.]+ ms .*(triton|layer_norm)" | head -60; }
mkdir -p $OUT/before $OUT/after
timeout 120 python3 docs/bench/next/probe_moments.py 128 2>&1 | grep -v "^W1"
(cd bench_out/base && timeout 150 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 150 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
