#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 47: sample.py's later runs on a machine (Triton's cache
# warm) against its first (cold), main as of run 46 (the decoder's kernel variants compiled ahead too). Run 45,
# before the decoder's forms: first step 11.95 s cold, 7.23 s warm. Prediction: 13.2 -> ~8 s. Prompt to mp4 at 1150
# frames, 3 steps, cold, then again on the same caches. ~3 minutes with the start.
#   run(command='setsid nohup bash docs/bench/next/ab_warm.sh "$PWD" > /tmp/ab_warm.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_warm.sh poll 240', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_warm
if [ "$1" = poll ]; then ab_poll $R $2 ab_warm; exit 0; fi
ab_setup $R "$1" main -
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_cold e2e bench.py $E
ab_step $R main e2e_warm e2e bench.py $E
touch $R/done
