#!/usr/bin/env bash
# Device run 21 (one H200): the temporal blocks' LayerNorms compiled (each alone), against the parent commit
# (bench_out/base: git archive of HEAD, carried): trace128 before/after.
set -x
exec > >(tee -a $OUT/run21.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]|^   +[0-9.]+ ms .*(triton|layer_norm)" | head -40; }
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 150 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 150 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
