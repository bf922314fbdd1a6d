#!/usr/bin/env bash
# Device run 19, part b (one H200): bench's full table with its check, on main after merging temporal-conv-bias.
set -x
exec > >(tee -a $OUT/run19b.log) 2>&1
timeout 560 python3 bench.py --compile --cuda-graph --json $OUT/after.json 2>&1 | grep -v "^W1" | tail -7
