set -x
exec > >(tee -a $OUT/run27.log) 2>&1
timeout 120 python3 -m pytest -q test_all.py -k "graph or compile or overlap" 2>&1 | tail -2
timeout 150 torchrun --nproc_per_node 1 simulate.py --compile --dtype float32 2>&1 | grep -v "^W1" | tail -3
timeout 200 torchrun --nproc_per_node 1 bench.py --compile --cuda-graph --frames-per-gpu 24 --iters 3 2>&1 | grep -v "^W1" | tail -4
