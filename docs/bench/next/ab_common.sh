# Shared by the ab_*.sh scripts (sourced): each A/B runs as one daemon on the device machine, and device calls poll it.
# A machine goes back 30 s after a call ends: chain the calls with nothing in between, give it back after the last.

ab_poll() {  # ab_poll R SECONDS NAME: wait up to SECONDS for R/done, print the progress and a summary of the JSON
  local R=$1 end=$((SECONDS + $2))  # results, and tar the logs to $OUT/NAME.tgz
  while [ ! -e $R/done ] && [ $SECONDS -lt $end ]; do sleep 5; done
  cat $R/log/env.log $R/progress 2>/dev/null
  python3 - $R/log <<'PY'
import glob, json, os, sys
for path in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
    res = json.load(open(path))
    if "e2e" in res:
        e = res["e2e"]
        print(os.path.basename(path), "timings", {k: round(v, 2) for k, v in e["timings_s"].items()}, "per eval",
              round(e["s_per_eval_after_first"], 3))
    elif "frames_per_gpu" in res["rows"][0]:
        print(os.path.basename(path), [(r["frames_per_gpu"], round(r["ms"], 1), round(r["peak_gib"], 2))
                                       for r in res["rows"]], "check", res.get("check"))
    else:  # a probe's rows
        print(os.path.basename(path), [{k: round(v, 1) if isinstance(v, float) else v for k, v in r.items()}
                                       for r in res["rows"]])
PY
  tail -3 $R/log/*.err 2>/dev/null
  tar czf $OUT/$3.tgz -C $R log progress 2>/dev/null
}

ab_setup() {  # ab_setup R SRC TREE PATCH [TREE PATCH]...: R afresh, with a copy of SRC per TREE (PATCH applied, if not
  local R=$1 src=$2  # "-"); the imageio-ffmpeg wheel installed; the machine's GPU, versions and CPUs in log/env.log
  shift 2
  rm -rf $R && mkdir -p $R/log || exit 1
  while [ $# -ge 2 ]; do
    cp -r "$src"/. $R/$1 || exit 1
    if [ "$2" != - ]; then (cd $R/$1 && git apply "$2") >> $R/log/apply.log 2>&1 || exit 1; fi
    shift 2
  done
  export PYTHONUNBUFFERED=1
  python3 -m pip install -q --no-deps --no-index "$src"/.whl/*.whl > $R/log/pip.log 2>&1
  # sample.py joins the segments with ffmpeg's setts filter (ffmpeg >= 4.4: imageio-ffmpeg >= 0.6); with an older
  # binary every end-to-end row fails in seconds (run 57: 0.5.1's ffmpeg 4.2.2), so stop here and say so
  if ! python3 -c "import imageio_ffmpeg as f, subprocess, sys; sys.exit('setts' not in subprocess.run(
      [f.get_ffmpeg_exe(), '-hide_banner', '-bsfs'], capture_output=True, text=True).stdout)" >> $R/log/pip.log 2>&1
  then
    echo "$(date +%s) stop: imageio-ffmpeg's ffmpeg has no setts filter (put imageio-ffmpeg 0.6.0 in .whl/)" \
      | tee -a $R/progress; touch $R/done; exit 1
  fi
  { nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.limit --format=csv,noheader
    python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"; nproc; } \
    > $R/log/env.log 2>&1
}

ab_step() {  # ab_step R TREE NAME CACHE SCRIPT ARGS...: python3 SCRIPT ARGS --json log/NAME.json in R/TREE, with the
  local R=$1 tree=$2 name=$3 cache=$4  # compile caches R/cache_CACHE (empty at their first use); output to log/NAME.*
  shift 4
  echo "$(date +%s) start $name" >> $R/progress
  (cd $R/$tree && TORCHINDUCTOR_CACHE_DIR=$R/cache_$cache/inductor TRITON_CACHE_DIR=$R/cache_$cache/triton \
    timeout 330 python3 "$@" --json $R/log/$name.json > $R/log/$name.log 2> $R/log/$name.err)
  local rc=$?  # before the date's command substitution resets $?
  echo "$(date +%s) end $name rc=$rc" >> $R/progress
}

ab_best_geglu_tiles() {  # ab_best_geglu_tiles ROWS FAST_PY: set FAST_PY's GEGLU_TILES to the "fused" config of
  python3 - "$1" "$2" <<'PY'  # probe_geglu_gemm.py's rows (JSON) fastest over the three widths; print the totals
import collections, json, re, sys
rows = json.load(open(sys.argv[1]))["rows"]
total = collections.defaultdict(float)
for r in rows:
    total[r["form"]] += r["ms"]
best = min((f for f in total if f.startswith("fused") and sum(1 for r in rows if r["form"] == f) == 3), key=total.get)
print({f: round(t, 3) for f, t in total.items()}, "best", best)
src = open(sys.argv[2]).read()
src = re.sub(r"GEGLU_TILES = \([0-9, ]*\)", "GEGLU_TILES = " + best[len("fused "):], src, count=1)
open(sys.argv[2], "w").write(src)
PY
  grep -n "^GEGLU_TILES" "$2"
}

ab_gpu_test() {  # ab_gpu_test R TREE: test_all.py's GPU-only test in R/TREE (the fast forms recorded as a CUDA graph
  (cd $1/$2 && timeout 240 python3 -m pytest -q -x -p no:cacheprovider test_all.py -k graphed_clip_forward) \
    > $1/log/gpu_test_$2.log 2>&1  # and replayed, against the eager forward), before any timing: run 52's graphed
  echo "$(date +%s) gpu test $2 rc=$?" >> $1/progress  # runs failed on a host copy that CI's CPUs could not see
}

ab_best_passes() {  # ab_best_passes ROWS FAST_PY: set FAST_PY's launch settings of the memory-bound kernels to
  python3 - "$1" "$2" <<'PY'  # probe_passes.py's fastest (its JSON's "best"); print them; exit 1 if none changed
import json, re, sys
best, src = json.load(open(sys.argv[1]))["best"], open(sys.argv[2]).read()
changed = False
for kernel, b in best.items():
    print(kernel, b["names"], b["setting"], round(b["ms"], 3), "ms, now", round(b["current_ms"], 3))
    for name, value in zip(b["names"], b["setting"]):
        line = re.search(rf"^(?:\w+, )*{name}(?:, \w+)* = [0-9]+(?:, [0-9]+)*", src, re.M).group(0)
        names, values = (part.split(", ") for part in line.split(" = "))
        values[names.index(name)] = str(value)
        new = f"{', '.join(names)} = {', '.join(values)}"
        changed |= new != line
        src = src.replace(line, new, 1)
open(sys.argv[2], "w").write(src)
sys.exit(0 if changed else 1)
PY
}
