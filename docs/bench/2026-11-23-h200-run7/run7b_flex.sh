#!/usr/bin/env bash
# The call after run7.sh, if its probe shows FlexAttention ahead of clip_attention (flex*_ms < clip_attention_ms):
# the branch flex-attention (compile_layers' attention as compiled FlexAttention) end to end, ~8 min on one H200.
# Before the call, here:  rm -rf bench_out/flex && mkdir -p bench_out/flex &&
#                         git archive flex-attention | tar -x -C bench_out/flex
# (or, if the branch is gone: git archive HEAD | tar -x -C bench_out/flex &&
#  (cd bench_out/flex && git apply ../../docs/bench/next/flex-attention.patch); the patch is the branch's diff)
# then the device tool with carry ["bench_out/flex"]:  bash docs/bench/next/run7b_flex.sh
# Compare with run7.sh's compiled rows (main, same kind of machine).
set -x
exec > >(tee $OUT/run.log) 2>&1
cd bench_out/flex
timeout 200 torchrun --nproc_per_node 1 simulate.py --frames 24 --compile --json $OUT/sim_flex.json | tail -4
# --profile takes the first n: 128
timeout 420 python3 bench.py --compile --frames-per-gpu 128 24 288 --iters 5 --json $OUT/flex.json \
    --profile $OUT/prof128_flex.txt 2>&1 | grep -v "^W1" | tail -8
