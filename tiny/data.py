"""Procedural training data for the tiny model: one coloured shape moving on a plain background, no download.

A scene is one shape (circle, square or triangle) of one colour, moving along one axis at constant speed and
bouncing off the walls, on a one-colour background. Its caption follows the prompt grammar

    a {colour} {shape} moving {left|right|up|down}[ on a {colour} background]

where no background named means black. Ground truth is exact: `render` draws any number of frames and returns
where the shape's centroid is in each.

API (stable; tiny/coherence.py and the tests use it):
    Scene(shape, colour, direction, background="black", speed=2.0, x=None, y=None)  one scene; x, y: the
        shape's box centre at frame 0 in pixels (None: the prompt's default start, see parse_prompt)
    parse_prompt(text) -> Scene          the grammar above; ValueError naming what was not understood
    caption(scene, background=None)      the scene's prompt; background: name it (default: unless black)
    random_scene(rng) -> Scene           rng: numpy.random.Generator; speed 1..3 px/frame, anywhere
    positions(scene, frames, start=0)    float64 (T, 2): (x, y) centroid of frames start..start+T-1
    render(scene, frames, start=0, size=SIZE) -> (video uint8 (T, H, W, 3), positions (T, 2))
    training_batch(n, frames, generator, device) -> (video float (n, 3, T, H, W) in [-1, 1], captions)
    COLOURS, SHAPE_COLOURS, BACKGROUNDS, SHAPES, DIRECTIONS, SIZE, HALF

Frames are SIZE x SIZE (64) pixels and every shape fits a box of 2 * HALF (18) pixels; it bounces when the box
touches a wall. Positions are centroids (what a detector measures): a triangle's lies HALF / 3 below its box centre.
"""
import math
import re
from dataclasses import dataclass

import numpy as np
import torch

SIZE = 64  # frame side in pixels: the tiny model's resolution
HALF = 9  # half the side of a shape's box in pixels

# sRGB, chosen far apart: every (shape colour, background) pair allowed below is >= 120 apart in RGB
COLOURS = dict(red=(220, 40, 40), green=(40, 180, 60), blue=(40, 90, 235), yellow=(240, 210, 40),
               purple=(150, 60, 200), cyan=(40, 210, 220), white=(240, 240, 240), black=(15, 15, 15),
               gray=(128, 128, 128))
SHAPE_COLOURS = ("red", "green", "blue", "yellow", "purple", "cyan", "white")
BACKGROUNDS = ("black", "white", "gray") + SHAPE_COLOURS[:-1]
SHAPES = ("circle", "square", "triangle")
DIRECTIONS = dict(left=(-1, 0), right=(1, 0), up=(0, -1), down=(0, 1))  # image axes: y grows downwards
MIN_CONTRAST = 120.0  # RGB distance below which a shape is not drawn on a background (yellow on white is 201)


def contrast(a, b):
    return float(np.linalg.norm(np.subtract(COLOURS[a], COLOURS[b], dtype=np.float64)))


PAIRS = [(c, bg) for c in SHAPE_COLOURS for bg in BACKGROUNDS if contrast(c, bg) >= MIN_CONTRAST]


@dataclass
class Scene:
    shape: str
    colour: str
    direction: str
    background: str = "black"
    speed: float = 2.0  # pixels per frame
    x: float = None  # box centre at frame 0 (pixels); None: start against the wall behind the motion, centred
    y: float = None

    def __post_init__(self):
        for name, allowed in (("shape", SHAPES), ("colour", SHAPE_COLOURS), ("direction", DIRECTIONS),
                              ("background", BACKGROUNDS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"Scene.{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if contrast(self.colour, self.background) < MIN_CONTRAST:
            raise ValueError(f"a {self.colour} shape on a {self.background} background is too faint to see")
        dx, dy = DIRECTIONS[self.direction]
        if self.x is None:  # the default start leaves the whole frame ahead of the shape
            self.x = SIZE / 2 if dx == 0 else (HALF if dx > 0 else SIZE - HALF)
        if self.y is None:
            self.y = SIZE / 2 if dy == 0 else (HALF if dy > 0 else SIZE - HALF)


def caption(scene, background=None):
    text = f"a {scene.colour} {scene.shape} moving {scene.direction}"
    if background or (background is None and scene.background != "black"):
        text += f" on a {scene.background} background"
    return text


_GRAMMAR = re.compile(r"an? (\w+) (\w+) moving (\w+)(?: on an? (\w+) background)?")


def parse_prompt(text):
    """'a red circle moving right' or '... on a white background' -> Scene (default start and speed)."""
    m = _GRAMMAR.fullmatch(" ".join(text.lower().replace("grey", "gray").split()).rstrip("."))
    if not m:
        raise ValueError(f"prompt {text!r} does not follow 'a {{colour}} {{shape}} moving {{left|right|up|down}}"
                         f"[ on a {{colour}} background]'")
    colour, shape, direction, background = m.groups()
    return Scene(shape, colour, direction, background or "black")


def random_scene(rng):
    colour, background = PAIRS[rng.integers(len(PAIRS))]
    return Scene(SHAPES[rng.integers(len(SHAPES))], colour, list(DIRECTIONS)[rng.integers(4)], background,
                 speed=float(rng.uniform(1.0, 3.0)), x=float(rng.uniform(HALF, SIZE - HALF)),
                 y=float(rng.uniform(HALF, SIZE - HALF)))


def bounce(p, lo, hi):
    """Position p (any float array) folded into [lo, hi] as a ball bouncing between two walls."""
    span = hi - lo
    u = np.mod(p - lo, 2 * span) if isinstance(p, np.ndarray) else torch.remainder(p - lo, 2 * span)
    return lo + span - abs(u - span)


def box_centres(x0, y0, vx, vy, t, size=SIZE):
    """Box centres at frame indices t: the straight path folded by the walls. Works on numpy and torch."""
    return bounce(x0 + vx * t, HALF, size - HALF), bounce(y0 + vy * t, HALF, size - HALF)


def positions(scene, frames, start=0, size=SIZE):
    dx, dy = DIRECTIONS[scene.direction]
    t = np.arange(start, start + frames, dtype=np.float64)
    x, y = box_centres(scene.x, scene.y, dx * scene.speed, dy * scene.speed, t, size)
    y = y + (HALF / 3 if scene.shape == "triangle" else 0.0)  # a triangle's centroid is a third up from its base
    return np.stack([x, y], axis=1)


def draw(shape_ids, cx, cy, fg, bg, size=SIZE):
    """N frames: shape_ids (N,) int into SHAPES, box centres cx, cy (N,), colours fg, bg (N, 3) float in [0, 1]
    -> float (N, 3, size, size) in [0, 1]. Edges are anti-aliased with a one-pixel ramp of a signed distance."""
    px = torch.arange(size, device=cx.device, dtype=torch.float32) + 0.5  # pixel centres
    dx = px[None, None, :] - cx[:, None, None]  # (N, 1, W)
    dy = px[None, :, None] - cy[:, None, None]  # (N, H, 1)
    circle = torch.sqrt(dx ** 2 + dy ** 2) - HALF
    square = torch.maximum(dx.abs(), dy.abs()) - HALF
    # apex up at (0, -HALF), base corners (+-HALF, HALF): inside the base line and the two slanted edges
    triangle = torch.maximum(dy - HALF, (2 * dx.abs() - dy - HALF) / math.sqrt(5))
    sdf = torch.stack(torch.broadcast_tensors(circle, square, triangle))  # (3, N, H, W)
    sdf = sdf.gather(0, shape_ids.long()[None, :, None, None].expand(1, *sdf.shape[1:]))[0]
    alpha = (0.5 - sdf).clamp(0, 1)[:, None]  # coverage of each pixel (N, 1, H, W)
    return bg[:, :, None, None] * (1 - alpha) + fg[:, :, None, None] * alpha


def rgb(names, device=None):
    return torch.tensor([COLOURS[n] for n in names], dtype=torch.float32, device=device) / 255


def render(scene, frames, start=0, size=SIZE):
    """Frames start..start+frames-1 of the scene -> (video uint8 (T, H, W, 3) tensor, centroids float64 (T, 2))."""
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    dx, dy = DIRECTIONS[scene.direction]
    t = torch.arange(start, start + frames, dtype=torch.float64)
    cx, cy = box_centres(scene.x, scene.y, dx * scene.speed, dy * scene.speed, t, size)
    ids = torch.full((frames,), SHAPES.index(scene.shape))
    img = draw(ids, cx.float(), cy.float(), rgb([scene.colour] * frames), rgb([scene.background] * frames), size)
    video = (img * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return video, positions(scene, frames, start, size)


def training_batch(n, frames, generator, device="cpu"):
    """n random clips of `frames` frames, drawn on `device` -> (float (n, 3, T, H, W) in [-1, 1], n captions).

    generator: a torch.Generator on the CPU (the scenes are drawn there; the pixels on `device`).
    A black background is named in half the captions: the model learns that no background means black."""
    g = generator
    pair = torch.randint(len(PAIRS), (n,), generator=g)
    shape = torch.randint(len(SHAPES), (n,), generator=g)
    direction = torch.randint(4, (n,), generator=g)
    speed = 1.0 + 2.0 * torch.rand(n, generator=g)
    x0, y0 = (HALF + (SIZE - 2 * HALF) * torch.rand(n, generator=g) for _ in range(2))
    name_black = torch.rand(n, generator=g) < 0.5
    dirs = torch.tensor(list(DIRECTIONS.values()), dtype=torch.float32)[direction]  # (n, 2)
    t = torch.arange(frames, dtype=torch.float32)
    cx, cy = box_centres(x0[:, None], y0[:, None], (dirs[:, 0] * speed)[:, None], (dirs[:, 1] * speed)[:, None], t)
    fg = rgb([PAIRS[i][0] for i in pair]).repeat_interleave(frames, 0)
    bg = rgb([PAIRS[i][1] for i in pair]).repeat_interleave(frames, 0)
    img = draw(shape.repeat_interleave(frames).to(device), cx.flatten().to(device), cy.flatten().to(device),
               fg.to(device), bg.to(device))
    video = (img * 2 - 1).unflatten(0, (n, frames)).transpose(1, 2)  # (n, 3, T, H, W)
    captions = [caption(Scene(SHAPES[s], PAIRS[p][0], list(DIRECTIONS)[d], PAIRS[p][1], x=1.0 * HALF, y=1.0 * HALF),
                        background=True if nb else None)
                for s, p, d, nb in zip(shape.tolist(), pair.tolist(), direction.tolist(), name_black.tolist())]
    return video, captions
