#!/bin/bash
# The three waiting A/Bs of issue 19 in one daemon, so that they share one machine start (~17 minutes of steps; each
# script's poll waits for its own "done" and tars its own logs to $OUT):
#   run(command='setsid nohup bash docs/bench/next/ab_all.sh "$PWD" > /tmp/ab_all.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_temporal.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_decoder.sh poll 540', carry=[".whl"])     # at once, then
#   run(command='bash docs/bench/next/ab_hybrid.sh poll 540', carry=[".whl"])      # (each again until "done")
for s in temporal decoder hybrid; do
  bash "$1"/docs/bench/next/ab_$s.sh "$1"
done
