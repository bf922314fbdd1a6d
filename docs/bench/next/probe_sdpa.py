"""Probe: which SDPA backend is fastest at the UNet's attention shapes (n = 128 frames per GPU, batch 2, 40x64)?

Run 9's op table gives all 66 SDPA calls of a forward 59 ms (cuDNN, chosen by PyTorch's default priority), about
220 TFLOP/s over ~13 TFLOP, most of it the spatial self-attention at the first level (256 frames x 5 heads x 2560
tokens, head dim 64). Times each backend on q, k, v laid out as the model makes them (split_heads: strided views
of one (l, heads * 64) projection), and the temporal band attention (blocks of 64 and 32, with its bias mask).
Usage on the GPU: python docs/bench/next/probe_sdpa.py
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

dev, dt = "cuda", torch.bfloat16
BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION}


def heads(n, l, h, d=64):  # (n, l, h*d) projection output -> (n, h, l, d) strided view, as model.Attention.split_heads
    return torch.randn(n, l, h * d, device=dev, dtype=dt).unflatten(2, (h, d)).transpose(1, 2)


def time_ms(fn, iters=10):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def case(name, q, k, v, mask=None):
    flops = 4 * q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] * q.shape[3]
    row = {"case": name, "q": list(q.shape), "k": list(k.shape), "gflop": flops / 1e9}
    ref = None
    for bname, backend in BACKENDS.items():
        try:
            with sdpa_kernel([backend]):
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
                ms = time_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask))
            ref = out if ref is None else ref
            row[bname] = {"ms": round(ms, 3), "tflops": round(flops / ms / 1e9, 1),
                          "err": float((out.float() - ref.float()).norm() / ref.float().norm())}
        except Exception as e:  # noqa: BLE001 - a backend that refuses the shape is a result
            row[bname] = {"error": str(e).splitlines()[0][:160]}
    print(json.dumps(row), flush=True)
    return row


def band_mask(N, B, S):  # (N, 1, B, S) bias: a broadcast view of one (B, S) block pattern, as clip_attention's
    m = torch.full((B, S), float("-inf"), device=dev, dtype=dt)
    w = (S - B - 16) // 2
    for i in range(B):
        m[i, i:i + 2 * w + 1] = 10.0
    m[:, S - 16:] = 0.0
    return m.expand(N, 1, B, S)


torch.manual_seed(0)
rows, frames = [], 256  # n = 128 frames x batch 2
for level, (l, h) in enumerate([(2560, 5), (640, 10), (160, 20)], 1):
    q, k, v = heads(frames, l, h), heads(frames, l, h), heads(frames, l, h)
    rows.append(case(f"spatial self L{level}", q, k, v))
    ctx = heads(frames, 77, h)
    rows.append(case(f"spatial cross L{level}", q, ctx, ctx))
for B in (64, 32):  # temporal band attention at L1: 2*2560 sequences, 128 frames in 128/B blocks
    nb = 128 // B
    N, S = 2 * 2560 * nb, B + 16 + 16
    q, k, v = heads(N, B, 5), heads(N, S, 5), heads(N, S, 5)
    rows.append(case(f"temporal band L1 B={B}", q, k, v, band_mask(N, B, S)))
if len(sys.argv) > 1:
    json.dump(rows, open(sys.argv[1], "w"), indent=1)
