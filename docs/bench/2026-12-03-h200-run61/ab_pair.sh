#!/bin/bash
# Run 61 (one H200, 2026-12-03), from docs/bench/next (beside ab_common.sh, check_pair.py and pair.patch): the layers
# before the first that reads the text run once for classifier-free guidance's pair ("pair": fast.pair_forward, and
# sample.py's eps_fn passing the pair as stride-0 views) against the code before it ("main": pair.patch reversed).
# conv_in, init_attn and the first ResBlock are ~5.7 % of a forward's FLOPs (torch.utils.flop_counter, n = 32), all
# at the widest level; run once, half of that goes. Prediction: the step at 1150 frames -2 to -3 % (4.17 -> ~4.06 s),
# the first step a little shorter, 30 steps cold ~144 -> ~140.5 s; check_pair.py: bf16 against float32 the same for
# the pair and the written-out batch (~2e-2), the eager forward at n = 128 -2 to -3 %. Then a probe with no A/B:
# probe_decode_ops.py, where the decode's ~4.9 s for 1150 frames goes, part by part of the decoder and kernel by kernel.
# (A first call of this script on 2026-12-03 ran everything but the probe; its logs were lost before they were kept.)
# ~10 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_pair.sh "$PWD" > /tmp/ab_pair.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_pair.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_pair
if [ "$1" = poll ]; then ab_poll $R $2 ab_pair | cut -c1-600; exit 0; fi
ab_setup $R "$1" main - pair -
(cd $R/main && git apply -R docs/bench/next/pair.patch) >> $R/log/apply.log 2>&1 || { touch $R/done; exit 1; }
ab_gpu_test $R pair
ab_step $R pair check_pair check_pair docs/bench/next/check_pair.py
E="--e2e --frames 1150 --steps 3"
ab_step $R main e2e_main e2e_main bench.py $E
ab_step $R pair e2e_pair e2e_pair bench.py $E
ab_step $R pair e2e_pair2 e2e_pair bench.py $E
ab_step $R main e2e_main2 e2e_main bench.py $E
ab_step $R pair e2e30_pair e2e30_pair bench.py --e2e --frames 1150 --steps 30
ab_step $R pair decode_ops decode_ops docs/bench/next/probe_decode_ops.py --frames 64
touch $R/done
