#!/bin/bash
# Prepared for a one-H200 device session (issue 19), not yet run: probe_stand_in.py five ways, each in a fresh
# process: the stand-ins alone (no compiles), cold, warm (the cold run's cache), cold with a 0.5 and a 0.1 ms GIL
# switch interval (if the GIL held by the compile threads is what stretches the stand-ins, those rows' stand-ins
# end before the compiles do). Prediction, from run 56: cold 5.3-7.7 s to compile_kernels' end, warm ~2.0 s, the
# stand-ins alone < 1 s; the stack tops say where the rest goes. ~3 minutes with the start:
#   run(command='bash docs/bench/next/probe_stand_in.sh', timeout_s=300)
C=/tmp/probe_stand_in
rm -rf $C && mkdir -p $C
probe() {  # probe NAME CACHE ARGS...
  local name=$1 cache=$2
  shift 2
  TRITON_CACHE_DIR=$C/$cache timeout 80 python3 docs/bench/next/probe_stand_in.py "$@" --json $OUT/$name.json \
    > $OUT/$name.log 2>&1
  echo "$name rc=$?"
}
probe noop n --noop
probe cold a
probe warm a
probe cold_switch_0.5ms b --switch-interval 0.0005
probe cold_switch_0.1ms c --switch-interval 0.0001
for f in $OUT/*.json; do
  python3 -c "import json, sys; r = json.load(open(sys.argv[1]))['rows'][0]; print(sys.argv[1].split('/')[-1])
print({k: v for k, v in r.items() if k != 'stack_tops'}); [print('   ', n, top) for top, n in r['stack_tops']]" $f
done
