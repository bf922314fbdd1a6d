#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/8-decoder-channels-last.patch against main. sample.py's
# VAE decoder (eager in every mode) with fast.accelerate_decoder: channels-last from its first ResnetBlock on, each
# ResnetBlock as fast.residual_block (run 38's UNet form: GroupNorm + SiLU as fast.py's Triton kernels, conv biases
# folded into the next pass, cuDNN's NHWC convs without transposes), the mid attention's GroupNorm and norm_out as
# frame_pass (F.group_norm copies a channels-last input to NCHW: run 30's channels-last decoder lost, 6.96 -> 9.12 ms a
# frame). Prediction: probe_decode.py (cuDNN autotuning on, batch 8) 6.96 -> 5.0-5.5 ms a frame, max diff <= 11 uint8
# levels (run 30: compiled 5.25 ms, 11 levels); sample.py at 1150 frames (bench.py --e2e, eager): decode 8.4 -> 6.0-6.5
# s, the steps unchanged (the control). ~7 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_decoder.sh "$PWD" > /tmp/ab_decoder.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_decoder.sh poll 540', carry=[".whl"])
R=/tmp/ab_decoder
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
  cat $R/log/probe_decode.log 2>/dev/null; tail -3 $R/log/*.err 2>/dev/null
  tar czf $OUT/ab_decoder.tgz -C $R log progress 2>/dev/null
  exit 0
fi
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/main && cp -r "$1"/. $R/decoder || exit 1
(cd $R/decoder && git apply docs/bench/next/levers/8-decoder-channels-last.patch) > $R/log/apply.log 2>&1 || exit 1
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
echo "$(date +%s) start probe_decode" >> $R/progress
(cd $R/decoder && TORCHINDUCTOR_CACHE_DIR=$R/cache_probe/inductor TRITON_CACHE_DIR=$R/cache_probe/triton \
  timeout 300 python3 docs/bench/next/probe_decode.py --frames 128 > $R/log/probe_decode.log 2>&1)
echo "$(date +%s) end probe_decode rc=$?" >> $R/progress
step decoder e2e_eager_decoder --e2e --frames 1150 --steps 3
step main e2e_eager_main --e2e --frames 1150 --steps 3
touch $R/done
