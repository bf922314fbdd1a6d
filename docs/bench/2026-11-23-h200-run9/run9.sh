#!/usr/bin/env bash
# Run 9 (one H200): A/B of the compiled attention (clip_attention in clip_parallel.FUSED) against run 8's code.
# bench_out/a: git archive of run 8's commit (9ab876d), carried.  Usage: bash docs/bench/2026-11-23-h200-run9/run9.sh
set -x
exec > >(tee $OUT/run.log) 2>&1
timeout 300 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 288 24 --iters 5 --json $OUT/b.json \
    --profile $OUT/prof128b.txt 2>&1 | grep -v "^W1" | tail -6
cd bench_out/a && timeout 250 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 288 --iters 5 \
    --check-frames 0 --json $OUT/a.json 2>&1 | grep -v "^W1" | tail -3
