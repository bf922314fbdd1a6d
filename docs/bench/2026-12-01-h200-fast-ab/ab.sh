#!/usr/bin/env bash
# Same-call A/B on one H200: the forward before the move of the GPU forms into fast.py (base/, commit 69a2219) and
# after it (new/), bench.py --compile --cuda-graph; first the GPU-only tests of new/. Both trees are carried in .dev16/
# (device tool: carry [".dev16"]); the Inductor cache is shared, so the second compile of identical graphs is shorter.
#   bash .dev16/new/docs/bench/2026-12-01-h200-fast-ab/ab.sh "24 128"
set -u
export PYTHONUNBUFFERED=1
frames=${1:-"24 128 288"}
root=$(pwd)/.dev16
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch; print(torch.__version__)"
echo "== new: GPU tests"
(cd "$root/new" && python3 -m pytest -q -x test_all.py -k "graphed or accelerate" 2>&1 | tail -n 5) | tee "$OUT/tests.log"
for v in base new; do
  echo "== $v: bench.py --compile --cuda-graph --frames-per-gpu $frames"
  (cd "$root/$v" && python3 bench.py --compile --cuda-graph --frames-per-gpu $frames --check-frames 0 --iters 5 \
     --json "$OUT/$v.json" 2>&1 | grep -v Warning | tail -n 12) | tee "$OUT/$v.log"
done
