"""Dual-scope temporal attention: each query frame i sees the key frames
K(i) = L(i) ∪ G, its local window L(i) = {j : |i - j| <= w} plus k global frames spread over the whole video,
with a timestep-dependent logit bias that favours global context early in sampling and local detail late.

Layout: q, k, v are (b, s, frames, d): b batch (one diffusion timestep each), s independent sequences (heads),
d head dim; clip_attention also takes (b*m, s, frames, d), m sequence groups (spatial positions) per batch element.
Attention runs along the frame axis only.

Two computations of the same math: `reference_attention` (whole video, dense, the test oracle) and
`clip_attention` (what one rank computes for its clip, from the keys of its halo, clip and global frames).
"""
import math
from dataclasses import dataclass

import torch


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


def right_halo(start, n, left, given, frames, scope):
    """The right halo's width of the clip [start, start+n) given `given` local key frames [left halo | clip | right
    halo]; an error unless the clip lies in the video and both halos are min(w, frames up to the video's end)."""
    right, w = given - left - n, scope.window(frames)
    if not (0 <= start and start + n <= frames):
        raise ValueError(f"clip [{start}, {start + n}) must lie inside the video of {frames} frames")
    if left != min(w, start) or right != min(w, frames - start - n):
        raise ValueError(f"halo (left, right) must be ({min(w, start)}, {min(w, frames - start - n)}), "
                         f"got ({left}, {right}) with {given} local key frames")
    return right


def clip_attention(q, k, v, start, left, frames, timesteps, scope):
    """Rows [start, start+n) of reference_attention, from one clip's queries (N, s, n, d) and the keys and values
    (N, s, left + n + right + g, d) of the frames [start-left, start+n+right) (halo, clip, halo) and then of the g
    global frames. N = b*m, batch-major, b = len(timesteps) (one timestep may serve the whole batch)."""
    n, d = q.shape[2:]
    G, w = scope.global_indices(frames), scope.window(frames)
    right = right_halo(start, n, left, k.shape[2] - len(G), frames, scope)
    i = torch.arange(start, start + n, device=q.device)[:, None]  # query frames
    local = (i - torch.arange(start - left, start + n + right, device=q.device)).abs() <= w  # (n, halo+clip+halo)
    near = (i - torch.tensor(G, dtype=torch.long, device=q.device)).abs() <= w  # (n, g): a global frame in L(i)
    b_local, b_global = (x.to(q.dtype)[:, None, None] for x in scope.biases(timesteps.to(q.device)))
    # (b, n, keys): the global frames already in L(i) are masked in the global part, counted once, as local
    bias = torch.cat([torch.where(local, b_local, -math.inf), torch.where(near, -math.inf, b_global)], -1)
    logits = (q @ k.transpose(-1, -2) * d ** -0.5).unflatten(0, (len(bias), -1))  # (b, m, s, n, keys)
    if scope.token_scale:
        logits = logits * token_scale(local.sum(-1) + (~near).sum(-1)).to(q.dtype)[:, None]
    return torch.softmax(logits + bias[:, None, None], dim=-1).flatten(0, 1) @ v

