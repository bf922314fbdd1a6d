#!/usr/bin/env bash
# Run 10 (one H200): A/B of ClipTransformerBlock + attend (residual add + LayerNorm fused; the attention's
# projections and layout copies compiled with it) against run 9's code (commit 157104a, bench_out/a, carried).
# Usage from the device tool: bash docs/bench/2026-11-23-h200-run10/run10.sh
set -x
exec > >(tee $OUT/run.log) 2>&1
python3 -m pytest -q test_all.py -k graphed 2>&1 | tail -2
timeout 300 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 288 24 --iters 5 --json $OUT/d.json \
    --profile $OUT/prof128d.txt 2>&1 | grep -v "^W1" | tail -6
cd bench_out/a && timeout 200 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 288 --iters 5 \
    --check-frames 0 --json $OUT/a.json 2>&1 | grep -v "^W1" | tail -3
