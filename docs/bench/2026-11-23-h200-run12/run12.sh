#!/usr/bin/env bash
# Device run 12 (one H200), two calls back to back: `bash docs/bench/2026-11-23-h200-run12/run12.sh a`, then `... b`.
# Candidates for the n >= 128 forward, each against the code as committed, at n = 128 (docs/BENCH.md *What remains*):
#   sdpa      probe_sdpa.py: each SDPA backend at the UNet's attention shapes (run 9: 59 ms, ~220 TFLOP/s)
#   base      the code as committed
#   b32       query blocks of 32 frames (dual_scope.block_size), now that the band copies are compiled: 64 keys
#             per query instead of 96, 2x band memory instead of 1.5x
#   freezing  Inductor's freezing (weights as constants: folding, pre-laid-out weights); with the check, as it
#             changes what the compiled code computes from
#   autotune  Inductor's GEMM autotuning (Triton templates vs cuBLAS, fused epilogues); long compile
# Before the call, here:  rm -rf bench_out/b32 && mkdir -p bench_out/b32 && git archive HEAD | tar -x -C bench_out/b32
#   && rm -rf bench_out/b32/fixtures && sed -i 's/return min(n, max(w, 64))/return min(n, max(w, 32))/' \
#   bench_out/b32/dual_scope.py && grep -n "max(w, 32)" bench_out/b32/dual_scope.py
# then the device tool (kind nvidia-h200) with carry ["bench_out/b32"].
set -x
exec > >(tee -a $OUT/run_$1.log) 2>&1
B="python3 bench.py --compile --cuda-graph --frames-per-gpu 128 --iters 5 --check-frames 0"
nvidia-smi --query-gpu=name,clocks.max.sm,power.limit --format=csv
if [ "$1" = a ]; then
  timeout 60 python3 docs/bench/next/probe_sdpa.py $OUT/sdpa.json
  timeout 200 $B --json $OUT/base.json 2>&1 | grep -v "^W1" | tail -3
  (cd bench_out/b32 && timeout 200 $B --json $OUT/b32.json 2>&1 | grep -v "^W1" | tail -3)
else
  TORCHINDUCTOR_FREEZING=1 timeout 300 python3 bench.py --compile --cuda-graph --frames-per-gpu 128 --iters 5 \
      --json $OUT/freezing.json 2>&1 | grep -v "^W1" | tail -4
  TORCHINDUCTOR_MAX_AUTOTUNE_GEMM=1 timeout 270 $B --json $OUT/autotune.json 2>&1 | grep -v "^W1" | tail -3
fi
