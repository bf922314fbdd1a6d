#!/usr/bin/env bash
# Run 8 (one H200, ~8 min): CUDA graphs (bench.py --cuda-graph, clip_parallel.GraphedClipForward).
# Usage from the device tool: bash docs/bench/2026-11-23-h200-run8/run8.sh   (outputs under $OUT)
set -x
exec > >(tee $OUT/run.log) 2>&1
python3 -m pytest -q test_all.py -k graphed 2>&1 | tail -3
# compiled + graphs, with the bf16-vs-float32 check running the graph
timeout 330 python3 bench.py --compile --cuda-graph --frames-per-gpu 24 128 288 --iters 5 --json $OUT/graph_compiled.json \
    2>&1 | grep -v "^W1" | tail -6
# eager + graphs (no compile), the launch-bound n
timeout 100 python3 bench.py --cuda-graph --frames-per-gpu 24 --iters 5 --check-frames 0 --json $OUT/graph_eager.json | tail -2
# NCCL (torchrun, 1 rank): the recorded forward holds the stage-3 all_gathers; the check runs the graph
timeout 120 torchrun --nproc_per_node 1 bench.py --cuda-graph --frames-per-gpu 24 --iters 5 --json $OUT/graph_nccl.json \
    2>&1 | tail -4
# where the CPU time goes at n = 24 without graphs (compiled): is it launch-bound?
timeout 100 python3 bench.py --compile --frames-per-gpu 24 --iters 3 --check-frames 0 --profile $OUT/prof24c.txt \
    2>&1 | grep -v "^W1" | tail -2
