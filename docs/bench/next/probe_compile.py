"""Triton's one-off compile of fast.py's kernel variants before sample.py's first step (fast.compile_kernels), with
an empty Triton cache, three ways: threads that compile each variant (kernel.warmup, run 48's code), threads that
launch it over an empty grid (compiled, and its launcher built and loaded: compile_kernels now), and a pool of
processes forked before CUDA starts, each compiling a variant from its specialisation alone (MockTensor-like
pointers: dtype and 16-byte alignment; the same ints and constants) and building its launcher, into the shared cache
that the parent's first launches then read.

    TRITON_CACHE_DIR=$(mktemp -d) python3 docs/bench/next/probe_compile.py --mode processes --json p.json

One row: the seconds of compile_kernels (VC2's UNet, random weights, bf16, 1150 frames, 40x64 latents, and the
VAE decoder at batch 32), the variants it compiled, then the first real forward at 1150 frames (batch 2) and a second
one: what the first still pays (cuBLAS's and cuDNN's first calls, variants compile_kernels missed), and how many
entries the Triton cache gained in it (variants compiled there).
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402 (torch and triton, not CUDA)


def warm(name, specs, kwargs):  # in a worker: compile one variant of fast.<name> from its specialisation
    from triton.runtime.jit import MockTensor
    from triton.tools.tensor_descriptor import TensorDescriptor

    class Pointer(MockTensor):
        def __init__(self, dtype, aligned):
            super().__init__(dtype)
            self.aligned = aligned

        def data_ptr(self):
            return 0 if self.aligned else 2

    def arg(s):
        if isinstance(s, tuple) and s[:1] == ("tensor",):
            return Pointer(s[1], s[2])
        if isinstance(s, tuple) and s[:1] == ("desc",):
            return TensorDescriptor(Pointer(s[1], True), list(s[3]), list(s[4]), list(s[2]))
        return s
    from triton.runtime import driver
    t = time.perf_counter()
    kernel = getattr(fast, name).warmup(*map(arg, specs), grid=(1,), **kwargs)
    driver.active.launcher_cls(kernel.src, kernel.metadata)  # a launcher of its own, built where Triton builds them
    return name, time.perf_counter() - t, os.getpid()


POOLS = []


class ChildPool:  # stands in for compile_kernels' ThreadPoolExecutor: each warmup to a forked worker
    def __init__(self, pool):
        self.pool, self.futures = pool, []
        POOLS.append(self)

    def submit(self, fn, *args, grid, **kwargs):
        import torch

        def spec(a):
            if isinstance(a, torch.Tensor):
                return "tensor", a.dtype, a.data_ptr() % 16 == 0
            if hasattr(a, "block_shape"):
                return "desc", a.base.dtype, tuple(a.block_shape), tuple(a.shape), tuple(a.strides)
            return a
        self.futures.append(self.pool.submit(warm, fn.__self__.fn.__name__, [spec(a) for a in args], kwargs))
        return self.futures[-1]

    def shutdown(self):
        for f in self.futures:
            f.exception()


def cache_entries():  # {entry: its files} of the Triton cache
    folder = os.environ.get("TRITON_CACHE_DIR", os.path.expanduser("~/.triton/cache"))
    return {e: sorted(os.listdir(os.path.join(folder, e))) for e in os.listdir(folder)} if os.path.isdir(folder) else {}


def warmup_launch(self, grid):  # CompileOnly as in run 48: kernel.warmup, no launcher
    def launch(*args, **kwargs):
        key = (self.kernel, fast.variant(args, kwargs))
        if key not in self.jobs:
            self.jobs[key] = self.pool.submit(self.kernel.warmup, *args, grid=grid, **kwargs)
    return launch


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mode", choices=("warmup", "empty-grid", "processes"), required=True)
    p.add_argument("--frames", type=int, default=1150)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    t_start = time.perf_counter()
    if args.mode == "processes":  # forked now, before this process starts CUDA: the workers may start their own
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        pool = ProcessPoolExecutor(os.cpu_count(), mp_context=multiprocessing.get_context("fork"))
        list(pool.map(abs, range(os.cpu_count())))
        fast.ThreadPoolExecutor = lambda *a, **k: ChildPool(pool)
        fast.CompileOnly.__getitem__ = warmup_launch
    elif args.mode == "warmup":
        fast.CompileOnly.__getitem__ = warmup_launch
    t_pool = time.perf_counter() - t_start
    import torch
    import model
    from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers
    from dual_scope import DualScope
    from simulate import randomize
    torch.set_grad_enabled(False)
    with torch.device("cuda"):
        unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), 0).bfloat16()
        cfg = model.VC2_CONFIG["vae"]
        vae = randomize(model.AutoencoderKL(cfg["ddconfig"], cfg["embed_dim"]).eval(), 0).bfloat16()
    latent = (4, 40, 64)
    row = dict(mode=args.mode, pool_s=t_pool, cpus=os.cpu_count())
    with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet), fast.accelerate_decoder(vae):
        before = cache_entries()
        t = time.perf_counter()
        fast.compile_kernels(unet, latent, args.frames, 24, vae, 32)
        row["compile_kernels_s"], row["cache_entries"] = time.perf_counter() - t, len(cache_entries()) - len(before)
        if POOLS:  # the workers' own clocks: variants, seconds each, workers used
            done = [f.result() for f in POOLS[-1].futures if f.exception() is None]
            row.update(jobs=len(POOLS[-1].futures), compiled=len(done), workers=len({pid for _, _, pid in done}),
                       job_s_sum=sum(s for _, s, _ in done), job_s_max=max((s for _, s, _ in done), default=0))
        x = torch.randn(2, *latent[:1], args.frames, *latent[1:], device="cuda", dtype=torch.bfloat16)
        ts, ctx = torch.full((2,), 999, device="cuda"), torch.zeros(2, 77, 1024, device="cuda", dtype=torch.bfloat16)
        for name in ("first_forward_s", "second_forward_s"):
            before = cache_entries()
            torch.cuda.synchronize()
            t = time.perf_counter()
            clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), args.frames, x, ts, ctx, 24)
            torch.cuda.synchronize()
            row[name] = time.perf_counter() - t
            row[name[:-2] + "_new_cache_entries"] = [files for e, files in cache_entries().items() if e not in before]
    print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=[row]), f, indent=1)


if __name__ == "__main__":
    main()
