"""fast.pair_forward on a GPU: VC2's UNet (random weights, simulate.randomize), fast.accelerate (Triton kernels), one
rank. A guidance pair (one video and timestep as stride-0 views, two texts) against the same batch written out
(torch.cat: the layers before the text all run twice): both against float32 on the written-out batch, and each
forward's time (CUDA events, the median of --iters).

    python3 docs/bench/next/check_pair.py --json out.json [--frames 16 128] [--iters 5]
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402
from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402
from probe_decode import timed  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, nargs="+", default=[16, 128])
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--json")
    args = p.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    with torch.device("cuda"):
        unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), 0)
    comm, rows = EmulatedComm(EmulatedGroup(1), 0), []
    g = torch.Generator("cuda").manual_seed(0)
    with torch.no_grad(), parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet):
        for n in args.frames:
            x = torch.randn(1, 4, n, 40, 64, generator=g, device="cuda")
            ctx = torch.randn(2, 77, unet.context_dim, generator=g, device="cuda")
            t = torch.full((1,), 901, device="cuda")
            pair, written = (x.expand(2, -1, -1, -1, -1), t.expand(2)), (torch.cat([x, x]), torch.cat([t, t]))
            row = dict(frames=n)
            unet.bfloat16()
            if n <= 32:  # bf16 first, then the float32 reference (run 61's first try, the other way round: 0.0)
                outs = {name: clip_forward(unet, comm, n, *inputs, ctx.bfloat16(), 24).float().clone()
                        for name, inputs in (("pair", pair), ("written", written))}
                ref = clip_forward(unet.float(), comm, n, *written, ctx, 24).clone()
                unet.bfloat16()
                for name, out in outs.items():
                    row[f"err_{name}"] = ((out - ref).norm() / ref.norm()).item()
                row["pair_vs_written"] = ((outs["pair"] - outs["written"]).norm() / ref.norm()).item()
                row["dtypes"] = [str(outs["pair"].dtype), str(ref.dtype), str(next(unet.parameters()).dtype)]
            for name, inputs in (("pair", pair), ("written", written)):
                row[f"ms_{name}"] = timed(lambda: clip_forward(unet, comm, n, *inputs, ctx.bfloat16(), 24),
                                          repeats=args.iters)
            rows.append(row)
            print(row, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows), f, indent=1)


if __name__ == "__main__":
    main()
