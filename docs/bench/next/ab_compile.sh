#!/usr/bin/env bash
# Cold compile A/B on one H200 (issue 19, "the compile cost"): bench.py --compile --cuda-graph on two trees, one
# after the other, each with its own empty Inductor/Triton cache (both cold: nothing compiled on the machine before).
# Per tree: the bench table (ms/forward), per n the row's seconds (compilation, cuDNN autotuning, CUDA-graph recording,
# 2 warm-up and 5 timed forwards), and dynamo's totals (graphs compiled, seconds in dynamo and in Inductor).
#   bash ab_compile.sh BASE NEW [FRAMES [file]]  # FRAMES: the clip lengths n, default "24" (~2.5 min a tree);
#       "24 128" shows a second n (~5.5 min for a tree that compiles everything again). "file": NEW's cold run also
#       saves its compiled artifacts (--compile-cache), then NEW runs once more with another empty cache, loading
#       them: a fresh machine given the file (warm from a file, not cold; ~1 min more)
# Prepared for one device call (trees carried in .dev_ab19, e.g. BASE = main at 6ae4ffc, NEW = branch
# regional-compile; only the .py files are needed):
#   rm -rf /work/main/.dev_ab19 && mkdir -p /work/main/.dev_ab19/base /work/main/.dev_ab19/new
#   git -C /work/main archive 6ae4ffc -- '*.py' | tar -x -C /work/main/.dev_ab19/base
#   git -C /work/main archive regional-compile -- '*.py' | tar -x -C /work/main/.dev_ab19/new
#   cp docs/bench/next/ab_compile.sh /work/main/.dev_ab19/
#   run: bash .dev_ab19/ab_compile.sh .dev_ab19/base .dev_ab19/new    carry [".dev_ab19"], timeout_s 600
set -u
export PYTHONUNBUFFERED=1
base=$(cd "$1" && pwd) new=$(cd "$2" && pwd) frames=${3:-24} file=${4:-}
artifacts=$(mktemp -d /tmp/ab_compile_artifacts.XXXXXX)/new.bin
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__)"
# bench.main, then dynamo's totals for the whole process (every n, compiled cold)
launch='import json, sys, torch, bench
res = bench.main(sys.argv[1:])
from torch._dynamo import utils
print("dynamo:", json.dumps(dict(graphs=utils.counters["stats"]["unique_graphs"], **{k: round(v, 1) for k, v in
      utils.calculate_time_spent().items()})))'
runs="base new${file:+ new_from_file}"
for v in $runs; do
  name=${v%%_*} extra=
  tree=${!name}
  [ -n "$file" ] && [ "$v" != base ] && extra="--compile-cache $artifacts"  # new: saves it, new_from_file: loads it
  cache=$(mktemp -d "/tmp/ab_compile_$v.XXXXXX")
  echo "== $v ($tree): bench.py --compile --cuda-graph --frames-per-gpu $frames, empty cache $cache $extra"
  start=$(date +%s)
  (cd "$tree" && TORCHINDUCTOR_CACHE_DIR="$cache/inductor" TRITON_CACHE_DIR="$cache/triton" timeout 420 \
     python3 -c "$launch" --compile --cuda-graph --frames-per-gpu $frames --check-frames 0 --iters 5 $extra \
     --json "$OUT/$v.json" 2>&1 | grep -v "Warning\|warn(" | tail -n 14) | tee "$OUT/$v.log"
  echo "$v: process $(( $(date +%s) - start )) s" | tee -a "$OUT/$v.log"
  rm -rf "$cache"
done
python3 - "$OUT" <<'PY'
import json, os, sys
for v in ("base", "new", "new_from_file"):
    path = os.path.join(sys.argv[1], f"{v}.json")
    if os.path.exists(path):
        for r in json.load(open(path))["rows"]:
            print(f"{v:13}  n {r['frames_per_gpu']:4}  {r['ms']:7.1f} ms/forward  row {r['seconds']:6.1f} s")
PY
