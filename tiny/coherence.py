"""Does clip-parallel sampling keep a long video coherent across clips? The paper's claim, measured on the tiny model.

    python -m tiny.coherence --out /tmp/coh                  # the full experiment: ~6 minutes on one H200
    python -m tiny.coherence --frames 64 --seeds 2 --out /tmp/coh   # a smoke run on a CPU
    python -m tiny.coherence --from-json docs/coherence.tracks.json.gz --out /tmp/coh   # metrics, table, plot again

A T-frame video is sampled four ways, with the same prompts, seeds and DDIM (sample.py's):
  independent  T/16 separate 16-frame videos, each the base model with its full attention: no communication
  exact        this project's clip-parallel dual scope (clip_parallel) over N emulated ranks
  published    the published implementation's approximations (tiny/published.py) over the same N ranks
  full         the model over all T frames at once with full temporal attention (the naive long run)
The published method runs on N = T/16 ranks by default: every rank holds 16 frames, so its seams are the
independent clips' seams. The exact method's video does not depend on N (the project's tests): 4 ranks, for speed.
Each length and method samples the single-prompt videos of every seed and the multi-prompt ones in one batch.
A reference row, "data", scores rendered training clips with the same prompts: what a perfect model would get.
--ablations adds the published method with one approximation at a time ("published:NAME").

Each frame is decoded and the detector of tiny/detect.py finds the shape: its track (found, x, y, colour, shape per
frame) is kept in OUT.tracks.json, and the metrics are computed from the tracks (recomputed with --from-json):
  identity    fraction of frames where the prompted colour and shape are found
  seam jump   mean position jump across a 16-frame seam (frames 15 -> 16, 31 -> 32, ...) over the mean jump
              between the other consecutive frames (floored at half a pixel): 1 is seamless
  jerk        mean |second difference| of the position per axis (px / frame^2), bounces at the walls excepted:
              0 is constant velocity
  on axis     the share of the motion along the prompt's axis (x for left/right, y for up/down): 1 keeps to it
  segments    multi-prompt videos (P prompts, equal parts of the timeline): fraction of frames showing their
              segment's prompt, and of segments where most frames do
Each metric is a mean over seeds with its 95 % confidence interval (Student t).
"""
import argparse
import gzip
from contextlib import nullcontext
import json
import math
import os
import sys
import time

import numpy as np
import torch

if __package__ in (None, ""):  # run as a file (python tiny/coherence.py): the repository root on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import model  # noqa: E402
from clip_parallel import clip_forward, parallel_temporal_layers, run_ranks  # noqa: E402
from dual_scope import DualScope, split_frames  # noqa: E402
from sample import ddim_sample, encode_prompts, frame_noise, make_schedule  # noqa: E402
from tiny import published  # noqa: E402

METHODS = ("independent", "exact", "published", "full")
REFERENCE = "data"  # rendered training data: the metrics' values for perfect videos
TINY = os.path.dirname(os.path.abspath(__file__))
CLIP = 16  # VideoCrafter2's training length: the independent clips and, by default, the frames per rank


# -----------------------------------------------------------------------------
# Sampling: one forward per method, the same DDIM around each

def independent_forward(unet, fps):
    def forward(x, t, ctx):  # x (B, c, T, h, w), t (B,), ctx (B, T, 77, d): T/16 separate 16-frame videos
        B, c, T, h, w = x.shape
        m = T // CLIP
        clips = x.unflatten(2, (m, CLIP)).transpose(1, 2).flatten(0, 1)  # (B m, c, 16, h, w)
        out = unet(clips, t.repeat_interleave(m), ctx.unflatten(1, (m, CLIP)).flatten(0, 1), fps)
        return out.unflatten(0, (B, m)).transpose(1, 2).flatten(2, 3)
    return forward


def full_forward(unet, fps):
    return lambda x, t, ctx: unet(x, t, ctx, fps)


def ranked_forward(unet, fps, ranks, clip_fn):
    """The forward of N emulated ranks, each on its clip (clip_fn: a clip_forward, inside its layer swaps)."""
    def forward(x, t, ctx):
        T = x.shape[2]
        clips = split_frames(T, ranks)

        def rank(comm):
            start, stop = clips[comm.rank]
            return clip_fn(unet, comm, T, x[:, :, start:stop], t, ctx[:, start:stop], fps)
        return torch.cat(run_ranks(ranks, rank), dim=2)
    return forward


def exact_noise(seeds, frames, latent, steps, device):
    """Noise of every DDIM step (step 0: x_T) for every seed: frame f at step s depends on (seed, s, f) only."""
    return [torch.cat([frame_noise(seed, s, range(frames), latent) for seed in seeds]).to(device)
            for s in range(steps + 1)]


def published_noise(seeds, frames, latent, steps, ranks, device):
    """The published noise: rank r draws its clip from a generator seeded with seed + r, step after step."""
    clips = split_frames(frames, ranks)
    gens = {seed: published.rank_noise_generators(seed, ranks) for seed in seeds}
    return [torch.cat([torch.cat([torch.randn((1, latent[0], e - s) + latent[1:], generator=g)
                                  for (s, e), g in zip(clips, gens[seed])], dim=2) for seed in seeds]).to(device)
            for _ in range(steps + 1)]


def published_opts(method, scope):
    """The approximations of a published method: "published" all of them, "published:NAME" that one alone."""
    name = method.partition(":")[2]
    return published.Published.only(name, scope=scope) if name else published.Published(scope=scope)


def frame_prompts(frames, prompts, opts, ranks):
    """Index of the prompt each frame shows: P equal parts of the timeline; the published code: by rank."""
    if opts is not None and opts.rank_prompt:
        return [published.prompt_of_rank(r, ranks, prompts) for r, (s, e) in enumerate(split_frames(frames, ranks))
                for _ in range(s, e)]
    return [f * prompts // frames for f in range(frames)]


def progress_lines(what, t0, every=5):
    """A ddim_sample progress callback: a line every `every` steps (the run's log on a device)."""
    def report(i, total):
        if (i + 1) % every == 0 or i + 1 == total:
            print(f"  {what}: step {i + 1}/{total}, {time.perf_counter() - t0:.0f} s", flush=True)
    return report


def sample_latents(parts, method, videos, seeds, frames, ranks, s, device, progress=None):
    """DDIM latents (S, 4, T, h, w) of `method`: videos[i] is a list of prompt texts (P >= 1 segments), seeds[i]
    its seed. ranks: N of the exact and published methods."""
    unet = parts["unet"]
    latent = (4, s.height // 8, s.width // 8)
    schedule = make_schedule(s.steps, s.eta)
    steps = len(schedule.timesteps)
    unique = sorted(set(seeds))
    opts = published_opts(method, s.scope) if method.startswith("published") else None
    if opts is not None and opts.rank_noise:
        noise = published_noise(unique, frames, latent, steps, ranks, device)
    else:
        noise = exact_noise(unique, frames, latent, steps, device)
    pick = torch.tensor([unique.index(seed) for seed in seeds], device=device)
    cond, uncond = [], None
    for prompts in videos:
        c, uncond = encode_prompts(parts, prompts, device)  # (P, 77, d), (1, 77, d)
        cond.append(c[torch.tensor(frame_prompts(frames, len(prompts), opts, ranks))])  # (T, 77, d)
    dtype = next(unet.parameters()).dtype
    uncond = uncond[:, None].expand(len(videos), frames, -1, -1)
    context = torch.cat([torch.stack(cond), uncond]).to(device, dtype)  # (2S, T, 77, d): cond of each video, uncond

    if method == "independent":
        forward = independent_forward(unet, s.fps)
    elif method == "full":
        forward = full_forward(unet, s.fps)
    elif method == "exact":
        forward = ranked_forward(unet, s.fps, ranks, clip_forward)
    else:
        forward = ranked_forward(unet, s.fps, ranks, published.clip_forward)

    def eps_fn(x, t):
        tt = torch.full((2 * len(x),), t, device=device)
        return forward(torch.cat([x, x]).to(dtype), tt, context).float().chunk(2)

    def run():
        return ddim_sample(eps_fn, noise[0][pick], schedule, s.guidance, lambda i, x: noise[i + 1][pick],
                           progress)[0]

    if method == "exact":
        with parallel_temporal_layers(unet, s.scope):
            return run()
    if opts is not None:
        with published.published_layers(unet, opts):
            return run()
    return run()


@torch.no_grad()
def decode(parts, z, batch=512):
    """Latents (S, 4, T, h, w) -> uint8 frames (S, T, H, W, 3) on the CPU."""
    vae, S, T = parts["vae"], z.shape[0], z.shape[2]
    flat = (z.transpose(1, 2).flatten(0, 1) / parts["scale_factor"]).to(next(vae.parameters()).dtype)
    out = []
    for i in range(0, len(flat), batch):
        img = vae.decode(flat[i:i + batch]).float()
        out.append(((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu())
    return torch.cat(out).unflatten(0, (S, T)).numpy()


# -----------------------------------------------------------------------------
# Metrics from tracks: found (T,) bool, x, y (T,) float pixels, colour, shape (T,) str ("" when not found)

def identity(track, colours, shapes):
    """Fraction of frames showing the expected colour and shape (per frame: multi-prompt videos have segments)."""
    ok = [f and c == ec and s == es for f, c, s, ec, es in zip(track["found"], track["colour"], track["shape"],
                                                                colours, shapes)]
    return float(np.mean(ok))


def jumps(track):
    """|p[f] - p[f-1]| for f = 1..T-1 (NaN where either frame has no detection)."""
    p = np.stack([track["x"], track["y"]], 1).astype(float)
    found = np.asarray(track["found"], bool)
    d = np.linalg.norm(p[1:] - p[:-1], axis=1)
    d[~(found[1:] & found[:-1])] = np.nan
    return d


def seam_jump(track, seam=CLIP, floor=0.5):
    """(mean jump across the seams f = seam, 2 seam, ..., mean jump between the other consecutive frames, their
    ratio): 1 is seamless. Means on both sides: a generated track's jumps are heavy-tailed (a mean over a median is
    about 2 with no seam at all). The within mean is floored at `floor` pixels: a still shape does not divide by 0."""
    d = jumps(track)
    at_seam = (np.arange(1, len(d) + 1) % seam) == 0
    across, within = d[at_seam], d[~at_seam]
    across, within = across[~np.isnan(across)], within[~np.isnan(within)]
    if not len(across) or not len(within):
        return math.nan, math.nan, math.nan
    a, m = float(across.mean()), float(within.mean())
    return a, m, a / max(m, floor)


def on_axis(track, direction):
    """The share of the motion along the prompt's axis (x for left and right, y for up and down): sum |dx| over
    sum |dx| + |dy| between consecutive frames both found, or the same with y. 1: the shape keeps to its axis, as in
    the training data (which bounce back and forth on it); 0.5: it moves as much across it."""
    p = np.stack([track["x"], track["y"]], 1).astype(float)
    found = np.asarray(track["found"], bool)
    step = np.abs(p[1:] - p[:-1])[found[1:] & found[:-1]]
    total = step.sum()
    return float(step[:, 0 if direction in ("left", "right") else 1].sum() / total) if total > 0 else math.nan


def jerk(track, width, height, margin=0.25):
    """Mean |p[f+1] - 2 p[f] + p[f-1]| per axis over frames found three in a row, bounces excepted: on an axis where
    the shape is within `margin` of the frame of a wall and its velocity changes sign in f-2..f+1 (a reflection
    can take two frames to show). 0 is motion at constant velocity; noise of sigma pixels gives about 2 sigma."""
    p = np.stack([track["x"], track["y"]], 1).astype(float)
    found = np.asarray(track["found"], bool)
    T = len(p)
    if T < 3:
        return math.nan
    v = p[1:] - p[:-1]  # v[f] = p[f+1] - p[f]
    a = v[1:] - v[:-1]  # a[f-1]: the second difference around frame f
    flip = np.zeros((T, 2), bool)
    flip[1:-1] = np.sign(v[1:]) * np.sign(v[:-1]) < 0  # at frame f: v[f-1] and v[f] point opposite ways
    near_flip = flip[:-2] | flip[1:-1] | flip[2:]
    size = np.array([width, height], float)
    centre = p[1:-1]
    near_wall = (centre < margin * size) | (centre > (1 - margin) * size)
    keep = (found[:-2] & found[1:-1] & found[2:])[:, None] & ~(near_flip & near_wall)
    if not keep.any():
        return math.nan
    return float(np.abs(a[keep]).mean())


def segments(track, prompts, frames):
    """(fraction of frames showing their segment's prompt, fraction of segments where most frames do)."""
    P = len(prompts)
    seg = [f * P // frames for f in range(frames)]
    colours, shapes = [prompts[i][0] for i in seg], [prompts[i][1] for i in seg]
    ok = np.array([f and c == ec and s == es for f, c, s, ec, es in zip(track["found"], track["colour"],
                                                                       track["shape"], colours, shapes)])
    shown = [ok[np.array(seg) == i].mean() > 0.5 for i in range(P)]
    return float(ok.mean()), float(np.mean(shown))


def video_metrics(track, prompts, frames, width, height):
    """Every metric of one video of width x height pixels; prompts: [(colour, shape, direction)] (one: a
    single-prompt video)."""
    if len(prompts) == 1:
        a, m, r = seam_jump(track)
        c, s = prompts[0][0], prompts[0][1]
        return dict(identity=identity(track, [c] * frames, [s] * frames), found=float(np.mean(track["found"])),
                    seam_jump_px=a, within_jump_px=m, seam_ratio=r, jerk=jerk(track, width, height),
                    on_axis=on_axis(track, prompts[0][2]))
    match, shown = segments(track, prompts, frames)
    return dict(segment_match=match, segments_shown=shown)


T_95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def summarise(values):
    """mean, std, 95 % CI half-width (Student t) and n of the finite values."""
    v = np.array([x for x in values if x is not None and math.isfinite(x)], float)
    if not len(v):
        return dict(mean=math.nan, std=math.nan, ci95=math.nan, n=0)
    std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
    t = T_95[min(len(v) - 2, len(T_95) - 1)] if len(v) > 1 else math.nan
    return dict(mean=float(v.mean()), std=std, ci95=t * std / len(v) ** 0.5 if len(v) > 1 else math.nan, n=len(v))


# -----------------------------------------------------------------------------
# Prompts and the detector (tiny/data.py, tiny/detect.py)

def vocabulary():
    """(colours, shapes, directions) of the tiny model's prompt grammar (tiny/data.py); black background."""
    from tiny import data
    return list(data.SHAPE_COLOURS), list(data.SHAPES), list(data.DIRECTIONS)


def prompts_for(seed, count):
    """`count` prompts for a seed, drawn from it: (colour, shape, direction); in a multi-prompt video each prompt
    differs from the one before in colour and in shape, so the detector can tell the segments apart."""
    colours, shapes, directions = vocabulary()
    rng = np.random.default_rng(10_000 * count + seed)
    out = []
    for _ in range(count):
        while True:
            p = (str(rng.choice(colours)), str(rng.choice(shapes)), str(rng.choice(directions)))
            if not out or (p[0] != out[-1][0] and p[1] != out[-1][1]):
                break
        out.append(p)
    return out


def prompt_text(p):
    return f"a {p[0]} {p[1]} moving {p[2]}"


def largest_blob(mask):
    """tiny/detect.py's largest 4-connected blob through scipy's labelling, where scipy is installed: the same blob
    (labels are numbered in the raster order in which detect.py's search meets them, ties go to the first), some
    ten times faster. The experiment detects 10^5 frames."""
    from scipy import ndimage
    labels, count = ndimage.label(mask)  # 4-connected: the default structure
    if not count:
        return np.zeros_like(mask)
    return labels == 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))


def track_video(video):
    """uint8 frames (T, H, W, 3) -> track: lists found, x, y, colour, shape (tiny/detect.py; "" when not found)."""
    from tiny import detect
    searched = detect.largest_blob
    try:
        import scipy.ndimage  # noqa: F401
        detect.largest_blob = largest_blob  # for this call only: detect.py stays as it is for everyone else
    except ImportError:
        pass
    try:
        dets = detect.detect(video)
    finally:
        detect.largest_blob = searched
    return dict(found=[bool(d.found) for d in dets], x=[round(float(d.x), 3) for d in dets],
                y=[round(float(d.y), 3) for d in dets],
                colour=[d.colour or "" for d in dets], shape=[d.shape or "" for d in dets])


def track_videos(videos, pool):
    """Tracks of uint8 videos (S, T, H, W, 3), over a process pool (None: here)."""
    return list(pool.map(track_video, videos)) if pool else [track_video(v) for v in videos]


# -----------------------------------------------------------------------------
# The experiment

class Settings:
    def __init__(self, args, scope):
        self.height, self.width, self.steps, self.eta = args.height, args.width, args.steps, args.eta
        self.guidance, self.fps, self.scope = args.guidance, args.fps, scope


def cells(args):
    """(T, method) in the order they run: every method at a length, the lengths in the order given; then the
    published approximations one at a time ("published:NAME")."""
    return [(T, m) for T in args.frames for m in args.methods] + \
        [(T, f"published:{a}") for T in args.ablation_frames for a in args.ablations]


def ranks_of(method, T, args):
    if method == "exact":
        return args.exact_ranks
    if method.startswith("published"):
        return args.ranks or T // CLIP
    return None


def run_experiment(args, parts, device, write, pool=None):
    """Every (T, method): the single-prompt videos of every seed and the multi-prompt ones, sampled together."""
    scope = DualScope(local_window=args.local_window, global_frames=args.global_frames)
    s = Settings(args, scope)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    modes = [("single", 1)] + ([("multi", args.multi_prompts)] if args.multi_prompts > 1 else [])
    jobs = [(mode, P, seed) for mode, P in modes for seed in seeds]  # one video each
    results = dict(settings={k: v for k, v in vars(args).items() if k not in ("out", "from_json")}, cells=[])
    # seconds per frame of one DDIM batch of each method, measured as we go: with the batch's videos on one GPU the
    # time goes to the ranks' launches more than to the arithmetic, so it scales with T, not with the batch size
    t_start, rate, strips = time.perf_counter(), {}, {}
    batches = -(-len(jobs) // args.batch)
    for T in args.frames:  # the metrics of the training data itself: what a perfect model would score
        results["cells"].append(reference_cell(T, seeds, args.width, args.height, pool))
    for T, method in cells(args):
        if T % CLIP:
            raise SystemExit(f"--frames: {T} is not a multiple of {CLIP} (the independent clips' length)")
        ranks = ranks_of(method, T, args)
        spent = time.perf_counter() - t_start
        guess = rate.get(method, max(rate.values(), default=0)) * T * batches
        if args.budget and spent + guess > args.budget:
            print(f"skip T={T} {method}: ~{guess:.0f} s to do, {args.budget - spent:.0f} s of the budget left",
                  flush=True)
            results["cells"] += [dict(mode=m, frames=T, method=method, ranks=ranks, skipped=True) for m, _ in modes]
            continue
        t0 = time.perf_counter()
        prompts = [prompts_for(seed, P) for _, P, seed in jobs]
        tracks, first = [], None
        for i in range(0, len(jobs), args.batch):  # videos in batches: one DDIM for a batch
            z = sample_latents(parts, method, [[prompt_text(p) for p in ps] for ps in prompts[i:i + args.batch]],
                               [seed for _, _, seed in jobs[i:i + args.batch]], T, ranks, s, device,
                               progress_lines(f"T={T} {method}", t0))
            videos = decode(parts, z)
            first = videos[0] if first is None else first
            tracks += track_videos(videos, pool)
        seconds = time.perf_counter() - t0
        rate[method] = seconds / (T * batches)
        for mode, _ in modes:
            own = [i for i, job in enumerate(jobs) if job[0] == mode]
            cell = dict(mode=mode, frames=T, method=method, ranks=ranks, seeds=[jobs[i][2] for i in own],
                        prompts=[prompts[i] for i in own], seconds_with_other_mode=seconds,
                        tracks=[tracks[i] for i in own])
            add_metrics(cell, args.width, args.height)
            results["cells"].append(cell)
            print(f"T={T} {method:<11} {mode:<6} {seconds:6.1f} s  " + "  ".join(
                f"{k} {v['mean']:.3f}" for k, v in cell["summary"].items()), flush=True)
        if T == args.frames[0]:  # a look at the first video of each method (every other frame of 64)
            strips[method] = first[:64:2]
            write_strip(strips, args.out + ".strip.png")
        write(results)
    return results


def reference_cell(T, seeds, width, height, pool):
    """The single-prompt metrics of rendered training-data videos (tiny/data.py) with each seed's prompt: a scene
    of a random speed and start, as the model was trained on, T frames long. The detector's pixel grid makes the
    seam ratio and jerk of perfect motion not exactly 1 and 0."""
    from tiny import data
    prompts = [prompts_for(seed, 1) for seed in seeds]
    videos = []
    for seed, ((colour, shape, direction),) in zip(seeds, prompts):
        scene = data.random_scene(np.random.default_rng(seed))
        scene = data.Scene(shape, colour, direction, "black", scene.speed, scene.x, scene.y)
        videos.append(data.render(scene, T)[0].numpy())
    cell = dict(mode="single", frames=T, method="data", ranks=None, seeds=seeds, prompts=prompts,
                tracks=track_videos(videos, pool))
    add_metrics(cell, width, height)
    return cell


def write_strip(strips, path):
    """One row of frames per method, the rows in METHODS order: a PNG to look at what the metrics measured."""
    import imageio.v3 as iio
    rows = [np.concatenate(list(strips[m]), axis=1) for m in METHODS if m in strips]
    iio.imwrite(path, np.concatenate(rows, axis=0))


def add_metrics(cell, width, height):
    per_seed = [video_metrics(tr, [tuple(p) for p in ps], cell["frames"], width, height)
                for tr, ps in zip(cell["tracks"], cell["prompts"])]
    cell["metrics"] = per_seed
    cell["summary"] = {k: summarise([m[k] for m in per_seed]) for k in per_seed[0]} if per_seed else {}


# -----------------------------------------------------------------------------
# Report: markdown table and one plot

COLUMNS = [("identity", "identity", 100, "%"), ("seam_ratio", "seam jump / other jumps", 1, ""),
           ("seam_jump_px", "seam jump px", 1, ""), ("jerk", "jerk px/frame²", 1, ""),
           ("on_axis", "motion on the prompt's axis", 100, "%"),
           ("segment_match", "multi-prompt frames right", 100, "%"), ("segments_shown", "segments shown", 100, "%")]


def fmt(summary, scale):
    if summary is None or not summary["n"]:
        return "–"
    ci = summary["ci95"]
    return f"{summary['mean'] * scale:.1f} ± {ci * scale:.1f}" if math.isfinite(ci) else f"{summary['mean'] * scale:.1f}"


def table(results):
    cells = {(c["mode"], c["frames"], c["method"]): c for c in results["cells"] if not c.get("skipped")}
    lengths = sorted({k[1] for k in cells})
    methods = [m for m in (REFERENCE,) + METHODS if any(k[2] == m for k in cells)]
    methods += sorted({k[2] for k in cells} - set(METHODS) - {REFERENCE})  # the approximations alone
    head = "| frames | method | " + " | ".join(f"{name}{' (' + unit + ')' if unit else ''}"
                                                for _, name, _, unit in COLUMNS) + " | seeds |"
    rows = [head, "|" + "---|" * (len(COLUMNS) + 3)]
    for T in lengths:
        for m in methods:
            single, multi = cells.get(("single", T, m)), cells.get(("multi", T, m))
            if not (single or multi):  # e.g. the ablations, run at one length only
                continue
            vals = []
            for key, _, scale, _ in COLUMNS:
                src = multi if key.startswith("segment") else single
                vals.append(fmt(src["summary"].get(key) if src else None, scale))
            n = max([len(c["seeds"]) for c in (single, multi) if c] or [0])
            rows.append(f"| {T} | {m} | " + " | ".join(vals) + f" | {n} |")
    st = results["settings"]
    note = (f"\nMean ± 95 % CI over seeds; DDIM {st['steps']} steps, eta {st['eta']}, guidance {st['guidance']}, "
            f"{st['width']}x{st['height']} pixels; exact on {st['exact_ranks']} ranks, published on "
            f"{st['ranks'] or 'T/16'}; multi-prompt videos: {st['multi_prompts']} prompts.\n")
    return "\n".join(rows) + "\n" + note


PAIRED = [("identity", "identity", 100, "%"), ("found", "a shape found", 100, "%"), ("seam_ratio", "seam ratio", 1, ""),
          ("jerk", "jerk", 1, "px/frame²")]


def paired_table(results, against="exact"):
    """Each method minus `against`, seed by seed (the same prompts and, but for the published noise, the same
    noise): mean ± 95 % CI of the differences, tighter than comparing the two means' intervals."""
    cells = {(c["frames"], c["method"]): c for c in results["cells"] if not c.get("skipped") and c["mode"] == "single"}
    rows = [f"| frames | method − {against} | " + " | ".join(f"{name}{' (' + unit + ')' if unit else ''}"
                                                          for _, name, _, unit in PAIRED) + " | seeds |",
            "|" + "---|" * (len(PAIRED) + 3)]
    order = {m: i for i, m in enumerate(METHODS)}
    for (T, m), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], order.get(kv[0][1], 99), kv[0][1])):
        base = cells.get((T, against))
        if m in (against, REFERENCE) or base is None:
            continue
        mine = dict(zip(cell["seeds"], cell["metrics"]))
        theirs = dict(zip(base["seeds"], base["metrics"]))
        common = [sd for sd in mine if sd in theirs]
        vals = []
        for key, _, scale, _ in PAIRED:
            d = summarise([mine[sd][key] - theirs[sd][key] for sd in common])
            vals.append(f"{d['mean'] * scale:+.1f} ± {d['ci95'] * scale:.1f}" if d["n"] > 1 else "–")
        rows.append(f"| {T} | {m} | " + " | ".join(vals) + f" | {len(common)} |")
    return "\n".join(rows) + "\n"


def plot(results, path):
    """One PNG: identity, seam ratio, jerk and multi-prompt match against the video length, a line per method."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("identity", "identity (%)", 100, "single"), ("seam_ratio", "seam jump / other jumps", 1, "single"),
              ("jerk", "jerk (px/frame²)", 1, "single"), ("segment_match", "multi-prompt frames right (%)", 100,
                                                             "multi")]
    cells = [c for c in results["cells"] if not c.get("skipped")]
    panels = [p for p in panels if any(c["mode"] == p[3] for c in cells)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 2.6), dpi=100)
    axes = np.atleast_1d(axes)
    for ax, (key, label, scale, mode) in zip(axes, panels):
        for i, m in enumerate(METHODS):
            pts = sorted((c["frames"], c["summary"][key]) for c in cells
                         if c["method"] == m and c["mode"] == mode and key in c["summary"])
            if not pts:
                continue
            T = np.array([p[0] for p in pts]) * (1 + 0.04 * (i - 1.5))  # spread the methods a little
            mean = np.array([p[1]["mean"] for p in pts]) * scale
            ci = np.nan_to_num(np.array([p[1]["ci95"] for p in pts]) * scale)
            ax.errorbar(T, mean, yerr=ci, marker="o", ms=3, capsize=2, label=m)
        ref = sorted((c["frames"], c["summary"][key]["mean"] * scale) for c in cells
                     if c["method"] == REFERENCE and key in c["summary"])
        if ref:
            ax.plot([r[0] for r in ref], [r[1] for r in ref], ls="--", color="gray", label="training data")
        ax.set_xscale("log", base=2)
        lengths = sorted({c["frames"] for c in cells})
        ax.set_xticks(lengths, [str(T) for T in lengths])
        ax.minorticks_off()
        ax.set_xlabel("frames")
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results, out):
    """OUT.json (settings, per-video metrics, summaries), OUT.tracks.json (the same with every detector track:
    --from-json recomputes the metrics from it), OUT.table.md (the table) and OUT.png (the plot, where matplotlib
    is)."""
    def dump(path, text):
        tmp = path + ".partial"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    dump(out + ".tracks.json", json.dumps(results))
    dump(out + ".json", json.dumps(dict(results, cells=[{k: v for k, v in c.items() if k != "tracks"}
                                                        for c in results["cells"]]), indent=1))
    if any(not c.get("skipped") for c in results["cells"]):
        dump(out + ".table.md", table(results) + "\nPaired differences:\n\n" + paired_table(results))
        try:
            plot(results, out + ".png")
        except ImportError:
            pass  # matplotlib is no dependency of the project: the plot is made where it is installed


# -----------------------------------------------------------------------------

def load_parts(args, device, dtype):
    if args.random_weights:
        from simulate import randomize
        with open(args.model_config) as f:
            config = json.load(f)
        parts = dict(unet=randomize(model.UNet(**config["unet"]), 0), vae=randomize(model.AutoencoderKL(
            **config["vae"]), 1), text=randomize(model.TextEncoder(**config["text"]), 2), tokenizer=model.Tokenizer(),
            scale_factor=config.get("scale_factor", 0.18215))
        for k in ("unet", "vae", "text"):
            parts[k] = parts[k].to(device=device, dtype=dtype).eval().requires_grad_(False)
        return parts
    return model.load_videocrafter2(args.checkpoint, args.model_config, dtype=dtype, device=device)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--frames", type=int, nargs="+", default=[64, 256, 1024], help="video lengths T, multiples of 16 "
      "(default 64 256 1024)")
    a("--seeds", type=int, default=16, help="videos per length and method, seeds first-seed.. (default 16)")
    a("--first-seed", type=int, default=0, help="first seed (default 0)")
    a("--methods", nargs="+", choices=METHODS, default=list(METHODS), help="which ways to sample (default all four)")
    a("--ranks", type=int, help="N of the published method (default T/16: 16 frames per rank, its seams are the "
      "independent clips' seams)")
    a("--exact-ranks", type=int, default=4, help="N of the exact method (default 4; its video is the same for "
      "every N, so N is only a matter of speed)")
    a("--multi-prompts", type=int, default=2, help="P prompts per multi-prompt video; 1 skips those videos "
      "(default 2)")
    a("--ablations", nargs="*", choices=published.APPROXIMATIONS, default=[], help="after the rest, sample with "
      "each of these approximations of the published method alone, as method published:NAME (default none)")
    a("--ablation-frames", type=int, nargs="+", default=[256], help="video lengths of the ablations (default 256)")
    a("--checkpoint", default=os.path.join(TINY, "tiny_vc2.safetensors"), help="weights of the model (default: "
      "the tiny model's, tiny/tiny_vc2.safetensors)")
    a("--model-config", default=os.path.join(TINY, "config.json"), help="its JSON model config (default "
      "tiny/config.json)")
    a("--random-weights", action="store_true", help="random weights from --model-config (to try the pipeline)")
    a("--height", type=int, default=64, help="video height in pixels (default 64, the tiny model's)")
    a("--width", type=int, default=64, help="video width in pixels (default 64)")
    a("--steps", type=int, default=20, help="DDIM steps (default 20, as sample.py --tiny)")
    a("--eta", type=float, default=1.0, help="DDIM eta (default 1.0)")
    a("--guidance", type=float, default=5.0, help="classifier-free guidance (default 5, as sample.py --tiny)")
    a("--fps", type=int, default=24, help="fps conditioning (default 24)")
    a("--local-window", type=int, default=8, help="dual scope w, also the published attention padding (default 8)")
    a("--global-frames", type=int, default=16, help="dual scope k, also the published top_k (default 16)")
    a("--batch", type=int, default=64, help="videos sampled together in one DDIM batch (default 64)")
    a("--workers", type=int, default=os.cpu_count(), help="processes that run the detector (default: one per "
      "CPU core)")
    a("--budget", type=float, help="seconds: skip what would not finish in them (estimated from what ran)")
    a("--dtype", choices=["fp32", "bf16"], default="fp32", help="model dtype (default fp32)")
    a("--out", required=True, help="output path without extension: OUT.json, OUT.tracks.json, OUT.table.md, OUT.png, "
      "OUT.strip.png")
    a("--from-json", metavar="PATH", help="recompute metrics, table and plot from an OUT.tracks.json, or .json.gz "
      "(no sampling)")
    args = p.parse_args(argv)
    return args


def main(argv=None):
    args = parse_args(argv)
    torch.set_grad_enabled(False)
    if args.from_json:
        with (gzip.open if args.from_json.endswith(".gz") else open)(args.from_json, "rt") as f:
            results = json.load(f)
        for cell in results["cells"]:
            if not cell.get("skipped"):
                add_metrics(cell, results["settings"]["width"], results["settings"]["height"])
        write_report(results, args.out)
        print(table(results))
        return 0
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    import multiprocessing
    # the detector's processes, forked before CUDA starts in this one
    # one torch thread a worker: forked workers that each start a thread per core oversubscribe the CPUs many times
    with multiprocessing.get_context("fork").Pool(args.workers, initializer=torch.set_num_threads, initargs=(1,)) \
            if args.workers > 1 else nullcontext() as pool:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        parts = load_parts(args, device, dict(fp32=torch.float32, bf16=torch.bfloat16)[args.dtype])
        results = run_experiment(args, parts, device, lambda r: write_report(r, args.out), pool)
    write_report(results, args.out)
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
