"""Forward-pass benchmark of the clip-parallel VideoCrafter2 UNet (random weights), one table per run.

    python bench.py                                  # 1 GPU: n = 24, 128, 288 frames, batch 2 (CFG), 320x512, bf16
    python bench.py --cuda-graph                     # the same, each forward replayed as a CUDA graph (README)
    torchrun --nproc_per_node 2 bench.py             # N GPUs, n frames PER GPU (an N*n-frame video), NCCL
    python bench.py --smoke --json out.json          # CPU smoke test: the tiny UNet of simulate.py, float32
    python bench.py --e2e --frames 2300 --steps 30   # end to end through sample.py (random weights), per phase

Per n: ms per forward (median over --iters after --warmup, CUDA events), ms per frame, FLOPs per forward
(torch.utils.flop_counter on one single-GPU forward at that n: PyTorch's ops only, so on a GPU without --compile it
misses fast.py's Triton GEGLU GEMMs and dual-scope attention, and TFLOP/s and MFU read low), TFLOP/s, MFU against the
matmul peak of --dtype
measured here (torch.mm of 8192^3), peak memory (torch.cuda.max_memory_allocated), and under torchrun the same forward
with no communication (every rank alone on its own n frames, all at once): comm ratio = with / without.
First a correctness check: the --dtype clip-parallel output against a float32 run of the same weights and
inputs (float64 when --dtype is float32), relative L2 error, within TOLERANCE (fp16 1e-2, bf16 3e-2).
"""
import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import time
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

import fast
import model
from clip_parallel import (DistComm, EmulatedComm, EmulatedGroup, clip_forward, init_distributed,
                           parallel_temporal_layers)
from dual_scope import DualScope
from simulate import TINY_UNET, Parser, check_latent_size, check_writable, randomize

# Relative L2 error allowed against the float32 (float64) reference. With random weights the UNet amplifies rounding:
# fp16 (11-bit mantissa) measures 2.6e-3, bf16 (8-bit) 8x that, 2.1e-2, on an H200 and on the CPU alike, before and
# after the speed work (docs/BENCH.md): bf16's bound is its precision, not a looser check of the code.
TOLERANCE = {"float16": 1e-2, "bfloat16": 3e-2, "float32": 1e-5}


def parse_args(argv=None):
    p = Parser(prog="bench.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
               allow_abbrev=False)
    p.add_argument("--frames-per-gpu", type=int, nargs="+", help="clip lengths n to time (default 24 128 288; "
                   "--smoke: 4 8)")
    p.add_argument("--dtype", choices=["bfloat16", "float16", "float32"], help="default bfloat16 (--smoke: float32)")
    p.add_argument("--batch", type=int, default=2, help="batch (2 = classifier-free guidance; default 2)")
    p.add_argument("--height", type=int, default=40, help="latent height (default 40 = 320 px; --e2e: 8x to sample.py)")
    p.add_argument("--width", type=int, default=64, help="latent width (default 64 = 512 px; --e2e: 8x to sample.py)")
    p.add_argument("--timestep", type=int, default=901, help="diffusion timestep, 0..999 (default 901)")
    p.add_argument("--fps", type=int, default=24, help="fps conditioning (default 24)")
    p.add_argument("--warmup", type=int, default=2, help="untimed forwards per n (default 2)")
    p.add_argument("--iters", type=int, default=5, help="timed forwards per n; the median is reported (default 5)")
    p.add_argument("--check-frames", type=int, default=16, help="frames per GPU of the correctness check "
                   "(default 16; 0 skips it)")
    p.add_argument("--smoke", action="store_true", help="a smoke test on the CPU: the tiny random UNet of simulate.py "
                   "(simulate.TINY_UNET), 8x8 latents (not the trained tiny model of sample.py --tiny)")
    p.add_argument("--compile", action="store_true", help="torch.compile the per-frame layers and the clip-parallel "
                   "arithmetic between communication stages (fast.accelerate) before timing; the JSON's "
                   "\"compile_stats\" has the graphs compiled and the seconds spent per phase (fast.compile_stats), "
                   "with --e2e too")
    p.add_argument("--cuda-graph", action="store_true", help="record each forward as a CUDA graph and time its "
                   "replays (fast.GraphedClipForward; GPU only; the check then runs the graph too; "
                   "under torchrun tested with one rank only)")
    p.add_argument("--compile-cache", metavar="PATH", help="with --compile: load Inductor's compiled graphs and "
                   "kernels from PATH if it exists (torch.compiler's portable cache artifacts, saved by an earlier "
                   "run, on this machine or another with the same torch and GPU kind) and save them all to PATH "
                   "after the run; under torchrun one file per rank, PATH.rank<r>. With a file, compilation is warm, "
                   "not cold (--e2e: passed to sample.py)")
    p.add_argument("--profile", metavar="PATH", help="write torch.profiler's op table of one forward at the first n "
                   "(the forward itself, never its CUDA graph)")
    p.add_argument("--e2e", action="store_true", help="end-to-end sampling through sample.py with random weights; "
                   "takes --frames, --steps, --height, --width, --fps, --dtype, --compile, --compile-cache, --seed, "
                   "--json, and passes arguments bench does not know to sample.py (e.g. --guidance, --emulate)")
    p.add_argument("--frames", type=int, default=2300, help="--e2e: video length in latent frames (default 2300)")
    p.add_argument("--steps", type=int, default=30, help="--e2e: DDIM steps (default 30)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs (default 0)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args, extra = p.parse_known_args(argv)
    if extra and not args.e2e:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    args.sample_args = extra
    if args.e2e:  # the forward-benchmark flags mean nothing to a sampling run: refuse them rather than ignore them
        unused = [f"--{k.replace('_', '-')}" for k in ("frames_per_gpu", "batch", "timestep", "warmup", "iters",
                                                      "check_frames", "smoke", "profile", "cuda_graph")
                  if getattr(args, k) != p.get_default(k)]
        if unused:
            p.error(f"--e2e does not use {', '.join(unused)} (flags of the forward benchmark)")
    for name, low in (("batch", 1), ("warmup", 0), ("iters", 1), ("check_frames", 0), ("frames", 1), ("steps", 1),
                      ("fps", 1), ("seed", 0)):
        if getattr(args, name) < low:
            p.error(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(args, name)}")
    if any(n < 1 for n in args.frames_per_gpu or []):
        p.error(f"--frames-per-gpu must be >= 1 each, got {args.frames_per_gpu}")
    check_latent_size(p, args)
    if not 0 <= args.timestep <= 999:
        p.error(f"--timestep must be in 0..999, got {args.timestep}")
    if args.seed >= 2 ** 63:
        p.error(f"--seed must be in 0..2**63-1, got {args.seed}")
    if args.compile_cache and not args.compile:
        p.error("--compile-cache needs --compile")
    for name in ("json", "profile", "compile_cache"):  # found out now, not after the measuring
        check_writable(p, f"--{name.replace('_', '-')}", getattr(args, name))
    if not (args.smoke or args.e2e or torch.cuda.is_available()):
        p.error("no GPU: the full-size UNet takes hours per table on a CPU; use --smoke (or a GPU)")
    if args.cuda_graph and (args.smoke or not torch.cuda.is_available()):
        p.error("--cuda-graph needs a GPU (--smoke runs on the CPU)")
    if args.smoke:
        args.height, args.width = min(args.height, 8), min(args.width, 8)
    args.dtype_given = args.dtype is not None
    args.frames_per_gpu = args.frames_per_gpu or ([4, 8] if args.smoke else [24, 128, 288])
    args.dtype = args.dtype or ("float32" if args.smoke else "bfloat16")
    if not (args.smoke or args.e2e):
        check_fits(p, args)
    return args


def check_fits(p, args):
    """The largest n must fit on the GPU (sample.py's estimate from VC2's sizes): refused now, not after the rows
    before it took minutes."""
    import sample
    n = max(args.frames_per_gpu + [args.check_frames])
    size = torch.finfo(getattr(torch, args.dtype)).bits // 8
    weights, activations, _ = sample.estimate_run(model.VC2_CONFIG, n, 8 * args.height, 8 * args.width, size)
    need = weights + activations * args.batch / 2  # the measurements behind the estimate are of batch 2
    have, name = sample.device_memory(torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))))
    if need > have:
        fit = int((have - weights) / (activations * args.batch / 2 / n))
        p.error(f"{n} frames per GPU need about {need / 2 ** 30:,.1f} GiB (an estimate), more than the "
                f"{have / 2 ** 30:,.1f} GiB of {name}: at most about {fit} frames per GPU fit at this size")


class Timer:
    """Milliseconds of fn(): CUDA events on a GPU, the host clock on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn):
        if not self.cuda:
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1e3
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        return start.elapsed_time(stop)


def matmul_peak(device, dtype, timer):
    """TFLOP/s of a large torch.mm in `dtype` on random data: the ceiling MFU is measured against."""
    size, reps = (8192, 20) if device.type == "cuda" else (512, 5)
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=out)
    ms = timer(lambda: [torch.mm(a, b, out=out) for _ in range(reps)])
    return 2 * size ** 3 * reps / (ms * 1e-3) / 1e12


def peak_memory_gib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # CPU: the process's peak RSS (KiB on Linux)


def all_reduce(values, op):
    """Elementwise reduction of a list of floats over the ranks (identity without torchrun)."""
    if not dist.is_initialized():
        return values
    t = torch.tensor(values, dtype=torch.float64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op)
    return t.tolist()


def inputs(args, frames, comm, device, seed):
    """One batch for the whole video (same on every rank), this rank's clip of it."""
    g = torch.Generator(device).manual_seed(seed)
    start = comm.rank * frames // comm.world_size  # clips of equal length: frames is a multiple of the ranks
    x = torch.randn(args.batch, 4, frames, args.height, args.width, generator=g, device=device)
    x = x[:, :, start:start + frames // comm.world_size].contiguous()
    context = torch.randn(args.batch, 77, args.context_dim, generator=g, device=device)
    return x, torch.full((args.batch,), args.timestep, device=device), context


def check(unet, args, comm, device, ref_dtype, dtype):
    """Relative L2 error of the `dtype` clip-parallel output against `ref_dtype` (same weights, same inputs)."""
    frames = args.check_frames * comm.world_size
    x, t, ctx = inputs(args, frames, comm, device, args.seed + 1)
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False  # a true float32 reference (matmuls are not TF32 by default)
    try:  # the reference runs eagerly: independent of what --compile generates, and one compilation fewer
        with torch.compiler.set_stance("force_eager"):
            ref = clip_forward(unet.to(ref_dtype), comm, frames, x.to(ref_dtype), t, ctx.to(ref_dtype), args.fps)
        ref = ref.double()
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
    out = forward(unet.to(dtype), args, comm, frames, x, t, ctx)().double()
    err2, ref2, finite = all_reduce([(out - ref).square().sum().item(), ref.square().sum().item(),
                                     float(not torch.isfinite(out).all())], dist.ReduceOp.SUM)
    return (err2 / ref2) ** 0.5 if finite == 0 else float("inf")


def forward(unet, args, comm, frames, x, t, ctx):
    """() -> this rank's output: clip_forward, or with --cuda-graph the replay of its recording."""
    if not args.cuda_graph:
        return lambda: clip_forward(unet, comm, frames, x, t, ctx, args.fps)
    graph = fast.GraphedClipForward(unet, comm, frames, x, args.timestep, ctx, args.fps)
    return lambda: graph(x, args.timestep)


def measure(unet, args, n, comm, solo, device, timer):
    """Time one n: with this run's communicator, and (under torchrun) each rank alone, all at once."""
    frames = n * comm.world_size
    x, t, ctx = inputs(args, frames, comm, device, args.seed + 2)
    # FLOPs of the single-GPU forward at this n, counted on the eager ops
    with torch.compiler.set_stance("force_eager"), FlopCounterMode(display=False) as counter:
        clip_forward(unet, solo, n, x, t, ctx, args.fps)
    row = dict(frames_per_gpu=n, ranks=comm.world_size, video_frames=frames, flops=counter.get_total_flops())

    def timed(c, f):
        run = forward(unet, args, c, f, x, t, ctx)  # a CUDA graph's warm-up and recording happen here
        for _ in range(args.warmup):
            run()
        if dist.is_initialized():
            dist.barrier()
        return statistics.median(timer(run) for _ in range(args.iters))

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    row["ms"] = all_reduce([timed(comm, frames)], dist.ReduceOp.MAX)[0]  # the slowest rank sets the pace
    row["peak_gib"] = all_reduce([peak_memory_gib(device)], dist.ReduceOp.MAX)[0]
    if comm.world_size > 1:
        row["solo_ms"] = all_reduce([timed(solo, n)], dist.ReduceOp.MAX)[0]
        row["comm_ratio"] = row["ms"] / row["solo_ms"]
    row["ms_per_frame"] = row["ms"] / n
    row["tflops"] = row["flops"] / (row["ms"] * 1e-3) / 1e12
    row["gib_per_frame"] = row["peak_gib"] / n
    return row


def table(res):
    head = (f"{'n/GPU':>6} {'ranks':>5} {'ms/fwd':>9} {'ms/frame':>9} {'TFLOP/fwd':>9} {'TFLOP/s':>8} {'MFU%':>6} "
            f"{'peak GiB':>9} {'GiB/frame':>9} {'solo ms':>9} {'comm x':>7}")
    lines = [head]
    for r in res["rows"]:
        lines.append(f"{r['frames_per_gpu']:>6} {r['ranks']:>5} {r['ms']:>9.1f} {r['ms_per_frame']:>9.2f} "
                     f"{r['flops'] / 1e12:>9.2f} {r['tflops']:>8.1f} {100 * r['mfu']:>6.1f} {r['peak_gib']:>9.2f} "
                     f"{r['gib_per_frame']:>9.4f} {r.get('solo_ms', float('nan')):>9.1f} "
                     f"{r.get('comm_ratio', float('nan')):>7.3f}")
    return "\n".join(lines)


def say(comm, line):  # progress on stderr, rank 0
    if comm.rank == 0:
        print(f"bench.py: {line}", file=sys.stderr, flush=True)


@contextmanager
def e2e_folder():
    """A temporary folder for --e2e's mp4, removed after. Under torchrun the same one on every rank, as rank 0 joins
    the ranks' mp4 segments there: named after their common parent process (torchrun's agent); rank 0 removes it."""
    import tempfile
    if "WORLD_SIZE" not in os.environ:
        with tempfile.TemporaryDirectory(prefix="bench_e2e_") as folder:
            yield folder
        return
    folder = os.path.join(tempfile.gettempdir(), f"bench_e2e_{os.getppid()}")
    os.makedirs(folder, exist_ok=True)
    try:
        yield folder
    finally:  # sample.run returns on rank 0 after the join: no rank writes there any more
        if int(os.environ.get("RANK", 0)) == 0:
            shutil.rmtree(folder, ignore_errors=True)


def e2e(args, extra):
    """End to end through sample.py (its parse_args and run -> sidecar dict with per-phase timings), random weights.

    Arguments bench does not know are passed on to sample.py (e.g. --model-config, --emulate, --local-window)."""
    import sample
    with e2e_folder() as folder:  # the mp4 is timed, then deleted
        argv = ["--random-weights", "--prompt", "a corgi running on the beach", "--frames", str(args.frames),
                "--steps", str(args.steps), "--seed", str(args.seed), "--height", str(8 * args.height),
                "--width", str(8 * args.width), "--fps", str(args.fps), "--out", os.path.join(folder, "video.mp4"),
                *extra]  # bench's sizes are latent, sample.py's pixels
        if args.compile:
            argv.append("--compile")
        if args.compile_cache:
            argv += ["--compile-cache", args.compile_cache]
        if args.dtype_given:
            argv += ["--dtype", {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[args.dtype]]
        try:
            sidecar = sample.run(sample.parse_args(argv))  # None on ranks other than 0
        except sample.UserError as e:
            print(f"bench.py: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except sample.OutputError as e:  # the mp4 could not be written (every rank has it)
            if int(os.environ.get("RANK", 0)) == 0:
                print(f"bench.py: error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
    if sidecar is None:
        return None
    res = dict(frames=args.frames, steps=args.steps, world_size=sidecar["world_size"], device=sidecar["device"],
               dtype=sidecar["dtype"], timings_s=sidecar["timings"], peak_memory_gib_rank0=sidecar["peak_memory_gib"],
               argv=argv)
    evals = len(sample.make_schedule(args.steps, sidecar["settings"]["eta"]).timesteps)  # VC2: 30 steps, 31 evaluations
    timings = sidecar["timings"]
    res.update(unet_evals=evals, s_per_eval=timings["denoise"] / evals,
               s_per_eval_after_first=(timings["denoise"] - timings["first_step"]) / max(evals - 1, 1),
               prompt_to_mp4_s=timings["total"] - timings["load"])
    if args.compile:  # the first step's one-off cost, taken apart
        res["compile_stats"] = fast.compile_stats()
    print(json.dumps(res, indent=1))
    return res


def main(argv=None):
    args = parse_args(argv)
    if args.e2e:
        res = dict(e2e=e2e(args, args.sample_args))
        if args.json and res["e2e"] is not None:
            write_json(args.json, res)
        return res
    torch.set_grad_enabled(False)
    torch.backends.cudnn.benchmark = True
    if "WORLD_SIZE" in os.environ:
        device = init_distributed()
        comm = DistComm()
    else:
        device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
        comm = EmulatedComm(EmulatedGroup(1), 0)
    solo = EmulatedComm(EmulatedGroup(1), 0)  # world size 1: the same code with no communication
    config = TINY_UNET if args.smoke else model.VC2_CONFIG["unet"]
    args.context_dim = config["context_dim"]
    dtype = getattr(torch, args.dtype)
    ref_dtype = torch.float64 if dtype == torch.float32 else torch.float32
    timer = Timer(device)
    try:
        with torch.device(device):
            unet = randomize(model.UNet(**config).eval(), args.seed)
        res = dict(device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                   torch=torch.__version__, dtype=args.dtype, batch=args.batch, latent=[args.height, args.width],
                   timestep=args.timestep, ranks=comm.world_size, compile=args.compile, cuda_graph=args.cuda_graph,
                   date=time.strftime("%Y-%m-%d"))
        res["matmul_peak_tflops"] = all_reduce([matmul_peak(device, dtype, timer)], dist.ReduceOp.MIN)[0]
        with fast.compile_cache(args.compile_cache), parallel_temporal_layers(unet, DualScope()), \
                fast.accelerate(unet, compile=args.compile):
            if args.check_frames:
                say(comm, f"check: {args.dtype} vs {ref_dtype} at {args.check_frames} frames/GPU"
                          f"{' (the first forwards compile: minutes)' if args.compile else ''}")
                t0 = time.perf_counter()
                res["check"] = dict(frames_per_gpu=args.check_frames, reference=str(ref_dtype),
                                    rel_l2_error=check(unet, args, comm, device, ref_dtype, dtype))
                res["check"]["ok"] = res["check"]["rel_l2_error"] <= TOLERANCE[args.dtype]
                res["check"]["seconds"] = time.perf_counter() - t0
            unet.to(dtype)
            res["rows"] = []
            for n in args.frames_per_gpu:
                say(comm, f"n = {n} frames/GPU: {args.warmup} warm-up and {args.iters} timed forwards")
                t0 = time.perf_counter()
                row = measure(unet, args, n, comm, solo, device, timer)
                row["mfu"] = row["tflops"] / res["matmul_peak_tflops"]
                row["seconds"] = time.perf_counter() - t0
                res["rows"].append(row)
                if comm.rank == 0:
                    print(json.dumps(row), flush=True)
            if args.profile:
                profile(unet, args, comm, device, args.profile)
        if comm.rank == 0:
            print(f"{res['device']}, torch {res['torch']}, {args.dtype}, batch {args.batch}, latent "
                  f"{args.height}x{args.width}, {comm.world_size} rank(s){', compiled' if args.compile else ''}"
                  f"{', CUDA graphs' if args.cuda_graph else ''}; "
                  f"{args.dtype} matmul peak measured "
                  f"{res['matmul_peak_tflops']:.3g} TFLOP/s")
            if "check" in res:
                c = res["check"]
                print(f"check: {args.dtype} vs {c['reference']} at {c['frames_per_gpu']} frames/GPU: relative L2 "
                      f"error {c['rel_l2_error']:.2e}  {'ok' if c['ok'] else 'FAIL'} (<= {TOLERANCE[args.dtype]})")
            if args.compile:
                res["compile_stats"] = stats = fast.compile_stats()
                print(f"compiled {stats['graphs']} graphs in {stats['seconds'].get('entire_frame_compile', 0):.1f} s")
            print(table(res))
            if args.json:
                write_json(args.json, res)
        return res
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def write_json(path, res):
    from sample import write_atomically  # a Ctrl-C never leaves half a file

    def dump(tmp):
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
    write_atomically(path, dump)


def profile(unet, args, comm, device, path):
    """torch.profiler op table (sorted by device time) of one forward at the first n, from rank 0."""
    n = args.frames_per_gpu[0]
    x, t, ctx = inputs(args, n * comm.world_size, comm, device, args.seed + 3)
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA]
                                                          if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        clip_forward(unet, comm, n * comm.world_size, x, t, ctx, args.fps)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    if comm.rank == 0:
        key = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
        with open(path, "w") as f:
            f.write(prof.key_averages().table(sort_by=key, row_limit=60, max_name_column_width=70))


if __name__ == "__main__":
    try:
        res = main()
    except KeyboardInterrupt:  # Ctrl-C reaches every rank: one line, from rank 0
        if int(os.environ.get("RANK", 0)) == 0:
            print("bench.py: interrupted; no output written", file=sys.stderr)
        sys.exit(130)
    sys.exit(0 if res.get("check", {}).get("ok", True) else 1)
