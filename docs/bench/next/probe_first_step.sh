#!/usr/bin/env bash
# Where the first denoising step's one-off cost goes at 1150 frames on one H200 (run 29: 232 s with an empty compile
# cache, 37.5 s warm, against 4.97 s for each further step), and whether compiling at a small clip first is cheaper
# (since run 29 every compiled graph but the banded attention's is symbolic in the clip length, so the long clip
# would reuse them). One part per device call (each under 600 s); every process gets its own empty cache folders:
#   run(command="bash docs/bench/next/probe_first_step.sh e2e")        # ~5 min: sample.py's first step, cold, warm
#   run(command="bash docs/bench/next/probe_first_step.sh direct")     # ~4.5 min: bench's first forward at 1150, cold
#   run(command="bash docs/bench/next/probe_first_step.sh small")      # ~4 min: at 16 frames first, then 1150, cold
#   run(command="bash docs/bench/next/probe_first_step.sh pointwise")  # ~4.5 min: direct, but Inductor's pointwise
#       kernels not autotuned (config.triton.autotune_pointwise = False: one launch config each, not timed)
# --e2e needs imageio-ffmpeg >= 0.6 (not in the device image: carry its wheel, see docs/bench/next/run_x2.sh).
# Read: the JSONs' "compile_stats" (fast.compile_stats: graphs, and the seconds of Dynamo, Inductor, Triton's
# compiler and the autotuner) against the first step, or against bench's row "seconds" (which also holds the eager
# FLOP count at that n, one warm-up and 3 timed forwards). direct vs small vs pointwise at 1150: the row's seconds and
# its ms (a compile strategy that slows the steady forward by more than ~0.5 % loses over 30 steps what it saves).
set -u
export PYTHONUNBUFFERED=1
part=${1:?which part: e2e, direct, small or pointwise}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
cold() {  # cold NAME CACHE cmd...: the command with Inductor's and Triton's caches in /tmp/probe_CACHE
  local name=$1 cache=/tmp/probe_$2; shift 2
  echo "== $name: $*"
  start=$SECONDS
  TORCHINDUCTOR_CACHE_DIR=$cache/inductor TRITON_CACHE_DIR=$cache/triton timeout 560 "$@" --json "$OUT/$name.json" \
    2>&1 | grep -v "Warning\|warn(\|it/s\]\|step/s\]" | tail -n 6
  echo "$name: process $((SECONDS - start)) s"
}
B="--compile --check-frames 0 --warmup 1 --iters 3"
case $part in
  e2e)
    cold e2e_cold e2e python3 bench.py --e2e --compile --frames 1150 --steps 1
    cold e2e_warm e2e python3 bench.py --e2e --compile --frames 1150 --steps 1 ;;
  direct)
    cold direct direct python3 bench.py $B --frames-per-gpu 1150 ;;
  small)
    cold small small python3 bench.py $B --frames-per-gpu 16 1150 ;;
  pointwise)
    cold pointwise pointwise python3 -c "import sys, torch._inductor.config as c, bench
c.triton.autotune_pointwise = False
bench.main(sys.argv[1:])" $B --frames-per-gpu 1150 ;;
  *) echo "unknown part $part (e2e, direct, small, pointwise)"; exit 2 ;;
esac
python3 - "$OUT" <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path))
    res = res.get("e2e", res)
    rows = [(r["frames_per_gpu"], round(r["seconds"], 1), round(r["ms"], 1)) for r in res.get("rows", [])]
    first = res.get("timings_s", {}).get("first_step")
    print(os.path.basename(path), "first step", first, "rows (n, s, ms)", rows,
          "compile", json.dumps(res.get("compile_stats")))
PY
