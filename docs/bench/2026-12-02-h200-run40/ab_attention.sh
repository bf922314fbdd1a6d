#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/10-dual-scope-kernel.patch against main, eager only.
# Without --compile, each temporal attention runs as one Triton kernel (fast.kernel_attention): every block of 64
# queries reads its band of local keys and the global keys where they lie in k and v, and writes the output in the
# layout to_out reads. Gone: banded_attention's padded copies of q, k and v, the bands' cat with the global keys, the
# mask tensor and the output's copy back (run 39's op table at n = 128, eager 626 ms: pad 31 ms, cat 41 (partly the
# keys' cat and the UNet's skip cats, which stay), copies 35, cuDNN's SDPA 61). Prediction: eager n = 128 -40 to -60
# ms (-6 to -10 %), n = 288 alike; n = 24 (one block, no band copies before either) within its spread; the step at
# 1150 frames 5.69 -> 5.2-5.4 s. Then all 30 steps of the faster tree, measured, not extrapolated. ~12 minutes with
# the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_attention.sh "$PWD" > /tmp/ab_attention.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_attention.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_attention.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_attention
if [ "$1" = poll ]; then ab_poll $R $2 ab_attention; cat $R/log/probe_attention.log 2>/dev/null; exit 0; fi
ab_setup $R "$1" main - attention docs/bench/next/levers/10-dual-scope-kernel.patch
echo "$(date +%s) start probe_attention" >> $R/progress
(cd $R/attention && TRITON_CACHE_DIR=$R/cache_probe/triton timeout 300 python3 docs/bench/next/probe_attention.py \
  --frames 128 1150 > $R/log/probe_attention.log 2>&1)
echo "$(date +%s) end probe_attention rc=$?" >> $R/progress
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R attention eager_attention eager_attention bench.py $F --profile $R/log/prof_eager_attention.txt
ab_step $R main eager_main eager_main bench.py $F --check-frames 0
ab_step $R attention e2e_eager_attention e2e_attention bench.py --e2e --frames 1150 --steps 3
ab_step $R main e2e_eager_main e2e_main bench.py --e2e --frames 1150 --steps 3
faster=$(python3 - $R/log <<'PY'
import json, sys
step = {t: json.load(open(f"{sys.argv[1]}/e2e_eager_{t}.json"))["e2e"]["s_per_eval_after_first"]
        for t in ("attention", "main")}
print(min(step, key=step.get))
PY
)
ab_step $R ${faster:-main} e2e30_eager_${faster:-main} e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
