"""GEGLU as one Triton GEMM (fast.geglu_gemm: x * gelu(gate) in the epilogue, the (M, 2N) projection never written;
one accumulator whose columns alternate value and gate, the weight read through a 3D TMA view (N, 2, K)) in tile
configs, against the eager form (cuBLAS's projection, then fast.geglu_kernel's pass over it), at the UNet's three
widths and sample.py's chunk sizes (model.FeedForward.chunk_bytes: 2^25 / C tokens a call), bf16, one GPU; beside it
variants defined here: run 48's kernel (the same over an interleaved copy of the weight), run 49's two accumulators
(value rows, gate rows) as a persistent kernel (one program per SM looping over the tiles: run 51's best at C =
1280), and fast's kernel made persistent.

    python3 docs/bench/next/probe_geglu_gemm.py --json rows.json     # ~1 min

Rows: per width C and tile config, ms per call (CUDA events, median of 20 after a warm-up), TFLOP/s of the
projection's 2 M K 2N, and the relative error against float32 math on the same bf16 inputs (first 4096 rows).
"""
import argparse
import functools
import json
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402
from probe_decode import timed  # noqa: E402 (CUDA events, the median after a warm-up)

CONFIGS = [  # fast.geglu_gemm's: BM, BN (columns of [v g] a tile: BN / 2 outputs), BK, GROUP_M, warps, stages
    (128, 128, 64, 8, 4, 3), (128, 128, 64, 8, 4, 2), (128, 128, 64, 8, 4, 4), (128, 128, 64, 8, 8, 3),
    (128, 128, 128, 8, 4, 3), (128, 128, 128, 8, 8, 2), (128, 128, 64, 4, 4, 3), (128, 128, 64, 16, 4, 3),
    (128, 256, 64, 8, 8, 3), (256, 128, 64, 8, 8, 3), (64, 128, 64, 8, 4, 3), (64, 256, 64, 8, 4, 3),
]

import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.tools.tensor_descriptor import TensorDescriptor  # noqa: E402


@triton.jit
def interleaved_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                       GROUP_M: tl.constexpr):  # run 48's: w, b with value and gate rows interleaved
    pid = tl.program_id(0)
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(2 * N, BN)
    width = GROUP_M * tiles_n
    first_m = pid // width * GROUP_M
    rows = tl.minimum(tiles_m - first_m, GROUP_M)
    m, n = (first_m + pid % width % rows) * BM, pid % width // rows * BN
    acc = tl.zeros((BM, BN), tl.float32)
    for k in range(0, K, BK):
        acc = tl.dot(x.load([m, k]), w.load([n, k]).T, acc)
    acc += tl.load(b + n + tl.arange(0, BN), mask=n + tl.arange(0, BN) < 2 * N, other=0.0).to(tl.float32)[None, :]
    v, g = tl.split(tl.reshape(acc, (BM, BN // 2, 2)))
    out.store([m, n // 2], (v * 0.5 * g * (1.0 + tl.math.erf(g * 0.7071067811865476))).to(out.dtype))


def interleaved(x, w, b, tiles=(128, 128, 64, 8, 4, 3)):
    BM, BN, BK, group, warps, stages = tiles
    (M, K), N = x.shape, len(w) // 2
    out = x.new_empty(M, N)
    descs = [TensorDescriptor.from_tensor(t, bl) for t, bl in ((x, [BM, BK]), (w, [BN, BK]), (out, [BM, BN // 2]))]
    interleaved_kernel[(triton.cdiv(M, BM) * triton.cdiv(2 * N, BN),)](
        descs[0], descs[1], b, descs[2], M, N, K, BM=BM, BN=BN, BK=BK, GROUP_M=group, num_warps=warps,
        num_stages=stages)
    return out


@triton.jit
def persistent_view3d_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                             GROUP_M: tl.constexpr, SMS: tl.constexpr):  # fast's kernel, one program per SM
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN // 2)
    width = GROUP_M * tiles_n
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS):
        first_m = tile // width * GROUP_M
        rows = tl.minimum(tiles_m - first_m, GROUP_M)
        m, n = (first_m + tile % width % rows) * BM, tile % width // rows * (BN // 2)
        acc = tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            acc = tl.dot(x.load([m, k]), tl.reshape(w.load([n, 0, k]), (BN, BK)).T, acc)
        value, gate = tl.split(tl.reshape(acc, (BM, BN // 2, 2)))
        j = n + tl.arange(0, BN // 2)
        value += tl.load(b + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        gate += tl.load(b + N + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        out.store([m, n], (value * 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))).to(out.dtype))


def persistent_view3d(x, w, b, tiles):
    BM, BN, BK, group, warps, stages = tiles
    (M, K), N = x.shape, len(w) // 2
    out = x.new_empty(M, N)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    w3 = TensorDescriptor(w, [N, 2, K], [K, N * K, 1], [BN // 2, 2, BK])
    descs = [TensorDescriptor.from_tensor(t, bl) for t, bl in ((x, [BM, BK]), (out, [BM, BN // 2]))]
    persistent_view3d_kernel[(min(sms, triton.cdiv(M, BM) * triton.cdiv(N, BN // 2)),)](
        descs[0], w3, b, descs[1], M, N, K, BM=BM, BN=BN, BK=BK, GROUP_M=group, SMS=sms, num_warps=warps,
        num_stages=stages)
    return out


@triton.jit
def persistent_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      GROUP_M: tl.constexpr, SMS: tl.constexpr):  # run 49's two accumulators, one program per SM
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN)
    width = GROUP_M * tiles_n
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS):  # flatten=True lost in runs 49 and 51
        first_m = tile // width * GROUP_M
        rows = tl.minimum(tiles_m - first_m, GROUP_M)
        m, n = (first_m + tile % width % rows) * BM, tile % width // rows * BN
        value, gate = tl.zeros((BM, BN), tl.float32), tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            a = x.load([m, k])
            value = tl.dot(a, w.load([n, k]).T, value)
            gate = tl.dot(a, w.load([N + n, k]).T, gate)
        j = n + tl.arange(0, BN)
        value += tl.load(b + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        gate += tl.load(b + N + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        out.store([m, n], (value * 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))).to(out.dtype))


def persistent(x, w, b, tiles):
    BM, BN, BK, group, warps, stages = tiles
    (M, K), N = x.shape, len(w) // 2
    out = x.new_empty(M, N)
    sms = torch.cuda.get_device_properties(x.device).multi_processor_count
    descs = [TensorDescriptor.from_tensor(t, bl) for t, bl in ((x, [BM, BK]), (w, [BN, BK]), (out, [BM, BN]))]
    persistent_kernel[(min(sms, triton.cdiv(M, BM) * triton.cdiv(N, BN)),)](
        descs[0], descs[1], b, descs[2], M, N, K, BM=BM, BN=BN, BK=BK, GROUP_M=group, SMS=sms,
        num_warps=warps, num_stages=stages)
    return out


def eager(geglu, x):  # cuBLAS's projection, then geglu_kernel's pass (fast.geglu_forward before run 49)
    h = geglu.proj(x)
    out = h.new_empty(len(h), h.shape[-1] // 2)
    fast.geglu_kernel[(len(h), triton.cdiv(out.shape[-1], 1024))](h, out, out.shape[-1], BLOCK=1024)
    return out


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
        w, b = geglu.proj.weight, geglu.proj.bias
        inter = [p.unflatten(0, (2, -1)).transpose(0, 1).flatten(0, 1).contiguous() for p in (w, b)]
        h, gate = F.linear(x[:4096].float(), geglu.proj.weight.float(), geglu.proj.bias.float()).chunk(2, -1)
        want = h * F.gelu(gate)
        flop = 2 * M * C * 8 * C

        def row(name, fn, out):
            ms = timed(fn, repeats=20)
            err = ((out[:4096].float() - want).norm() / want.norm()).item()
            rows.append(dict(C=C, M=M, form=name, ms=ms, tflops=flop / ms / 1e9, err=err))
            print(rows[-1], flush=True)

        with torch.no_grad():
            row("cublas projection alone", lambda: geglu.proj(x), geglu(x))
            row("eager: cublas + geglu_kernel", lambda: eager(geglu, x), eager(geglu, x))
            forms = [(f"fused {tiles}", functools.partial(fast.geglu_gemm, x, w, b, tiles)) for tiles in CONFIGS]
            forms.append(("interleaved (128, 128, 64, 8, 4, 3)", functools.partial(interleaved, x, *inter)))
            forms += [(f"persistent, two accumulators {tiles}", functools.partial(persistent, x, w, b, tiles))
                      for tiles in ((128, 128, 64, 8, 8, 3), (128, 64, 64, 8, 4, 3))]
            forms += [(f"persistent 3D view {tiles}", functools.partial(persistent_view3d, x, w, b, tiles))
                      for tiles in ((128, 128, 64, 8, 4, 3), (128, 128, 64, 8, 8, 3), (128, 256, 64, 8, 8, 3))]
            for name, fn in forms:
                try:
                    row(name, fn, fn())
                except Exception as e:  # a config that does not fit (shared memory, registers), a missing feature
                    print(C, name, type(e).__name__, str(e)[:300], flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
