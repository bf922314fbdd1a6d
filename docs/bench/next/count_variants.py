"""How many Triton kernel variants fast.compile_kernels submits for sample.py's VC2 run (bf16, 320x512, decode batch
32), per kernel, and which of each kernel's arguments tell them apart: on a CPU, in about a second. The kernels are
fakes that record their launches, and the heavy torch ops of the stand-in forward and decodes (convs, GEMMs,
attention, the elementwise passes) return empty tensors of their meta shapes, so no arithmetic runs.

    python3 docs/bench/next/count_variants.py [--frames 1150]
"""
import argparse
import collections
import inspect
import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import clip_parallel  # noqa: E402
import fast  # noqa: E402
import model  # noqa: E402
from dual_scope import DualScope  # noqa: E402

SHAPE_ONLY = ("convolution", "mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product", "_efficient_attention",
              "_flash", "copy_", "cat", "add", "mul", "clone", "_to_copy", "index", "where", "sub", "div", "silu",
              "gelu", "layer_norm", "group_norm", "native", "repeat", "sum", "mean", "var", "exp", "softmax", "fill",
              "zero", "rsqrt", "pow", "square", "neg", "sigmoid", "masked")


class ShapesOnly(TorchDispatchMode):  # the SHAPE_ONLY ops: their output's size and strides, values left unset
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.__name__
        if not any(h in name for h in SHAPE_ONLY):
            return func(*args, **kwargs)
        to_meta = lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t  # noqa: E731
        try:
            out = func(*tree_map(to_meta, args), **tree_map(to_meta, kwargs))
        except Exception:  # an op meta tensors do not take: run it
            return func(*args, **kwargs)
        if name.endswith("_"):  # in place: its first argument
            return args[0]
        if "out" in kwargs:
            return kwargs["out"]
        return tree_map(lambda t: torch.empty_strided(t.shape, t.stride(), dtype=t.dtype)
                        if isinstance(t, torch.Tensor) else t, out)


class Recorded:  # stands in for a Triton kernel: records each launch; keeps the kernel's do_not_specialize
    def __init__(self, kernel, launches):
        self.params, self.launches = getattr(kernel, "params", ()), launches

    def __getitem__(self, grid):
        return lambda *args, **kwargs: self.launches.append((args, kwargs))


class Descriptor:  # a TMA descriptor's stand-in: what fast.variant reads of it
    def __init__(self, base, shape=None, strides=None, block_shape=None):
        self.base, self.block_shape = base, block_shape

    @classmethod
    def from_tensor(cls, t, block_shape):
        return cls(t, block_shape=block_shape)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1150, help="the clip length one rank runs (default 1150)")
    args = p.parse_args()
    launches = {name: [] for name in fast.TRITON_KERNELS}
    real = {name: getattr(fast, name) for name in fast.TRITON_KERNELS}
    for name in fast.TRITON_KERNELS:
        setattr(fast, name, Recorded(real[name], launches[name]))
    fast.use_kernels, fast.INTERPRET, fast.TensorDescriptor = (lambda x: True), False, Descriptor
    unet = model.UNet(**model.VC2_CONFIG["unet"]).to(torch.bfloat16)
    vae = model.AutoencoderKL(model.VC2_CONFIG["vae"]["ddconfig"], model.VC2_CONFIG["vae"]["embed_dim"])
    with clip_parallel.parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet), \
            fast.accelerate_decoder(vae.to(torch.bfloat16)), ShapesOnly():
        fast.compile_kernels(unet, (4, 40, 64), args.frames, 24, vae, decode_batch=32, threads=1)
    total = 0
    for name, calls in launches.items():
        if not calls:
            continue
        total += len(calls)  # compile_kernels submits each variant once
        params = list(inspect.signature(real[name].fn).parameters)
        plain = {q.num for q in getattr(fast, name).params if q.do_not_specialize}
        keys = [fast.variant(a, k, plain) if plain else fast.variant(a, k) for a, k in calls]
        varies = [params[i] for i in range(len(keys[0][0])) if len({key[0][i] for key in keys}) > 1]
        varies += sorted({n for key in keys for n, v in key[1] if len({dict(k[1]).get(n) for k in keys}) > 1})
        print(f"{name:24s} {len(calls):3d} variants; told apart by {', '.join(varies) or '-'}")
    print(f"total {total} variants")


if __name__ == "__main__":
    main()
