"""Which compiled graphs pay for their compile time in one cold run, by the size of what they process: bench.py with
only the calls on frames of at least MIN_PIXELS latent pixels compiled (every fast form compiled as committed; a call
on smaller frames runs the same function eagerly, so its graph is never compiled).

    python docs/bench/next/probe_sizes.py 2560 --e2e --compile --frames 1150 --steps 3   # UNet level 1 only (40x64)
    python docs/bench/next/probe_sizes.py 640 --e2e --compile --frames 1150 --steps 3    # levels 1 and 2

Why: the compile costs about the same per graph (~1.8 s with an empty cache), while what a compiled graph saves per
step grows with its tensors: at 320x512 the UNet's four levels have 2560, 640, 160 and 40 latent pixels a frame
(320, 640, 1280, 1280 channels), so the memory-bound passes compile removes are ~55 / 27 / 14 / 4 % at levels 1-4.
Run 32 split the graphs by kind (clip arithmetic / per-frame layers): each half gave half the savings for its share
of the compile. Split by level, level 1 alone might hold half the savings for a quarter of the compile.
Run each in a process with its own empty TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR for cold numbers.
"""
import os
import sys
from types import SimpleNamespace

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import bench  # noqa: E402
import fast  # noqa: E402

MIN_PIXELS, argv = int(sys.argv[1]), sys.argv[2:]


def pixels(fn, args):
    """Latent pixels per frame of a call to one of the functions fast.py compiles."""
    if fn is fast.banded_attention:  # q: ((b h w), heads, n, d), timesteps: (b,)
        return args[0].shape[0] // args[6].shape[0]
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    video = [a for a in tensors if a.dim() == 5]  # (b, c, n, h, w): the clip arithmetic
    if video:
        return video[-1].shape[-2] * video[-1].shape[-1]
    x = tensors[0]
    if x.dim() == 4:  # ((b t), c, h, w): a per-frame layer
        return x.shape[-2] * x.shape[-1]
    return x.shape[0] // 2  # ((b h w), t, c) tokens of a temporal layer; b = 2 in sampling (cond and uncond)


compile_any_length = fast.compile_any_length


def by_size(fn, backend, dims):
    compiled_fn = compile_any_length(fn, backend, dims) if dims is not None else \
        torch.compile(fn, backend=backend, dynamic=False)

    def call(*args):
        return compiled_fn(*args) if pixels(fn, args) >= MIN_PIXELS else fn(*args)
    return call


fast.compile_any_length = by_size  # compile_frame_layers reads it at call time
fast.compiled = lambda backend, any_length=True: SimpleNamespace(**{
    name: by_size(fn, backend, fast.FRAMES_DIMS.get(name) if any_length else None)
    for name, fn in vars(fast.EAGER).items()})
bench.main(argv)
print("probe_sizes: MIN_PIXELS", MIN_PIXELS, "graphs", fast.compile_stats().get("graphs"))
