"""Decode and write, the last phase of sampling (run 29 at 1150 frames on one H200: decode 8.5 s, then 6.2 s of
encoding left; issue 19's target is <= 5 s for both): how fast the VAE decoder can go, and how fast x264 encodes.

    python3 docs/bench/next/probe_decode.py --frames 128        # one GPU, ~2 min (compiling the decoder: ~1 min)

Decoder: VC2's VAE with random weights in bf16, latents of 40x64 (320x512 frames), as sample.py calls it (NCHW,
--decode-batch 8), then the variants a fast form could use: larger batches, fast.accelerate_decoder (channels-last
from the first ResnetBlock, GroupNorm + SiLU as fast.py's Triton kernels), channels-last memory throughout (cuDNN's
NHWC kernels without transposes, F.group_norm's copies), torch.compile of the decoder (fuses GroupNorm + SiLU), both.
Per variant: ms per frame (CUDA events, after a warm-up) and the largest difference from sample.py's frames in uint8
levels.
Encoder: open_mp4 (sample.py's x264 settings) on this machine's CPUs, frames per second for the decoder's frames
(random weights: noise, x264's worst case) and for a smooth moving gradient (closer to a real video).
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))
import fast  # noqa: E402
import model  # noqa: E402
from sample import open_mp4  # noqa: E402
from simulate import randomize  # noqa: E402


def to_uint8(img):  # as sample.generate_clip: (b, 3, H, W) in [-1, 1] -> (b, H, W, 3) uint8
    return ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)


def decode_all(decode, z, batch, channels_last):
    out = []
    for i in range(0, len(z), batch):
        zi = z[i:i + batch]
        out.append(to_uint8(decode(zi.contiguous(memory_format=torch.channels_last) if channels_last else zi)))
    return torch.cat(out)


def timed(fn, repeats=3):
    fn()  # warm-up (compiles, autotunes)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def encode_fps(frames, fps=24):
    with tempfile.TemporaryDirectory() as folder:
        t = time.perf_counter()
        with open_mp4(os.path.join(folder, "probe.mp4"), fps) as writer:
            for frame in frames:
                writer.append_data(frame)
        return len(frames) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=128, help="frames decoded per variant (default 128)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    with torch.device(device):
        vae = randomize(model.AutoencoderKL(**model.VC2_CONFIG["vae"]).eval(), 0).bfloat16()
    z = torch.randn(args.frames, 4, 40, 64, device=device, dtype=torch.bfloat16,
                    generator=torch.Generator(device).manual_seed(0))
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.frames} frames 320x512, bf16, "
          f"{os.cpu_count()} CPUs")
    reference = decode_all(vae.decode, z, 8, False)
    compiled = torch.compile(vae.decode, dynamic=False)

    def fast_decode(zi):  # fast.accelerate_decoder: channels-last from the first ResnetBlock, Triton GroupNorms
        with fast.accelerate_decoder(vae):
            return vae.decode(zi)
    variants = [("sample.py: NCHW, batch 8", vae.decode, 8, False), ("NCHW, batch 32", vae.decode, 32, False),
                ("fast.accelerate_decoder, batch 8", fast_decode, 8, False),
                ("fast.accelerate_decoder, batch 32", fast_decode, 32, False),
                ("channels-last, batch 8", vae.decode, 8, True), ("channels-last, batch 32", vae.decode, 32, True),
                ("compiled, batch 8", compiled, 8, False), ("compiled + channels-last, batch 8", compiled, 8, True)]
    for name, decode, batch, channels_last in variants:
        if channels_last:
            vae.to(memory_format=torch.channels_last)
        t = time.perf_counter()
        ms = timed(lambda: decode_all(decode, z, batch, channels_last))
        diff = (decode_all(decode, z, batch, channels_last).int() - reference.int()).abs().max().item()
        print(f"  {name:36} {ms / args.frames:6.2f} ms/frame  max diff {diff:3d} levels  "
              f"({time.perf_counter() - t:.0f} s with warm-up)")
        vae.to(memory_format=torch.contiguous_format)
    frames = reference.cpu().numpy()
    ramp = np.linspace(0, 255, 512, dtype=np.float32)
    smooth = np.stack([np.broadcast_to(np.roll(ramp, 4 * i)[None, :, None], (320, 512, 3)) for i in range(len(frames))])
    print(f"  x264 (open_mp4): decoder's frames {encode_fps(frames):.0f} fps, smooth gradient "
          f"{encode_fps(smooth.astype(np.uint8)):.0f} fps")


if __name__ == "__main__":
    main()
