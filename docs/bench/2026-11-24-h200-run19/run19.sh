#!/usr/bin/env bash
# Device call for the branch temporal-conv-bias (one H200, ~9 min): ClipTemporalConv's GEMMs without the bias fill
# (each conv's bias added where its output is read next). Prediction (docs/BENCH.md run 14): -15 ms at n = 128.
# Before the call, here, on the branch:  rm -rf bench_out/base && mkdir -p bench_out/base/docs/bench/next &&
#   git archive main | tar -x -C bench_out/base && rm -rf bench_out/base/fixtures &&
#   cp docs/bench/next/trace128.py bench_out/base/docs/bench/next/
# then the device tool (kind nvidia-h200) with carry ["bench_out/base"]:  bash docs/bench/next/run19_bias.sh (moved here after the run)
# Land the branch if the A/B wins by > 1 % and the check passes; then the README table from bench's rows.
set -x
exec > >(tee -a $OUT/run19.log) 2>&1
f() { grep -v "^W1" | grep -E "^== |^   [a-z]" ; }
mkdir -p $OUT/before $OUT/after
(cd bench_out/base && timeout 150 python3 docs/bench/next/trace128.py $OUT/before 128 2>&1 | f)
timeout 150 python3 docs/bench/next/trace128.py $OUT/after 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
timeout 150 torchrun --nproc_per_node 1 simulate.py --compile --dtype float32 2>&1 | grep -v "^W1" | tail -2  # NCCL, Inductor
timeout 220 python3 bench.py --compile --cuda-graph --frames-per-gpu 24 288 --json $OUT/after.json 2>&1 \
    | grep -v "^W1" | tail -5
