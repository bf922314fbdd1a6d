"""The dual-scope temporal attention without --compile: fast.banded_attention (padded, banded copies of k and v, a
mask tensor, cuDNN's SDPA) against fast.kernel_attention (run 40: one Triton kernel that reads each block's band
where it lies), at the UNet's four levels, on one GPU.

    python3 docs/bench/next/probe_attention.py --frames 128 1150     # ~1 min

Shapes as the UNet's temporal attentions see them in sampling: batch 2 (cond, uncond; one timestep), latents of 40x64
halving per level, 64 channels a head (5, 10, 20, 20 heads), q, k, v as split_heads views of the projections
((N, frames, heads * 64) memory), the published scope (w = 8, 16 global frames), one rank (no halos). Per level and
variant: ms per call (CUDA events, after a warm-up) and the largest difference from banded_attention; the kernel in
several tilings (queries a program, keys a step, warps), fast.py's first.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
from dual_scope import DualScope  # noqa: E402

LEVELS = ((40, 64, 5), (20, 32, 10), (10, 16, 20), (5, 8, 20))  # (h, w, heads)
TILINGS = ((64, 16, 4), (64, 32, 4), (64, 64, 4), (32, 32, 4), (128, 32, 8), (64, 32, 8))


def timed(fn, repeats=5):
    fn()  # warm-up (Triton compiles)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeats


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[128, 1150], help="clip lengths (default 128 1150)")
    args = p.parse_args()
    scope, t = DualScope(), torch.tensor([900], device="cuda")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, bf16; tilings (queries, keys, warps)")
    totals = {}
    for n in args.frames:
        G = scope.global_indices(n)
        for h, w, heads in LEVELS:
            N, c = 2 * h * w, heads * 64
            g = torch.Generator(device="cuda").manual_seed(0)
            x = torch.randn(N, n, c, device="cuda", dtype=torch.bfloat16, generator=g)
            keys = torch.cat([x, x[:, G]], 1)  # as ClipAttention: [clip | global frames]
            q, k, v = (y.unflatten(-1, (heads, -1)).transpose(1, 2) for y in (x, keys, keys * 0.5))
            ref = fast.banded_attention(q, k, v, 0, 0, n, t, scope)
            rows = [("banded_attention", timed(lambda: fast.banded_attention(q, k, v, 0, 0, n, t, scope)), 0.0)]
            for tiling in TILINGS:
                fast.QUERY_TILE, fast.KEY_TILE, fast.ATTENTION_WARPS = tiling
                out = fast.kernel_attention(q, k, v, 0, 0, n, t, scope)
                diff = (out.float() - ref.float()).abs().max().item()
                rows.append((f"kernel {tiling}", timed(lambda: fast.kernel_attention(q, k, v, 0, 0, n, t, scope)),
                             diff))
            for name, ms, diff in rows:
                totals[n, name] = totals.get((n, name), 0.0) + ms
                print(f"  n = {n:4d}, {h}x{w}, {heads:2d} heads  {name:24s} {ms:8.3f} ms  max diff {diff:.2e}")
            del x, keys, q, k, v, ref
    for (n, name), ms in totals.items():
        print(f"n = {n:4d}, the four levels once: {name:24s} {ms:8.3f} ms")


if __name__ == "__main__":
    main()
