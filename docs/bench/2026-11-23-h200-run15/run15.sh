set -x
exec > >(tee -a $OUT/run15.log) 2>&1
T="python3 docs/bench/next/trace128.py"
f() { grep -v "^W1" | grep -E "^== |^   [a-z]" ; }
mkdir -p $OUT/base $OUT/force $OUT/convs
(cd bench_out/base && timeout 170 $T $OUT/base 128 2>&1 | f)
(cd bench_out/base && TORCHINDUCTOR_FORCE_LAYOUT_OPT=1 timeout 170 $T $OUT/force 128 2>&1 | f)
TORCHINDUCTOR_FORCE_LAYOUT_OPT=1 timeout 200 $T $OUT/convs 128 2>&1 | f
rm -f $OUT/*/trace_*.gz
