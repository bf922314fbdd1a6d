"""Which compiled regions pay for their compile time in one cold run: bench.py with only part of fast.accelerate's
compilation (the rest runs the same fast forms eagerly).

    python docs/bench/next/probe_regions.py clip_ops --e2e --compile --frames 1150 --steps 2

clip_ops: the clip-parallel arithmetic between communication stages compiled (fast.compiled: GroupNorm moments,
normalisations, the banded attention, the TemporalTransformer's output projection), the per-frame layers eager (the
plain model's forms, as run 32 measured).
frame_layers: the per-frame layers compiled (fast.compile_frame_layers: ResBlocks' per-frame part,
SpatialTransformers, temporal feed-forwards and LayerNorms, resampling, first/last convs), the arithmetic eager.
hybrid: clip_ops, with the per-frame layers in the eager fast forms of run 38 (channels-last, fast.py's Triton
kernels, GEGLU's pass) instead of the plain ones: half the compilation, for a machine that keeps its compile cache.
Run each in a process with its own empty TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR for cold numbers.
"""
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import bench  # noqa: E402
import fast  # noqa: E402


which, argv = sys.argv[1], sys.argv[2:]
if which == "clip_ops":
    fast.compile_frame_layers = lambda unet, backend, any_length=True: []
elif which == "frame_layers":
    fast.compiled = lambda backend, any_length=True: fast.EAGER
elif which == "hybrid":
    fast.compile_frame_layers = lambda unet, backend, any_length=True: fast.eager_frame_layers(unet)
else:
    raise SystemExit(f"probe_regions.py: the first argument is clip_ops, frame_layers or hybrid, got {which!r}")
bench.main(argv)
