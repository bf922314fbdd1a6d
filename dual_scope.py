"""Dual-scope temporal attention (DESIGN.md section 2): each query frame i sees the key frames
K(i) = L(i) ∪ G, its local window L(i) = {j : |i - j| <= w} plus k global frames spread over the whole video,
with a timestep-dependent logit bias that favours global context early in sampling and local detail late.

Layout: q, k, v are (b, s, frames, d): b batch (one diffusion timestep each), s independent sequences (heads),
d head dim; clip_attention also takes (b*m, s, frames, d), m sequence groups (spatial positions) per batch element,
as strided views. Attention runs along the frame axis only.

Two computations of the same math: `reference_attention` (whole video, dense, the test oracle) and
`clip_attention` (what one rank runs on its clip of n frames: cost linear in n, via a gathered band).
"""
import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class DualScope:
    local_window: int = 8  # w: query i sees key frames |i-j| <= w (published "padding 8")
    global_frames: int = 16  # k: frames spread over the whole video that every query sees
    switch_timestep: int = 800  # diffusion t >= switch: early phase; t < switch: late phase
    early_bias: tuple = (0.0, 10.0)  # (local, global) logit bias for t >= switch
    late_bias: tuple = (10.0, 0.0)  # (local, global) for t < switch
    token_scale: bool = False  # s_i = log|K(i)| / log(16) multiplies the logits (off by default)

    def __post_init__(self):
        for name in ("local_window", "global_frames"):
            if getattr(self, name) < 0:
                raise ValueError(f"DualScope.{name} must be >= 0, got {getattr(self, name)}")

    def window(self, T):  # w for a video of T frames: a wider window sees no more frames
        return min(self.local_window, T - 1)

    def global_indices(self, T):
        # floor((m + 0.5) * T / k) in integer arithmetic; the spacing T/k > 1 makes them distinct
        k = self.global_frames
        return list(range(T)) if k >= T else [(2 * m + 1) * T // (2 * k) for m in range(k)]

    def biases(self, timesteps):  # (b,) int -> (local_bias (b,), global_bias (b,)) float32
        late = torch.as_tensor(timesteps) < self.switch_timestep
        # scalars, not a tensor built from a list: no host-to-device copy (and wait) in every attention layer
        return tuple(torch.where(late, float(lb), float(eb)).float() for eb, lb in zip(self.early_bias, self.late_bias))


def split_frames(frames, ranks):
    """T frames into `ranks` contiguous clips [start, stop), the first T % N clips one frame longer."""
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    if frames < ranks:
        raise ValueError(f"frames must be >= ranks ({ranks}), got {frames}")
    size, extra = divmod(frames, ranks)
    bounds = [r * size + min(r, extra) for r in range(ranks + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def key_sets(T, scope, device=None):
    """(T, T) bool masks, row = query frame, column = key frame: (local, global-only). A frame in both is local."""
    i = torch.arange(T, device=device)
    local = (i[:, None] - i[None, :]).abs() <= scope.local_window
    is_global = torch.zeros(T, dtype=torch.bool, device=device)
    is_global[scope.global_indices(T)] = True
    return local, is_global[None, :] & ~local


def token_scale(counts):  # s_i = log|K(i)| / log(16): 1 at the 16 frames VC2 was trained on
    return torch.log(counts.float()) / math.log(16)


def reference_attention(q, k, v, timesteps, scope):
    """Whole-video dual-scope attention, dense (T x T): softmax(q.k * d^-0.5 * s_i + bias) @ v over K(i)."""
    local, glob = key_sets(q.shape[2], scope, q.device)
    b_local, b_global = (x.to(q.dtype)[:, None, None] for x in scope.biases(timesteps.to(q.device)))
    bias = torch.where(local, b_local, torch.where(glob, b_global, -math.inf))  # (b, T, T); -inf: not in K(i)
    logits = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5  # (b, s, T, T)
    if scope.token_scale:
        logits = logits * token_scale((local | glob).sum(-1)).to(q.dtype)[:, None]
    return torch.softmax(logits + bias[:, None], dim=-1) @ v


def block_size(n, w):
    # B query frames share one gathered key band of B + 2w local frames (+ the k global ones). Per query the
    # work is B + 2w + k keys, the band memory (B + 2w + k) / B: B = max(w, 64) keeps the local part <= 3x at
    # any w and the whole 1.5x at the default w = 8, k = 16, in few, large SDPA calls (8-10 % faster than
    # B = 16 on an H200 at 128-288 frames per GPU); no point in a block longer than the clip.
    return min(n, max(w, 64))


@functools.lru_cache(maxsize=256)
def clip_masks(start, n, left, right, frames, scope, device):
    """Boolean structure of the banded layout for queries [start, start+n), cached: it changes only with the split.

    Returns is_local, is_global: (nb, B, L + g) over [band keys | global keys], and the token scale (nb, B)
    (None when off). Band column c of block j holds frame lo + j*B + c: one block (nb = 1) sees the L = left + n + right
    frames it was given (lo = start - left); more blocks see bands of L = B + 2w frames, zero-padded (lo = start - w).
    """
    w = scope.window(frames)
    B = block_size(n, w)
    nb = -(-n // B)
    lo, L = (start - left, left + n + right) if nb == 1 else (start - w, B + 2 * w)
    rows = start + torch.arange(nb * B, device=device).view(nb, B, 1)  # query frame
    real = rows < start + n  # padding rows (n rounded up to nb*B) are computed and dropped
    cols = lo + torch.arange(nb, device=device).view(nb, 1, 1) * B + torch.arange(L, device=device)
    have = (cols >= start - left) & (cols < start + n + right)  # frames we were given (halo ends at the video ends)
    band = have & ((rows - cols).abs() <= w) & real
    band = band | ~real  # padding rows see everything: finite garbage, never an all -inf row (NaN)
    G = torch.tensor(scope.global_indices(frames), dtype=torch.long, device=device)
    glob = ((rows - G).abs() > w) & real  # a global frame inside L(i) is already in the band: count it once
    is_local = torch.cat([band, torch.zeros_like(glob)], -1)
    is_global = torch.cat([torch.zeros_like(band), glob], -1)
    scale = token_scale((is_local | is_global).sum(-1)) if scope.token_scale else None
    return is_local, is_global, scale


def clip_attention(q, k, v, start, left, frames, timesteps, scope):
    """Rows [start, start+n) of reference_attention, from one clip's queries (N, s, n, d) and its keys and values
    (N, s, left + n + right + g, d): frames [start-left, start+n+right), then the g global frames G.
    N = b*m, batch-major, b = len(timesteps) (one timestep may serve the whole batch). Returns (N, s, n, d)."""
    N, s, n, d = q.shape
    g = len(scope.global_indices(frames))
    given = k.shape[2] - g  # local frames
    right = given - left - n
    w = scope.window(frames)
    if not (0 <= start and start + n <= frames):
        raise ValueError(f"clip [{start}, {start + n}) must lie inside the video of {frames} frames")
    if left != min(w, start) or right != min(w, frames - start - n):
        raise ValueError(f"halo (left, right) must be ({min(w, start)}, {min(w, frames - start - n)}), "
                         f"got ({left}, {right}) with {g} global frames")
    # compiled (clip_parallel.compile_layers, static shapes), the masks are traced into the kernels: the cache is for
    # eager calls
    masks = clip_masks.__wrapped__ if torch.compiler.is_compiling() else clip_masks
    is_local, is_global, scale = masks(start, n, left, right, frames, scope, q.device)
    nb, B, S = is_local.shape
    if scale is not None:  # s_i scales the logits, i.e. the query rows
        q = q * scale.flatten()[:n].to(q.dtype)[:, None]
    if nb == 1:  # the clip is one query block (n <= max(w, 64)): dense masked attention on the given views, no copies
        qb, kb, vb = q, k, v
    else:  # blocks of B queries (n zero-padded to nb*B), each with its own band of keys: copies, linear in n

        def bands(x):  # (N, s, given + g, d) -> (N*nb, s, S, d), one copy in frames-major memory (as the tokens)
            # zero-pad the local frames to [start - w, start + nb*B + w) (padding is masked): block j's band
            # [start + j*B - w, start + (j+1)*B + w) is then a strided view, followed by the g global frames
            local = F.pad(x[:, :, :given].transpose(1, 2), (0, 0, 0, 0, w - left, nb * B + w - n - right))
            glob = x[:, :, given:].transpose(1, 2)[:, None].expand(-1, nb, -1, -1, -1)
            band = local.unfold(1, B + 2 * w, B).permute(0, 1, 4, 2, 3)  # (N, nb, B + 2w, s, d), a view
            return torch.cat([band, glob], 2).flatten(0, 1).transpose(1, 2)

        qb = F.pad(q.transpose(1, 2), (0, 0, 0, 0, 0, nb * B - n)).reshape(N * nb, B, s, d).transpose(1, 2)
        kb, vb = bands(k), bands(v)
    b_local, b_global = (x.to(q.dtype).view(-1, 1, 1, 1) for x in scope.biases(timesteps.to(q.device)))
    mask = torch.where(is_local, b_local, torch.where(is_global, b_global, -math.inf))  # (b, nb, B, S)
    # one mask row per (sequence, block): a broadcast view for one timestep and one block (sampling), else a copy
    mask = mask[:, None].expand(len(mask), N // len(mask), nb, B, S).reshape(N * nb, 1, B, S)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=mask)  # (N*nb, s, B, d)
    return out.unflatten(0, (N, nb)).transpose(1, 2).reshape(N, s, nb * B, d)[:, :, :n]
