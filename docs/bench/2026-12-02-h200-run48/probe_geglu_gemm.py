"""GEGLU as one Triton GEMM (fast.geglu_gemm: x * gelu(gate) in the epilogue, the (M, 2N) projection never written)
against today's eager form (cuBLAS's projection, then fast.geglu_kernel's pass over it), at the UNet's three widths
and sample.py's chunk sizes (model.FeedForward.chunk_bytes: 2^25 / C tokens a call), bf16, one GPU:

    python3 docs/bench/next/probe_geglu_gemm.py --json rows.json     # ~1 min

Rows: per width C and tile config, ms per call (CUDA events, median of 20 after a warm-up), TFLOP/s of the
projection's 2 M K 2N, and the relative error against float32 math on the same bf16 inputs (first 4096 rows).
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402

CONFIGS = [  # BM, BN, BK, GROUP_M, warps, stages
    (128, 128, 64, 8, 4, 3), (128, 128, 64, 8, 8, 3), (128, 128, 64, 8, 4, 4), (128, 128, 64, 8, 8, 4),
    (128, 256, 64, 8, 8, 3), (128, 256, 64, 8, 8, 4), (256, 128, 64, 8, 8, 3), (64, 256, 64, 8, 4, 4),
    (128, 64, 64, 8, 4, 4), (128, 256, 128, 8, 8, 2),
]


def timed(fn, repeats=20):
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args()
    rows = []
    torch.manual_seed(0)
    for C in (320, 640, 1280):
        M = 2 ** 25 // C
        geglu = model.GEGLU(C, 4 * C).cuda().bfloat16()
        x = torch.randn(M, C, device="cuda", dtype=torch.bfloat16)
        inter = tuple(fast.interleave_geglu(geglu.proj))
        h, gate = F.linear(x[:4096].float(), geglu.proj.weight.float(), geglu.proj.bias.float()).chunk(2, -1)
        want = h * F.gelu(gate)
        flop = 2 * M * C * 8 * C

        def row(name, fn, out):
            ms = timed(fn)
            err = ((out[:4096].float() - want).norm() / want.norm()).item()
            rows.append(dict(C=C, M=M, form=name, ms=ms, tflops=flop / ms / 1e9, err=err))
            print(rows[-1], flush=True)

        with torch.no_grad():
            row("cublas projection alone", lambda: geglu.proj(x), geglu(x))
            row("eager: cublas + geglu_kernel", lambda: fast.geglu_forward(geglu, x), fast.geglu_forward(geglu, x))
            for tiles in CONFIGS:
                try:
                    row(f"fused {tiles}", lambda: fast.geglu_gemm(x, *inter, tiles), fast.geglu_gemm(x, *inter, tiles))
                except Exception as e:  # a config that does not fit (shared memory, registers)
                    print(C, tiles, type(e).__name__, str(e)[:200], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
