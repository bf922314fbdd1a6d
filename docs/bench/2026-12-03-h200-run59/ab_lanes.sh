#!/bin/bash
# Run 59 (one H200, 2026-12-03), as it ran from docs/bench/next (beside ab_common.sh and probe_passes.py):
# levers/20 ("lanes"), channel_moments_kernel with per-lane
# running moments (Welford per pixel lane, the lanes combined once at the end) instead of reducing every tile across
# its pixels. Run 58's probe: the moments of channels-last frames (a conv's output) 1.32 TB/s, of channels-first 2.83.
# Prediction: the channels-last moments ~0.32 -> ~0.16-0.2 ms at 320x40x64 (256 frames), channels-first unchanged or
# a little slower; the forward at n = 128 -1 to -3 ms (~66 of its 165 moments calls read a conv's output).
#  - probe_passes.py in main and in lanes (the current settings only matter: compare their "moments" rows);
#  - the forward as a CUDA graph, main / lanes / lanes / main.
# ~8 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_lanes.sh "$PWD" > /tmp/ab_lanes.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_lanes.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_lanes
if [ "$1" = poll ]; then ab_poll $R $2 ab_lanes; exit 0; fi
ab_setup $R "$1" main - lanes docs/bench/next/levers/20-moments-lanes.patch
ab_gpu_test $R lanes
for t in main lanes; do ab_step $R $t probe_$t probe_$t docs/bench/next/probe_passes.py --iters 9; done
G="--frames-per-gpu 128 288 --iters 9 --cuda-graph"
for t in main lanes lanes main; do ab_step $R $t graph_$t$((++i)) graph_$t bench.py $G; done
touch $R/done
