"""GEGLU as one Triton GEMM with warp specialisation (Triton's `tl.range(..., warp_specialize=True)`: some warps load
tiles by TMA while others multiply, and in a persistent kernel the epilogue of one tile overlaps the next tile's
loads), against fast.geglu_gemm as it is and cuBLAS's projection alone, at the UNet's three widths and sample.py's
chunk sizes (2^25 / C tokens a call), bf16, one GPU. Run 54's probe: fast.geglu_gemm takes 1.27-1.57x the time of
cuBLAS's projection alone (0.506 / 0.707 / 1.180 ms against 0.322 / 0.504 / 0.933 at C = 320 / 640 / 1280), the
persistent forms without warp specialisation no better. Whether Triton 3.6 specialises warps on Hopper (sm_90) at all
is the first question: a form that does not compile prints its error and the probe goes on.

Forms (all from the projection's own weight (2N, K) read through the 3D view (N, 2, K), as fast.geglu_gemm):
  persistent      one program per SM looping over the tiles; WS: the tile loop warp-specialised
  kloop           one program a tile (as fast's); WS: the k loop warp-specialised
  device          persistent, the tensor descriptors made in the kernel (tl.make_tensor_descriptor)
  SUBTILE 2       the epilogue in two halves of the tile's columns (less shared memory for the store)

    python3 docs/bench/next/probe_geglu_ws.py --json rows.json     # ~2 min on an H200
    TRITON_INTERPRET=1 python3 docs/bench/next/probe_geglu_ws.py --smoke   # CPU: each form against float32 math
"""
import argparse
import json
import os
import sys

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def geglu_store(acc, b, out, m, n, N, BM: tl.constexpr, BN: tl.constexpr):
    # acc (BM, BN): columns alternate value j and gate j for outputs n .. n + BN / 2; bias, x * gelu(gate), store
    value, gate = tl.split(tl.reshape(acc, (BM, BN // 2, 2)))
    j = n + tl.arange(0, BN // 2)
    value += tl.load(b + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
    gate += tl.load(b + N + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
    out.store([m, n], (value * 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))).to(out.dtype))


@triton.jit
def geglu_tile(acc, b, out, m, n, N, BM: tl.constexpr, BN: tl.constexpr, SUBTILE: tl.constexpr):
    if SUBTILE == 2:  # two halves of BN / 4 outputs each, one after the other
        h0, h1 = tl.split(tl.permute(tl.reshape(acc, (BM, 2, BN // 2)), (0, 2, 1)))
        geglu_store(h0, b, out, m, n, N, BM, BN // 2)
        geglu_store(h1, b, out, m, n + BN // 4, N, BM, BN // 2)
    else:
        geglu_store(acc, b, out, m, n, N, BM, BN)


@triton.jit
def tile_at(tile, tiles_m, tiles_n, BM: tl.constexpr, BN: tl.constexpr, GROUP_M: tl.constexpr):
    width = GROUP_M * tiles_n  # tiles in groups of GROUP_M tile rows, column by column (as fast.geglu_gemm_kernel)
    first_m = tile // width * GROUP_M
    rows = tl.minimum(tiles_m - first_m, GROUP_M)
    return (first_m + tile % width % rows) * BM, tile % width // rows * (BN // 2)


@triton.jit
def mainloop(x, w, m, n, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, WS: tl.constexpr,
             UPCAST: tl.constexpr):
    acc = tl.zeros((BM, BN), tl.float32)
    for k in tl.range(0, K, BK, warp_specialize=WS):
        a, w_t = x.load([m, k]), tl.reshape(w.load([n, 0, k]), (BN, BK)).T
        if UPCAST:  # Triton's interpreter multiplies 16-bit float tiles wrongly (fast.py says so too)
            a, w_t = a.to(tl.float32), w_t.to(tl.float32)
        acc = tl.dot(a, w_t, acc)
    return acc


@triton.jit
def kloop_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
                 WS: tl.constexpr, SUBTILE: tl.constexpr, UPCAST: tl.constexpr):
    m, n = tile_at(tl.program_id(0), tl.cdiv(M, BM), tl.cdiv(N, BN // 2), BM, BN, GROUP_M)
    geglu_tile(mainloop(x, w, m, n, K, BM, BN, BK, WS, UPCAST), b, out, m, n, N, BM, BN, SUBTILE)


@triton.jit
def persistent_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                      GROUP_M: tl.constexpr, SMS: tl.constexpr, WS: tl.constexpr, SUBTILE: tl.constexpr,
                      UPCAST: tl.constexpr):
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN // 2)
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS, flatten=False, warp_specialize=WS):
        m, n = tile_at(tile, tiles_m, tiles_n, BM, BN, GROUP_M)
        acc = tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            a, w_t = x.load([m, k]), tl.reshape(w.load([n, 0, k]), (BN, BK)).T
            if UPCAST:
                a, w_t = a.to(tl.float32), w_t.to(tl.float32)
            acc = tl.dot(a, w_t, acc)
        geglu_tile(acc, b, out, m, n, N, BM, BN, SUBTILE)


@triton.jit
def device_kernel(x_ptr, w_ptr, b, out_ptr, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                  GROUP_M: tl.constexpr, SMS: tl.constexpr, WS: tl.constexpr, SUBTILE: tl.constexpr,
                  UPCAST: tl.constexpr):  # persistent, the descriptors made on the device
    x = tl.make_tensor_descriptor(x_ptr, [M, K], [K, 1], [BM, BK])
    w = tl.make_tensor_descriptor(w_ptr, [N, 2, K], [K, N * K, 1], [BN // 2, 2, BK])
    out = tl.make_tensor_descriptor(out_ptr, [M, N], [N, 1], [BM, BN // 2 // SUBTILE])
    tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN // 2)
    for tile in tl.range(tl.program_id(0), tiles_m * tiles_n, SMS, flatten=False, warp_specialize=WS):
        m, n = tile_at(tile, tiles_m, tiles_n, BM, BN, GROUP_M)
        acc = tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            a, w_t = x.load([m, k]), tl.reshape(w.load([n, 0, k]), (BN, BK)).T
            if UPCAST:
                a, w_t = a.to(tl.float32), w_t.to(tl.float32)
            acc = tl.dot(a, w_t, acc)
        geglu_tile(acc, b, out, m, n, N, BM, BN, SUBTILE)


def sms(x):
    return 4 if x.device.type == "cpu" else torch.cuda.get_device_properties(x.device).multi_processor_count


def geglu(form, x, w, b, tiles, ws, subtile):
    BM, BN, BK, group, warps, stages = tiles
    (M, K), N = x.shape, len(w) // 2
    out = x.new_empty(M, N)
    run = dict(BM=BM, BN=BN, BK=BK, GROUP_M=group, WS=ws, SUBTILE=subtile, UPCAST=INTERPRET, num_warps=warps,
               num_stages=stages)
    tiles_all = triton.cdiv(M, BM) * triton.cdiv(N, BN // 2)
    if form == "device":
        device_kernel[(min(sms(x), tiles_all),)](x, w, b, out, M, N, K, SMS=sms(x), **run)
        return out
    x_d, out_d = TensorDescriptor.from_tensor(x, [BM, BK]), TensorDescriptor.from_tensor(out, [BM, BN // 2 // subtile])
    w_d = TensorDescriptor(w, [N, 2, K], [K, N * K, 1], [BN // 2, 2, BK])
    if form == "persistent":
        persistent_kernel[(min(sms(x), tiles_all),)](x_d, w_d, b, out_d, M, N, K, SMS=sms(x), **run)
    else:
        kloop_kernel[(tiles_all,)](x_d, w_d, b, out_d, M, N, K, **run)
    return out


FORMS = [  # (form, tiles (BM, BN, BK, GROUP_M, warps, stages), warp-specialised, epilogue subtiles)
    *[("persistent", t, ws, 1) for ws in (True, False)
      for t in ((128, 128, 64, 8, 4, 3), (128, 256, 64, 8, 8, 3), (128, 256, 64, 8, 4, 3), (128, 256, 64, 8, 8, 4))],
    ("persistent", (128, 256, 64, 8, 8, 4), True, 2), ("persistent", (128, 256, 64, 8, 4, 4), True, 2),
    ("persistent", (128, 128, 64, 8, 4, 4), True, 2), ("persistent", (256, 128, 64, 8, 8, 3), True, 1),
    ("kloop", (128, 128, 64, 8, 4, 3), True, 1), ("kloop", (128, 256, 64, 8, 8, 3), True, 1),
    ("kloop", (128, 128, 64, 16, 4, 2), False, 2),
    ("device", (128, 256, 64, 8, 8, 3), True, 1), ("device", (128, 128, 64, 8, 4, 3), True, 1),
    ("device", (128, 256, 64, 8, 8, 4), True, 2),
]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--smoke", action="store_true", help="small shapes, float32, each form checked (CPU interpreter)")
    args = p.parse_args()
    device = "cpu" if args.smoke else "cuda"
    dtype = torch.float32 if args.smoke else torch.bfloat16
    if device == "cuda":
        from probe_decode import timed  # noqa: E402 (CUDA events, the median after a warm-up)
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=device))
    rows = []
    torch.manual_seed(0)
    for C in ((64,) if args.smoke else (320, 640, 1280)):
        M = 300 if args.smoke else 2 ** 25 // C
        ff = model.GEGLU(C, 4 * C).to(device, dtype)
        x = torch.randn(M, C, device=device, dtype=dtype)
        w, b = ff.proj.weight, ff.proj.bias
        h, gate = F.linear(x[:4096].float(), w.float(), b.float()).chunk(2, -1)
        want = h * F.gelu(gate)
        flop, N = 2 * M * C * 8 * C, 4 * C

        def row(name, fn):
            out = fn()
            err = ((out[:4096].float() - want).norm() / want.norm()).item() if out.shape[1] == N else None
            ms = None if args.smoke else timed(fn, repeats=20)
            rows.append(dict(C=C, M=M, form=name, ms=ms, tflops=ms and flop / ms / 1e9, err=err))
            print(rows[-1], flush=True)
            if args.smoke and err > 1e-5:
                raise SystemExit(f"{name}: error {err:.2e} against float32 math")

        with torch.no_grad():
            if not args.smoke:
                row("cublas projection alone", lambda: ff.proj(x))
                row(f"fast.geglu_gemm {fast.GEGLU_TILES}", lambda: fast.geglu_gemm(x, w, b))
            for form, tiles, ws, subtile in FORMS:
                if args.smoke:
                    tiles = (32, 32, 16, *tiles[3:])  # the interpreter's speed; every tile shape the same code
                name = f"{form} {tiles} ws={ws} subtile={subtile}"
                try:
                    row(name, lambda: geglu(form, x, w, b, tiles, ws, subtile))
                except SystemExit:
                    raise
                except Exception as e:  # does not compile here, or does not fit: say so and go on
                    print(C, name, type(e).__name__, str(e)[:400].replace("\n", " "), flush=True)
                    rows.append(dict(C=C, M=M, form=name, error=f"{type(e).__name__}: {str(e)[:400]}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
