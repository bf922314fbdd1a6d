#!/bin/bash
# wait (up to $1 s) for run30.sh (or until step $2 has ended); tar its logs to $OUT; show progress and tails
R=/tmp/run30; end=$((SECONDS + $1))
while [ ! -e $R/done ] && [ $SECONDS -lt $end ] && ! grep -q "end ${2:-none} " $R/progress 2>/dev/null; do sleep 5; done
cat $R/log/env.log 2>/dev/null; cat $R/progress 2>/dev/null; date +%s
for f in $R/log/*.log; do echo "== $(basename $f)"; grep -v "Warning\|warn(\|out\[i\|return self\|^W1\|^  \|it/s\]\|step/s\]\|frame/s\]\|batch/s\]" $f | tail -n 12 | cut -c1-600; done
python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path)); res = res.get("e2e", res)
    rows = [(r["frames_per_gpu"], round(r["seconds"], 1), round(r["ms"], 1)) for r in res.get("rows", [])]
    print(os.path.basename(path), "timings", res.get("timings_s"), "per eval", res.get("s_per_eval_after_first"),
          "rows", rows, "compile", json.dumps(res.get("compile_stats")))
PY
tar czf $OUT/run30.tgz -C $R log progress 2>/dev/null
