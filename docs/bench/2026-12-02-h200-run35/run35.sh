#!/bin/bash
# Run 35 (one H200, issue 19), one daemon: (1) `--compile-cache` with every shape static (run 34 landed it; run 31
# measured the file with the symbolic frame count): a cold run saves the file, a process with empty caches loads it.
# Prediction: its first step as a warm machine's, ~28 s. (2) cuDNN's autotuning in sample.py (bench.py's forward sets
# torch.backends.cudnn.benchmark, sample.py does not): warm runs without and with it, same call. Prediction: the step
# -0 to -2 % (the convs are 17 % of a forward; at n = 128 bench.py's forward runs 4.17 ms a frame, sample.py's step
# 4.27), the decode perhaps -5 % (run 30's probe, with it: 6.96 ms a frame; sample.py: 7.3). 1150 frames, 3 steps.
# ~6 minutes of steps. Calls, carry [".whl"] (imageio-ffmpeg wheel, see run_x2.sh):
#   run(command='setsid nohup bash docs/bench/next/run35.sh "$PWD" > /tmp/run35.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/run35.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/run35.sh poll 540', carry=[".whl"])     # at once, until "done"
R=/tmp/run35
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
  ls -l $R/cache.bin* >> $R/progress 2>/dev/null
  tar czf $OUT/run35.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/repo && cd $R/repo || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index .whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
E="--e2e --compile --frames 1150 --steps 3"
step() {  # step CACHE NAME cmd...: one end-to-end run through bench.py, Inductor's and Triton's caches in CACHE
  local cache=$1 name=$2; shift 2
  echo "$(date +%s) start $name" >> $R/progress
  TORCHINDUCTOR_CACHE_DIR=$R/$cache/inductor TRITON_CACHE_DIR=$R/$cache/triton timeout 330 \
    "$@" --json $R/log/$name.json > $R/log/$name.log 2>&1
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}
BENCHMARK="import sys, torch, bench; torch.backends.cudnn.benchmark = True; bench.main(sys.argv[1:])"
step c1 cold python3 bench.py $E --compile-cache $R/cache.bin
step c2 portable python3 bench.py $E --compile-cache $R/cache.bin
step c1 warm python3 bench.py $E
step c1 warm_cudnn_benchmark python3 -c "$BENCHMARK" $E
step c1 warm_again python3 bench.py $E
touch $R/done
