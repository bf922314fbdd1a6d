"""A simple detector for the tiny model's videos: where is the one shape, what colour and what kind is it.

Per frame, no learning: the background is the dominant colour (the per-channel median: the shape covers a few
percent of the frame); the shape's colour is the median of the pixels farthest from it; a pixel belongs to the
shape when it is nearer the shape's colour than the background's (coverage above one half, for anti-aliased
edges); the largest 4-connected blob of those is the shape. Then
    position  the blob's centroid in pixels (the `positions` of tiny/data.py are centroids too),
    colour    the nearest of data.SHAPE_COLOURS to the shape's colour,
    shape     from the blob's fill ratio of its bounding box: square 1, circle pi/4, triangle 1/2.

API (stable; tiny/coherence.py and the tests use it):
    detect(video) -> list of Detection(found, x, y, colour, shape, background), one per frame;
        video uint8 (T, H, W, 3), numpy or torch. Not found (x = y = nan, names None) when no blob of a
        plausible size stands out from the background.
    FILL_TRIANGLE_CIRCLE, FILL_CIRCLE_SQUARE: the fill-ratio boundaries between the classes.
"""
from collections import deque
from typing import NamedTuple

import numpy as np

from tiny.data import BACKGROUNDS, COLOURS, HALF, SHAPE_COLOURS

FILL_TRIANGLE_CIRCLE = (0.5 + np.pi / 4) / 2  # midpoints of the ideal fill ratios
FILL_CIRCLE_SQUARE = (np.pi / 4 + 1.0) / 2
MIN_DIFFERENCE = 40.0  # RGB distance from the background for a pixel to be a shape candidate at all
MIN_AREA, MAX_AREA = 0.25 * (2 * HALF) ** 2 / 2, 2.5 * (2 * HALF) ** 2  # blob areas a shape can have (pixels)


class Detection(NamedTuple):
    found: bool
    x: float  # centroid, pixels from the left edge (pixel centres at 0.5, 1.5, ...)
    y: float  # centroid, pixels from the top edge
    colour: str  # one of data.SHAPE_COLOURS, None when not found
    shape: str  # one of data.SHAPES, None when not found
    background: str  # one of data.BACKGROUNDS (always estimated)


def nearest(rgb, names):
    table = np.array([COLOURS[n] for n in names], dtype=np.float64)
    return names[int(np.argmin(((table - rgb) ** 2).sum(1)))]


def largest_blob(mask):
    """The largest 4-connected component of a bool (H, W) mask, as a bool mask (breadth-first search)."""
    seen = np.zeros_like(mask)
    best = []
    H, W = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        seen[start] = True
        blob, queue = [], deque([start])
        while queue:
            i, j = queue.popleft()
            blob.append((i, j))
            for a, b in ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)):
                if 0 <= a < H and 0 <= b < W and mask[a, b] and not seen[a, b]:
                    seen[a, b] = True
                    queue.append((a, b))
        if len(blob) > len(best):
            best = blob
    out = np.zeros_like(mask)
    if best:
        out[tuple(np.array(best).T)] = True
    return out


def detect_frame(frame):
    img = frame.astype(np.float64)  # (H, W, 3)
    bg = np.median(img.reshape(-1, 3), axis=0)
    background = nearest(bg, BACKGROUNDS)
    diff = np.linalg.norm(img - bg, axis=-1)
    candidates = diff > MIN_DIFFERENCE
    lost = Detection(False, float("nan"), float("nan"), None, None, background)
    if candidates.sum() < MIN_AREA:
        return lost
    # the shape's colour: the median of the farthest third of the candidates (its interior, not its edges)
    far = diff >= np.quantile(diff[candidates], 2 / 3)
    fg = np.median(img[far], axis=0)
    # nearer fg than bg <=> the projection onto fg - bg passes the midpoint
    axis = fg - bg
    mask = largest_blob(((img - bg) @ axis) > 0.5 * (axis @ axis))
    area = mask.sum()
    if not MIN_AREA <= area <= MAX_AREA:
        return lost
    rows, cols = np.nonzero(mask)
    fill = area / ((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1))
    shape = "triangle" if fill < FILL_TRIANGLE_CIRCLE else "circle" if fill < FILL_CIRCLE_SQUARE else "square"
    return Detection(True, cols.mean() + 0.5, rows.mean() + 0.5, nearest(fg, SHAPE_COLOURS), shape, background)


def detect(video):
    video = np.asarray(video.cpu() if hasattr(video, "cpu") else video)
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"detect: expected a uint8 video (T, H, W, 3), got {video.dtype} {video.shape}")
    return [detect_frame(frame) for frame in video]
