#!/bin/bash
# Prepared for a one-H200 device session (issue 19), run 48. (1) GEGLU as one Triton GEMM (fast.geglu_gemm, x *
# gelu(gate) in its epilogue) against cuBLAS's projection + geglu_kernel at the UNet's widths (probe_geglu_gemm.py);
# the tile config with the least time over the three widths goes into main's GEGLU_TILES for the rest. (2) Triton's
# cold compile of the kernel variants: compile_kernels' threads against forked processes (probe_compile.py, an empty
# cache each). (3) The A/B: main (geglu.patch) against before (it reversed): the bf16 check and n = 128, 24, 288, the
# step at 1150 frames (3 steps, cold), then all 30 steps of main. Prediction: GEGLU's 38 ms at n = 128 (op table,
# run 43) mostly gone, the projection's half-width write too: n = 128 511 -> 470-490 ms, the step 4.42 -> 4.1-4.25 s,
# if the Triton GEMM keeps cuBLAS's rate (run 29's two-accumulator GEMM lost 2.8 %); processes compile the ~25
# variants in ~2 s against the threads' ~7. ~13 minutes with the start. One daemon:
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
ab_step $R main compile_threads ct docs/bench/next/probe_compile.py --mode threads
ab_step $R main compile_processes cp docs/bench/next/probe_compile.py --mode processes
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R before e2e_before e2e_before bench.py $E
F="--frames-per-gpu 128 24 288 --iters 9"
ab_step $R main eager_main eager_main bench.py $F --profile $R/log/prof_eager_main.txt
ab_step $R before eager_before eager_before bench.py $F --check-frames 0
ab_step $R main e2e30_main e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
