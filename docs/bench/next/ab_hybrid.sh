#!/bin/bash
# Prepared for a one-H200 device session (issue 19): --compile with only the clip-parallel arithmetic compiled and the
# per-frame layers in run 38's eager fast forms (channels-last, fast.py's Triton kernels), against all of it compiled
# and against no compile; no patch: docs/bench/next/probe_regions.py hybrid. Run 32 measured each half of the compiled
# regions with the plain per-frame forms: the arithmetic alone 61.5 s of compile for 8.00 -> 6.43 s a step. Run 38's
# eager forms took the per-frame layers 7.62 -> 6.55 s a step. Prediction at 1150 frames: the hybrid's step 5.0-5.4 s
# (all compiled: 5.10), its first step ~60-75 s cold and ~12-16 s warm (all compiled: ~120 and ~28), so over 30 steps
# ~240-255 s cold (no compile: ~230 s, still the faster one cold) and ~175-190 s warm (all compiled: ~198 s): a better
# --compile for a machine that keeps its cache, if it holds. ~8.5 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_hybrid.sh "$PWD" > /tmp/ab_hybrid.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_hybrid.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_hybrid.sh poll 540', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_hybrid
if [ "$1" = poll ]; then ab_poll $R $2 ab_hybrid; exit 0; fi
ab_setup $R "$1" tree -
E="--e2e --frames 1150 --steps 3"
ab_step $R tree hybrid_cold hybrid docs/bench/next/probe_regions.py hybrid $E --compile
ab_step $R tree hybrid_warm hybrid docs/bench/next/probe_regions.py hybrid $E --compile
ab_step $R tree compiled_cold compiled bench.py $E --compile
ab_step $R tree compiled_warm compiled bench.py $E --compile
ab_step $R tree eager eager bench.py $E
touch $R/done
