#!/bin/bash
# The A/B after ab_lanes21.sh (one H200; written 2026-12-04, not yet run), from docs/bench/next (beside ab_common.sh):
# levers/22 ("fewer"), fewer Triton variants to compile before sample.py's first step: frame_pass_kernel's T and GROUP,
# channel_moments_kernel's N and moments_combine_kernel's S marked do_not_specialize (index math and loop counts, in
# no address a load or store is aligned on), and compile_kernels' variant keys told so. count_variants.py (a CPU):
# 45 -> 28 variants at 1150 frames (frame_pass 32 -> 18). Run 56: cold, the stand-ins last until the compiles end
# (5.3-6.8 s, 2.0 s warm). Prediction: the first step cold -1 to -2 s, warm unchanged; the step within +-0.3 %
# (the kernels' loads and stores keep their alignment); each tree's Triton cache holds as many kernels fewer.
# ~7 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_variants22.sh "$PWD" > /tmp/ab_v22.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_variants22.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_variants22
if [ "$1" = poll ]; then ab_poll $R $2 ab_variants22 | cut -c1-600; exit 0; fi
ab_setup $R "$1" main - fewer docs/bench/next/levers/22-fewer-variants.patch
ab_gpu_test $R fewer
E="--e2e --frames 1150 --steps 3"
for t in main fewer fewer main; do  # each with empty caches: the first step cold
  i=$((i + 1))
  ab_step $R $t e2e_$t$i $t$i bench.py $E
  echo "$(date +%s) $t$i: $(find $R/cache_$t$i/triton -name '*.cubin' | wc -l) kernels compiled" >> $R/progress
done
for t in main fewer; do ab_step $R $t e2e_${t}_warm ${t}$([ $t = main ] && echo 1 || echo 2) bench.py $E; done
touch $R/done
