#!/bin/bash
# Prepared for a one-H200 device session (issue 19): run 42 landed two levers on one measurement (the eager forward at
# n = 128, 556.9-563.3 -> 505.5-506.0 ms, no bf16 check, no other size, no end-to-end run): each TransformerBlock's
# residual sums made by the GEMMs they follow, each LayerNorm one Triton pass that also writes the sum's other term
# (fast.transformer_block_forward, layer_norm_kernel), and a TemporalTransformer's output projection and residual, a
# TemporalConvBlock's residual, as one pass each (fast.kernel_project_out, kernel_add_residual). This confirms it
# against the code before (main with run 42's landed.patch reversed): the bf16 check, n = 24, 128, 288, the step at
# 1150 frames, then all 30 steps of main. Prediction: n = 128 -9 %, n = 288 alike, n = 24 within its spread; the step
# 4.90 -> 4.4-4.5 s; 30 steps ~174 -> ~160 s. ~11 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_confirm.sh "$PWD" > /tmp/ab_confirm.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_confirm.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_confirm.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_confirm
if [ "$1" = poll ]; then ab_poll $R $2 ab_confirm; exit 0; fi
ab_setup $R "$1" main - before -
(cd $R/before && git apply -R docs/bench/2026-12-02-h200-run42/landed.patch) >> $R/log/apply.log 2>&1 || exit 1
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R main eager_main eager_main bench.py $F --profile $R/log/prof_eager_main.txt
ab_step $R before eager_before eager_before bench.py $F --check-frames 0
ab_step $R main e2e_eager_main e2e_main bench.py --e2e --frames 1150 --steps 3
ab_step $R before e2e_eager_before e2e_before bench.py --e2e --frames 1150 --steps 3
ab_step $R main e2e30_eager_main e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
