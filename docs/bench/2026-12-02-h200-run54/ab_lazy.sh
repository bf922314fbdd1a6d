#!/bin/bash
# One-H200 device session (issue 19), run 54, as it ran from docs/bench/next (beside ab_common.sh): levers/17
# and the GEGLU GEMM's tiles, each against main (run 53's code), in one call.
#  - levers/17-lazy-residual-bias.patch ("lazy"): a transformer's TransformerBlocks leave each residual sum's bias out
#    of x (the GEMM adds onto x in place) and carry the biases as one float32 vector that the next LayerNorm adds in
#    its pass and proj_out's bias takes in the end (W shift): the LayerNorm kernel writes y only, not y and x + bias.
#    Run 49's op table at n = 128: the LayerNorm kernels 23.5 ms, bandwidth-bound (read x, write y, write r); one
#    write of three gone: ~-7.8 ms. Prediction: graphed n = 128 485.5 -> ~478 ms, n = 288 1059 -> ~1043 ms, the step
#    at 1150 frames -1.5 % (4.13 -> ~4.07 s), the LayerNorm kernels' line in the op table ~15.7 ms; bf16 vs float32
#    2.03e-2 unchanged (its x + bias is rounded once less).
#  - "tiles": main with GEGLU_TILES set to the config of fast.geglu_gemm that probe_geglu_gemm.py (first step here)
#    finds fastest over the three widths, when not main's own. Run 51's probe: main's (128, 128, 64, 8, 4, 3) 2.544
#    ms over the widths, the interleaved copy 2.431, a persistent two-accumulator kernel 1.18 against main's 1.296 ms
#    at C = 1280. Prediction: at most -4 % of the GEGLU GEMM's ~80 ms, the forward -0 to -0.7 %.
# First test_all.py's GPU-only test in main and lazy. ~12 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_lazy.sh "$PWD" > /tmp/ab_lazy.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_lazy.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_lazy.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_lazy
if [ "$1" = poll ]; then ab_poll $R $2 ab_lazy; exit 0; fi
ab_setup $R "$1" main - lazy docs/bench/next/levers/17-lazy-residual-bias.patch tiles -
ab_gpu_test $R main
ab_gpu_test $R lazy
ab_step $R main probe_geglu probe_geglu docs/bench/next/probe_geglu_gemm.py
ab_best_geglu_tiles $R/log/probe_geglu.json $R/tiles/fast.py >> $R/log/apply.log 2>&1
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R lazy e2e_lazy e2e_lazy bench.py $E
ab_step $R tiles e2e_tiles e2e_tiles bench.py $E
ab_step $R main e2e_main2 e2e_main bench.py $E
ab_step $R lazy e2e_lazy2 e2e_lazy bench.py $E
G="--frames-per-gpu 128 24 288 --iters 9 --cuda-graph --check-frames 0"
ab_step $R main graph_main e2e_main bench.py $G
ab_step $R lazy graph_lazy e2e_lazy bench.py $G
ab_step $R tiles graph_tiles e2e_tiles bench.py $G
P="--frames-per-gpu 128 --iters 5"
ab_step $R lazy eager_lazy e2e_lazy bench.py $P --profile $R/log/prof_lazy.txt
ab_step $R main eager_main e2e_main bench.py $P --check-frames 0 --profile $R/log/prof_main.txt
touch $R/done
