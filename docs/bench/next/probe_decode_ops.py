"""Where the VAE decode's time goes, as sample.py runs it on a GPU (fast.accelerate_decoder, bf16, batch 32, 320x512
frames): ~4.9 s for 1150 frames on an H200 (runs 58, 61), ~4.2 ms a frame, while the decoder's convs hold ~0.7 TFLOP
a frame. Per part of the decoder (post_quant_conv, conv_in, mid, each level's ResnetBlocks and upsampling, norm_out
+ conv_out): ms per frame (CUDA events from forward hooks), GFLOP per frame (torch.utils.flop_counter) and the
TFLOP/s that makes; then one batch under torch.profiler, kernel time by category (trace128.py's) and the longest
kernels.

    python3 docs/bench/next/probe_decode_ops.py --json out.json [--frames 64] [--batch 32]
    python3 docs/bench/next/probe_decode_ops.py --smoke        # a CPU check of the script: a tiny VAE, float32
"""
import argparse
import collections
import json
import os
import sys
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fast  # noqa: E402
import model  # noqa: E402
from simulate import randomize  # noqa: E402

SMOKE_VAE = dict(ddconfig=dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
                               ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0), embed_dim=4)


def parts(vae):  # (name, module) in the order the decoder runs them
    d = vae.decoder
    out = [("post_quant_conv", vae.post_quant_conv), ("conv_in", d.conv_in), ("mid", d.mid)]
    for i in reversed(range(len(d.up))):
        out += [(f"up{i}.block{j}", b) for j, b in enumerate(d.up[i].block)]
        if d.up[i].resample:
            out.append((f"up{i}.upsample", d.up[i].upsample))
    return out + [("norm_out", d.norm_out), ("conv_out", d.conv_out)]


def hooked_times(vae, cuda):
    """Forward hooks timing each part (CUDA events, or the wall clock on a CPU); returns (ms by name, remove)."""
    ms, pending, handles = collections.defaultdict(float), [], []
    for name, m in parts(vae):
        def pre(_m, _args, name=name):
            pending.append([name, torch.cuda.Event(enable_timing=True) if cuda else time.perf_counter(), None])
            if cuda:
                pending[-1][1].record()

        def post(_m, _args, _out):
            e = next(p for p in reversed(pending) if p[2] is None)
            e[2] = torch.cuda.Event(enable_timing=True) if cuda else time.perf_counter()
            if cuda:
                e[2].record()
        handles += [m.register_forward_pre_hook(pre), m.register_forward_hook(post)]

    def collect():
        if cuda:
            torch.cuda.synchronize()
        for name, a, b in pending:
            ms[name] += a.elapsed_time(b) if cuda else (b - a) * 1e3
        pending.clear()
    return ms, collect, lambda: [h.remove() for h in handles]


def flops_by_part(vae, z):  # each part's FLOPs: the counter's total before and after it (the parts do not nest)
    out, handles = collections.defaultdict(int), []
    with FlopCounterMode(display=False) as counter:
        for name, m in parts(vae):
            handles += [m.register_forward_pre_hook(lambda _m, _a, name=name: out.__setitem__(
                        name, out[name] - counter.get_total_flops())),
                        m.register_forward_hook(lambda _m, _a, _o, name=name: out.__setitem__(
                            name, out[name] + counter.get_total_flops()))]
        vae.decode(z)
    for h in handles:
        h.remove()
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=64, help="frames decoded per timed round (default 64)")
    p.add_argument("--batch", type=int, default=32, help="frames per decoder call (sample.py's --decode-batch)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--json")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    cuda = not args.smoke
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    config, latent = (SMOKE_VAE, (8, 8)) if args.smoke else (model.VC2_CONFIG["vae"], (40, 64))
    frames, batch = (4, 2) if args.smoke else (args.frames, args.batch)
    with torch.device(device):
        vae = randomize(model.AutoencoderKL(**config).eval(), 0).to(dtype)
    z = torch.randn(frames, 4, *latent, device=device, dtype=dtype, generator=torch.Generator(device).manual_seed(0))
    decode = lambda: [vae.decode(z[i:i + batch]) for i in range(0, frames, batch)]  # noqa: E731
    res = dict(device=torch.cuda.get_device_name() if cuda else "cpu", torch=torch.__version__, frames=frames,
               batch=batch, latent=list(latent))
    with fast.accelerate_decoder(vae):
        flops = flops_by_part(vae, z[:batch])
        decode()  # warm-up: cuDNN's first calls, Triton's compiles
        ms, collect, remove = hooked_times(vae, cuda)
        t = time.perf_counter()
        for _ in range(args.repeats):
            decode()
            collect()
        wall = (time.perf_counter() - t) * 1e3 / args.repeats
        remove()
        rows = []
        for name, _ in parts(vae):
            per_frame = ms[name] / args.repeats / frames
            gflop = flops[name] / batch / 1e9
            rows.append(dict(part=name, ms_per_frame=per_frame, gflop_per_frame=gflop,
                             tflops=gflop / per_frame if per_frame else 0.0))
            print(f"  {name:18} {per_frame:7.3f} ms/frame {gflop:8.2f} GFLOP/frame {rows[-1]['tflops']:7.1f} TFLOP/s",
                  flush=True)
        parts_ms = sum(r["ms_per_frame"] for r in rows)
        print(f"  sum of parts {parts_ms:.3f} ms/frame, decode wall {wall / frames:.3f} ms/frame, "
              f"{sum(flops.values()) / batch / 1e9:.1f} GFLOP/frame")
        res.update(rows=rows, wall_ms_per_frame=wall / frames, gflop_per_frame=sum(flops.values()) / batch / 1e9)
        if cuda:
            import trace128
            from torch.profiler import ProfilerActivity, profile
            with tempfile.TemporaryDirectory() as folder, profile(activities=[ProfilerActivity.CUDA]) as prof:
                vae.decode(z[:batch])
                torch.cuda.synchronize()
            with tempfile.TemporaryDirectory() as folder:
                path = os.path.join(folder, "trace.json")
                prof.export_chrome_trace(path)
                res["kernels"] = trace128.analyse(path, float("nan"), f"one decoder call, batch {batch}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, **{k: v for k, v in res.items() if k != "rows"}), f, indent=1)


if __name__ == "__main__":
    main()
