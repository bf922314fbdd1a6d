#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 50: run 49 landed GEGLU as one Triton GEMM (fast.geglu_gemm)
# and compile_kernels' empty-grid launches, measured end to end and eagerly at n = 128, 288 (-3 %), but eagerly at
# n = 24 (host-bound) 183.5 -> 219.8 ms. This measures the README's form, the forward as a CUDA graph (bench.py
# --cuda-graph: no host time), main against run 47's code (before: geglu.patch reversed) at n = 128, 24, 288, and the
# eager forward at n = 24 of both with torch.profiler's op table, to see where the 36 ms went. Prediction: the graphed
# forward 508.8 / 1124.2 -> ~495 / ~1090 ms at n = 128 / 288, n = 24 114.8 -> ~112 ms; at n = 24 eagerly, the CPU
# time of GEGLU's launches (three TMA descriptors each). ~5 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_graph.sh "$PWD" > /tmp/ab_graph.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_graph.sh poll 420', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_graph
if [ "$1" = poll ]; then ab_poll $R $2 ab_graph; exit 0; fi
ab_setup $R "$1" main - before -
(cd $R/before && git apply -R docs/bench/next/geglu.patch) >> $R/log/apply.log 2>&1 || exit 1
G="--frames-per-gpu 128 24 288 --iters 9 --cuda-graph --check-frames 0"
ab_step $R main graph_main graph_main bench.py $G
ab_step $R before graph_before graph_before bench.py $G
E="--frames-per-gpu 24 --iters 9 --check-frames 0"
ab_step $R main eager24_main graph_main bench.py $E --profile $R/log/prof24_main.txt
ab_step $R before eager24_before graph_before bench.py $E --profile $R/log/prof24_before.txt
touch $R/done
