"""Clip parallelism: the video latent is split along time into clips, one per rank.

A video of T frames (b, c, T, h, w) is cut into N contiguous clips (dual_scope.split_frames); rank r holds clip r.
Spatial layers see one frame at a time and run on the clip untouched. `parallel_temporal_layers` swaps the three
kinds of temporal layer that need other clips' frames in an unmodified model.UNet (as gpt-fast's tp.py does):

  TemporalTransformer.norm (GroupNorm)  -> ClipGroupNorm:    the GroupNorm formula with the whole video's statistics
  TemporalConvBlock.conv1..4            -> ClipTemporalConv: that GroupNorm, SiLU, Conv3d (3,1,1) over
    (GroupNorm, SiLU, Conv3d)                                [left halo | clip | right halo]
  TransformerBlock.attn1, attn2         -> ClipAttention:    dual-scope attention, keys of [halo | clip | halo | global]

A clip's halo is the boundary frames it receives from each neighbour: 1 for a temporal conv, w (the local window)
for an attention. The three communication stages, by name:
  stage1: pairs of ranks (0,1), (2,3), ... swap boundary frames (halo);
  stage2: pairs (1,2), (3,4), ... swap boundary frames;
  stage3: every rank receives the global frames and the GroupNorm statistics of every other rank (all-gather).
Pairing even/odd then odd/even keeps every link busy and never waits on a chain of ranks (the paper's scheme).
With real neighbour frames and whole-video statistics, the output equals the single-device run for any N.
"""
import contextvars
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
    transfer and return wait() -> its result: work done before wait() overlaps the transfer (on GPUs)."""

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
            send = x.narrow(dim, x.shape[dim] - width if side == "right" else 0, width)
            got[side] = self.exchange(stage, partner, None if partner is None else send.contiguous())
        return lambda: (got["left"](), got["right"]())

    def exchange(self, stage, partner, tensor):  # -> wait() -> the partner's tensor (same shape); None: no partner
        raise NotImplementedError

    def all_gather(self, stage, tensor):  # -> wait() -> list of every rank's tensor (same shapes)
        raise NotImplementedError


class DistComm(Comm):
    """Real ranks: torch.distributed (NCCL on GPUs, gloo on CPU), launched by torchrun. Each wait() holds the tensor
    sent until the transfer is done."""

    def __init__(self):
        super().__init__(dist.get_rank(), dist.get_world_size())

    def exchange(self, stage, partner, tensor):
        if partner is None:
            return lambda: None
        recv = torch.empty_like(tensor)
        works = dist.batch_isend_irecv([dist.P2POp(dist.isend, tensor, partner), dist.P2POp(dist.irecv, recv, partner)])
        self.count(stage, tensor)
        return functools.partial(wait_for, works, recv, tensor)

    def all_gather(self, stage, tensor):
        tensor = tensor.contiguous()
        out = [torch.empty_like(tensor) for _ in range(self.world_size)]
        self.count(stage, tensor, self.world_size - 1)
        return functools.partial(wait_for, [dist.all_gather(out, tensor, async_op=True)], out, tensor)


def wait_for(works, result, sent):  # `sent` is held (not freed) until its transfer is done
    for work in works:
        work.wait()
    return result


def init_distributed(timeout_s=300):
    """Join the torchrun group: NCCL with one GPU per rank where there are GPUs, else gloo. Returns the device. The
    timeout bounds how long a rank waits for a peer that died, so no rank is left hanging."""
    # torch.distributed.nn, imported after init_process_group (torch.compile imports it), binds group.WORLD as a default
    # argument and keeps gloo's threads alive into interpreter shutdown (SIGABRT at exit, now and then). Imported first.
    import torch.distributed.nn  # noqa: F401
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    timeout = datetime.timedelta(seconds=timeout_s)
    if not torch.cuda.is_available():
        dist.init_process_group("gloo", timeout=timeout)
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise SystemExit(f"error: rank {local_rank} has no GPU: this node has {torch.cuda.device_count()}; "
                         f"use torchrun --nproc_per_node {torch.cuda.device_count()} or fewer")
    device = torch.device("cuda", local_rank)
    torch.cuda.set_device(device)
    dist.init_process_group("nccl", timeout=timeout, device_id=device)
    return device


class EmulatedGroup:
    """N emulated ranks in one process: one thread per rank (each runs exactly a real rank's code), tensors passed
    through a shared mailbox, a barrier after each post and each read. A failing rank aborts the barrier."""

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
        return lambda: recv  # done already: the threads met at the barrier

    def all_gather(self, stage, tensor):
        g = self.group
        g.mailbox[(stage, self.rank)] = tensor
        self.count(stage, tensor, self.world_size - 1)
        g.barrier.wait()
        out = [g.mailbox[(stage, r)] for r in range(self.world_size)]
        g.barrier.wait()
        return lambda: out


class RankState(threading.local):  # what a rank knows during a forward; per thread: emulated ranks share one model
    comm = None  # this rank's Comm
    clips = None  # [(start, stop)] of every rank's clip
    timesteps = None  # (b,) diffusion timesteps of the current forward, or (1,) when the batch shares one


STATE = RankState()


@functools.lru_cache(maxsize=None)
def index_tensor(indices, device):  # built once per (indices, device): no host-to-device copy in the forward
    return torch.tensor(indices, dtype=torch.long, device=device)


def gather_frames(x, dim, indices):
    """Stage 3, started: the video frames `indices` (sorted) from whichever rank owns them. Returns wait() -> the
    pieces in frame order. A collective: every rank passes the same indices (a function of the scope and T)."""
    if not indices:  # no global frames: nothing to send, no collective
        return lambda: []
    comm, clips = STATE.comm, STATE.clips
    owned = [tuple(f - start for f in indices if start <= f < stop) for start, stop in clips]
    width = max(len(o) for o in owned)  # all_gather wants one size: pad with copies of frame 0, dropped on arrival
    mine = x.index_select(dim, index_tensor(owned[comm.rank] + (0,) * (width - len(owned[comm.rank])), x.device))
    wait = comm.all_gather("stage3", mine)
    return lambda: [p.narrow(dim, 0, len(o)) for p, o in zip(wait(), owned)]


def clip_moments(x, groups):
    """x (b, c, n, h, w) -> (3, b, groups), float32 or wider: count, mean and M2 (the sum of squared deviations from
    the mean: it combines across clips without the cancellation of a sum of squares) of each group of channels."""
    xg = x.unflatten(1, (groups, -1)).flatten(2).to(torch.promote_types(x.dtype, torch.float32))  # (b, groups, rest)
    mean = xg.mean(-1)
    return torch.stack([torch.full_like(mean, xg.shape[-1]), mean, (xg - mean[..., None]).square().sum(-1)])


def combine_moments(counts, means, m2s, dim):
    """The (count, mean, M2) of the union of disjoint parts, from theirs stacked along dim (Chan et al.)."""
    total = counts.sum(dim)
    mean = (counts * means).sum(dim) / total
    return total, mean, m2s.sum(dim) + (counts * (means - mean.unsqueeze(dim)).square()).sum(dim)


def video_moments(moments):
    """Stage 3: every rank's (count, mean, M2) (3, b, groups) all-gathered and combined -> the mean and the variance
    (biased, as GroupNorm's) of each group over the whole video, (b, groups) each."""
    parts = torch.stack(STATE.comm.all_gather("stage3", moments)())  # (ranks, 3, b, groups)
    count, mean, m2 = combine_moments(*parts.unbind(1), dim=0)
    return mean, m2 / count


def video_group_norm(x, norm):
    """GroupNorm of this rank's clip x (b, c, n, h, w) over (group channels, ALL frames of the video, h, w):
    (x - mean) / sqrt(var + eps) * weight + bias, with the mean and variance of the whole video."""
    mean, var = video_moments(clip_moments(x, norm.num_groups))
    xg = x.unflatten(1, (norm.num_groups, -1)).to(mean.dtype)  # (b, groups, c/groups, n, h, w)
    per_group = lambda v: v[:, :, None, None, None, None]  # noqa: E731 (b, groups) -> broadcast over xg
    y = ((xg - per_group(mean)) / torch.sqrt(per_group(var) + norm.eps)).flatten(1, 2)  # (b, c, n, h, w)
    per_channel = lambda p: p.to(mean.dtype)[:, None, None, None]  # noqa: E731 (c,) -> broadcast over y
    return (y * per_channel(norm.weight) + per_channel(norm.bias)).to(x.dtype)


class ClipGroupNorm(nn.Module):
    """The TemporalTransformer's GroupNorm on a clip: statistics of the whole video (stage 3)."""

    def __init__(self, norm):
        super().__init__()
        self.norm = norm

    def forward(self, x):  # x: (b, c, n, h, w)
        return video_group_norm(x, self.norm)


class ClipTemporalConv(nn.Module):
    """A TemporalConvBlock's conv on a clip: GroupNorm with the whole video's statistics (stage 3), SiLU, Conv3d
    (3,1,1) over [left halo | clip | right halo], a real neighbour frame per side (stages 1, 2), zeros at the video's
    ends only (where VC2's Conv3d zero-pads)."""

    def __init__(self, layers):  # layers: GroupNorm, SiLU, [Dropout(0)], Conv3d, as model.temporal_conv builds them
        super().__init__()
        self.norm, self.conv = layers[0], layers[-1]

    def forward(self, x):  # x: (b, c, n, h, w)
        y = F.silu(video_group_norm(x, self.norm))
        left, right = STATE.comm.halo(y, 1, dim=2)()  # (b, c, 1, h, w) each; None at the video's ends
        zero = torch.zeros_like(y[:, :, :1])
        y = torch.cat([zero if left is None else left, y, zero if right is None else right], dim=2)  # n + 2 frames
        return F.conv3d(y, self.conv.weight, self.conv.bias)  # no padding: the halo frames are the conv's context


class ClipAttention(nn.Module):
    """Dual-scope temporal self-attention on a clip: queries of the clip, keys and values of [left halo | clip | right
    halo | global frames], halos of w frames (stages 1, 2), the global frames gathered (stage 3). `attention` is
    dual_scope.clip_attention (fast.py swaps in one of cost linear in the clip length)."""

    def __init__(self, attn, scope, fallbacks_logged):
        super().__init__()
        self.attn, self.scope, self.fallbacks_logged = attn, scope, fallbacks_logged  # a set shared by one swap
        self.attention = clip_attention

    def forward(self, x, context=None):  # x: ((b h w), n, c), frames of this rank's clip
        return self.attn.to_out(self.attend(x, context))

    def attend(self, x, context=None):  # -> the heads' outputs ((b h w), n, (heads d)), before to_out
        assert context is None, "VC2's temporal attentions are self-attention (temporal_selfatt_only)"
        comm, clips = STATE.comm, STATE.clips
        (start, stop), frames = clips[comm.rank], clips[-1][1]
        w, shortest = self.scope.window(frames), min(e - s for s, e in clips)
        left = min(w, start)
        if w <= shortest:
            halo = comm.halo(x, w, dim=1) if w else lambda: (None, None)  # started
        else:  # a clip shorter than the halo: this layer gathers the whole video instead (exact, slower)
            if comm.rank == 0 and (w, shortest) not in self.fallbacks_logged:
                self.fallbacks_logged.add((w, shortest))
                log.warning("local window %d exceeds the shortest clip (%d frames): gathering the whole video", w,
                            shortest)
            video = torch.cat(gather_frames(x, 1, list(range(frames)))(), 1)
            halo = lambda: (video[:, start - left:start], video[:, stop:stop + w])  # noqa: E731
        global_frames = gather_frames(x, 1, self.scope.global_indices(frames))  # started
        a = self.attn
        q = a.split_heads(a.to_q(x))  # needs no other frame: computed while the halo and global frames are in flight
        halo_l, halo_r = halo()
        keys = torch.cat([h for h in (halo_l, x, halo_r) if h is not None] + global_frames(), dim=1)
        k, v = a.split_heads(a.to_k(keys)), a.split_heads(a.to_v(keys))  # ((b h w), heads, frames, d)
        out = self.attention(q, k, v, start, left, frames, STATE.timesteps, self.scope)  # ((b h w), heads, n, d)
        return out.transpose(1, 2).flatten(2)


def swap(parent, name, new):
    old = getattr(parent, name)
    setattr(parent, name, new)
    return lambda: setattr(parent, name, old)


@contextmanager
def parallel_temporal_layers(unet, scope):
    """Swap the temporal layers of a model.UNet for their clip-parallel forms; restore them on exit."""
    undo, fallbacks_logged = [], set()
    for m in list(unet.modules()):
        if isinstance(m, model.TemporalConvBlock):
            undo += [swap(m, name, ClipTemporalConv(getattr(m, name))) for name in ("conv1", "conv2", "conv3", "conv4")]
        elif isinstance(m, model.TemporalTransformer):
            undo.append(swap(m, "norm", ClipGroupNorm(m.norm)))
            for block in m.transformer_blocks:
                undo += [swap(block, name, ClipAttention(getattr(block, name), scope, fallbacks_logged))
                         for name in ("attn1", "attn2")]
    try:
        yield unet
    finally:
        for u in reversed(undo):
            u()


def enter_clip(comm, frames, x, timesteps):
    """Set STATE for one rank's forward on its clip x (b, c, n, h, w) of a `frames`-long video."""
    STATE.comm, STATE.clips = comm, split_frames(frames, comm.world_size)
    start, stop = STATE.clips[comm.rank]
    if x.shape[2] != stop - start:
        raise ValueError(f"rank {comm.rank} holds frames [{start}, {stop}) of {frames}: x has {x.shape[2]} frames, "
                         f"expected {stop - start} (dual_scope.split_frames)")
    # sampling shares one timestep over the batch (cond and uncond): then one attention mask serves every batch
    # element, a broadcast view (one host sync per forward to find out)
    t = timesteps.reshape(-1)
    STATE.timesteps = t[:1] if bool((t == t[0]).all()) else t
    comm.reset_traffic()


def clip_forward(unet, comm, frames, x, timesteps, context, fps):
    """One rank's UNet forward on its clip x (b, c, n, h, w) of a `frames`-long video (in parallel_temporal_layers)."""
    enter_clip(comm, frames, x, timesteps)
    return unet(x, timesteps, context, fps)


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

    # each rank runs in a copy of the caller's context variables: since torch 2.12 they hold torch.compile's settings
    # (fast.accelerate makes its own in the caller's thread; a new thread would compile with torch's defaults)
    threads = [threading.Thread(target=contextvars.copy_context().run, args=(worker, r), name=f"rank{r}")
               for r in range(ranks)]
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
