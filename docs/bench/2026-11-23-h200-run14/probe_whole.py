"""Probe: an upper bound for compiling the temporal layers whole, communication and all.
(Kept as run 14 ran it, against clip_parallel as of then: Comm.exchange returning tensors, ClipTemporalConv
without the bias folding of run 19. It no longer runs on today's code.)

Today's --compile compiles the per-frame layers and the arithmetic between two communication stages, and leaves
the temporal layers' glue eager: LayerNorms (27 ms at n = 128), residual adds (22 ms), copies (32 ms) and the
projections around the exchanges (trace128.py, run 12). If the exchanges were opaque custom ops, torch.compile could
take each temporal layer whole. This measures the best that could give: one rank, whose exchanges are no-ops
(Solo: halo -> nothing, all_gather -> itself), so the whole UNet forward compiles as one graph (dynamic=False),
recorded as a CUDA graph. Compare its ms with bench.py --compile --cuda-graph at the same n.
Usage on the GPU: python docs/bench/next/probe_whole.py OUT_DIR [n]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402
import clip_parallel  # noqa: E402
import model  # noqa: E402
import trace128  # noqa: E402
from clip_parallel import Comm, GraphedClipForward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope  # noqa: E402
from simulate import randomize  # noqa: E402


class Solo(Comm):
    """World size 1 with nothing to synchronise: no barriers for dynamo to break on."""

    def exchange(self, stage, partner, tensor):
        return None

    def all_gather(self, stage, tensor):
        return [tensor]


def temporal_conv_no_out(self, x):
    """ClipTemporalConv.forward without out= (dynamo breaks the graph at out= into a strided view): the inner frames'
    batched GEMM and the two end frames, concatenated."""
    y = clip_parallel.normalize_silu(x, *clip_parallel.video_group_norm(x, self.norm))  # (b, n, c, h, w)
    left, right = clip_parallel.STATE.comm.halo(y, 1, dim=1)
    b, n, c, h, w = y.shape
    frames = y.contiguous().view(b, n, c, h * w)
    weight = self.conv.weight[..., 0, 0].transpose(1, 2).reshape(-1, 3 * c)
    bias = self.conv.bias[:, None]
    zero = y.new_zeros(b, c, h * w)
    left = zero if left is None else left.reshape(b, c, h * w)
    right = zero if right is None else right.reshape(b, c, h * w)
    padded = torch.cat([left[:, None], frames, right[:, None]], 1)  # (b, n + 2, c, hw): the upper bound's shortcut
    windows = padded.as_strided((b, n, 3 * c, h * w), (padded.stride(0), c * h * w, h * w, 1))
    out = torch.baddbmm(bias, weight.expand(b * n, -1, -1), windows.reshape(b * n, 3 * c, h * w))
    return out.view(b, n, -1, h, w).transpose(1, 2)


def main(out, n):
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    config = torch._dynamo.config
    config.cache_size_limit, config.accumulated_cache_size_limit = 256, 512
    args = bench.parse_args(["--compile", "--cuda-graph", "--frames-per-gpu", str(n)])
    args.context_dim = model.VC2_CONFIG["unet"]["context_dim"]
    device, comm = torch.device("cuda"), Solo(0, 1)
    clip_parallel.ClipTemporalConv.forward = temporal_conv_no_out
    with torch.device(device):
        unet = randomize(model.UNet(**model.VC2_CONFIG["unet"]).eval(), args.seed)
    unet.forward = torch.compile(unet.forward, dynamic=False)
    timer = bench.Timer(device)
    with parallel_temporal_layers(unet, DualScope()):
        unet.to(torch.bfloat16)
        x, t, ctx = bench.inputs(args, n, comm, device, args.seed + 2)
        graph = GraphedClipForward(unet, comm, n, x, args.timestep, ctx, args.fps)
        breaks = torch._dynamo.utils.counters["graph_break"]
        print(f"graph breaks: {sum(breaks.values())}")
        for reason, count in list(breaks.items())[:20]:
            print(f"  {count}x {str(reason)[:200]}")
        run = lambda: graph(x, args.timestep)  # noqa: E731
        for _ in range(2):
            run()
        wall = sorted(timer(run) for _ in range(5))[2]
        print(f"whole-UNet compile, 1 rank (no-op exchanges), CUDA graph, n = {n}: {wall:.1f} ms")
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            run()
            torch.cuda.synchronize()
        path = os.path.join(out, "trace_whole.json")
        prof.export_chrome_trace(path)
        trace128.analyse(path, wall, "whole")
        os.remove(path)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 128)
