#!/bin/bash
# One-H200 device session (issue 19), run 55, as it ran from docs/bench/next (beside ab_common.sh): levers/18
# against main (run 54's code, levers/17 landed), end to end with empty compile caches, and the headline's 30
# steps cold.
#  - levers/18-compile-while-running.patch ("ahead"): fast.compile_kernels becomes a context in which the first
#    forward runs while Triton's variants still compile: after the stand-in forward has submitted every variant, a
#    kernel's launch waits for its own variant's compile only, so the GPU starts on the first step's early layers
#    instead of idling through the whole compile (run 49: 5.9 s, 42 variants, 74.9 job-seconds over 16 threads).
#    Prediction: the first step at 1150 frames (cold) ~10.3-12 -> ~7-8 s (the compile's ~5.9 s overlapped with the
#    first forward's ~4.2 s of GPU work, less what the compile threads take from the launching thread), the other
#    steps unchanged; 30 steps cold 143.3 (run 52) - ~1.4 (runs 52-54's levers) - ~3 -> ~139 s.
#  - a throwaway short run first (its own cache) so that neither tree pays the machine's first loads of the libraries.
# ~9 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_ahead.sh "$PWD" > /tmp/ab_ahead.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_ahead.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_ahead.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_ahead
if [ "$1" = poll ]; then ab_poll $R $2 ab_ahead; exit 0; fi
ab_setup $R "$1" main - ahead docs/bench/next/levers/18-compile-while-running.patch
ab_step $R main warmup warmup bench.py --e2e --frames 64 --steps 1
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R ahead e2e_ahead e2e_ahead bench.py $E
ab_step $R ahead e2e30_ahead e2e30_ahead bench.py --e2e --frames 1150 --steps 30
ab_step $R main e2e30_main e2e30_main bench.py --e2e --frames 1150 --steps 30
ab_step $R ahead e2e_ahead2 e2e_ahead2 bench.py $E
ab_step $R main e2e_main2 e2e_main2 bench.py $E
touch $R/done
