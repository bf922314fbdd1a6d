#!/bin/bash
# Run 68 (one H200): one rank's share of the headline video (1150 frames, 30 steps, prompt to mp4) with empty compile
# caches once more, on whichever machine the call draws, after run 67's 134.65 s: the machines differ by ~3 % a step
# (runs 61-64), so a second machine says how much of run 67's margin under 140 s is the code's. Predicted: 134-139 s
# (run 67's 3.95 s a step up to ~4.07 on a slower machine: +3.7 s). ~5 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/cold_h200.sh "$PWD" > /tmp/cold.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/cold_h200.sh poll 400', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/cold_h200
if [ "$1" = poll ]; then ab_poll $R $2 cold_h200 | cut -c1-600; exit 0; fi
ab_setup $R "$1" main -
ab_step $R main e2e30_cold e2e bench.py --e2e --frames 1150 --steps 30
touch $R/done
