#!/bin/bash
# Prepared for a one-H200 device session (issue 19): --compile with only the clip-parallel arithmetic compiled and the
# per-frame layers in run 38's eager fast forms (channels-last, fast.py's Triton kernels), against all of it compiled
# and against no compile; no patch: docs/bench/next/probe_regions.py hybrid. Run 32 measured each half of the compiled
# regions with the plain per-frame forms: the arithmetic alone 61.5 s of compile for 8.00 -> 6.43 s a step. Run 38's
# eager forms took the per-frame layers 7.62 -> 6.55 s a step. Prediction at 1150 frames: the hybrid's step 5.0-5.4 s
# (all compiled: 5.10), its first step ~60-75 s cold and ~12-16 s warm (all compiled: ~120 and ~28), so over 30 steps
# ~240-255 s cold (no compile: ~230 s, still the faster one cold) and ~175-190 s warm (all compiled: ~198 s): a better
# --compile for a machine that keeps its cache, if it holds. ~8.5 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_hybrid.sh "$PWD" > /tmp/ab_hybrid.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_hybrid.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_hybrid.sh poll 540', carry=[".whl"])     # at once, until "done"
R=/tmp/ab_hybrid
if [ "$1" = poll ]; then  # wait up to $2 s for the daemon, then its logs to $OUT (one tar) and a summary
  end=$((SECONDS + $2))
  while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  cat $R/log/env.log $R/progress 2>/dev/null
  python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    e = json.load(open(path))["e2e"]
    print(os.path.basename(path), "timings", {k: round(v, 2) for k, v in e["timings_s"].items()}, "per eval",
          round(e["s_per_eval_after_first"], 3))
PY
  tail -3 $R/log/*.err 2>/dev/null
  tar czf $OUT/ab_hybrid.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/tree || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index "$1"/.whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
step() {  # step NAME CACHE command...: in the tree, with the compile caches CACHE (empty at first use), to log/NAME.*
  local name=$1 cache=$2; shift 2
  echo "$(date +%s) start $name" >> $R/progress
  (cd $R/tree && TORCHINDUCTOR_CACHE_DIR=$R/cache_$cache/inductor TRITON_CACHE_DIR=$R/cache_$cache/triton \
    timeout 330 python3 "$@" --json $R/log/$name.json > $R/log/$name.log 2> $R/log/$name.err)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}
E="--e2e --frames 1150 --steps 3"
step hybrid_cold hybrid docs/bench/next/probe_regions.py hybrid $E --compile
step hybrid_warm hybrid docs/bench/next/probe_regions.py hybrid $E --compile
step compiled_cold compiled bench.py $E --compile
step compiled_warm compiled bench.py $E --compile
step eager eager bench.py $E
touch $R/done
