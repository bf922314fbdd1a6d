#!/bin/bash
# Run 63 (one H200), from docs/bench/next (beside ab_common.sh, check_pair.py and st_once.patch): guidance's pair
# runs the first SpatialTransformer once too, up to its first self-attention's output (norm, proj_in, LayerNorm,
# attn1 at the widest level, 40x64 tokens), the copies from there ("once": fast.resblock_once with
# spatial_transformer_forward(copies=2)), against main (run 61's pair, run 62's chunks: st_once.patch reversed).
# torch.utils.flop_counter (n = 16): proj_in + attn1 are 1.4 % of a forward's FLOPs, so 0.7 % goes, spatial
# attention at ~1/2 of the GEMMs' rate. Prediction: the step at 1150 frames -0.7 to -1 % (4.09 -> ~4.05 s on run
# 62's machine), check_pair's pair at n = 128 -0.7 to -1 % against run 61's 465.8 ms, its error against float32 as
# the written-out batch's (~1.7e-2); 30 steps cold -1 s.  ~8 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_once.sh "$PWD" > /tmp/ab_once.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_once.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_once
if [ "$1" = poll ]; then ab_poll $R $2 ab_once | cut -c1-600; exit 0; fi
ab_setup $R "$1" main - once -
(cd $R/main && git apply -R docs/bench/next/st_once.patch) >> $R/log/apply.log 2>&1 || { touch $R/done; exit 1; }
ab_gpu_test $R once
for t in once main; do ab_step $R $t check_$t check_$t docs/bench/next/check_pair.py --frames 16 128 288; done
E="--e2e --frames 1150 --steps 3"
for t in main once once main; do ab_step $R $t e2e_$t$((++i)) e2e_$t bench.py $E; done
ab_step $R once e2e30_once e2e30_once bench.py --e2e --frames 1150 --steps 30
touch $R/done
