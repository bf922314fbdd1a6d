"""Launch settings of fast.py's memory-bound kernels (the channels' moments, the GroupNorm/residual pass, the
LayerNorm), each timed on the shapes of one n = 128 forward at every UNet level (VC2: 320-1280 channels, 40x64 to
5x8 pixels, batch 2, bf16), against the settings fast.py has now: which tile sizes and warps read and write fastest.

    python3 docs/bench/next/probe_passes.py --json rows.json                       # one GPU
    TRITON_INTERPRET=1 python3 docs/bench/next/probe_passes.py --smoke              # a CPU: tiny shapes, checks only

Each row: a kernel, its settings, a case (what the UNet calls it for; the GroupNorm cases time fast.frame_pass
whole, so the channels' moments of x before the pass are in them), ms per call (median of --iters, CUDA events) and
the largest difference from the current settings' output (their arithmetic is the same up to the order of float32
sums). `best` (used by ab_common.sh's ab_best_passes) sums each setting's ms over the cases.
"""
import argparse
import itertools
import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch  # noqa: E402
from torch import nn  # noqa: E402

import fast  # noqa: E402

# the settings each kernel is tried with: fast.py's module constants, the current ones first
SETTINGS = {
    "moments": (("MOMENTS_BLOCK", "MOMENTS_WARPS"), list(itertools.product((64, 32, 128), (4, 8)))),
    "pass": (("ROWS", "BLOCK", "PASS_WARPS"), list(itertools.product((512, 1024), (64, 32, 128), (4, 8)))),
    "layer_norm": (("LAYER_NORM_VALUES", "LAYER_NORM_WARPS"), list(itertools.product((4096, 2048, 8192), (4, 8)))),
}


def cases(frames, levels, device, dtype):
    """(kernel, case name, fn() -> output tensors) for each level (channels, h, w) of the UNet."""
    gen = torch.Generator(device).manual_seed(0)
    for c, h, w in levels:
        x = torch.randn(frames, c, h, w, generator=gen, device=device).to(dtype)  # channels-first frames
        x_last = x.contiguous(memory_format=torch.channels_last)  # a conv's output
        norm = nn.GroupNorm(32, c).to(device)
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=gen)
            norm.bias.uniform_(-0.5, 0.5, generator=gen)
        pre = torch.randn(frames, c, generator=gen, device=device)
        bias = torch.randn(c, generator=gen, device=device)
        video = x.view(2, -1, c, h, w).transpose(1, 2)  # (b, c, n, h, w), frames-major: a temporal layer's input
        scale, shift = torch.rand(2, c, generator=gen, device=device) + 0.5, torch.randn(2, c, generator=gen,
                                                                                        device=device)
        tokens = x.permute(0, 2, 3, 1).reshape(-1, c)  # (rows, c): a transformer's tokens
        ln = nn.LayerNorm(c).to(device)
        size = f"{c}x{h}x{w}"
        yield "moments", f"channels-first {size}", lambda x=x: fast.channel_moments(x)
        yield "moments", f"channels-last {size}", lambda x=x_last: fast.channel_moments(x)
        yield "pass", f"norm1: GroupNorm + SiLU, first -> last {size}", \
            lambda x=x, n=norm: fast.frame_pass(x, n, silu=True)
        yield "pass", f"norm2: GroupNorm + pre + SiLU, last -> last {size}", \
            lambda x=x_last, n=norm, p=pre: fast.frame_pass(x, n, p, silu=True)
        yield "pass", f"residual add, last + first -> first {size}", \
            lambda x=x_last, r=x, b=bias: fast.frame_pass(x, residual=r, bias=b, channels_last=False)
        yield "pass", f"temporal normalise + SiLU {size}", \
            lambda v=video, a=scale, s=shift: fast.kernel_normalize_silu(v, a, s)
        yield "pass", f"temporal normalise into tokens {size}", \
            lambda v=video, a=scale, s=shift: fast.kernel_normalize_tokens(v, a, s)
        yield "layer_norm", f"tokens {size}", lambda t=tokens, n=ln, s=bias: fast.layer_norm(t, n, s)


def timed(fn, iters):
    if not torch.cuda.is_available():
        fn()
        return 0.0
    for _ in range(3):
        fn()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def outputs(result):
    return [t.float() for t in (result if isinstance(result, tuple) else (result,))]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--smoke", action="store_true",
                   help="tiny shapes, the first and last setting of each kernel (CPU, interpreter)")
    p.add_argument("--json")
    args = p.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.smoke:
        frames, levels, dtype = 4, [(64, 4, 6), (128, 2, 3)], torch.float32
    else:
        frames, levels, dtype = 256, [(320, 40, 64), (640, 20, 32), (1280, 10, 16), (1280, 5, 8)], torch.bfloat16
    rows, current = [], {k: tuple(getattr(fast, n) for n in names) for k, (names, _) in SETTINGS.items()}
    with torch.no_grad():
        for kernel, case, fn in cases(frames, levels, device, dtype):
            names, settings = SETTINGS[kernel]
            reference = outputs(fn())  # the current settings
            for setting in settings[:1] + settings[-1:] if args.smoke else settings:
                for name, value in zip(names, setting):
                    setattr(fast, name, value)
                try:
                    ms = timed(fn, args.iters)
                    diff = max((a - b).abs().max().item() for a, b in zip(outputs(fn()), reference))
                except Exception as e:  # a setting this GPU cannot run (shared memory, registers): skipped
                    ms, diff = None, repr(e)[:200]
                finally:
                    for name, value in zip(names, current[kernel]):
                        setattr(fast, name, value)
                rows.append(dict(kernel=kernel, setting=list(setting), case=case, ms=ms, diff=diff))
                print(json.dumps(rows[-1]), flush=True)
    best = {}
    for kernel, (names, _) in SETTINGS.items():  # each setting's ms summed over the cases, if it ran them all
        mine, total = [r for r in rows if r["kernel"] == kernel], {}
        for setting in {tuple(r["setting"]) for r in mine}:
            ms = [r["ms"] for r in mine if tuple(r["setting"]) == setting]
            if None not in ms:
                total[setting] = sum(ms)
        pick = min(total, key=total.get)
        best[kernel] = dict(names=names, setting=list(pick), ms=total[pick], current_ms=total[current[kernel]])
        print(kernel, "current", current[kernel], round(total[current[kernel]], 3), "best", pick, round(total[pick], 3))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, best=best), f, indent=1)


if __name__ == "__main__":
    main()
