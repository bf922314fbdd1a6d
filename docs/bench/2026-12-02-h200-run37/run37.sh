#!/bin/bash
# Prepared for the next one-H200 device session (issue 19): levers/6-frames-channels-first.patch against main.
# model.SpatialTransformer returns ... + x, whose sum takes the layout of its first operand, a channels-last token view:
# from the first SpatialTransformer on, every frame the UNet hands on is channels-last (found on a CPU, 2026-12-02).
# On a GPU F.group_norm then copies each ResBlock's input to NCHW, the adds read across two layouts and the fast
# temporal forms copy where they were written for views (run 36, eager, n = 128: aten::contiguous 72 ms, ~350 ms of
# elementwise kernels, 2D convs 218 ms against 91.5 compiled). The patch writes x + ... (values unchanged, frames
# channels-first throughout, tested). Predictions: eager forward at n = 128 -5 to -10 % (890 -> 800-850 ms), the
# eager step at 1150 frames ~8.06 -> ~7.4 s; compiled forward +-2 % (Inductor picks its own layouts inside each graph,
# but its graphs' inputs change). ~9 minutes of steps, ~10 with the machine's start. One daemon, polled:
#   run(command='setsid nohup bash docs/bench/next/ab_layout.sh "$PWD" > /tmp/ab_layout.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_layout.sh poll 540', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_layout.sh poll 540', carry=[".whl"])     # at once, until "done"
# A machine goes back 30 s after a call ends: chain the calls with nothing in between, give it back after the last.
R=/tmp/ab_layout
if [ "$1" = poll ]; then  # wait up to $2 s for the daemon, then its logs to $OUT (one tar) and a summary
  end=$((SECONDS + $2))
  while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  cat $R/log/env.log $R/progress 2>/dev/null
  python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path))
    if "e2e" in res:
        e = res["e2e"]
        print(os.path.basename(path), "timings", {k: round(v, 2) for k, v in e["timings_s"].items()}, "per eval",
              round(e["s_per_eval_after_first"], 3))
    else:
        print(os.path.basename(path), [(r["frames_per_gpu"], round(r["ms"], 1)) for r in res["rows"]],
              "check", res.get("check"))
PY
  tar czf $OUT/ab_layout.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/layout || exit 1
(cd $R/layout && git apply docs/bench/next/levers/6-frames-channels-first.patch) > $R/log/apply.log 2>&1 || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index "$1"/.whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
step() {  # step TREE NAME bench-args...: bench.py in TREE, its own compile caches, output to log/NAME.*
  local tree=$1 name=$2; shift 2
  echo "$(date +%s) start $name" >> $R/progress
  (cd $R/$tree && TORCHINDUCTOR_CACHE_DIR=$R/cache_$name/inductor TRITON_CACHE_DIR=$R/cache_$name/triton \
    timeout 330 python3 bench.py "$@" --json $R/log/$name.json > $R/log/$name.log 2>&1)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}
F="--frames-per-gpu 128 24 288 --iters 3"
step main eager_main $F --profile $R/log/prof_eager_main.txt
step layout eager_layout $F --profile $R/log/prof_eager_layout.txt
step main eager_main_again $F --check-frames 0
step layout e2e_eager_layout --e2e --frames 1150 --steps 3
step main e2e_eager_main --e2e --frames 1150 --steps 3
step layout compiled_layout --compile --cuda-graph --frames-per-gpu 128 --iters 5 --check-frames 0
step main compiled_main --compile --cuda-graph --frames-per-gpu 128 --iters 5 --check-frames 0
touch $R/done
