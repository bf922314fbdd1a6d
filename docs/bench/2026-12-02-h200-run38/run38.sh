#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/7-frames-channels-last.patch against main, eager only
# (the patch leaves the compiled path alone). Without --compile, each ResBlock's and SpatialTransformer's layers run
# channels-last between their channels-first input and output: two Triton kernels (the channels' moments; the
# GroupNorm from them with SiLU, or the residual add, each with its layout change) instead of F.group_norm, SiLU, the
# emb and bias adds; cuDNN's NHWC convs without transposes; GEGLU's x * gelu(gate) one Triton pass.
# Run 38a (its first version: moments per pixel block combined by PyTorch, GEGLU unchanged): n = 128 835.7 -> 782 ms,
# n = 24 245 -> 330-356 ms (launch-bound: ~45 more PyTorch ops per GroupNorm), step at 1150 frames 7.61 -> 6.97 s.
# Prediction for this version: n = 128 ~700-720 ms (GEGLU's two strided passes, 93 ms, become one, ~30), n = 24
# ~260-290 ms, the step at 1150 frames ~6.3-6.5 s. ~6 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_frames.sh "$PWD" > /tmp/ab_frames.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_frames.sh poll 540', carry=[".whl"])
R=/tmp/ab_frames
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
  tar czf $OUT/ab_frames.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/frames || exit 1
(cd $R/frames && git apply docs/bench/next/levers/7-frames-channels-last.patch) > $R/log/apply.log 2>&1 || exit 1
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
step frames eager_frames $F --profile $R/log/prof_eager_frames.txt
step main eager_main $F --check-frames 0
step frames e2e_eager_frames --e2e --frames 1150 --steps 3
step main e2e_eager_main --e2e --frames 1150 --steps 3
touch $R/done
