#!/usr/bin/env bash
# Run 25 (nvidia-h200, one GPU): two settings that change no code, A/B'd with trace128.py at n = 128 in one call each.
# (D = docs/bench/2026-11-24-h200-run25, from the repository root)
#   bash $D/run25.sh a  # as committed, then torch.backends.cudnn.benchmark_limit = 0 (cuDNN times every
#                       # algorithm for each conv shape, not only the 10 its heuristics rank first)
#   bash $D/run25.sh b  # as committed, then TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 (Inductor tunes
#                       # the block sizes of its fused kernels: 145 ms of the 540 at n = 128, run 23)
set -x -o pipefail
exec > >(tee -a $OUT/run25_$1.log) 2>&1
f() { grep -v "^W1" | grep -E '^== |^   [a-z]|^   +[0-9.]+ ms' | head -24; }
trace() {  # trace() OUT_SUBDIR [python statements run first]
  mkdir -p $OUT/$1
  timeout 280 python3 -c "import sys, torch; $2
sys.argv = ['trace128.py', '$OUT/$1', '128']; sys.path.insert(0, 'docs/bench/next'); import trace128
trace128.main('$OUT/$1', 128)" 2>&1 | f
  rm -f $OUT/$1/*.gz
}
case "$1" in
a) trace base ""; trace cudnn_all "torch.backends.cudnn.benchmark_limit = 0" ;;
b) trace base_b ""; TORCHINDUCTOR_COORDINATE_DESCENT_TUNING=1 trace cdt "" ;;
esac
