"""What the published Video-Infinity code computes instead of the exact method: for the coherence experiment only.

The published implementation patches the temporal layers of each rank's UNet so that a rank sees little of the
rest of the video. Reproduced here as layer swaps applied from outside to an untouched model.UNet, run on
emulated ranks (clip_parallel.run_ranks), each approximation switchable so its effect can be measured alone:

  local_norm   every GroupNorm of the temporal layers takes statistics of the frames the rank holds (the conv
               block's: its clip plus the 4 context frames per side), no communication;
  zero_ends    the temporal conv block pads its clip with 4 frames per side from the neighbours and the attention
               keys with 8; at the video's ends these are ZERO frames (they go through GroupNorm, SiLU and the
               convs; a query attends to the zero keys), where the exact method has no frame at all;
  rank_global  each rank offers floor(16 / N) of its own frames (one if N > 16) at stride n // floor(16 / N)
               from its first frame; the gathered list is cut to the first 16, so the global frames depend on N
               and a global frame inside a query's window is counted twice;
  rank_noise   rank r draws its noise from a generator seeded with seed + r (the video depends on N);
  rank_prompt  rank r takes prompt floor(r / N * P) of P prompts (segments follow the ranks, not the timeline).

With every switch off the layers compute the exact dual-scope method (global GroupNorm statistics, the video's own
ends, the DualScope global frames counted once), so Published(all off) equals clip_parallel's result: a test.
The first three act inside the UNet (published_layers); the last two are how a sampler sets up the ranks
(rank_noise_generators, prompt_of_rank).
"""
import math
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

import model
from clip_parallel import swap
from dual_scope import DualScope, split_frames

CONV_CONTEXT = 4  # frames per side the published conv block borrows: 4 convs of kernel 3 need 4 for exact interiors


@dataclass(frozen=True)
class Published:
    local_norm: bool = True
    zero_ends: bool = True
    rank_global: bool = True
    rank_noise: bool = True
    rank_prompt: bool = True
    # the attention's padding (local_window, 8), top_k (global_frames, 16) and bias phases; no token scale
    scope: DualScope = field(default_factory=DualScope)

    @classmethod
    def only(cls, *names, scope=None):
        """Published with just the named approximations on (the others exact)."""
        off = cls(**{f: False for f in APPROXIMATIONS})
        unknown = set(names) - set(APPROXIMATIONS)
        if unknown:
            raise ValueError(f"unknown approximation(s) {sorted(unknown)}; known: {', '.join(APPROXIMATIONS)}")
        return replace(off, **{n: True for n in names}, **({"scope": scope} if scope else {}))


APPROXIMATIONS = ("local_norm", "zero_ends", "rank_global", "rank_noise", "rank_prompt")


def published_global_frames(frames, ranks, top_k=16):
    """Video frame indices of the published 'global' keys for (T, N): floor(top_k / N) frames per rank (1 if N >
    top_k) at stride n // that count from the rank's first frame, in rank order, cut to the first top_k."""
    per = max(1, top_k // ranks)
    out = []
    for start, stop in split_frames(frames, ranks):
        stride = max(1, (stop - start) // per)
        out += [start + m * stride for m in range(per)]
    return out[:top_k]


def prompt_of_rank(rank, ranks, prompts):
    """The published prompt assignment: rank r shows prompt floor(r / N * P)."""
    return rank * prompts // ranks


def rank_noise_generators(seed, ranks):
    """The published noise: one generator per rank, seeded with seed + r; draws follow each other step by step."""
    return [torch.Generator().manual_seed(seed + r) for r in range(ranks)]


# -----------------------------------------------------------------------------
# Per-rank state, thread-local (emulated ranks share one model). Our own: clip_parallel's is its business.

class _State(threading.local):
    comm = None
    clips = None  # [(start, stop)] of every rank
    timesteps = None  # (b,)


STATE = _State()


def video_norm(norm, h, own):
    """GroupNorm of h (b, c, m, hh, ww) with the statistics of the WHOLE video: each rank contributes the frames
    `own` (a slice: its clip, not the context frames it borrowed), summed over ranks (stage 3), in float64."""
    b, c = h.shape[:2]
    g = norm.num_groups
    mine = h[:, :, own].double().reshape(b, g, -1)
    sums = torch.stack([torch.full((b, g), mine.shape[-1], dtype=torch.float64, device=h.device),
                        mine.sum(-1), mine.square().sum(-1)])
    count, total, squares = torch.stack(STATE.comm.all_gather("stage3", sums)()).sum(0)
    mean = total / count
    var = squares / count - mean.square()  # biased, as GroupNorm
    y = (h.double().reshape(b, g, -1) - mean[..., None]) * torch.rsqrt(var + norm.eps)[..., None]
    y = y.reshape(h.shape).to(h.dtype)
    view = (1, c) + (1,) * (h.dim() - 2)
    return y * norm.weight.view(view).to(h.dtype) + norm.bias.view(view).to(h.dtype)


class PublishedTemporalNorm(nn.Module):
    """The TemporalTransformer's GroupNorm when local_norm is off: statistics of the whole video. (With local_norm
    on, the untouched GroupNorm on the clip IS the published computation: no swap.)"""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):  # x: (b, c, n, h, w)
        return video_norm(self.norm, x, slice(None))


class PublishedConvBlock(nn.Module):
    """A TemporalConvBlock on a clip, as published: the clip padded with CONV_CONTEXT frames per side from the
    neighbours (zero frames at the video's ends with zero_ends; none there without), the four GroupNorm-SiLU-Conv3d
    run on the padded frames (Conv3d's own zero padding of 1), the context frames cropped, the residual added."""

    def __init__(self, block, opts):
        super().__init__()
        self.block, self.opts = block, opts

    def forward(self, x):  # x: (b, c, n, h, w)
        p = CONV_CONTEXT
        left, right = STATE.comm.halo(x, p, dim=2)()
        if self.opts.zero_ends:
            left = torch.zeros_like(x[:, :, :p]) if left is None else left
            right = torch.zeros_like(x[:, :, :p]) if right is None else right
        lp, n = 0 if left is None else p, x.shape[2]
        h = torch.cat([t for t in (left, x, right) if t is not None], dim=2)
        for conv in (self.block.conv1, self.block.conv2, self.block.conv3, self.block.conv4):
            norm, *rest = conv  # GroupNorm, SiLU, [Dropout], Conv3d
            h = norm(h) if self.opts.local_norm else video_norm(norm, h, slice(lp, lp + n))
            for layer in rest:
                h = layer(h)
        return x + h[:, :, lp:lp + n]


def gather_frames(x, indices):
    """x ((b h w), n, c) -> the video frames `indices` ((b h w), len, c), from whichever rank owns them (stage 3)."""
    comm, clips = STATE.comm, STATE.clips
    owned = [[f - s for f in indices if s <= f < e] for s, e in clips]
    width = max(len(o) for o in owned)
    mine = owned[comm.rank] + [0] * (width - len(owned[comm.rank]))  # all_gather wants one shape: padded, dropped
    parts = comm.all_gather("stage3", x[:, mine])()
    return torch.cat([p[:, :len(o)] for p, o in zip(parts, owned)], dim=1)


class PublishedAttention(nn.Module):
    """Temporal self-attention on a clip, as published: keys are the clip plus `w` frames per side from the
    neighbours (ZERO vectors at the video's ends with zero_ends, else none), query i (clip-local) sees frames
    i-w..i+w of them, plus the global keys (per rank with rank_global, counted even when inside the window; else
    the DualScope frames of the whole video, counted once). Bias by timestep as the exact method; no token scale."""

    def __init__(self, attn, opts):
        super().__init__()
        self.attn, self.opts = attn, opts

    def forward(self, x, context=None):  # x: ((b h w), n, c)
        assert context is None, "VC2's temporal attentions are self-attention"
        comm, clips, scope = STATE.comm, STATE.clips, self.opts.scope
        start, stop = clips[comm.rank]
        frames, n = clips[-1][1], x.shape[1]
        w = scope.local_window
        shortest = min(e - s for s, e in clips)
        if w > shortest:
            raise ValueError(f"published attention padding {w} needs clips of >= {w} frames; the shortest has "
                             f"{shortest} (use fewer ranks)")
        left, right = comm.halo(x, w, dim=1)() if w else (None, None)
        if self.opts.zero_ends:
            left = x.new_zeros(x.shape[0], w, x.shape[2]) if left is None else left
            right = x.new_zeros(x.shape[0], w, x.shape[2]) if right is None else right
        lp = 0 if left is None else left.shape[1]
        local = torch.cat([t for t in (left, x, right) if t is not None], dim=1)
        # key frame j of `local` is video frame start - lp + j (or a zero frame); query i is frame start + i
        qf = torch.arange(start, stop, device=x.device)
        kf = torch.arange(start - lp, start - lp + local.shape[1], device=x.device)
        in_window = (qf[:, None] - kf[None, :]).abs() <= w  # (n, L)
        if self.opts.rank_global:
            per = max(1, scope.global_frames // comm.world_size)
            if n < per:
                raise ValueError(f"published global frames: rank {comm.rank} has {n} frames, fewer than the {per} "
                                 f"it must offer")
            stride = n // per
            parts = comm.all_gather("stage3", x[:, 0:per * stride:stride])()  # every rank offers `per` frames
            glob = torch.cat(parts, dim=1)[:, :scope.global_frames]
            g_allowed = torch.ones(n, glob.shape[1], dtype=torch.bool, device=x.device)  # counted twice if local
        else:
            G = scope.global_indices(frames)
            glob = gather_frames(x, G)
            g_allowed = (qf[:, None] - torch.tensor(G, device=x.device)[None, :]).abs() > w  # counted once
        a = self.attn
        keys = torch.cat([local, glob], dim=1)
        q, k, v = a.split_heads(a.to_q(x)), a.split_heads(a.to_k(keys)), a.split_heads(a.to_v(keys))
        b_local, b_global = (t.to(x.device, q.dtype).view(-1, 1, 1, 1) for t in scope.biases(STATE.timesteps.cpu()))
        is_local = torch.cat([in_window, torch.zeros_like(g_allowed)], 1)
        is_global = torch.cat([torch.zeros_like(in_window), g_allowed], 1)
        mask = torch.where(is_local, b_local, torch.where(is_global, b_global, -math.inf))  # (b or 1, 1, n, S)
        B, b = x.shape[0], mask.shape[0]
        mask = mask[:, None].expand(b, B // b, 1, n, keys.shape[1]).reshape(B, 1, n, keys.shape[1])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # scale d^-0.5
        return a.to_out(out.transpose(1, 2).flatten(2))


@contextmanager
def published_layers(unet, opts):
    """Swap the temporal layers of an untouched model.UNet for their published per-rank forms; restore on exit."""
    undo = []
    for m in list(unet.modules()):
        if isinstance(m, model.ResBlock) and m.temopral_conv is not None:
            undo.append(swap(m, "temopral_conv", PublishedConvBlock(m.temopral_conv, opts)))
        elif isinstance(m, model.TemporalTransformer):
            if not opts.local_norm:
                undo.append(swap(m, "norm", PublishedTemporalNorm(m.norm)))
            for block in m.transformer_blocks:
                undo += [swap(block, "attn1", PublishedAttention(block.attn1, opts)),
                         swap(block, "attn2", PublishedAttention(block.attn2, opts))]
    try:
        yield unet
    finally:
        for u in reversed(undo):
            u()


def clip_forward(unet, comm, frames, x, timesteps, context, fps):
    """One rank's UNet forward on its clip x (b, c, n, h, w) of a `frames`-long video, inside published_layers."""
    STATE.comm, STATE.clips = comm, split_frames(frames, comm.world_size)
    start, stop = STATE.clips[comm.rank]
    if x.shape[2] != stop - start:
        raise ValueError(f"rank {comm.rank} holds frames [{start}, {stop}): x has {x.shape[2]} frames")
    t = timesteps.reshape(-1)
    STATE.timesteps = t[:1] if bool((t == t[0]).all()) else t  # one shared timestep: one mask for the batch
    return unet(x, timesteps, context, fps)
