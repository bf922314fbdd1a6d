#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/11-kernels-compiled-ahead.patch against main, sample.py
# without --compile on a machine with empty caches. Run 40's first step at 1150 frames took 16.4 s against 4.9 s a
# step: ~11.5 s of one-off cost, most of it Triton compiling fast.py's ~20 kernel variants one after another at their
# first launches. The patch compiles them before the first step, side by side in 16 threads (Triton's compiles run
# mostly outside the GIL: 12 variants on a 2-core CPU 10.0 -> 4.6 s with 2 threads), found by one stand-in forward on
# a short clip whose launches compile instead of running. Prediction: the first step 16.4 -> 8-10 s, the steps,
# decode and write unchanged. ~6 minutes with the start; each tree twice, alternating. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_ahead.sh "$PWD" > /tmp/ab_ahead.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_ahead.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_ahead
if [ "$1" = poll ]; then
  ab_poll $R $2 ab_ahead
  for c in $R/cache_*; do echo "$c: $(find $c -name '*.cubin' | wc -l) cubins"; done
  exit 0
fi
ab_setup $R "$1" main - ahead docs/bench/next/levers/11-kernels-compiled-ahead.patch
for i in 1 2; do
  ab_step $R ahead e2e_ahead_$i ahead_$i bench.py --e2e --frames 1150 --steps 3
  ab_step $R main e2e_main_$i main_$i bench.py --e2e --frames 1150 --steps 3
done
touch $R/done
