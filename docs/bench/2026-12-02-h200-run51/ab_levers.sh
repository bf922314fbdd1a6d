#!/bin/bash
# Prepared for a one-H200 device session (issue 19), not yet run: the two levers waiting in levers/, each against main
# (run 50's code) in one call.
#  - levers/14-geglu-3d-view.patch: the GEGLU GEMM with one accumulator whose columns alternate value and gate (run
#    48's interleaved form, 9 % faster than the landed two-accumulator one in run 49's probe: 2.449 against 2.684 ms
#    over the three widths' chunks), reading the projection's weight itself through a 3D TMA view (N, 2, K) instead
#    of an interleaved copy (which went stale in run 48). Open: whether Triton 3.6 feeds the reshaped 3D tile to the
#    tensor cores from shared memory or detours through registers (probe_geglu_gemm.py's "3D view" rows say).
#    Prediction: the GEGLU GEMM -9 %, n = 128 502 -> ~495 ms, the step 4.36 -> ~4.31 s; if it detours, slower.
#  - levers/15-upsample-phases.patch: nearest 2x upsampling + 3x3 conv (the UNet's 3 Upsamples, the VAE decoder's 3
#    Resamples) as one conv of the low-resolution frames with 2x2 kernels per output phase (the taps that fall on one
#    input pixel summed), 16 of the 36 products a pixel: -24 GF a frame and sample of the UNet's ~800 (-3 %), -243 of
#    the decoder's 1563 GF a frame (-16 %); memory traffic unchanged (the upsampled frames not written, the phases'
#    interleave written instead). Prediction: the step -1 to -2.5 % (4.36 -> 4.25-4.31 s), the decode 5.9 -> 5.0-5.4 s;
#    30 steps ~150.5 -> ~146 s.
# Steps: the GEGLU probe; the step at 1150 frames (3 steps, cold) of each tree; the bf16 check and n = 128, 24, 288
# of each patched tree and main. ~11 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_levers.sh "$PWD" > /tmp/ab_levers.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_levers.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_levers.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_levers
if [ "$1" = poll ]; then ab_poll $R $2 ab_levers; exit 0; fi
L=docs/bench/next/levers
ab_setup $R "$1" main - view3d $L/14-geglu-3d-view.patch phases $L/15-upsample-phases.patch
ab_step $R main probe_geglu probe_geglu docs/bench/next/probe_geglu_gemm.py
E="--e2e --frames 1150 --steps 3"
for t in phases view3d main; do ab_step $R $t e2e_$t e2e_$t bench.py $E; done
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R phases eager_phases e2e_phases bench.py $F
ab_step $R view3d eager_view3d e2e_view3d bench.py $F
ab_step $R main eager_main e2e_main bench.py $F --check-frames 0
touch $R/done
