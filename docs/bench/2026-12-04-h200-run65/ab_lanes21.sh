#!/bin/bash
# The next A/B (one H200; written 2026-12-04, not yet run: the session's device time was spent on runs 61-64), from
# docs/bench/next (beside ab_common.sh, probe_passes.py and probe_decode_ops.py): levers/21 ("lanes"), the channels'
# moments by layout: channels-last frames with per-pixel-lane running moments (run 59's levers/20 form, which won on
# channels-last and lost on channels-first), channels-first frames as now, either in run 62's chunks. Where it should
# show: the 22 norm2 calls a forward (a cuDNN conv's channels-last output) and every moments call of the VAE
# decoder (channels-last throughout). Prediction: probe_passes.py's channels-last moments 0.318 -> ~0.17 ms at
# 320x40x64 (256 frames), channels-first unchanged; probe_decode_ops.py's channel_moments_kernel 14.8 -> 7-9 ms a
# batch of 32, the decode ~4.2 -> ~4.0 s at 1150 frames; the step -0.2 to -0.4 % (run 59's ~1.5 ms of a 460 ms
# forward). ~9 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_lanes21.sh "$PWD" > /tmp/ab_lanes21.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_lanes21.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_lanes21
if [ "$1" = poll ]; then ab_poll $R $2 ab_lanes21 | cut -c1-600; exit 0; fi
ab_setup $R "$1" main - lanes docs/bench/next/levers/21-moments-lanes-by-layout.patch
ab_gpu_test $R lanes
for t in main lanes; do ab_step $R $t probe_$t probe_$t docs/bench/next/probe_passes.py --iters 9; done
for t in main lanes; do ab_step $R $t decode_$t decode_$t docs/bench/next/probe_decode_ops.py --frames 64; done
E="--e2e --frames 1150 --steps 3"
for t in main lanes lanes main; do ab_step $R $t e2e_$t$((++i)) e2e_$t bench.py $E; done
touch $R/done
