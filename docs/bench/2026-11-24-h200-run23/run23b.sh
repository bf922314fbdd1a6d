#!/usr/bin/env bash
# Device run 23, part b (one H200): the GPU-only tests, then bench's full table with its check, on this code.
set -x
exec > >(tee -a $OUT/run23b.log) 2>&1
timeout 90 python3 -m pytest -q test_all.py -k "graph or compile" 2>&1 | tail -2
timeout 480 python3 bench.py --compile --cuda-graph --json $OUT/after.json 2>&1 | grep -v "^W1" | tail -7
