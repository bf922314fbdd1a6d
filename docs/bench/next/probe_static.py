"""Dynamo's tracing with the frame count symbolic (fast.compile_any_length, as committed) or every shape static, in
one sample.py run: bench.py --e2e with the compile's backend and the frames' marking chosen here.

    python docs/bench/next/probe_static.py static eager --e2e --compile --frames 128 --steps 1

static: torch._dynamo.maybe_mark_dynamic does nothing, so every graph is specialised to this run's one clip length
(sample.py compiles at one n; bench.py's several n would each compile again). dynamic: as committed. The backend
(eager: Dynamo's tracing alone, no Inductor; inductor: as sample.py) is passed to fast.accelerate. On a CPU with
VC2's UNet at 16x16 latents and 4 frames, eager backend: 76 graphs, 16.1 s symbolic, 6.9 s static.
"""
import functools
import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import bench  # noqa: E402
import fast  # noqa: E402

shapes, backend, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if shapes not in ("static", "dynamic"):
    raise SystemExit(f"probe_static.py: the first argument is static or dynamic, got {shapes!r}")
if shapes == "static":
    torch._dynamo.maybe_mark_dynamic = lambda x, dim: None
fast.accelerate = functools.partial(fast.accelerate, backend=backend)
bench.main(argv)
