"""Where fast.compile_kernels' stand-ins spend their time (run 56: 2.0 s with a warm Triton cache, and cold they end
only when the 42 variants' compiles do, 5.3-7.7 s): VC2's UNet (random weights, bf16) at 1150 frames and the VAE
decoder at batch 32, one rank alone, the stand-ins timed apart from the wait for the compiles, and the launching
thread's Python stack sampled every 10 ms while they run.

    TRITON_CACHE_DIR=$(mktemp -d) python3 docs/bench/next/probe_stand_in.py --json a.json      # cold
    python3 docs/bench/next/probe_stand_in.py --noop ...    # the kernels' launches submit nothing: the stand-ins alone

One row: the stand-in forward's seconds (until the GPU is done), each stand-in decode's, then compile_kernels' end
(its pool shut down: every compile done), and the sampled stack tops (file:line function) that held the launching
thread longest: waiting on the GIL shows as the line it was on, a CUDA or cuDNN call as that op's line.
"""
import argparse
import collections
import json
import os
import sys
import threading
import time
from concurrent.futures import Future

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import torch  # noqa: E402

import fast  # noqa: E402
import model  # noqa: E402
from clip_parallel import parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402


class NoPool:  # stands in for compile_kernels' ThreadPoolExecutor: every job done at once, nothing compiled
    def __init__(self, *args, **kwargs):
        pass

    def submit(self, fn, *args, **kwargs):
        done = Future()
        done.set_result(None)
        return done

    def shutdown(self):
        pass


def sample_stack(main, stop, samples):  # the launching thread's innermost frame, every 10 ms
    while not stop.wait(0.01):
        frame = sys._current_frames().get(main)
        if frame is not None:
            code = frame.f_code
            samples[f"{os.path.basename(code.co_filename)}:{frame.f_lineno} {code.co_name}"] += 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1150)
    p.add_argument("--noop", action="store_true", help="no compiles: the stand-ins' own cost")
    p.add_argument("--switch-interval", type=float, default=None, help="sys.setswitchinterval (default 0.005 s)")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    if args.noop:
        fast.ThreadPoolExecutor = NoPool
    torch.set_grad_enabled(False)
    with torch.device("cuda"):
        unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), 0).bfloat16()
        cfg = model.VC2_CONFIG["vae"]
        vae = randomize(model.AutoencoderKL(cfg["ddconfig"], cfg["embed_dim"]).eval(), 0).bfloat16()
    row = dict(frames=args.frames, noop=args.noop, switch_interval=sys.getswitchinterval(),
               cache=os.environ.get("TRITON_CACHE_DIR"), stand_ins=[])

    def timed(name, fn):  # each stand-in until the GPU is done with it
        def run(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            torch.cuda.synchronize()
            row["stand_ins"].append((name, round(t - t0, 3), round(time.perf_counter() - t, 3)))
            return out
        return run
    fast.clip_forward = timed("forward", fast.clip_forward)
    vae.decode = timed("decode", vae.decode)
    samples, stop = collections.Counter(), threading.Event()
    with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet), fast.accelerate_decoder(vae):
        torch.cuda.synchronize()
        sampler = threading.Thread(target=sample_stack, args=(threading.get_ident(), stop, samples))
        t0 = time.perf_counter()
        sampler.start()
        fast.compile_kernels(unet, (4, 40, 64), args.frames, 24, vae, 32)
        row["compile_kernels_s"] = time.perf_counter() - t0
        stop.set()
        sampler.join()
    row["samples"] = sum(samples.values())
    row["stack_tops"] = samples.most_common(20)
    print(json.dumps(row), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=[row]), f, indent=1)


if __name__ == "__main__":
    main()
