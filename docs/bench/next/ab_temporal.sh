#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/9-temporal-norm-kernels.patch against main, eager only
# (the compiled path compiles these passes itself). Without --compile, the temporal GroupNorms (the TemporalConvBlocks'
# and the TemporalTransformers') run on run 38's kernels: the moments from each frame's channel moments (one read of
# x; group_moments reads it three times and writes it once), the normalisation with its SiLU, or into the
# TemporalTransformer's token layout, as one pass (native_batch_norm, then silu_ or a permuted copy). Run 38's op table
# at n = 128 (eager 707.8 ms): sub 25 ms, sum 8, vector_norm 7, batch_norm 32, silu_ 8, contiguous 17: ~97 ms; compiled,
# the same passes take ~30 ms. Prediction: eager n = 128 -50 to -65 ms (-7 to -9 %), n = 288 alike, n = 24 within its
# spread; the eager step at 1150 frames 6.55 -> 6.0-6.2 s. ~6 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_temporal.sh "$PWD" > /tmp/ab_temporal.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_temporal.sh poll 540', carry=[".whl"])
R=/tmp/ab_temporal
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
        print(os.path.basename(path), [(r["frames_per_gpu"], round(r["ms"], 1), round(r["peak_gib"], 2))
                                       for r in res["rows"]], "check", res.get("check"))
PY
  tail -3 $R/log/*.err 2>/dev/null
  tar czf $OUT/ab_temporal.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/temporal || exit 1
(cd $R/temporal && git apply docs/bench/next/levers/9-temporal-norm-kernels.patch) > $R/log/apply.log 2>&1 || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index "$1"/.whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
  > $R/log/env.log 2>&1
step() {  # step TREE NAME bench-args...: bench.py in TREE, its own compile caches, output to log/NAME.*
  local tree=$1 name=$2; shift 2
  echo "$(date +%s) start $name" >> $R/progress
  (cd $R/$tree && TORCHINDUCTOR_CACHE_DIR=$R/cache_$name/inductor TRITON_CACHE_DIR=$R/cache_$name/triton \
    timeout 330 python3 bench.py "$@" --json $R/log/$name.json > $R/log/$name.log 2> $R/log/$name.err)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}
F="--frames-per-gpu 128 24 288 --iters 3"
step temporal eager_temporal $F --profile $R/log/prof_eager_temporal.txt
step main eager_main $F --check-frames 0
step temporal e2e_eager_temporal --e2e --frames 1150 --steps 3
step main e2e_eager_main --e2e --frames 1150 --steps 3
touch $R/done
