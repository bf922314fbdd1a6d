"""Probe: which source lines launch the eager copies, cats and adds left in the compiled forward at n frames/GPU.

Run 21's trace at n = 128: eager copies and cats 25 ms, eager adds 19 ms, by kernel name only. This profiles one
plain (not graphed) compiled forward with the CPU side and Python stacks, and prints the eager aten ops that move
memory, grouped by the innermost frames of this repository's files, by GPU time.
Usage on the GPU: python docs/bench/next/probe_copies.py [n]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
import bench  # noqa: E402
import model  # noqa: E402
import fast  # noqa: E402
from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402

OPS = ("aten::copy_", "aten::cat", "aten::add", "aten::index_select", "aten::fill_", "aten::mul")  # leaves
FILES = ("clip_parallel.py", "fast.py", "model.py", "dual_scope.py")


def main(n):
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    args = bench.parse_args(["--compile", "--frames-per-gpu", str(n)])
    config = model.VC2_CONFIG["unet"]
    args.context_dim = config["context_dim"]
    device, comm = torch.device("cuda"), EmulatedComm(EmulatedGroup(1), 0)
    with torch.device(device):
        unet = randomize(model.UNet(**config).eval(), args.seed)
    with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet, compile=True):
        unet.to(torch.bfloat16)
        x, t, ctx = bench.inputs(args, n, comm, device, args.seed + 2)
        for _ in range(3):
            clip_forward(unet, comm, n, x, t, ctx, args.fps)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA], with_stack=True,
                                    experimental_config=torch._C._profiler._ExperimentalConfig(verbose=True)) as prof:
            clip_forward(unet, comm, n, x, t, ctx, args.fps)
            torch.cuda.synchronize()
    rows = {}
    for e in prof.events():
        if e.name not in OPS or e.device_type != torch.autograd.DeviceType.CPU:
            continue
        ours = [os.path.basename(f) for f in e.stack if os.path.basename(f).startswith(FILES)]  # "file.py(line): fn"
        where = " < ".join(ours[:3]) or "(no repo frame)"
        gpu = sum(k.duration for k in e.kernels) / 1e3 if e.kernels else e.device_time_total / 1e3
        r = rows.setdefault((e.name, where), [0, 0.0])
        r[0] += 1
        r[1] += gpu
    print(f"n = {n}: eager memory ops of one compiled plain forward, by GPU ms")
    for (name, where), (count, ms) in sorted(rows.items(), key=lambda kv: -kv[1][1])[:30]:
        print(f"{ms:8.2f} ms {count:4d}x {name:<20} {where[:160]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
