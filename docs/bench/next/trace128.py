"""Probe: where the compiled + graphed forward at n frames per GPU spends its time, kernel by kernel.

Run 9's op table (prof128b.txt) sums to 625 ms of "CUDA time" for a 639 ms forward, but 62 ms of it is the
profiler's "Command Buffer Full" rows, so the kernels may sum to less than the forward takes. This traces one
CUDA-graph replay and one plain forward (torch.profiler, kernel activities), and prints for each: the wall time,
the sum of kernel times, the time at least one kernel runs (union), the gaps, and the kernel time by category.
Writes the kernel list (name, count, ms) as JSON and the chrome traces, gzipped.
Usage on the GPU: python docs/bench/next/trace128.py OUT_DIR [n] [--whole-temporal]
--whole-temporal: also torch.compile each TemporalTransformer whole (static shapes); dynamo splits it at the
exchanges, so the residual adds, LayerNorms and projections between two exchanges compile together.
"""
import collections
import gzip
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
import bench  # noqa: E402
import model  # noqa: E402
import fast  # noqa: E402
from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402

CATEGORIES = [  # first match wins: (category, substrings of the kernel name); Inductor's kernels name the ops they fuse
    ("triton (compiled)", ("triton",)),
    ("sdpa", ("fmha", "flash", "sdpa", "attention")),
    ("conv (cuDNN)", ("fprop", "implicit_gemm", "conv", "dgrad", "nhwc", "cudnn", "cask")),
    ("gemm (cuBLAS)", ("nvjet", "gemm", "cutlass", "sm90_xmma")),
    ("layer_norm", ("layer_norm",)),
    ("batch_norm", ("batch_norm", "batchnorm")),
    ("copy/cat/pad", ("copy", "cat", "pad", "memcpy", "memset", "fill")),
    ("reduce", ("reduce",)),
    ("elementwise", ("elementwise", "vectorized")),
]


def category(name):
    low = name.lower()
    return next((c for c, keys in CATEGORIES if any(k in low for k in keys)), "other")


def analyse(trace_path, wall_ms, label):
    events = json.load(open(trace_path))["traceEvents"]
    kernels = sorted((e for e in events if e.get("cat") == "kernel"), key=lambda e: e["ts"])
    total = sum(e["dur"] for e in kernels) / 1e3
    busy, end = 0.0, None
    for e in kernels:  # union of [ts, ts + dur)
        s, t = e["ts"], e["ts"] + e["dur"]
        if end is None or s >= end:
            busy, end = busy + (t - s), t
        elif t > end:
            busy, end = busy + (t - end), t
    busy /= 1e3
    span = (kernels[-1]["ts"] + kernels[-1]["dur"] - kernels[0]["ts"]) / 1e3 if kernels else 0.0
    by_cat, by_name = collections.Counter(), collections.defaultdict(lambda: [0, 0.0])
    for e in kernels:
        by_cat[category(e["name"])] += e["dur"] / 1e3
        by_name[e["name"]][0] += 1
        by_name[e["name"]][1] += e["dur"] / 1e3
    print(f"\n== {label}: wall {wall_ms:.1f} ms, {len(kernels)} kernels, kernel sum {total:.1f} ms, busy (union) "
          f"{busy:.1f} ms, first-to-last span {span:.1f} ms, idle in span {span - busy:.1f} ms")
    for c, ms in by_cat.most_common():
        print(f"   {c:<20} {ms:8.1f} ms")
    top = sorted(by_name.items(), key=lambda kv: -kv[1][1])
    for name, (count, ms) in top[:40]:
        print(f"   {ms:8.2f} ms {count:5d}x  {category(name):<18} {name[:110]}")
    return dict(label=label, wall_ms=wall_ms, kernels=len(kernels), kernel_sum_ms=total, busy_ms=busy, span_ms=span,
                by_category=dict(by_cat), by_name=[[n, c, ms] for n, (c, ms) in top])


def main(out, n, whole_temporal=False):
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    args = bench.parse_args(["--compile", "--cuda-graph", "--frames-per-gpu", str(n)])
    config = model.VC2_CONFIG["unet"]
    args.context_dim = config["context_dim"]
    device, comm = torch.device("cuda"), EmulatedComm(EmulatedGroup(1), 0)
    timer = bench.Timer(device)
    with torch.device(device):
        unet = randomize(model.UNet(**config).eval(), args.seed)
    results = []
    with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet, compile=True):
        if whole_temporal:
            for m in unet.modules():
                if isinstance(m, model.TemporalTransformer):
                    m.forward = torch.compile(m.forward, dynamic=False)
        unet.to(torch.bfloat16)
        x, t, ctx = bench.inputs(args, n, comm, device, args.seed + 2)
        graph = fast.GraphedClipForward(unet, comm, n, x, args.timestep, ctx, args.fps)
        runs = {"graph": lambda: graph(x, args.timestep),
                "plain": lambda: clip_forward(unet, comm, n, x, t, ctx, args.fps)}
        for label, run in runs.items():
            for _ in range(2):
                run()
            wall = sorted(timer(run) for _ in range(5))[2]
            torch.cuda.synchronize()
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                run()
                torch.cuda.synchronize()
            path = os.path.join(out, f"trace_{label}.json")
            prof.export_chrome_trace(path)
            results.append(analyse(path, wall, label))
            with open(path, "rb") as f, gzip.open(path + ".gz", "wb") as g:
                shutil.copyfileobj(f, g)
            os.remove(path)
    with open(os.path.join(out, f"kernels{n}.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 128, "--whole-temporal" in sys.argv)
