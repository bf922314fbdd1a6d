#!/bin/bash
# Run 34 (one H200, issue 19), in one daemon: (1) levers/5-static-shapes.patch against main end to end at 1150 frames,
# cold and warm (prediction: first step -8 to -10 s warm, ~42 -> ~33 s, at least as much cold; each further step
# unchanged); (2) main with only the graphs of the largest frames compiled (docs/bench/next/probe_sizes.py: UNet level 1
# alone, then levels 1-2), cold (prediction: level 1 alone ~1/4 of the graphs and ~half the step's savings, first step
# ~45 s and ~6.3 s a step; a cold 30-step run below both the eager 265 s and the all-compiled ~300 s); (3) the eager
# fast forms in the same call, the baseline of (2). 3 steps each (the first pays the compile), each process with its
# own caches. ~13 minutes of steps. Calls, carry [".whl"] (imageio-ffmpeg wheel, see run_x2.sh):
#   run(command='setsid nohup bash docs/bench/next/run34.sh "$PWD" > /tmp/run34.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/run34.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/run34.sh poll 540', carry=[".whl"])     # at once, until "done"
# A machine goes back 30 s after a call ends: chain the calls with nothing in between, give it back after the last.
R=/tmp/run34
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
  tar czf $OUT/run34.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/static || exit 1
(cd $R/static && git apply docs/bench/next/levers/5-static-shapes.patch) > $R/log/apply.log 2>&1 || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index "$1"/.whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
E="--e2e --frames 1150 --steps 3"
step() {  # step TREE CACHE NAME cmd...: one end-to-end run through bench.py in TREE, its caches in CACHE
  local tree=$1 cache=$2 name=$3; shift 3
  echo "$(date +%s) start $name" >> $R/progress
  (cd $R/$tree && TORCHINDUCTOR_CACHE_DIR=$R/$cache/inductor TRITON_CACHE_DIR=$R/$cache/triton timeout 330 \
    "$@" --json $R/log/$name.json > $R/log/$name.log 2>&1)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}
step static cs static_cold python3 bench.py $E --compile
step main cm main_cold python3 bench.py $E --compile
step static cs static_warm python3 bench.py $E --compile
step main cm main_warm python3 bench.py $E --compile
step main c1 level1_cold python3 docs/bench/next/probe_sizes.py 2560 $E --compile
step main c2 levels12_cold python3 docs/bench/next/probe_sizes.py 640 $E --compile
step main ce eager python3 bench.py $E
touch $R/done
