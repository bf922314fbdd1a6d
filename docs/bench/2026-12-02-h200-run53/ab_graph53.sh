#!/bin/bash
# One-H200 device session (issue 19), run 53: the README's form, the forward as a CUDA graph (bench.py --cuda-graph),
# of main after run 52 (the upsamplings as phase convs, their taps folded with device ops so that a graph can record
# them; the GEGLU GEMM through a 3D view). Run 50: 114.1 / 498.2 / 1099.3 ms at n = 24 / 128 / 288. Prediction from
# runs 51-52's eager and end-to-end A/Bs (-1.6 % and -0.6 % a step): ~112 / ~488 / ~1075 ms. ~3 minutes with the start.
#   run(command='setsid nohup bash docs/bench/next/ab_graph53.sh "$PWD" > /tmp/ab_graph53.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_graph53.sh poll 200', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_graph53
if [ "$1" = poll ]; then ab_poll $R $2 ab_graph53; exit 0; fi
ab_setup $R "$1" main -
ab_step $R main graph_main graph_main bench.py --frames-per-gpu 128 24 288 --iters 9 --cuda-graph --check-frames 0
touch $R/done
