# Run 33, one device call on the tree of 537f539 (docs/bench/next/probe_static.py), as run:
python3 -m pip install -q --no-deps --no-index .whl/*.whl > /dev/null 2>&1; export PYTHONUNBUFFERED=1
git log --oneline -1 > $OUT/env.txt
for v in dynamic static static dynamic; do i=$((i+1)); s=$SECONDS
  TORCHINDUCTOR_CACHE_DIR=/tmp/ps$i/i TRITON_CACHE_DIR=/tmp/ps$i/t python3 docs/bench/next/probe_static.py $v eager \
    --e2e --compile --frames 128 --steps 1 --json $OUT/$i-$v.json > $OUT/$i-$v.log 2>&1
  echo "$i $v rc=$? wall $((SECONDS-s)) s" | tee -a $OUT/env.txt
  python3 -c "import json; r=json.load(open('$OUT/$i-$v.json'))['e2e']; print(round(r['timings_s']['first_step'],2), r['compile_stats'])"
done
