"""Where the first forward's time goes while Triton's variants compile (fast.compile_kernels as a context: levers/18
applied): VC2's UNet (random weights, bf16) at 1150 frames, batch 2, and the VAE decoder at batch 32, one rank alone.

    TRITON_CACHE_DIR=$(mktemp -d) python3 docs/bench/next/probe_first_step.py --json a.json   # cold
    python3 docs/bench/next/probe_first_step.py --wait-all ...   # every compile waited for first (run 54's order)

One row: the stand-ins' seconds (the context's entry: stand-in forward and decodes, each variant submitted), then the
first forward inside the context (its launching thread's own seconds, and until the GPU is done), the launches that
waited for their variant's compile (when, how long, which kernel), when the compiles ended, and a second forward
after the context: the first forward's extra cost is its seconds less the second's.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch  # noqa: E402

import fast  # noqa: E402
import model  # noqa: E402
from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1150)
    p.add_argument("--threads", type=int, default=None, help="compile threads (default: the CPUs)")
    p.add_argument("--wait-all", action="store_true", help="wait for every compile before the first forward")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_grad_enabled(False)
    with torch.device("cuda"):
        unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), 0).bfloat16()
        cfg = model.VC2_CONFIG["vae"]
        vae = randomize(model.AutoencoderKL(cfg["ddconfig"], cfg["embed_dim"]).eval(), 0).bfloat16()
    latent = (4, 40, 64)
    x = torch.randn(2, latent[0], args.frames, *latent[1:], device="cuda", dtype=torch.bfloat16)
    ts, ctx = torch.full((2,), 999, device="cuda"), torch.zeros(2, 77, 1024, device="cuda", dtype=torch.bfloat16)
    waits, ended = [], []
    launch_of = fast.CompiledAhead.__getitem__

    def timed(self, grid):  # a launch that takes over 2 ms waited for its variant's compile
        launch = launch_of(self, grid)

        def run(*a, **k):
            t = time.perf_counter()
            launch(*a, **k)
            if time.perf_counter() - t > 2e-3:
                waits.append((round(t - t0, 3), round(time.perf_counter() - t, 3), self.kernel.fn.__name__))
        return run
    fast.CompiledAhead.__getitem__ = timed
    row = dict(frames=args.frames, threads=args.threads or os.cpu_count(), wait_all=args.wait_all,
               cache=os.environ.get("TRITON_CACHE_DIR"))
    with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet), fast.accelerate_decoder(vae):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with fast.compile_kernels(unet, latent, [args.frames], 24, vae, 32, threads=args.threads):
            row["stand_in_s"] = time.perf_counter() - t0
            jobs = fast.frame_pass_kernel.ahead.jobs
            for key, job in jobs.items():
                job.add_done_callback(lambda f, n=key[0].fn.__name__: ended.append((time.perf_counter() - t0, n)))
            if args.wait_all:
                for job in jobs.values():
                    job.exception()
                row["all_compiled_s"] = time.perf_counter() - t0
            t = time.perf_counter()
            clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), args.frames, x, ts, ctx, 24)
            row["first_forward_host_s"] = time.perf_counter() - t
            torch.cuda.synchronize()
            row["first_forward_s"] = time.perf_counter() - t
            row["first_forward_end_s"] = time.perf_counter() - t0
        row["context_s"] = time.perf_counter() - t0
        t = time.perf_counter()
        clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), args.frames, x, ts, ctx, 24)
        torch.cuda.synchronize()
        row["second_forward_s"] = time.perf_counter() - t
    ends = sorted(s for s, _ in ended)
    row.update(jobs=len(jobs), ended_s=[round(ends[int(q * (len(ends) - 1))], 2) for q in (0, 0.25, 0.5, 0.75, 1)],
               last_ended=sorted(ended)[-5:], waits=len(waits), waited_s=sum(w for _, w, _ in waits), wait_list=waits)
    print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=[row]), f, indent=1)


if __name__ == "__main__":
    main()
