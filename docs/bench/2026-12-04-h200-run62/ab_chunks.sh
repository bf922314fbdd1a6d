#!/bin/bash
# Run 62 (one H200), from docs/bench/next (beside ab_common.sh and chunks.patch): the channels' moments with each
# frame's pixels cut into chunks when frames are few ("chunks": channel_moments_kernel over (frame, channel block,
# chunk), then moments_combine_kernel) against the kernel a (frame, channel block) ("main": chunks.patch reversed).
# Run 61's probe_decode_ops.py: in the VAE decoder at batch 32 (64 programs for 132 SMs) channel_moments_kernel took
# 34.3 of 121.3 ms of kernel time, ~18 GB read at ~0.5 TB/s. Prediction: that kernel ~6-9 ms (2-3 TB/s), the decoder
# 4.8 -> ~4.0 ms a frame, sample.py's decode at 1150 frames 4.9-5.2 -> ~4.2 s; the UNet forward at n = 24 within
# +-2 % (its widest GroupNorms cut in 5), at n = 128 unchanged (no chunks: 1280 programs already); 30 steps cold
# ~141 s on run 61's machine. ~9 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_chunks.sh "$PWD" > /tmp/ab_chunks.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_chunks.sh poll 560', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_chunks
if [ "$1" = poll ]; then ab_poll $R $2 ab_chunks | cut -c1-600; exit 0; fi
ab_setup $R "$1" main - chunks -
(cd $R/main && git apply -R docs/bench/next/chunks.patch) >> $R/log/apply.log 2>&1 || { touch $R/done; exit 1; }
ab_gpu_test $R chunks
for t in main chunks; do ab_step $R $t decode_$t decode_$t docs/bench/next/probe_decode_ops.py --frames 64; done
G="--cuda-graph --frames-per-gpu 24 128 --check-frames 0"
for t in chunks main; do ab_step $R $t graph_$t graph_$t bench.py $G; done
E="--e2e --frames 1150 --steps 3"
for t in main chunks; do ab_step $R $t e2e_$t e2e_$t bench.py $E; done
ab_step $R chunks e2e30_chunks e2e30_chunks bench.py --e2e --frames 1150 --steps 30
touch $R/done
