"""Long text-to-video with Video-Infinity: VideoCrafter2 split along time over ranks, dual-scope attention.

    torchrun --nproc_per_node 8 sample.py --prompt "a corgi running on the beach" --frames 2300
    python sample.py --emulate 3 --checkpoint model.ckpt ...      # N emulated ranks in one process (CPU debugging)
    python sample.py --tiny --prompt "a red circle moving right" --frames 128   # the tiny shapes model, on a CPU

The video depends only on the settings and the seed, never on the number of ranks: every rank runs the same
DDIM loop on its clip, the temporal layers see the whole video through clip_parallel, and the noise of frame f
at step s is drawn from a generator keyed by (seed, s, f).
"""
import argparse
import functools
import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
from tqdm import tqdm

import fast
import model
from clip_parallel import DistComm, clip_forward, init_distributed, parallel_temporal_layers, run_ranks
from dual_scope import DualScope, split_frames
from simulate import check_writable

log = logging.getLogger("sample")

# -----------------------------------------------------------------------------
# DDIM sampler (VideoCrafter2: LatentDiffusion.register_schedule with use_scale,
# DDIMSampler.make_schedule / p_sample_ddim). Numbers match the original bit-for-bit
# (fixtures: 0 error) by following its dtype path; comments flag the non-obvious parts.


def make_buffers(num_timesteps=1000, linear_start=0.00085, linear_end=0.012,
                 scale_b=0.7, scale_a=1.0, mid_step=400):
    """The model's float32 buffers: betas, alphas_cumprod, scale_arr."""
    # "linear" in the LDM family is scaled-linear. torch.linspace (not np.linspace, which
    # differs in the last bit) in float64, cumprod in float64, then stored as float32.
    betas = (torch.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps,
                            dtype=torch.float64) ** 2).numpy()
    alphas_cumprod = np.cumprod(1.0 - betas, axis=0)
    # scale_arr ramps scale_a -> scale_b over mid_step steps, then stays at scale_b. The
    # original (fix_scale_bug=False) appends num_timesteps (not num_timesteps - mid_step)
    # entries, so it is 1400 long; only indices < num_timesteps are ever read.
    scale_arr = np.concatenate([np.linspace(scale_a, scale_b, mid_step),
                                np.full(num_timesteps, scale_b)])
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)
    return f32(betas), f32(alphas_cumprod), f32(scale_arr)


def _sqrt32(x):
    # Correctly rounded float32 sqrt, as np.sqrt gives the original. torch's float32 CPU sqrt
    # (2.13, AVX512) is 1 ulp off for ~20% of inputs; going through float64 is exact.
    return x.double().sqrt().float()


@dataclass
class Schedule:
    timesteps: torch.Tensor              # int64, ascending (the original's ddim_timesteps)
    alphas: torch.Tensor                 # float32, alphas_cumprod[t]
    alphas_prev: torch.Tensor            # float32 (float64 in the original, same values)
    sigmas: torch.Tensor                 # float64, as the original computes it
    sqrt_one_minus_alphas: torch.Tensor  # float32, sqrt(1-a) with 1-a taken in float32
    scale_arr: torch.Tensor              # float32, scale_arr[t]
    scale_arr_prev: torch.Tensor         # float32 (float64 in the original, same values)


def make_schedule(steps: int, eta: float, num_timesteps=1000, linear_start=0.00085,
                  linear_end=0.012, scale_b=0.7, scale_a=1.0, mid_step=400) -> Schedule:
    if not (isinstance(steps, (int, np.integer)) and 1 <= steps <= num_timesteps):
        raise ValueError(f"steps must be an int in [1, {num_timesteps}], got {steps!r}")
    _, ac, sa = make_buffers(num_timesteps, linear_start, linear_end, scale_b, scale_a, mid_step)
    # 'uniform' discretisation: range(0, T, T//S) + 1, so timesteps start at 1 (t=0 is never
    # a model input) and there are MORE than S of them when T % S != 0 (S=6 -> 7 steps).
    # When (T-1) % (T//S) == 0 the last one is T itself and the original dies with an
    # IndexError on the T-long alphas_cumprod (T=1000: S = 3, 9, 27, 36, 37, 101..111,
    # 251..333, 501..1000). We drop that out-of-range timestep: every other timestep and
    # parameter is exactly what the original computes, nothing is duplicated (clamping to
    # T-1 would repeat t=999 for S >= 501), and S=3 runs t = 1, 334, 667.
    ts = np.arange(0, num_timesteps, num_timesteps // steps, dtype=np.int64) + 1
    ts = ts[ts < num_timesteps]
    # alphas_prev of the first step (t=1, the last one run) is alphas_cumprod[0], not 1:
    # the original never fully removes the last bit of noise. Same for scale_arr_prev.
    alphas = ac[ts]
    alphas_prev = torch.cat([ac[:1], ac[ts[:-1]]])
    # sigmas: eta * sqrt((1-a_prev)/(1-a) * (1-a/a_prev)) with a_prev a float64 ndarray and
    # a a float32 tensor in the original. ndarray / tensor dispatches to Tensor.__rtruediv__,
    # i.e. (1-a).reciprocal() * ndarray: the reciprocal is rounded to float32, the rest is
    # float64. Reproducing this makes sigmas bit-exact (a plain float64 formula is ~1e-8 off).
    a64, ap64 = alphas.double(), alphas_prev.double()
    sigmas = eta * torch.sqrt((1 - alphas).reciprocal().double() * (1 - ap64) * (1 - a64 / ap64))
    return Schedule(
        timesteps=torch.from_numpy(ts).long(),
        alphas=alphas,
        alphas_prev=alphas_prev,
        sigmas=sigmas,
        sqrt_one_minus_alphas=_sqrt32(1.0 - alphas),  # 1-a in float32, NOT the model's float64 buffer
        scale_arr=sa[ts],
        scale_arr_prev=torch.cat([sa[:1], sa[ts[:-1]]]),
    )


@torch.no_grad()
def ddim_sample(eps_fn, x_T, schedule, guidance, noise_fn, progress=None):
    """DDIM with classifier-free guidance (eta from the schedule), temperature 1, no clipping.
    eps_fn(x, t:int) -> (e_cond, e_uncond); noise_fn(step_index, x) -> noise like x, only called
    when sigma > 0 (step_index 0 = first, noisiest step); progress(step_index, total) optional.
    Returns (x_0, pred_x0 of the last step)."""
    x, pred_x0 = x_T, None
    total = len(schedule.timesteps)
    for i in range(total):
        idx = total - 1 - i  # walk the ascending schedule from the top
        t = int(schedule.timesteps[idx])
        e_cond, e_uncond = eps_fn(x, t)
        e_t = e_uncond + guidance * (e_cond - e_uncond)
        # The original broadcasts per-step scalars made with torch.full(size, v): float32, so
        # the float64 sigma is rounded to float32 here and all step maths is float32.
        a_t, a_prev = schedule.alphas[idx], schedule.alphas_prev[idx]
        sigma_t = schedule.sigmas[idx].float()
        sqrt_one_minus_at = schedule.sqrt_one_minus_alphas[idx]
        pred_x0 = (x - sqrt_one_minus_at * e_t) / _sqrt32(a_t)
        # use_scale: the model predicts a latent scaled by scale_arr[t]; undo it for x0 and
        # re-apply the previous step's scale when moving to t_prev.
        pred_x0 = pred_x0 / schedule.scale_arr[idx]
        dir_xt = _sqrt32(1.0 - a_prev - sigma_t ** 2) * e_t
        x_prev = _sqrt32(a_prev) * schedule.scale_arr_prev[idx] * pred_x0 + dir_xt
        if sigma_t > 0:  # eta=0: sigma*noise is exactly 0, skip drawing it
            x_prev = x_prev + sigma_t * noise_fn(i, x)
        x = x_prev
        if progress is not None:
            progress(i, total)
    return x, pred_x0


# -----------------------------------------------------------------------------
# Video-Infinity sampling: one clip per rank


def frame_noise(seed, step, frames, shape):
    """Gaussian noise (1, c, len(frames), h, w) whose frame f depends only on (seed, step, f): rank-independent."""
    out = []
    for f in frames:
        g = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 10_000_019 + f) % 2**63)
        out.append(torch.randn(shape, generator=g))
    return torch.stack(out, dim=1)[None]


def segment_of_frame(frames, prompts):
    """P prompts split the timeline into P equal segments: frame f shows prompt f * P // T."""
    return [f * prompts // frames for f in range(frames)]


@dataclass
class Settings:
    frames: int
    height: int
    width: int
    steps: int = 50
    eta: float = 1.0
    guidance: float = 12.0
    fps: int = 24
    seed: int = 0
    decode_batch: int = 32


def latent_frame(unet, s):  # (c, h, w) of one frame of the latent video
    return unet.input_blocks[0][0].in_channels, s.height // 8, s.width // 8


def generate_clip(comm, parts, s, contexts, device, progress=None, on_frames=None):
    """What one rank does: DDIM over its clip of the video, then VAE decode -> uint8 frames (n, H, W, 3);
    on_frames(frames), if given, gets each decoded batch at once (Mp4Writer.put: the mp4 is encoded meanwhile).

    Runs inside parallel_temporal_layers (entered once per process: emulated ranks share one model)."""
    start, stop = split_frames(s.frames, comm.world_size)[comm.rank]
    frames, unet = range(start, stop), parts["unet"]
    cond, uncond = contexts  # (P, 77, d), (1, 77, d)
    seg = torch.tensor(segment_of_frame(s.frames, len(cond))[start:stop])
    # cond and uncond as one batch of 2; each frame gets its segment's text: (2, n, 77, d)
    context = torch.stack([cond[seg], uncond.expand(len(frames), -1, -1)]).to(device)
    latent = latent_frame(unet, s)
    x_T = frame_noise(s.seed, 0, frames, latent).to(device)
    schedule = make_schedule(s.steps, s.eta)

    def eps_fn(x, t):  # one video and timestep for both texts: views (fast.pair_forward runs the text-free layers once)
        pair = x.expand(2, *x.shape[1:]), torch.full((1,), t, device=device).expand(2)
        return clip_forward(unet, comm, s.frames, *pair, context, s.fps).float().chunk(2)

    def noise_fn(i, x):
        return frame_noise(s.seed, i + 1, frames, latent).to(device)

    z, _ = ddim_sample(eps_fn, x_T, schedule, s.guidance, noise_fn, progress)
    t_denoised = time.perf_counter()
    video = []
    vae = parts["vae"]
    z = z[0].transpose(0, 1) / parts["scale_factor"]  # (n, 4, h, w): the VAE is an image model, frames are its batch
    for i in tqdm(range(0, len(frames), s.decode_batch), desc="decode", unit="batch", file=sys.stderr,
                  disable=progress is None):  # one bar, rank 0's clip
        img = vae.decode(z[i:i + s.decode_batch].to(next(vae.parameters()).dtype)).float()
        video.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1))
        if on_frames is not None:
            on_frames(video[-1])
    return torch.cat(video), z * parts["scale_factor"], t_denoised  # frames (n, H, W, 3), latents (n, 4, h, w)


def encode_prompts(parts, prompts, device):
    tokens = parts["tokenizer"](list(prompts) + [""])  # "" is VC2's unconditional prompt
    ctx = parts["text"](tokens.to(device)).float().cpu()
    return ctx[:-1], ctx[-1:]


UMASK = os.umask(0o022)  # read once at import (os.umask can only be read by setting it), then put back
os.umask(UMASK)


def write_atomically(path, write):
    """write(tmp_path), then rename to path: a failure or Ctrl-C never leaves a half-written file."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.partial{ext}"  # keeps the extension: ffmpeg picks the format from it
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~UMASK)  # as open() makes it: safetensors creates its files 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class FfmpegPipe:
    """uint8 (H, W, 3) frames (append_data) into x264 in an mp4: one ffmpeg process fed raw RGB through a pipe, started
    at the first frame (its size), crf 10 in yuv420p (what imageio's writer made at quality 8, and VideoCrafter's
    save_videos). Not imageio's writer: it starts ffmpeg with os.setpgrp run in the forked child (preexec_fn), which
    can deadlock the child before its exec while other threads hold locks (imageio-ffmpeg issue 58; an encoder of
    run 52 hung so, eight being started beside the decode). start_new_session does as much in C: ffmpeg gets a
    session of its own, so Ctrl-C in a terminal reaches this process only, which stops ffmpeg itself."""

    def __init__(self, path, fps):
        import imageio_ffmpeg
        self.path, self.fps, self.ffmpeg, self.process = path, fps, imageio_ffmpeg.get_ffmpeg_exe(), None
        self.log = None  # ffmpeg's messages: a file, not a pipe (a pipe nobody reads while it runs could fill)

    def append_data(self, frame):
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"an mp4 frame must be uint8 (H, W, 3), not {frame.dtype} {frame.shape}")
        if self.process is None:
            h, w, _ = frame.shape
            self.log = tempfile.TemporaryFile()
            self.process = subprocess.Popen(
                [self.ffmpeg, "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}",
                 "-r", f"{self.fps:.02f}", "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p", "-crf", "10",
                 self.path], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self.log,
                start_new_session=True)
        try:
            self.process.stdin.write(np.ascontiguousarray(frame))
        except BrokenPipeError:  # ffmpeg stopped: say why
            self.finish()
            raise

    def finish(self):  # the file complete, or OSError with ffmpeg's last line
        if self.process is None:
            raise OSError(f"no frames to write to {self.path!r}")
        with suppress(BrokenPipeError):  # ffmpeg gone: its exit code and message tell why
            self.process.stdin.close()
        self.process.wait()
        self.log.seek(0)
        error = self.log.read().decode(errors="replace").strip().splitlines()
        self.log.close()
        if self.process.returncode:
            raise OSError(f"ffmpeg could not write {self.path!r} "
                          f"({error[-1] if error else f'exit code {self.process.returncode}'})")

    def kill(self):  # stop now: ffmpeg writes nothing after this
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            for file in (self.process.stdin, self.log):
                with suppress(OSError):
                    file.close()


@contextmanager
def open_mp4(path, fps):
    """The writer of every mp4 here (one encoder or the ranks' segments): FfmpegPipe, the file complete on leaving;
    on an error ffmpeg is killed, so it cannot write `path` after write_atomically has removed it."""
    writer = FfmpegPipe(path, fps)
    try:
        yield writer
    except BaseException:
        writer.kill()
        raise
    writer.finish()


# -----------------------------------------------------------------------------
# The mp4: each rank encodes its own clip as mp4 segments of SEGMENT_FRAMES frames as it decodes it (Mp4Writer: several
# x264 processes at once on every rank), then rank 0 joins all the segments without re-encoding (ffmpeg's concat
# demuxer, -c copy); a video of one segment is that segment. The segments go to a folder beside --out, so rank 0 must
# see the other ranks' files: true for torchrun's ranks on one host; ranks on several hosts need --out in a folder
# they all share.
#
# One x264 process keeps ~5 of an H200 machine's 16 cores busy on 320x512 frames: 1 / 2 / 3 / 6 encoders side by side
# wrote 70 / 127 / 147 / 179 frames/s of noise (random weights' frames, the slowest to encode), 359 / 665 / 752 / 894
# of smooth moving pictures (docs/BENCH.md run 44; run 45: 1150 frames' write after their decode 6.2 -> 1.5 s). The
# VAE now decodes ~220 frames/s (run 52), so on noise x264 is the bound, however the segments are cut (run 52: shorter
# segments at a clip's end gained nothing); smooth frames it keeps up with. A segment starts with a keyframe: 96
# frames is one every 4 s at 24 fps, as streaming video has; shorter segments encode slower (one x264: 86 noise
# frames/s over 576, 70 over 96).
SEGMENT_FRAMES = 96


def encoders_per_rank(ranks_here):
    """How many segments a rank encodes at once: half its share of the CPU cores in x264 processes, at least 2."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, cores // ranks_here // 2)


def segment_names(rank, frames):  # a clip of `frames` frames as mp4 segments: their names, in order
    return [f"rank{rank:05d}.part{i:04d}.mp4" for i in range(-(-frames // SEGMENT_FRAMES))]


def video_segments(frames, ranks):  # every segment of the video, in order
    return [name for rank, (start, stop) in enumerate(split_frames(frames, ranks))
            for name in segment_names(rank, stop - start)]


class OutputError(Exception):
    """The video could not be written (a full disk, a folder gone, ffmpeg failing): one line, exit code 1."""


class Mp4Writer:
    """A rank's clip as mp4 segments (segment_names) in `folder`, encoded while its frames are still being made: once
    a segment's frames are all put, one of `encoders` threads encodes it with an x264 process of its own, so several
    segments encode at once on the CPU while the VAE decodes the next frames on the GPU. put(frames) never waits;
    nothing is written before a segment is whole (or close); close() -> None, or why the clip could not be written
    (one line)."""

    def __init__(self, folder, rank, fps, frames, encoders):
        self.folder, self.rank, self.fps, self.frames = folder, rank, fps, frames  # frames: how many will come
        self.names, self.pool = segment_names(rank, frames), ThreadPoolExecutor(encoders, f"mp4 writer {rank}")
        self.jobs, self.held, self.bar, self.error = [], [], None, None  # held: the next segment's frames so far
        self.lock, self.aborted = threading.Lock(), threading.Event()

    def put(self, frames):  # uint8 (n, H, W, 3), on any device
        if self.bar is None:  # at the first frames: the denoising bar is done by then
            self.bar = tqdm(total=self.frames, desc="write", unit="frame", file=sys.stderr, disable=self.rank != 0)
        while len(frames):
            room = SEGMENT_FRAMES - sum(map(len, self.held))
            self.held.append(frames[:room])
            frames = frames[room:]
            if len(self.held[-1]) == room:
                self.submit()

    def submit(self):  # the frames held so far, as the next segment
        path = os.path.join(self.folder, self.names[len(self.jobs)])
        self.jobs.append(self.pool.submit(self.encode, path, self.held))
        self.held = []

    def encode(self, path, batches):
        def write(tmp):
            with open_mp4(tmp, self.fps) as writer:
                for frames in batches:
                    for frame in frames.cpu().numpy():
                        if self.aborted.is_set():  # write_atomically removes the partial file
                            raise InterruptedError("aborted")
                        writer.append_data(frame)
                    with self.lock:
                        self.bar.update(len(frames))
        try:
            os.makedirs(self.folder, exist_ok=True)
            write_atomically(path, write)
        except Exception as e:  # noqa: BLE001 - whatever it is, every rank must hear of it (run's exchange)
            with self.lock:
                if not self.aborted.is_set():  # the first failure; the segments still encoding stop
                    self.error = f"rank {self.rank} could not write {path!r} ({type(e).__name__}: {e})"
                    self.aborted.set()

    def close(self, abort=False):
        """Wait for the last segment to be written (abort: stop at the next frame; no part of a segment is left, but
        whole ones may be: run removes the folder)."""
        if not self.jobs and not self.held:
            self.pool.shutdown()
            return None if abort else f"rank {self.rank} has no frames to write to {self.folder!r}"
        if abort:
            self.aborted.set()
            for job in self.jobs:
                job.cancel()  # those not started
        elif self.held:  # the clip's last, shorter segment
            self.submit()
        interrupted = False
        while True:  # futures.wait waits on an Event, not Thread.join: see clip_parallel.run_ranks (Ctrl-C in join)
            try:
                wait(self.jobs)
                break
            except KeyboardInterrupt:  # stop the encoders too, then stop
                self.aborted.set()
                interrupted = True
        self.pool.shutdown()
        if self.bar is not None:
            self.bar.close()
        if interrupted:
            raise KeyboardInterrupt
        return None if abort else self.error


def segment_folder(out):
    """The temporary folder of the ranks' mp4 segments, beside the output; removed when the video is done or failed."""
    return os.path.splitext(os.path.abspath(out))[0] + ".segments.partial"


def decode_delay(ffmpeg, path, fps):
    """Frames by which an mp4's decoding runs ahead of its display: the first packet's -DTS in frames. libx264's
    B-frames make it 2 (its default preset), but a clip of 1 or 2 frames has no B-frame and a delay of 0."""
    out = subprocess.run([ffmpeg, "-v", "error", "-i", path, "-map", "0:v:0", "-c", "copy", "-frames:v", "1",
                          "-f", "framecrc", "-"], capture_output=True, text=True, check=True).stdout
    time_base = Fraction(re.search(r"^#tb 0: (\d+/\d+)$", out, re.M).group(1))
    dts = int(next(line for line in out.splitlines() if not line.startswith("#")).split(",")[1])
    return round(-dts * time_base * fps)


def join_segments(folder, names, out, fps):
    """Rank 0: the mp4 segments `names` in `folder` (video_segments), in order, into the mp4 `out`, atomically,
    without re-encoding (the frames are the segments' bits).

    The concat demuxer shifts each segment's timestamps by the durations before it: presentation times come out
    evenly spaced, decoding times too when every segment has the same decode delay. Segments of 1 or 2 frames have
    none where the others have 2: decoding times would step back at the join, the muxer would bend them, and the
    file would report a wrong frame rate (readers then drop or repeat frames). So the decoding times are rewritten
    evenly, packet N's at (N - the largest delay) / fps (setts): never after its presentation time, always
    increasing."""
    import imageio_ffmpeg
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise OutputError(f"the segments {', '.join(missing)} are not in {folder!r}: the ranks wrote them elsewhere "
                          "(ranks on several hosts need --out in a folder they all share)")
    listing = os.path.join(folder, "segments.txt")
    with open(listing, "w") as f:  # names relative to the list's folder: no quoting of the user's path needed
        f.writelines(f"file '{n}'\n" for n in names)
    try:
        with ThreadPoolExecutor(8) as pool:  # each reads one packet, but ffmpeg takes ~0.1 s to start
            delay = max(pool.map(lambda n: decode_delay(ffmpeg, os.path.join(folder, n), fps), names))
        write_atomically(out, lambda tmp: subprocess.run(
            [ffmpeg, "-v", "error", "-y", "-f", "concat", "-i", listing, "-map", "0:v:0", "-c", "copy",
             "-bsf:v", f"setts=pts=PTS:dts=(N-{delay})/({fps}*TB)", tmp], capture_output=True, text=True, check=True))
    except subprocess.CalledProcessError as e:
        lines = (e.stderr or "").strip().splitlines()
        raise OutputError(f"ffmpeg could not join the segments in {folder!r} into {out!r} "
                          f"({lines[-1] if lines else f'exit code {e.returncode}'})") from None


def missing_folders(path):
    """The folders of `path` that do not exist yet, innermost first: made when the video is written, removed again
    (when still empty) if it fails."""
    missing, folder = [], os.path.dirname(os.path.abspath(path))
    while not os.path.exists(folder):
        missing.append(folder)
        folder = os.path.dirname(folder)
    return missing


# -----------------------------------------------------------------------------
# Command line


class UserError(Exception):
    """Bad input: reported as one line, no traceback, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors (bad types, unknown flags) become UserErrors too
        raise UserError(message)


# --tiny: the small model trained on coloured shapes in tiny/ (tiny/README.md), with the settings it samples well at
TINY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny")
TINY_DEFAULTS = dict(height=64, width=64, steps=20, guidance=5.0)


def parse_args(argv=None):
    p = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    a = p.add_argument
    a("--tiny", action="store_true", help="use the tiny model shipped in tiny/ (trained here on coloured shapes, "
      "NOT VideoCrafter2; prompts like 'a red circle moving right [on a white background]'): runs on a laptop CPU. "
      "Its defaults replace the ones below: " + " ".join(f"--{k} {v}" for k, v in TINY_DEFAULTS.items()))
    a("--prompt", action="append", default=[], help="text prompt (not empty: the empty prompt is the unconditional "
      "one); repeat it for a multi-prompt video: P prompts split the timeline into P equal segments")
    a("--prompts", metavar="FILE", help="read the prompts from a text file, one per line (instead of --prompt)")
    a("--frames", type=int, default=64, help="video length in frames (default 64; the paper's headline: 2300)")
    a("--height", type=int, default=320, help="video height in pixels, a multiple of 64 (default 320)")
    a("--width", type=int, default=512, help="video width in pixels, a multiple of 64 (default 512)")
    a("--steps", type=int, default=50, help="DDIM steps, 1..1000 (default 50); VC2's schedule may add one UNet "
      "evaluation (30 steps: 31)")
    a("--eta", type=float, default=1.0, help="DDIM eta in 0..1: 1 adds fresh noise each step, 0 is deterministic "
      "(default 1.0)")
    a("--guidance", type=float, default=12.0, help="classifier-free guidance scale, >= 0 (default 12)")
    a("--fps", type=int, default=24, help="fps conditioning of the UNet (default 24, as Video-Infinity; VC2 uses 28)")
    a("--save-fps", type=int, default=8, help="frame rate of the written mp4 (default 8)")
    a("--seed", type=int, default=0, help="random seed, 0..2**63-1 (default 0); the video depends on it, not on the "
      "number of ranks")
    a("--local-window", type=int, default=8, help="dual-scope local window w: frames per side (default 8)")
    a("--global-frames", type=int, default=16, help="dual-scope global frames k spread over the video (default 16)")
    a("--switch-timestep", type=int, default=800, help="bias phases, 0..1000: t >= this favours global frames, "
      "below it local ones (default 800)")
    a("--bias", type=float, default=10.0, help="logit bias (>= 0) of the favoured scope in each phase (default 10)")
    a("--dtype", choices=["bf16", "fp16", "fp32"], help="model dtype (default bf16 on GPU, fp32 on CPU)")
    a("--checkpoint", metavar="PATH", help="local VC2 model.ckpt or .safetensors (default: download "
      "VideoCrafter/VideoCrafter2 model.ckpt from the Hugging Face Hub). A .ckpt is converted once to "
      "model.fp16.safetensors beside it (2.8 GB), where the folder is writable")
    a("--model-config", metavar="PATH", help="JSON model config (default: VideoCrafter2's sizes; see docs/usage.md)")
    a("--random-weights", action="store_true", help="skip loading: random weights, for benchmarks (makes noise; "
      "not with --checkpoint)")
    a("--emulate", type=int, metavar="N", help="run N emulated ranks in this process (CPU debugging, tests; not "
      "under torchrun)")
    a("--compile", action="store_true", help="torch.compile the UNet's per-frame layers and the clip-parallel "
      "arithmetic between communication stages, instead of fast.py's Triton kernels: on one H200 slower a step, "
      "after a one-off compile at the first step (~2 minutes with an empty cache, less once cached; see "
      "docs/usage.md; not with --emulate or --plain)")
    a("--compile-cache", metavar="PATH", help="with --compile: load the compiled graphs and kernels from PATH if it "
      "exists (torch.compiler's portable cache artifacts) and save them all there after a successful run. Copy the "
      "file to a machine with the same torch and GPU kind: its first step then loads them instead of compiling "
      "(Dynamo still traces). Under torchrun one file per rank, PATH.rank<r>")
    a("--plain", action="store_true", help="run the plain clip-parallel layers of clip_parallel.py, not their fast "
      "forms of fast.py (the same numbers up to rounding; on GPUs the fast forms are the default, on CPU the plain)")
    a("--decode-batch", type=int, default=32, help="frames per VAE decode call, bounds decode memory (default 32)")
    a("--out", default="out/video.mp4", help="output mp4; a JSON sidecar with every setting is written "
      "beside it, OUT.json (default out/video.mp4; its folder is made when the video is written). Each rank "
      "encodes its own clip as mp4 segments of 96 frames in a temporary folder beside it (OUT.segments.partial/) "
      "and rank 0 joins them without re-encoding: torchrun's ranks on one host share it; ranks on several hosts "
      "need OUT in a folder they all share")
    a("--overwrite", action="store_true", help="replace an existing --out file and the files beside it")
    a("--save-latents", action="store_true", help="also write the final latents (T, 4, h, w) and the exact uint8 "
      "frames (the mp4 is lossy) to OUT.latents.safetensors, e.g. to compare runs")
    if "--tiny" in (sys.argv[1:] if argv is None else argv):
        p.set_defaults(**TINY_DEFAULTS)  # after add_argument: a set_defaults before it would lose to its default=
    args = p.parse_args(argv)
    args.prompt = read_prompts(args)
    if args.tiny:
        if args.checkpoint or args.model_config or args.random_weights:
            raise UserError("--tiny brings its own weights and config: not with --checkpoint, --model-config or "
                            "--random-weights")
        args.checkpoint = os.path.join(TINY_DIR, "tiny_vc2.safetensors")
        args.model_config = os.path.join(TINY_DIR, "config.json")
    check_args(args)
    check_writable(p, "--compile-cache", args.compile_cache)  # found out now, not after the run
    return args


def read_prompts(args):
    if args.prompts:
        if args.prompt:
            raise UserError("give --prompt or --prompts, not both")
        try:
            with open(args.prompts, encoding="utf-8") as f:
                prompts = [line.strip() for line in f if line.strip()]
        except OSError as e:
            raise UserError(f"--prompts: cannot read {args.prompts!r} ({e.strerror})") from None
        except UnicodeDecodeError:
            raise UserError(f"--prompts: {args.prompts!r} is not UTF-8 text") from None
        if not prompts:
            raise UserError(f"--prompts: {args.prompts!r} holds no prompt (expected one per line)")
        return prompts
    if not args.prompt:
        raise UserError("no prompt: give --prompt TEXT (repeatable) or --prompts FILE")
    for p in args.prompt:  # "" is the unconditional prompt: guidance would push away from the text it follows
        if not p.strip():
            raise UserError(f"--prompt {p!r} is empty: the empty prompt is the unconditional one (guidance then does "
                            "nothing); describe the video")
    return args.prompt


def read_model_config(path):
    """--model-config: JSON with the unet, vae and text sections of model.VC2_CONFIG (see docs/usage.md)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except OSError as e:
        raise UserError(f"--model-config: cannot read {path!r} ({e.strerror})") from None
    except ValueError as e:  # not JSON, not UTF-8
        raise UserError(f"--model-config: {path!r} is not JSON ({e})") from None
    missing = [k for k in ("unet", "vae", "text") if not (isinstance(config, dict) and isinstance(config.get(k), dict))]
    if missing:
        raise UserError(f"--model-config: {path!r} has no {', '.join(missing)} section (an object each, as "
                        f"model.VC2_CONFIG)")
    try:  # every field's type and range, and the sizes the parts share
        model.check_config(config)
    except ValueError as e:
        raise UserError(f"--model-config: {e}") from None
    for name, cls in (("unet", model.UNet), ("vae", model.AutoencoderKL), ("text", model.TextEncoder)):
        try:  # built on the meta device: the constructors' own checks (VC2's flags), no memory, no weights
            with torch.device("meta"):
                cls(**config[name])
        except (TypeError, ValueError, KeyError) as e:
            raise UserError(f"--model-config: section {name}: {e}") from None
    return config


def check_args(args):
    def need(ok, message):
        if not ok:
            raise UserError(message)
    need(args.frames >= 1, f"--frames must be >= 1, got {args.frames}")
    need(not (args.compile and args.emulate), "--compile does not combine with --emulate (emulated ranks are threads)")
    need(not (args.compile and args.plain), "--compile does not combine with --plain (it compiles the fast forms)")
    need(args.compile or not args.compile_cache, "--compile-cache needs --compile")
    need(not (args.emulate and "WORLD_SIZE" in os.environ), "--emulate does not combine with torchrun (every "
         "process would run all the emulated ranks and write the same files)")
    need(1 <= args.steps <= 1000, f"--steps must be in 1..1000, got {args.steps}")
    for name in ("guidance", "eta", "bias"):
        need(math.isfinite(getattr(args, name)), f"--{name} must be a finite number, got {getattr(args, name)}")
    need(args.guidance >= 0, f"--guidance must be >= 0, got {args.guidance}")
    # DDIM's sigma_t = eta * sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)): above 1 the direction term
    # sqrt(1 - a_prev - sigma_t^2) is the root of a negative number at some steps
    need(0 <= args.eta <= 1, f"--eta must be in 0..1, got {args.eta}")
    need(args.bias >= 0, f"--bias must be >= 0 (the logit bonus of the favoured scope), got {args.bias}")
    need(0 <= args.switch_timestep <= 1000, f"--switch-timestep must be in 0..1000 (diffusion timesteps: 0 favours "
         f"global frames throughout, 1000 local ones), got {args.switch_timestep}")
    need(args.local_window >= 0, f"--local-window must be >= 0, got {args.local_window}")
    need(args.global_frames >= 0, f"--global-frames must be >= 0, got {args.global_frames}")
    need(args.decode_batch >= 1, f"--decode-batch must be >= 1, got {args.decode_batch}")
    need(args.save_fps >= 1 and args.fps >= 1, "--fps and --save-fps must be >= 1")
    need(0 <= args.seed < 2 ** 63, f"--seed must be in 0..2**63-1, got {args.seed}")
    need(args.emulate is None or args.emulate >= 1, f"--emulate must be >= 1, got {args.emulate}")
    need(len(args.prompt) <= args.frames, f"{len(args.prompt)} prompts for {args.frames} frames: "
         "each prompt needs at least one frame")
    need(not (args.random_weights and args.checkpoint), "--random-weights does not combine with --checkpoint")
    need(not args.checkpoint or os.path.isfile(args.checkpoint), f"checkpoint {args.checkpoint!r} "
         f"{'is a folder, not a file' if os.path.isdir(args.checkpoint or '') else 'does not exist'}")
    args.config = read_model_config(args.model_config) if args.model_config else None  # read and checked once
    config = args.config or model.VC2_CONFIG
    # the latent is 1/8 of the frame, and the UNet halves it once per level but the last
    multiple = 8 * 2 ** (len(config["unet"]["channel_mult"]) - 1)
    for name in ("height", "width"):
        v = getattr(args, name)
        need(v % multiple == 0 and multiple <= v <= 4096, f"--{name} must be a multiple of {multiple} in "
             f"{multiple}..4096 (the latent is 1/8 of it and the UNet halves it "
             f"{len(config['unet']['channel_mult']) - 1} times), got {v}")
    ranks = args.emulate or int(os.environ.get("WORLD_SIZE", 1))
    need(args.frames >= ranks, f"--frames ({args.frames}) must be >= the number of ranks ({ranks}): "
         "every rank needs a frame")
    check_out(args, ranks)
    check_size(args, config, ranks)


def check_out(args, ranks):
    """--out and the files beside it: refused now if they exist (without --overwrite) or cannot be written. The
    folder is only created when the video is written, so a failure before that leaves nothing behind."""
    if not args.out.endswith(".mp4"):
        raise UserError(f"--out must end in .mp4, got {args.out!r}")
    if os.path.isdir(args.out):
        raise UserError(f"--out {args.out!r} is a folder; expected the path of the mp4 to write")
    if os.path.exists(args.out) and not args.overwrite:
        raise UserError(f"--out {args.out!r} exists; pass --overwrite to replace it")
    root = os.path.splitext(args.out)[0]
    for path in [root + ".json"] + ([root + ".latents.safetensors"] if args.save_latents else []):  # beside it
        if os.path.isdir(path):
            raise UserError(f"--out: {path!r} (written beside the mp4) is a folder")
        if os.path.exists(path) and not args.overwrite:
            raise UserError(f"--out: {path!r} exists; pass --overwrite to replace it")
    folder = os.path.dirname(os.path.abspath(args.out))
    existing = folder
    while not os.path.exists(existing):  # the deepest folder that exists: the rest is made when writing
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--out: cannot create folder {folder!r} ({existing!r} is a file)")
    try:  # a real write, checked before any compute (os.access says yes to root even on read-only places)
        with tempfile.NamedTemporaryFile(dir=existing):
            pass
    except OSError as e:
        raise UserError(f"--out: folder {existing!r} is not writable ({e.strerror})") from None
    try:  # the mp4s are written by imageio-ffmpeg's ffmpeg binary: find out now, not after all the compute
        import imageio_ffmpeg
        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as e:
        raise UserError(f"--out: writing mp4 needs ffmpeg: pip install imageio-ffmpeg ({e})") from None
    if len(video_segments(args.frames, ranks)) > 1:  # join_segments rewrites decoding times with the setts filter:
        # ffmpeg >= 4.4 (imageio-ffmpeg >= 0.6)
        filters = subprocess.run([ffmpeg, "-hide_banner", "-bsfs"], capture_output=True, text=True).stdout.split()
        if "setts" not in filters:
            raise UserError(f"--out: joining the mp4 segments needs ffmpeg 4.4 or newer (its setts filter), "
                            f"which {ffmpeg!r} is not: pip install -U imageio-ffmpeg")


# -----------------------------------------------------------------------------
# Will it fit, and how long will it take? An estimate from the model config, before anything is built.
#
# Measured (bench.py, H200, bf16, full-size VC2 at 320x512, latent 40x64): the weights are 3.4 GiB; one denoising
# step over n frames per GPU (batch 2 for guidance) peaks at 11.1 GiB at n = 128 and 22.0 GiB at n = 288, i.e.
# 0.068 GiB per frame; a UNet forward costs 1.6 TFLOP per frame (batch 2). Scaled to other configs and sizes the
# simple way: activations grow with the UNet's width and the latent's pixels and the dtype's bytes, FLOPs with the
# width squared (convolutions and projections) and the pixels. An estimate, good to tens of percent, not a promise.
GIB = 2 ** 30
VC2_GIB_PER_FRAME = 0.068  # batch 2, bf16, model_channels 320, latent 40x64
VC2_FLOP_PER_FRAME = 1.6e12  # one UNet forward, batch 2, model_channels 320, latent 40x64


@functools.lru_cache(maxsize=None)
def count_parameters(config_json):
    config = json.loads(config_json)
    with torch.device("meta"):  # sizes only: no memory, no weights
        return sum(p.numel() for part, cls in (("unet", model.UNet), ("vae", model.AutoencoderKL),
                                               ("text", model.TextEncoder)) for p in cls(**config[part]).parameters())


def estimate_run(config, frames_per_rank, height, width, dtype_bytes):
    """-> (bytes of weights, bytes of activations per rank in one denoising step, FLOPs per rank per step)."""
    params = count_parameters(json.dumps(config, sort_keys=True))
    width_ratio = config["unet"]["model_channels"] / 320
    pixel_ratio = (height // 8) * (width // 8) / (40 * 64)
    activations = VC2_GIB_PER_FRAME * GIB * width_ratio * pixel_ratio * dtype_bytes / 2 * frames_per_rank
    flops = VC2_FLOP_PER_FRAME * width_ratio ** 2 * pixel_ratio * frames_per_rank
    return params * dtype_bytes, activations, flops


def device_memory(device):
    """(bytes, name) of the device a rank computes on: a GPU's memory, or the machine's RAM."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return props.total_memory, props.name
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "this machine's RAM"


def cpu_flops():
    """FLOP/s of a float32 matmul on this CPU, measured in a fraction of a second: the most the UNet could do here."""
    a = torch.randn(512, 512)
    torch.mm(a, a)
    t = time.perf_counter()
    for _ in range(5):
        torch.mm(a, a)
    return 5 * 2 * 512 ** 3 / (time.perf_counter() - t)


def check_size(args, config, ranks):
    """Refuse a video that cannot fit in the device's memory (saying what would); warn of a run of hours on a CPU."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    dtype = args.dtype or ("bf16" if cuda else "fp32")
    dtype_bytes = 4 if dtype == "fp32" else 2
    per_rank = -(-args.frames // ranks)  # the longest clip
    weights, activations, flops = estimate_run(config, per_rank, args.height, args.width, dtype_bytes)
    # emulated ranks are threads of one process: one model, every clip's activations at once; real ranks on a CPU
    # host share its RAM
    threads = args.emulate or 1
    sharing = 1 if cuda else int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    video = args.frames * args.height * args.width * 3 * 2  # the uint8 frames twice: an upper bound (--save-latents
    # gathers them all on rank 0; otherwise a rank holds its clip and its mp4 writer a copy)
    need = sharing * (weights + threads * activations) + video
    have, name = device_memory(device)
    if need > have:
        # the most frames per rank that fit: have = sharing * (weights + threads * per_frame * f) + ranks * f * frame
        per_frame, frame = activations / per_rank, video / args.frames
        fit = int((have - sharing * weights) / (sharing * threads * per_frame + ranks * frame))
        where = (f"{fit} frames per GPU fit; the {args.frames} frames need about "
                 f"{-(-args.frames // fit)} GPUs (torchrun --nproc_per_node)" if cuda and fit > 0 else
                 f"about {fit * ranks} frames fit at this size" if fit > 0 else
                 "not even the weights and one frame fit: a smaller --model-config or size")
        raise UserError(f"--frames {args.frames} at {args.height}x{args.width} ({dtype}, {per_rank} frames per rank) "
                        f"needs about {need / GIB:,.1f} GiB per {'GPU' if cuda else 'machine'} (an estimate from the "
                        f"model config), more than the {have / GIB:,.1f} GiB of {name}: {where}")
    if not cuda and int(os.environ.get("RANK", 0)) == 0:
        evals = len(make_schedule(args.steps, args.eta).timesteps)
        work = evals * flops * threads * sharing  # every clip on this host shares its cores
        seconds = work / cpu_flops() if work > 600e12 else 0  # measured only where 1 TFLOP/s would take 10 min
        if seconds > 600:
            log.warning("on this CPU the %d denoising steps will take roughly %s or more (%.1f TFLOP per step per "
                        "rank, an estimate from the model config); a GPU, fewer --frames or a smaller size is faster",
                        evals, f"{seconds / 3600:.1f} hours" if seconds > 5400 else f"{seconds / 60:.0f} minutes",
                        flops / 1e12)


def pick_dtype(args, device):
    name = args.dtype or ("bf16" if device.type == "cuda" else "fp32")
    if device.type == "cpu" and name == "fp16":
        raise UserError("--dtype fp16 is not supported on CPU (use fp32 or bf16)")
    if device.type == "cuda" and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise UserError(f"--dtype bf16 is not supported on {torch.cuda.get_device_name(device)} (use fp16)")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_parts(args, device, dtype):
    if args.random_weights:
        from simulate import randomize
        config = args.config or model.VC2_CONFIG
        # every part drawn from the seed: the same weights on every rank and in every run (default initialisation
        # would give each rank its own text encoder and VAE)
        with torch.device(device):  # built and drawn on the GPU: seconds, not minutes, at full size
            parts = dict(unet=randomize(model.UNet(**config["unet"]), args.seed),
                         vae=randomize(model.AutoencoderKL(**config["vae"]), args.seed + 1),
                         text=randomize(model.TextEncoder(**config["text"]), args.seed + 2),
                         tokenizer=model.Tokenizer(), scale_factor=config.get("scale_factor", 0.18215))
        for k in ("unet", "vae", "text"):
            parts[k] = parts[k].to(device=device, dtype=dtype).eval().requires_grad_(False)
        return parts
    try:
        return model.load_videocrafter2(args.checkpoint, args.config, dtype=dtype, device=device)
    except model.CheckpointError as e:
        raise UserError(str(e)) from None


def warn_long_prompts(tokenizer, prompts):
    for p in prompts:
        n = len(tokenizer.encode(p)) + 2
        if n > 77:
            log.warning("prompt %r is %d tokens: truncated to 77, as VideoCrafter2 does", p[:40] + "...", n)


def run(args):
    """Generate and write the video; returns the sidecar dict (rank 0) or None (other ranks)."""
    real = "WORLD_SIZE" in os.environ and not args.emulate
    device = init_distributed() if real else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = pick_dtype(args, device)
    rank0 = not real or torch.distributed.get_rank() == 0
    timings, t0 = {}, time.perf_counter()
    parts = load_parts(args, device, dtype)
    timings["load"] = time.perf_counter() - t0
    if rank0:
        warn_long_prompts(parts["tokenizer"], args.prompt)
    t = time.perf_counter()
    contexts = encode_prompts(parts, args.prompt, device)
    timings["text"] = time.perf_counter() - t
    scope = DualScope(local_window=args.local_window, global_frames=args.global_frames,
                      switch_timestep=args.switch_timestep, early_bias=(0.0, args.bias), late_bias=(args.bias, 0.0))
    s = Settings(args.frames, args.height, args.width, args.steps, args.eta, args.guidance, args.fps, args.seed,
                 args.decode_batch)
    bar = None
    if rank0:
        bar = tqdm(total=len(make_schedule(s.steps, s.eta).timesteps), desc="denoise", unit="step", file=sys.stderr)
        if args.compile:  # else a bar standing still for minutes looks like a hang
            bar.set_postfix_str("the first step compiles: minutes with an empty cache")

    def progress(i, total):
        bar.update(1)
        if i == 0:  # the first step pays the one-off costs (compilation, kernel autotuning): timed apart
            bar.set_postfix_str("")
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            timings["first_step"] = time.perf_counter() - t_denoise

    t_denoise = time.perf_counter()
    speed = args.compile or (device.type == "cuda" and not args.plain)  # the fast forms: GPUs, unless --plain
    new_folders = missing_folders(args.out)  # before any rank writes: the folders this run makes
    folder = segment_folder(args.out)
    ranks = torch.distributed.get_world_size() if real else args.emulate or 1
    encoders = encoders_per_rank(int(os.environ.get("LOCAL_WORLD_SIZE", 1)) if real else ranks)

    def clip_to_mp4(comm):
        """One rank: its clip, decoded and encoded at once into its mp4 segments -> (..., None or why it failed)."""
        start, stop = split_frames(s.frames, ranks)[comm.rank]
        writer = Mp4Writer(folder, comm.rank, args.save_fps, stop - start, encoders)
        # On a GPU x264 encodes on the CPU while the VAE decodes; on a CPU both would share its cores, and the
        # decoder's threads lose more to the encoder's than the encoding takes (2 cores, 48 frames at 128x128:
        # decode 3.4-4.0 s -> 4.7-5.2 s beside a 0.3 s write), so there the clip is encoded once decoded
        overlap = device.type == "cuda"
        try:
            video, latents, t_denoised = generate_clip(comm, parts, s, contexts, device,
                                                       progress if comm.rank == 0 else None,
                                                       writer.put if overlap else None)
            if overlap:
                torch.cuda.synchronize(device)  # decoded, not only queued: the phase's true end
        except BaseException:
            writer.close(abort=True)
            raise
        t_decoded = time.perf_counter()
        if not overlap:
            writer.put(video)
        return video, latents, t_denoised, t_decoded, writer.close()

    done = False
    try:
        try:
            # one clip length per process: compiled graphs specialised to it (traced in half the time: fast.py)
            forms = fast.accelerate(parts["unet"], compile=args.compile, any_length=False) if speed else nullcontext()
            # the VAE decoder on fast.py's kernels too, channels-last: at batch 32 1.6x faster on an H200 (run 39)
            decoder = fast.accelerate_decoder(parts["vae"]) if speed else nullcontext()
            with fast.compile_cache(args.compile_cache), parallel_temporal_layers(parts["unet"], scope), forms, decoder:
                if speed and not args.compile:  # Triton's kernels compiled side by side, not one by one in step 1
                    for n in sorted({stop - start for start, stop in split_frames(s.frames, ranks)}):
                        fast.compile_kernels(parts["unet"], latent_frame(parts["unet"], s), n, s.fps, parts["vae"],
                                             s.decode_batch)
                if real:
                    comm = DistComm()
                    video, latents, t_denoised, t_decoded, error = clip_to_mp4(comm)
                    errors = [None] * ranks
                    torch.distributed.all_gather_object(errors, error)  # every rank learns of any rank's failure
                else:  # emulated ranks write their segments at once too: ffmpeg encodes in processes of its own
                    results = run_ranks(ranks, clip_to_mp4)
                    video, latents = (torch.cat([r[i] for r in results]) for i in (0, 1))
                    t_denoised, t_decoded = results[0][2:4]
                    errors = [r[4] for r in results]
        finally:  # on Ctrl-C and errors too: the message that follows starts a line of its own
            if bar is not None:
                bar.close()
        timings["denoise"] = t_denoised - t_denoise
        timings["decode"] = t_decoded - t_denoised  # rank 0's
        timings["write"] = time.perf_counter() - t_decoded  # until every rank's mp4 is written
        failed = [e for e in errors if e is not None]
        if failed:
            raise OutputError(failed[0] + (f" (and {len(failed) - 1} more ranks failed)" if len(failed) > 1 else ""))
        if real and args.save_latents:  # the exact frames and latents of the whole video, on rank 0
            video, latents = gather_to_rank0(video, comm), gather_to_rank0(latents.float(), comm)
        if not rank0:
            done = True
            return None
        t = time.perf_counter()
        segments = video_segments(s.frames, ranks)
        if len(segments) > 1:
            join_segments(folder, segments, args.out, args.save_fps)
        else:  # its one segment is the video
            os.replace(os.path.join(folder, segments[0]), args.out)
        timings["join"] = time.perf_counter() - t
        t = time.perf_counter()
        root = os.path.splitext(args.out)[0]
        if args.save_latents:
            from safetensors.torch import save_file
            tensors = {"latents": latents.float().cpu().contiguous(), "frames": video.cpu().contiguous()}
            write_atomically(root + ".latents.safetensors", lambda tmp: save_file(tensors, tmp))
        timings["write"] += time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        sidecar = dict(settings=vars(args), world_size=ranks, emulated=args.emulate is not None, device=str(device),
                       dtype=str(dtype).replace("torch.", ""), frames_written=args.frames, timings=timings,
                       peak_memory_gib=torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda"
                       else None)

        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(sidecar, f, indent=1)
        write_atomically(root + ".json", dump)
        done = True
        return sidecar
    finally:
        # After the exchange no rank writes any more: the segments go on success (rank 0, once joined) and on any
        # failure (every rank that sees it), with the folders this run made if they are left empty
        if rank0 or not done:
            shutil.rmtree(folder, ignore_errors=True)
        if not done:
            for made in new_folders:  # innermost first
                try:
                    os.rmdir(made)
                except OSError:  # not empty (another rank's file, or someone else's) or gone: leave it
                    break


def gather_to_rank0(video, comm):
    """Rank 0 collects every rank's uint8 frames (padded to the longest clip for the collective)."""
    import torch.distributed as dist
    sizes = [torch.zeros((), dtype=torch.long, device=video.device) for _ in range(comm.world_size)]
    dist.all_gather(sizes, torch.tensor(len(video), device=video.device))
    longest = max(int(n) for n in sizes)
    padded = torch.cat([video, video.new_zeros((longest - len(video),) + video.shape[1:])])
    parts = [torch.empty_like(padded) for _ in range(comm.world_size)] if comm.rank == 0 else None
    dist.gather(padded, parts, dst=0)
    return torch.cat([p[:int(n)] for p, n in zip(parts, sizes)]) if comm.rank == 0 else None


def main(argv=None):
    """Exit codes: 0 done, 2 bad input (one line on stderr, no traceback), 130 interrupted, 1 the video could not be
    written (one line) or a bug (traceback)."""
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    torch.set_grad_enabled(False)
    rank = int(os.environ.get("RANK", 0))
    try:
        args = parse_args(argv)
        sidecar = run(args)
    except UserError as e:
        if rank == 0 or "WORLD_SIZE" not in os.environ or torch.distributed.is_initialized():
            print(f"sample.py: error: {e} (see --help)", file=sys.stderr)
        return 2
    except OutputError as e:  # a rank's write failure reaches every rank (exchanged), the join is rank 0's: one line
        if rank == 0:
            print(f"sample.py: error: {e}; no output written", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: one line, from rank 0
        if rank == 0:
            print("sample.py: interrupted; no output written", file=sys.stderr)
        return 130
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if sidecar is not None:
        print(f"wrote {args.out} ({sidecar['frames_written']} frames, {sidecar['world_size']} ranks, "
              f"{sidecar['timings']['total']:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
