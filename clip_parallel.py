"""Clip parallelism: the video latent is split along time into clips, one per rank (DESIGN.md section 3).

Spatial layers see one frame at a time, so they run on the local clip untouched. Only three kinds of temporal
layer need context from other clips, and `parallel_temporal_layers` swaps exactly those in an unmodified
model.UNet (as gpt-fast's tp.py does for tensor parallelism):

  TemporalTransformer's GroupNorm -> ClipGroupNorm:    statistics of the whole video (stage 3: all-gather)
  TemporalConvBlock's four convs  -> ClipTemporalConv: GroupNorm with those statistics (stage 3), SiLU, Conv3d
    (GroupNorm, SiLU, Conv3d)                          (3,1,1) with one real neighbour frame per side (stages 1, 2);
                                                       chained by ClipTemporalConvBlock, each conv's bias added
                                                       where its output is read next (no fill of the output)
  temporal attention              -> ClipAttention:    dual-scope attention with w halo frames per side (stages 1, 2)
                                                       and the global frames of the whole video (stage 3)

The three communication stages, by name:
  stage1: pairs (0,1), (2,3), ... swap boundary frames;
  stage2: pairs (1,2), (3,4), ... swap boundary frames;
  stage3: every rank receives the global frames / GroupNorm partials of every other rank.
Pairing even/odd then odd/even keeps every link busy and never waits on a chain of ranks (the paper's scheme).
Each transfer is started, then waited for where its result is first read: the GEMMs that need no other clip (a
temporal conv's other frames, an attention's queries) run meanwhile. (A GroupNorm's statistics are read at once.)
With these, the clip-parallel output equals the single-device output for any number of ranks.

Between two stages, the arithmetic of ClipGroupNorm and ClipTemporalConv, and ClipAttention's attention over the
gathered keys, are plain functions of tensors (FUSED): eager by default, torch.compile'd by compile_layers (GPUs).
"""
import datetime
import functools
import logging
import os
import threading
from contextlib import contextmanager

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import model
from dual_scope import clip_attention, split_frames

log = logging.getLogger("clip_parallel")
STAGES = ("stage1", "stage2", "stage3")


class Comm:
    """One rank's view of the group. Backends provide `exchange` (one pair swap) and `all_gather`, which start the
    transfer and return wait() -> its result: what the caller computes before calling wait() overlaps it (on GPUs NCCL
    runs on its own stream, in the order the transfers were started, the same on every rank)."""

    def __init__(self, rank, world_size):
        self.rank, self.world_size = rank, world_size
        self.reset_traffic()

    def reset_traffic(self):
        self.traffic = {s: [0, 0] for s in STAGES}  # stage -> [messages sent, bytes sent] by this rank

    def count(self, stage, tensor, messages=1):
        self.traffic[stage][0] += messages
        self.traffic[stage][1] += messages * tensor.numel() * tensor.element_size()

    def halo(self, x, width, dim):
        """Stages 1 and 2, started: `width` boundary frames from each neighbour. Returns wait() -> (left, right), None
        at the video's ends."""
        got = {}
        for stage, offset in (("stage1", 0), ("stage2", 1)):
            # in stage 1 even ranks look right, odd ranks left; stage 2 the other way round
            side = "right" if (self.rank - offset) % 2 == 0 else "left"
            partner = self.rank + 1 if side == "right" else self.rank - 1
            if not 0 <= partner < self.world_size:
                partner = None  # a video end: nothing to send (no copy), but every rank takes part in every stage
            n = x.shape[dim]
            send = x.narrow(dim, n - width, width) if side == "right" else x.narrow(dim, 0, width)
            got[side] = self.exchange(stage, partner, None if partner is None else send.contiguous())
        return lambda: (got["left"](), got["right"]())

    def exchange(self, stage, partner, tensor):  # -> wait() -> the partner's tensor (same shape); None: no partner
        raise NotImplementedError

    def all_gather(self, stage, tensor):  # -> wait() -> list of every rank's tensor (same shapes)
        raise NotImplementedError


class DistComm(Comm):
    """Real ranks: torch.distributed (NCCL on GPUs, gloo on CPU), launched by torchrun."""

    def __init__(self):
        super().__init__(dist.get_rank(), dist.get_world_size())

    def exchange(self, stage, partner, tensor):
        if partner is None:
            return lambda: None
        recv = torch.empty_like(tensor)
        ops = [dist.P2POp(dist.isend, tensor, partner), dist.P2POp(dist.irecv, recv, partner)]
        reqs = dist.batch_isend_irecv(ops)
        self.count(stage, tensor)

        def wait(sent=tensor):  # holds the send buffer until the transfer is done
            for req in reqs:
                req.wait()
            return recv
        return wait

    def all_gather(self, stage, tensor):
        tensor = tensor.contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        work = dist.all_gather(out, tensor, async_op=True)
        self.count(stage, tensor, self.world_size - 1)

        def wait(sent=tensor):  # holds the send buffer until the transfer is done
            work.wait()
            return out
        return wait


def init_distributed(timeout_s=300):
    """Join the torchrun group: NCCL with one GPU per rank where there are GPUs, else gloo. Returns the device.

    The timeout bounds how long a rank waits for a peer that died, so no rank is left hanging.
    """
    # torch.distributed.nn binds group.WORLD as a default argument when first imported, and torch.compile imports it.
    # Imported after init_process_group it keeps the group alive past destroy_process_group; gloo's worker threads
    # then live into interpreter shutdown, where freeing a tensor's Python object aborts the process (SIGABRT at exit,
    # now and then). Imported first, those defaults are None.
    import torch.distributed.nn  # noqa: F401
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if local_rank >= gpus:
            raise SystemExit(f"error: rank {local_rank} has no GPU: this node has {gpus}; "
                             f"use torchrun --nproc_per_node {gpus} or fewer")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=timeout_s), device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return device


class EmulatedGroup:
    """N emulated ranks in one process: one thread per rank, tensors passed through a shared mailbox.

    Threads (not lock-step) so that each rank runs exactly the per-rank code a real rank runs, top to bottom;
    a barrier after each post and each read keeps the mailbox consistent. A failing rank aborts the barrier,
    so the others raise instead of waiting forever.
    """

    def __init__(self, world_size, timeout=600.0):
        self.world_size, self.mailbox = world_size, {}
        self.barrier = threading.Barrier(world_size, timeout=timeout)


class EmulatedComm(Comm):
    """A rank of an EmulatedGroup. The receiver gets the sender's tensor itself, not a copy as real ranks do: the
    same results because no layer writes into a tensor it sent or received."""

    def __init__(self, group, rank):
        super().__init__(rank, group.world_size)
        self.group = group

    def exchange(self, stage, partner, tensor):
        g = self.group
        if partner is not None:
            g.mailbox[(stage, self.rank, partner)] = tensor
            self.count(stage, tensor)
        g.barrier.wait()  # every rank takes part in every stage, partnered or not
        recv = None if partner is None else g.mailbox.pop((stage, partner, self.rank))
        g.barrier.wait()
        return lambda: recv  # done already: threads meet at the barrier

    def all_gather(self, stage, tensor):
        g = self.group
        g.mailbox[(stage, self.rank)] = tensor
        self.count(stage, tensor, self.world_size - 1)
        g.barrier.wait()
        out = [g.mailbox[(stage, r)] for r in range(self.world_size)]
        g.barrier.wait()
        return lambda: out


# -----------------------------------------------------------------------------
# What each rank knows during a forward. Thread-local, so emulated ranks can share one model in memory.

class RankState(threading.local):
    comm = None  # this rank's Comm
    clips = None  # [(start, stop)] of every rank's clip
    timesteps = None  # (b,) diffusion timesteps of the current forward, or (1,) when the batch shares one


STATE = RankState()


@functools.lru_cache(maxsize=None)
def index_tensor(indices, device):  # built once per (indices, device): no host-to-device copy in the forward
    return torch.tensor(indices, dtype=torch.long, device=device)


def gather_frames(x, dim, indices):
    """Stage 3, started: the video frames `indices` (sorted), gathered from whichever rank owns them. Returns wait() ->
    the pieces in frame order (views), for the caller to concatenate with whatever else it needs in one copy. A
    collective: every rank passes the same indices (they depend only on the scope and the video length)."""
    if not indices:  # no global frames: nothing to send, no collective
        return lambda: []
    comm, clips = STATE.comm, STATE.clips
    owned = [tuple(f - start for f in indices if start <= f < stop) for start, stop in clips]
    width = max(len(o) for o in owned)  # all_gather wants one size: pad with copies of frame 0, dropped on arrival
    mine = x.index_select(dim, index_tensor(owned[comm.rank] + (0,) * (width - len(owned[comm.rank])), x.device))
    wait = comm.all_gather("stage3", mine)
    return lambda: [p.narrow(dim, 0, len(o)) for p, o in zip(wait(), owned)]


def group_moments(x, groups, bias=None):
    """x (b, c, n, h, w) -> (3, b, groups), >= float32: count, mean and M2 (the sum of squared deviations) of each
    group of channels over this clip's frames and pixels, accumulated inside the reductions (no float32 copy of x).
    Of x + bias, with bias (c,) a per-channel bias not yet added to x (compiled, the add is part of the reductions).

    Frame by frame first, then combined over the clip (as video_group_norm combines the ranks): in frames-major
    memory each (frame, group) is one contiguous run of x, so the reductions read x in order, b n groups rows at
    once (over a whole group's frames at once they had b groups rows, 64 in sampling, of strided runs: 4x slower at
    128 frames per GPU, BENCH.md run 20)."""
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


def combine_moments(counts, means, m2s, dim):
    """The (count, mean, M2) of the union of disjoint parts, from theirs stacked along dim (Chan et al.)."""
    total = counts.sum(dim)
    mean = (counts * means).sum(dim) / total
    return total, mean, m2s.sum(dim) + (counts * (means - mean.unsqueeze(dim)).square()).sum(dim)


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


FUSED = ("group_moments", "normalize_tokens", "normalize_silu", "add_residual", "clip_attention")  # compile_layers


def video_group_norm(x, norm, bias=None):
    """GroupNorm over (group channels, ALL frames, h, w) of x (b, c, n, h, w), this rank's clip, as a float32
    (scale, shift) per (b, channel): per-rank moments all-gathered (stage 3), combined exactly (Chan et al.).
    With bias (c,): the GroupNorm of x + bias, as x * scale + shift (the bias folded into the shift)."""
    c, g = x.shape[1], norm.num_groups
    wait = STATE.comm.all_gather("stage3", group_moments(x, g, bias))
    parts = torch.stack(wait())  # (ranks, 3, b, g): nothing to overlap, the normalisation needs them next
    total, mean_all, m2 = combine_moments(*parts.unbind(1), dim=0)
    var = m2 / total  # biased, as GroupNorm
    f32 = var.dtype
    scale = torch.rsqrt(var + norm.eps).repeat_interleave(c // g, 1) * norm.weight.to(f32)  # (b, c)
    shift = norm.bias.to(f32) - mean_all.repeat_interleave(c // g, 1) * scale
    return scale, shift if bias is None else shift + bias.to(f32) * scale


class ClipGroupNorm(nn.Module):
    """The TemporalTransformer's GroupNorm on a clip: statistics of the whole video (video_group_norm).

    Returns (b, c, n, h, w) in token-major memory (b, h, w, n, c), the layout the TemporalTransformer reads next,
    so its permute to ((b h w), n, c) tokens is a view (and, compiled, the normalisation writes the tokens directly).
    """

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):  # x: (b, c, n, h, w), frames-major
        return normalize_tokens(x, *video_group_norm(x, self.norm))


class ClipTemporalConv(nn.Module):
    """One temporal conv of a TemporalConvBlock on a clip: GroupNorm with the statistics of the whole video, SiLU,
    Conv3d (3,1,1) over the clip and one real neighbour frame per side (zeros only at the video's true ends).

    In frames-major memory the input frames t-1, t, t+1 of output frame t are adjacent, so the conv of the inner
    frames is one batched GEMM per batch element: W (c_out, 3 c) @ frames [t-1, t+1] as (3 c, h w), an overlapping
    strided view (no copy), batched over t. Each end frame takes its in-clip taps the same way and adds the
    neighbour's frame through the remaining tap (W_0 @ left, W_2 @ right): no padded copy of the clip, and all the
    GEMMs but those two run while the neighbours' frames are in flight.
    The GEMMs leave out the conv's bias (with it, each would first fill its output with the broadcast bias and read it
    back: 17 ms at 128 frames per GPU, BENCH.md run 14); it is returned, for whoever reads the output next.
    """

    def __init__(self, layers):  # layers: GroupNorm, SiLU, [Dropout(0)], Conv3d, as model.temporal_conv builds them
        super().__init__()
        self.norm, self.conv = layers[0], layers[-1]

    def forward(self, x, bias=None):  # x: (b, c, n, h, w), frames-major; bias (c,): the previous conv's, not yet added
        y = normalize_silu(x, *video_group_norm(x, self.norm, bias))  # (b, n, c, h, w)
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


class ClipTemporalConvBlock(nn.Module):
    """A TemporalConvBlock on a clip: its four ClipTemporalConvs, each conv's bias added by the next one's GroupNorm
    (folded into its shift) and the last one's by the block's residual add, x + conv4(conv3(conv2(conv1(x))))."""

    def __init__(self, block):
        super().__init__()
        self.convs = nn.ModuleList(ClipTemporalConv(getattr(block, f"conv{i}")) for i in (1, 2, 3, 4))

    def forward(self, x):  # x: (b, c, n, h, w), frames-major
        h, bias = x, None
        for conv in self.convs:
            h, bias = conv(h, bias)
        return add_residual(x, h, bias)


class ClipAttention(nn.Module):
    """Dual-scope temporal self-attention on a clip: queries of the clip, keys of clip + halo + global frames."""

    def __init__(self, attn, scope, fallbacks_logged):
        super().__init__()
        self.attn, self.scope, self.fallbacks_logged = attn, scope, fallbacks_logged  # a set shared by one swap

    def forward(self, x, context=None):  # x: ((b h w), n, c), frames of this rank's clip
        assert context is None, "VC2's temporal attentions are self-attention (temporal_selfatt_only)"
        comm, clips = STATE.comm, STATE.clips
        start, stop = clips[comm.rank]
        frames = clips[-1][1]
        w = self.scope.window(frames)
        left, shortest = min(w, start), min(e - s for s, e in clips)
        if w <= shortest:
            halo = comm.halo(x, w, dim=1) if w else lambda: (None, None)  # started
        else:  # some clip is shorter than the halo: gather the whole sequence for this layer (correct, slower)
            if comm.rank == 0 and (w, shortest) not in self.fallbacks_logged:
                log.warning("local window %d exceeds the shortest clip (%d frames): gathering the whole sequence",
                            w, shortest)
                self.fallbacks_logged.add((w, shortest))
            video = torch.cat(gather_frames(x, 1, list(range(frames)))(), 1)
            halo = lambda: (video[:, start - left:start], video[:, stop:min(frames, stop + w)])  # noqa: E731
        global_frames = gather_frames(x, 1, self.scope.global_indices(frames))  # started
        a = self.attn
        q = a.split_heads(a.to_q(x))  # needs no other frame: computed while the halo and global frames are in flight
        halo_l, halo_r = halo()
        # keys/values of the frames [halo | clip | halo | global], projected at once; heads split as strided views
        keys = torch.cat([h for h in (halo_l, x, halo_r) if h is not None] + global_frames(), dim=1)
        k, v = a.split_heads(a.to_k(keys)), a.split_heads(a.to_v(keys))
        out = clip_attention(q, k, v, start, left, frames, STATE.timesteps, self.scope)  # ((b h w), heads, n, d)
        return a.to_out(out.transpose(1, 2).flatten(2))


def swap(parent, name, new):
    old = getattr(parent, name)
    setattr(parent, name, new)
    return lambda: setattr(parent, name, old)


@contextmanager
def parallel_temporal_layers(unet, scope):
    """Swap the temporal layers of a model.UNet for their clip-parallel forms; restore them on exit."""
    undo, fallbacks_logged = [], set()
    for m in list(unet.modules()):
        if isinstance(m, model.ResBlock) and m.temopral_conv is not None:  # (the key's misspelling is the original's)
            undo.append(swap(m, "temopral_conv", ClipTemporalConvBlock(m.temopral_conv)))
        elif isinstance(m, model.TemporalTransformer):
            undo.append(swap(m, "norm", ClipGroupNorm(m.norm)))
            for block in m.transformer_blocks:
                undo += [swap(block, "attn1", ClipAttention(block.attn1, scope, fallbacks_logged)),
                         swap(block, "attn2", ClipAttention(block.attn2, scope, fallbacks_logged))]
    try:
        yield unet
    finally:
        for u in reversed(undo):
            u()


def compile_layers(unet, backend="inductor"):
    """torch.compile for GPUs: the UNet's per-frame layers (model.compile_frame_layers) and, for every module of this
    file, the arithmetic between two communication stages (the FUSED functions, replaced here in the module).

    The FUSED functions compile with static shapes: one specialised kernel per layer shape (a few per UNet level),
    with no symbolic index arithmetic; they see few shapes in a run (one clip length, one dtype).
    """
    model.compile_frame_layers(unet, backend)
    # dynamo's recompile limit, above compile_frame_layers' 64: clip_attention compiles per (layer shape, clip start),
    # ~5 per clip length and rank, and past the limit dynamo would quietly run it eagerly (bench.py times several
    # lengths, and under torchrun each rank's solo run too)
    config = torch._dynamo.config
    config.cache_size_limit = max(config.cache_size_limit, 256)
    config.accumulated_cache_size_limit = max(config.accumulated_cache_size_limit, 512)
    for name in FUSED:
        fn = globals()[name]
        globals()[name] = torch.compile(getattr(fn, "_torchdynamo_orig_callable", fn), backend=backend, dynamic=False)
    return unet


def enter_clip(comm, frames, x, timesteps):
    """Set STATE for one rank's forward on its clip x (b, c, n, h, w) of a `frames`-long video."""
    STATE.comm, STATE.clips = comm, split_frames(frames, comm.world_size)
    start, stop = STATE.clips[comm.rank]
    if x.shape[2] != stop - start:
        raise ValueError(f"rank {comm.rank} holds frames [{start}, {stop}) of {frames}: x has {x.shape[2]} frames, "
                         f"expected {stop - start} (dual_scope.split_frames)")
    # sampling shares one timestep over the batch (cond and uncond): then one attention mask serves every batch
    # element as a broadcast view, not a copy per element (one host sync per forward to find out)
    t = timesteps.reshape(-1)
    STATE.timesteps = t[:1] if bool((t == t[0]).all()) else t
    comm.reset_traffic()


def clip_forward(unet, comm, frames, x, timesteps, context, fps):
    """One rank's UNet forward on its clip x (b, c, n, h, w) of a `frames`-long video, inside parallel_temporal_layers."""
    enter_clip(comm, frames, x, timesteps)
    return unet(x, timesteps, context, fps)


class GraphedClipForward:
    """clip_forward recorded once as a CUDA graph, then replayed: one launch for the whole forward instead of
    thousands of small kernels, each launched from Python (at 24 frames per GPU the forward waits on the CPU).

    For fixed shapes: one clip x (b, c, n, h, w), one context, the batch sharing one timestep (sampling, and CFG's
    cond/uncond pair). Calls copy their inputs into the graph's buffers and return the graph's output buffer, which
    the next call overwrites. The communication is recorded too, so it must be capturable: NCCL (torchrun; measured
    with one rank, BENCH.md run 8; several ranks record the point-to-point halo exchanges, which no machine lent to us
    could test), or one emulated rank (no communication); not emulated ranks, which are threads meeting at a host
    barrier. The traffic counters count the recorded forward only.
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


def run_ranks(ranks, fn):
    """Run fn(comm) -> result on `ranks` emulated ranks (threads); results in rank order. Errors propagate."""
    group, results, errors = EmulatedGroup(ranks), [None] * ranks, []
    done = [threading.Event() for _ in range(ranks)]
    grad = torch.is_grad_enabled()  # grad mode is per thread: the ranks inherit the caller's (autocast is not)

    def worker(rank):
        try:
            with torch.set_grad_enabled(grad):
                results[rank] = fn(EmulatedComm(group, rank))
        except BaseException as e:  # noqa: B036 - any failure must release the other ranks
            errors.append(e)
            group.barrier.abort()
        finally:
            done[rank].set()

    threads = [threading.Thread(target=worker, args=(r,), name=f"rank{r}") for r in range(ranks)]
    for t in threads:
        t.start()
    # Waits on events, not Thread.join: a Ctrl-C inside join() marks a still-running thread as finished (CPython
    # 3.11, python/cpython#90882), and a rank thread still computing when the interpreter exits aborts the process
    # ("terminate called without an active exception", SIGABRT).
    interrupted = False
    for d in done:
        while not d.is_set():
            try:
                d.wait()
            except KeyboardInterrupt:  # Ctrl-C reaches the main thread only: break the barrier so every rank stops
                interrupted = True
                group.barrier.abort()
    for t in threads:
        t.join()
    if interrupted:
        raise KeyboardInterrupt
    if errors:  # the first error is the cause; the others are BrokenBarrierErrors it triggered
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return results
