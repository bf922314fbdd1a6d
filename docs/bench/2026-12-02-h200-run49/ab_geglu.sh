#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 49 (run 48 measured: GEGLU as one Triton GEMM over an
# interleaved weight copy, 2.654 -> 2.465 ms over the three widths' chunks, the step 4.474 -> 4.323 s, 30 steps
# 152.56 s; its float32 check failed on the stale bf16 copy; compile_kernels 11.2 s in threads, 6.1 s in processes,
# then 10 new Triton cache entries in the first forward). Now: (1) fast.geglu_gemm from the projection's own weight
# (two accumulators a tile) over 8 tile configs, beside run 48's interleaved kernel and a persistent form
# (probe_geglu_gemm.py); the best config of fast's goes into main's GEGLU_TILES. (2) The cold compile three ways
# (probe_compile.py: warmup threads, empty-grid launches in threads = compile_kernels now, forked processes), the
# first forward's new cache entries listed. (3) The A/B against run 47's code (before: geglu.patch reversed): the
# step at 1150 frames (3 steps, cold), the bf16 check and n = 128, 24, 288, then all 30 steps of main. Prediction:
# the two-accumulator GEMM within 5 % of the interleaved one; empty-grid launches leave no new cache entries to the
# first forward, the first step -2 to -5 s; the step 4.47 -> ~4.3 s; n = 128 517 -> ~495 ms; 30 steps ~148 s.
# ~12 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_geglu.sh "$PWD" > /tmp/ab_geglu.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_geglu.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_geglu.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_geglu
if [ "$1" = poll ]; then ab_poll $R $2 ab_geglu; exit 0; fi
ab_setup $R "$1" main - before -
(cd $R/before && git apply -R docs/bench/next/geglu.patch) >> $R/log/apply.log 2>&1 || exit 1
ab_step $R main probe_geglu probe_geglu docs/bench/next/probe_geglu_gemm.py
python3 - $R/log/probe_geglu.json $R/main/fast.py >> $R/log/apply.log 2>&1 <<'PY'
import collections, json, re, sys
rows = json.load(open(sys.argv[1]))["rows"]
total = collections.defaultdict(float)
for r in rows:
    total[r["form"]] += r["ms"]
best = min((f for f in total if f.startswith("fused") and sum(1 for r in rows if r["form"] == f) == 3), key=total.get)
print({f: round(t, 3) for f, t in total.items()}, "best", best)
src = open(sys.argv[2]).read()
src = re.sub(r"GEGLU_TILES = \([0-9, ]*\)", "GEGLU_TILES = " + best[len("fused "):], src, count=1)
open(sys.argv[2], "w").write(src)
PY
grep -n "^GEGLU_TILES" $R/main/fast.py >> $R/log/apply.log
ab_step $R main compile_warmup cw docs/bench/next/probe_compile.py --mode warmup
ab_step $R main compile_empty_grid ce docs/bench/next/probe_compile.py --mode empty-grid
ab_step $R main compile_processes cp docs/bench/next/probe_compile.py --mode processes
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R before e2e_before e2e_before bench.py $E
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R main eager_main eager_main bench.py $F --profile $R/log/prof_eager_main.txt
ab_step $R before eager_before eager_before bench.py $F --check-frames 0
ab_step $R main e2e30_main e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
