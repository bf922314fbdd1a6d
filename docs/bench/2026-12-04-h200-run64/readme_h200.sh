#!/bin/bash
# Run 64 (one H200): the README's figures from one call on the current code (after runs 61-63: guidance's pair,
# the decoder's moments in chunks, the first SpatialTransformer's self-attention once for the pair): the UNet forward
# at n = 24, 128, 288 as a CUDA graph (bench.py's table, its bf16-vs-float32 check first), then one rank's share of the
# headline video (1150 frames, 30 steps, prompt to mp4) cold (empty compile caches) and warm (the same caches again).
# Predicted: the forward as run 54's (113.0 / 473.6 / 1043.3 ms: bench.py's batch is two videos, not a pair, so
# runs 61-63 do not change it), check ~2e-2; 30 steps cold ~138-140 s (run 63: 140.04 s, its first step 10.6 s),
# warm ~3-4 s less (the first step's Triton compiles cached). ~7 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/readme_h200.sh "$PWD" > /tmp/readme.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/readme_h200.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/readme_h200
if [ "$1" = poll ]; then ab_poll $R $2 readme_h200 | cut -c1-600; exit 0; fi
ab_setup $R "$1" main -
ab_step $R main graph graph bench.py --cuda-graph
ab_step $R main e2e30_cold e2e bench.py --e2e --frames 1150 --steps 30
ab_step $R main e2e30_warm e2e bench.py --e2e --frames 1150 --steps 30
touch $R/done
