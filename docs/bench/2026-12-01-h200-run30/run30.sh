#!/bin/bash
# Device run 30 (one H200), issue 19: where the first step's one-off cost goes, decode/encode probe. One daemon.
R=/tmp/run30
rm -rf $R && mkdir -p $R/log && cp -r "$1"/. $R/repo && cd $R/repo || exit 1
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-deps --no-index .dev_ab/whl/*.whl > $R/log/pip.log 2>&1
{ nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; git log --oneline -1; } > $R/log/env.log 2>&1
# step NAME CACHE TIMEOUT cmd...: one process with Inductor's and Triton's caches in $R/CACHE
step() {
  local name=$1 cache=$2 limit=$3; shift 3
  echo "$(date +%s) start $name" >> $R/progress
  TORCHINDUCTOR_CACHE_DIR=$R/$cache/inductor TRITON_CACHE_DIR=$R/$cache/triton timeout $limit "$@" > $R/log/$name.log 2>&1
  echo "$(date +%s) end $name rc=$?" >> $R/progress
}
pw='import sys, torch._inductor.config as c, bench
c.triton.autotune_pointwise = False
bench.main(sys.argv[1:])'
E="--e2e --compile --frames 1150 --steps 3"
B="--compile --check-frames 0 --warmup 1 --iters 3"
step decode cd 240 python3 docs/bench/next/probe_decode.py --frames 128
step e2e_cold c1 480 python3 bench.py $E --json $R/log/e2e_cold.json
step e2e_pw_cold c2 480 python3 -c "$pw" $E --json $R/log/e2e_pw_cold.json
step small c3 420 python3 bench.py $B --frames-per-gpu 16 1150 --json $R/log/small.json
step e2e_warm c1 240 python3 bench.py $E --json $R/log/e2e_warm.json
step direct c4 420 python3 bench.py $B --frames-per-gpu 1150 --json $R/log/direct.json
touch $R/done
