#!/bin/bash
# Run 60 (one H200, 2026-12-03), from docs/bench/next (beside ab_common.sh): does Triton 3.6 warp-specialise a GEMM on
# Hopper, and does that take the GEGLU GEMM to cuBLAS's rate? probe_geglu_ws.py's forms against fast.geglu_gemm and
# cuBLAS's projection alone. Run 54: fast.geglu_gemm 0.506 / 0.707 / 1.180 ms, cuBLAS 0.322 / 0.504 / 0.933 at C =
# 320 / 640 / 1280. Prediction: if the warp-specialised persistent forms compile, the best within ~10 % of cuBLAS
# (~0.36 / 0.55 / 1.02 ms: the epilogue of one tile under the next tile's loads); if they do not, the error says so.
# ~4 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_ws.sh "$PWD" > /tmp/ab_ws.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_ws.sh poll 300', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_ws
if [ "$1" = poll ]; then
  ab_poll $R $2 ab_ws | cut -c1-400; grep -h "Error" $R/log/*.log | cut -c1-300 | head -20; exit 0
fi
ab_setup $R "$1" main -
ab_step $R main probe_ws probe_ws docs/bench/next/probe_geglu_ws.py
touch $R/done
