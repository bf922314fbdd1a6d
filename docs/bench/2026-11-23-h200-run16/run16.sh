#!/usr/bin/env bash
# Device run 16 (one H200): the code with run 15's change (convs channels-last: Inductor's layout optimization
# forced; the first/last/resampling convs compiled), bench's full table with its check, then (part b, a second call)
# the parent commit at n = 24 and 288 for the same-machine A/B (n = 128's A/B is run 15).
# Part b needs bench_out/base (git archive of the parent commit), carried.
set -x
exec > >(tee -a $OUT/run16_$1.log) 2>&1
if [ "$1" = a ]; then
  timeout 60 python3 -m pytest -q test_all.py -k "graph or compile" 2>&1 | tail -2
  timeout 480 python3 bench.py --compile --cuda-graph --json $OUT/after.json 2>&1 | grep -v "^W1" | tail -7
else
  (cd bench_out/base && timeout 400 python3 bench.py --compile --cuda-graph --frames-per-gpu 24 288 --check-frames 0 \
      --json $OUT/before.json 2>&1 | grep -v "^W1" | tail -4)
fi
