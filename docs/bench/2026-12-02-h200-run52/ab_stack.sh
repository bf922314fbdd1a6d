#!/bin/bash
# One-H200 device session (issue 19), run 52. Run 51 (docs/bench/2026-12-02-h200-run51/ab_levers.sh) measured levers/15
# (upsample phases: the step 4.221 -> 4.152 s, the decode 5.83 -> 5.39 s) and levers/14 (the GEGLU GEMM through a 3D
# view: the step 4.221 -> 4.208 s, within noise) against main; levers/15 landed. Here, against main: levers/14
# ("view3d") and levers/16 ("tail": a clip's last 192-287 frames as mp4 segments of 24 instead of 96, so that at the
# decode's end several x264 share what is left to encode). Run 51's write after the decode was 2.0-2.35 s: x264 on noise
# frames (~150-180 frames/s over 16 cores) is slower than the decode (~200-210 frames/s), so a backlog, then the last
# 94-frame segment alone (~1.3 s at ~70 frames/s). Prediction: tail's write 2.35 -> 1.3-1.7 s, its join +0.1 s (21
# segments instead of 12); view3d's graphed forward -0.5 to -1 % at n = 128 / 288. e2e interleaved (main, view3d, tail,
# main, view3d), then the graphed forward (bench.py --cuda-graph, the README's form) of main and view3d, then main's 30
# steps on an empty cache (the headline figure; run 49: 150.52 s; predicted ~146-147 s). ~10 minutes with the start.
#   run(command='setsid nohup bash docs/bench/next/ab_stack.sh "$PWD" > /tmp/ab_stack.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_stack.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_stack
if [ "$1" = poll ]; then ab_poll $R $2 ab_stack; exit 0; fi
L=docs/bench/next/levers
ab_setup $R "$1" main - view3d $L/14-geglu-3d-view.patch tail $L/16-short-tail-segments.patch
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R view3d e2e_view3d e2e_view3d bench.py $E
ab_step $R tail e2e_tail e2e_tail bench.py $E
ab_step $R main e2e_main2 e2e_main bench.py $E
ab_step $R view3d e2e_view3d2 e2e_view3d bench.py $E
G="--frames-per-gpu 128 24 288 --iters 9 --cuda-graph --check-frames 0"
ab_step $R main graph_main e2e_main bench.py $G
ab_step $R view3d graph_view3d e2e_view3d bench.py $G
ab_step $R main e2e30_main e2e30_main bench.py --e2e --frames 1150 --steps 30
touch $R/done
