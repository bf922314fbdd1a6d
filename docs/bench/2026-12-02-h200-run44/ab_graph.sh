#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 44: two questions, ~5 minutes with the start.
# 1. How x264 (sample.open_mp4) scales on the machine's CPUs: one encoder against k side by side on segments of 96
#    frames (probe_encode.py). Run 43's 1150-frame video: decode 8.25 s, then 7.59 s more until the one encoder had
#    written the noise frames (~80 frames/s): several encoders at once could hide the write behind the decode.
# 2. The eager forward (fast.py's Triton kernels) recorded as a CUDA graph (bench.py --cuda-graph, no --compile)
#    against eager: at n = 24 run 43 measured 327 ms eager, host-bound (~100 ms of GPU work; compiled + graph 117.6).
#   run(command='setsid nohup bash docs/bench/next/ab_graph.sh "$PWD" > /tmp/ab_graph.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_graph.sh poll 400', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_graph
if [ "$1" = poll ]; then ab_poll $R $2 ab_graph; exit 0; fi
ab_setup $R "$1" main -
ab_step $R main encode encode docs/bench/next/probe_encode.py --frames 576 --segment 96 --encoders 1 2 3 4 6 8
F="--frames-per-gpu 24 128 288 --iters 9 --check-frames 0"
ab_step $R main eager eager bench.py $F
ab_step $R main graph eager bench.py $F --cuda-graph
touch $R/done
