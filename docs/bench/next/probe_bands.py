"""Probe for the next speed step (BENCH.md run 6, "What remains"): ClipAttention's key bands and query blocks.

Times, at the UNet's temporal-attention shapes for n frames per GPU on one rank (both video ends padded), the
band construction of dual_scope.clip_attention three ways, plus the whole attention call:
  pad_cat   today's code: F.pad of the local frames (fills, then copies), unfold view, cat with the global frames
  compiled  the same function under torch.compile(dynamic=False)
  direct    one preallocated band buffer: each block's frames copied in, only the padding zeroed, globals broadcast
Checks the three give the same bands. Run on the GPU: python docs/bench/next/probe_bands.py [--frames 128]
"""
import argparse
import json
import sys

import torch
import torch.nn.functional as F


def bands_pad_cat(x, given, left, right, n, w, B, nb):  # as dual_scope.clip_attention's bands()
    local = F.pad(x[:, :, :given].transpose(1, 2), (0, 0, 0, 0, w - left, nb * B + w - n - right))
    glob = x[:, :, given:].transpose(1, 2)[:, None].expand(-1, nb, -1, -1, -1)
    band = local.unfold(1, B + 2 * w, B).permute(0, 1, 4, 2, 3)
    return torch.cat([band, glob], 2).flatten(0, 1).transpose(1, 2)


def bands_direct(x, given, left, right, n, w, B, nb):
    N, s, _, d = x.shape
    L = B + 2 * w
    out = x.new_empty(N, nb, L + x.shape[2] - given, s, d)
    local = x[:, :, :given].transpose(1, 2)  # (N, given, s, d), frame f of the band grid is local[f - (w - left)]
    for j in range(nb):
        lo, hi = j * B - (w - left), j * B - (w - left) + L  # this block's band in local's frame index
        a, b = max(lo, 0), min(hi, given)
        if a > lo:
            out[:, j, :a - lo].zero_()
        if hi > b:
            out[:, j, b - lo:L].zero_()
        out[:, j, a - lo:b - lo] = local[:, a:b]
    out[:, :, L:] = x[:, :, given:].transpose(1, 2)[:, None]
    return out.flatten(0, 1).transpose(1, 2)


def timeit(fn, iters=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(iters):
        fn()
    e1.record()
    torch.cuda.synchronize()
    return e0.elapsed_time(e1) / iters


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=128, help="n, frames per GPU (default 128)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    n, w, k, B = args.frames, 8, 16, 64
    nb = -(-n // B)
    left = right = 0  # one rank: both video ends
    given = left + n + right
    compiled = torch.compile(bands_pad_cat, dynamic=False)
    rows = []
    for N, s in ((2 * 40 * 64, 5), (2 * 20 * 32, 10), (2 * 10 * 16, 20), (2 * 5 * 8, 20)):  # UNet levels 0..3
        x = torch.randn(N, s, given + k, 64, device=dev, dtype=dt)
        args_ = (x, given, left, right, n, w, B, nb)
        ref = bands_pad_cat(*args_)
        for name, fn in (("compiled", compiled), ("direct", bands_direct)):
            assert torch.equal(fn(*args_), ref), name
        q = torch.randn(N * nb, s, B, 64, device=dev, dtype=dt)
        mask = torch.zeros(1, 1, B, ref.shape[2], device=dev, dtype=dt).expand(N * nb, 1, -1, -1)
        row = dict(N=N, heads=s, n=n, bytes=ref.numel() * ref.element_size())
        for name, fn in (("pad_cat", bands_pad_cat), ("compiled", compiled), ("direct", bands_direct)):
            row[name + "_ms"] = timeit(lambda: fn(*args_))
        row["sdpa_ms"] = timeit(lambda: F.scaled_dot_product_attention(q, ref, ref, attn_mask=mask))
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
