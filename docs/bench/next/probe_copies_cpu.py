"""Where the eager fast forward copies activations, counted on a CPU (no GPU needed): every aten copy, clone, cast,
cat and pad of one forward, by the line of this repository that made it, in elements.

    python docs/bench/next/probe_copies_cpu.py 8        # VC2's UNet, bf16, random weights, 320x512, 8 frames (~1 min)

Each copy is a read and a write of its elements on the GPU, so the table ranks the memory traffic that is layout and
not arithmetic (probe_copies.py ranks the compiled forward's eager copies on a GPU, by their GPU time) (2026-12-02, 8 frames: 1219 M elements a forward, the level-1 activation being 13 M; 1340 M
before run 37 kept the frames channels-first, when fast.normalize's transpose, written for a view, was a copy).
"""
import collections
import os
import sys
import traceback

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, ROOT)
import clip_parallel  # noqa: E402
import fast  # noqa: E402
import model  # noqa: E402
import simulate  # noqa: E402
from dual_scope import DualScope  # noqa: E402

COPIES = {"aten.copy_.default", "aten.clone.default", "aten._to_copy.default", "aten.cat.default",
          "aten.constant_pad_nd.default"}


class CountCopies(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.by_line = collections.defaultdict(lambda: [0, 0])  # (op, line) -> [calls, elements]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if str(func) in COPIES:
            ours = [f for f in traceback.extract_stack()[:-1] if f.filename.startswith(ROOT)]
            where = f"{os.path.basename(ours[-1].filename)}:{ours[-1].lineno} {ours[-1].line}" if ours else "?"
            entry = self.by_line[(str(func).split(".")[1], where)]
            entry[0] += 1
            entry[1] += (out if isinstance(out, torch.Tensor) else args[0]).numel()
        return out


def main(n):
    torch.set_grad_enabled(False)
    cfg = model.VC2_CONFIG["unet"]
    unet = simulate.randomize(model.UNet(**cfg).eval(), 0).to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, n, 40, 64, generator=g).bfloat16()
    ctx = torch.randn(2, 77, cfg["context_dim"], generator=g).bfloat16()
    comm = clip_parallel.EmulatedComm(clip_parallel.EmulatedGroup(1), 0)
    counter = CountCopies()
    with clip_parallel.parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet, compile=False), counter:
        clip_parallel.clip_forward(unet, comm, n, x, torch.full((2,), 901), ctx, 24)
    total = sum(e for _, e in counter.by_line.values())
    print(f"{n} frames: {total / 1e6:.0f} M elements copied; a level-1 activation is {2 * n * 320 * 2560 / 1e6:.0f} M")
    for (op, where), (calls, elements) in sorted(counter.by_line.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"{100 * elements / total:5.1f} % {calls:5d} {op:12s} {where[:110]}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 8)
