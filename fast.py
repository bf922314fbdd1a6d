"""The GPU forms of clip_parallel's layers: the same math, arranged for speed, applied from outside.

clip_parallel.py holds the plain forms a reader follows line by line; this file swaps them for forms that compute the
same numbers (tests: equal to 1e-12 in float64) with fewer, larger kernels:

  temporal conv       one batched GEMM per batch element over overlapping strided views of the frames (no padded copy),
                      the neighbours' frames in flight meanwhile and added through their own taps; no bias fill (each
                      conv's bias is folded into the next GroupNorm's shift, the last one's into the block's residual)
  temporal GroupNorm  per-(frame, group) moments in contiguous rows, then combined (clip_parallel.combine_moments);
                      the normalisation as one pass writing the layout the next layer reads (SiLU fused, or tokens);
                      without compile, on a GPU: both on the per-frame layers' Triton kernels (KERNELS)
  temporal attention  queries in blocks of B frames, each with its band of B + 2w local keys plus the global keys:
                      cost linear in the clip length, few large scaled_dot_product_attention calls; without compile,
                      on a GPU: one Triton kernel that reads each block's band where it lies (no band copies)
  per-frame layers    without compile, channels-last inside each ResBlock and SpatialTransformer (cuDNN's convs take
                      NHWC frames without transposes); their GroupNorms, SiLUs, bias adds and residuals as two Triton
                      kernels that read one layout and write the other; GEGLU one Triton GEMM (x * gelu(gate) in its
                      epilogue, the projection never written);
                      each TransformerBlock's residual sums made by the GEMMs they follow, their biases carried
                      apart and added by the next LayerNorm's pass (transformer_blocks_forward); a temporal layer's
                      output sums one pass each;
                      all these kernels' variants compiled side by side before sample.py's first step
                      (compile_kernels)
  guidance pair       sampling's batch of 2 is one video with two texts: the layers before the first that reads the
                      text (conv_in, init_attn, the first ResBlock, and on the kernels the first SpatialTransformer up
                      to its cross-attention) run once, on one video (pair_forms)
  VAE decoder         on a GPU (sample.py, compiled or not): channels-last from its first ResnetBlock on, the
                      ResnetBlocks as the UNet's ResBlocks (residual_block), its GroupNorms on the same kernels
                      (accelerate_decoder; its few large frames' moments in chunks of pixels: channel_moments)
  compile             torch.compile of the arithmetic between two communication stages and of every layer that sees
                      one frame at a time, static shapes but the clip length (one graph per layer shape serves every
                      n; sample.py, one n a process: that static too), under COMPILER_SETTINGS; CUDA graphs
                      (GraphedClipForward) for launch-bound sizes

    with clip_parallel.parallel_temporal_layers(unet, scope), fast.accelerate(unet, compile=True):
        clip_parallel.clip_forward(unet, comm, frames, x, timesteps, context, fps)
"""
import functools
import math
import os
import pathlib
import sys
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace

import torch
import torch._inductor.config  # noqa: F401 - COMPILER_SETTINGS patches it
import torch.nn as nn
import torch.nn.functional as F

import model
from clip_parallel import (STATE, ClipAttention, ClipGroupNorm, ClipTemporalConv, EmulatedComm, EmulatedGroup,
                           clip_forward, combine_moments, enter_clip, index_tensor, swap, video_moments)
from dual_scope import right_halo, token_scale

# -----------------------------------------------------------------------------
# dual-scope attention over bands of keys: dual_scope.clip_attention's numbers at a cost linear in the clip length


def block_size(n, w):
    # B query frames share one gathered key band of B + 2w local frames (+ the k global ones). Per query the work is
    # B + 2w + k keys, the band memory (B + 2w + k) / B: B = max(w, 64) keeps the local part <= 3x at any w and the
    # whole 1.5x at the default w = 8, k = 16, in few, large SDPA calls (8-10 % faster than B = 16 on an H200 at
    # 128-288 frames per GPU); no point in a block longer than the clip.
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


def banded_attention(q, k, v, start, left, frames, timesteps, scope):
    """dual_scope.clip_attention (same arguments, same result) in blocks of B queries, each over its band of keys."""
    N, s, n, d = q.shape
    given, w = k.shape[2] - len(scope.global_indices(frames)), scope.window(frames)  # local key frames
    right = right_halo(start, n, left, given, frames, scope)
    # compiled (static shapes), the masks are traced into the kernels: the cache is for eager calls
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


# -----------------------------------------------------------------------------
# The temporal GroupNorm's arithmetic, fused


def group_moments(x, groups, bias=None):
    """clip_parallel.clip_moments of x + bias (bias (c,) per channel, not yet added to x; compiled, the add is part of
    the reductions), accumulated inside the reductions (no float32 copy of x).

    Frame by frame first, then combined over the clip: in frames-major memory each (frame, group) is one contiguous
    run of x, so the reductions read x in order, b n groups rows at once (over a whole group's frames at once they had
    b groups rows, 64 in sampling, of strided runs: 4x slower at 128 frames per GPU on an H200)."""
    c = x.shape[1]
    if bias is not None:
        x = x + bias.to(x.dtype).view(c, 1, 1, 1)
    f32 = torch.promote_types(x.dtype, torch.float32)
    xg = x.transpose(1, 2).unflatten(2, (groups, c // groups))  # (b, n, groups, c/g, h, w)
    dims = (3, 4, 5)
    count = torch.full(xg.shape[:3], xg[0, 0, 0].numel(), dtype=f32, device=x.device)
    mean = xg.sum(dims, dtype=f32) / count
    # M2 around the mean rounded to x's dtype (deviations: no cancellation), corrected for that rounding
    m = mean.to(x.dtype)
    m2 = torch.linalg.vector_norm(xg - m[..., None, None, None], 2, dims, dtype=f32).square() \
        - count * (mean - m.to(f32)).square()
    return torch.stack(combine_moments(count, mean, m2, dim=1))


def normalize(x, scale, shift):
    """x (b, c, n, h, w), frames-major -> x * scale + shift per (b, frame, channel) plane, computed in float32, in x's
    dtype, as a contiguous (b, n, c, h, w): batch_norm in inference mode (mean 0, var 1, eps 0) over the planes,
    one pass. native_batch_norm: F.batch_norm may pick cuDNN, not meant for 10^6 channels."""
    b, c, n = x.shape[:3]
    xt = x.transpose(1, 2).contiguous()  # (b, n, c, h, w): a view, as x is frames-major
    planes = b * n * c

    def per_plane(v):  # (b, c) -> (b * n * c,)
        return v[:, None].expand(b, n, c).reshape(planes)

    y = torch.native_batch_norm(xt.view(1, planes, -1), per_plane(scale), per_plane(shift),
                                scale.new_zeros(planes), scale.new_ones(planes), False, 0.0, 0.0)[0]
    return y.view(xt.shape)


def normalize_tokens(x, scale, shift):  # -> (b, c, n, h, w) in token-major memory (b, h, w, n, c)
    return normalize(x, scale, shift).permute(0, 3, 4, 1, 2).contiguous().permute(0, 4, 3, 1, 2)


def normalize_silu(x, scale, shift):  # -> (b, n, c, h, w): SiLU of the normalized x
    return F.silu(normalize(x, scale, shift), inplace=True)


def add_residual(x, h, bias):  # x + h + bias (c,) per channel: a TemporalConvBlock's residual with conv4's bias
    return x + (h + bias.to(h.dtype).view(-1, 1, 1, 1))


def project_out(tt, y, x):  # y ((b h w), t, c) -> x + proj_out(y) as (b, c, t, h, w), in x's memory layout
    b, c, t, h, w = x.shape
    return x + tt.project(tt.proj_out, y).reshape(b, h, w, t, c).permute(0, 4, 3, 1, 2)


# the arithmetic between two communication stages: eager, or compiled by accelerate(compile=True)
EAGER = SimpleNamespace(group_moments=group_moments, normalize_tokens=normalize_tokens, normalize_silu=normalize_silu,
                        add_residual=add_residual, attention=banded_attention, project_out=project_out)


def compile_any_length(fn, backend, dims):
    """torch.compile(fn) with static shapes but one dimension per argument, its frames (dims[i] of argument i; None:
    an argument without one), which is symbolic: one graph per layer shape then serves every clip length. Static,
    each new clip length compiled every graph again (bench.py on an H200: ~140 s per n; shared, 38-54 s for a further
    n, docs/BENCH.md run 29), and torch's automatic dynamic shapes compiled the per-frame layers a second time, at
    the second length. Only the count of frames is symbolic: the kernels keep their static per-frame sizes and index
    arithmetic (a clip of one frame compiles apart: a size 1 is always specialised). dims None: every shape static,
    for a process that runs one clip length (sample.py): Dynamo traces it in about half the time (no symbolic
    shape arithmetic). sample.py at 1150 frames on an H200: first step 138 -> 120 s cold, 40 -> 28 s warm, each
    further step +1 % (docs/BENCH.md run 34)."""
    compiled_fn = torch.compile(fn, backend=backend, dynamic=False)
    if dims is None:
        return compiled_fn

    @functools.wraps(compiled_fn)
    def call(*args):
        for x, dim in zip(args, dims):
            if dim is not None:
                torch._dynamo.maybe_mark_dynamic(x, dim)
        return compiled_fn(*args)
    return call


# the frames dimension of each argument of EAGER's functions
FRAMES_DIMS = dict(group_moments=(2,), normalize_tokens=(2,), normalize_silu=(2,), add_residual=(2, 2),
                   project_out=(None, 1, 2))


@functools.lru_cache(maxsize=None)
def compiled(backend, any_length=True):
    """EAGER's functions compiled with static shapes but the clip length (any_length=False: that too): one
    specialised kernel per layer shape (a few per UNet level). The attention stays static in the clip length either
    way: its masks' structure depends on it."""
    return SimpleNamespace(**{name: compile_any_length(fn, backend, FRAMES_DIMS.get(name) if any_length else None)
                              for name, fn in vars(EAGER).items()})


def video_scale_shift(x, norm, ops, bias=None):
    """clip_parallel.video_group_norm as a float32 (scale, shift) per (b, channel), x * scale + shift the GroupNorm
    of x + bias (bias (c,): the previous conv's, not yet added to x, so folded into the shift)."""
    c, g = x.shape[1], norm.num_groups
    mean, var = video_moments(ops.group_moments(x, g, bias))  # stage 3
    f32 = var.dtype
    scale = torch.rsqrt(var + norm.eps).repeat_interleave(c // g, 1) * norm.weight.to(f32)  # (b, c)
    shift = norm.bias.to(f32) - mean.repeat_interleave(c // g, 1) * scale
    return scale, shift if bias is None else shift + bias.to(f32) * scale


class FastGroupNorm(nn.Module):
    """ClipGroupNorm, returning (b, c, n, h, w) in token-major memory (b, h, w, n, c), the layout the
    TemporalTransformer reads next: its permute to ((b h w), n, c) tokens is a view (compiled, the normalisation
    writes the tokens directly)."""

    def __init__(self, norm, ops):
        super().__init__()
        self.norm, self.ops = norm, ops

    def forward(self, x):  # x: (b, c, n, h, w), frames-major
        return self.ops.normalize_tokens(x, *video_scale_shift(x, self.norm, self.ops))


class FastTemporalConv(nn.Module):
    """ClipTemporalConv as GEMMs, without its bias (returned, for whoever reads the output next: a bias added by the
    GEMM would first fill the output with it and read it back).

    In frames-major memory the input frames t-1, t, t+1 of output frame t are adjacent, so the conv of the inner
    frames is one batched GEMM per batch element: W (c_out, 3 c) @ frames [t-1, t+1] as (3 c, h w), an overlapping
    strided view (no copy), batched over t. Each end frame takes its in-clip taps the same way and adds the
    neighbour's frame through the remaining tap (W_0 @ left, W_2 @ right): no padded copy of the clip, and all the
    GEMMs but those two run while the neighbours' frames are in flight.
    """

    def __init__(self, norm, conv, ops):
        super().__init__()
        self.norm, self.conv, self.ops = norm, conv, ops

    def forward(self, x, bias=None):  # x: (b, c, n, h, w), frames-major; bias (c,): the previous conv's, not yet added
        y = self.ops.normalize_silu(x, *video_scale_shift(x, self.norm, self.ops, bias))  # (b, n, c, h, w)
        halo = STATE.comm.halo(y, 1, dim=1)  # started: the GEMMs below, up to the neighbours' taps, overlap it
        b, n, c, h, w = y.shape
        frames = y.contiguous().view(b, n, c, h * w)
        weight = self.conv.weight[..., 0, 0].transpose(1, 2).reshape(-1, 3 * c)  # (c_out, 3c): column k*c + i

        def taps(first, last):  # (c_out, (last - first) c): the weights of taps [first, last)
            return weight[:, first * c:last * c]

        out = y.new_empty(b, n, len(weight), h * w)
        for i in range(b if n > 2 else 0):  # inner frames 1 .. n-2: taps 0, 1, 2 on frames t-1, t, t+1
            windows = frames[i].as_strided((n - 2, 3 * c, h * w), (c * h * w, h * w, 1))
            torch.bmm(taps(0, 3).expand(n - 2, -1, -1), windows, out=out[i, 1:n - 1])
        for t in sorted({0, n - 1}):  # the end frames, over the batch: taps k0..k1-1 see frames of the clip
            k0, k1 = max(0, 1 - t), min(3, n + 1 - t)
            torch.bmm(taps(k0, k1).expand(b, -1, -1), frames[:, t + k0 - 1:t + k1 - 1].flatten(1, 2), out=out[:, t])
        left, right = halo()  # (b, 1, c, h, w) each, None at the video's ends
        if left is not None:  # tap 0 of frame 0 is the left neighbour's last frame
            out[:, 0].baddbmm_(taps(0, 1).expand(b, -1, -1), left.view(b, c, h * w))
        if right is not None:  # tap 2 of frame n-1 is the right neighbour's first frame
            out[:, n - 1].baddbmm_(taps(2, 3).expand(b, -1, -1), right.view(b, c, h * w))
        return out.view(b, n, -1, h, w).transpose(1, 2), self.conv.bias


class FastTemporalConvBlock(nn.Module):
    """A TemporalConvBlock of ClipTemporalConvs as FastTemporalConvs: each conv's bias added by the next one's GroupNorm
    (folded into its shift) and the last one's by the block's residual add, x + conv4(conv3(conv2(conv1(x))))."""

    def __init__(self, block, ops):
        super().__init__()
        self.convs = nn.ModuleList(FastTemporalConv(c.norm, c.conv, ops) for c in (block.conv1, block.conv2,
                                                                                      block.conv3, block.conv4))
        self.ops = ops

    def forward(self, x):  # x: (b, c, n, h, w), frames-major
        h, bias = x, None
        for conv in self.convs:
            h, bias = conv(h, bias)
        return self.ops.add_residual(x, h, bias)


def temporal_transformer_forward(tt, ops, x):
    """model.TemporalTransformer.forward, its output projection and residual one function (compiled, the sum is one
    tiled kernel that writes x's frames-major layout, so the fold after it is a view)."""
    b, c, t, h, w = x.shape
    y = tt.project(tt.proj_in, tt.norm(x).permute(0, 3, 4, 2, 1).reshape(b * h * w, t, c))
    if ops is KERNELS:  # the blocks' biases carried to proj_out's (transformer_blocks_forward)
        y, shift = transformer_blocks_forward(tt.transformer_blocks, y)
        return ops.project_out(tt, y, x, shift)
    for block in tt.transformer_blocks:
        y = block(y)
    return ops.project_out(tt, y, x)


# -----------------------------------------------------------------------------
# the per-frame layers without compile: channels-last between a ResBlock's or SpatialTransformer's input and output
#
# cuDNN's 2D convs are NHWC kernels: on NCHW frames each call transposes its input, weight and output around them (and
# adds the bias in a pass of its own). Eagerly, F.group_norm keeps no channels-last layout (on CUDA it copies such an
# input to NCHW), so these forms normalise with two kernels of their own, which read any layout and write the one the
# next layer wants: the frames enter and leave channels-first (the temporal layers read them frames-major), and in
# between they are channels-last. On a CPU (or without Triton) the same arithmetic runs as PyTorch ops.

try:  # Triton comes with PyTorch's CUDA builds; tests run its kernels on a CPU under TRITON_INTERPRET=1
    import triton
    import triton.language as tl
except ImportError:
    triton = None
try:  # host-side TMA descriptors (Triton >= 3.3): the GEGLU GEMM's operands
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:
    TensorDescriptor = None
BLOCK = 64  # a kernel's tile: BLOCK pixels x BLOCK channels of one frame


INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"  # read by triton.jit when it wraps the kernels below


def use_kernels(x):
    return triton is not None and (x.is_cuda or INTERPRET)


if triton is not None:
    @triton.jit
    def add_moments(mu, m2, seen, part_mu, part_m2, k):
        # the running mean and M2 of `seen` values with a part of k more added, its mean part_mu and M2 part_m2
        # (Chan et al.: clip_parallel.combine_moments for two parts, in order)
        delta = part_mu - mu
        return mu + delta * k / (seen + k), m2 + part_m2 + delta * delta * seen * k / (seen + k)

    @triton.jit
    def load_tile(x, n, c, hw, C, HW, sx_n, sx_c, sx_hw):
        # frame n's pixels hw (BLOCK, 1) x channels c (BLOCK,) in float32, 0 outside the frame; and where inside
        inside = (hw < HW) & (c[None, :] < C)
        return tl.load(x + n * sx_n + c[None, :] * sx_c + hw * sx_hw, mask=inside, other=0.0).to(tl.float32), inside

    @triton.jit(do_not_specialize=["N"])  # N: only ever times C (C aligns the stores): one variant fewer
    def channel_moments_kernel(x, mean, m2, N, C, HW, CHUNK, sx_n, sx_c, sx_hw, BLOCK: tl.constexpr,
                               LANES: tl.constexpr):
        # the float32 mean and M2 of BLOCK channels of frame n over the pixels of its chunk s (CHUNK, the last the
        # rest), a tile of BLOCK pixels at a time, stored at (s, n, c) of mean and m2 (S, N, C). Channels-first x:
        # each tile reduced over its pixels (its contiguous side) around its own mean (no cancellation), the tiles
        # combined as they come (Chan et al.). LANES (channels-last x, where a tile's pixels lie across warps): each of
        # the tile's BLOCK pixel lanes keeps its own running mean and M2 (Welford), element by element, and the lanes
        # are combined once at the end
        n, s = tl.program_id(0).to(tl.int64), tl.program_id(2)
        c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        lo, hi = s * CHUNK, tl.minimum(HW, (s + 1) * CHUNK)  # chunks are whole tiles: only the last tile is partial
        lane = tl.arange(0, BLOCK)[:, None]
        if LANES:
            mu_l, m2_l = tl.zeros([BLOCK, BLOCK], tl.float32), tl.zeros([BLOCK, BLOCK], tl.float32)
            for start in range(lo, hi, BLOCK):
                v, inside = load_tile(x, n, c, start + lane, C, HW, sx_n, sx_c, sx_hw)
                delta = tl.where(inside, v - mu_l, 0.0)
                mu_l += delta / ((start - lo) // BLOCK + 1)  # this lane's ((start - lo) // BLOCK + 1)-th pixel
                m2_l += delta * (v - mu_l)
            k = tl.where(lane < hi - lo, (hi - lo - 1 - lane) // BLOCK + 1, 0) * 1.0  # each lane's pixels
            mu = tl.sum(mu_l * k, 0) / (hi - lo)
            d = mu_l - mu[None, :]
            m2_c = tl.sum(tl.where(k > 0, m2_l + k * d * d, 0.0), 0)
        else:
            mu, m2_c = tl.zeros([BLOCK], tl.float32), tl.zeros([BLOCK], tl.float32)
            for start in range(lo, hi, BLOCK):
                v, inside = load_tile(x, n, c, start + lane, C, HW, sx_n, sx_c, sx_hw)
                k, seen = tl.minimum(HW - start, BLOCK) * 1.0, (start - lo) * 1.0  # this tile's pixels, earlier's
                tile_mu = tl.sum(v, 0) / k
                d = tl.where(inside, v - tile_mu[None, :], 0.0)
                mu, m2_c = add_moments(mu, m2_c, seen, tile_mu, tl.sum(d * d, 0), k)
        at = (s * N + n) * C + c
        tl.store(mean + at, mu, mask=c < C)
        tl.store(m2 + at, m2_c, mask=c < C)

    @triton.jit(do_not_specialize=["S"])  # S: a loop count, no address
    def moments_combine_kernel(part_mean, part_m2, mean, m2, NC, HW, S, CHUNK, BLOCK: tl.constexpr):
        # the S chunks' moments of each (frame, channel) (S, N * C), CHUNK pixels each and the last the rest,
        # combined in order (Chan et al.) into its moments over all HW pixels (N * C)
        i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        on = i < NC
        mu, m2_c = tl.zeros([BLOCK], tl.float32), tl.zeros([BLOCK], tl.float32)
        for s in range(S):
            k, seen = tl.minimum(HW - s * CHUNK, CHUNK) * 1.0, (s * CHUNK) * 1.0
            mu, m2_c = add_moments(mu, m2_c, seen, tl.load(part_mean + s * NC + i, mask=on, other=0.0),
                                   tl.load(part_m2 + s * NC + i, mask=on, other=0.0), k)
        tl.store(mean + i, mu, mask=on)
        tl.store(m2 + i, m2_c, mask=on)

    @triton.jit(do_not_specialize=["T", "GROUP"])  # a frame's video, a loop count: no address (32 -> 18 variants)
    def frame_pass_kernel(x, res, out, mean, m2, pre, weight, bias, scale, shift, C, HW, T, GROUP, eps, sx_b, sx_t,
                          sx_c, sx_hw, sr_b, sr_t, sr_c, sr_hw, so_b, so_t, so_c, so_hw, NORM: tl.constexpr,
                          PRE: tl.constexpr, SILU: tl.constexpr, RESIDUAL: tl.constexpr, ROWS: tl.constexpr,
                          BLOCK: tl.constexpr):
        # out = silu?(x * a + s) + res? over ROWS pixels x BLOCK channels of frame n (frame n % T of video n // T),
        # float32, one rounding; each tensor in its own layout (a tile is loaded and stored along its contiguous
        # side). NORM: (a, s) the GroupNorm (weight, bias, eps; GROUP channels a group) of x + pre (pre (N, C): a
        # constant per frame and channel, not yet added to x), from the channels' moments (mean, m2 (N, C): HW pixels
        # each). Else (a, s) = (scale, shift), given per video and channel
        n = tl.program_id(0).to(tl.int64)
        video, t = n // T, n % T
        c = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        on = c < C
        if NORM:
            first = c // GROUP * GROUP  # the group's first channel
            g_mu = tl.zeros([BLOCK], tl.float32)
            for j in range(GROUP):  # the group's mean: its channels' (equal counts)
                g_mu += tl.load(mean + n * C + first + j, mask=on, other=0.0)
                if PRE:
                    g_mu += tl.load(pre + n * C + first + j, mask=on, other=0.0)
            g_mu = g_mu / GROUP
            g_m2 = tl.zeros([BLOCK], tl.float32)
            for j in range(GROUP):  # its M2: the channels' M2s and their means' spread
                d = tl.load(mean + n * C + first + j, mask=on, other=0.0) - g_mu
                if PRE:
                    d += tl.load(pre + n * C + first + j, mask=on, other=0.0)
                g_m2 += tl.load(m2 + n * C + first + j, mask=on, other=0.0) + HW * d * d
            a = tl.rsqrt(g_m2 / (HW * GROUP) + eps) * tl.load(weight + c, mask=on, other=0.0).to(tl.float32)
            s = tl.load(bias + c, mask=on, other=0.0).to(tl.float32) - g_mu * a
            if PRE:
                s += tl.load(pre + n * C + c, mask=on, other=0.0) * a
        else:
            a = tl.load(scale + video * C + c, mask=on, other=0.0)
            s = tl.load(shift + video * C + c, mask=on, other=0.0)
        for start in range(tl.program_id(2) * ROWS, tl.minimum(HW, (tl.program_id(2) + 1) * ROWS), BLOCK):
            hw = start + tl.arange(0, BLOCK)[:, None]
            inside = (hw < HW) & on[None, :]
            y = tl.load(x + video * sx_b + t * sx_t + c[None, :] * sx_c + hw * sx_hw, mask=inside, other=0.0)
            y = y.to(tl.float32) * a[None, :] + s[None, :]
            if SILU:
                y = y * tl.sigmoid(y)
            if RESIDUAL:
                y += tl.load(res + video * sr_b + t * sr_t + c[None, :] * sr_c + hw * sr_hw, mask=inside,
                             other=0.0).to(tl.float32)
            tl.store(out + video * so_b + t * so_t + c[None, :] * so_c + hw * so_hw, y.to(out.dtype.element_ty),
                     mask=inside)

    @triton.jit
    def geglu_kernel(h, out, N, BLOCK: tl.constexpr):
        # GEGLU's x * gelu(gate) (erf form) of one row of h = [x | gate] (rows, 2N) -> (rows, N), one pass
        r = tl.program_id(0).to(tl.int64)
        j = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
        a = tl.load(h + r * 2 * N + j, mask=j < N, other=0.0).to(tl.float32)
        g = tl.load(h + r * 2 * N + N + j, mask=j < N, other=0.0).to(tl.float32)
        y = a * 0.5 * g * (1.0 + tl.math.erf(g * 0.7071067811865476))
        tl.store(out + r * N + j, y.to(out.dtype.element_ty), mask=j < N)

    @triton.jit
    def geglu_gemm_kernel(x, w, b, out, M, N, K, BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr,
                          GROUP_M: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        # GEGLU whole, its projection never written: a (BM, BN / 2) tile of out (M, N) = v * gelu(g), [v g] = x
        # (M, K) @ w^T + b, from one (BM, BN) accumulator whose columns alternate value j and gate j: w is the
        # projection's weight (2N, K) read through a 3D view (N, 2, K) (row (j, 0): value j, (j, 1): its gate), so a
        # tile of it holds BN / 2 outputs whole. x, w and out are TMA descriptors: tiles past an edge read as zeros
        # and are not written
        pid = tl.program_id(0)
        tiles_m, tiles_n = tl.cdiv(M, BM), tl.cdiv(N, BN // 2)
        width = GROUP_M * tiles_n  # tiles in groups of GROUP_M tile rows, column by column: their w stays in L2
        first_m = pid // width * GROUP_M
        rows = tl.minimum(tiles_m - first_m, GROUP_M)
        m, n = (first_m + pid % width % rows) * BM, pid % width // rows * (BN // 2)
        acc = tl.zeros((BM, BN), tl.float32)
        for k in range(0, K, BK):
            a, w_t = x.load([m, k]), tl.reshape(w.load([n, 0, k]), (BN, BK)).T
            if UPCAST:  # Triton's interpreter (3.9) multiplies 16-bit float tiles wrongly: its tests dot in float32
                a, w_t = a.to(tl.float32), w_t.to(tl.float32)
            acc = tl.dot(a, w_t, acc, input_precision=PRECISION)
        value, gate = tl.split(tl.reshape(acc, (BM, BN // 2, 2)))
        j = n + tl.arange(0, BN // 2)
        value += tl.load(b + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        gate += tl.load(b + N + j, mask=j < N, other=0.0).to(tl.float32)[None, :]
        out.store([m, n], (value * 0.5 * gate * (1.0 + tl.math.erf(gate * 0.7071067811865476))).to(out.dtype))

    @triton.jit
    def layer_norm_kernel(x, weight, bias, shift, y, R, C, eps, ROWS: tl.constexpr, BLOCK: tl.constexpr):
        # LayerNorm of ROWS rows of x + shift, C channels (float32, each row held whole; shift (C,) float32: the
        # residual sums' biases not yet added to x) -> y
        row = tl.program_id(0).to(tl.int64) * ROWS + tl.arange(0, ROWS)[:, None]
        c = tl.arange(0, BLOCK)[None, :]
        inside = (row < R) & (c < C)
        v = tl.load(x + row * C + c, mask=inside, other=0.0).to(tl.float32)
        v += tl.load(shift + c, mask=c < C, other=0.0)
        mean = tl.sum(v, 1)[:, None] / C
        d = tl.where(inside, v - mean, 0.0)
        rstd = tl.rsqrt(tl.sum(d * d, 1)[:, None] / C + eps)
        w = tl.load(weight + c, mask=c < C, other=0.0).to(tl.float32)
        b = tl.load(bias + c, mask=c < C, other=0.0).to(tl.float32)
        tl.store(y + row * C + c, (d * rstd * w + b).to(y.dtype.element_ty), mask=inside)

    # the dual-scope temporal attention (kernel_attention): one program per sequence, head and block of queries

    @triton.jit
    def dual_scope_kernel(q, k, v, out, glob, b_local, b_global, n, start, left, given, g, W, PER_BIAS, qk_scale, d,
                          sq_n, sq_s, sq_t, sk_n, sk_s, sk_t, sv_n, sv_s, sv_t, so_n, so_s, so_t,
                          TOKEN_SCALE: tl.constexpr, BQ: tl.constexpr, KC: tl.constexpr, GB: tl.constexpr,
                          D: tl.constexpr, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
        # dual_scope.clip_attention for BQ queries of one sequence and head. Query frame a = start + i sees the given
        # local key frames f (k's rows j = f - start + left, j < given) with |a - f| <= W, bias b_local, and global
        # frame m (k's row given + m, frame glob[m]) unless |a - glob[m]| <= W, bias b_global. The block's local keys
        # lie in rows [i0 + left - W, i0 + BQ + left + W): read where they are, KC at a time, then the global ones.
        seq, head, i0 = tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2) * BQ
        i = i0 + tl.arange(0, BQ)
        a = (start + i)[:, None]  # (BQ, 1) query frames
        dd = tl.arange(0, D)
        qv = tl.load(q + seq * sq_n + head * sq_s + i[:, None] * sq_t + dd[None, :],
                     mask=(i[:, None] < n) & (dd[None, :] < d), other=0.0)
        if UPCAST:  # Triton's interpreter (3.9) multiplies 16-bit float tiles wrongly: its tests dot in float32
            qv = qv.to(tl.float32)
        k, v = k + seq * sk_n + head * sk_s, v + seq * sv_n + head * sv_s  # this sequence's and head's rows
        bl, bg = tl.load(b_local + seq // PER_BIAS), tl.load(b_global + seq // PER_BIAS)
        m_i, l_i = tl.full([BQ], -1.0e30, tl.float32), tl.zeros([BQ], tl.float32)
        acc = tl.zeros([BQ, D], tl.float32)
        scale = tl.full([BQ, 1], qk_scale, tl.float32)
        if GB > 0:
            mg = tl.arange(0, GB)
            sees_g = (mg[None, :] < g) & (tl.abs(a - tl.load(glob + mg, mask=mg < g, other=0)[None, :]) > W)
        if TOKEN_SCALE:  # s_i = log|K(i)| / log 16 scales the logits
            count = tl.minimum(a + W, start + given - left - 1) - tl.maximum(a - W, start - left) + 1
            if GB > 0:
                count += tl.sum(sees_g.to(tl.int32), 1)[:, None]
            scale = scale * tl.log(tl.maximum(count, 1).to(tl.float32)) / 2.772588722239781
        for j0 in range(tl.maximum(i0 + left - W, 0), tl.minimum(i0 + BQ + left + W, given), KC):
            j = j0 + tl.arange(0, KC)
            sees = (j[None, :] < given) & (tl.abs(a - (start - left + j[None, :])) <= W)
            m_i, l_i, acc = attend(qv, k, v, sk_t, sv_t, j, j < given, sees, bl, scale, m_i, l_i, acc, dd, d,
                                   PRECISION, UPCAST)
        if GB > 0:
            m_i, l_i, acc = attend(qv, k, v, sk_t, sv_t, given + mg, mg < g, sees_g, bg, scale, m_i, l_i, acc, dd, d,
                                   PRECISION, UPCAST)
        acc = acc / tl.where(l_i > 0, l_i, 1.0)[:, None]  # l_i > 0 in every real row: it sees its own frame
        tl.store(out + seq * so_n + head * so_s + i[:, None] * so_t + dd[None, :], acc.to(out.dtype.element_ty),
                 mask=(i[:, None] < n) & (dd[None, :] < d))

    @triton.jit
    def attend(qv, k, v, sk, sv, rows, exists, sees, bias, scale, m_i, l_i, acc, dd, d, PRECISION: tl.constexpr,
               UPCAST: tl.constexpr):
        # the keys and values in `rows` of k and v (row strides sk, sv; `exists`: rows that hold one), seen where
        # `sees` (BQ, rows), logits scaled and biased, folded into the running softmax: its row maxima m_i, sums l_i
        # and output acc, float32 (an exp of -inf adds 0)
        mask = exists[:, None] & (dd[None, :] < d)
        kv = tl.load(k + rows[:, None] * sk + dd[None, :], mask=mask, other=0.0)
        vv = tl.load(v + rows[:, None] * sv + dd[None, :], mask=mask, other=0.0)
        if UPCAST:
            kv, vv = kv.to(tl.float32), vv.to(tl.float32)
        s = tl.where(sees, tl.dot(qv, tl.trans(kv), input_precision=PRECISION) * scale + bias, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        acc = acc * alpha[:, None] + tl.dot(p.to(vv.dtype), vv, input_precision=PRECISION)
        return m_new, l_i * alpha + tl.sum(p, 1), acc


ROWS = 512  # the pixels of one frame_pass_kernel program: its group statistics computed once for ROWS x BLOCK
PASS_WARPS = 4  # frame_pass_kernel's warps a program
MOMENTS_BLOCK, MOMENTS_WARPS = 64, 4  # channel_moments_kernel: its tile (MOMENTS_BLOCK pixels x channels), warps
# a (frame, channel block) a program fills a GPU when frames are many (the UNet's 2 x n); the VAE decoder's batch of 32
# frames at 320x512 pixels and 128 channels makes 64 programs for 132 SMs (an H200), each reading 160k pixels: there
# each frame's pixels are cut into chunks, their moments combined after (docs/BENCH.md run 62: the decoder's moments
# 34 -> 15 ms a batch, the decode -12 %)
MOMENTS_PROGRAMS = 1024  # chunks enough for this many programs
MOMENTS_CHUNK = 8 * MOMENTS_BLOCK  # but no fewer pixels a chunk than this


def channel_moments(x):
    """x (N, C, H, W), any layout -> the mean and M2 of each (frame, channel) over its h w pixels, (N, C) each,
    float32 (float64 for float64 x)."""
    xv = x.flatten(2)  # (N, C, (h w)): a view in either layout
    if not use_kernels(x):
        f32 = torch.promote_types(x.dtype, torch.float32)
        mean = xv.to(f32).mean(2, keepdim=True)
        return mean[..., 0], (xv - mean).square().sum(2, dtype=f32)
    (N, C, hw), f32, cdiv = xv.shape, torch.float32, triton.cdiv
    programs = N * cdiv(C, MOMENTS_BLOCK)
    S = max(1, min(cdiv(MOMENTS_PROGRAMS, programs), hw // MOMENTS_CHUNK))  # chunks a frame
    chunk = cdiv(cdiv(hw, S), MOMENTS_BLOCK) * MOMENTS_BLOCK  # whole tiles (divides by 16 at any S: one variant)
    S = cdiv(hw, chunk)
    mean, m2 = torch.empty(S, N, C, dtype=f32, device=x.device), torch.empty(S, N, C, dtype=f32, device=x.device)
    channel_moments_kernel[(N, cdiv(C, MOMENTS_BLOCK), S)](xv, mean, m2, N, C, hw, chunk, *xv.stride(),
                                                           BLOCK=MOMENTS_BLOCK, LANES=xv.stride(1) < xv.stride(2),
                                                           num_warps=MOMENTS_WARPS)
    if S == 1:
        return mean[0], m2[0]
    out_mean, out_m2 = torch.empty(N, C, dtype=f32, device=x.device), torch.empty(N, C, dtype=f32, device=x.device)
    moments_combine_kernel[(cdiv(N * C, 1024),)](mean, m2, out_mean, out_m2, N * C, hw, S, chunk, BLOCK=1024)
    return out_mean, out_m2


def frame_pass(x, norm=None, pre=None, silu=False, residual=None, bias=None, channels_last=True):
    """One pass over x (N, C, H, W), any layout, written channels-last (or channels-first) in x's dtype:
    silu?(GroupNorm `norm` of x + pre) (pre (N, C): a constant per frame and channel, not yet added to x), or
    x + bias + residual (bias (C,)). In float32, one rounding."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    if norm is not None:
        mean, m2 = channel_moments(x)
    if not use_kernels(x):
        f32 = torch.promote_types(x.dtype, torch.float32)
        if norm is None:
            y = x.to(f32) + bias.to(f32)[:, None, None] + residual.to(f32)
        else:
            N, g = len(x), norm.num_groups
            mean = mean if pre is None else mean + pre.to(f32)  # a channel's constant moves its mean only
            per_group = lambda v: v.view(N, g, -1)  # noqa: E731 (N, C) -> (N, g, C/g)
            count, g_mean, g_m2 = combine_moments(per_group(torch.full_like(mean, x[0, 0].numel())), per_group(mean),
                                                  per_group(m2), dim=2)  # channels -> groups, (N, g) each
            per_pixel = lambda v: v[..., None, None, None]  # noqa: E731 (N, g) -> broadcast over (N, g, C/g, H, W)
            y = (x.to(f32) + (0 if pre is None else pre.to(f32)[..., None, None])).unflatten(1, (g, -1))
            y = ((y - per_pixel(g_mean)) * torch.rsqrt(per_pixel(g_m2 / count) + norm.eps)).flatten(1, 2)
            y = y * norm.weight.to(f32)[:, None, None] + norm.bias.to(f32)[:, None, None]
            y = F.silu(y) if silu else y
        return y.to(x.dtype).contiguous(memory_format=layout)
    out = torch.empty_like(x, memory_format=layout)
    frames = lambda v: v.transpose(0, 1)[None]  # noqa: E731 (N, C, H, W) -> one video (1, C, N, H, W), a view
    if norm is None:
        launch_add(frames(x), frames(out), frames(residual), bias)
    else:
        launch_pass(frames(x), frames(out), silu=silu, norm=norm, moments=(mean, m2), pre=pre)
    return out


def launch_pass(x, out, residual=None, silu=False, scale=None, shift=None, norm=None, moments=None, pre=None):
    """frame_pass_kernel over videos x (b, c, t, h, w) into out, and residual if given, each in any layout whose
    (h, w) merge. Either scale and shift (b, c) float32 per video and channel, or the GroupNorm `norm` of each frame
    of x + pre (pre (b t, c) or None) from its channels' moments (mean, m2), (b t, c) each."""
    b, c, t = x.shape[:3]
    strides = [s for v in (x, x if residual is None else residual, out) for s in (v.stride(0), v.stride(2),
                                                                                   v.stride(1), v.stride(4))]
    if norm is None:  # the GroupNorm's pointers are read only under NORM
        mean = m2 = pre_ = weight = bias = scale
        group, eps = 1, 0.0
    else:
        (mean, m2), weight, bias = moments, norm.weight, norm.bias
        group, eps, scale = c // norm.num_groups, norm.eps, mean
        shift, pre_ = scale, mean if pre is None else pre.float().contiguous()
    frame_pass_kernel[(b * t, triton.cdiv(c, BLOCK), triton.cdiv(x[0, 0, 0].numel(), ROWS))](
        x, x if residual is None else residual, out, mean, m2, pre_, weight, bias, scale.contiguous(),
        shift.contiguous(), c, x[0, 0, 0].numel(), t, group, eps, *strides, NORM=norm is not None,
        PRE=pre is not None, SILU=silu, RESIDUAL=residual is not None, ROWS=ROWS, BLOCK=BLOCK,
        num_warps=PASS_WARPS)


def launch_add(x, out, residual, bias):  # out = x + bias (c,) + residual, videos (b, c, t, h, w): scale 1, shift bias
    b, c = x.shape[:2]
    launch_pass(x, out, residual, scale=x.new_ones(b, c, dtype=torch.float32), shift=bias.float()[None].expand(b, -1))


def kernel_group_moments(x, groups, bias=None):
    """group_moments (the same numbers) from each frame's channel moments: one read of x (eagerly, group_moments
    reads it three times and writes it once)."""
    b, c, n = x.shape[:3]
    mean, m2 = channel_moments(x.transpose(1, 2).flatten(0, 1))  # frames ((b n), c, h, w): a view of frames-major x
    if bias is not None:  # a channel's constant moves its mean only
        mean = mean + bias.to(mean.dtype)
    mean, m2 = (v.view(b, n, groups, -1).transpose(1, 2).flatten(2) for v in (mean, m2))  # (b, groups, n c/g)
    count = torch.full_like(mean, x[0, 0, 0].numel())  # every channel of every frame has h w pixels
    return torch.stack(combine_moments(count, mean, m2, dim=2))  # channels and frames -> groups


def kernel_normalize_silu(x, scale, shift):  # normalize_silu as one pass: -> (b, n, c, h, w)
    if not use_kernels(x):
        return normalize_silu(x, scale, shift)
    b, c, n, h, w = x.shape
    out = x.new_empty(b, n, c, h, w)
    launch_pass(x, out.transpose(1, 2), silu=True, scale=scale.float(), shift=shift.float())
    return out


def kernel_normalize_tokens(x, scale, shift):  # normalize_tokens as one pass: -> token-major memory (b, h, w, n, c)
    if not use_kernels(x):
        return normalize_tokens(x, scale, shift)
    b, c, n, h, w = x.shape
    out = x.new_empty(b, h, w, n, c).permute(0, 4, 3, 1, 2)
    launch_pass(x, out, scale=scale.float(), shift=shift.float())
    return out


def kernel_add_residual(x, h, bias):  # add_residual as one pass (eagerly two: h + bias, then x + that)
    if not use_kernels(x):
        return add_residual(x, h, bias)
    out = torch.empty_like(x)
    launch_add(h, out, x, bias)
    return out


def kernel_project_out(tt, y, x, shift):
    """project_out of y + shift (c,) (transformer_blocks_forward's output) as one pass after a GEMM without bias:
    the token-major projection, its bias and the residual x summed into x's layout (eagerly, the sum reads the
    projection across its strides, a slow kernel)."""
    b, c, t, h, w = x.shape
    weight = tt.proj_out.weight if isinstance(tt.proj_out, nn.Linear) else tt.proj_out.weight[..., 0]  # Conv1d k=1
    bias = proj_out_bias(tt.proj_out, weight, shift)
    p = F.linear(y, weight).view(b, h, w, t, c).permute(0, 4, 3, 1, 2)  # (b, c, t, h, w), token-major memory
    if not use_kernels(x):
        return x + (p + bias.view(-1, 1, 1, 1)).to(x.dtype)
    out = torch.empty_like(x)
    launch_add(p, out, x, bias)
    return out


QUERY_TILE, KEY_TILE, ATTENTION_WARPS = 64, 16, 4  # dual_scope_kernel: queries a program, local keys a step (run 40)


def kernel_attention(q, k, v, start, left, frames, timesteps, scope):
    """banded_attention (same arguments, same result) as one Triton kernel, dual_scope_kernel: each block of queries
    reads its band of local keys and the global keys where they lie in k and v (no padded, banded copies, no mask
    tensor), and writes its output in the layout to_out reads: (N, s, n, d) as a view of (N, n, s, d) memory."""
    if not use_kernels(q):
        return banded_attention(q, k, v, start, left, frames, timesteps, scope)
    N, s, n, d = q.shape
    G = scope.global_indices(frames)
    given, w = k.shape[2] - len(G), scope.window(frames)
    right_halo(start, n, left, given, frames, scope)  # the halos' check
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    b_local, b_global = (x.float().contiguous() for x in scope.biases(timesteps.to(q.device)))
    out = q.new_empty(N, n, s, d).transpose(1, 2)
    BQ = min(QUERY_TILE, max(16, triton.next_power_of_2(n)))  # tl.dot wants tiles of >= 16 rows
    dual_scope_kernel[(N, s, triton.cdiv(n, BQ))](
        q, k, v, out, index_tensor(tuple(G) or (0,), q.device), b_local, b_global, n, start, left, given, len(G), w,
        N // len(b_local), d ** -0.5, d, q.stride(0), q.stride(1), q.stride(2), k.stride(0), k.stride(1), k.stride(2),
        v.stride(0), v.stride(1), v.stride(2), out.stride(0), out.stride(1), out.stride(2),
        TOKEN_SCALE=scope.token_scale, BQ=BQ, KC=KEY_TILE, GB=max(16, triton.next_power_of_2(len(G))) if G else 0,
        D=max(16, triton.next_power_of_2(d)), PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        UPCAST=INTERPRET, num_warps=ATTENTION_WARPS)
    return out


# EAGER with the temporal GroupNorms' passes as fast.py's kernels: what accelerate runs without compile
KERNELS = SimpleNamespace(**{**vars(EAGER), "group_moments": kernel_group_moments,
                             "normalize_silu": kernel_normalize_silu, "normalize_tokens": kernel_normalize_tokens,
                             "attention": kernel_attention, "add_residual": kernel_add_residual,
                             "project_out": kernel_project_out})


GEGLU_TILES = (128, 128, 64, 8, 4, 3)  # geglu_gemm: BM, BN (columns of [v g]), BK, GROUP_M, warps, stages


def tma_rows(t):  # TMA reads it: contiguous rows of a 16-byte multiple from a 16-byte aligned start
    return t.is_contiguous() and t.shape[-1] * t.element_size() % 16 == 0 and t.data_ptr() % 16 == 0


def geglu_gemm(x, weight, bias, tiles=GEGLU_TILES):
    """model.GEGLU's forward as one Triton GEMM (geglu_gemm_kernel): x (M, K) -> (M, N), from its projection's
    weight (2N, K) and bias (2N,); x, weight and the output in rows of 16-byte multiples from 16-byte aligned
    starts (TMA)."""
    BM, BN, BK, group, warps, stages = tiles
    (M, K), N = x.shape, len(weight) // 2
    out = x.new_empty(M, N)
    x_d, out_d = TensorDescriptor.from_tensor(x, [BM, BK]), TensorDescriptor.from_tensor(out, [BM, BN // 2])
    w_d = TensorDescriptor(weight, [N, 2, K], [K, N * K, 1], [BN // 2, 2, BK])  # (2N, K) as (N, 2, K): no copy
    geglu_gemm_kernel[(triton.cdiv(M, BM) * triton.cdiv(N, BN // 2),)](
        x_d, w_d, bias, out_d, M, N, K, BM=BM, BN=BN, BK=BK, GROUP_M=group,
        PRECISION="ieee" if x.dtype == torch.float32 else "tf32", UPCAST=INTERPRET, num_warps=warps,
        num_stages=stages)
    return out


def geglu_forward(geglu, x):
    """model.GEGLU.forward: where TMA can read it, one GEMM whose epilogue writes x * gelu(gate) (geglu_gemm; the
    (..., 2N) projection never written), else the projection by cuBLAS and x * gelu(gate) one pass over it (eagerly,
    3 passes: gelu of a strided half, then the product)."""
    w = geglu.proj.weight  # (2N, K)
    if use_kernels(x) and TensorDescriptor is not None and tma_rows(w) and len(w) // 2 * w.element_size() % 16 == 0:
        x2 = x.reshape(-1, w.shape[1])
        x2 = x2 if tma_rows(x2) else x2.clone(memory_format=torch.contiguous_format)
        return geglu_gemm(x2, w, geglu.proj.bias).view(*x.shape[:-1], -1)
    h = geglu.proj(x)
    if not use_kernels(h):
        a, gate = h.chunk(2, dim=-1)
        return a * F.gelu(gate)
    rows, n = h[..., 0].numel(), h.shape[-1] // 2
    out = h.new_empty(*h.shape[:-1], n)
    geglu_kernel[(rows, triton.cdiv(n, 1024))](h.contiguous(), out, n, BLOCK=1024)
    return out


LAYER_NORM_VALUES, LAYER_NORM_WARPS = 4096, 4  # layer_norm_kernel: values a program holds at once, warps


def layer_norm(x, norm, shift):
    """LayerNorm `norm` of x + shift, x (..., c) contiguous, shift (c,) float32: one pass over x (Triton) where the
    kernels run."""
    if not use_kernels(x):
        return F.layer_norm((x + shift).to(x.dtype), norm.normalized_shape, norm.weight, norm.bias, norm.eps)
    rows, c = x[..., 0].numel(), x.shape[-1]
    y = torch.empty_like(x)
    block = triton.next_power_of_2(c)
    per = max(1, LAYER_NORM_VALUES // block)  # rows a program
    layer_norm_kernel[(triton.cdiv(rows, per),)](x, norm.weight, norm.bias, shift, y, rows, c, norm.eps, ROWS=per,
                                                 BLOCK=block, num_warps=LAYER_NORM_WARPS)
    return y


def residual_linear(x, h, linear):  # x += h @ W^T in place (W: linear's weight, its bias left out): one GEMM
    rows = x.flatten(0, -2)  # out=rows, as addmm_ does it, but torch.utils.flop_counter counts this one
    torch.addmm(rows, h.flatten(0, -2), linear.weight.t(), out=rows)


def transformer_blocks_forward(blocks, x, context=None, copies=1):
    """A transformer's model.TransformerBlocks on x (n, l, c), x overwritten -> (x', shift) with x' + shift (c,)
    float32 their output. Each residual sum is made by the GEMM of the layer it adds (torch.addmm onto x in place,
    no pass of its own) and that layer's bias is left out of it, summed into shift instead: the LayerNorm that reads x
    next adds shift in the pass it makes anyway, and the transformer folds it into proj_out's bias (proj_out(x' +
    shift) = proj_out(x') + W shift), so no pass writes x plus a bias. copies > 1: x is one of `copies` equal videos
    (guidance's pair: pair_forms), the first self-attention runs on it once, its output is copied for the text."""
    x, shift = x.contiguous(), x.new_zeros(x.shape[-1], dtype=torch.float32)  # the GEMMs add onto x's rows in place
    for block in blocks:
        out1, out2 = (getattr(a, "attn", a).to_out[0] for a in (block.attn1, block.attn2))  # ClipAttention wraps one
        ff, ff_out = block.ff, block.ff.net[2]
        residual_linear(x, block.attn1.attend(layer_norm(x, block.norm1, shift)), out1)
        shift = shift + out1.bias
        if copies > 1:  # the text comes next: from here on, each copy its own
            x, copies = torch.cat([x] * copies), 1
        residual_linear(x, block.attn2.attend(layer_norm(x, block.norm2, shift), context), out2)
        shift = shift + out2.bias
        y = layer_norm(x, block.norm3, shift)
        rows = max(1, ff.chunk_bytes // (y[:1].numel() * 8 * y.element_size()))  # as model.FeedForward: a bound on
        for i in range(0, len(y), rows):  # GEGLU's activations (8x the width)
            residual_linear(x[i:i + rows], ff.net[0](y[i:i + rows]), ff_out)
        shift = shift + ff_out.bias
    return x, shift


def proj_out_bias(proj_out, weight, shift):  # proj_out's bias with W shift folded in (float32 or wider): see above
    f32 = torch.promote_types(weight.dtype, torch.float32)
    return proj_out.bias.to(f32) + F.linear(shift.to(f32), weight.to(f32))


def residual_block(x, norm1, conv1, norm2, conv2, shortcut=None, pre=None, channels_last=False):
    """shortcut(x) + conv2(silu(norm2(conv1(silu(norm1(x))) + pre))), channels-last inside (pre: a constant per frame
    and channel, the UNet's time embedding, or None), written channels-last or channels-first. Each conv's bias is
    folded into the pass after it: conv1's (with pre) into the next GroupNorm, conv2's and the 1x1 shortcut's into
    the residual add; the shortcut runs as a GEMM in x's own layout."""
    f32 = torch.promote_types(x.dtype, torch.float32)
    h = F.conv2d(frame_pass(x, norm1, silu=True), conv1.weight, None, padding=1)  # channels-last from here
    pre = conv1.bias.to(f32).expand(len(x), -1) if pre is None else pre.to(f32) + conv1.bias.to(f32)
    h = F.conv2d(frame_pass(h, norm2, pre, silu=True), conv2.weight, None, padding=1)
    skip, bias = x, conv2.bias.to(f32)
    if shortcut is not None:
        w = shortcut.weight[:, :, 0, 0]  # (c_out, c)
        if x.is_contiguous():  # (c_out, c) @ (c, h w) per frame: channels-first, no copies
            skip = torch.bmm(w.expand(len(x), -1, -1), x.flatten(2)).view(len(x), -1, *x.shape[2:])
        else:  # channels-last: (h w, c) @ (c, c_out) per frame
            skip = F.linear(x.permute(0, 2, 3, 1), w).permute(0, 3, 1, 2)
        bias = bias + shortcut.bias.to(f32)
    return frame_pass(h, residual=skip, bias=bias, channels_last=channels_last)


def resblock_frame_layers(block, x, emb):
    """model.ResBlock.frame_layers: x ((b t), c, h, w) channels-first -> channels-first (the temporal layers read
    frames-major memory), channels-last inside."""
    skip = block.skip_connection if isinstance(block.skip_connection, nn.Conv2d) else None
    return residual_block(x, block.in_layers[0], block.in_layers[2], block.out_layers[0], block.out_layers[3], skip,
                          pre=block.emb_layers(emb))


def vae_resnet_forward(block, x):
    """model.ResnetBlock.forward (the VAE decoder's): x (n, c, H, W) in any layout -> channels-last."""
    return residual_block(x, block.norm1, block.conv1, block.norm2, block.conv2, getattr(block, "nin_shortcut", None),
                          channels_last=True)


def spatial_transformer_forward(st, x, context, copies=1):
    """model.SpatialTransformer.forward, the GroupNorm writing its tokens ((b t), (h w), c) directly (channels-last
    frames, so proj_in reads a view), the blocks as transformer_blocks_forward, proj_out's bias (and the blocks'
    biases) folded into the residual add: x ((b t), c, h, w) channels-first -> channels-first. copies > 1: x is one
    video of `copies` equal ones (guidance's pair), its output all of them (text-free up to the first
    cross-attention, which runs on the copies)."""
    bt, c, h, w = x.shape
    tokens = frame_pass(x, st.norm)  # channels-last: memory ((b t), h, w, c)
    y, shift = transformer_blocks_forward(st.transformer_blocks, st.proj_in(tokens.permute(0, 2, 3, 1).reshape(
        bt, h * w, c)), context, copies)
    bias = proj_out_bias(st.proj_out, st.proj_out.weight, shift)
    y = F.linear(y, st.proj_out.weight).view(bt * copies, h, w, c).permute(0, 3, 1, 2)  # channels-last frames
    return frame_pass(y, residual=torch.cat([x] * copies) if copies > 1 else x, bias=bias, channels_last=False)


def upsample_conv(conv, x):
    """conv(nearest 2x upsampling of x), conv a 3x3 Conv2d with padding 1 (model.Upsample, the VAE's Resample up),
    without the upsampled frames: output pixel (2i + a, 2j + b) reads x's rows i - 1 + a, i + a and columns
    j - 1 + b, j + b only, the 3x3 taps that fall on one pixel of x summed (phase 0 of a row: taps (0 | 1 + 2), phase
    1: (0 + 1 | 2)). So one conv of x with 2x2 kernels, 4 sets of filters (one per phase (a, b); 16 of the 36 products
    a pixel), then each phase's pixels put in place with the bias: x (n, c, h, w), any layout -> (n, c_out, 2h, 2w),
    in x's layout."""
    weight = conv.weight

    def fold(w, dim):  # 3 taps along dim -> 2 per phase, phases stacked first (device ops only: CUDA graphs record it)
        t0, t1, t2 = w.unbind(dim)
        return torch.stack([torch.stack([t0, t1 + t2], dim), torch.stack([t0 + t1, t2], dim)])
    w32 = weight.to(torch.promote_types(weight.dtype, torch.float32))  # (c_out, c, 3, 3)
    kernel = fold(fold(w32, 2), 4).transpose(0, 1).flatten(0, 2).to(weight.dtype)  # (a, b, c_out) -> 4 c_out
    n, c, h, w = x.shape
    r = F.conv2d(x, kernel, padding=1)  # (n, 4 c_out, h + 1, w + 1): phase (a, b)'s pixel (i, j) at (i + a, j + b)
    out = torch.empty(n, len(weight), 2 * h, 2 * w, dtype=r.dtype, device=r.device, memory_format=(
        torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous() else
        torch.contiguous_format))
    sn, sc, sh, sw = r.stride()
    phases = r.as_strided((n, len(weight), h, 2, w, 2), (sn, sc, sh, 2 * len(weight) * sc + sh, sw,
                                                        len(weight) * sc + sw))  # (n, c_out, i, a, j, b)
    torch.add(phases, conv.bias.view(-1, 1, 1, 1, 1), out=out.view(n, -1, h, 2, w, 2))
    return out


def upsample_forward(up, x):  # model.Upsample.forward, or the VAE's model.Resample's (up)
    return upsample_conv(up.conv, x)


def eager_frame_layers(unet):
    """Swap the per-frame layers for their eager fast forms (the ResBlocks' per-frame part, the SpatialTransformers
    with their TransformerBlocks, the Upsamples and every GEGLU); returns the undo list. accelerate does so where
    their Triton kernels run (a model on a GPU, with Triton): elsewhere the forms' PyTorch arithmetic, more passes
    than the plain layers' native kernels, is slower."""
    forms = {model.ResBlock: ("frame_layers", resblock_frame_layers),
             model.SpatialTransformer: ("forward", spatial_transformer_forward),
             model.Upsample: ("forward", upsample_forward),
             model.GEGLU: ("forward", geglu_forward)}
    return [swap(m, forms[type(m)][0], functools.partial(forms[type(m)][1], m)) for m in list(unet.modules())
            if type(m) in forms]


# -----------------------------------------------------------------------------
# Triton compiles each variant of a kernel (specialised to its constants and to which of its sizes, strides and
# pointers divide by 16) at its first launch, one after another: 42 variants in sample.py's first step at 1150 frames,
# and (Triton 3.6) a launcher per kernel signature built by the C compiler, 10 of them. A compile spends most of its
# time outside the GIL (MLIR's passes, ptxas, the C compiler), so threads build them side by side (run 49: forked
# processes were no faster).

TRITON_KERNELS = ("channel_moments_kernel", "moments_combine_kernel", "frame_pass_kernel", "geglu_gemm_kernel",
                  "geglu_kernel", "layer_norm_kernel", "dual_scope_kernel")


def variant(args, kwargs, plain=()):  # what Triton specialises a launch on: equal keys, one compiled variant
    def of(i, a):
        if isinstance(a, torch.Tensor):
            return a.dtype, a.data_ptr() % 16 == 0
        if hasattr(a, "block_shape"):  # a TMA descriptor: its dtype and tile
            return a.base.dtype, tuple(a.block_shape)
        if isinstance(a, int) and not isinstance(a, bool):  # its width; and unless it is `plain` (the kernel's
            return (-2 ** 31 <= a < 2 ** 31,) + (() if i in plain else (a == 1, a % 16 == 0))  # do_not_specialize)
        return "float" if isinstance(a, float) else a
    return tuple(of(i, a) for i, a in enumerate(args)), tuple(sorted(kwargs.items()))


class CompileOnly:
    """Stands in for a Triton kernel: kernel[grid](*args) submits to `pool`, once per variant (`jobs`), the kernel's
    launch over an empty grid: it compiles the variant, builds its launcher and loads it, and runs nothing."""

    def __init__(self, kernel, jobs, pool):
        self.kernel, self.jobs, self.pool = kernel, jobs, pool
        self.plain = {p.num for p in getattr(kernel, "params", ()) if p.do_not_specialize}  # its do_not_specialize

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            key = (self.kernel, variant(args, kwargs, self.plain))
            if key not in self.jobs:
                self.jobs[key] = self.pool.submit(self.kernel[(0,)], *args, **kwargs)
        return launch


def compile_kernels(unet, latent, clip_frames, fps, vae=None, decode_batch=1, threads=None):
    """Compile, side by side, the Triton kernel variants that `unet`'s forwards (fast forms swapped in) will launch
    on clips of `clip_frames` frames of `latent` (c, h, w), before the first of them: one stand-in forward of one rank
    alone, batch 2 (cond and uncond), every launch compiling instead of running, its output dropped. Its clip has
    48 + n % 16 frames (n itself up to 64): the sizes Triton specialises on divide by 16 as at n, and the attention's
    query tile is as wide. With `vae` (its decoder's fast forms swapped in), the decoder's too: a stand-in decode per
    batch size the clip is decoded in (decode_batch frames, and the rest), each of b frames if b <= 16, else of
    16 + b % 16. A variant it misses (the halos of a rank with neighbours, say) compiles at its first launch, as
    without it. A no-op where the kernels do not run (a CPU; Triton's interpreter compiles nothing)."""
    weight = next(unet.parameters())
    if INTERPRET or not use_kernels(weight):
        return
    n = clip_frames if clip_frames <= 64 else 48 + clip_frames % 16
    x = weight.new_zeros(1, latent[0], n, *latent[1:]).expand(2, -1, -1, -1, -1)  # a guidance pair, as sample.py's
    timesteps, context = torch.full((1,), 999, device=x.device).expand(2), weight.new_zeros(2, 77, unet.context_dim)
    # the workers compile for their current device: this model's (a rank's GPU under torchrun), not GPU 0
    on_device = lambda: x.is_cuda and torch.cuda.set_device(x.device)  # noqa: E731
    pool = ThreadPoolExecutor(threads or os.cpu_count(), initializer=on_device)
    module, jobs = sys.modules[__name__], {}
    undo = [swap(module, name, CompileOnly(getattr(module, name), jobs, pool)) for name in TRITON_KERNELS]
    try:
        with torch.no_grad():
            clip_forward(unet, EmulatedComm(EmulatedGroup(1), 0), n, x, timesteps, context, fps)
            if vae is not None:  # the decoder's batch sizes: decode_batch frames, and the rest
                dtype = next(vae.parameters()).dtype
                for b in {min(decode_batch, clip_frames), clip_frames % decode_batch} - {0}:
                    vae.decode(x.new_zeros(min(b, 16 + b % 16), vae.post_quant_conv.in_channels, *latent[1:],
                                           dtype=dtype))
    finally:
        for u in undo:
            u()
        pool.shutdown()  # waits for the compiles
    failed = [job.exception() for job in jobs.values() if job.exception() is not None]
    if failed:  # those variants compile at their first launch instead
        warnings.warn(f"{len(failed)} of {len(jobs)} Triton kernel variants did not compile ahead: {failed[0]!r}")


# -----------------------------------------------------------------------------
# classifier-free guidance's pair: one video, two texts
#
# Sampling evaluates the UNet on one latent video twice, with the text and without (sample.py's eps_fn: batch 2).
# Until the first layer that reads the text (the first SpatialTransformer's cross-attention), both batch elements
# compute the same numbers: conv_in, init_attn (a TemporalTransformer: self-attention over frames), the first
# ResBlock and, in the kernels' form, the first SpatialTransformer up to its first self-attention's output: ~7 % of
# a forward's FLOPs (n = 16), all at the widest level. pair_forms runs them once.


def guidance_pair(x, timesteps, fps):
    """Whether a UNet batch is one video and one timestep twice, as sample.py passes them: views with stride 0 over
    the batch (x.expand(2, ...)), so telling needs no look at the values (nor a host sync, nor a CUDA graph break)."""
    return (len(x) == 2 and x.stride(0) == 0 and timesteps.stride(0) == 0
            and (isinstance(fps, int) or fps.dim() == 0 or fps.stride(0) == 0))


PAIR = threading.local()  # PAIR.on: this rank's forward is on a pair (per thread: emulated ranks share one model)


def pair_forward(forward, x, timesteps, context, fps):  # model.UNet.forward (`forward`), PAIR.on set for its length
    PAIR.on = guidance_pair(x, timesteps, fps)
    try:
        return forward(x, timesteps, context, fps)
    finally:
        PAIR.on = False


def on_pair(block, form, forward, h, emb, context, b):  # a model.Block: form(block, ...) on a pair, else `forward`
    return form(block, h, emb, context, b) if getattr(PAIR, "on", False) else forward(h, emb, context, b)


def once(block, h, emb, context, b, layers=None):  # a model.Block's first `layers` on one video of h: (t, ...)
    t = len(emb) // b
    return model.Block.forward(block[:layers], h[:t], emb[:t], context[:t], 1)


def init_attn_once(block, h, emb, context, b):  # on one video; its output (the first skip) copied to both
    return torch.cat([once(block, h, emb, context, b)] * b)


def resblock_once(block, h, emb, context, b):
    """The second block: its ResBlock on one video; then, where its SpatialTransformer is the kernels' form, that
    transformer up to its first self-attention's output on the one video too; the rest on both."""
    h, st = once(block, h, emb, context, b, 1), block[1]
    if getattr(st.forward, "func", None) is spatial_transformer_forward:
        return model.Block.forward(block[2:], spatial_transformer_forward(st, h, context, copies=b), emb, context, b)
    return model.Block.forward(block[1:], torch.cat([h] * b), emb, context, b)


def pair_forms(unet):  # swap the pair forms into a model.UNet; returns the undo list
    undo = [swap(unet, "forward", functools.partial(pair_forward, unet.forward))]
    # conv_in's output stays one video (b = 1) to the end of init_attn
    for block, form in ((unet.input_blocks[0], once), (unet.init_attn, init_attn_once),
                        (unet.input_blocks[1], resblock_once)):
        undo.append(swap(block, "forward", functools.partial(on_pair, block, form, block.forward)))
    return undo


# -----------------------------------------------------------------------------
# applying it


def compile_frame_layers(unet, backend, any_length=True):
    """torch.compile the layers that see one frame (or token) at a time; returns the undo list. They hold no
    communication, so they compile to whole graphs: Inductor fuses GroupNorm + SiLU, the embedding add, LayerNorms,
    GEGLU's gelu * x and the residual adds (separate memory-bound kernels in eager mode), and every 2D conv reads and
    writes channels-last memory (with COMPILER_SETTINGS, which accelerate holds while they compile)."""
    def compile_frames(dims):  # dims: the frames dimension of each argument, symbolic if any_length
        return functools.partial(compile_any_length, backend=backend, dims=dims if any_length else None)
    frames, tokens = compile_frames((0, 0)), compile_frames((1,))  # ((b t), ...) inputs; ((b h w), t, c) tokens
    undo = []
    for m in unet.modules():
        if isinstance(m, model.ResBlock):
            undo.append(swap(m, "frame_layers", frames(m.frame_layers)))
        elif isinstance(m, (model.SpatialTransformer, model.Downsample, model.Upsample)):
            undo.append(swap(m, "forward", frames(m.forward)))
        elif isinstance(m, model.TemporalTransformer):
            for block in m.transformer_blocks:
                undo += [swap(layer, "forward", tokens(layer.forward))
                         for layer in (block.ff.net, block.norm1, block.norm2, block.norm3)]
    for layer in (unet.input_blocks[0][0], unet.out):  # the first conv, and the last GroupNorm, SiLU and conv
        undo.append(swap(layer, "forward", frames(layer.forward)))
    return undo


# the compiler's settings while accelerate(compile=True) holds, restored on exit
COMPILER_SETTINGS = (
    # one graph per (layer shape, dtype), not per module; the compiled attention has one per (shape, clip start), ~5
    # per clip length and rank: past the limit dynamo would quietly run eagerly
    (torch._dynamo.config, dict(cache_size_limit=256, accumulated_cache_size_limit=512)),
    (torch._inductor.config, {
        # Inductor's heuristic left the per-frame graphs' convs NCHW (torch 2.11, H200): cuDNN's NHWC kernels then
        # transposed every conv's input, weight and output; forced, the GroupNorm + SiLU before a conv writes
        # channels-last instead
        "force_layout_optimization": True,
        # Inductor autotunes each pointwise kernel by compiling it once per candidate launch config and timing them
        # all: at 1150 frames on an H200 that was 115 of the first step's 284 s with an empty cache (mostly Triton's
        # compiler); its heuristic's one config per kernel gave the same 5.04 s per step (docs/BENCH.md run 30)
        "triton.autotune_pointwise": False}),
)


@contextmanager
def accelerate(unet, compile=False, backend="inductor", any_length=True):
    """Swap the plain clip-parallel forms in `unet` (inside clip_parallel.parallel_temporal_layers) for the fast ones,
    with compile=True compiled, the per-frame layers too (without compile, on a GPU with Triton: their eager fast
    forms); restore everything on exit. any_length=False: the compiled graphs are specialised to the first clip length
    they see (for a process that runs one, as sample.py)."""
    ops = compiled(backend, any_length) if compile else KERNELS if use_kernels(next(unet.parameters())) else EAGER
    undo = compile_frame_layers(unet, backend, any_length) if compile else []
    for m in list(unet.modules()):
        if isinstance(m, model.ResBlock) and isinstance(getattr(m.temopral_conv, "conv1", None), ClipTemporalConv):
            undo.append(swap(m, "temopral_conv", FastTemporalConvBlock(m.temopral_conv, ops)))
        elif isinstance(m, model.TemporalTransformer) and isinstance(m.norm, ClipGroupNorm):
            undo.append(swap(m, "norm", FastGroupNorm(m.norm.norm, ops)))
            if ops is not EAGER:  # compiled or on kernels, project_out is one pass (eagerly, model's forward's sum)
                undo.append(swap(m, "forward", functools.partial(temporal_transformer_forward, m, ops)))
        elif isinstance(m, ClipAttention):
            undo.append(swap(m, "attention", ops.attention))
    if ops is KERNELS:  # the per-frame layers on the kernels too (compiled, Inductor fuses them itself)
        undo += eager_frame_layers(unet)
    if isinstance(unet, model.UNet):  # (tests accelerate single layers too)
        undo += pair_forms(unet)
    try:
        with ExitStack() as settings:
            for config, values in COMPILER_SETTINGS if compile else ():
                settings.enter_context(config.patch(values))
            yield unet
    finally:
        for u in reversed(undo):
            u()


def decoder_forms(vae):
    """Swap the VAE decoder's layers for channels-last forms from its first ResnetBlock on (cuDNN's NHWC convs without
    transposes): its ResnetBlocks as vae_resnet_forward, its other GroupNorms (the mid block's attention, norm_out) as
    frame_pass, which keeps the layout (F.group_norm on CUDA copies a channels-last input to NCHW), its upsamplings
    as upsample_conv (4/9 of the products); returns the undo list."""
    undo = []
    for m in vae.decoder.modules():
        if isinstance(m, model.ResnetBlock):
            undo.append(swap(m, "forward", functools.partial(vae_resnet_forward, m)))
        elif isinstance(m, model.AttnBlock):
            undo.append(swap(m.norm, "forward", functools.partial(frame_pass, norm=m.norm)))
        elif isinstance(m, model.Resample) and m.up:
            undo.append(swap(m, "forward", functools.partial(upsample_forward, m)))
    undo.append(swap(vae.decoder.norm_out, "forward", functools.partial(frame_pass, norm=vae.decoder.norm_out)))
    return undo


@contextmanager
def accelerate_decoder(vae):
    """decoder_forms while the block runs, where their Triton kernels run (a model on a GPU, with Triton; elsewhere
    their PyTorch arithmetic is slower than the plain layers); restored on exit."""
    undo = decoder_forms(vae) if use_kernels(next(vae.parameters())) else []
    try:
        yield vae
    finally:
        for u in reversed(undo):
            u()


@contextmanager
def compile_cache(path):
    """Inductor's compiled graphs and kernels (torch.compiler's portable cache artifacts) loaded from the file `path`
    before the block, if it exists, and all of them saved to it after the block, if it succeeds: a machine that never
    compiled these graphs loads them instead of generating them (same torch, same GPU kind; otherwise they are
    compiled again; a corrupt file loads as nothing, with torch's warning). Dynamo still traces every graph: at 1150
    frames on an H200 the first step's one-off cost is then ~27 s, ~4 s more than on a warm machine (docs/BENCH.md
    run 35).
    None: no file. Under torchrun each rank has its own file, path.rank<r> (their attention graphs differ)."""
    if path is not None and torch.distributed.is_initialized():
        path = f"{path}.rank{torch.distributed.get_rank()}"
    if path is not None and os.path.exists(path):
        with open(path, "rb") as f:
            torch.compiler.load_cache_artifacts(f.read())
    yield
    if path is None:
        return
    from sample import write_atomically  # a Ctrl-C never leaves half a file
    try:  # only a speed-up: a run whose cache cannot be saved still ends well
        artifacts = torch.compiler.save_cache_artifacts()  # None: nothing was compiled
        if artifacts is not None:
            write_atomically(path, lambda tmp: pathlib.Path(tmp).write_bytes(artifacts[0]))
    except Exception as e:
        warnings.warn(f"compiled kernels not saved to {path!r} ({type(e).__name__}: {e}): the next run compiles them "
                      "again")


def compile_stats():
    """Where this process's compilation went so far, by Dynamo's and Inductor's own clocks: graphs compiled and seconds
    per phase (entire_frame_compile: all of it; inductor_compile and code_gen: Inductor's work on the graphs;
    async_compile.wait: waiting for Triton's compiler; CachingAutotuner.benchmark_all_configs: timing kernel variants
    on the GPU). bench.py reports it with --compile, so a first step's one-off cost can be taken apart."""
    from torch._dynamo import utils
    return dict(graphs=utils.counters["stats"]["unique_graphs"],
                seconds={name: round(s, 2) for name, s in utils.calculate_time_spent().items()})


class GraphedClipForward:
    """clip_forward recorded once as a CUDA graph, then replayed: one launch for the whole forward instead of
    thousands of small kernels, each launched from Python (at 24 frames per GPU the forward waits on the CPU).

    For fixed shapes: one clip x (b, c, n, h, w), one context, the batch sharing one timestep (sampling, and CFG's
    cond/uncond pair). Calls copy their inputs into the graph's buffers and return the graph's output buffer, which
    the next call overwrites. The communication is recorded too, so it must be capturable: NCCL (torchrun; measured
    with one rank; several ranks record the point-to-point halo exchanges, which no machine lent to us could test), or
    one emulated rank (no communication); not emulated ranks, which are threads meeting at a host barrier. The traffic
    counters count the recorded forward only.
    """

    def __init__(self, unet, comm, frames, x, timestep, context, fps, warmup=2):
        if warmup < 1:  # the warm-up fills the mask and index caches: filled while recording, they would hold garbage
            raise ValueError(f"warmup must be >= 1, got {warmup}")
        if x.device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, x is on {x.device}")
        if isinstance(comm, EmulatedComm) and comm.world_size > 1:
            raise ValueError("CUDA graphs cannot record emulated ranks (threads that wait on each other on the host)")
        self.x, self.context = x.clone(), context.clone()
        self.t = torch.full((len(x),), timestep, device=x.device)
        # warm up off the default stream (as recording needs): compilation, cuDNN autotuning, cached masks and indices
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                clip_forward(unet, comm, frames, self.x, self.t, self.context, fps)
        torch.cuda.current_stream().wait_stream(side)
        enter_clip(comm, frames, self.x, self.t)  # host-side state and its one sync, outside the recording
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = unet(self.x, self.t, self.context, fps)

    def __call__(self, x, timestep, context=None):
        for name, given, recorded in (("x", x, self.x), ("context", context, self.context)):
            if given is not None and given.shape != recorded.shape:  # copy_ would broadcast into a wrong result
                raise ValueError(f"{name} has shape {tuple(given.shape)}, the graph was recorded for "
                                 f"{tuple(recorded.shape)}")
        self.x.copy_(x)
        self.t.fill_(timestep)
        if context is not None:
            self.context.copy_(context)
        self.graph.replay()
        return self.out
