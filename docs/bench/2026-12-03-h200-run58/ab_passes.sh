#!/bin/bash
# Run 58 (one H200, 2026-12-03), as it ran from docs/bench/next (beside ab_common.sh and probe_passes.py). As
# prepared: the launch settings of fast.py's memory-bound kernels, and the headline's 30 steps cold with the
# imageio-ffmpeg wheel that has the segment join's filter (run 57's rows failed).
#  - probe_passes.py (in main): the channels' moments (15.8 ms of run 54's 460 ms at n = 128), the GroupNorm /
#    residual pass (39.4 ms) and the LayerNorm (18.2 ms), each over its tile sizes and warps on an n = 128
#    forward's shapes at every UNet level. fast.py has used one setting for each since it was written (64 x 64
#    tiles and 512 pixels a pass program, 4096 values a LayerNorm program, 4 warps), never tuned on the H200.
#  - "tuned": main with each kernel's fastest setting (ab_best_passes), if any differs from main's.
#    Prediction: these kernels -5 to -15 % (~4-11 ms at n = 128: the passes already move ~75 % of the copy
#    bandwidth), the graphed forward at n = 128 / 288 -0.5 to -2 %; the step at 1150 frames likewise.
#  - the forward as a CUDA graph, main and tuned alternating (two pairs), then 30 steps cold of the faster tree,
#    after a throwaway short run (the machine's first loads of the libraries).
# ~14 minutes with the start. One daemon:
#   run(command='setsid nohup bash docs/bench/next/ab_passes.sh "$PWD" > /tmp/ab_passes.out 2>&1 < /dev/null &
#                sleep 2; bash docs/bench/next/ab_passes.sh poll 560', carry=[".whl"])
#   run(command='bash docs/bench/next/ab_passes.sh poll 560', carry=[".whl"])     # at once, until "done"
. "$(dirname "$0")/ab_common.sh"
R=/tmp/ab_passes
if [ "$1" = poll ]; then ab_poll $R $2 ab_passes; exit 0; fi
ab_setup $R "$1" main - tuned -
ab_gpu_test $R main
ab_step $R main probe_passes probe docs/bench/next/probe_passes.py
trees=main
if ab_best_passes $R/log/probe_passes.json $R/tuned/fast.py >> $R/progress 2>&1; then
  trees="main tuned"
  ab_gpu_test $R tuned
fi
ab_step $R main e2e_throwaway throwaway bench.py --e2e --frames 64 --steps 2
G="--frames-per-gpu 128 288 --iters 9 --cuda-graph"
for pair in 1 2; do
  for t in $trees; do ab_step $R $t graph_$t$pair graph_$t bench.py $G; done
  trees=$(echo $trees | awk '{for (i = NF; i > 0; i--) printf "%s ", $i}')  # the other order next time
done
best=$(python3 - $R/log <<'PY'
import glob, json, sys
ms = {}
for path in glob.glob(f"{sys.argv[1]}/graph_*.json"):
    tree = path.split("graph_")[1][:-len("1.json")]
    ms.setdefault(tree, []).append(sum(r["ms"] for r in json.load(open(path))["rows"]))
print(min(ms, key=lambda t: sum(ms[t]) / len(ms[t])))
PY
)
echo "30 steps: ${best:-main}" >> $R/progress
ab_step $R ${best:-main} e2e30_${best:-main} e2e30 bench.py --e2e --frames 1150 --steps 30
touch $R/done
