#!/usr/bin/env bash
# Run 6 on the device (one GPU): the clip-parallel arithmetic compiled, the temporal conv without a padded copy.
# bench_out/head holds the code before this change (git archive of the parent commit), carried, for the eager A/B.
set -x
exec > >(tee $OUT/run.log) 2>&1
nvidia-smi --query-gpu=name,memory.total --format=csv
(cd bench_out/head && python3 bench.py --frames-per-gpu 128 --iters 5 --check-frames 0 --json $OUT/eager_head.json | tail -1)
python3 bench.py --frames-per-gpu 128 --iters 5 --check-frames 0 --json $OUT/eager_new.json | tail -1
t1=$(date +%s)
timeout 420 python3 bench.py --compile --frames-per-gpu 128 288 --iters 5 --profile $OUT/prof128c.txt --json $OUT/compiled.json 2>&1 | grep -v "^W1" | tail -8
t2=$(date +%s); echo "compiled bench: $((t2 - t1)) s"
