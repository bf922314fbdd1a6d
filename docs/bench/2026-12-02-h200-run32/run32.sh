#!/bin/bash
# Run 32 (one H200, issue 19): which compiled regions pay for their compile time in one cold run. sample.py at 1150
# frames, 2 steps (the first pays the compile), each in its own empty caches, with only the clip-parallel arithmetic
# compiled, then only the per-frame layers (docs/bench/next/probe_regions.py). Run 31 measured all compiled (first
# step 147.7 s, then 4.91 s a step) and none (9.4 s, then 8.00 s). ~6 minutes of steps. Calls, carry [".whl"]:
#   run(command='setsid nohup bash docs/bench/next/run32.sh "$PWD" > /tmp/run32.out 2>&1 < /dev/null & sleep 2;
#                bash docs/bench/next/run32.sh poll 420', carry=[".whl"])
#   run(command='bash docs/bench/next/run32.sh poll 300', carry=[".whl"])     # at once, if not "done"
R=/tmp/run32
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
  tar czf $OUT/run32.tgz -C $R log progress 2>/dev/null
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
E="--e2e --compile --frames 1150 --steps 2"
step clip_ops c1 300 python3 docs/bench/next/probe_regions.py clip_ops $E --json $R/log/clip_ops.json
step frame_layers c2 300 python3 docs/bench/next/probe_regions.py frame_layers $E --json $R/log/frame_layers.json
touch $R/done
