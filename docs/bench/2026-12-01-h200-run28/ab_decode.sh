#!/usr/bin/env bash
# A/B of issue 19's "decode and write in parallel" on one H200, in one device call: bench.py --e2e before (BASE: main
# at 6ae4ffc: rank 0 gathers every frame, then writes the whole mp4) and after (NEW: every rank encodes its own mp4
# segment while it decodes it, rank 0 joins them with ffmpeg's concat demuxer, -c copy). 256 frames, 2 DDIM steps
# (2 UNet evaluations), 320x512, random weights, no --compile: about 30 s a run, 7 runs. One GPU runs one real rank,
# so the split is measured with emulated ranks (threads of one process, each writing its segment at once, as real
# ranks do); those run --plain (the plain clip-parallel layers: the denoising phase is not what is compared).
#
#   bash NEW/docs/bench/next/ab_decode.sh BASE NEW      # writes $OUT/ab_decode.log and $OUT/ab_decode.json
#
# Prepare here (not on the device), in /work/main, both trees as their Python files and the tokenizer's vocabulary
# (1.7 MB each; the device tool sends main's tree, .dev* is git-ignored there), and imageio-ffmpeg as a wheel (the
# device image lacks it; NEW needs >= 0.6, whose ffmpeg 7 has the setts filter that join_segments uses):
#   mkdir -p .dev_ab/base .dev_ab/new
#   git archive 6ae4ffc -- ':(glob)*.py' bpe_simple_vocab_16e6.txt.gz | tar -x -C .dev_ab/base
#   git archive HEAD -- ':(glob)*.py' bpe_simple_vocab_16e6.txt.gz docs/bench/next/ab_decode.sh \
#       | tar -x -C .dev_ab/new          # HEAD: main with branch decode-split merged (or decode-split alone)
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .dev_ab/whl imageio-ffmpeg==0.6.0        # 29.5 MB
# (what travels: main's tree, ~33 MB on 2026-12-01, and .dev_ab, ~33 MB: about 63 of the 64 MiB a call may carry)
# then one device call (about 4 minutes): carry [".dev_ab"], timeout_s 600,
#   bash .dev_ab/new/docs/bench/next/ab_decode.sh .dev_ab/base .dev_ab/new
#
# Prediction, decode + write + join (d+w+j): 1 rank, BASE ~1.9 s decode + ~2.7 s write (x264 on noise frames at
# ~100 frames/s, BENCH.md runs 11 and 24) = ~4.6 s; NEW encodes while the GPU decodes: ~max of the two, ~3 s
# (at 1150 frames: 8.3 + 11.8 -> ~12 s). 2 and 4 emulated ranks: BASE the same ~4.6 s (one GPU decodes every clip
# either way, one x264 writes); NEW ~2 s and ~1.5 s if one x264 process leaves most of the 16 cores idle at 320x512
# (the ranks' encoders then run side by side; decode ~1.9 s is then the floor), nearer 3 s if it does not; join
# < 0.3 s (a copy of ~40 MB).
set -u -o pipefail
base=$(realpath "$1") new=$(realpath "$2")
export PYTHONUNBUFFERED=1
if ! python3 -c "import imageio_ffmpeg" 2>/dev/null; then
  whl=$(ls "$(dirname "$new")"/whl/imageio_ffmpeg-*.whl .whl/imageio_ffmpeg-*.whl 2>/dev/null | head -n 1)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$whl" || exit
  export PYTHONPATH=/tmp/site
fi
exec > >(tee -a "$OUT/ab_decode.log") 2>&1
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv,noheader
nproc
python3 -c "import torch, imageio_ffmpeg as f; print(torch.__version__, f.__version__, f.get_ffmpeg_version())"
mkdir -p /tmp/ab
e2e() {  # tree name, json, bench args...
  local tree=$1 json=$2; shift 2
  echo "== $(basename "$tree"): bench.py --e2e $*"
  (cd "$tree" && timeout 150 python3 bench.py --e2e --frames 256 --steps 2 --json "$json" "$@" 2>&1 \
     | grep -v "Warning\|warn(\|it/s\]\|frame/s\]\|batch/s\]\|step/s\]" | tail -n 4)
}
e2e "$new" /tmp/ab/warmup.json --frames 16 --steps 1 >/dev/null  # CUDA, cuDNN and the file cache warm for both
for ranks in 1 2 4; do
  extra=(); [ "$ranks" -gt 1 ] && extra=(--emulate "$ranks" --plain)
  for tree in "$base" "$new"; do
    e2e "$tree" "/tmp/ab/$(basename "$tree")_$ranks.json" "${extra[@]}"
  done
done
python3 - "$base" "$new" <<'EOF' | tee -a "$OUT/ab_decode.log"
import json, os, sys
runs = {}
print(f"{'tree':>6} {'ranks':>5} {'denoise':>8} {'decode':>7} {'write':>7} {'join':>6} {'d+w+j':>6} {'to mp4':>7}"
      "  (s, rank 0; BASE's decode waits for every rank's, NEW's is rank 0's own: compare d+w+j)")
for ranks in (1, 2, 4):
    for tree in sys.argv[1:]:
        name = os.path.basename(tree)
        try:
            with open(f"/tmp/ab/{name}_{ranks}.json") as f:
                res = runs[f"{name}_{ranks}"] = json.load(f)["e2e"]
        except (OSError, ValueError, KeyError):
            print(f"{name:>6} {ranks:>5} (no result)")
            continue
        t = res["timings_s"]
        out = t["decode"] + t["write"] + t.get("join", 0.0)
        print(f"{name:>6} {ranks:>5} {t['denoise']:>8.2f} {t['decode']:>7.2f} {t['write']:>7.2f} "
              f"{t.get('join', float('nan')):>6.2f} {out:>6.2f} {res['prompt_to_mp4_s']:>7.2f}")
with open(os.path.join(os.environ["OUT"], "ab_decode.json"), "w") as f:
    json.dump(runs, f, indent=1)
EOF
