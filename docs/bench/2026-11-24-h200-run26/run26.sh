#!/usr/bin/env bash
# Run 26 (nvidia-h200, one GPU), branch overlap-halo: the halo exchanges started, and waited for only where the
# neighbours' frames are read (ClipTemporalConv's in-clip GEMMs and ClipAttention's query projection in between).
# One rank has no neighbour, so one GPU can show only that nothing got slower or broke: the GPU-only tests (CUDA
# graphs, compile), then trace128 at n = 128 on main (carried as bench_out/base) and on the branch, same call.
set -x
exec > >(tee -a $OUT/run26.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]" | head -20; }
timeout 120 python3 -m pytest -q test_all.py -k "graph or compile" 2>&1 | tail -2
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 200 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 200 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
