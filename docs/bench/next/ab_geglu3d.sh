#!/bin/bash
# Prepared for a one-H200 device session (issue 19), not yet run. levers/14-geglu-3d-view.patch: the GEGLU GEMM with
# one accumulator whose columns alternate value and gate (run 48's interleaved form, 9 % faster than the landed
# two-accumulator one in run 49's probe: 2.449 against 2.684 ms over the three widths' chunks), reading the
# projection's weight itself through a 3D TMA view (N, 2, K) instead of an interleaved copy (which went stale in run
# 48). Open question: whether Triton 3.6 feeds the reshaped 3D tile to the tensor cores from shared memory or detours
# through registers. (1) probe_geglu_gemm.py: the "3D view" rows against "interleaved" and main's kernel. (2) The A/B,
# main against main + the patch: the step at 1150 frames (3 steps, cold), the bf16 check and n = 128, 24, 288.
# Prediction: if the 3D view matches the interleaved copy, the GEGLU GEMM -9 %, n = 128 502 -> ~495 ms, the step
# 4.36 -> ~4.31 s; if it detours through registers, slower than main: not landed. ~8 minutes with the start:
#   run(command='setsid nohup bash docs/bench/next/ab_geglu3d.sh "$PWD" > /tmp/ab_geglu3d.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_geglu3d.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_geglu3d
if [ "$1" = poll ]; then ab_poll $R $2 ab_geglu3d; exit 0; fi
ab_setup $R "$1" main - view3d docs/bench/next/levers/14-geglu-3d-view.patch
ab_step $R main probe_geglu probe_geglu docs/bench/next/probe_geglu_gemm.py
E="--e2e --frames 1150 --steps 3"
ab_step $R view3d e2e_view3d e2e_view3d bench.py $E
ab_step $R main e2e_main e2e_main bench.py $E
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R view3d eager_view3d eager_view3d bench.py $F
ab_step $R main eager_main eager_main bench.py $F --check-frames 0
touch $R/done
