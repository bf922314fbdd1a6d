#!/bin/bash
# wait (up to $1 s) for run29.sh; copy its logs to $OUT (one tar) and show progress and the logs' tails
R=/tmp/run; end=$((SECONDS + $1))
while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
cat $R/log/env.log 2>/dev/null; cat $R/progress 2>/dev/null; date +%s
for f in $R/log/*.log; do echo "== $(basename $f)"; grep -v "Warning\|warn(\|out\[i\|return self\|^W1\|^  " $f | tail -n 8 | cut -c1-400; done
tar czf $OUT/run29.tgz -C $R log progress 2>/dev/null
