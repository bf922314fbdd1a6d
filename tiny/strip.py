"""A PNG strip for the README: 8 frames spread over a long tiny-model video, above the same prompt's ground truth.

    python tiny/strip.py --prompt "a red circle moving right" --frames 128 --out docs/tiny_strip.png

Top row: what `sample.py --tiny` makes (same settings, same seed: the same frames). Bottom row: tiny/data.py's
rendering of the prompt's scene (the default start and speed; the model picks its own). Pixels doubled.
"""
import argparse
import os
import sys

import imageio.v2 as imageio
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
import model  # noqa: E402
import sample  # noqa: E402
from tiny import data  # noqa: E402
from tiny.train import sample_video  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="a red circle moving right", help="one prompt of tiny/data.py's grammar")
    p.add_argument("--frames", type=int, default=128, help="video length (default 128)")
    p.add_argument("--shown", type=int, default=8, help="frames in the strip, evenly spaced (default 8)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--out", default="docs/tiny_strip.png", help="PNG to write (default docs/tiny_strip.png)")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    tiny = os.path.join(os.path.dirname(os.path.abspath(__file__)))
    parts = model.load_videocrafter2(os.path.join(tiny, "tiny_vc2.safetensors"), os.path.join(tiny, "config.json"))
    d = sample.TINY_DEFAULTS
    video = sample_video(parts, args.prompt, args.frames, d["steps"], d["guidance"], seed=args.seed).numpy()
    truth = data.render(data.parse_prompt(args.prompt), args.frames)[0].numpy()
    idx = np.linspace(0, args.frames - 1, args.shown).round().astype(int)
    rows = [np.concatenate(list(v[idx]), axis=1) for v in (video, truth)]
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)  # a white line between the rows
    strip = np.concatenate([rows[0], gap, rows[1]]).repeat(2, axis=0).repeat(2, axis=1)
    imageio.imwrite(args.out, strip)
    print(f"wrote {args.out} {strip.shape[1]}x{strip.shape[0]}: frames {idx.tolist()} of {args.frames}")


if __name__ == "__main__":
    main()
