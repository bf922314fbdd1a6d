#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 45: each rank's clip as mp4 segments of 96 frames, several
# encoded at once (sample.Mp4Writer, 8 x264 processes on 16 cores) against one x264 over the clip (main with
# segments.patch reversed). Run 43's 1150-frame video: decode 8.25 s, then write 7.59 s more (one x264 on noise
# frames, ~80 frames/s); run 44's probe: 6-8 encoders side by side ~180 frames/s, the decode ~140. Prediction: write
# 7.6 -> 1-2 s after the decode (the last segment's encode), the decode itself unchanged or +0.5 s (the encoders'
# host threads); 30 steps ~165 -> ~159 s. The prompt-to-mp4 rows: 3 steps cold, 3 steps warm (both trees), then all
# 30 steps of main, cold. ~8 minutes with the start.
#   run(command='setsid nohup bash docs/bench/next/ab_segments.sh "$PWD" > /tmp/ab_segments.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_segments.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_segments
if [ "$1" = poll ]; then ab_poll $R $2 ab_segments; exit 0; fi
ab_setup $R "$1" main - before -
(cd $R/before && git apply -R docs/bench/next/segments.patch) >> $R/log/apply.log 2>&1 || exit 1
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R before e2e_before e2e_before bench.py $E
ab_step $R main e2e_main_warm e2e_main bench.py $E
ab_step $R before e2e_before_warm e2e_before bench.py $E
ab_step $R main e2e30_main e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
