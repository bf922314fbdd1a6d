#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/9-temporal-norm-kernels.patch against main, eager only
# (the compiled path compiles these passes itself). Without --compile, the temporal GroupNorms (the TemporalConvBlocks'
# and the TemporalTransformers') run on run 38's kernels: the moments from each frame's channel moments (one read of
# x; group_moments reads it three times and writes it once), the normalisation with its SiLU, or into the
# TemporalTransformer's token layout, as one pass (native_batch_norm, then silu_ or a permuted copy). Run 38's op table
# at n = 128 (eager 707.8 ms): sub 25 ms, sum 8, vector_norm 7, batch_norm 32, silu_ 8, contiguous 17: ~97 ms; compiled,
# the same passes take ~30 ms. Prediction: eager n = 128 -50 to -65 ms (-7 to -9 %), n = 288 alike, n = 24 within its
# spread; the eager step at 1150 frames 6.55 -> 6.0-6.2 s. ~6 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_temporal.sh "$PWD" > /tmp/ab_temporal.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_temporal.sh poll 540', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_temporal
if [ "$1" = poll ]; then ab_poll $R $2 ab_temporal; exit 0; fi
ab_setup $R "$1" main - temporal docs/bench/next/levers/9-temporal-norm-kernels.patch
F="--frames-per-gpu 128 24 288 --iters 3"
ab_step $R temporal eager_temporal eager_temporal bench.py $F --profile $R/log/prof_eager_temporal.txt
ab_step $R main eager_main eager_main bench.py $F --check-frames 0
ab_step $R temporal e2e_eager_temporal e2e_temporal bench.py --e2e --frames 1150 --steps 3
ab_step $R main e2e_eager_main e2e_main bench.py --e2e --frames 1150 --steps 3
touch $R/done
