"""Check that clip parallelism changes nothing: the same per-rank code, as emulated or real ranks, against one device.

    python simulate.py                               # tiny random VC2 UNet, 48 frames, 1..4 emulated ranks
    torchrun --nproc_per_node 4 simulate.py          # the same check with real ranks (gloo on CPU, NCCL on GPU)
    torchrun --nproc_per_node 2 simulate.py --compile  # ... the fast forms compiled (fast.accelerate)

For each number of ranks N it runs both forms of the clip-parallel layers, the plain ones of clip_parallel.py and the
fast ones of fast.py, prints max |clip-parallel - single device| / max |single device| of each and what each stage
sent, and exits non-zero if any such relative difference exceeds --tolerance. The single-device run is the same
dual-scope math computed the obvious way: the whole video on one device, plain GroupNorm and Conv3d, dense masked
attention.
"""
import argparse
import json
import math
import os
import sys
import tempfile
from contextlib import nullcontext

import torch
import torch.nn as nn

import fast
import model
from clip_parallel import STAGES, clip_forward, parallel_temporal_layers, run_ranks, swap
from dual_scope import DualScope, key_sets, reference_attention, split_frames

# A VC2-architecture UNet small enough for a laptop: every block kind, the real flags, narrow widths.
TINY_UNET = dict(
    in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[4, 2, 1], num_res_blocks=2,
    channel_mult=[1, 1, 2, 2], num_head_channels=16, context_dim=32, transformer_depth=1, use_linear=True,
    temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True, use_relative_position=False,
    use_causal_attention=False, addition_attention=True, fps_cond=True,
)


def randomize(module, seed):
    """Random weights everywhere, including the layers VC2 zero-initialises, so every temporal path shows.

    Drawn where the weights live: a full-size model built on a GPU gets its 1.4 B values in a second."""
    device = next(module.parameters()).device
    g = torch.Generator(device).manual_seed(seed)
    for name, p in module.named_parameters():
        r = torch.randn(p.shape, generator=g, device=device)
        if p.dim() > 1:
            p.data = r / p[0].numel() ** 0.5
        elif name.endswith("weight"):  # norms
            p.data = 1 + 0.1 * r
        else:
            p.data = 0.1 * r
    return module


def to_sequences(y, b, heads):  # ((b h w), n, (heads d)) -> (b, (h w heads), n, d): one sequence per position and head
    bhw, n, c = y.shape
    return y.reshape(b, bhw // b, n, heads, c // heads).permute(0, 1, 3, 2, 4).reshape(b, bhw // b * heads, n, c // heads)


def from_sequences(y, heads):  # inverse of to_sequences
    b, s, n, d = y.shape
    return y.reshape(b, s // heads, heads, n, d).permute(0, 1, 3, 2, 4).reshape(b * s // heads, n, heads * d)


class DenseDualScopeAttention(nn.Module):
    """The single-device oracle: dual-scope attention over all frames with a dense (frames x frames) mask."""

    def __init__(self, attn, scope, timesteps):
        super().__init__()
        self.attn, self.scope, self.timesteps = attn, scope, timesteps

    def forward(self, x, context=None):  # x: ((b h w), T, c)
        a, b = self.attn, self.timesteps.shape[0]
        q, k, v = (to_sequences(f(x), b, a.heads) for f in (a.to_q, a.to_k, a.to_v))
        return a.to_out(from_sequences(reference_attention(q, k, v, self.timesteps, self.scope), a.heads))


def single_device(unet, x, timesteps, context, fps, scope):
    """The whole video on one device with dual-scope temporal attention: the result clip parallelism must equal."""
    undo = []
    for m in unet.modules():
        if isinstance(m, model.TemporalTransformer):
            for block in m.transformer_blocks:
                for name in ("attn1", "attn2"):
                    undo.append(swap(block, name, DenseDualScopeAttention(getattr(block, name), scope, timesteps)))
    try:
        return unet(x, timesteps, context, fps)
    finally:
        for u in reversed(undo):
            u()


def emulate(unet, x, timesteps, context, fps, ranks, dual_scope, fast=False):
    """N emulated ranks in this process -> (output (b, c, T, h, w), traffic of each rank {stage: [messages, bytes]}).
    fast: the forms of fast.py (eager), else the plain ones of clip_parallel.py."""
    frames = x.shape[2]
    clips = split_frames(frames, ranks)

    def rank(comm):
        start, stop = clips[comm.rank]
        out = clip_forward(unet, comm, frames, x[:, :, start:stop], timesteps, context, fps)
        return out, comm.traffic

    with parallel_temporal_layers(unet, dual_scope), accelerated(unet, fast):
        results = run_ranks(ranks, rank)
    return torch.cat([out for out, _ in results], dim=2), [traffic for _, traffic in results]


def run_emulated(unet, x, timesteps, context, fps, ranks, dual_scope, fast=False):
    """The clip-parallel forward over `ranks` emulated ranks, reassembled: (b, c, T, h, w)."""
    return emulate(unet, x, timesteps, context, fps, ranks, dual_scope, fast)[0]


def accelerated(unet, on, compile=None):
    """fast.accelerate(unet), compiled with backend `compile` if given; a no-op context when `on` is false."""
    return fast.accelerate(unet, compile=bool(compile), backend=compile or "inductor") if on else nullcontext(unet)


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def traffic_table(traffic):
    rows = [f"    {'rank':>4} " + " ".join(f"{s + ' msgs':>12} {s + ' KiB':>12}" for s in STAGES)]
    for r, t in enumerate(traffic):
        rows.append(f"    {r:>4} " + " ".join(f"{t[s][0]:>12} {t[s][1] / 1024:>12.1f}" for s in STAGES))
    return "\n".join(rows)


def plot_scope(frames, ranks, scope, path, px=8):
    """SVG picture of K(i): row = query frame i, column = key frame j, px pixels per frame. Blue: local, orange:
    global, white: not attended; black lines: the clip boundaries of `ranks` ranks. Returns the SVG text."""
    local, glob = (m.tolist() for m in key_sets(frames, scope))
    side, x0, y0 = frames * px, 60, 40  # the matrix and its top left corner
    width, height = x0 + max(side + 190, 580), y0 + max(side, 80) + 46  # room for the legend and title

    def rect(x, y, dx, dy, fill, stroke="none"):
        return f'<rect x="{x}" y="{y}" width="{dx}" height="{dy}" fill="{fill}" stroke="{stroke}"/>'

    def text(x, y, s, anchor="middle", extra=""):
        return f'<text x="{x}" y="{y}" text-anchor="{anchor}"{extra}>{s}</text>'

    el = [rect(0, 0, width, height, "white"),
          text(x0, 20, f"dual-scope attention: T = {frames} frames, local window w = {scope.window(frames)}, "
                       f"k = {len(scope.global_indices(frames))} global frames, {ranks} ranks", "start"),
          rect(x0, y0, side, side, "white", "#999")]
    el += [rect(x0 + j * px, y0 + i * px, px, px, "#1f77b4" if local[i][j] else "#ff7f0e")
           for i in range(frames) for j in range(frames) if local[i][j] or glob[i][j]]
    for start, _ in split_frames(frames, ranks)[1:]:  # where one rank's clip ends and the next one's begins
        el += [rect(x0 + start * px, y0, 1, side, "black"), rect(x0, y0 + start * px, side, 1, "black")]
    step = 1 << ((frames - 1) // 8).bit_length()  # a tick every 1, 2, 4, 8, ... frames: at most 8 ticks
    for f in range(0, frames, step):
        el += [text(x0 + (f + 0.5) * px, y0 + side + 14, f), text(x0 - 4, y0 + (f + 0.5) * px + 4, f, "end")]
    el += [text(x0 + side / 2, y0 + side + 34, "key frame j"),
           text(0, 0, "query frame i", extra=f' transform="translate({x0 - 30},{y0 + side / 2}) rotate(-90)"')]
    legend = [("#1f77b4", "local: |i - j| &#8804; w"), ("#ff7f0e", "global, not local"),
              ("white", "not attended"), ("black", "rank clip boundary")]
    for n, (fill, label) in enumerate(legend):
        x, y = x0 + side + 16, y0 + 20 * n
        el += [rect(x, y + 5, 12, 2, fill) if fill == "black" else rect(x, y, 12, 12, fill, "#999"),
               text(x + 18, y + 11, label, "start")]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="12">\n' + "\n".join(el) + "\n</svg>\n")
    with open(path, "w") as f:
        f.write(svg)
    return svg


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `PROG: error: MESSAGE (see --help)`, exit code 2, from rank 0 only (under
    torchrun every rank checks the same arguments). Also bench.py's."""

    def error(self, message):
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def parse_args(argv=None):
    p = Parser(prog="simulate.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False)
    p.add_argument("--frames", type=int, default=48, help="video length T in latent frames (default 48)")
    p.add_argument("--ranks", type=int, default=4, help="check every N from 1 to this many emulated ranks "
                   "(ignored under torchrun, where the world size is N; default 4)")
    p.add_argument("--local-window", type=int, default=4, help="w: halo frames per side of each attention query (default 4)")
    p.add_argument("--global-frames", type=int, default=6, help="k: global frames spread over the video (default 6)")
    p.add_argument("--height", type=int, default=16, help="latent height, a multiple of 8 (image height / 8; "
                   "default 16)")
    p.add_argument("--width", type=int, default=16, help="latent width, a multiple of 8 (image width / 8; default 16)")
    p.add_argument("--timestep", type=int, nargs=2, default=[900, 300],
                   help="diffusion timesteps of the two batch elements, 0..999 (one per bias phase; default 900 300)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--checkpoint", help="use real weights: a VC2 model.ckpt or .safetensors (default: tiny random UNet)")
    p.add_argument("--config", help="JSON model config of --checkpoint (default: VideoCrafter2's sizes; only with "
                   "--checkpoint)")
    p.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                   help="compute dtype on both sides (default float32). float64 shows the methods agree beyond "
                        "rounding: random-weight UNets amplify float32 rounding by different amounts for different inputs")
    p.add_argument("--tolerance", type=float, help="max relative difference allowed "
                   "(default 1e-5 in float32, 1e-10 in float64)")
    p.add_argument("--compile", nargs="?", const="inductor", metavar="BACKEND",
                   help="torch.compile the fast forms (fast.accelerate) before their clip-parallel forward, to "
                        "check the compiled path; torchrun only. BACKEND: inductor (default, for GPUs) or eager "
                        "(dynamo's capture without code generation: seconds on a CPU)")
    p.add_argument("--plot", metavar="PATH", help="also write an SVG picture (PATH ends in .svg) of the key frames "
                   "each query frame attends to (local, global, the rank clips)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.tolerance is None:
        args.tolerance = 1e-5 if args.dtype == "float32" else 1e-10
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        p.error(f"--tolerance must be a finite number >= 0, got {args.tolerance}")
    for name in ("frames", "ranks"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    check_latent_size(p, args)
    if any(not 0 <= t <= 999 for t in args.timestep):
        p.error(f"--timestep must be two diffusion timesteps in 0..999, got {' '.join(map(str, args.timestep))}")
    if not 0 <= args.seed < 2 ** 63:
        p.error(f"--seed must be in 0..2**63-1, got {args.seed}")
    if args.compile and "WORLD_SIZE" not in os.environ:
        p.error("--compile needs real ranks (torchrun): emulated ranks are threads of one process")
    if args.compile and args.compile not in torch.compiler.list_backends(exclude_tags=()):
        p.error(f"--compile: unknown backend {args.compile!r} (known: "
                f"{', '.join(torch.compiler.list_backends())})")
    world = int(os.environ.get("WORLD_SIZE", 0))
    if world > args.frames:  # checked by every rank before anything is built; rank 0 says it
        p.error(f"--frames ({args.frames}) must be >= the number of ranks ({world}): every rank needs a frame")
    if args.ranks > args.frames and not world:
        p.error(f"--ranks ({args.ranks}) must not exceed --frames ({args.frames}): every rank needs a frame")
    for name in ("local_window", "global_frames"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.config and not args.checkpoint:
        p.error("--config is the config of --checkpoint: without one the tiny random UNet runs")
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        p.error(f"--checkpoint {args.checkpoint!r} "
                f"{'is a folder, not a file' if os.path.isdir(args.checkpoint) else 'does not exist'}")
    if args.config:
        import sample
        try:  # read and fully checked now, not after the model is built
            args.config = sample.read_model_config(args.config)
        except sample.UserError as e:
            p.error(str(e).replace("--model-config", "--config"))
    check_reference_fits(p, args)
    if args.plot and not args.plot.endswith(".svg"):
        p.error(f"--plot must end in .svg, got {args.plot!r}")
    if args.plot and args.frames > 300:  # up to frames x frames cells, one SVG rectangle each
        p.error(f"--plot draws a cell per (query, key) frame pair: at most 300 frames, got {args.frames}")
    for name in ("plot", "json"):  # found out now, not after the whole compute
        check_writable(p, f"--{name}", getattr(args, name))
    return args


def check_reference_fits(p, args):
    """The single-device reference attends densely over every pair of frames: its memory grows with frames^2. Measured
    on a CPU (float32, this tiny UNet): about 200 bytes per pair of frames per latent pixel (peak 2.5 GB at 200 frames
    of 16x16, 400 of 8x8); an estimate, refused before anything is built where it cannot fit."""
    import sample
    cuda = "WORLD_SIZE" in os.environ and torch.cuda.is_available()  # torchrun on GPUs: rank 0's GPU holds it
    have, name = sample.device_memory(torch.device("cuda", 0) if cuda else torch.device("cpu"))
    per_pair = 200 * (2 if args.dtype == "float64" else 1) * args.height * args.width
    if per_pair * args.frames ** 2 > have:
        p.error(f"--frames {args.frames} at a {args.height}x{args.width} latent: the single-device reference (dense "
                f"attention over every pair of frames) needs about {per_pair * args.frames ** 2 / 2 ** 30:,.0f} GiB "
                f"(an estimate), more than the {have / 2 ** 30:,.1f} GiB of {name}: at most about "
                f"{int((have / per_pair) ** 0.5)} frames at this size")


def check_writable(p, flag, path):  # also bench.py's
    """A file PATH can be written: its folder exists and takes a file, PATH is not a folder."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        p.error(f"{flag} {path!r} is a folder; expected a file path")
    if not os.path.isdir(folder):
        p.error(f"{flag}: folder {folder!r} does not exist")
    try:  # a real write (os.access says yes to root even on read-only places)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as e:
        p.error(f"{flag}: folder {folder!r} is not writable ({e.strerror})")


def check_latent_size(p, args):  # also bench.py's
    for name in ("height", "width"):
        if getattr(args, name) < 8 or getattr(args, name) % 8:
            p.error(f"--{name} (latent) must be a multiple of 8 (the UNet halves it 3 times), "
                    f"got {getattr(args, name)}")


def build(args, device):
    """The UNet and one batch of inputs (b = 2, one timestep per bias phase), identical on every rank."""
    if args.checkpoint:
        unet = model.load_videocrafter2(args.checkpoint, args.config)["unet"]
    else:
        unet = randomize(model.UNet(**TINY_UNET), args.seed)
    dtype = getattr(torch, args.dtype)
    unet = unet.eval().to(device=device, dtype=dtype)
    g = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(2, unet.input_blocks[0][0].in_channels, args.frames, args.height, args.width, generator=g)
    context = torch.randn(2, 77, unet.context_dim, generator=g)
    timesteps = torch.tensor(args.timestep)
    return unet, x.to(device, dtype), timesteps.to(device), context.to(device, dtype), 24


def main(argv=None):
    """Exit codes: 0 equal, 1 a difference above --tolerance (or a bug: traceback), 2 bad input (one line), 130
    interrupted."""
    args = parse_args(argv)
    rank = int(os.environ.get("RANK", 0))
    try:
        return compare(args)
    except model.CheckpointError as e:  # found when reading it: truncated, not a checkpoint, wrong model
        if rank == 0:
            print(f"simulate.py: error: {e} (see --help)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: one line, from rank 0
        if rank == 0:
            print("simulate.py: interrupted; no output written", file=sys.stderr)
        return 130


def compare(args):
    torch.set_grad_enabled(False)
    # A true float32 reference on GPUs too: PyTorch lets cuDNN convolutions use TF32 (10-bit mantissa) by default,
    # which would put ~1e-3 of rounding into the single-device side only (ClipTemporalConv is a float32 GEMM).
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    scope = DualScope(local_window=args.local_window, global_frames=args.global_frames)
    if "WORLD_SIZE" in os.environ:
        return main_torchrun(args, scope)
    unet, x, timesteps, context, fps = build(args, "cpu")
    reference = single_device(unet, x, timesteps, context, fps, scope)
    print(f"{args.frames} frames, {args.height}x{args.width} latents, local window {scope.local_window}, "
          f"{scope.global_frames} global frames, timesteps {args.timestep}, {args.dtype}")
    results, ok = [], True
    for n in range(1, args.ranks + 1):
        row = dict(ranks=n)
        for form in ("plain", "fast"):
            out, row["traffic"] = emulate(unet, x, timesteps, context, fps, n, scope, fast=form == "fast")
            row[form] = diff = rel_diff(out, reference)
            ok &= diff <= args.tolerance
            print(f"{n} emulated rank(s), {form + ' forms:':12} max |clip-parallel - single device| / max|single| = "
                  f"{diff:.2e}  {'ok' if diff <= args.tolerance else 'FAIL'}")
        print(traffic_table(row["traffic"]))
        results.append(row)
    finish(args, scope, results, ok)
    return 0 if ok else 1


def finish(args, scope, results, ok):
    from sample import write_atomically  # a Ctrl-C never leaves half a file
    if args.plot:
        write_atomically(args.plot, lambda tmp: plot_scope(args.frames, max(r["ranks"] for r in results), scope, tmp))
        print(f"wrote {args.plot}")
    if args.json:
        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump(dict(settings=vars(args), results=results, ok=ok), f, indent=1)
        write_atomically(args.json, dump)
    print("all equal within tolerance" if ok else f"FAILED: a difference exceeds {args.tolerance}")


def main_torchrun(args, scope):
    """Real ranks: each runs its clip; rank 0 compares the gathered video with its own single-device run."""
    import torch.distributed as dist

    from clip_parallel import DistComm, init_distributed
    device = init_distributed()
    try:
        comm = DistComm()
        unet, x, timesteps, context, fps = build(args, device)
        start, stop = split_frames(args.frames, comm.world_size)[comm.rank]
        pieces = {}
        for form in ("plain", "fast"):
            with parallel_temporal_layers(unet, scope), accelerated(unet, form == "fast", args.compile):
                out = clip_forward(unet, comm, args.frames, x[:, :, start:stop].contiguous(), timesteps, context, fps)
            pieces[form] = [None] * comm.world_size
            dist.all_gather_object(pieces[form], (out.cpu(), comm.traffic))
        ok = True
        if comm.rank == 0:
            reference = single_device(unet, x, timesteps, context, fps, scope).cpu()
            backend = dist.get_backend()
            row = dict(ranks=comm.world_size, backend=backend, compile=args.compile,
                       traffic=[p[1] for p in pieces["plain"]])
            for form, got in pieces.items():
                row[form] = diff = rel_diff(torch.cat([p[0] for p in got], dim=2), reference)
                ok &= diff <= args.tolerance
                print(f"{comm.world_size} real ranks ({backend}, {device}), {form} forms"
                      f"{', compiled' if args.compile and form == 'fast' else ''}: max |clip-parallel - single device| "
                      f"/ max|single| = {diff:.2e}  {'ok' if diff <= args.tolerance else 'FAIL'}")
            print(traffic_table(row["traffic"]))
            finish(args, scope, [row], ok)
        ok_all = [None] * comm.world_size
        dist.all_gather_object(ok_all, ok)
        return 0 if all(ok_all) else 1
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
