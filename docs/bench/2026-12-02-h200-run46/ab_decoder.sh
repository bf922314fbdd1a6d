#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 46: the VAE decoder on fast.py's kernels, channels-last, at
# batch 32 (levers/8 rebased: fast.accelerate_decoder in sample.py, --decode-batch 32, its kernel variants compiled
# ahead with the UNet's) against the plain NCHW decoder at batch 8 (main with decoder.patch reversed). Run 45: the
# decode 8.8 s bounds decode + write (10.5-10.9 s), the write 1.4-1.7 s after it. Run 39's probe: 7.03 -> 4.40 ms a
# frame. Prediction: decode 8.8 -> 5.3-6.0 s, decode + write + join 10.5 -> 7-8 s, the first step +0-1 s (the
# decoder's variants compiled ahead with the UNet's), the steps unchanged; 30 steps 157.5 -> ~155 s. Prompt to mp4 at
# 1150 frames, 3 steps, both trees cold, then all 30 steps of main, cold. ~6 minutes with the start.
#   run(command='setsid nohup bash docs/bench/next/ab_decoder.sh "$PWD" > /tmp/ab_decoder.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_decoder.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_decoder
if [ "$1" = poll ]; then ab_poll $R $2 ab_decoder; exit 0; fi
ab_setup $R "$1" main - before -
(cd $R/before && git apply -R docs/bench/next/decoder.patch) >> $R/log/apply.log 2>&1 || exit 1
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R before e2e_before e2e_before bench.py $E
ab_step $R main e2e30_main e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
