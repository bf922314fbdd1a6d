"""Probe for the next speed step (docs/BENCH.md run 6, "What remains"): ClipAttention's key bands and query blocks.

Times, at the UNet's temporal-attention shapes for n frames per GPU on one rank (both video ends padded), the
band construction of dual_scope.clip_attention three ways, plus the whole attention call:
  pad_cat   today's code: F.pad of the local frames (fills, then copies), unfold view, cat with the global frames
  compiled  the same function under torch.compile(dynamic=False)
  direct    one preallocated band buffer: each block's frames copied in, only the padding zeroed, globals broadcast
Checks the three give the same bands. And the whole attention two ways:
  clip_attention  today's dual_scope.clip_attention (bands, a (b, nb, B, S) bias mask, SDPA)
  flex<B>         FlexAttention (compiled) on the given keys [halo | clip | halo | global] as they are: no band copies,
                  no mask tensor; the dual-scope structure as a block mask (blocks of B), the bias as a score_mod
Checked equal on CPU in float64 (1e-15, 2026-11-23). Run on the GPU: python docs/bench/next/probe_bands.py [--frames 128]
"""
import argparse
import json
import sys

import os

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import create_block_mask, flex_attention

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
from dual_scope import DualScope, clip_attention  # noqa: E402


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


def flex_masks(start, left, frames, n, given, scope, timesteps, batch, device, block):
    """clip_attention's math for FlexAttention: (block_mask, score_mod) over keys [halo | clip | halo | global]."""
    w = min(scope.local_window, frames - 1)
    G = torch.tensor(scope.global_indices(frames), device=device)
    b_local, b_global = scope.biases(timesteps.to(device))
    m = batch // len(b_local)  # sequences per batch element (batch-major)

    def mask_mod(b, h, qi, kv):  # query frame start + qi; key kv is frame start - left + kv, or global kv - given
        i = start + qi
        local = (kv < given) & ((i - (start - left + kv)).abs() <= w)
        glob = (kv >= given) & ((i - G[(kv - given).clamp(min=0)]).abs() > w)  # a global frame in L(i) counts once
        return local | glob

    def score_mod(score, b, h, qi, kv):
        return score + torch.where(kv < given, b_local[b // m], b_global[b // m]).to(score.dtype)

    mask = create_block_mask(mask_mod, None, None, n, given + len(G), device=device, BLOCK_SIZE=block)
    return mask, score_mod


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
    p.add_argument("--cpu-check", action="store_true",
                   help="only check that the variants agree: CPU, float64, small shapes, no timings")
    args = p.parse_args()
    torch.manual_seed(0)
    dev, dt, tol = ("cpu", torch.float64, 1e-12) if args.cpu_check else ("cuda", torch.bfloat16, 2e-2)
    time_ms = (lambda fn: None) if args.cpu_check else timeit
    backend = "eager" if args.cpu_check else "inductor"
    n, w, k, B = args.frames, 8, 16, 64
    nb = -(-n // B)
    left = right = 0  # one rank: both video ends
    given = left + n + right
    compiled = torch.compile(bands_pad_cat, dynamic=False, backend=backend)
    flex_compiled = flex_attention if args.cpu_check else torch.compile(flex_attention, dynamic=False)
    scope = DualScope(local_window=w, global_frames=k)
    rows = []
    levels = ((2 * 40 * 64, 5), (2 * 20 * 32, 10), (2 * 10 * 16, 20), (2 * 5 * 8, 20))  # UNet levels 0..3
    for N, s in levels[3:] if args.cpu_check else levels:
        x = torch.randn(N, s, given + k, 64, device=dev, dtype=dt)
        args_ = (x, given, left, right, n, w, B, nb)
        ref = bands_pad_cat(*args_)
        for name, fn in (("compiled", compiled), ("direct", bands_direct)):
            assert torch.equal(fn(*args_), ref), name
        q = torch.randn(N * nb, s, B, 64, device=dev, dtype=dt)
        mask = torch.zeros(1, 1, B, ref.shape[2], device=dev, dtype=dt).expand(N * nb, 1, -1, -1)
        row = dict(N=N, heads=s, n=n, bytes=ref.numel() * ref.element_size())
        for name, fn in (("pad_cat", bands_pad_cat), ("compiled", compiled), ("direct", bands_direct)):
            row[name + "_ms"] = time_ms(lambda: fn(*args_))
        row["sdpa_ms"] = time_ms(lambda: F.scaled_dot_product_attention(q, ref, ref, attn_mask=mask))
        # the whole attention: today's clip_attention vs FlexAttention on the unbanded keys
        qn, kn, vn = (torch.randn(N, s, m, 64, device=dev, dtype=dt) for m in (n, given + k, given + k))
        t = torch.tensor([901])
        attend = lambda: clip_attention(qn, kn, vn, 0, left, n, t, scope)  # noqa: E731
        today = attend()
        row["clip_attention_ms"] = time_ms(attend)
        for block in (128, 64):
            bm, score_mod = flex_masks(0, left, n, n, given, scope, t, N, dev, block)
            # the GPU kernel's tiles must divide the mask's blocks (run 7: block 64 with the default 128 tiles failed)
            opts = None if args.cpu_check else dict(BLOCK_M=block, BLOCK_N=block)
            flex = lambda: flex_compiled(qn, kn, vn, score_mod=score_mod, block_mask=bm, kernel_options=opts)  # noqa: E731
            try:
                err = ((flex() - today).abs().max() / today.abs().max()).item()
            except Exception as e:  # one variant failing must not lose the other rows (run 7 lost them all)
                row[f"flex{block}_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                continue
            assert err < tol, (block, err)
            row[f"flex{block}_ms"], row[f"flex{block}_rel_diff"] = time_ms(flex), err
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
