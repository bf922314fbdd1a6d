#!/bin/bash
# Prepared for a one-H200 device session (issue 19): levers/8-decoder-channels-last.patch against main. sample.py's
# VAE decoder (eager in every mode) with fast.accelerate_decoder: channels-last from its first ResnetBlock on, each
# ResnetBlock as fast.residual_block (run 38's UNet form: GroupNorm + SiLU as fast.py's Triton kernels, conv biases
# folded into the next pass, cuDNN's NHWC convs without transposes), the mid attention's GroupNorm and norm_out as
# frame_pass (F.group_norm copies a channels-last input to NCHW: run 30's channels-last decoder lost, 6.96 -> 9.12 ms a
# frame). Prediction: probe_decode.py (cuDNN autotuning on, batch 8) 6.96 -> 5.0-5.5 ms a frame, max diff <= 11 uint8
# levels (run 30: compiled 5.25 ms, 11 levels); sample.py at 1150 frames (bench.py --e2e, eager): decode 8.4 -> 6.0-6.5
# s, the steps unchanged (the control). ~7 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_decoder.sh "$PWD" > /tmp/ab_decoder.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_decoder.sh poll 540', carry=[".whl"])
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_decoder
if [ "$1" = poll ]; then ab_poll $R $2 ab_decoder; cat $R/log/probe_decode.log 2>/dev/null; exit 0; fi
ab_setup $R "$1" main - decoder docs/bench/next/levers/8-decoder-channels-last.patch
echo "$(date +%s) start probe_decode" >> $R/progress
(cd $R/decoder && TORCHINDUCTOR_CACHE_DIR=$R/cache_probe/inductor TRITON_CACHE_DIR=$R/cache_probe/triton \
  timeout 300 python3 docs/bench/next/probe_decode.py --frames 128 > $R/log/probe_decode.log 2>&1)
echo "$(date +%s) end probe_decode rc=$?" >> $R/progress
ab_step $R decoder e2e_eager_decoder e2e_decoder bench.py --e2e --frames 1150 --steps 3
ab_step $R main e2e_eager_main e2e_main bench.py --e2e --frames 1150 --steps 3
touch $R/done
