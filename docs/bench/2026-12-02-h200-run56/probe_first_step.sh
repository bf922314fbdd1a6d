#!/bin/bash
# Run 56 (one H200), as it ran from docs/bench/next, on main with levers/18 applied (compile_kernels as a context:
# probe_first_step.py needs it). probe_first_step.py four ways, each in a fresh process: cold with the compile
# beside the first forward, cold with every compile waited for first (run 54's order), warm (the first's cache),
# cold with 12 compile threads of the 16 CPUs. ~2 minutes:
#   run(command='bash docs/bench/next/probe_first_step.sh', timeout_s=260)
C=/tmp/probe_first_step
rm -rf $C && mkdir -p $C
probe() {  # probe NAME CACHE ARGS...
  local name=$1 cache=$2
  shift 2
  TRITON_CACHE_DIR=$C/$cache timeout 80 python3 docs/bench/next/probe_first_step.py "$@" --json $OUT/$name.json \
    > $OUT/$name.log 2>&1
  echo "$name rc=$?"
}
probe cold_ahead a
probe cold_wait_all b --wait-all
probe warm_ahead a
probe cold_ahead_12_threads c --threads 12
for f in $OUT/*.json; do echo "$(basename $f)"; python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['rows'][0]
print({k: v for k, v in r.items() if k != 'wait_list'}); print('waits', r['wait_list'][:40])" $f; done
