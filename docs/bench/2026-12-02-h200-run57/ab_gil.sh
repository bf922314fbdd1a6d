#!/bin/bash
# Run 57 (one H200, 2026-12-02), as it ran from docs/bench/next (with levers/19's patch beside it). Its probe rows
# ran; every end-to-end row failed at once (rc 2): the .whl/ wheel was imageio-ffmpeg 0.5.1, whose ffmpeg 4.2.2 has
# no setts filter for the segment join (ab_common.sh's ab_setup now stops early on that). As prepared: why
# compile_kernels' stand-ins last until the compiles end (run 56), and levers/19 against main, end to end with empty
# compile caches.
#  - probe_stand_in.py in main, each row a fresh process: the stand-ins alone, cold, warm, and cold with a 0.5 and a
#    0.1 ms GIL switch interval, the launching thread's stack sampled.
#  - levers/19-compile-beside-gil-switch.patch ("gil"): levers/18 (the first forward runs while the variants compile,
#    each launch waiting for its own variant) with the GIL's switch interval at 0.1 ms while the compiles run. The
#    hypothesis: the compile threads hold the GIL in Triton's Python front end, and the launching thread, which gives
#    it up at every CUDA call, waits up to 5 ms to get it back each time. Prediction if it holds (the probe's 0.1 ms
#    row: stand-ins ending well before the compiles): the first step at 1150 frames cold 10.5-12.2 -> ~7-8 s, the
#    other steps unchanged (the interval goes back once all are compiled); if it does not, no change (run 55).
#  - a 30-step cold run of whichever tree had the shorter first steps, last (the headline).
# ~12 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_gil.sh "$PWD" > /tmp/ab_gil.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_gil.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_gil.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_gil
if [ "$1" = poll ]; then ab_poll $R $2 ab_gil; exit 0; fi
ab_setup $R "$1" main - gil docs/bench/2026-12-02-h200-run57/19-compile-beside-gil-switch.patch
P=docs/bench/2026-12-02-h200-run57/probe_stand_in.py
ab_step $R main probe_noop probe_n $P --noop
ab_step $R main probe_cold probe_a $P
ab_step $R main probe_warm probe_a $P
ab_step $R main probe_cold_0.5ms probe_b $P --switch-interval 0.0005
ab_step $R main probe_cold_0.1ms probe_c $P --switch-interval 0.0001
E="--e2e --frames 1150 --steps 3"
for i in 1 2 3; do
  ab_step $R main e2e_main$i e2e_main$i bench.py $E
  ab_step $R gil e2e_gil$i e2e_gil$i bench.py $E
done
best=$(python3 - $R/log <<'PY'
import json, sys
first = {t: sum(json.load(open(f"{sys.argv[1]}/e2e_{t}{i}.json"))["e2e"]["timings_s"]["first_step"] for i in (1, 2, 3))
         for t in ("main", "gil")}
print(min(first, key=first.get))
PY
)
echo "30 steps: ${best:-main}" >> $R/progress
ab_step $R ${best:-main} e2e30_${best:-main} e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
