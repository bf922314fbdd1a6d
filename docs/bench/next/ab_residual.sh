#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/12-residuals-in-gemms.patch against main, eager only.
# Without --compile, each TransformerBlock (spatial and temporal) runs as fast.transformer_block_forward: every
# residual sum is made by the GEMM of the layer it adds (addmm_ onto its other term, cuBLAS's beta = 1), and every
# LayerNorm is one Triton pass (layer_norm_kernel) that also writes that term, x plus the next projection's bias.
# Per residual: to_out's GEMM, the add (2 reads, 1 write) and the LayerNorm (1 read, 1 write) become one GEMM that
# reads its C and one pass (1 read, 2 writes); 99 add launches fewer a forward. Run 40's op table at n = 128 (eager
# 555.9 ms): LayerNorms 49.5 ms, adds 41.2 ms (644 calls, ~99 of them these). Prediction: eager n = 128 -15 to -25
# ms (-3 to -4.5 %), n = 288 alike, n = 24 within its spread; the step at 1150 frames 4.90 -> 4.70-4.78 s. ~6
# minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_residual.sh "$PWD" > /tmp/ab_residual.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_residual.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_residual
if [ "$1" = poll ]; then ab_poll $R $2 ab_residual; exit 0; fi
ab_setup $R "$1" main - residual docs/bench/next/levers/12-residuals-in-gemms.patch
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R residual eager_residual eager_residual bench.py $F --profile $R/log/prof_eager_residual.txt
ab_step $R main eager_main eager_main bench.py $F --check-frames 0
ab_step $R residual e2e_eager_residual e2e_residual bench.py --e2e --frames 1150 --steps 3
ab_step $R main e2e_eager_main e2e_main bench.py --e2e --frames 1150 --steps 3
touch $R/done
