"""What fast.accelerate(unet, compile=True) compiles, on the CPU: dynamo frames and graphs, and compile seconds.

    python docs/bench/next/compile_count.py --backend inductor --frames-per-gpu 4 6 --ranks 1 3

One process plays one rank of R (the middle one, halos on both sides: the most shapes) with a stand-in
communicator that hands back its own tensors (the numbers are meaningless, the shapes and the control flow are
a real rank's). Per clip length n: the dynamo frames and graphs compiled by the first forward, its seconds (and
the backend's share), then the seconds of a second forward and the graphs it compiled (none: no recompiles). The
world sizes share one process and one Inductor cache: for cold numbers of each, run them in separate processes with
their own empty TORCHINDUCTOR_CACHE_DIR.
"""
import argparse
import os
import sys
import time

import torch
import torch._dynamo.utils as dynamo_utils

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402
from clip_parallel import Comm, clip_forward, parallel_temporal_layers  # noqa: E402
from dual_scope import DualScope, split_frames  # noqa: E402
from simulate import TINY_UNET, randomize  # noqa: E402


class StandInComm(Comm):
    """Rank `rank` of `world_size` with no peers: every exchange and gather returns this rank's own tensor."""

    def exchange(self, stage, partner, tensor):
        return lambda: None if partner is None else tensor

    def all_gather(self, stage, tensor):
        return lambda: [tensor] * self.world_size


def snapshot():
    c = dynamo_utils.counters
    return dict(frames=sum(c["frames"].values()), ok=c["frames"]["ok"], graphs=c["stats"]["unique_graphs"],
                recompiles=sum(c["recompiles"].values()), **dynamo_utils.calculate_time_spent())


def delta(a, b):
    return {k: b.get(k, 0) - a.get(k, 0) for k in b}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--frames-per-gpu", type=int, nargs="+", default=[4, 6], help="clip lengths n (default 4 6)")
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 3], help="emulated world sizes (default 1 3)")
    p.add_argument("--size", type=int, default=8, help="latent height = width (default 8)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    unet = randomize(model.UNet(**TINY_UNET).eval(), 0)
    scope = DualScope(local_window=2, global_frames=3)
    print(f"torch {torch.__version__}, backend {args.backend}, tiny UNet, {args.size}x{args.size} latents, batch 2")
    for ranks in args.ranks:
        torch._dynamo.reset()
        dynamo_utils.counters.clear()
        dynamo_utils.cumulative_time_spent_ns.clear()
        rank = ranks // 2
        with parallel_temporal_layers(unet, scope), fast.accelerate(unet, compile=True, backend=args.backend):
            for n in args.frames_per_gpu:
                comm = StandInComm(rank, ranks)
                frames = n * ranks
                start, stop = split_frames(frames, ranks)[rank]
                g = torch.Generator().manual_seed(n)
                x = torch.randn(2, 4, stop - start, args.size, args.size, generator=g)
                t, ctx = torch.full((2,), 901), torch.randn(2, 77, TINY_UNET["context_dim"], generator=g)
                row = {}
                for name in ("cold", "warm"):
                    before, t0 = snapshot(), time.perf_counter()
                    clip_forward(unet, comm, frames, x, t, ctx, 24)
                    row[name] = (time.perf_counter() - t0, delta(before, snapshot()))
                (cold_s, d), (warm_s, w) = row["cold"], row["warm"]
                print(f"ranks {ranks} (rank {rank}), n {n}: first forward {cold_s:6.1f} s, dynamo frames "
                      f"{d['frames']} ({d['ok']} compiled), graphs {d['graphs']}, recompiles {d['recompiles']}, "
                      f"compile {d.get('entire_frame_compile', 0):.1f} s of which backend "
                      f"{d.get('backend_compile', 0):.1f} s; second forward {warm_s:.2f} s, graphs {w['graphs']}",
                      flush=True)
        total = snapshot()
        print(f"ranks {ranks}: total graphs {total['graphs']}, frames compiled {total['ok']}, recompiles "
              f"{total['recompiles']}, compile {total.get('entire_frame_compile', 0):.1f} s", flush=True)


if __name__ == "__main__":
    main()
