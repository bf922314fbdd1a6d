"""Train the tiny VideoCrafter2 of tiny/: model.py's exact architecture at small sizes, on tiny/data.py's clips.

    python tiny/train.py --out runs/a                  # one GPU: the shipped recipe (stage 1, then 10 min of stage 2)
    python tiny/train.py --out runs/b --vae-from runs/a    # stage 2 again, on runs/a's VAE (skips stage 1's 3.3 min)
    python tiny/train.py --out runs/c --resume runs/a --minutes 4      # more of stage 2 (a new warm-up and cosine)
    python tiny/train.py --out runs/cpu --vae-steps 2 --unet-steps 2 --batch 2 --vae-batch 4 --eval-prompts 1  # smoke

The shipped tiny/tiny_vc2.safetensors is run 3 (tiny/README.md, docs/tiny_training.log): stage 1 of run 2 (3000
steps, 200 s), then stage 2 from random weights: 2842 steps of 256 clips in 603 s on one H200, the step recorded as a
CUDA graph (class Step). The detector finds the prompt's colour and shape in 100 % of the frames of its sampled
clips (run 2, 1227 steps of 512 clips: 81 %).

Two stages, everything drawn from --seed (up to the GPU's own nondeterminism):
 1. the VAE (AutoencoderKL, factor 8: 64x64 frames -> 4x8x8 latents) on single frames: MSE + L1 + a tiny KL
    term, as VC2's KL-f8 VAE (no GAN), the shape's pixels weighted up; then scale_factor = 1 / std of the
    latents (VC2's 0.18215 plays that role);
 2. the UNet and the text encoder TOGETHER (the text encoder is trained, from random weights, with the real
    OpenCLIP tokenizer) on 16-frame clips, VAE frozen: VideoCrafter2's DDPM objective with its schedule
    (sample.make_buffers: 1000 steps, scaled-linear betas, eps-prediction, x_t = sqrt(a_t) * scale_arr[t] * z +
    sqrt(1 - a_t) * eps, which is what sample.ddim_sample inverts), fps 24 (sample.py's default), the caption
    dropped to "" 10% of the time (VC2's unconditional prompt, for classifier-free guidance). The EMA of the
    weights (decay 0.999) is saved during the run; at the end the better of the EMA and the last weights by the
    detection rate of sampled clips ships.

Writes OUT/tiny_vc2.safetensors (fp16, the original checkpoint's keys: model.diffusion_model.*,
first_stage_model.*, cond_stage_model.model.*), OUT/config.json (model.load_videocrafter2's config) and OUT/log.txt,
and at the end the detection rate of sampled clips (tiny/detect.py) on a few prompts.
--resume DIR continues stage 2 from DIR's weights (stage 1 is skipped: the VAE and scale_factor are kept).
"""
import argparse
import copy
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository root
import model  # noqa: E402
import sample  # noqa: E402
from tiny import data, detect  # noqa: E402

CONFIG = dict(
    unet=dict(in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2, 4], num_res_blocks=1,
              channel_mult=[1, 2, 2], num_head_channels=16, context_dim=32),
    vae=dict(ddconfig=dict(double_z=True, z_channels=4, resolution=64, in_channels=3, out_ch=3, ch=32,
                           ch_mult=[1, 1, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0), embed_dim=4),
    text=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=3),
    scale_factor=None,  # measured after stage 1
)
FRAMES = 16  # VideoCrafter2's clip length
FPS = 24
EVAL_PROMPTS = ["a red circle moving right", "a green square moving left", "a blue triangle moving up",
                "a yellow circle moving down", "a white square moving right on a blue background",
                "a purple triangle moving left on a white background", "a cyan circle moving up on a gray background",
                "a red square moving down on a yellow background"]


def log(out, *msg):  # out None: silent (the timing trial)
    if out is None:
        return
    line = " ".join(str(m) for m in msg)
    print(line, flush=True)
    with open(os.path.join(out, "log.txt"), "a") as f:
        f.write(line + "\n")


def lr_at(step, steps, peak, warmup=200):
    return peak * min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step / steps, 1.0)))


def encode(vae, frames, scale_factor, generator):  # (n, 3, H, W) -> a posterior sample * scale_factor (n, 4, h, w)
    mean, logvar = vae.encode(frames)
    noise = torch.randn(mean.shape, generator=generator, device=mean.device)
    return (mean + (0.5 * logvar).exp() * noise) * scale_factor


def shape_mask(x):  # (n, 3, H, W) in [-1, 1] -> (n, 1, H, W): 1 where a pixel is not the background (the median)
    background = x.flatten(2).median(dim=2).values[:, :, None, None]
    return ((x - background).abs().amax(1, keepdim=True) > 0.05).float()


def train_vae(vae, args, gen_cpu, gen_dev, device, out):
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    t0 = time.time()
    for step in range(args.vae_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, args.vae_steps, args.vae_lr)
        x = data.training_batch(args.vae_batch, 1, gen_cpu, device)[0][:, :, 0]  # single frames (n, 3, H, W)
        with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            mean, logvar = vae.encode(x)
            z = mean + (0.5 * logvar).exp() * torch.randn(mean.shape, generator=gen_dev, device=device)
            rec = vae.decode(z).float()
        kl = 0.5 * (mean.float() ** 2 + logvar.float().exp() - 1 - logvar.float()).sum((1, 2, 3)).mean()
        # the shape covers ~8 % of a frame and its corners decide what the detector sees: weight its pixels up
        weight = 1 + args.vae_shape_weight * shape_mask(x)
        loss = ((rec - x) ** 2 * weight).mean() + ((rec - x).abs() * weight).mean() + 1e-7 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % 200 == 0 or step == args.vae_steps - 1:
            log(out, f"vae step {step} loss {loss.item():.5f} mse {F.mse_loss(rec, x).item():.5f} kl {kl.item():.1f} "
                     f"{time.time() - t0:.0f} s")
    vae.eval().requires_grad_(False)
    with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        x = data.training_batch(256, 1, gen_cpu, device)[0][:, :, 0]
        std = encode(vae, x, 1.0, gen_dev).float().std().item()
        # does the detector still see the scene after the VAE? (an upper bound for what stage 2 can reach)
        x = data.training_batch(64, 1, gen_cpu, device)[0][:, :, 0]
        rec = ((vae.decode(vae.encode(x)[0]).float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        truth, seen = detect.detect(((x + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1)), \
            detect.detect(rec.permute(0, 2, 3, 1))
        same = sum(a.found and (a.colour, a.shape) == (b.colour, b.shape) for a, b in zip(truth, seen)) / len(seen)
        err = [math.hypot(a.x - b.x, a.y - b.y) for a, b in zip(truth, seen) if a.found and b.found]
        log(out, f"vae: detector agrees on {same:.3f} of reconstructed frames, mean position error "
                 f"{sum(err) / max(len(err), 1):.2f} px")
    return 1.0 / std


class Captions:
    """Tokenised captions, memoised: the small vocabulary of data.py repeats, the BPE is Python."""

    def __init__(self):
        self.tokenizer, self.cache = model.Tokenizer(), {}

    def __call__(self, texts):
        for t in set(texts) - set(self.cache):
            self.cache[t] = self.tokenizer([t])[0]
        return torch.stack([self.cache[t] for t in texts])


def add_noise(z, t, noise, alphas_cumprod, scale_arr):
    """VC2's q_sample with use_scale: x_t = sqrt(a_t) * scale_arr[t] * z + sqrt(1 - a_t) * noise, z (b, ...)."""
    a, scale = (v[t].view(-1, *[1] * (z.dim() - 1)) for v in (alphas_cumprod, scale_arr))
    return a.sqrt() * scale * z + (1 - a).sqrt() * noise


class Step:
    """One optimiser step of stage 2 on fixed-shape buffers: x_t, t, tokens -> AdamW on the eps-prediction MSE.

    On a GPU the step is recorded once as a CUDA graph and replayed (the tiny model's ~2000 kernels a step are
    too small to keep an H200 busy when each is launched from Python); the first steps run eagerly (cuDNN's choice
    of kernels, the optimiser's state), and if recording fails the step stays eager, logged."""

    def __init__(self, unet, text, args, device, out, warmup=3):
        self.unet, self.text, self.device, self.out = unet, text, device, out
        self.params = list(unet.parameters()) + list(text.parameters())
        graphs = device.type == "cuda"
        # a tensor learning rate can change between replays of a recorded step (capturable AdamW reads it there)
        self.lr = torch.tensor(args.lr, device=device) if graphs else args.lr
        self.opt = torch.optim.AdamW(self.params, lr=self.lr, weight_decay=0.0, capturable=graphs)
        shape = (args.batch, 4, FRAMES, data.SIZE // 8, data.SIZE // 8)
        self.x_t, self.noise = torch.zeros(shape, device=device), torch.zeros(shape, device=device)
        self.t = torch.zeros(args.batch, dtype=torch.long, device=device)
        self.tokens = torch.zeros(args.batch, 77, dtype=torch.long, device=device)
        self.graph, self.eager_left = None, warmup if graphs else None

    def compute(self):
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.device.type == "cuda", cache_enabled=False):
            eps = self.unet(self.x_t, self.t, self.text(self.tokens), FPS)
        loss = F.mse_loss(eps.float(), self.noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        return loss.detach()

    def __call__(self, x_t, t, tokens, noise, lr):
        for buf, v in ((self.x_t, x_t), (self.t, t), (self.tokens, tokens), (self.noise, noise)):
            buf.copy_(v, non_blocking=True)
        if isinstance(self.lr, torch.Tensor):
            self.lr.fill_(lr)
        else:
            self.opt.param_groups[0]["lr"] = lr
        if self.graph is not None:
            self.graph.replay()
            return self.loss
        self.opt.zero_grad(set_to_none=True)
        if not self.eager_left:  # always eager: on the CPU (None), or after recording failed (0)
            return self.compute()
        if self.eager_left > 1:  # warm-up steps (all but the last of `warmup`), on a side stream as recording wants
            self.eager_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                loss = self.compute()
            torch.cuda.current_stream().wait_stream(side)
            return loss
        try:  # record: the gradients are None now, so backward allocates them in the graph's own memory
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self.loss = self.compute()
            self.graph = graph
            graph.replay()  # recording does not run the step
            log(self.out, "stage 2: the step is recorded as a CUDA graph")
            return self.loss
        except Exception as e:  # noqa: BLE001 - any failure to record: carry on eagerly, and say why
            self.eager_left = 0
            torch.cuda.synchronize()
            log(self.out, f"stage 2: recording a CUDA graph failed, steps stay eager ({type(e).__name__}: {e})")
            self.opt.zero_grad(set_to_none=True)
            return self.compute()


def train_unet(parts, args, gen_cpu, gen_dev, device, out, steps, timing=None):
    """Stage 2 for `steps` steps. timing: a list that receives the seconds of each step after the 10th (the trial)."""
    unet, text, vae, scale_factor = parts["unet"], parts["text"], parts["vae"], parts["scale_factor"]
    _, alphas_cumprod, scale_arr = (b.to(device) for b in sample.make_buffers())
    step_fn = Step(unet, text, args, device, out)
    params = step_fn.params
    ema = [p.detach().clone() for p in params]
    captions, t0 = Captions(), time.time()
    saved = evaluated = t0
    for step in range(steps):
        tic = time.time()
        video, texts = data.training_batch(args.batch, FRAMES, gen_cpu, device)
        drop = torch.rand(len(texts), generator=gen_cpu) < 0.1
        texts = ["" if d else c for c, d in zip(texts, drop.tolist())]
        with torch.no_grad(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
            frames = video.transpose(1, 2).flatten(0, 1)  # ((b t), 3, H, W): the VAE is an image model
            z = encode(vae, frames, scale_factor, gen_dev).float()
            z = z.unflatten(0, (args.batch, FRAMES)).transpose(1, 2)  # (b, 4, t, h, w)
        t = torch.randint(0, len(alphas_cumprod), (args.batch,), generator=gen_dev, device=device)
        noise = torch.randn(z.shape, generator=gen_dev, device=device)
        x_t = add_noise(z, t, noise, alphas_cumprod, scale_arr)
        loss = step_fn(x_t, t, captions(texts).to(device), noise, lr_at(step, steps, args.lr))
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - decay)
        if timing is not None and step >= 10:
            if device.type == "cuda":
                torch.cuda.synchronize()
            timing.append(time.time() - tic)
        if step % 250 == 0 or step == steps - 1:
            log(out, f"unet step {step} loss {loss.item():.4f} lr {lr_at(step, steps, args.lr):.2e} "
                     f"{time.time() - t0:.0f} s")
        if out is not None and args.eval_every and time.time() - evaluated > args.eval_every * 60:
            evaluated = time.time()  # the learning curve in the log: the EMA weights' detection rate so far
            rate = detection_rate(with_weights(parts, ema), EVAL_PROMPTS[:4], 20, 5.0, device=device)
            log(out, f"step {step}: EMA detection rate {rate:.3f} ({time.time() - evaluated:.0f} s)")
        late = time.time() - t0 > args.minutes * 60 * 1.25  # a safety stop, 25% over the budget
        if out is not None and (time.time() - saved > 300 or step == steps - 1 or late):  # saves every 5 minutes
            saved = time.time()
            save(with_weights(parts, ema), out)
            if late:
                log(out, f"time limit: stopped after {step + 1} steps")
                break
    return ema


def load_run(folder, device):
    """The weights a run wrote to `folder` (save's tiny_vc2.safetensors and config.json), as load_videocrafter2 gives
    them: eval mode, no gradients."""
    return model.load_videocrafter2(os.path.join(folder, "tiny_vc2.safetensors"), os.path.join(folder, "config.json"),
                                    device=device)


def with_weights(parts, values):
    """A copy of parts whose UNet and text encoder hold `values` (in the order of Step.params)."""
    copies = dict(parts, unet=copy.deepcopy(parts["unet"]), text=copy.deepcopy(parts["text"]))
    with torch.no_grad():
        torch._foreach_copy_(list(copies["unet"].parameters()) + list(copies["text"].parameters()), values)
    return copies


def save(parts, out):
    """fp16 safetensors with the released checkpoint's keys, and the config that load_videocrafter2 reads."""
    from safetensors.torch import save_file
    sd = {}
    for name in ("unet", "vae", "text"):
        for k, v in parts[name].state_dict().items():
            sd[model.PREFIXES[name] + k] = v.detach().to("cpu", torch.float16).contiguous()
    save_file(sd, os.path.join(out, "tiny_vc2.safetensors.tmp"))
    os.replace(os.path.join(out, "tiny_vc2.safetensors.tmp"), os.path.join(out, "tiny_vc2.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(dict(CONFIG, scale_factor=parts["scale_factor"]), f, indent=1)


# -----------------------------------------------------------------------------
# Evaluation: sample through sample.py's own pipeline, look with the detector


def sample_video(parts, prompts, frames, steps, guidance, eta=1.0, seed=0, ranks=1, device="cpu"):
    """A video as sample.py makes it (clip-parallel over `ranks` emulated ranks, dual scope at its defaults)
    -> uint8 (T, H, W, 3). prompts: one, or several as segments along the timeline."""
    from clip_parallel import parallel_temporal_layers, run_ranks
    from dual_scope import DualScope
    prompts = [prompts] if isinstance(prompts, str) else prompts
    contexts = sample.encode_prompts(parts, prompts, device)
    s = sample.Settings(frames, data.SIZE, data.SIZE, steps, eta, guidance, FPS, seed)
    with torch.no_grad(), parallel_temporal_layers(parts["unet"], DualScope()):
        clips = run_ranks(ranks, lambda comm: sample.generate_clip(comm, parts, s, contexts, torch.device(device)))
    return torch.cat([c[0] for c in clips]).cpu()


def detection_rate(parts, prompts, steps, guidance, eta=1.0, seeds=(0,), device="cpu"):
    """Fraction of frames of 16-frame sampled clips in which the detector finds the prompt's colour and shape."""
    hits = total = 0
    for prompt in prompts:
        scene = data.parse_prompt(prompt)
        for seed in seeds:
            dets = detect.detect(sample_video(parts, prompt, FRAMES, steps, guidance, eta, seed, device=device))
            hits += sum(d.found and d.colour == scene.colour and d.shape == scene.shape for d in dets)
            total += len(dets)
    return hits / total


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the initialisation and the noise")
    p.add_argument("--vae-steps", type=int, default=3000, help="stage 1 steps (default 3000)")
    p.add_argument("--unet-steps", type=int, default=0, help="stage 2 steps (default 0: as many as fit --minutes)")
    p.add_argument("--vae-batch", type=int, default=512, help="frames per step in stage 1 (default 512)")
    p.add_argument("--batch", type=int, default=256, help="16-frame clips per step in stage 2 (default 256: "
                   "twice the steps of 512 in the same time learnt far more, 100 %% against 81 %%)")
    p.add_argument("--lr", type=float, default=1e-3, help="stage 2 peak learning rate (AdamW, cosine; default 1e-3)")
    p.add_argument("--vae-lr", type=float, default=1e-3, help="stage 1 peak learning rate")
    p.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    p.add_argument("--minutes", type=float, default=10.0, help="stage 2's time budget: sets the step count when "
                   "--unet-steps is 0, else a safety stop (saves first)")
    p.add_argument("--resume", metavar="DIR", help="continue stage 2 from DIR/tiny_vc2.safetensors")
    p.add_argument("--vae-from", metavar="DIR", help="skip stage 1: take the VAE and scale_factor of "
                   "DIR/tiny_vc2.safetensors (e.g. an earlier run with the same --seed and --vae-steps); the UNet and "
                   "the text encoder start from random weights as usual")
    p.add_argument("--eval-prompts", type=int, default=len(EVAL_PROMPTS), help="prompts for the final check, which "
                   "also picks the weights to ship: the EMA or the last ones (0: no check, the EMA ones)")
    p.add_argument("--eval-every", type=float, default=0.0, help="minutes between detection checks of the EMA "
                   "weights during stage 2, for the log (default 0: none)")
    p.add_argument("--vae-shape-weight", type=float, default=10.0, help="stage 1: extra loss weight of the shape's "
                   "pixels (default 10; 0: plain MSE + L1)")
    args = p.parse_args(argv)
    if args.resume and args.vae_from:
        p.error("--resume and --vae-from: give one (--resume keeps the VAE of its folder already)")
    os.makedirs(args.out, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest convolutions once
    torch.manual_seed(args.seed)
    gen_cpu = torch.Generator().manual_seed(args.seed)
    gen_dev = torch.Generator(device).manual_seed(args.seed + 1)
    log(out := args.out, "args", vars(args), "device", device)
    if args.resume:
        parts = load_run(args.resume, device)
        for name in ("unet", "text"):
            parts[name].train().requires_grad_(True)
    else:
        parts = dict(unet=model.UNet(**CONFIG["unet"]), vae=model.AutoencoderKL(**CONFIG["vae"]),
                     text=model.TextEncoder(**CONFIG["text"]))
        parts = {k: v.to(device) for k, v in parts.items()} | dict(tokenizer=model.Tokenizer())
        log(out, "parameters", {k: sum(p.numel() for p in parts[k].parameters()) for k in ("unet", "vae", "text")})
        if args.vae_from:
            done = load_run(args.vae_from, device)
            parts["vae"], parts["scale_factor"] = done["vae"], done["scale_factor"]
            log(out, f"stage 1 skipped: the VAE of {args.vae_from}")
        else:
            parts["scale_factor"] = train_vae(parts["vae"], args, gen_cpu, gen_dev, device, out)
        log(out, "scale_factor", parts["scale_factor"])
    steps = args.unet_steps
    if not steps:  # fit the time budget: time steps on throwaway copies, with throwaway random numbers
        trial = dict(parts, unet=copy.deepcopy(parts["unet"]), text=copy.deepcopy(parts["text"]))
        trial_args = argparse.Namespace(**{**vars(args), "minutes": 1e9})
        gens = torch.Generator().manual_seed(12345), torch.Generator(device).manual_seed(12345)
        timing = []
        train_unet(trial, trial_args, *gens, device, None, 30, timing)
        steps = int(args.minutes * 60 / (sum(timing) / len(timing)) * 0.95)
        del trial
        log(out, f"stage 2: {sum(timing) / len(timing) * 1e3:.0f} ms a step: {steps} steps fit {args.minutes} "
                 f"minutes (pass --unet-steps {steps} to repeat this run)")
    ema_parts = with_weights(parts, train_unet(parts, args, gen_cpu, gen_dev, device, out, steps))
    if not args.eval_prompts:
        save(ema_parts, out)
        return
    # ship the better of the EMA and the last weights, by the detection rate of sampled clips (fp16, as shipped)
    rates = {}
    for name, candidate in (("ema", ema_parts), ("last", parts)):
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        save(candidate, folder)
        shipped = load_run(folder, device)
        t = time.time()
        rates[name] = detection_rate(shipped, EVAL_PROMPTS[:args.eval_prompts], 20, 5.0, seeds=(0, 1), device=device)
        log(out, f"{name} weights: detection rate {rates[name]:.3f} (20 steps, guidance 5, 2 seeds) "
                 f"{time.time() - t:.0f} s")
    best = max(rates, key=rates.get)
    for f in ("tiny_vc2.safetensors", "config.json"):
        os.replace(os.path.join(out, best, f), os.path.join(out, f))
    os.rmdir(os.path.join(out, best))
    log(out, f"shipped: the {best} weights")

if __name__ == "__main__":
    main()
