"""Probe: the temporal GroupNorms' moments (clip_parallel.group_moments), compiled, at n frames per GPU.

Run 19's trace: the moments' reductions take 54 ms of the 601 ms forward at n = 128 (210 kernels), ~15 % of the
memory bandwidth. Times, compiled with static shapes as compile_layers does, at each UNet level's shape (b = 2):
  whole:     the reductions over (group channels, frames, pixels) at once (b groups = 64 rows of strided runs);
  per_frame: per (frame, group) rows, then combined over frames (clip_parallel.group_moments now);
  var_mean:  per (frame, group) rows by torch.var_mean of the float32 view (Inductor: one Welford pass).
Usage on the GPU: python docs/bench/next/probe_moments.py [n]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
from clip_parallel import combine_moments, group_moments  # noqa: E402


def whole(x, groups):  # the code before run 20
    b, c = x.shape[:2]
    f32 = torch.promote_types(x.dtype, torch.float32)
    xg = x.unflatten(1, (groups, c // groups))
    dims = tuple(range(2, xg.dim()))
    count = torch.full((b, groups), xg[0, 0].numel(), dtype=f32, device=x.device)
    mean = xg.sum(dims, dtype=f32) / count
    m = mean.to(x.dtype)
    m2 = torch.linalg.vector_norm(xg - m.view(b, groups, 1, 1, 1, 1), 2, dims, dtype=f32).square() \
        - count * (mean - m.to(f32)).square()
    return torch.stack([count, mean, m2])


def var_mean(x, groups):
    b, c = x.shape[:2]
    xg = x.transpose(1, 2).unflatten(2, (groups, c // groups)).float()
    var, mean = torch.var_mean(xg, (3, 4, 5), correction=0)
    count = torch.full_like(mean, xg[0, 0, 0].numel())
    return torch.stack(combine_moments(count, mean, var * count, dim=1))


def time_ms(fn, *args, reps=20):
    for _ in range(3):
        fn(*args)
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn(*args)
    stop.record()
    torch.cuda.synchronize()
    return start.elapsed_time(stop) / reps


def main(n):
    torch.manual_seed(0)
    variants = {name: torch.compile(fn, dynamic=False) for name, fn in
                (("whole", whole), ("per_frame", group_moments), ("var_mean", var_mean))}
    print(f"n = {n}, bfloat16, b = 2, 32 groups; ms per call, GB/s of one read of x; max |rel diff| vs float64")
    for c, hw in ((320, (40, 64)), (640, (20, 32)), (1280, (10, 16)), (1280, (5, 8))):
        # frames-major, as the temporal layers see it: (b, n, c, h, w) memory viewed as (b, c, n, h, w)
        x = (torch.randn(2, n, c, *hw, device="cuda") * 3 + 1).to(torch.bfloat16).transpose(1, 2)
        ref = whole(x.double(), 32)
        row = [f"c {c:4d} {hw[0]:2d}x{hw[1]:<2d}"]
        for name, fn in variants.items():
            ms = time_ms(fn, x, 32)
            got = fn(x, 32).double()
            err = ((got - ref).abs() / ref.abs().clamp_min(1e-30)).max().item()
            row.append(f"{name} {ms:7.3f} ms {x.numel() * 2 / ms / 1e6:6.0f} GB/s err {err:.1e}")
        print(" | ".join(row), flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 128)
