#!/bin/bash
# Run 67 (one H200): the README's figures from one call on the current code (after runs 65-66: the channels' moments
# by layout, fewer Triton variants): the UNet forward at n = 24, 128, 288 as a CUDA graph (bench.py's table, its
# bf16-vs-float32 check first), then one rank's share of the headline video (1150 frames, 30 steps, prompt to mp4)
# cold (empty compile caches) and warm (the same caches again).
# Predicted: the forward as run 64's (111.2 / 475.3 / 1037.1 ms; the moments lever touches norm2 only, ~0.1 %),
# check ~2e-2; 30 steps cold ~137-138 s (run 64: 139.22 s; runs 65-66: the first step cold -1.4 s, the decode
# -0.3 s), warm ~132 s. ~7 minutes with the start. One daemon:
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
