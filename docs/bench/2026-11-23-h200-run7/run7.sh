#!/usr/bin/env bash
# The next device call, ready (one H200, ~10 min): what run 6 left unmeasured, and the probe for the next step
# (band construction three ways; clip_attention vs compiled FlexAttention, blocks of 128 and 64).
# Usage from the device tool: bash docs/bench/2026-11-23-h200-run7/run7.sh   (outputs under $OUT)
set -x
exec > >(tee $OUT/run.log) 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv
python3 docs/bench/next/probe_bands.py --frames 128 --json $OUT/bands128.json
python3 docs/bench/next/probe_bands.py --frames 288 --json $OUT/bands288.json
timeout 200 torchrun --nproc_per_node 1 simulate.py --frames 24 --compile --json $OUT/sim_compiled.json | tail -4
python3 bench.py --frames-per-gpu 24 288 --iters 5 --check-frames 0 --json $OUT/eager.json | tail -3
timeout 400 python3 bench.py --compile --frames-per-gpu 24 128 288 --iters 5 --check-frames 0 --json $OUT/compiled.json 2>&1 | grep -v "^W1" | tail -5
