#!/usr/bin/env bash
# Device call for this branch, sample-cuda-graph (sample.py --cuda-graph, one rank): its GPU tests, then prompt to
# mp4 with and without the graph at the default clip length (64 frames: launch-bound?) and at 288. ~8 min, one H200.
# Before the call, here: `git checkout sample-cuda-graph`, and the imageio-ffmpeg wheel in .whl (BENCH.md run 11);
# then the device tool (kind nvidia-h200) with carry [".whl"]:  bash docs/bench/next/run13_sample_graph.sh
# Land the branch if the tests pass and the steps get faster (compare the step rates of the two runs of each F).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site || exit
set -x
exec > >(tee $OUT/run.log) 2>&1
python3 -m pytest -q test_all.py -k "graph" 2>&1 | tail -2
for F in 64 288; do
  for G in "" "--cuda-graph"; do
    timeout 200 python3 bench.py --e2e --compile $G --frames $F --steps 30 --json $OUT/e2e$F${G:+_graph}.json 2>&1 \
        | tr '\r' '\n' | grep -E "denoise: +(3|100)%|prompt_to_mp4|\"denoise\"" | tail -4
  done
done
