#!/bin/bash
# Device run 29 (one H200), issue 19: the levers' A/Bs and the end-to-end table, one daemon; poll29.sh collects.
#   T0 = main at 9417eba (the tree sent), T2 = + levers/2-regional-compile.patch (now main, 092fd61), T4 = T2 +
#   levers/3-triton-geglu.patch + levers/4-fp8.patch (without --fp8 it is T2 + the Triton GEGLU); T2 and T4 travel
#   as their .py/.sh files in .dev_ab/ with the imageio-ffmpeg 0.6.0 wheel (sample.py's mp4 segments), so:
#     run(command='setsid nohup bash .dev_ab/run29.sh "$PWD" > /tmp/run29.out 2>&1 < /dev/null & sleep 2;
#                  bash .dev_ab/poll29.sh 540', carry=[".dev_ab"])      # then twice more: bash .dev_ab/poll29.sh 540
R=/tmp/run
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/repo && cd $R/repo || exit 1
T0=$R/repo T2=$R/repo/.dev_ab/t2 T4=$R/repo/.dev_ab/t4
for t in $T2 $T4; do
  ln -s $T0/fixtures $t/fixtures; ln -s $T0/bpe_simple_vocab_16e6.txt.gz $t/
  ln -s $T0/tiny/tiny_vc2.safetensors $t/tiny/; ln -s $T0/tiny/config.json $t/tiny/
done
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index .dev_ab/whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } > $R/log/env.log 2>&1
launch='import json, sys, torch, bench
res = bench.main(sys.argv[1:])
from torch._dynamo import utils
print("dynamo:", json.dumps(dict(graphs=utils.counters["stats"]["unique_graphs"], **{k: round(v, 1) for k, v in
      utils.calculate_time_spent().items()})))'
# step NAME TREE CACHE TIMEOUT cmd...: one process in TREE with Inductor's and Triton's caches in $R/CACHE
step() {
  local name=$1 tree=$2 cache=$3 limit=$4; shift 4
  echo "$(date +%s) start $name" >> $R/progress
  (cd $tree && TORCHINDUCTOR_CACHE_DIR=$R/$cache/inductor TRITON_CACHE_DIR=$R/$cache/triton timeout $limit "$@") \
    > $R/log/$name.log 2>&1
  echo "$(date +%s) end $name rc=$?" >> $R/progress
}
B="--compile --cuda-graph --check-frames 0 --iters 5"
step t0_cold $T0 c0 400 python3 -c "$launch" $B --frames-per-gpu 128 --json $R/log/t0_cold.json
step t2_cold $T2 c2 420 python3 -c "$launch" $B --frames-per-gpu 24 128 288 --json $R/log/t2_cold.json
step t4_tests $T4 c4t 200 python3 -m pytest -q -x test_all.py -k "fused_geglu or graphed or (fp8 and not without)"
step t3_warm $T4 c2 300 python3 -c "$launch" $B --frames-per-gpu 128 24 --json $R/log/t3_warm.json
step t4_check $T4 c4c 150 python3 bench.py --fp8 --cuda-graph --frames-per-gpu 24 --check-frames 16 --iters 3 --json $R/log/t4_check.json
step t4_fp8 $T4 c2 300 python3 -c "$launch" $B --fp8 --frames-per-gpu 128 24 --json $R/log/t4_fp8.json
AFTER=$(python3 - $R/log <<'PY'
import json, sys
def ms(name, n):
    try:
        return {r["frames_per_gpu"]: r["ms"] for r in json.load(open(f"{sys.argv[1]}/{name}.json"))["rows"]}[n]
    except Exception:
        return float("inf")
print("/tmp/run/repo/.dev_ab/t4" if ms("t3_warm", 128) < 0.99 * ms("t2_cold", 128) else "/tmp/run/repo/.dev_ab/t2")
PY
)
echo "after tree: $AFTER" >> $R/progress
E="--e2e --compile --frames 1150 --steps 4"
step e2e_after_cold $AFTER ca 420 python3 bench.py $E --json $R/log/e2e_after_cold.json
step e2e_after_warm $AFTER ca 300 python3 bench.py $E --json $R/log/e2e_after_warm.json
step e2e_before_cold $T0 cb 420 python3 bench.py $E --json $R/log/e2e_before_cold.json
step e2e_before_warm $T0 cb 300 python3 bench.py $E --json $R/log/e2e_before_warm.json
step geglu_micro $T4 c2 180 python3 docs/bench/next/geglu_micro.py --frames 128
touch $R/done
