#!/bin/bash
# Prepared for the next one-H200 device session (issue 19): the code as committed, after run 30's compile setting.
# One daemon; every step one process with its own Inductor and Triton cache folders (the warm steps reuse
# e2e_cold30's). ~18 minutes of steps, ~20 with the machine's start (three calls). The imageio-ffmpeg >= 0.6 wheel
# must travel in .whl/
# (git-ignored; python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
#  --platform manylinux2014_x86_64 -d .whl imageio-ffmpeg==0.6.0), carry [".whl"]:
#   run(command='setsid nohup bash docs/bench/next/run31.sh "$PWD" > /tmp/run31.out 2>&1 < /dev/null & sleep 2;
#                bash docs/bench/next/run31.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/run31.sh poll 540', carry=[".whl"])     # at once, until "done"
# A machine goes back 30 s after a call ends: chain the calls with nothing in between (no edits: the daemon runs the
# tree of the first call anyway), and give it back after the last.
#   e2e_cold30  sample.py end to end, 1150 frames, all 30 steps, empty cache (run 30: first step 169.5 s, 5.04 s a
#               step, 338.5 s extrapolated from 3 steps); saves the portable cache artifacts   ~6 min
#   e2e_portable  3 steps, another empty cache, the artifacts loaded (--compile-cache): a fresh machine of the kind
#   e2e_warm    3 steps, e2e_cold30's cache (run 29, before run 30's setting: first step 37.5 s)   ~1.5 min each
#   e2e_eager   3 steps, no --compile (the fast forms eager): the cold alternative
#   forward     bench.py --compile --cuda-graph at n = 24, 128, 288 (the README's forward figures; run 29: 118.6 /
#               537.6 / 1264.9 ms, before pointwise autotuning was turned off)       ~4 min
#   e2e_warm30  30 steps warm: the headline share with a warm cache, measured   ~3.5 min
R=/tmp/run31
if [ "$1" = poll ]; then  # wait up to $2 s for the daemon, then its logs to $OUT (one tar) and a summary
  end=$((SECONDS + $2))
  while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  cat $R/log/env.log $R/progress 2>/dev/null
  python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path)); res = res.get("e2e", res)
    rows = [(r["frames_per_gpu"], round(r["seconds"], 1), round(r["ms"], 1)) for r in res.get("rows", [])]
    print(os.path.basename(path), "timings", res.get("timings_s"), "per eval", res.get("s_per_eval_after_first"),
          "rows (n, s, ms)", rows, "compile", json.dumps(res.get("compile_stats")))
PY
  tar czf $OUT/run31.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/repo && cd $R/repo || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index .whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc
  git log --oneline -1; } > $R/log/env.log 2>&1
step() {  # step NAME CACHE TIMEOUT cmd...
  local name=$1 cache=$2 limit=$3; shift 3
  echo "$(date +%s) start $name" >> $R/progress
  TORCHINDUCTOR_CACHE_DIR=$R/$cache/inductor TRITON_CACHE_DIR=$R/$cache/triton timeout $limit "$@" \
    > $R/log/$name.log 2>&1
  echo "$(date +%s) end $name rc=$?" >> $R/progress
}
E="--e2e --frames 1150"
P="--compile --compile-cache $R/portable.bin"
step e2e_cold30 ce 480 python3 bench.py $E $P --steps 30 --json $R/log/e2e_cold30.json
ls -l $R/portable.bin >> $R/progress 2>&1
step e2e_portable pe 300 python3 bench.py $E $P --steps 3 --json $R/log/e2e_portable.json
step e2e_warm ce 200 python3 bench.py $E --compile --steps 3 --json $R/log/e2e_warm.json
step e2e_eager ee 200 python3 bench.py $E --steps 3 --json $R/log/e2e_eager.json
step forward cf 420 python3 bench.py --compile --cuda-graph --check-frames 0 --iters 5 --frames-per-gpu 24 128 288 \
  --json $R/log/forward.json
step e2e_warm30 ce 330 python3 bench.py $E --compile --steps 30 --json $R/log/e2e_warm30.json
touch $R/done
