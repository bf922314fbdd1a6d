#!/bin/bash
# Prepared for the next one-H200 device session (issue 19): levers/5-static-shapes.patch (sample.py compiles every
# shape static, its one clip length included) against main, end to end at 1150 frames, cold and warm, in one call.
# Run 33 measured Dynamo's part alone (eager backend, 128 frames): 18.9 -> 10.3 s. Prediction: the first step
# -8 to -10 s warm (~42 -> ~33 s), -8 s or more cold (Inductor's code generation has no symbolic sizes either), each
# further step unchanged or a little faster (static kernels). ~8 minutes of steps, ~10 with the machine's start.
# One daemon, polled; carry [".whl"] (imageio-ffmpeg wheel, see run_x2.sh):
#   run(command='setsid nohup bash docs/bench/next/ab_static.sh "$PWD" > /tmp/ab_static.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_static.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_static.sh poll 540', carry=[".whl"])     # at once, until "done"
# A machine goes back 30 s after a call ends: chain the calls with nothing in between, give it back after the last.
R=/tmp/ab_static
if [ "$1" = poll ]; then  # wait up to $2 s for the daemon, then its logs to $OUT (one tar) and a summary
  end=$((SECONDS + $2))
  while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  cat $R/log/env.log $R/progress 2>/dev/null
  python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path))["e2e"]
    print(os.path.basename(path), "timings", {k: round(v, 2) for k, v in res["timings_s"].items()}, "per eval",
          round(res["s_per_eval_after_first"], 3), "compile", json.dumps(res.get("compile_stats")))
PY
  tar czf $OUT/ab_static.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/static || exit 1
(cd $R/static && git apply docs/bench/next/levers/5-static-shapes.patch) > $R/log/apply.log 2>&1 || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index "$1"/.whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
step() {  # step TREE CACHE NAME: sample.py end to end through bench.py, 1150 frames, 3 steps, compiled
  echo "$(date +%s) start $3" >> $R/progress
  (cd $R/$1 && TORCHINDUCTOR_CACHE_DIR=$R/$2/inductor TRITON_CACHE_DIR=$R/$2/triton timeout 330 \
    python3 bench.py --e2e --compile --frames 1150 --steps 3 --json $R/log/$3.json > $R/log/$3.log 2>&1)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $3 rc=$rc" >> $R/progress
}
step static cs static_cold
step main cm main_cold
step static cs static_warm
step main cm main_warm
touch $R/done
