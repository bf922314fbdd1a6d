#!/usr/bin/env bash
# The next device call, ready (one H200, ~9 min): four candidates for the n >= 128 forward, each against the
# code as committed, at n = 128 (BENCH.md *What remains*). Compare the ms column; land what wins by > 2 %.
#   base      the code as committed
#   b32       query blocks of 32 frames (dual_scope.block_size), now that the band copies are compiled: 64 keys
#             per query instead of 96, 2x band memory instead of 1.5x
#   freezing  Inductor's freezing (weights as constants: folding, pre-laid-out weights); with the check, as it
#             changes what the compiled code computes from
#   autotune  Inductor's GEMM autotuning (Triton templates vs cuBLAS, fused epilogues); long compile
# Before the call, here:  rm -rf bench_out/b32 && mkdir -p bench_out/b32 && git archive HEAD | tar -x -C bench_out/b32
#   && rm -rf bench_out/b32/fixtures && sed -i 's/return min(n, max(w, 64))/return min(n, max(w, 32))/' \
#   bench_out/b32/dual_scope.py && grep -n "max(w, 32)" bench_out/b32/dual_scope.py
# then the device tool (kind nvidia-h200) with carry ["bench_out/b32"]:  bash docs/bench/next/run12.sh
set -x
exec > >(tee $OUT/run.log) 2>&1
B="python3 bench.py --compile --cuda-graph --frames-per-gpu 128 --iters 5 --check-frames 0"
timeout 120 $B --json $OUT/base.json 2>&1 | grep -v "^W1" | tail -2
(cd bench_out/b32 && timeout 120 $B --json $OUT/b32.json 2>&1 | grep -v "^W1" | tail -2)
TORCHINDUCTOR_FREEZING=1 timeout 180 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 --iters 5 \
    --json $OUT/freezing.json 2>&1 | grep -v "^W1" | tail -3
TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 timeout 150 $B --json $OUT/autotune.json 2>&1 | grep -v "^W1" | tail -2
