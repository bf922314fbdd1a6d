"""How fast sample.py's x264 (sample.open_mp4: crf 10, imageio-ffmpeg's ffmpeg) encodes 320x512 frames on this
machine's CPUs, one encoder against several side by side: the frames of one video cut into segments of S frames,
each segment a file of its own, a pool of k threads each running one ffmpeg. Noise frames (what random weights
decode to, the benchmark's worst case) and smooth moving ones (closer to a real video).

    python3 docs/bench/next/probe_encode.py [--frames 576] [--segment 96] [--encoders 1 2 3 4 6 8] [--json out.json]
"""
import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
from sample import open_mp4  # noqa: E402


def encode(frames, path):
    with open_mp4(path, 24) as writer:
        for frame in frames:
            writer.append_data(frame)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=576)
    p.add_argument("--segment", type=int, default=96, help="frames a segment (a file, one encoder)")
    p.add_argument("--encoders", type=int, nargs="+", default=[1, 2, 3, 4, 6, 8])
    p.add_argument("--json")
    args = p.parse_args()
    H, W, N = 320, 512, args.frames
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:H, :W]
    videos = dict(noise=rng.integers(0, 256, (N, H, W, 3), dtype=np.uint8),
                  smooth=np.stack([np.stack([128 + 100 * np.sin((x + 3 * t) / 29), 128 + 100 * np.cos((y - 2 * t) / 31),
                                             255 * np.exp(-(((x - 4 * t) % W - W / 2) ** 2 + (y - H / 2) ** 2) / 2e3)],
                                            -1).clip(0, 255).astype(np.uint8) for t in range(N)]))
    rows = []
    print(f"cpus {len(os.sched_getaffinity(0))}, {N} frames {H}x{W}, segments of {args.segment}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, frames in videos.items():
            one = time.perf_counter()  # the whole video as one file, one encoder: sample.py before segments
            encode(frames, os.path.join(tmp, "one.mp4"))
            one = time.perf_counter() - one
            rows.append(dict(video=name, encoders=1, segment=N, fps=N / one))
            print(f"{name:6s} one file     {N / one:7.1f} frames/s", flush=True)
            for k in args.encoders:
                c0, t = os.times(), time.perf_counter()
                with ThreadPoolExecutor(k) as pool:
                    list(pool.map(lambda i: encode(frames[i:i + args.segment], os.path.join(tmp, f"{i}.mp4")),
                                  range(0, N, args.segment)))
                t, c1 = time.perf_counter() - t, os.times()
                cores = (c1.children_user + c1.children_system - c0.children_user - c0.children_system) / t
                rows.append(dict(video=name, encoders=k, segment=args.segment, fps=N / t, cores=cores))
                print(f"{name:6s} {k} encoders  {N / t:7.1f} frames/s  {cores:5.1f} cores busy", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpus=len(os.sched_getaffinity(0)), rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
