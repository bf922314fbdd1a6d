#!/usr/bin/env bash
# Run 24 (nvidia-h200, one GPU): the lone-GPU side of issue 5's 2-GPU targets, measured where they can be.
# (D = docs/bench/2026-11-24-h200-run24, from the repository root)
#   bash $D/run24.sh a  # n = 1024 and 1150 frames on one GPU: memory (<= 0.08 GiB/frame, 1150 fit?)
#                       # and the lone-GPU forward that a 2-rank n = 1024 run would be compared with
#   bash $D/run24.sh b  # one rank's share of the 2300-frame video (1150 frames), prompt to mp4, 30
#                       # steps; carry [".whl"] (imageio-ffmpeg wheel: the device image lacks it)
set -x -o pipefail
exec > >(tee -a $OUT/run24_$1.log) 2>&1
t() { grep -v "^W1\|UserWarning\|out\[i\|  return self" | tail -"$1"; }
nvidia-smi --query-gpu=name,memory.total,power.limit --format=csv
case "$1" in
a)
  timeout 560 python3 bench.py --compile --cuda-graph --frames-per-gpu 1024 1150 --check-frames 0 --iters 3 \
      --json $OUT/big.json 2>&1 | t 8 ;;
b)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
  timeout 560 python3 bench.py --e2e --compile --frames 1150 --steps 30 --json $OUT/e2e1150.json 2>&1 | t 30 ;;
esac
