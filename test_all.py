"""All tests: exactness against the original VideoCrafter2 (fixtures/), clip-parallel equivalence, sampling, errors.

Every check asserts a number. Nothing here depends on the fixtures' shapes or widths: configs, cases and sizes
are read from the fixture files, so the same tests run on fixtures made with other seeds, sizes and widths.
"""
import collections
import copy
import functools
import json
import math
import os
import random
import shutil
import subprocess
import sys
from contextlib import contextmanager, nullcontext

import imageio.v3 as iio
import numpy as np
import pytest
import torch
import torch._inductor.config as inductor_config
import torch.nn.functional as F
from safetensors.torch import load_file

import clip_parallel
import fast
import model
import sample
import simulate
from dual_scope import DualScope, clip_attention, reference_attention, split_frames
from tiny import data as tiny_data
from tiny import detect as tiny_detect

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
torch.set_grad_enabled(False)


def torchrun(args, script="sample.py", ranks=2, **popen):
    """torchrun of `script` on `ranks` gloo ranks on the CPU, as a Popen (stdout and stderr piped unless given). CUDA
    hidden: on a GPU host the scripts would take NCCL, one GPU per rank, and refuse ranks past its GPU count."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks), script, *args]
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **popen}
    return subprocess.Popen(cmd, cwd=HERE, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""}, text=True, **popen)


def torchrun_ok(args, script, ranks=2, timeout=300):
    """torchrun that must succeed (its stderr in the failure message); killed at the timeout."""
    proc = torchrun(args, script, ranks)
    try:
        _, err = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
    # torchrun's own account of a failed rank (its traceback and summary) is ~2000 characters: the rank's lines that
    # say why (a traceback, "terminate called ...") come before it
    assert proc.returncode == 0, err[-6000:]


def fixture_json(name):
    with open(os.path.join(FIX, name)) as f:
        return json.load(f)


def fixture_tensors(name, prefix=""):
    return {k[len(prefix):]: v.float() if v.is_floating_point() else v
            for k, v in load_file(os.path.join(FIX, name)).items() if k.startswith(prefix)}


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.fixture(scope="module")
def tiny_unet():
    unet = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval()
    unet.load_state_dict(fixture_tensors("unet_tiny.safetensors", "model.diffusion_model."), strict=True)
    return unet


def unet_cases():
    return [c["name"] for c in fixture_json("unet_tiny.json")["cases"]]


# -----------------------------------------------------------------------------
# model.py against the original VideoCrafter2


@pytest.mark.parametrize("case", unet_cases())
def test_unet_matches_original(tiny_unet, case):
    c = fixture_tensors("unet_tiny_cases.safetensors", case + ".")
    out = tiny_unet(c["x"], c["timesteps"], c["context"], c["fps"])
    assert out.shape == c["out"].shape
    assert rel_err(out, c["out"]) <= 1e-4


def test_accelerate_compile_wiring(tiny_unet):
    """The wiring of the --compile path: which layers fast.accelerate compiles, the same function, and all of it undone
    on exit, the compiler settings it holds too. backend="eager" traces through dynamo without Inductor's code
    generation (minutes on a small CPU; bench.py checks Inductor on GPUs). Full window, no global frames, one rank:
    VC2's own output."""
    unet = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval()
    unet.load_state_dict(tiny_unet.state_dict())
    c = fixture_tensors("unet_tiny_cases.safetensors", unet_cases()[0] + ".")
    frames = c["x"].shape[2]

    def compiled_callables():
        mods = list(unet.modules())
        return ([m.frame_layers for m in mods if isinstance(m, model.ResBlock)]
                + [m.forward for m in mods if isinstance(m, (model.SpatialTransformer, model.Downsample, model.Upsample))]
                + [f for m in mods if isinstance(m, model.TemporalTransformer) for block in m.transformer_blocks
                   for f in (block.ff.net.forward, block.norm1.forward, block.norm2.forward,
                             block.norm3.forward)]
                + [unet.input_blocks[0][0].forward, unet.out.forward])

    def is_compiled(f):  # a compiled function or method, or module
        return hasattr(f, "_torchdynamo_orig_callable") or isinstance(f, torch._dynamo.eval_frame.OptimizedModule)

    def compiler_settings():
        return (inductor_config.triton.autotune_pointwise, inductor_config.force_layout_optimization,
                torch._dynamo.config.cache_size_limit)

    settings_before = compiler_settings()
    try:
        with clip_parallel.parallel_temporal_layers(unet, DualScope(local_window=frames, global_frames=0)), \
                fast.accelerate(unet, compile=True, backend="eager"):
            mods = list(unet.modules())
            assert all(is_compiled(f) for f in compiled_callables())
            assert not inductor_config.triton.autotune_pointwise  # one launch config per kernel (BENCH.md run 30)
            assert inductor_config.force_layout_optimization and torch._dynamo.config.cache_size_limit == 256
            # emulated ranks (threads; sample.py's one rank without torchrun too) compile under the same settings
            assert clip_parallel.run_ranks(2, lambda comm: compiler_settings()) == [compiler_settings()] * 2
            assert sum(isinstance(m, fast.FastTemporalConvBlock) for m in mods) == sum(
                isinstance(m, model.ResBlock) for m in mods) > 0
            assert all(is_compiled(m.attention) for m in mods if isinstance(m, clip_parallel.ClipAttention))
            assert all(isinstance(m.norm, fast.FastGroupNorm) and isinstance(m.forward, functools.partial)
                       for m in mods if isinstance(m, model.TemporalTransformer))
            comm = clip_parallel.EmulatedComm(clip_parallel.EmulatedGroup(1), 0)
            out = clip_parallel.clip_forward(unet, comm, frames, c["x"], c["timesteps"], c["context"], c["fps"])
        assert rel_err(out, c["out"]) <= 1e-4
        assert not any(is_compiled(f) for f in compiled_callables())  # restored
        assert compiler_settings() == settings_before
        assert not any(isinstance(m, (clip_parallel.ClipAttention, fast.FastGroupNorm)) for m in unet.modules())
        assert rel_err(unet(c["x"], c["timesteps"], c["context"], c["fps"]), c["out"]) <= 1e-4
    finally:
        torch._dynamo.reset()


def test_compile_graphs_per_layer_shape_and_not_per_clip_length():
    """fast.accelerate(compile=True) compiles one graph per layer shape, not per layer (ResBlocks of one shape share
    theirs), and a new clip length compiles the attention's graphs only (static in the clip length, its masks'
    structure depends on it): every other graph is symbolic in the frames and serves both. With any_length=False
    (sample.py) each length compiles all its graphs. Both lengths, both ways, equal the plain clip-parallel forms.
    Backend "eager": dynamo's capture, which decides the graphs, without code generation."""
    unet = simulate.randomize(model.UNet(**dict(simulate.TINY_UNET, channel_mult=[1, 2])).eval(), 0).double()
    scope = DualScope(local_window=2, global_frames=3)
    comm = clip_parallel.EmulatedComm(clip_parallel.EmulatedGroup(1), 0)
    g = torch.Generator().manual_seed(0)

    def run(frames, speed, any_length=True):
        x = torch.randn(2, 4, frames, 8, 8, generator=g, dtype=torch.float64)
        ctx = torch.randn(2, 77, simulate.TINY_UNET["context_dim"], generator=g, dtype=torch.float64)
        t = torch.full((2,), 901)
        forms = fast.accelerate(unet, compile=True, backend="eager", any_length=any_length) if speed else nullcontext()
        with clip_parallel.parallel_temporal_layers(unet, scope), forms:
            return clip_parallel.clip_forward(unet, comm, frames, x, t, ctx, 24)

    def entries(fn):  # graphs dynamo holds for fn's code
        return len(torch._dynamo.eval_frame._debug_get_cache_entry_list(fn.__code__))

    signatures = set()  # what dynamo guards on: shapes, strides, dtypes of a ResBlock's per-frame inputs
    hooks = [m.register_forward_pre_hook(lambda m, args: signatures.add(tuple(
        (a.shape, a.stride(), a.dtype) for a in args[:2]))) for m in unet.modules() if isinstance(m, model.ResBlock)]
    graphs = lambda: torch._dynamo.utils.counters["stats"]["unique_graphs"]  # noqa: E731
    torch._dynamo.reset()
    try:
        graphs_before, out4 = graphs(), run(4, speed=True)
        graphs4, resblock_graphs, attention_graphs = graphs(), entries(model.ResBlock.frame_layers), \
            entries(fast.banded_attention)
        assert resblock_graphs == len(signatures) < len(hooks)  # per shape: 12 ResBlocks, 8 shapes
        for h in hooks:
            h.remove()
        out6 = run(6, speed=True)
        assert entries(model.ResBlock.frame_layers) == resblock_graphs  # no new graph but the attention's
        assert graphs() - graphs4 == entries(fast.banded_attention) - attention_graphs == attention_graphs > 0
        assert graphs4 - graphs_before > 4 * attention_graphs
        stats = fast.compile_stats()  # what bench.py reports: the same count, and where the seconds went
        assert stats["graphs"] == graphs() and stats["seconds"]["entire_frame_compile"] > 0
        torch._dynamo.reset()  # any_length=False (sample.py: one clip length a process): each length its own graphs
        before = graphs()
        g.manual_seed(0)
        for frames, out in ((4, out4), (6, out6)):
            assert rel_err(run(frames, speed=True, any_length=False), out) <= 1e-12
            assert entries(model.ResBlock.frame_layers) == resblock_graphs * (frames // 2 - 1)
        assert graphs() - before == 2 * (graphs4 - graphs_before)
        g.manual_seed(0)
        for frames, out in ((4, out4), (6, out6)):
            assert rel_err(out, run(frames, speed=False)) <= 1e-12
    finally:
        for h in hooks:
            h.remove()
        torch._dynamo.reset()


def test_unet_fps_int_equals_tensor(tiny_unet):
    c = fixture_tensors("unet_tiny_cases.safetensors", unet_cases()[0] + ".")
    fps = int(c["fps"][0])
    a = tiny_unet(c["x"][:1], c["timesteps"][:1], c["context"][:1], fps)
    b = tiny_unet(c["x"][:1], c["timesteps"][:1], c["context"][:1], torch.tensor([fps]))
    assert torch.equal(a, b)


@pytest.mark.parametrize("frame_layout", [(0, 2, 1, 3, 4), (0, 2, 3, 4, 1)])  # per frame: (c, h, w), (h, w, c)
def test_temporal_transformer_keeps_the_frames_layout(frame_layout):
    """Its output has its input's memory layout, so the fold back to frames after it is a view, not a copy of the
    activations (13.8 ms at 128 frames per GPU on an H200), for either layout of a frame in frames-major memory:
    channels-first (the UNet's frames), or channels-last (as a compiled per-frame layer may hand on)."""
    torch.manual_seed(0)
    tt = model.TemporalTransformer(64, 2, 32).eval()
    shape = (2, 64, 5, 3, 4)  # (b, c, t, h, w), allocated in the memory order frame_layout
    x = torch.randn([shape[i] for i in frame_layout]).permute(*torch.tensor(frame_layout).argsort().tolist())
    with torch.no_grad():
        out = tt(x)
    assert out.shape == x.shape and out.stride() == x.stride()
    assert model.fold(out).data_ptr() == out.data_ptr() and model.fold(out).is_contiguous(
        memory_format=torch.channels_last if frame_layout[-1] == 1 else torch.contiguous_format)


def test_unet_keeps_the_frames_channels_first(tiny_unet):
    """Between the UNet's layers every frame stays channels-first, (c, h, w) contiguous, so the temporal layers get
    frames-major memory (b, t, c, h, w) and their folds are views: the plain forward and the fast forms alike. A
    SpatialTransformer returning ... + x instead of x + ... would hand every later layer channels-last frames (its
    token view's layout), and F.group_norm on a GPU, the fast temporal forms' views and the residual adds would copy
    or read across the layout."""
    c = fixture_tensors("unet_tiny_cases.safetensors", unet_cases()[0] + ".")
    layouts = []

    def record(m, args, out):
        layouts.append((type(m).__name__, out.dim() == 4 and out.is_contiguous() or
                        out.dim() == 5 and out.transpose(1, 2).is_contiguous()))
    kinds = (model.ResBlock, model.SpatialTransformer, model.TemporalTransformer, model.Downsample, model.Upsample)
    hooks = [m.register_forward_hook(record) for m in tiny_unet.modules() if isinstance(m, kinds)]
    comm = clip_parallel.EmulatedComm(clip_parallel.EmulatedGroup(1), 0)
    try:
        with torch.no_grad():
            tiny_unet(c["x"], c["timesteps"], c["context"], c["fps"])
            plain = list(layouts)
            with clip_parallel.parallel_temporal_layers(tiny_unet, DualScope()), fast.accelerate(tiny_unet):
                clip_parallel.clip_forward(tiny_unet, comm, c["x"].shape[2], c["x"], c["timesteps"], c["context"],
                                           c["fps"])
    finally:
        for h in hooks:
            h.remove()
    assert {kind for kind, _ in plain} == {k.__name__ for k in kinds} and layouts == plain + plain
    assert all(ok for _, ok in layouts)


def manifest_shapes(prefix):
    m = fixture_json("vc2_manifest.json")
    return {e["key"][len(prefix):]: tuple(e["shape"]) for e in m["keys"] if e["key"].startswith(prefix)}


def test_full_size_unet_keys_and_shapes():
    cfg = fixture_json("vc2_manifest.json")["config"]["unet_config"]["params"]
    with torch.device("meta"):
        unet = model.UNet(**cfg)
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert shapes == manifest_shapes("model.diffusion_model.")
    assert sum(p.numel() for p in unet.parameters()) == 1_413_284_420


def test_unet_rejects_flags_vc2_does_not_use():
    cfg = dict(fixture_json("unet_tiny.json")["unet_config"], use_scale_shift_norm=True)
    with pytest.raises(ValueError, match="use_scale_shift_norm"):
        model.UNet(**cfg)
    with pytest.raises(ValueError, match="unknown config key 'bogus'"):
        model.UNet(**dict(cfg, use_scale_shift_norm=False, bogus=1))


def fixture_file(name):
    path = os.path.join(FIX, name)
    if name.endswith(".json"):
        with open(path) as f:
            return json.load(f)
    return load_file(path)


def weights(name, prefix):  # float16 storage -> exact float32 weights
    return {k[len(prefix):]: v.float() for k, v in fixture_file(name).items() if k.startswith(prefix)}


@pytest.fixture(scope='module')
def tokenizer():
    return model.Tokenizer()


def test_tokenizer_cases(tokenizer):
    cases = fixture_file('tokenizer_cases.json')['cases']
    ours = tokenizer([c['prompt'] for c in cases])
    bad = [c['prompt'] for c, row in zip(cases, ours) if row.tolist() != c['ids']]
    print(f'tokenizer: {len(cases) - len(bad)}/{len(cases)} cases exact')
    assert not bad, bad


def test_text_encoder(tokenizer):
    cfg, cases = fixture_file('text_tiny.json'), fixture_file('text_tiny_cases.safetensors')
    text_cfg = cfg['open_clip_model_config']['text_cfg']
    assert torch.equal(tokenizer(cfg['prompts']), cases['tokens'])
    net = model.TextEncoder(**text_cfg, embed_dim=cfg['open_clip_model_config']['embed_dim']).eval()
    net.load_state_dict(weights('text_tiny.safetensors', cfg['weights_key_prefix']), strict=True)
    assert sum(p.numel() for p in net.parameters()) == cfg['num_parameters']
    with torch.no_grad():
        out = net(cases['tokens'])
        x = net.token_embedding(cases['tokens']) + net.positional_embedding  # all blocks (layer='last')
        for block in net.transformer.resblocks:
            x = block(x)
        errs = {'out': rel_err(out, cases['out']), 'out_all_layers': rel_err(net.ln_final(x), cases['out_all_layers'])}
    print('text', {k: f'{v:.2e}' for k, v in errs.items()})
    assert out.shape == cases['out'].shape and max(errs.values()) <= 1e-4, errs


def test_vae():
    cfg, cases = fixture_file('vae_tiny.json'), fixture_file('vae_tiny_cases.safetensors')
    net = model.AutoencoderKL(**{k: cfg['params'][k] for k in ('ddconfig', 'embed_dim')}).eval()
    net.load_state_dict(weights('vae_tiny.safetensors', cfg['weights_key_prefix']), strict=True)
    assert sum(p.numel() for p in net.parameters()) == cfg['num_parameters']
    with torch.no_grad():
        for case in cfg['cases']:
            name = case['name']
            if case['kind'] == 'decode':
                errs = {'out': rel_err(net.decode(cases[f'{name}.z']), cases[f'{name}.out'])}
            else:
                mean, logvar = net.encode(cases[f'{name}.x'])
                errs = {'mean': rel_err(mean, cases[f'{name}.mean']), 'logvar': rel_err(logvar, cases[f'{name}.logvar'])}
            print(name, {k: f'{v:.2e}' for k, v in errs.items()})
            assert max(errs.values()) <= 1e-4, (name, errs)


def test_full_size_keys_and_counts():
    m = fixture_file('vc2_manifest.json')
    counts = {k.split()[0]: v for k, v in m['parameter_counts'].items()}
    fs = m['config']['first_stage_config']['params']
    tt = {k: m['config']['text_tower'][k] for k in ('context_length', 'vocab_size', 'width', 'heads', 'layers')}
    with torch.device('meta'):
        parts = {'first_stage_model.': (model.AutoencoderKL(fs['ddconfig'], fs['embed_dim']), counts['vae']),
                 'cond_stage_model.model.': (model.TextEncoder(**tt), counts['text'])}
    for prefix, (net, count) in parts.items():
        expected = {e['key'][len(prefix):]: e['shape'] for e in m['keys'] if e['key'].startswith(prefix)}
        ours = {k: list(v.shape) for k, v in net.state_dict().items()}
        assert ours == expected, (prefix, set(ours) ^ set(expected))
        n = sum(p.numel() for p in net.parameters())
        print(f'{prefix} {len(ours)} keys, {n:,} parameters')
        assert n == count


def test_vae_rejects_unsupported_config():
    dd = dict(fixture_file('vae_tiny.json')['params']['ddconfig'])
    with pytest.raises(ValueError, match='attn_resolutions'):
        model.AutoencoderKL({**dd, 'attn_resolutions': [16]}, 4)
    with pytest.raises(ValueError, match='double_z'):
        model.AutoencoderKL({**dd, 'double_z': False}, 4)
    with pytest.raises(ValueError, match='tanh_out'):
        model.AutoencoderKL({**dd, 'tanh_out': True}, 4)


# -----------------------------------------------------------------------------
# clip parallelism (clip_parallel.py, dual_scope.py, simulate.py)


@pytest.mark.parametrize("case", unet_cases())
@pytest.mark.parametrize("ranks", [2, 3, 4])
def test_clip_parallel_full_window_matches_original(tiny_unet, case, ranks):
    """w >= T and no global frames is VC2's own full temporal attention: N ranks must give the ORIGINAL output."""
    c = fixture_tensors("unet_tiny_cases.safetensors", case + ".")
    frames = c["x"].shape[2]
    if ranks > frames:
        pytest.skip("fewer frames than ranks")
    scope = DualScope(local_window=frames, global_frames=0)
    out = simulate.run_emulated(tiny_unet, c["x"], c["timesteps"], c["context"], c["fps"], ranks, scope)
    assert rel_err(out, c["out"]) <= 1e-4


@pytest.fixture(scope="module")
def dual_scope_case(tiny_unet):
    """T = 23 frames (uneven over every N), two batch elements in different bias phases.

    16x16 latents, not 8x8: at 8x8 the deepest level is 1x1, where a GroupNorm of a narrow random UNet normalises
    a couple of numbers with a near-zero variance for some weights and inputs, amplifying float32 rounding to 1e-4
    in ANY implementation (the single-device float32 run itself is then 5e-5 from float64)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 23, 16, 16, generator=g)
    context = torch.randn(2, 77, tiny_unet.context_dim, generator=g)
    return x, torch.tensor([900, 200]), context, torch.tensor([24, 8])


def test_clip_parallel_dual_scope_any_rank_count(tiny_unet, dual_scope_case):
    scope = DualScope(local_window=2, global_frames=3)
    reference = simulate.single_device(tiny_unet, *dual_scope_case, scope)
    for ranks in range(1, 6):
        out = simulate.run_emulated(tiny_unet, *dual_scope_case, ranks, scope)
        assert rel_err(out, reference) <= 1e-5, ranks
    # dual scope is really active: it differs from VC2's full attention, and w and k each change the result
    full = tiny_unet(*dual_scope_case)
    assert rel_err(reference, full) > 1e-2
    for other in (DualScope(local_window=3, global_frames=3), DualScope(local_window=2, global_frames=4)):
        assert rel_err(simulate.run_emulated(tiny_unet, *dual_scope_case, 3, other), reference) > 1e-3


def test_clip_parallel_is_exact_in_float64(tiny_unet, dual_scope_case):
    """Beyond float32 rounding: in float64 the clip-parallel math equals the single-device math to 1e-12.

    (In float32 the random-weight UNet amplifies rounding differently for different inputs: for some inputs
    even the single-device float32 run is 2e-5 away from float64. Float64 shows the methods agree exactly.)"""
    unet64 = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval().double()
    unet64.load_state_dict(tiny_unet.state_dict())
    x, timesteps, context, fps = dual_scope_case
    case = (x.double(), timesteps, context.double(), fps)
    scope = DualScope(local_window=2, global_frames=3, token_scale=True)
    reference = simulate.single_device(unet64, *case, scope)
    for ranks in (1, 2, 3, 5):
        plain = simulate.run_emulated(unet64, *case, ranks, scope)
        assert rel_err(plain, reference) <= 1e-12, ranks
        assert rel_err(simulate.run_emulated(unet64, *case, ranks, scope, fast=True), plain) <= 1e-12, ranks


def test_clip_parallel_one_and_two_frame_clips(tiny_unet, dual_scope_case):
    """Clips of 1 and 2 frames: the temporal conv's end frames are then the whole clip (one frame is both ends and
    takes both neighbours' taps). 5 frames over 5 ranks (1 each) and over 3 ranks (2, 2, 1), float64."""
    unet64 = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval().double()
    unet64.load_state_dict(tiny_unet.state_dict())
    x, timesteps, context, fps = dual_scope_case
    case = (x[:, :, :5].double(), timesteps, context.double(), fps)
    scope = DualScope(local_window=1, global_frames=2)
    reference = simulate.single_device(unet64, *case, scope)
    for ranks in (3, 5):
        for form in (False, True):  # plain, fast
            assert rel_err(simulate.run_emulated(unet64, *case, ranks, scope, fast=form), reference) <= 1e-12, ranks


# fast.py's forms against the plain forms of clip_parallel.py, layer by layer, float64


def clip_parallel_layer(module, x, ranks, scope, forward, speed):
    """forward(module, clip) on each of `ranks` emulated ranks, x (b, c, T, h, w) split along T, inside
    parallel_temporal_layers (and fast.accelerate if speed) -> the clips' outputs reassembled along T."""
    T, timesteps = x.shape[2], torch.tensor([900, 300])
    clips = split_frames(T, ranks)

    def rank(comm):
        clip = x[:, :, slice(*clips[comm.rank])]
        clip_parallel.enter_clip(comm, T, clip, timesteps)
        return forward(module, clip)

    with clip_parallel.parallel_temporal_layers(module, scope), fast.accelerate(module) if speed else nullcontext():
        return torch.cat(clip_parallel.run_ranks(ranks, rank), dim=2)


def frames_major(b, c, T, h, w, seed):  # (b, c, T, h, w) in the UNet's memory order (b, T, c, h, w)
    return torch.randn(b, T, c, h, w, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).transpose(1, 2)


# (frames, ranks): uneven clips, clips of 2 frames (11 over 5), of 1 frame (5 over 5), of two query blocks (150 over 2)
LAYER_SPLITS = [(11, 1), (11, 2), (11, 3), (11, 5), (5, 5), (150, 2)]


@pytest.mark.parametrize("frames,ranks", LAYER_SPLITS)
def test_fast_temporal_conv_block_equals_plain(frames, ranks):
    """fast.FastTemporalConvBlock (batched GEMMs on strided views, biases folded into the next GroupNorm) against
    the plain ClipTemporalConvs, and both against VC2's TemporalConvBlock on the whole video."""
    res = simulate.randomize(model.ResBlock(64, 8, 64), frames).double().eval()
    x = frames_major(2, 64, frames, 3, 2, seed=ranks)
    scope = DualScope(local_window=2, global_frames=3)
    whole = res.temopral_conv(x)
    plain = clip_parallel_layer(res, x, ranks, scope, lambda m, clip: m.temopral_conv(clip), speed=False)
    quick = clip_parallel_layer(res, x, ranks, scope, lambda m, clip: m.temopral_conv(clip), speed=True)
    assert rel_err(plain, whole) <= 1e-12 and rel_err(quick, plain) <= 1e-12
    assert rel_err(whole, x) > 0.1  # the block does change its input


@pytest.mark.parametrize("frames,ranks", LAYER_SPLITS)
def test_fast_temporal_transformer_equals_plain(frames, ranks):
    """fast.FastGroupNorm and the banded dual-scope attention against ClipGroupNorm and dual_scope.clip_attention, in a
    TemporalTransformer; with the full window and no global frames, both are VC2's TemporalTransformer itself."""
    tt = simulate.randomize(model.TemporalTransformer(64, 2, 32), frames).double().eval()
    x = frames_major(2, 64, frames, 2, 1, seed=ranks)
    run = lambda scope, speed: clip_parallel_layer(tt, x, ranks, scope, lambda m, clip: m(clip), speed)  # noqa: E731
    for scope in (DualScope(local_window=2, global_frames=3, token_scale=True), DualScope(local_window=8)):
        assert rel_err(run(scope, True), run(scope, False)) <= 1e-12, scope
    full = DualScope(local_window=frames, global_frames=0)
    assert rel_err(run(full, False), tt(x)) <= 1e-12 and rel_err(run(full, True), tt(x)) <= 1e-12


def frame_layer_cases(dtype):  # (name, plain call, fast form call) of each eager per-frame form
    g = torch.Generator().manual_seed(0)
    x, emb, context = (torch.randn(*shape, generator=g).to(dtype) for shape in ((6, 64, 5, 7), (6, 32), (6, 77, 48)))
    cases = []
    for c_out in (64, 96):  # identity skip; 1x1 conv skip (96: channel tiles past the end of the kernels' last)
        res = simulate.randomize(model.ResBlock(64, 32, c_out, temporal=False), c_out).to(dtype).eval()
        cases.append((f"ResBlock {c_out}", functools.partial(res.frame_layers, x, emb),
                      functools.partial(fast.resblock_frame_layers, res, x, emb)))
    st = simulate.randomize(model.SpatialTransformer(64, 2, 32, 48), 1).to(dtype).eval()
    cases.append(("SpatialTransformer", functools.partial(st, x, context),
                  functools.partial(fast.spatial_transformer_forward, st, x, context)))
    blocks = [simulate.randomize(model.TransformerBlock(80, 2, 40, 48), i).to(dtype).eval() for i in (3, 4)]
    y = torch.randn(6, 35, 80, generator=g).to(dtype)  # 80: a partial tile

    def lazy(blocks):  # transformer_blocks_forward's output, its biases added (it overwrites its input: a copy)
        y_, shift = fast.transformer_blocks_forward(blocks, y.clone(), context)
        return y_ + shift.to(y_.dtype)
    cases.append(("TransformerBlocks", lambda: blocks[1](blocks[0](y, context), context),
                  functools.partial(lazy, blocks)))
    chunked = copy.deepcopy(blocks[0])
    chunked.ff.chunk_bytes = y[:1].numel() * 8 * y.element_size() * 4  # its FeedForward in chunks of 4 rows of 6
    cases.append(("TransformerBlock, FeedForward in chunks", functools.partial(chunked, y, context),
                  functools.partial(lazy, [chunked])))
    geglu = simulate.randomize(model.GEGLU(48, 1100), 2).to(dtype).eval()  # 1100: a partial tile of the kernel's
    cases.append(("GEGLU", functools.partial(geglu, context), functools.partial(fast.geglu_forward, geglu, context)))
    geglu = simulate.randomize(model.GEGLU(48, 1096), 2).to(dtype).eval()  # widths TMA takes; 1096: a partial tile
    cases.append(("GEGLU as one GEMM", functools.partial(geglu, context),
                  functools.partial(fast.geglu_forward, geglu, context)))
    vae = simulate.randomize(model.ResnetBlock(64, 96), 3).to(dtype).eval()  # the VAE's, with its 1x1 shortcut
    x_last = x.contiguous(memory_format=torch.channels_last)  # as the decoder hands it on
    cases.append(("VAE ResnetBlock", functools.partial(vae, x_last),
                  functools.partial(fast.vae_resnet_forward, vae, x_last)))
    for name, up, frames in (("Upsample", model.Upsample(64), x),
                             ("VAE Resample up", model.Resample(64, True), x_last)):
        up = simulate.randomize(up, 4).to(dtype).eval()  # 5 x 7 frames: odd sizes both ways
        cases.append((name, functools.partial(up, frames), functools.partial(fast.upsample_forward, up, frames)))
    return cases


def test_fast_frame_layers_equal_plain():
    """The eager per-frame forms (channels-last inside, the conv biases folded into the passes after them) against
    model.ResBlock.frame_layers, model.SpatialTransformer.forward, model.TransformerBlock.forward (its residual sums
    in the GEMMs, its FeedForward whole and in chunks), model.GEGLU, model.Upsample and the VAE's model.ResnetBlock
    and model.Resample (up; upsample_conv: the 3x3 taps folded per phase), float64, their PyTorch arithmetic (a
    CPU): channels-first out, as in (the VAE's: channels-last, as the decoder goes on)."""
    with torch.no_grad():
        for name, plain, quick in frame_layer_cases(torch.float64):
            a, b = plain(), quick()
            layout = torch.channels_last if name.startswith("VAE") else torch.contiguous_format
            assert rel_err(b, a) <= 1e-12 and b.is_contiguous(memory_format=layout), name


def tiny_vae():  # the fixture's tiny VAE config, random weights (float32)
    cfg = fixture_json("vae_tiny.json")["params"]
    return simulate.randomize(model.AutoencoderKL(cfg["ddconfig"], cfg["embed_dim"]), 0).eval()


def test_fast_decoder_equals_plain():
    """fast.decoder_forms against the plain VAE decoder (float64, the fixture's tiny VAE with random weights): the same
    frames up to rounding, written channels-last; everything restored by the undo list. (fast.accelerate_decoder
    swaps them in where their Triton kernels run, a GPU: on this CPU it leaves the decoder as it is.)"""
    vae = tiny_vae().double()
    z = torch.randn(3, vae.post_quant_conv.in_channels, 5, 6, generator=torch.Generator().manual_seed(1),
                    dtype=torch.float64)
    with torch.no_grad():
        plain = vae.decode(z)
        with fast.accelerate_decoder(vae):
            assert "forward" not in vars(vae.decoder.mid.block_1)  # the plain layer's own forward
        undo = fast.decoder_forms(vae)
        quick = vae.decode(z)
        for u in reversed(undo):
            u()
        assert torch.equal(vae.decode(z), plain)
    assert rel_err(quick, plain) <= 1e-12 and quick.is_contiguous(memory_format=torch.channels_last)


FRAME_KERNELS_INTERPRETED = """
import torch, triton, fast, model, test_all
from clip_parallel import ClipAttention, parallel_temporal_layers
from dual_scope import DualScope
assert fast.use_kernels(torch.zeros(1))
g = torch.Generator().manual_seed(0)
for dtype, tol in ((torch.float32, 2e-6), (torch.bfloat16, 2e-2)):
    # the temporal GroupNorms' passes: frames-major (b, c, n, h, w), scale and shift per (b, channel)
    x = torch.randn(2, 5, 70, 6, 7, generator=g).to(dtype).transpose(1, 2)
    bias, scale, shift = torch.randn(70, generator=g), torch.randn(2, 70, generator=g), torch.randn(2, 70, generator=g)
    want, got = fast.group_moments(x.double(), 7, bias.double()), fast.kernel_group_moments(x, 7, bias)
    assert test_all.rel_err(got.double(), want) <= 1e-5, dtype  # float32 arithmetic on x's values
    for name in ("normalize_silu", "normalize_tokens"):
        want, got = getattr(fast, name)(x, scale, shift), getattr(fast, "kernel_" + name)(x, scale, shift)
        assert test_all.rel_err(got.double(), want.double()) <= tol and got.stride() == want.stride(), (dtype, name)
    # a TemporalConvBlock's residual with conv4's bias; a TemporalTransformer's output projection and residual, its
    # proj_out a Linear or (init_attn) a kernel-1 Conv1d, the tokens in the layout proj_in's GEMM writes
    h = torch.randn(2, 5, 70, 6, 7, generator=g).to(dtype).transpose(1, 2)
    want, got = fast.add_residual(x.double(), h.double(), bias.double()), fast.kernel_add_residual(x, h, bias.to(dtype))
    assert test_all.rel_err(got.double(), want) <= tol and got.stride() == x.stride(), dtype
    x, y = torch.randn(2, 5, 96, 6, 7, generator=g).to(dtype).transpose(1, 2), torch.randn(84, 5, 40, generator=g)
    shift = torch.randn(40, generator=g)  # the blocks' biases left out of y
    for use_linear in (True, False):  # 96 channels: a partial tile; 84 = (b h w) sequences of 5 frames
        tt = model.TemporalTransformer(96, 2, 20, use_linear=use_linear).to(dtype)
        with torch.no_grad():
            want = fast.project_out(tt, (y + shift).to(dtype), x)
            got = fast.kernel_project_out(tt, y.to(dtype), x, shift)
        assert test_all.rel_err(got.double(), want.double()) <= tol and got.stride() == x.stride(), (dtype, use_linear)
    for channels_last in (False, True):  # each kernel reading either layout
        # the channels' moments of frames in one chunk, in 2 and in 3 (the last chunk shorter: 1320 = 704 + 616 and
        # 1600 = 2 x 576 + 448 pixels), against float64; 70 channels: a partial channel tile
        for hw in ((24, 20), (40, 33), (40, 40)):
            x = torch.randn(2, 70, *hw, generator=g).to(dtype) + 3  # off zero: a mean to get right
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            mean, m2 = fast.channel_moments(x)
            x64 = x.double().flatten(2)
            want_mean = x64.mean(2)
            want_m2 = (x64 - want_mean[..., None]).square().sum(2)
            assert test_all.rel_err(mean.double(), want_mean) <= 1e-6 and test_all.rel_err(m2.double(), want_m2) <= 1e-6
        # 70 channels (partial channel tiles), 600 pixels (partial pixel tiles, two row blocks of frame_pass)
        x, y = (torch.randn(3, 70, 24, 25, generator=g).to(dtype) for _ in range(2))
        x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        norm = torch.nn.GroupNorm(7, 70)
        torch.nn.init.normal_(norm.weight, 1, 0.1, generator=g), torch.nn.init.normal_(norm.bias, 0, 0.1, generator=g)
        pre, bias = torch.randn(3, 70, generator=g), torch.randn(70, generator=g)
        with torch.no_grad():
            ref = torch.nn.functional.group_norm(x.double() + pre.double()[..., None, None], 7, norm.weight.double(),
                                                 norm.bias.double(), norm.eps)
            for got, want, out_last in ((fast.frame_pass(x, norm, pre, silu=True), torch.nn.functional.silu(ref), 1),
                                        (fast.frame_pass(x, residual=y, bias=bias, channels_last=False),
                                         x.double() + y.double() + bias.double()[:, None, None], 0)):
                assert test_all.rel_err(got.double(), want) <= tol, (dtype, channels_last, out_last)
                assert got.is_contiguous(memory_format=torch.channels_last if out_last else torch.contiguous_format)
    with torch.no_grad():
        for name, plain, quick in test_all.frame_layer_cases(dtype):
            assert test_all.rel_err(quick().double(), plain().double()) <= tol, (dtype, name)
    # the LayerNorm of x + the residual sums' biases: 70 channels (a partial tile), rows past the last program's
    norm = torch.nn.LayerNorm(70).to(dtype)
    torch.nn.init.normal_(norm.weight, 1, 0.1, generator=g), torch.nn.init.normal_(norm.bias, 0, 0.1, generator=g)
    x, shift = torch.randn(5, 11, 70, generator=g).to(dtype), torch.randn(70, generator=g)
    with torch.no_grad():
        y = fast.layer_norm(x, norm, shift)
        want = torch.nn.functional.layer_norm(x.double() + shift.double(), (70,), norm.weight.double(),
                                              norm.bias.double(), norm.eps)
        assert test_all.rel_err(y.double(), want) <= tol
    # the dual-scope attention against dual_scope.clip_attention: two query blocks, halos narrower than w, a clip
    # shorter than a tile, no global frames or every frame global, the token scale, q, k, v in to_q's memory
    for T, w, k, token_scale, start, n in ((150, 8, 16, False, 40, 80), (48, 8, 16, True, 0, 48),
                                           (20, 3, 4, False, 5, 7), (12, 15, 3, True, 4, 3),
                                           (24, 4, 0, False, 0, 24), (17, 5, 17, True, 3, 10)):
        scope = DualScope(local_window=w, global_frames=k, token_scale=token_scale)
        q, k_, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in test_all.qkv(2, 3, T, 8, seed=T))
        want = test_all.run_clip(q.double(), k_.double(), v.double(), test_all.T_EARLY_LATE, scope, start, n)
        got = test_all.run_clip(q.to(dtype), k_.to(dtype), v.to(dtype), test_all.T_EARLY_LATE, scope, start, n,
                                fast.kernel_attention)
        assert test_all.rel_err(got.double(), want) <= tol and got.transpose(1, 2).is_contiguous(), (dtype, T, w, k)
# where the kernels run, fast.accelerate swaps them in (a CPU here: the interpreter)
unet = model.UNet(**test_all.fixture_json("unet_tiny.json")["unet_config"])
with parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet):
    assert {m.attention for m in unet.modules() if isinstance(m, ClipAttention)} == {fast.kernel_attention}
    assert all(m.ops is fast.KERNELS for m in unet.modules() if isinstance(m, fast.FastGroupNorm))
    assert all(m.forward.func is fast.temporal_transformer_forward and m.forward.args[1] is fast.KERNELS
               for m in unet.modules() if isinstance(m, model.TemporalTransformer))
# the VAE decoder on the kernels (fast.accelerate_decoder swaps its forms in where they run) against the plain one
vae = test_all.tiny_vae()
z = torch.randn(2, vae.post_quant_conv.in_channels, 5, 6, generator=g)
with torch.no_grad(), fast.accelerate_decoder(vae):
    quick = vae.decode(z)
with torch.no_grad():
    assert test_all.rel_err(quick.double(), vae.decode(z).double()) <= 2e-5
print("ok")
"""


def test_fast_frame_kernels_interpreted():
    """fast.py's Triton kernels (a GPU's eager per-frame forms) run on a CPU by Triton's interpreter: the GroupNorm
    from the channels' moments with its SiLU, the residual add, each with its layout change, against float64 PyTorch,
    float32 and bfloat16, each layout in and out, partial tiles; then the per-frame forms, GEGLU and the VAE decoder
    whole against the plain layers."""
    pytest.importorskip("triton")
    run = subprocess.run([sys.executable, "-c", FRAME_KERNELS_INTERPRETED], cwd=HERE, capture_output=True, text=True,
                         env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]


def test_compile_kernels_ahead(tiny_unet, monkeypatch):
    """fast.compile_kernels: one stand-in forward on a short clip (48 + n % 16 frames), and stand-in decodes of the
    VAE decoder's batch sizes, in which every launch of fast.py's Triton kernels compiles its variant in a thread
    (the kernel launched over an empty grid: compiled, its launcher built), once per variant, and runs nothing; the
    kernels are back afterwards, a compile that fails is a warning. Fake kernels here (a CPU compiles none)."""
    calls = collections.defaultdict(list)

    class Fake:
        def __init__(self, name):
            self.name = name

        def __getitem__(self, grid):
            assert grid == (0,), f"{self.name} ran over {grid}"  # an empty grid: compiles and loads, runs nothing
            return self.launch

        def launch(self, *args, **kwargs):
            calls[self.name].append((args, kwargs))
            if self.name == "geglu_gemm_kernel":
                raise RuntimeError("no compiler here")

    fakes = {name: Fake(name) for name in fast.TRITON_KERNELS}
    for name, fake in fakes.items():
        monkeypatch.setattr(fast, name, fake, raising=False)
    monkeypatch.setattr(fast, "use_kernels", lambda x: True)
    unet = copy.deepcopy(tiny_unet)
    vae = tiny_vae()
    with clip_parallel.parallel_temporal_layers(unet, DualScope()), fast.accelerate(unet), \
            fast.accelerate_decoder(vae):
        with pytest.warns(UserWarning, match="did not compile ahead"):
            fast.compile_kernels(unet, (4, 8, 8), 130, 8, vae, decode_batch=32)
    assert all(getattr(fast, name) is fake for name, fake in fakes.items())  # the kernels back
    assert sorted(calls) == sorted(set(fast.TRITON_KERNELS) - {"geglu_kernel"})  # every GEGLU as one GEMM here
    for name, launches in calls.items():  # each variant compiled once
        keys = [fast.variant(args, kwargs) for args, kwargs in launches]
        assert len(set(keys)) == len(keys) > 0, name
    assert {args[7] for args, _ in calls["dual_scope_kernel"]} == {48 + 130 % 16}  # the stand-in clip's frames
    # the decoder's batches of 32 frames and the last of 2 (130 = 4 x 32 + 2): stand-in decodes of 16 and 2 frames
    assert {2, 16} <= {args[12] for args, _ in calls["frame_pass_kernel"]}
    # an int a kernel does not specialise on (triton.jit's do_not_specialize) splits no variant, but its width does
    assert fast.variant((16, 3), {}, plain={0}) == fast.variant((17, 3), {}, plain={0}) != fast.variant((17, 3), {})
    assert fast.variant((16,), {}, plain={0}) != fast.variant((2 ** 31,), {}, plain={0})
    monkeypatch.setattr(fast, "use_kernels", lambda x: False)  # where the kernels do not run: nothing at all
    calls.clear()
    fast.compile_kernels(unet, (4, 8, 8), 130, 8)
    assert not calls


def test_fast_unet_with_eager_frame_layers_equals_plain(tiny_unet):
    """The eager per-frame forms in the whole UNet (fast.accelerate swaps them in where their Triton kernels run, a
    GPU; here their PyTorch arithmetic, swapped in by hand), 2 emulated ranks, float64: the plain forward's numbers."""
    unet64 = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval().double()
    unet64.load_state_dict(tiny_unet.state_dict())
    g = torch.Generator().manual_seed(2)
    case = (torch.randn(2, 4, 6, 8, 8, generator=g, dtype=torch.float64), torch.tensor([900, 200]),
            torch.randn(2, 77, unet64.context_dim, generator=g, dtype=torch.float64), torch.tensor([24, 8]))
    plain = simulate.run_emulated(unet64, *case, 2, DualScope())
    undo = fast.eager_frame_layers(unet64)
    try:
        assert not fast.use_kernels(case[0])  # a CPU: the PyTorch forms
        quick = simulate.run_emulated(unet64, *case, 2, DualScope(), fast=True)
    finally:
        for u in undo:
            u()
    assert rel_err(quick, plain) <= 1e-12 and rel_err(quick, case[0]) > 0.1


@pytest.mark.parametrize("frame_layers", [False, True])
def test_fast_guidance_pair_runs_the_text_free_layers_once(tiny_unet, frame_layers):
    """A guidance pair (one video and timestep for both texts, as views with stride 0 over the batch: sample.py's
    eps_fn) through fast.accelerate: conv_in, init_attn and the first ResBlock run once, on one video (b = 1), the
    rest on both; with the eager per-frame forms (swapped in by hand: a GPU's, in their PyTorch arithmetic) the first
    SpatialTransformer's self-attention too, its cross-attention on both. 2 emulated ranks, float64: the plain
    forward's numbers on the pair written out. A batch that is not a pair (different timesteps) runs them on both."""
    unet64 = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval().double()
    unet64.load_state_dict(tiny_unet.state_dict())
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 6, 8, 8, generator=g, dtype=torch.float64)
    context = torch.randn(2, 77, unet64.context_dim, generator=g, dtype=torch.float64)
    pair = (x.expand(2, -1, -1, -1, -1), torch.tensor([900]).expand(2), context, 24)
    seen = collections.defaultdict(list)  # the frames each layer gets, per call: (b t) on one rank's clip of 3
    st = unet64.input_blocks[1][1].transformer_blocks[0]
    for name, m in (("resblock", unet64.input_blocks[1][0]), ("attn1", st.attn1.to_q), ("attn2", st.attn2.to_q)):
        m.register_forward_pre_hook(lambda m, args, name=name: seen[name].append(len(args[0])))
    plain = simulate.run_emulated(unet64, torch.cat([x, x]), torch.tensor([900, 900]), context, 24, 2, DualScope())
    assert seen == {"resblock": [6, 6], "attn1": [6, 6], "attn2": [6, 6]}
    undo = fast.eager_frame_layers(unet64) if frame_layers else []
    try:
        seen.clear()
        quick = simulate.run_emulated(unet64, *pair, 2, DualScope(), fast=True)
        assert seen == {"resblock": [3, 3], "attn1": [3, 3] if frame_layers else [6, 6], "attn2": [6, 6]}
        assert rel_err(quick, plain) <= 1e-12 and rel_err(quick[0], quick[1]) > 0.01
        seen.clear()
        simulate.run_emulated(unet64, torch.cat([x, x]), torch.tensor([900, 200]), context, 24, 2, DualScope(),
                              fast=True)
        assert seen == {"resblock": [6, 6], "attn1": [6, 6], "attn2": [6, 6]}
        # a text per frame (sample.py's several prompts: context (b, t, 77, d)), one rank: the pair's text-free
        # layers once all the same, each frame's text where it is read
        per_frame = torch.randn(2, 6, 77, unet64.context_dim, generator=g, dtype=torch.float64)
        plain = simulate.run_emulated(unet64, torch.cat([x, x]), torch.tensor([900, 900]), per_frame, 24, 1,
                                      DualScope())
        quick = simulate.run_emulated(unet64, pair[0], pair[1], per_frame, 24, 1, DualScope(), fast=True)
        assert rel_err(quick, plain) <= 1e-12
    finally:
        for u in reversed(undo):
            u()
    assert all(getattr(m.forward, "__func__", None) is type(m).forward for m in unet64.modules())  # swaps undone


def test_fast_unet_equals_plain_with_two_query_blocks_per_clip(tiny_unet):
    """The whole UNet, fast forms against plain, on a clip of 66 frames: two query blocks of the banded attention
    (64 + 2), w = 8, k = 16 (the published configuration), float64 (8x16 latents, not 8x8: see dual_scope_case)."""
    unet64 = model.UNet(**fixture_json("unet_tiny.json")["unet_config"]).eval().double()
    unet64.load_state_dict(tiny_unet.state_dict())
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 66, 8, 16, generator=g, dtype=torch.float64)
    case = (x, torch.tensor([900, 200]), torch.randn(2, 77, unet64.context_dim, generator=g, dtype=torch.float64),
            torch.tensor([24, 8]))
    plain = simulate.run_emulated(unet64, *case, 1, DualScope())
    assert rel_err(simulate.run_emulated(unet64, *case, 1, DualScope(), fast=True), plain) <= 1e-12


def test_clip_parallel_window_longer_than_clip_falls_back(tiny_unet, dual_scope_case):
    """23 frames over 5 ranks leaves clips of 4; a window of 6 gathers the whole sequence, still exact."""
    scope = DualScope(local_window=6, global_frames=2)
    reference = simulate.single_device(tiny_unet, *dual_scope_case, scope)
    assert rel_err(simulate.run_emulated(tiny_unet, *dual_scope_case, 5, scope), reference) <= 1e-5


def test_communication_stages(tiny_unet, dual_scope_case):
    """Stage 1 pairs (0,1),(2,3); stage 2 pairs (1,2),(3,4): who sends what is fixed by the rank's parity."""
    _, traffic = simulate.emulate(tiny_unet, *dual_scope_case, 4, DualScope(local_window=2, global_frames=3))
    s1 = [t["stage1"][0] for t in traffic]
    s2 = [t["stage2"][0] for t in traffic]
    assert s1[0] == s1[1] == s1[2] == s1[3] > 0
    assert s2[0] == s2[3] == 0 and s2[1] == s2[2] == s1[0]
    assert all(t["stage3"][0] > 0 for t in traffic)


def test_transfers_overlap_the_gemms_that_need_no_other_clip(tiny_unet, dual_scope_case):
    """In the fast forms each transfer is waited for only where its result is read: between the start of every halo
    exchange, and of every attention's gather of the global frames, and its wait, the rank runs GEMMs (a temporal
    conv's in-clip taps, an attention's query projection), which on GPUs run while NCCL moves the frames. One rank: it
    takes part in every stage all the same (no partner, a gather of its own frames)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    events = []  # ("start", transfer), ("wait", transfer), ("gemm", None), in order

    class Recording(clip_parallel.EmulatedComm):
        def record(self, kind, wait):
            transfer = (kind, len(events))
            events.append(("start", transfer))
            return lambda: events.append(("wait", transfer)) or wait()

        def exchange(self, stage, partner, tensor):
            return self.record("exchange", super().exchange(stage, partner, tensor))

        def all_gather(self, stage, tensor):
            return self.record("all_gather", super().all_gather(stage, tensor))

    class Gemms(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.mm, torch.ops.aten.addmm, torch.ops.aten.bmm,
                                       torch.ops.aten.baddbmm):
                events.append(("gemm", None))
            return func(*args, **(kwargs or {}))

    x, timesteps, context, fps = dual_scope_case
    comm = Recording(clip_parallel.EmulatedGroup(1), 0)
    with clip_parallel.parallel_temporal_layers(tiny_unet, DualScope(local_window=2, global_frames=3)) as unet, \
            fast.accelerate(unet):
        attentions = sum(isinstance(m, clip_parallel.ClipAttention) for m in unet.modules())
        with Gemms():
            clip_parallel.clip_forward(unet, comm, x.shape[2], x, timesteps, context, fps)
    started, overlapped = {}, {"exchange": 0, "all_gather": 0}
    for i, (event, transfer) in enumerate(events):
        if event == "start":
            started[transfer] = i
        elif event == "wait":
            overlapped[transfer[0]] += any(e == "gemm" for e, _ in events[started.pop(transfer):i])
    exchanges = sum(t[0] == "exchange" for e, t in events if e == "start")
    assert not started and exchanges > 0 and overlapped["exchange"] == exchanges
    assert overlapped["all_gather"] == attentions > 0  # the GroupNorms' statistics are read at once


def test_simulate_cli_emulated(tmp_path):
    out = tmp_path / "sim.json"
    code = simulate.main(["--frames", "11", "--ranks", "3", "--height", "8", "--width", "8", "--local-window", "2",
                          "--global-frames", "3", "--dtype", "float64", "--json", str(out),
                          "--plot", str(tmp_path / "scope.svg")])
    res = json.loads(out.read_text())
    assert code == 0 and res["ok"] and [r["ranks"] for r in res["results"]] == [1, 2, 3]
    assert all(r["plain"] <= 1e-10 and r["fast"] <= 1e-10 for r in res["results"])
    assert "T = 11 frames" in (tmp_path / "scope.svg").read_text()


@pytest.mark.parametrize("ranks", [2, 3])
def test_simulate_real_gloo_ranks(tmp_path, ranks):
    """Real processes (torchrun, gloo): the gathered clip-parallel video equals the single-device run."""
    out = tmp_path / "sim.json"
    torchrun_ok(["--frames", "11", "--height", "8", "--width", "8", "--local-window", "2", "--global-frames", "3",
                 "--dtype", "float64", "--json", str(out)], "simulate.py", ranks)
    res = json.loads(out.read_text())["results"][0]
    assert res["ranks"] == ranks and res["backend"] == "gloo" and res["plain"] <= 1e-10 and res["fast"] <= 1e-10
    stage2_pairs = [(r % 2 == 1 and r + 1 < ranks) or (r % 2 == 0 and r >= 2) for r in range(ranks)]  # (1,2),(3,4)..
    assert [t["stage2"][0] > 0 for t in res["traffic"]] == stage2_pairs


def test_simulate_real_gloo_ranks_compiled(tmp_path):
    """The compiled fast forms (fast.accelerate(compile=True)) with real ranks and halos on both sides of a clip: equal
    to the eager single-device run. Backend "eager": dynamo's capture, not Inductor's code (bench.py checks that on a
    GPU)."""
    out = tmp_path / "sim.json"
    torchrun_ok(["--frames", "11", "--height", "8", "--width", "8", "--local-window", "2", "--global-frames", "3",
                 "--dtype", "float64", "--compile", "eager", "--json", str(out)], "simulate.py", 3, timeout=600)
    res = json.loads(out.read_text())["results"][0]
    assert res["ranks"] == 3 and res["compile"] == "eager" and res["plain"] <= 1e-10 and res["fast"] <= 1e-10


def test_clip_forward_checks_the_clip_length():
    """A rank handed the wrong slice of the video is an error, not a wrong video (10 frames, 2 ranks: 5 each)."""
    from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward
    comm = EmulatedComm(EmulatedGroup(2), 0)
    with pytest.raises(ValueError, match=r"rank 0 holds frames \[0, 5\) of 10: x has 4 frames, expected 5"):
        clip_forward(None, comm, 10, torch.zeros(1, 4, 4, 2, 2), torch.tensor([900]), None, 24)


def test_graphed_clip_forward_refuses_what_it_cannot_record():
    from clip_parallel import EmulatedComm, EmulatedGroup
    from fast import GraphedClipForward
    x = torch.zeros(1, 4, 4, 2, 2)
    with pytest.raises(ValueError, match="warmup must be >= 1, got 0"):
        GraphedClipForward(None, EmulatedComm(EmulatedGroup(1), 0), 4, x, 900, None, 24, warmup=0)
    with pytest.raises(ValueError, match="CUDA graphs need a CUDA device, x is on cpu"):
        GraphedClipForward(None, EmulatedComm(EmulatedGroup(1), 0), 4, x, 900, None, 24)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="cannot record emulated ranks"):
            GraphedClipForward(None, EmulatedComm(EmulatedGroup(2), 0), 8, x.cuda(), 900, None, 24)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU (run on one: docs/BENCH.md)")
def test_graphed_clip_forward_replays_equal_forwards(monkeypatch):
    """The recorded forward, replayed on new inputs and timesteps (either side of the bias switch), gives what the
    plain forward gives on them: the same kernels, so equal to rounding."""
    from clip_parallel import EmulatedComm, EmulatedGroup, clip_forward, parallel_temporal_layers
    from fast import GraphedClipForward, accelerate
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # float32 convs: no TF32 algorithm choice
    torch.manual_seed(0)
    unet = simulate.randomize(model.UNet(**simulate.TINY_UNET).eval(), 0).cuda()
    comm, n = EmulatedComm(EmulatedGroup(1), 0), 12
    x = torch.randn(2, 4, n, 8, 8, device="cuda")
    ctx = torch.randn(2, 77, simulate.TINY_UNET["context_dim"], device="cuda")
    with torch.no_grad(), parallel_temporal_layers(unet, DualScope(local_window=2, global_frames=3)), accelerate(unet):
        graph = GraphedClipForward(unet, comm, n, x, 900, ctx, 24)
        for t in (900, 500, 999):
            x = torch.randn_like(x)
            want = clip_forward(unet, comm, n, x, torch.full((2,), t, device="cuda"), ctx, 24)
            got = graph(x, t)
            assert (got - want).abs().max() <= 1e-5 * want.abs().max()
        with pytest.raises(ValueError, match=r"x has shape \(1, 4, 12, 8, 8\), the graph was recorded for "
                                             r"\(2, 4, 12, 8, 8\)"):
            graph(x[:1], 900)  # copy_ would broadcast it


def test_simulate_ranks_flag_is_for_emulated_ranks(monkeypatch):
    with pytest.raises(SystemExit):
        simulate.parse_args(["--frames", "3"])  # the default --ranks 4 emulated ranks need 4 frames
    monkeypatch.setenv("WORLD_SIZE", "2")  # under torchrun the world size counts, checked once the group exists
    assert simulate.parse_args(["--frames", "3"]).frames == 3


def test_simulate_compile_needs_torchrun(capsys):
    with pytest.raises(SystemExit):
        simulate.parse_args(["--compile"])
    assert "--compile needs real ranks (torchrun)" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# dual-scope attention (dual_scope.py)


T_EARLY_LATE = torch.tensor([900, 100])  # b=2: one element each side of the switch


def qkv(b, s, T, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, s, T, d, generator=g) * 2 for _ in range(3)]  # *2: peakier softmax, a harder test


def run_clip(q, k, v, timesteps, scope, start, n, attention=clip_attention):
    """Slice what a rank would hold for the clip [start, start+n) and run clip_attention (or fast's form of it)."""
    T, w = q.shape[2], min(scope.local_window, q.shape[2] - 1)
    left, right = min(w, start), min(w, T - start - n)
    G = scope.global_indices(T)
    given = list(range(start - left, start + n + right)) + G  # [halo | clip | halo | global frames]
    return attention(q[:, :, start:start + n], k[:, :, given], v[:, :, given], start, left, T, timesteps, scope)


def test_global_indices():
    assert DualScope(global_frames=16).global_indices(48) == [1 + 3 * m for m in range(16)]
    assert DualScope(global_frames=4).global_indices(10) == [1, 3, 6, 8]  # floor(1.25), floor(3.75), ...
    assert DualScope(global_frames=16).global_indices(16) == list(range(16))
    assert DualScope(global_frames=40).global_indices(16) == list(range(16))
    assert DualScope(global_frames=0).global_indices(16) == []
    for T in range(1, 70):
        for k in range(0, 20):
            G = DualScope(global_frames=k).global_indices(T)
            assert G == sorted(set(G)) and len(G) == min(k, T) and all(0 <= j < T for j in G)


def test_validation_and_biases():
    with pytest.raises(ValueError, match="local_window"):
        DualScope(local_window=-1)
    with pytest.raises(ValueError, match="global_frames"):
        DualScope(global_frames=-2)
    with pytest.raises(ValueError, match="ranks"):
        split_frames(4, 0)
    with pytest.raises(ValueError, match="frames"):
        split_frames(3, 4)
    bl, bg = DualScope().biases(torch.tensor([999, 800, 799, 0]))
    assert bl.dtype == torch.float32 and bl.tolist() == [0, 0, 10, 10] and bg.tolist() == [10, 10, 0, 0]


def test_split_frames():
    assert split_frames(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert split_frames(64, 4) == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert split_frames(5, 5) == [(i, i + 1) for i in range(5)]


CONFIGS = [  # (T, w, k)
    (48, 8, 16), (33, 8, 16), (20, 3, 4), (16, 0, 5), (12, 15, 3), (12, 11, 0), (24, 4, 0), (10, 2, 16),
    (17, 5, 17), (70, 1, 7), (100, 3, 9), (40, 20, 6), (1, 8, 16), (2, 0, 0),
]


@pytest.mark.parametrize("token_scale", [False, True])
@pytest.mark.parametrize("T,w,k", CONFIGS)
def test_clip_matches_reference(T, w, k, token_scale):
    scope = DualScope(local_window=w, global_frames=k, token_scale=token_scale)
    q, k_, v = qkv(2, 3, T, 8, seed=T * 100 + w * 10 + k)
    ref = reference_attention(q.double(), k_.double(), v.double(), T_EARLY_LATE, scope)
    rng = random.Random(T + w + k)
    clips = [(0, T)] + [(a, b - a) for a, b in split_frames(T, min(T, 3))]
    for _ in range(6):
        start = rng.randrange(T)
        clips.append((start, rng.randint(1, T - start)))
    q64, k64, v64 = q.double(), k_.double(), v.double()
    for start, n in clips:
        out = run_clip(q, k_, v, T_EARLY_LATE, scope, start, n)
        assert out.shape == (2, 3, n, 8)
        assert rel_err(out.double(), ref[:, :, start:start + n]) <= 1e-5, (start, n)
        # fast.py's banded form: blocks of 64 queries (several when n > 64), each over its band of keys
        plain = run_clip(q64, k64, v64, T_EARLY_LATE, scope, start, n)
        banded = run_clip(q64, k64, v64, T_EARLY_LATE, scope, start, n, fast.banded_attention)
        assert rel_err(banded, plain) <= 1e-12 and rel_err(plain, ref[:, :, start:start + n]) <= 1e-12, (start, n)


def test_clip_rejects_wrong_halo():
    scope = DualScope(local_window=2, global_frames=3)
    q, k, v = qkv(1, 1, 10, 4)
    G = scope.global_indices(10)
    with pytest.raises(ValueError, match="halo"):  # clip [4, 7) needs 2 frames each side, given 1 on the left
        clip_attention(q[:, :, 4:7], k[:, :, [*range(3, 9), *G]], v[:, :, [*range(3, 9), *G]], 4, 1, 10,
                       T_EARLY_LATE, scope)


def test_dual_scope_is_active_and_reduces_to_full_attention():
    T = 32
    q, k, v = qkv(2, 4, T, 16)
    full = F.scaled_dot_product_attention(q, k, v)
    dual = reference_attention(q, k, v, T_EARLY_LATE, DualScope(local_window=4, global_frames=8))
    assert rel_err(dual, full) > 0.1
    for w in (T - 1, T + 5):  # window covers the video, no global frames: plain VC2 temporal attention
        scope = DualScope(local_window=w, global_frames=0)
        assert rel_err(reference_attention(q, k, v, T_EARLY_LATE, scope), full) <= 1e-6
        assert rel_err(run_clip(q, k, v, T_EARLY_LATE, scope, 10, 12), full[:, :, 10:22]) <= 1e-6


def test_bias_switch_matters():
    scope = DualScope(local_window=4, global_frames=8)
    q, k, v = qkv(1, 4, 40, 16)
    early = run_clip(q, k, v, torch.tensor([900]), scope, 0, 40)
    late = run_clip(q, k, v, torch.tensor([100]), scope, 0, 40)
    assert rel_err(early, late) > 0.1
    # b=2 with mixed timesteps = each element run alone
    both = run_clip(q.expand(2, -1, -1, -1), k.expand(2, -1, -1, -1), v.expand(2, -1, -1, -1), T_EARLY_LATE,
                    scope, 0, 40)
    assert rel_err(both[0], early[0]) <= 1e-6 and rel_err(both[1], late[0]) <= 1e-6


def test_banded_attention_cost_is_linear():
    scope = DualScope(local_window=8, global_frames=16)
    sizes = {}
    for n in (128, 512, 2048):
        is_local, is_global, _ = fast.clip_masks(0, n, 0, 0, n, scope, torch.device("cpu"))
        sizes[n] = is_local.numel()
        assert is_local.shape == is_global.shape and is_local.shape[-1] == 64 + 2 * 8 + 16  # B + 2w + k
    assert sizes[512] < 512 * 512 / 4
    assert sizes[2048] == 4 * sizes[512] == 16 * sizes[128]  # exactly linear: n * (B + 2w + k)
    assert fast.clip_masks(0, 512, 0, 0, 512, scope, torch.device("cpu"))[0] \
        is fast.clip_masks(0, 512, 0, 0, 512, scope, torch.device("cpu"))[0]  # cached, not rebuilt


def test_plot_scope(tmp_path):
    import xml.etree.ElementTree as ET
    T, px = 20, 6
    scope = DualScope(local_window=2, global_frames=4)  # G = [2, 7, 12, 17]
    path = tmp_path / "scope.svg"
    simulate.plot_scope(T, 3, scope, path, px=px)  # clips [0, 7), [7, 14), [14, 20)
    root = ET.parse(path).getroot()
    rects = [{k: r.get(k) for k in ("x", "y", "width", "height", "fill")} for r in root.findall(".//{*}rect")]
    x0, y0 = next((float(r["x"]), float(r["y"])) for r in rects if r["width"] == r["height"] == str(T * px))
    cells = {(float(r["y"]), float(r["x"])): r["fill"] for r in rects if r["width"] == r["height"] == str(px)}
    cell = lambda i, j: cells.get((y0 + i * px, x0 + j * px), "white")  # noqa: E731
    local, glob, excluded = cell(10, 11), cell(0, 17), cell(0, 10)
    assert cell(10, 12) == local  # global frame 12 inside the window of 10: drawn as local
    assert len({local, glob, excluded}) == 3 and excluded == "white"
    assert cell(5, 2) == glob and cell(19, 7) == glob and cell(19, 8) == excluded
    band = (np.abs(np.subtract.outer(range(T), range(T))) <= 2).sum()
    assert len(cells) == band + 4 * (T - 5)  # a global column: T rows but the 2w + 1 where it is local
    long = [r for r in rects if r["fill"] == "black" and str(T * px) in (r["width"], r["height"])]
    lines = {(float(r["x"]), float(r["y"])) for r in long}
    assert lines == {(x0 + 7 * px, y0), (x0 + 14 * px, y0), (x0, y0 + 7 * px), (x0, y0 + 14 * px)}  # clip boundaries
    texts = [t.text for t in root.findall(".//{*}text")]
    assert all(s in texts[0] for s in ("T = 20 frames", "w = 2", "k = 4 global frames", "3 ranks"))  # the title
    assert {"query frame i", "key frame j", "not attended", "rank clip boundary"} <= set(texts)
    assert texts.count("0") == 2 and texts.count("16") == 2  # tick numbers on both axes


# -----------------------------------------------------------------------------
# DDIM sampling as VideoCrafter2 (sample.py)


SCHED = json.load(open(os.path.join(FIX, "schedule.json")))
DDIM = json.load(open(os.path.join(FIX, "ddim_tiny.json")))
FIELDS = {"ddim_alphas": "alphas", "ddim_alphas_prev": "alphas_prev", "ddim_sigmas": "sigmas",
          "ddim_sqrt_one_minus_alphas": "sqrt_one_minus_alphas", "ddim_scale_arr": "scale_arr",
          "ddim_scale_arr_prev": "scale_arr_prev"}


def rel_err_np(ours, ref):
    ours, ref = torch.as_tensor(ours).double(), torch.as_tensor(np.asarray(ref, dtype=np.float64))
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    scale = ref.abs().max().item()
    return (ours - ref).abs().max().item() / (scale if scale > 0 else 1.0)


def sched_kwargs(c=SCHED["config"]):
    return dict(num_timesteps=c["timesteps"], linear_start=c["linear_start"], linear_end=c["linear_end"],
                scale_b=c["scale_b"], scale_a=c["scale_a"], mid_step=c["mid_step"])


def test_buffers():
    betas, ac, sa = sample.make_buffers(**sched_kwargs())
    for name, ours in [("betas", betas), ("alphas_cumprod", ac), ("scale_arr", sa)]:
        err = rel_err_np(ours, SCHED[name]["values"])
        print(f"{name}: max rel err {err:.3g}")
        assert err <= 1e-7, name


@pytest.mark.parametrize("cfg", SCHED["ddim"], ids=lambda c: f"S{c['ddim_steps']}-eta{c['ddim_eta']}")
def test_schedule(cfg):
    s = sample.make_schedule(cfg["ddim_steps"], cfg["ddim_eta"], **sched_kwargs())
    assert s.timesteps.tolist() == cfg["ddim_timesteps"]["values"]
    assert len(s.timesteps) == cfg["num_sampling_steps_actually_run"]
    for key, field in FIELDS.items():
        err = rel_err_np(getattr(s, field), cfg[key]["values"])
        print(f"S={cfg['ddim_steps']} eta={cfg['ddim_eta']} {field}: max rel err {err:.3g}")
        assert err <= 1e-6, field


def test_schedule_all_steps():
    # The original crashes (IndexError) when the last timestep is 1000; ours drops it.
    for S in range(1, 1001):
        s = sample.make_schedule(S, 1.0)
        ts = s.timesteps
        c = 1000 // S
        expect = [t + 1 for t in range(0, 1000, c) if t + 1 < 1000]
        assert ts.tolist() == expect and ts[0] == 1 and ts[-1] <= 999
        assert (ts[1:] > ts[:-1]).all()
        assert torch.isfinite(s.sigmas).all() and (s.sigmas >= 0).all()
    assert sample.make_schedule(3, 0.0).timesteps.tolist() == [1, 334, 667]
    for bad in (0, -1, 1001):
        with pytest.raises(ValueError, match="steps"):
            sample.make_schedule(bad, 1.0)


@pytest.mark.parametrize("run", DDIM["runs"], ids=lambda r: r["tag"])
def test_ddim_tiny(run):
    fx = load_file(os.path.join(FIX, "ddim_tiny.safetensors"))
    tag = run["tag"]
    kw = sched_kwargs(DDIM["latent_diffusion_params_from_real_config"])
    s = sample.make_schedule(DDIM["S"], run["ddim_eta"], **kw)
    expected_t = run["timesteps_in_order"]
    assert s.timesteps.flip(0).tolist() == expected_t
    np.testing.assert_allclose(s.sigmas.numpy(), run["ddim_sigmas"], rtol=1e-12)  # index 0 = t=1
    n = len(expected_t)
    calls, noise_calls = [], []

    def eps_fn(x, t):
        j = len(calls)
        calls.append(t)
        err = rel_err_np(x, fx[f"{tag}.step{j}.x_in"])
        print(f"{tag} step{j} t={t} x_in: {err:.3g}")
        assert err <= 1e-5
        return fx[f"{tag}.step{j}.e_t_cond"], fx[f"{tag}.step{j}.e_t_uncond"]

    def noise_fn(j, x):
        noise_calls.append(j)
        return fx[f"noise.{j}"]

    steps = []
    x_T = fx["x_T"]
    x0, pred_last = sample.ddim_sample(eps_fn, x_T, s, DDIM["unconditional_guidance_scale"], noise_fn,
                                progress=lambda i, total: steps.append((i, total)))
    assert calls == expected_t and all(type(t) is int for t in calls)
    assert steps == [(i, n) for i in range(n)]
    assert noise_calls == ([] if run["ddim_eta"] == 0 else list(range(n)))
    assert torch.equal(x_T, fx["x_T"])  # input untouched

    # per-step pred_x0 / x_prev: re-run one step at a time from the recorded x_in
    for j in range(n):
        sub = sample.make_schedule(DDIM["S"], run["ddim_eta"], **kw)
        idx = n - 1 - j
        for f in ("timesteps", "alphas", "alphas_prev", "sigmas", "sqrt_one_minus_alphas",
                  "scale_arr", "scale_arr_prev"):
            setattr(sub, f, getattr(sub, f)[idx:idx + 1])
        e = (fx[f"{tag}.step{j}.e_t_cond"], fx[f"{tag}.step{j}.e_t_uncond"])
        xp, px = sample.ddim_sample(lambda x, t: e, fx[f"{tag}.step{j}.x_in"], sub,
                             DDIM["unconditional_guidance_scale"], lambda _, x: fx[f"noise.{j}"])
        for name, ours in [("pred_x0", px), ("x_prev", xp)]:
            err = rel_err_np(ours, fx[f"{tag}.step{j}.{name}"])
            print(f"{tag} step{j} {name}: {err:.3g}")
            assert err <= 1e-5
    for name, ours in [("samples", x0), ("pred_x0_last", pred_last)]:
        err = rel_err_np(ours, fx[f"{tag}.{name}"])
        print(f"{tag} {name}: {err:.3g}")
        assert err <= 1e-5


# -----------------------------------------------------------------------------
# loading checkpoints (model.load_videocrafter2) on a fake checkpoint in the real format


def tiny_config():
    """A load_videocrafter2 config for the tiny fixture models, read from the fixtures (never hard-coded sizes)."""
    text = fixture_json("text_tiny.json")["open_clip_model_config"]
    return dict(unet=fixture_json("unet_tiny.json")["unet_config"],
                vae={k: fixture_json("vae_tiny.json")["params"][k] for k in ("ddconfig", "embed_dim")},
                text=dict(text["text_cfg"], embed_dim=text["embed_dim"]),
                scale_factor=fixture_json("ddim_tiny.json")["latent_diffusion_params_from_real_config"]["scale_factor"])


def make_fake_checkpoint(folder):
    """model.ckpt as VC2 ships it: a torch pickle whose `state_dict` holds every prefixed key (fp16 here)."""
    sd = {}
    for name in ("unet_tiny", "vae_tiny", "text_tiny"):
        sd.update(load_file(os.path.join(FIX, name + ".safetensors")))
    sd["betas"] = torch.linspace(0.1, 0.2, 1000)
    torch.save({"state_dict": sd, "epoch": 0}, os.path.join(folder, "model.ckpt"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(tiny_config(), f)
    return os.path.join(folder, "model.ckpt"), os.path.join(folder, "config.json")


@pytest.fixture(scope="session")
def fake_checkpoint(tmp_path_factory):
    return make_fake_checkpoint(str(tmp_path_factory.mktemp("ckpt")))


def test_random_weights_come_from_the_seed(fake_checkpoint):
    """--random-weights: every part (UNet, VAE, text encoder) drawn from --seed, so ranks (separate processes) hold
    the same model; the VAE and text encoder once kept PyTorch's default initialisation, different in each process."""
    args = sample.parse_args(["--random-weights", "--model-config", fake_checkpoint[1], "--prompt", "x"])
    sample.check_args(args)
    first = sample.load_parts(args, torch.device("cpu"), torch.float32)
    torch.randn(1000)  # the global random state moves on, as it does between processes
    second = sample.load_parts(args, torch.device("cpu"), torch.float32)
    for part in ("unet", "vae", "text"):
        a, b = first[part].state_dict(), second[part].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), part
    args.seed += 1
    assert not torch.equal(sample.load_parts(args, torch.device("cpu"), torch.float32)["vae"].state_dict()[
        "decoder.conv_out.weight"], first["vae"].state_dict()["decoder.conv_out.weight"])


def test_load_fake_checkpoint_and_cache(fake_checkpoint, tiny_unet):
    ckpt, config = fake_checkpoint
    parts = model.load_videocrafter2(ckpt, config)
    cache = ckpt.replace(".ckpt", ".fp16.safetensors")
    assert os.path.exists(cache)  # converted once ...
    again = model.load_videocrafter2(cache, config)  # ... and loadable directly
    loaded, cached = parts["unet"].state_dict(), again["unet"].state_dict()
    for k, v in tiny_unet.state_dict().items():
        assert torch.equal(loaded[k], v) and torch.equal(cached[k], v)
    assert set(parts) >= {"unet", "vae", "text", "tokenizer", "buffers", "scale_factor"}
    assert parts["buffers"]["betas"].shape == (1000,)


def test_ckpt_weights_do_not_depend_on_the_cache(fake_checkpoint, tmp_path, monkeypatch):
    """Ranks that read the fp16 cache and ranks that cannot write it (a read-only folder) load the same weights, so
    the video cannot depend on which rank converted first; the cache is readable by others; no temporary left."""
    import shutil
    import safetensors.torch
    ckpt, _ = fake_checkpoint
    cached = model.ckpt_state_dict(ckpt)  # writes the cache, or reads it
    cache = ckpt.replace(".ckpt", ".fp16.safetensors")
    assert os.path.exists(cache) and os.stat(cache).st_mode & 0o777 == 0o644
    copy = tmp_path / "model.ckpt"
    shutil.copy(ckpt, copy)

    def read_only(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(safetensors.torch, "save_file", read_only)
    fresh = model.ckpt_state_dict(str(copy))
    assert sorted(fresh) == sorted(cached)
    assert all(fresh[k].dtype == cached[k].dtype and torch.equal(fresh[k], cached[k]) for k in cached)
    assert os.listdir(tmp_path) == ["model.ckpt"]


def test_load_default_downloads_from_hub(monkeypatch, fake_checkpoint):
    """The default source is huggingface_hub's VideoCrafter/VideoCrafter2 model.ckpt (faked: no network here)."""
    import huggingface_hub
    calls = []

    def fake_download(repo, filename, **kw):
        calls.append((repo, filename))
        return fake_checkpoint[0]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    parts = model.load_videocrafter2(None, fake_checkpoint[1])
    assert calls == [("VideoCrafter/VideoCrafter2", "model.ckpt")] and parts["unet"] is not None


def test_load_rejects_bad_checkpoints(tmp_path, fake_checkpoint):
    _, config = fake_checkpoint
    with pytest.raises(model.CheckpointError, match="does not exist"):
        model.load_videocrafter2(str(tmp_path / "nope.ckpt"), config)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(model.CheckpointError, match="not a torch checkpoint"):
        model.load_videocrafter2(str(tmp_path / "junk.ckpt"), config)
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    torch.save({"state_dict": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(model.CheckpointError, match="refused"):
        model.load_videocrafter2(str(tmp_path / "evil.ckpt"), config)
    model.load_videocrafter2(*fake_checkpoint)  # writes the .fp16.safetensors cache (if no earlier test did)
    good = load_file(fake_checkpoint[0].replace(".ckpt", ".fp16.safetensors"))
    data = open(fake_checkpoint[0].replace(".ckpt", ".fp16.safetensors"), "rb").read()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(model.CheckpointError, match="truncated"):
        model.load_videocrafter2(str(tmp_path / "cut.safetensors"), config)
    from safetensors.torch import save_file
    wrong = {k: v for k, v in good.items() if "time_embed.0" not in k}
    wrong["model.diffusion_model.out.2.bias"] = torch.zeros(7)
    save_file(wrong, tmp_path / "wrong.safetensors")
    with pytest.raises(model.CheckpointError, match=r"unet.*missing: time_embed\.0\.bias.*shape mismatch: out\.2\.bias"):
        model.load_videocrafter2(str(tmp_path / "wrong.safetensors"), config)


# -----------------------------------------------------------------------------
# sample.py end to end

def test_ddim_tiny_pipeline_with_our_models(fake_checkpoint):
    """The whole tiny pipeline, our text encoder + UNet + sampler + VAE, against the original's DDIM run."""
    parts = model.load_videocrafter2(*fake_checkpoint)
    fx = fixture_tensors("ddim_tiny.safetensors")
    cfg = fixture_json("ddim_tiny.json")
    cond, uncond = sample.encode_prompts(parts, cfg["prompts"], "cpu")
    assert rel_err(cond, fx["cond_context"]) <= 1e-4 and rel_err(uncond, fx["uncond_context"]) <= 1e-4
    run = next(r for r in cfg["runs"] if r["ddim_eta"] > 0)
    schedule = sample.make_schedule(cfg["S"], run["ddim_eta"])
    fps = torch.full((2,), cfg["fps"])

    def eps_fn(x, t):
        out = parts["unet"](torch.cat([x, x]), torch.full((2,), t), torch.cat([cond, uncond]), fps)
        return out.chunk(2)

    z, _ = sample.ddim_sample(eps_fn, fx["x_T"], schedule, cfg["unconditional_guidance_scale"],
                              lambda i, x: fx[f"noise.{i}"])
    assert rel_err(z, fx[f"{run['tag']}.samples"]) <= 1e-3
    video = parts["vae"].decode(fx[f"{run['tag']}.samples"][0].transpose(0, 1) / parts["scale_factor"])
    assert rel_err(video, fx[f"{run['tag']}.video"][0].transpose(0, 1)) <= 1e-3


def sample_args(fake_checkpoint, out, *extra):  # 16x16 latents, for the reason in dual_scope_case
    ckpt, config = fake_checkpoint
    return ["--prompt", "a corgi running on the beach", "--prompt", "a cat", "--frames", "13", "--height", "128",
            "--width", "128", "--steps", "3", "--local-window", "2", "--global-frames", "3", "--checkpoint", ckpt,
            "--model-config", config, "--out", str(out), "--save-latents", *extra]


def test_sample_writes_mp4_and_sidecar(fake_checkpoint, tmp_path):
    out = tmp_path / "sub" / "video.mp4"  # the folder is created
    assert sample.main(sample_args(fake_checkpoint, out, "--width", "192", "--emulate", "2")) == 0
    frames = iio.imread(out)
    assert frames.shape == (13, 128, 192, 3)
    side = json.loads((tmp_path / "sub" / "video.json").read_text())
    assert side["frames_written"] == 13 and side["world_size"] == 2
    assert side["settings"]["prompt"] == ["a corgi running on the beach", "a cat"] and side["settings"]["seed"] == 0
    assert set(side["timings"]) >= {"load", "text", "first_step", "denoise", "decode", "write", "join", "total"}
    assert 0 < side["timings"]["first_step"] < side["timings"]["denoise"]
    assert sorted(os.listdir(tmp_path / "sub")) == ["video.json", "video.latents.safetensors", "video.mp4"]


def test_sample_compile_cache_holds_the_run(fake_checkpoint, tmp_path, monkeypatch):
    """sample.py --compile --compile-cache PATH: fast.compile_cache(PATH) is entered before the layers compile and left
    once the clip is encoded, where it saves (its own test carries real artifacts between two processes with empty
    caches, and a failed block saves nothing). The compile is stubbed: Inductor takes minutes on a small CPU."""
    events, path = [], str(tmp_path / "compiled.bin")

    @contextmanager
    def compile_cache(p):
        events.append(("load", p))
        yield
        events.append(("save", p, [f for _, _, files in os.walk(tmp_path / "out") for f in files]))

    @contextmanager
    def accelerate(unet, compile=False, any_length=True):
        events.append(("accelerate", compile, any_length))
        yield unet

    @contextmanager
    def accelerate_decoder(vae):
        events.append(("decoder",))
        yield vae
    monkeypatch.setattr(fast, "compile_cache", compile_cache)
    monkeypatch.setattr(fast, "accelerate", accelerate)
    monkeypatch.setattr(fast, "accelerate_decoder", accelerate_decoder)
    out = tmp_path / "out" / "video.mp4"
    assert sample.main(sample_args(fake_checkpoint, out, "--compile", "--compile-cache", path)) == 0
    # one clip length in this process: graphs specialised to it; the decoder's fast forms too
    assert events == [("load", path), ("accelerate", True, False), ("decoder",),
                      ("save", path, sample.segment_names(0, 13))]
    assert out.exists()


def moving_gradient(frames, height=64, width=64):
    """uint8 (T, H, W, 3) frames with real content for the codec: two smooth waves and a blob, all moving."""
    t, y, x = np.meshgrid(np.arange(frames), np.arange(height), np.arange(width), indexing="ij")
    red = 128 + 100 * np.sin((x + 3 * t) / 9)
    green = 128 + 100 * np.cos((y - 2 * t) / 11)
    blue = 255 * np.exp(-(((x - 10 - 4 * t) % width - width / 2) ** 2 + (y - height / 2) ** 2) / 200)
    return np.stack([red, green, blue], -1).clip(0, 255).round().astype(np.uint8)


def write_video(path, frames, fps):
    """One encoder over a whole video (sample.open_mp4, frames (T, H, W, 3) uint8): what the ranks' mp4s are
    checked against."""
    with sample.open_mp4(str(path), fps) as writer:
        for frame in frames:
            writer.append_data(frame)


# clips of 1, 2 and 3 ranks as split_frames makes them (uneven), one frame per rank, and clips of 1 or 2 frames (no
# decode delay) beside longer ones (a delay of 2 frames), where the joins' decoding times need rewriting
@pytest.mark.parametrize("clips", [[7], [5, 4], [3, 3, 2], [1, 1, 1], [2, 5, 1]], ids=str)
def test_joined_segments_are_the_single_encoders_video(clips, tmp_path):
    """Segments joined without re-encoding (sample.join_segments) against one encoder over the whole video
    (write_video): exactly T frames at the frame rate, T / fps long, the same pictures up to the codec."""
    import imageio_ffmpeg
    fps, source = 8, moving_gradient(sum(clips))
    write_video(tmp_path / "single.mp4", source, fps)
    folder, start, names = tmp_path / "video.segments.partial", 0, []
    folder.mkdir()
    for rank, n in enumerate(clips):
        names.append(sample.segment_names(rank, n)[0])
        write_video(folder / names[-1], source[start:start + n], fps)
        start += n
    sample.join_segments(str(folder), names, str(tmp_path / "joined.mp4"), fps)
    joined, single = iio.imread(tmp_path / "joined.mp4").astype(int), iio.imread(tmp_path / "single.mp4").astype(int)
    meta = iio.immeta(tmp_path / "joined.mp4")
    assert joined.shape == single.shape == source.shape
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "joined.mp4"))[0] == len(source)
    assert meta["fps"] == fps and meta["duration"] == pytest.approx(len(source) / fps, abs=0.01)
    # Measured (x264 of imageio-ffmpeg 0.8.1): |joined - single| at most 9 here (12 for 3 clips of 40 frames), 1.0-1.1
    # on average; each is 2.7-2.9 from the source on average, the joined file no further than the single encoder
    diff, error = np.abs(joined - single), [np.abs(v - source).mean() for v in (joined, single)]
    assert diff.max() <= 16 and diff.mean() <= 1.5, (diff.max(), diff.mean())
    assert error[0] <= 1.05 * error[1] and error[1] <= 4, error
    assert sorted(os.listdir(tmp_path)) == ["joined.mp4", "single.mp4", "video.segments.partial"]


def test_ffmpeg_pipe_starts_ffmpeg_safely(tmp_path, monkeypatch):
    """sample.FfmpegPipe (every mp4's encoder) writes what imageio's writer did (x264, crf 10), but starts ffmpeg with
    no Python code in the forked child (imageio's preexec_fn hung an encoder of run 52, beside other threads) and in a
    session of its own (Ctrl-C reaches sample.py only); a bad frame or ffmpeg's failure is one clear error, and on an
    error ffmpeg is stopped, nothing written after."""
    import imageio.v2 as imageio
    frames, started, popen = moving_gradient(6), [], subprocess.Popen
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: started.append(k) or popen(*a, **k))
    writer = sample.FfmpegPipe(str(tmp_path / "new.mp4"), 8)
    for frame in frames:
        writer.append_data(frame)
    assert started[0].get("preexec_fn") is None and os.getsid(writer.process.pid) == writer.process.pid
    writer.finish()
    old = imageio.get_writer(tmp_path / "old.mp4", fps=8, codec="libx264", quality=8, macro_block_size=1)
    for frame in frames:
        old.append_data(frame)
    old.close()
    assert np.array_equal(iio.imread(tmp_path / "new.mp4"), iio.imread(tmp_path / "old.mp4"))
    with pytest.raises(ValueError, match=r"an mp4 frame must be uint8 \(H, W, 3\), not float32 \(64, 64, 3\)"):
        sample.FfmpegPipe(str(tmp_path / "f.mp4"), 8).append_data(frames[0].astype(np.float32))
    with pytest.raises(OSError, match=r"ffmpeg could not write '.*missing.*' \(.*No such file or directory\)"):
        with sample.open_mp4(str(tmp_path / "missing" / "v.mp4"), 8) as writer:
            writer.append_data(frames[0])
    with pytest.raises(InterruptedError):
        with sample.open_mp4(str(tmp_path / "stopped.mp4"), 8) as writer:
            writer.append_data(frames[0])
            raise InterruptedError
    assert writer.process.poll() is not None  # killed: write_atomically's removal of the file is final


def test_mp4_writer_encodes_while_frames_come(tmp_path, monkeypatch):
    """sample.Mp4Writer (a rank's mp4 segments, fed batch by batch from the decode loop, several encoding at once)
    writes what write_video writes from each segment's frames at once: the same encoder, the same frames, the same
    pictures, whatever the batches; joined, they are the clip; aborted, it leaves no part of a segment."""
    monkeypatch.setattr(sample, "SEGMENT_FRAMES", 4)
    source, folder = torch.from_numpy(moving_gradient(11)), tmp_path / "seg"
    names = sample.segment_names(1, len(source))
    assert names == ["rank00001.part0000.mp4", "rank00001.part0001.mp4", "rank00001.part0002.mp4"]
    assert sample.video_segments(11, 2) == sample.segment_names(0, 6) + sample.segment_names(1, 5)
    writer = sample.Mp4Writer(str(folder), 1, 8, len(source), encoders=2)
    assert writer.close(abort=True) is None and not folder.exists()  # nothing put: nothing made
    for batch in (3, 5):  # batches that straddle the segments' ends
        writer = sample.Mp4Writer(str(folder), 1, 8, len(source), encoders=2)
        for i in range(0, len(source), batch):
            writer.put(source[i:i + batch])
        assert writer.close() is None
        assert sorted(os.listdir(folder)) == names
        for i, name in enumerate(names):
            write_video(tmp_path / "whole.mp4", source[4 * i:4 * i + 4].numpy(), 8)
            assert np.array_equal(iio.imread(folder / name), iio.imread(tmp_path / "whole.mp4")), (batch, name)
    sample.join_segments(str(folder), names, str(tmp_path / "joined.mp4"), 8)
    assert iio.imread(tmp_path / "joined.mp4").shape == source.shape
    shutil.rmtree(folder)
    writer = sample.Mp4Writer(str(folder), 1, 8, len(source), encoders=2)
    writer.put(source[:6])
    writer.close(abort=True)  # a whole segment may be written by then, never a part of one
    assert not folder.exists() or set(os.listdir(folder)) <= {names[0]}
    writer = sample.Mp4Writer(str(folder), 1, 8, len(source), encoders=2)
    assert writer.close() == f"rank 1 has no frames to write to {str(folder)!r}"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    assert [sample.encoders_per_rank(ranks) for ranks in (1, 2, 8)] == [8, 4, 2]  # half the cores, at least 2


def test_join_names_a_missing_segment(tmp_path):
    """A rank's segment that rank 0 cannot see (ranks on several hosts, no shared folder): one clear error."""
    names = sample.video_segments(2, 2)
    write_video(tmp_path / names[0], moving_gradient(1), 8)
    with pytest.raises(sample.OutputError, match=r"the segments rank00001.part0000.mp4 are not in .*: the ranks wrote "
                       r"them elsewhere \(ranks on several hosts need --out in a folder they all share\)"):
        sample.join_segments(str(tmp_path), names, str(tmp_path / "v.mp4"), 8)
    assert not (tmp_path / "v.mp4").exists()


def test_sample_is_rank_invariant(fake_checkpoint, tmp_path, monkeypatch):
    """--emulate 1, --emulate 3 and 2 real gloo ranks (torchrun) give the same video; so do 2 emulated ranks that
    each encode their clip as several segments."""
    runs = {}
    for n in (1, 3):
        assert sample.main(sample_args(fake_checkpoint, tmp_path / f"e{n}.mp4", "--emulate", str(n))) == 0
        runs[f"emulate {n}"] = load_file(tmp_path / f"e{n}.latents.safetensors")
    with monkeypatch.context() as m:
        m.setattr(sample, "SEGMENT_FRAMES", 3)  # clips of 7 and 6 frames: segments of 3, 3, 1 and 3, 3
        assert sample.main(sample_args(fake_checkpoint, tmp_path / "s2.mp4", "--emulate", "2")) == 0
    runs["emulate 2, segments"] = load_file(tmp_path / "s2.latents.safetensors")
    torchrun_ok(sample_args(fake_checkpoint, tmp_path / "t2.mp4"), "sample.py")
    runs["torchrun 2"] = load_file(tmp_path / "t2.latents.safetensors")
    one = runs.pop("emulate 1")
    for name, other in runs.items():
        assert rel_err(other["latents"], one["latents"]) <= 1e-4, name
        assert (other["frames"].int() - one["frames"].int()).abs().max() <= 1, name
    assert one["latents"].shape[0] == 13
    # the mp4s: one encoder (1 rank), segments joined (3 emulated ranks, 2 real ones, 2 ranks of 2-3 segments): every
    # frame, as far from the exact frames as the one encoder's (15.5 on average for this noisy random-weights video,
    # all four); no segments left
    error = {}
    for name in ("e1", "e3", "t2", "s2"):
        video = iio.imread(tmp_path / f"{name}.mp4").astype(int)
        assert video.shape == one["frames"].shape and iio.immeta(tmp_path / f"{name}.mp4")["fps"] == 8, name
        error[name] = np.abs(video - one["frames"].numpy()).mean()
    assert all(error[name] <= 1.02 * error["e1"] for name in ("e3", "t2", "s2")), error
    assert not [f for f in os.listdir(tmp_path) if "partial" in f]


@pytest.mark.parametrize("ranks", [1, 3])
def test_multi_prompt_segments(fake_checkpoint, ranks, monkeypatch):
    """P prompts split the timeline into P equal segments; frame f gets prompt f * P // T, whatever N is."""
    assert sample.segment_of_frame(10, 3) == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    parts = model.load_videocrafter2(*fake_checkpoint)
    prompts = ["a corgi", "a red car", "snow"]
    cond, uncond = sample.encode_prompts(parts, prompts, "cpu")
    frames, seen = 10, {}
    real_forward = sample.clip_forward

    def spy(unet, comm, total, x, timesteps, context, fps):
        start, _ = sample.split_frames(total, comm.world_size)[comm.rank]
        for i in range(context.shape[1]):
            seen[start + i] = (context[0, i], context[1, i])
        return real_forward(unet, comm, total, x, timesteps, context, fps)

    monkeypatch.setattr(sample, "clip_forward", spy)
    s = sample.Settings(frames=frames, height=64, width=64, steps=1)
    with sample.parallel_temporal_layers(parts["unet"], DualScope(2, 2)):
        sample.run_ranks(ranks, lambda comm: sample.generate_clip(comm, parts, s, (cond, uncond), "cpu"))
    assert sorted(seen) == list(range(frames))
    for f, (c, u) in seen.items():
        assert torch.equal(c, cond[f * 3 // frames]) and torch.equal(u, uncond[0])
    assert not torch.equal(seen[3][0], seen[4][0])  # the boundary between segment 0 and 1 falls at frame 4


def test_decoded_batches_reach_the_writer_as_they_come(fake_checkpoint):
    """generate_clip's on_frames (on GPUs sample.Mp4Writer.put: the mp4 is encoded while the VAE decodes) gets every
    decoded batch of --decode-batch frames, in order: together they are the clip."""
    parts = model.load_videocrafter2(*fake_checkpoint)
    contexts = sample.encode_prompts(parts, ["a corgi"], "cpu")
    s = sample.Settings(frames=7, height=64, width=64, steps=1, decode_batch=2)
    batches = {0: [], 1: []}
    with sample.parallel_temporal_layers(parts["unet"], DualScope(2, 2)):
        results = sample.run_ranks(2, lambda comm: sample.generate_clip(comm, parts, s, contexts, "cpu",
                                                                        on_frames=batches[comm.rank].append))
    for rank, (video, _, _) in enumerate(results):
        assert [len(b) for b in batches[rank]] == ([2, 2] if rank == 0 else [2, 1])
        assert video.shape == (4 - rank, 64, 64, 3) and torch.equal(torch.cat(batches[rank]), video)


# -----------------------------------------------------------------------------
# bad input and failures: clear errors, no hangs, nothing half-written
#
# Each row: what is wrong, the sample.py arguments, the message expected. `python test_all.py` writes the tables of
# docs/errors.md from these rows (and simulate.py's and bench.py's below) by running them, so the docs show the real
# messages; a test keeps them current.

# --model-config fields: (what, the field as a path into tiny_config(), the value put there, the message expected)
CONFIG_CASES = [
    ("a string where an int belongs", ("unet", "model_channels"), "32", "unet.model_channels must be an int >= 1"),
    ("a float where an int belongs", ("unet", "num_res_blocks"), 2.5, "unet.num_res_blocks must be an int >= 1"),
    ("a negative size", ("text", "layers"), -1, "text.layers must be an int >= 1"),
    ("true where an int belongs", ("vae", "embed_dim"), True, "vae.embed_dim must be an int >= 1"),
    ("an int where a list belongs", ("unet", "channel_mult"), 2, "unet.channel_mult must be a non-empty list"),
    ("attention at a level that does not exist", ("unet", "attention_resolutions"), [16],
     "unet.attention_resolutions must be a list of levels' downsampling factors"),
    ("a UNet width that GroupNorm cannot split", ("unet", "model_channels"), 48, "unet.model_channels must be a "
     "multiple of 32"),
    ("UNet context_dim != text encoder width", ("unet", "context_dim"), 64, "unet.context_dim must be text.width"),
    ("UNet channels != VAE latent channels", ("vae", "embed_dim"), 8, "must be vae.embed_dim"),
    ("text heads that do not divide the width", ("text", "heads"), 5, "text.width must be a multiple of text.heads"),
    ("a text length other than the tokenizer's", ("text", "context_length"), 64, "text.context_length must be 77"),
    ("a VAE that is not 8x", ("vae", "ddconfig", "ch_mult"), [1, 2], "vae.ddconfig.ch_mult must be 4 levels long"),
    ("scale_factor not a number", ("scale_factor",), "0.18", "scale_factor must be a positive finite number"),
    ("scale_factor 0", ("scale_factor",), 0, "scale_factor must be a positive finite number"),
    ("a misspelt key", ("scale_facter",), 0.18, "unknown key scale_facter"),
    ("a VC2 flag VC2 does not use", ("unet", "use_linear"), False, "use_linear=False is not supported"),
]

ERROR_CASES = [
    ("checkpoint: missing path", ["--checkpoint", "{tmp}/nope.ckpt"], "does not exist"),
    ("checkpoint: a folder", ["--checkpoint", "{tmp}"], "is a folder, not a file"),
    ("checkpoint: not a checkpoint", ["--checkpoint", "{tmp}/junk.ckpt"], "is not a torch checkpoint"),
    ("checkpoint: a pickle that would execute code", ["--checkpoint", "{tmp}/evil.ckpt"],
     "would run code when unpickled: refused"),
    ("checkpoint: wrong model (keys, shapes)", ["--checkpoint", "{tmp}/wrong.safetensors"],
     "does not match the unet config"),
    ("checkpoint: truncated safetensors", ["--checkpoint", "{tmp}/cut.safetensors"], "is truncated"),
    ("--height not a multiple of 64", ["--height", "100"], "--height must be a multiple of 64"),
    ("--width out of range", ["--width", "8192"], "--width must be a multiple of 64 in 64..4096"),
    ("--frames 0", ["--frames", "0"], "--frames must be >= 1"),
    ("--frames smaller than the ranks", ["--frames", "2", "--emulate", "3"], "--frames (2) must be >= the number"),
    ("--steps 0", ["--steps", "0"], "--steps must be in 1..1000"),
    ("--steps 1001", ["--steps", "1001"], "--steps must be in 1..1000"),
    ("negative --guidance", ["--guidance", "-1"], "--guidance must be >= 0"),
    ("--guidance nan", ["--guidance", "nan"], "--guidance must be a finite number"),
    ("--eta above 1", ["--eta", "1.5"], "--eta must be in 0..1"),
    ("negative --local-window", ["--local-window", "-1"], "--local-window must be >= 0"),
    ("negative --global-frames", ["--global-frames", "-2"], "--global-frames must be >= 0"),
    ("--dtype fp16 on CPU", ["--dtype", "fp16"], "--dtype fp16 is not supported on CPU"),
    ("a flag that does not exist", ["--frame", "3"], "unrecognized arguments"),
    ("no prompt", ["--prompt", None], "no prompt: give --prompt"),
    ("empty prompt file", ["--prompt", None, "--prompts", "{tmp}/empty.txt"], "holds no prompt"),
    ("prompt file not UTF-8", ["--prompt", None, "--prompts", "{tmp}/latin1.txt"], "is not UTF-8 text"),
    ("--model-config missing", ["--model-config", "{tmp}/nope.json"], "--model-config: cannot read"),
    ("--model-config not JSON", ["--model-config", "{tmp}/empty.txt"], "is not JSON"),
    ("--model-config without a section", ["--model-config", "{tmp}/novae.json"], "has no vae section"),
    ("--model-config with a wrong key", ["--model-config", "{tmp}/badkey.json"], "unknown key unet.flux"),
    ("--random-weights with --checkpoint", ["--random-weights"], "--random-weights does not combine with --checkpoint"),
    ("more prompts than frames", ["--frames", "2", "--prompt", "b", "--prompt", "c"], "3 prompts for 2 frames"),
    ("--out in a folder that cannot be created", ["--out", "{tmp}/junk.ckpt/video.mp4"], "cannot create folder"),
    ("--out in a folder that is not writable", ["--out", "/proc/video.mp4"], "is not writable"),
    ("--out exists", ["--out", "{tmp}/exists.mp4"], "exists; pass --overwrite"),
    ("--out's JSON sidecar exists", ["--out", "{tmp}/side.mp4"], "side.json' exists; pass --overwrite"),
    ("--out's latents file exists (--save-latents)", ["--out", "{tmp}/lat.mp4", "--save-latents"],
     "lat.latents.safetensors' exists; pass --overwrite"),
    ("--out names a folder", ["--out", "{tmp}/folder.mp4"], "is a folder; expected the path of the mp4"),
    ("--out not an mp4", ["--out", "{tmp}/video.avi"], "--out must end in .mp4"),
    ("empty --prompt (the unconditional prompt)", ["--prompt", None, "--prompt", " "], "is empty: the empty prompt"),
    ("--prompt and --prompts", ["--prompts", "{tmp}/empty.txt"], "give --prompt or --prompts, not both"),
    ("--prompts file missing", ["--prompt", None, "--prompts", "{tmp}/nope.txt"], "--prompts: cannot read"),
    ("--switch-timestep outside 0..1000", ["--switch-timestep", "1001"], "--switch-timestep must be in 0..1000"),
    ("negative --bias", ["--bias", "-1"], "--bias must be >= 0"),
    ("--eta nan", ["--eta", "nan"], "--eta must be a finite number"),
    ("negative --seed", ["--seed", "-1"], "--seed must be in 0..2**63-1"),
    ("--fps 0", ["--fps", "0"], "--fps and --save-fps must be >= 1"),
    ("--decode-batch 0", ["--decode-batch", "0"], "--decode-batch must be >= 1"),
    ("--emulate 0", ["--emulate", "0"], "--emulate must be >= 1"),
    ("--compile with --emulate", ["--compile", "--emulate", "2"], "--compile does not combine with --emulate"),
    ("--compile with --plain", ["--compile", "--plain"], "--compile does not combine with --plain"),
    ("--compile-cache without --compile", ["--compile-cache", "{tmp}/c.bin"], "--compile-cache needs --compile"),
    ("--compile-cache names a folder", ["--compile", "--compile-cache", "{tmp}"], "is a folder; expected a file path"),
    ("--compile-cache in a missing folder", ["--compile", "--compile-cache", "{tmp}/nope/c.bin"],
     "/nope' does not exist"),
    ("--frames that cannot fit in memory", ["--frames", "100000000"], "needs about"),
    ("--steps not a number", ["--steps", "ten"], "argument --steps: invalid int value"),
    ("--dtype unknown", ["--dtype", "fp8"], "argument --dtype: invalid choice"),
] + [(f"--model-config: {what}", ["--model-config", f"{{tmp}}/config_{i}.json"], message)
     for i, (what, _, _, message) in enumerate(CONFIG_CASES)]


CHECKPOINT_FILES = {}  # checkpoint -> {name: bytes} of the bad checkpoints made from it: made once, written per row


def error_inputs(folder, checkpoint):
    """The bad files the checkpoint rows name, made from a good checkpoint."""
    folder = str(folder)
    if checkpoint not in CHECKPOINT_FILES:
        from safetensors.torch import save
        class Evil:
            def __reduce__(self):
                return (os.system, ("echo pwned",))
        evil = os.path.join(folder, "evil.ckpt")
        torch.save({"state_dict": Evil()}, evil)
        good = model.read_state_dict(checkpoint)
        full = save({k: v.contiguous() for k, v in good.items()})
        CHECKPOINT_FILES[checkpoint] = {
            "junk.ckpt": b"not a checkpoint", "evil.ckpt": open(evil, "rb").read(), "full.safetensors": full,
            "wrong.safetensors": save({k: v.contiguous() for k, v in good.items() if "time_embed" not in k}),
            "cut.safetensors": full[: len(full) // 2]}
    for name, data in CHECKPOINT_FILES[checkpoint].items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(data)
    open(os.path.join(folder, "empty.txt"), "w").close()
    with open(os.path.join(folder, "latin1.txt"), "wb") as f:
        f.write("caf\xe9 au lait".encode("latin-1"))
    configs = [("novae.json", dict(unet={}, text={})), ("badkey.json", dict(unet=dict(flux=1), vae={}, text={}))]
    for i, (_, field, value, _) in enumerate(CONFIG_CASES):  # the tiny config with one field wrong
        config = tiny_config()
        part = config
        for key in field[:-1]:
            part = part[key]
        part[field[-1]] = value
        configs.append((f"config_{i}.json", config))
    for name, config in configs:
        with open(os.path.join(folder, name), "w") as f:
            json.dump(config, f)
    for name in ("exists.mp4", "side.json", "lat.latents.safetensors"):
        open(os.path.join(folder, name), "w").close()
    os.mkdir(os.path.join(folder, "folder.mp4"))


def run_error_case(argv, folder, checkpoint, config, capsys):
    base = ["--prompt", "a", "--frames", "4", "--height", "64", "--width", "64", "--steps", "1",
            "--checkpoint", checkpoint, "--model-config", config, "--out", f"{folder}/out/video.mp4"]
    argv = [a.replace("{tmp}", str(folder)) if a else a for a in argv]
    if argv[:2] == ["--prompt", None]:  # the row drops the default prompt
        base, argv = base[2:], argv[2:]
    code = sample.main(base + argv)
    return code, capsys.readouterr().err


def files_under(folder):
    """Every file and folder under folder: an empty folder left behind counts too."""
    return sorted(os.path.join(d, f) for d, ds, fs in os.walk(folder) for f in fs + ds)


@pytest.mark.parametrize("what,argv,message", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_input_is_one_clear_line(what, argv, message, fake_checkpoint, tmp_path, capsys):
    error_inputs(tmp_path, fake_checkpoint[0])
    before = files_under(tmp_path)
    code, err = run_error_case(argv, tmp_path, *fake_checkpoint, capsys)
    lines = [line for line in err.splitlines() if line.startswith("sample.py: error:")]
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert files_under(tmp_path) == before  # nothing written: no mp4, no sidecar, no temporary file


def test_no_network_and_nothing_cached(tmp_path):
    """The default source is the Hub; offline with an empty cache, the message says how to pass a checkpoint."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    proc = subprocess.run([sys.executable, "sample.py", "--prompt", "a", "--frames", "2", "--height", "64",
                           "--width", "64", "--out", str(tmp_path / "v.mp4")],
                          cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "could not download VideoCrafter/VideoCrafter2/model.ckpt" in proc.stderr
    assert "pass --checkpoint PATH" in proc.stderr and not os.path.exists(tmp_path / "v.mp4")


def test_no_network_fails_in_seconds(tmp_path):
    """Not offline, nothing cached, the Hub unreachable (a closed local port stands for no network): one request, no
    retries (huggingface_hub alone retries for ~25 s), one line saying where the weights come from."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(tmp_path / "hf"), HF_ENDPOINT="http://127.0.0.1:9")
    script = ("import time, model\n"
              "t = time.time()\n"
              "try:\n"
              "    model.download_vc2()\n"
              "except model.CheckpointError as e:\n"
              "    print(f'{time.time() - t:.1f}', e)\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=HERE, env=env, capture_output=True, text=True,
                          timeout=120)
    seconds, message = proc.stdout.strip().split(" ", 1)
    assert float(seconds) < 10 and proc.stderr == "", proc.stderr
    assert message.startswith("could not download VideoCrafter/VideoCrafter2/model.ckpt and it is not cached")
    for part in ("cannot reach http://127.0.0.1:9", "download model.ckpt (5.5 GB) of the Hugging Face repo "
                 "VideoCrafter/VideoCrafter2", "pass --checkpoint PATH", "HF_HUB_OFFLINE=1"):
        assert part in message, message


def test_missing_mp4_writer_is_found_before_any_compute(fake_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if imageio-ffmpeg were not installed
    monkeypatch.setattr(sample, "load_parts", lambda *a: pytest.fail("loaded the model before checking the writer"))
    code, err = run_error_case([], tmp_path, *fake_checkpoint, capsys)
    assert code == 2 and "writing mp4 needs ffmpeg: pip install imageio-ffmpeg" in err and "Traceback" not in err
    assert files_under(tmp_path) == []


def test_an_ffmpeg_that_cannot_join_is_found_before_any_compute(fake_checkpoint, tmp_path, capsys, monkeypatch):
    """Several segments (here: ranks) need ffmpeg's setts filter (join_segments): an older ffmpeg is refused at once;
    one segment is not."""
    import imageio_ffmpeg
    old = tmp_path / "bin" / "ffmpeg"  # an ffmpeg 4.2 as far as sample.py asks: its bitstream filters, no setts
    old.parent.mkdir()
    old.write_text("#!/bin/sh\nprintf 'Bitstream filters:\\nnull\\nh264_mp4toannexb\\n'\n")
    old.chmod(0o755)
    monkeypatch.setattr(imageio_ffmpeg, "get_ffmpeg_exe", lambda: str(old))
    monkeypatch.setattr(sample, "load_parts", lambda *a: pytest.fail("loaded the model before checking ffmpeg"))
    code, err = run_error_case(["--emulate", "2"], tmp_path, *fake_checkpoint, capsys)
    assert code == 2 and f"joining the mp4 segments needs ffmpeg 4.4 or newer (its setts filter), which " \
        f"'{old}' is not: pip install -U imageio-ffmpeg" in err and "Traceback" not in err
    assert files_under(tmp_path) == sorted([str(old.parent), str(old)])
    with pytest.raises(pytest.fail.Exception, match="loaded the model"):  # one rank: checked, then on to the model
        run_error_case(["--emulate", "1"], tmp_path, *fake_checkpoint, capsys)


def test_outputs_are_made_as_open_makes_files(fake_checkpoint, tmp_path):
    """A plain run (no --emulate): the folder made at the end, mp4, sidecar and latents all with the mode open() gives
    (safetensors alone makes 0600), the sidecar says it was not emulated; and a failure after the checks leaves no
    folder behind."""
    out = tmp_path / "new" / "v.mp4"
    assert sample.main(sample_args(fake_checkpoint, out, "--frames", "2", "--steps", "1")) == 0
    mode = 0o666 & ~sample.UMASK
    assert {f: os.stat(tmp_path / "new" / f).st_mode & 0o777 for f in os.listdir(tmp_path / "new")} == \
        {"v.mp4": mode, "v.json": mode, "v.latents.safetensors": mode}
    side = json.loads((tmp_path / "new" / "v.json").read_text())
    assert side["emulated"] is False and side["world_size"] == 1
    failing = tmp_path / "never" / "v.mp4"
    args = sample_args(fake_checkpoint, failing, "--frames", "2", "--steps", "1")
    args[args.index("--checkpoint") + 1] = str(tmp_path / "new" / "v.latents.safetensors")  # no model in it
    assert sample.main(args) == 2 and not (tmp_path / "never").exists()


def test_memory_estimate_on_a_gpu(monkeypatch):
    """Refused before anything is built, saying how many frames per GPU fit and how many GPUs the video needs. The
    estimate (full-size VC2, bf16, 320x512) agrees with the measured peaks it is made from: 11.1 GiB at 128 frames
    per GPU, 22.0 at 288 (weights: 3.4 GiB)."""
    weights, acts, flops = sample.estimate_run(model.VC2_CONFIG, 128, 320, 512, 2)
    assert abs(weights / 2 ** 30 - 3.4) < 0.1 and abs((weights + acts) / 2 ** 30 - 11.1) < 1.1
    assert abs((weights + sample.estimate_run(model.VC2_CONFIG, 288, 320, 512, 2)[1]) / 2 ** 30 - 22.0) < 1.1
    assert flops == pytest.approx(128 * 1.6e12)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sample, "device_memory", lambda device: (80 * 2 ** 30, "an 80 GiB GPU"))
    with pytest.raises(sample.UserError) as e:
        sample.parse_args(["--prompt", "a", "--frames", "2300", "--out", "/tmp/never/v.mp4"])
    message = str(e.value)
    fit = int(message.split(": ")[-1].split(" frames per GPU fit")[0])
    assert 900 <= fit <= 1200 and f"need about {-(-2300 // fit)} GPUs" in message, message
    assert "more than the 80.0 GiB of an 80 GiB GPU" in message
    monkeypatch.setenv("WORLD_SIZE", "8")  # 288 frames per GPU fit
    assert sample.parse_args(["--prompt", "a", "--frames", "2300", "--out", "/tmp/never/v.mp4"]).frames == 2300


def test_long_cpu_run_is_warned(monkeypatch, caplog):
    """The default 320x512 on a CPU: a warning with roughly how long, from the config's FLOPs and the measured
    matmul speed (faked here: 100 GFLOP/s), before anything is built."""
    monkeypatch.setattr(sample, "cpu_flops", lambda: 100e9)
    monkeypatch.setattr(sample, "device_memory", lambda device: (2 ** 40, "this machine's RAM"))
    with caplog.at_level("WARNING"):
        sample.parse_args(["--prompt", "a", "--out", "/tmp/never/v.mp4"])
    hours = len(sample.make_schedule(50, 1.0).timesteps) * 64 * 1.6e12 / 100e9 / 3600  # 64 frames at 320x512
    assert f"will take roughly {hours:.1f} hours" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        sample.parse_args(["--prompt", "a", "--out", "/tmp/never/v.mp4", "--frames", "2", "--height", "64",
                           "--width", "64", "--steps", "2"])
    assert "will take" not in caplog.text


def test_long_prompt_is_truncated_with_a_warning(fake_checkpoint, tmp_path, caplog):
    long = " ".join(["corgi"] * 90)
    with caplog.at_level("WARNING"):
        code = sample.main(sample_args(fake_checkpoint, tmp_path / "v.mp4", "--frames", "3", "--steps", "1",
                                       "--prompt", long))
    assert code == 0 and "truncated to 77, as VideoCrafter2 does" in caplog.text


def test_short_clips_fall_back_with_a_log_line(fake_checkpoint, tmp_path, caplog):
    """13 frames over 5 ranks leaves clips of 2: a window of 4 gathers the whole sequence, logged, still exact."""
    with caplog.at_level("WARNING"):
        for n in (1, 5):
            code = sample.main(sample_args(fake_checkpoint, tmp_path / f"v{n}.mp4", "--emulate", str(n),
                                           "--local-window", "4", "--steps", "2", "--guidance", "1"))
            assert code == 0
    assert "exceeds the shortest clip" in caplog.text
    a, b = (load_file(tmp_path / f"v{n}.latents.safetensors") for n in (1, 5))
    assert rel_err(b["latents"], a["latents"]) <= 1e-4


def test_more_ranks_than_gpus(monkeypatch):
    import clip_parallel
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "3")
    with pytest.raises(SystemExit, match="rank 3 has no GPU: this node has 2; use torchrun --nproc_per_node 2"):
        clip_parallel.init_distributed()


def test_destroy_process_group_frees_the_group(tmp_path):
    """After destroy_process_group the gloo group is gone, even with torch.compile's imports loaded after
    init_distributed: a group kept alive keeps gloo's worker threads into interpreter shutdown, where they abort
    the process now and then (seen in CI as a SIGABRT of rank 0 after a successful run). A fresh process, as the
    imports happen once."""
    code = ("import gc, weakref, torch, torch.distributed as dist, clip_parallel\n"
            "clip_parallel.init_distributed()\n"
            "group = weakref.ref(dist.group.WORLD)\n"
            "import torch._dynamo\n"
            "dist.destroy_process_group(); gc.collect()\n"
            "print('freed' if group() is None else 'alive')\n")
    env = dict(os.environ, RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(random.randint(20000, 60000)))
    proc = subprocess.run([sys.executable, "-c", code], cwd=HERE, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split()[-1] == "freed", proc.stderr[-2000:]


def test_bf16_on_a_gpu_without_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    args = type("Args", (), {"dtype": None})()
    with pytest.raises(sample.UserError, match="--dtype bf16 is not supported on Tesla V100 \\(use fp16\\)"):
        sample.pick_dtype(args, torch.device("cuda", 0))


def test_frames_fewer_than_real_ranks(fake_checkpoint, tmp_path):
    proc = torchrun(["--prompt", "a", "--frames", "1", "--out", str(tmp_path / "v.mp4")])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and err.count("sample.py: error: --frames (1) must be >= the number of ranks (2)") == 1
    # torchrun adds its own report of the failed workers; none of our code is in a traceback
    assert 'sample.py", line' not in err and not files_under(tmp_path)


def test_a_rank_that_fails_mid_run_stops_every_rank(fake_checkpoint, tmp_path):
    """Rank 1 raises after its first denoising step: every rank exits non-zero within 60 s, no output file."""
    script = tmp_path / "fail_rank1.py"
    script.write_text(
        "import os, sys\n"
        f"sys.path.insert(0, {HERE!r})\n"
        "import sample\n"
        "real = sample.ddim_sample\n"
        "def failing(eps_fn, *a, **k):\n"
        "    def eps(x, t):\n"
        "        out = eps_fn(x, t)\n"
        "        if os.environ['RANK'] == '1':\n"
        "            raise RuntimeError('injected failure on rank 1')\n"
        "        return out\n"
        "    return real(eps, *a, **k)\n"
        "sample.ddim_sample = failing\n"
        "sys.exit(sample.main())\n")
    out = tmp_path / "out"
    import time
    t0 = time.time()
    proc = torchrun(sample_args(fake_checkpoint, out / "v.mp4", "--steps", "5"), script=str(script))
    _, err = proc.communicate(timeout=120)
    assert time.time() - t0 < 60 and proc.returncode != 0
    assert "injected failure on rank 1" in err
    assert not files_under(out)


FAIL_RANK1_WRITE = (  # sample.open_mp4 raises a full disk for rank 1's segment (its path names the rank)
    "import sample\n"
    "real = sample.open_mp4\n"
    "def full_disk(path, *a, **k):\n"
    "    if 'rank00001' in path:\n"
    "        raise OSError(28, 'No space left on device')\n"
    "    return real(path, *a, **k)\n"
    "sample.open_mp4 = full_disk\n")
FAIL_RANK1_LINE = "sample.py: error: rank 1 could not write '"


def test_a_rank_that_cannot_write_stops_every_rank(fake_checkpoint, tmp_path):
    """Real gloo ranks: rank 1's segment write fails. Every rank hears of it before rank 0 would join (an all-gather
    of each rank's status), all exit within seconds; one line from rank 0; no file and no folder left."""
    script = tmp_path / "fail_write.py"
    script.write_text(f"import sys\nsys.path.insert(0, {HERE!r})\n" + FAIL_RANK1_WRITE + "sys.exit(sample.main())\n")
    out = tmp_path / "out"
    proc = torchrun(sample_args(fake_checkpoint, out / "new" / "v.mp4", "--steps", "1"), script=str(script))
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.startswith("sample.py: error:")]
    assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith(FAIL_RANK1_LINE), err[-2000:]
    assert "(OSError: [Errno 28] No space left on device); no output written" in lines[0]
    assert 'sample.py", line' not in err and not files_under(tmp_path / "out")


def test_an_emulated_rank_that_cannot_write(fake_checkpoint, tmp_path, capsys, monkeypatch):
    """The same with emulated ranks: exit 1, one line, the other ranks' segments and the folders made removed."""
    monkeypatch.setattr(sample, "open_mp4", sample.open_mp4)  # put back after the test
    exec(FAIL_RANK1_WRITE, {"__name__": "fail"})
    assert sample.main(sample_args(fake_checkpoint, tmp_path / "new" / "v.mp4", "--emulate", "3", "--frames", "6",
                                   "--steps", "1")) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("sample.py")] == [next(
        line for line in lines if line.startswith(FAIL_RANK1_LINE) and line.endswith("; no output written"))]
    assert not files_under(tmp_path)


def test_ctrl_c_stops_every_rank_and_leaves_no_files(fake_checkpoint, tmp_path):
    import signal
    import time
    out, log_path = tmp_path / "out", tmp_path / "stderr.txt"
    with open(log_path, "w") as log:
        proc = torchrun(sample_args(fake_checkpoint, out / "v.mp4", "--steps", "200"), stdout=log, stderr=log,
                        start_new_session=True)
        deadline = time.time() + 90
        while time.time() < deadline and "denoise:" not in log_path.read_text():  # wait until sampling runs
            time.sleep(0.5)
        assert "denoise:" in log_path.read_text()
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: SIGINT to the whole process group
        t0 = time.time()
        proc.wait(timeout=60)
    assert time.time() - t0 < 60 and proc.returncode != 0
    assert not files_under(out)


@pytest.mark.parametrize("script", ["sample.py", "simulate.py"])
def test_ctrl_c_in_one_process_exits_130_with_one_line(script, tmp_path):
    """SIGINT to a single-process run mid-compute (sample.py: once its progress bar shows a denoising step done;
    simulate.py: once the first emulated run is reported): exit 130, one line, no files. sample.py used to abort the
    interpreter (SIGABRT, exit 134: a rank thread still computing at exit), simulate.py printed a traceback."""
    import signal
    import time
    _, config = make_fake_checkpoint(str(tmp_path))
    out, log_path = tmp_path / "out", tmp_path / "log.txt"
    args, ready = {"sample.py": (["--prompt", "x", "--random-weights", "--model-config", config, "--frames", "8",
                                  "--height", "64", "--width", "64", "--steps", "500", "--out", str(out / "v.mp4")],
                                 "| 1/"),
                   "simulate.py": (["--frames", "32", "--ranks", "16", "--height", "16", "--width", "16", "--json",
                                    str(out / "sim.json")], "1 emulated rank(s)")}[script]
    out.mkdir() if script == "simulate.py" else None  # simulate.py writes into an existing folder
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, script, *args], cwd=HERE, stdout=log, stderr=log, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
        deadline = time.time() + 90
        while time.time() < deadline and ready not in log_path.read_text():  # computing now
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    err = log_path.read_text()
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith(script)]
    assert proc.returncode == 130 and lines == [f"{script}: interrupted; no output written"], err[-2000:]
    assert "Traceback" not in err and "terminate called" not in err and not files_under(tmp_path / "out")


def test_error_table_is_current():
    with open(os.path.join(HERE, "docs", "errors.md")) as f:
        assert error_table() in f.read()


SIMULATE_ERROR_CASES = [  # simulate.py after --frames 4 --ranks 2 --height 8 --width 8
    ("--checkpoint missing", ["--checkpoint", "{tmp}/nope.ckpt"], "does not exist"),
    ("--checkpoint not a checkpoint", ["--checkpoint", "{tmp}/junk.ckpt"], "is not a torch checkpoint"),
    ("--checkpoint truncated", ["--checkpoint", "{tmp}/cut.safetensors", "--config", "{tmp}/config.json"],
     "is truncated"),
    ("--config without --checkpoint", ["--config", "{tmp}/config.json"], "--config is the config of --checkpoint"),
    ("--config with a wrong key", ["--checkpoint", "{tmp}/full.safetensors", "--config", "{tmp}/badkey.json"],
     "--config: model config: unknown key unet.flux"),
    ("--plot in a folder that does not exist", ["--plot", "{tmp}/nodir/scope.svg"], "does not exist"),
    ("--plot not an SVG", ["--plot", "{tmp}/scope.xyz"], "--plot must end in .svg"),
    ("--json in a folder that is not writable", ["--json", "/proc/sim.json"], "is not writable"),
    ("--json names a folder", ["--json", "{tmp}"], "is a folder; expected a file path"),
    ("--timestep out of range", ["--timestep", "5000", "-3"], "--timestep must be two diffusion timesteps in 0..999"),
    ("negative --tolerance", ["--tolerance", "-1"], "--tolerance must be a finite number >= 0"),
    ("--frames 0", ["--frames", "0"], "--frames must be >= 1"),
    ("--ranks above --frames", ["--frames", "1"], "--ranks (2) must not exceed --frames (1)"),
    ("--frames too many for the dense reference", ["--frames", "100000"], "the single-device reference (dense "
     "attention over every pair of frames) needs about"),
    ("latent --height not a multiple of 8", ["--height", "12"], "--height (latent) must be a multiple of 8"),
    ("negative --local-window", ["--local-window", "-1"], "--local-window must be >= 0"),
    ("negative --seed", ["--seed", "-1"], "--seed must be in 0..2**63-1"),
    ("--compile without torchrun", ["--compile"], "--compile needs real ranks (torchrun)"),
    ("--dtype unknown", ["--dtype", "bf16"], "argument --dtype: invalid choice"),
    ("a flag that does not exist", ["--frame", "3"], "unrecognized arguments: --frame 3"),
]

BENCH_ERROR_CASES = [  # bench.py (no GPU here: the full-size rows ask for one)
    ("no GPU, no --smoke", [], "no GPU: the full-size UNet takes hours per table on a CPU; use --smoke"),
    ("--frames-per-gpu 0", ["--frames-per-gpu", "8", "0"], "--frames-per-gpu must be >= 1 each, got [8, 0]"),
    ("--iters 0", ["--smoke", "--iters", "0"], "--iters must be >= 1, got 0"),
    ("latent --height not a multiple of 8", ["--smoke", "--height", "12"], "--height (latent) must be a multiple of 8"),
    ("--timestep out of range", ["--smoke", "--timestep", "1000"], "--timestep must be in 0..999"),
    ("--fps 0", ["--smoke", "--fps", "0"], "--fps must be >= 1"),
    ("--json in a folder that does not exist", ["--smoke", "--json", "/nonexistent/b.json"],
     "--json: folder '/nonexistent' does not exist"),
    ("--profile names a folder", ["--smoke", "--profile", "{tmp}"], "is a folder; expected a file path"),
    ("--e2e with forward-benchmark flags", ["--e2e", "--iters", "3", "--batch", "4"],
     "--e2e does not use --batch, --iters"),
    ("--e2e with a bad sample.py flag", ["--e2e", "--frames", "4", "--guidance", "-1"], "--guidance must be >= 0"),
    ("--cuda-graph without a GPU", ["--smoke", "--cuda-graph"], "--cuda-graph needs a GPU (--smoke runs on the CPU)"),
    ("a flag that does not exist", ["--smoke", "--frame", "3"], "unrecognized arguments: --frame 3"),
]


def run_case(script, argv, folder, checkpoint, config):
    """One row of the tables: `script`'s main in this process ({tmp} -> folder) -> (exit code, stderr)."""
    import contextlib
    import io

    import bench
    argv = [a.replace("{tmp}", str(folder)) if a else a for a in argv]
    main, base = {"sample.py": (sample.main, ["--prompt", "a", "--frames", "4", "--height", "64", "--width", "64",
                                              "--steps", "1", "--checkpoint", checkpoint, "--model-config", config,
                                              "--out", f"{folder}/out/video.mp4"]),
                  "simulate.py": (simulate.main, ["--frames", "4", "--ranks", "2", "--height", "8", "--width", "8"]),
                  "bench.py": (bench.main, [])}[script]
    if argv[:2] == ["--prompt", None]:  # the row drops the default prompt
        base, argv = base[2:], argv[2:]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = main(base + argv)
        except SystemExit as e:  # argparse (simulate.py, bench.py)
            code = e.code
    return code, err.getvalue()


def error_lines(script, err):
    return [line for line in err.splitlines() if line.startswith(f"{script}: error:")]


@pytest.mark.parametrize("script,what,argv,message",
                         [("simulate.py", *c) for c in SIMULATE_ERROR_CASES] +
                         [("bench.py", *c) for c in BENCH_ERROR_CASES],
                         ids=[f"simulate: {c[0]}" for c in SIMULATE_ERROR_CASES] +
                             [f"bench: {c[0]}" for c in BENCH_ERROR_CASES])
def test_simulate_and_bench_bad_input_is_one_clear_line(script, what, argv, message, fake_checkpoint, tmp_path,
                                                        monkeypatch):
    """As sample.py's: one line, exit code 2, no traceback, before any compute, nothing written."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # the rows are of a machine without a GPU
    error_inputs(tmp_path, fake_checkpoint[0])
    shutil.copy(fake_checkpoint[1], tmp_path / "config.json")
    before = files_under(tmp_path)
    code, err = run_case(script, argv, tmp_path, *fake_checkpoint)
    lines = error_lines(script, err)
    assert code == 2 and len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and files_under(tmp_path) == before


def test_simulate_more_ranks_than_frames_under_torchrun(tmp_path):
    """torchrun --nproc_per_node 3 simulate.py --frames 2: the error once (rank 0), before any model is built."""
    proc = torchrun(["--frames", "2", "--json", str(tmp_path / "sim.json")], "simulate.py", 3)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and error_lines("simulate.py", err) == [
        "simulate.py: error: --frames (2) must be >= the number of ranks (3): every rank needs a frame (see --help)"]
    assert 'simulate.py", line' not in err and not files_under(tmp_path)


def test_bench_refuses_what_cannot_fit_on_the_gpu(monkeypatch, capsys):
    """Before the first row (minutes on a GPU): the largest n against the GPU's memory, sample.py's estimate."""
    import bench
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sample, "device_memory", lambda device: (80 * 2 ** 30, "an 80 GiB GPU"))
    with pytest.raises(SystemExit) as e:
        bench.parse_args(["--frames-per-gpu", "128", "5000"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "5000 frames per GPU need about" in err and "more than the 80.0 GiB" in err
    fit = int(err.split("at most about ")[1].split(" frames")[0])
    assert 1000 <= fit <= 1300  # 80 GiB less 2.6 GiB of UNet weights, 0.068 GiB per frame (batch 2, bf16)
    assert bench.parse_args(["--frames-per-gpu", "128", "288"]).frames_per_gpu == [128, 288]


ERRORS_BEGIN, ERRORS_END = "<!-- the tables below: python test_all.py -->", "<!-- end of the tables -->"


def error_table():
    """docs/errors.md's tables of bad inputs and their messages, made by running every row (as on a machine without
    a GPU, with 16 GiB of RAM)."""
    import tempfile
    from unittest import mock
    sections = [ERRORS_BEGIN]
    ram = lambda device: (16 * 2 ** 30, "this machine's RAM")  # noqa: E731 - the same table on every machine
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryDirectory() as tmp, \
            mock.patch.object(torch.cuda, "is_available", lambda: False), mock.patch.object(sample, "device_memory", ram):
        ckpt = make_fake_checkpoint(folder)
        error_inputs(tmp, ckpt[0])  # one folder for every row: a row writes nothing
        shutil.copy(ckpt[1], os.path.join(tmp, "config.json"))
        for script, cases in (("sample.py", ERROR_CASES), ("simulate.py", SIMULATE_ERROR_CASES),
                              ("bench.py", BENCH_ERROR_CASES)):
            rows = [f"### `{script}`", "", "| input | message (exit code 2) |", "| --- | --- |"]
            for what, argv, _ in cases:
                _, err = run_case(script, argv, tmp, *ckpt)
                line = error_lines(script, err)[0].replace(f"{script}: error: ", "")
                rows.append(f"| {what} | `{line.replace(tmp, '<dir>').replace(folder, '<dir>')}` |")
            sections.append("\n".join(rows))
    return "\n\n".join(sections + [ERRORS_END])


# -----------------------------------------------------------------------------
# bench.py


def test_bench_smoke(tmp_path):
    """bench.py --smoke: the tiny UNet on the CPU, every number in the table positive, the precision check passed."""
    import bench
    out = tmp_path / "bench.json"
    bench.main(["--smoke", "--frames-per-gpu", "2", "4", "--warmup", "1", "--iters", "2", "--check-frames", "4",
                "--json", str(out)])
    res = json.loads(out.read_text())
    assert res["matmul_peak_tflops"] > 0 and res["check"]["ok"] and res["check"]["rel_l2_error"] < 1e-5
    assert [r["frames_per_gpu"] for r in res["rows"]] == [2, 4]
    for r in res["rows"]:
        assert all(r[k] > 0 for k in ("ms", "ms_per_frame", "flops", "tflops", "mfu", "peak_gib", "gib_per_frame")), r


def test_bench_e2e_tiny(fake_checkpoint, tmp_path):
    """bench.py --e2e: sample.py end to end with random weights (tiny config), per-phase timings in the JSON."""
    import bench
    out = tmp_path / "e2e.json"
    bench.main(["--e2e", "--frames", "6", "--steps", "2", "--height", "8", "--width", "8", "--guidance", "1",
                "--model-config", fake_checkpoint[1], "--emulate", "2", "--json", str(out)])
    res = json.loads(out.read_text())["e2e"]
    assert res["world_size"] == 2 and res["unet_evals"] == 2 and res["s_per_eval"] > 0
    assert set(res["timings_s"]) >= {"load", "text", "first_step", "denoise", "decode", "write", "join", "total"}
    t = res["timings_s"]
    assert res["s_per_eval_after_first"] == pytest.approx(t["denoise"] - t["first_step"])  # 2 evaluations
    assert res["prompt_to_mp4_s"] == pytest.approx(res["timings_s"]["total"] - res["timings_s"]["load"])


def test_bench_e2e_under_torchrun(fake_checkpoint, tmp_path, monkeypatch):
    """bench.py --e2e on 2 real gloo ranks: every rank writes its segment into one folder (e2e_folder), rank 0 joins
    them and removes the folder afterwards."""
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # where e2e_folder makes the folder (torchrun copies the env)
    (tmp_path / "tmp").mkdir()
    out = tmp_path / "e2e.json"
    torchrun_ok(["--e2e", "--frames", "5", "--steps", "1", "--height", "8", "--width", "8", "--guidance", "1",
                 "--model-config", fake_checkpoint[1], "--json", str(out)], "bench.py")
    res = json.loads(out.read_text())["e2e"]
    assert res["world_size"] == 2 and res["timings_s"]["join"] > 0 and res["timings_s"]["write"] > 0
    assert not [f for f in os.listdir(tmp_path / "tmp") if f.startswith("bench_e2e")]  # (torch's caches stay)


def test_compile_cache_carries_inductor_work_to_a_cold_machine(tmp_path, capsys, monkeypatch):
    """fast.compile_cache (--compile-cache of sample.py and bench.py): a run with an empty Inductor cache saves the
    artifacts, a failed run writes no file, and a second process with another empty cache (a fresh machine) loads
    them: Inductor's graph cache hits instead of compiling. A one-line function, so Inductor's C++ compile takes
    seconds on a CPU. Under torchrun each rank has a file of its own; a file that cannot be written is a warning."""
    import bench
    script = ("import sys, torch, fast\n"
              "from torch._dynamo.utils import counters\n"
              "with fast.compile_cache(sys.argv[1]):\n"
              "    torch.compile(lambda x: torch.sin(x) * 2 + 1, backend='inductor')(torch.randn(8))\n"
              "print(counters['inductor']['fxgraph_cache_hit'], counters['inductor']['fxgraph_cache_miss'])\n")

    def run(machine):  # a process with its own empty Inductor cache
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / machine / "inductor"),
               "TRITON_CACHE_DIR": str(tmp_path / machine / "triton")}
        proc = subprocess.run([sys.executable, "-c", script, str(cache)], cwd=HERE, env=env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    cache = tmp_path / "compiled.bin"
    with pytest.raises(RuntimeError), fast.compile_cache(cache):
        raise RuntimeError("a run that fails")
    assert not cache.exists()
    assert run("a") == ["0", "1"] and cache.stat().st_size > 0  # compiled: a miss
    assert run("b") == ["1", "0"]  # another empty cache, the file loaded: a hit
    torch.distributed.init_process_group("gloo", store=torch.distributed.FileStore(str(tmp_path / "store"), 1),
                                         rank=0, world_size=1)
    try:  # a rank of torchrun's
        monkeypatch.setattr(torch.compiler, "save_cache_artifacts", lambda: (b"rank 0's artifacts", None))
        with fast.compile_cache(cache):
            pass
    finally:
        torch.distributed.destroy_process_group()
    assert (tmp_path / "compiled.bin.rank0").read_bytes() == b"rank 0's artifacts"
    with pytest.warns(UserWarning, match="the next run compiles them again"):  # a cache that cannot be saved:
        with fast.compile_cache(str(tmp_path / "gone" / "compiled.bin")):  # the run still ends well
            pass
    with pytest.raises(SystemExit):
        bench.parse_args(["--smoke", "--compile-cache", str(cache)])
    assert "--compile-cache needs --compile" in capsys.readouterr().err


# -----------------------------------------------------------------------------
# The tiny model (tiny/): procedural data, the detector, the shipped weights, sample.py --tiny

TINY = os.path.join(HERE, "tiny")


def test_tiny_data_positions_bounce_and_colours():
    """Constant speed, exact reflection at the walls, the prompt's colours, centroids where the pixels say."""
    s = tiny_data.Scene("square", "red", "right", "white", speed=2.0, x=50.0, y=20.0)
    video, pos = tiny_data.render(s, 8)
    wall = tiny_data.SIZE - tiny_data.HALF  # 55: the box touches the right wall
    assert pos[:, 0].tolist() == [50, 52, 54, 54, 52, 50, 48, 46]  # 56 folds back to 54, 58 to 52, ...
    assert pos[:, 1].tolist() == [20.0] * 8 and pos[:, 0].max() <= wall
    assert tiny_data.render(s, 4, start=4)[1].tolist() == pos[4:].tolist()  # any window of the same motion
    assert video.shape == (8, 64, 64, 3) and video.dtype == torch.uint8
    assert video[0, 20, 50].tolist() == list(tiny_data.COLOURS["red"])  # the box centre pixel
    assert video[0, 60, 5].tolist() == list(tiny_data.COLOURS["white"])
    # a long run stays inside the walls and moves at the speed everywhere except at the bounces
    long = tiny_data.positions(tiny_data.Scene("circle", "blue", "up", speed=2.5), 1000)
    step = np.abs(np.diff(long[:, 1]))
    assert long[:, 1].min() >= tiny_data.HALF and long[:, 1].max() <= wall and np.all(long[:, 0] == 32)
    assert np.mean(np.isclose(step, 2.5)) > 0.9 and step.max() <= 2.5 + 1e-9
    # the centroid of a triangle lies a third of the way up from its base
    v, p = tiny_data.render(tiny_data.Scene("triangle", "yellow", "down", x=30.3, y=25.7), 1)
    cover = (v[0, :, :, 0].double() - 15) / (240 - 15)  # coverage from the red channel (black background)
    ys, xs = torch.meshgrid(torch.arange(64.0) + 0.5, torch.arange(64.0) + 0.5, indexing="ij")
    assert abs((cover * xs).sum() / cover.sum() - p[0, 0]) < 0.1
    assert abs((cover * ys).sum() / cover.sum() - p[0, 1]) < 0.1


def test_tiny_prompt_grammar():
    for text in ("a red circle moving right", "a white square moving up on a blue background"):
        assert tiny_data.caption(tiny_data.parse_prompt(text)) == text
    s = tiny_data.parse_prompt("A Green Triangle moving down on a grey background.")
    assert (s.colour, s.shape, s.direction, s.background) == ("green", "triangle", "down", "gray")
    assert tiny_data.parse_prompt("a blue circle moving left").background == "black"  # no background: black
    for bad, why in (("a corgi on the beach", "does not follow"), ("a pink circle moving left", "colour"),
                     ("a red circle moving left on a red background", "too faint")):
        with pytest.raises(ValueError, match=why):
            tiny_data.parse_prompt(bad)
    video, captions = tiny_data.training_batch(6, 16, torch.Generator().manual_seed(0))
    assert video.shape == (6, 3, 16, 64, 64) and -1 <= video.min() and video.max() <= 1
    assert all(tiny_data.caption(tiny_data.parse_prompt(c), background=True) in (c, c + " on a black background")
               for c in captions)


def test_tiny_detector_recovers_ground_truth():
    """On rendered clips: always found, right colour, shape and background, centroid within 1 pixel."""
    rng, errors = np.random.default_rng(1), []
    for _ in range(24):
        scene = tiny_data.random_scene(rng)
        video, pos = tiny_data.render(scene, 8, start=int(rng.integers(100)))
        for d, (x, y) in zip(tiny_detect.detect(video), pos):
            assert (d.found, d.colour, d.shape, d.background) == (True, scene.colour, scene.shape, scene.background)
            errors.append(math.hypot(d.x - x, d.y - y))
    assert max(errors) < 1.0 and np.mean(errors) < 0.4  # measured: max 0.69, mean 0.21 px
    blank = np.full((2, 64, 64, 3), 128, np.uint8)
    assert [d.found for d in tiny_detect.detect(blank)] == [False, False]
    assert tiny_detect.detect(blank)[0].background == "gray"


def tiny_parts():
    return model.load_videocrafter2(os.path.join(TINY, "tiny_vc2.safetensors"), os.path.join(TINY, "config.json"))


def test_tiny_weights_load_like_the_real_checkpoint():
    """fp16 safetensors with VC2's keys, <= 15 MB, loaded by load_videocrafter2 with the real tokenizer."""
    path = os.path.join(TINY, "tiny_vc2.safetensors")
    assert os.path.getsize(path) <= 15 * 2 ** 20
    sd = load_file(path)
    assert {k.split(".")[0] for k in sd} == {"model", "first_stage_model", "cond_stage_model"}
    assert all(v.dtype == torch.float16 for v in sd.values())
    parts = tiny_parts()
    with open(os.path.join(TINY, "config.json")) as f:
        config = json.load(f)
    assert parts["unet"].model_channels == config["unet"]["model_channels"] and parts["scale_factor"] > 0
    tokens = parts["tokenizer"](["a red circle moving right", "a blue square moving left"])
    assert tokens[0, :7].tolist() == [49406, 320, 736, 7117, 3584, 1155, 49407]  # CLIP's BPE ids
    ctx = parts["text"](tokens)
    assert ctx.shape == (2, 77, config["text"]["width"]) and (ctx[0] - ctx[1]).abs().max() > 0.1


def tiny_args(out, *extra):
    return ["--tiny", "--prompt", "a red circle moving right", "--prompt", "a blue square moving left", "--frames",
            "16", "--steps", "3", "--out", str(out), "--save-latents", *extra]


def test_tiny_cli_is_rank_invariant(tmp_path):
    """sample.py --tiny: the tiny defaults (64x64), explicit flags win, same video for 1 and 2 emulated ranks."""
    runs = {}
    for n in (1, 2):
        assert sample.main(tiny_args(tmp_path / f"e{n}.mp4", "--emulate", str(n))) == 0
        runs[n] = load_file(tmp_path / f"e{n}.latents.safetensors")
    assert iio.imread(tmp_path / "e1.mp4").shape == (16, 64, 64, 3)
    settings = json.loads((tmp_path / "e1.json").read_text())["settings"]
    assert (settings["height"], settings["width"], settings["steps"]) == (64, 64, 3)
    assert settings["guidance"] == sample.TINY_DEFAULTS["guidance"]
    assert rel_err(runs[2]["latents"], runs[1]["latents"]) <= 1e-4
    assert (runs[2]["frames"].int() - runs[1]["frames"].int()).abs().max() <= 1


def test_tiny_cli_refuses_other_weights(tmp_path, capsys):
    assert sample.main(tiny_args(tmp_path / "v.mp4", "--random-weights")) == 2
    assert "--tiny brings its own weights" in capsys.readouterr().err


TINY_PROMPTS = ["a red circle moving right", "a green square moving left", "a blue triangle moving up",
                "a yellow circle moving down on a white background"]


def test_tiny_model_really_generates():
    """The detector finds the prompted colour and shape in >= 90% of the frames of sampled 16-frame clips."""
    from tiny.train import detection_rate
    rate = detection_rate(tiny_parts(), TINY_PROMPTS, steps=sample.TINY_DEFAULTS["steps"],
                          guidance=sample.TINY_DEFAULTS["guidance"])
    assert rate >= 0.9, rate


def test_tiny_training_runs_and_reuses_a_vae(tmp_path):
    """tiny/train.py end to end at toy sizes (2 steps a stage): it writes a checkpoint that load_videocrafter2 loads;
    --vae-from skips stage 1 and keeps that run's VAE and scale_factor while the UNet starts afresh."""
    from tiny import train
    toy = ["--vae-batch", "4", "--batch", "2", "--unet-steps", "2", "--eval-prompts", "0"]
    with torch.enable_grad():  # the suite runs without autograd
        train.main(["--out", str(tmp_path / "a"), "--vae-steps", "2"] + toy)
        train.main(["--out", str(tmp_path / "b"), "--vae-from", str(tmp_path / "a"), "--seed", "1"] + toy)
    a, b = (model.load_videocrafter2(str(tmp_path / r / "tiny_vc2.safetensors"), str(tmp_path / r / "config.json"))
            for r in "ab")
    assert a["scale_factor"] == b["scale_factor"] and a["scale_factor"] > 0
    for k, v in a["vae"].state_dict().items():
        assert torch.equal(v, b["vae"].state_dict()[k]), k
    assert not torch.equal(a["unet"].out[2].weight, b["unet"].out[2].weight)
    with pytest.raises(SystemExit):
        train.main(["--out", str(tmp_path / "c"), "--vae-from", str(tmp_path / "a"), "--resume", str(tmp_path / "a")])


def test_tiny_training_noise_is_what_the_sampler_inverts():
    """train.py's x_t and sample.ddim_sample agree: given the true noise, deterministic DDIM walks exactly along
    train.py's x_t = add_noise(x0, t, eps) from step to step and ends at x0."""
    from tiny.train import add_noise
    _, alphas_cumprod, scale_arr = sample.make_buffers()
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 8, 8, generator=g), torch.randn(2, 4, 3, 8, 8, generator=g)
    schedule, off_path = sample.make_schedule(10, 0.0), []

    def oracle(x, t):  # the noise in x, if x is on train.py's path
        off_path.append(rel_err(x, add_noise(x0, torch.full((2,), t), eps, alphas_cumprod, scale_arr)))
        return eps, eps

    x_T = add_noise(x0, schedule.timesteps[-1:].expand(2), eps, alphas_cumprod, scale_arr)
    z, pred_x0 = sample.ddim_sample(oracle, x_T, schedule, 5.0, None)
    assert len(off_path) == 10 and max(off_path) < 1e-5
    assert rel_err(pred_x0, x0) < 1e-5 and rel_err(z, x0) < 0.05


# -----------------------------------------------------------------------------
# tiny/ coherence experiment: the published implementation's approximations (tiny/published.py) and the metrics
# (tiny/coherence.py)

def published_run(unet, x, timesteps, context, opts, ranks):
    """tiny/published.py's forward over `ranks` emulated ranks, reassembled: (b, c, T, h, w)."""
    from tiny import published
    frames = x.shape[2]
    clips = split_frames(frames, ranks)
    with published.published_layers(unet, opts):
        outs = clip_parallel.run_ranks(ranks, lambda comm: published.clip_forward(
            unet, comm, frames, x[:, :, clips[comm.rank][0]:clips[comm.rank][1]], timesteps, context, 24))
    return torch.cat(outs, dim=2)


@pytest.fixture(scope="module")
def published_case():
    """A random tiny UNet in float64 (differences are the method's, not rounding) and one input, both phases."""
    unet = simulate.randomize(model.UNet(**simulate.TINY_UNET), 0).double().eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 20, 8, 8, generator=g, dtype=torch.float64)
    context = torch.randn(2, 77, unet.context_dim, generator=g, dtype=torch.float64)
    scope = DualScope(local_window=4, global_frames=6)
    return unet, x, torch.tensor([900, 300]), context, scope, simulate.single_device(unet, x, torch.tensor([900, 300]),
                                                                                      context, 24, scope)


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_published_with_no_approximation_is_exact(published_case, ranks):
    """Every switch off, the published layers compute the exact method: the layer swaps change only what they say."""
    from tiny import published
    unet, x, t, context, scope, reference = published_case
    out = published_run(unet, x, t, context, published.Published.only(scope=scope), ranks)
    assert rel_err(out, reference) < 1e-10


def test_published_local_group_norm(published_case):
    """Per-rank GroupNorm statistics alone: the same as the exact run on one rank, not on two (by far)."""
    from tiny import published
    unet, x, t, context, scope, reference = published_case
    opts = published.Published.only("local_norm", scope=scope)
    assert rel_err(published_run(unet, x, t, context, opts, 1), reference) < 1e-10
    assert rel_err(published_run(unet, x, t, context, opts, 2), reference) > 1e-2


def test_published_zero_ends_and_all_approximations(published_case):
    """Zero frames at the video's ends change the video even on one rank; all approximations on depend on N."""
    from tiny import published
    unet, x, t, context, scope, reference = published_case
    assert rel_err(published_run(unet, x, t, context, published.Published.only("zero_ends", scope=scope), 1),
                   reference) > 1e-2
    everything = published.Published(scope=scope)
    one, two = (published_run(unet, x, t, context, everything, n) for n in (1, 2))
    assert rel_err(one, reference) > 1e-2 and rel_err(two, one) > 1e-2


@pytest.mark.parametrize("frames,ranks,expected", [
    (64, 4, list(range(0, 64, 4))),  # 4 per rank at stride 4: 16 frames
    (48, 3, [0, 3, 6, 9, 12, 16, 19, 22, 25, 28, 32, 35, 38, 41, 44]),  # 5 per rank at stride 3: only 15
    (1024, 64, list(range(0, 256, 16))),  # one per rank (its first frame), the first 16 ranks only
    (40, 1, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30]),  # one rank: 16 at stride 40 // 16
])
def test_published_global_frames(frames, ranks, expected):
    from tiny import published
    assert published.published_global_frames(frames, ranks) == expected


@pytest.mark.parametrize("timestep", [900, 300])
def test_published_attention_keys(timestep):
    """The keys of the published attention, read from its output: with q = 0 every logit is its bias, so the output
    (v = x, to_out = identity) is the bias-weighted mean of the key frames: the window i-8..i+8 with zero frames
    beyond the video's ends, plus the per-rank global frames, those inside the window counted twice."""
    from tiny import published
    frames, ranks, c = 40, 2, 4
    attn = model.Attention(c, 1, c).double()
    attn.to_q.weight.data.zero_()
    attn.to_v.weight.data.copy_(torch.eye(c))
    attn.to_out[0].weight.data.copy_(torch.eye(c))
    attn.to_out[0].bias.data.zero_()
    layer = published.PublishedAttention(attn, published.Published())
    x = torch.randn(3, frames, c, dtype=torch.float64)  # ((b h w), T, c)
    clips = split_frames(frames, ranks)

    def rank(comm):
        published.STATE.comm, published.STATE.clips = comm, clips
        published.STATE.timesteps = torch.tensor([timestep])
        start, stop = clips[comm.rank]
        return layer(x[:, start:stop])
    out = torch.cat(clip_parallel.run_ranks(ranks, rank), dim=1)
    G = published.published_global_frames(frames, ranks)  # [0, 2, ..., 14, 20, 22, ..., 34]
    b_local, b_global = (0.0, 10.0) if timestep >= 800 else (10.0, 0.0)
    for i in (0, 5, 19, 20, 39):
        window = [j for j in range(i - 8, i + 9) if 0 <= j < frames]  # the 17 - len(window) others are zero frames
        num = math.exp(b_local) * x[:, window].sum(1) + math.exp(b_global) * x[:, G].sum(1)
        den = 17 * math.exp(b_local) + len(G) * math.exp(b_global)
        assert rel_err(out[:, i], num / den) < 1e-12


def test_published_conv_block():
    """The published temporal conv block on clips of 6 frames: the original block run on the clip padded with 4
    frames per side from the neighbours, 4 zero frames at the video's ends, those 8 cropped; with local_norm and
    zero_ends off, the block over the whole video."""
    from tiny import published
    block = simulate.randomize(model.TemporalConvBlock(32), 0).double()
    x = torch.randn(2, 32, 12, 3, 3, dtype=torch.float64)
    clips = [(0, 6), (6, 12)]

    def run(opts):
        layer = published.PublishedConvBlock(block, opts)

        def rank(comm):
            published.STATE.comm, published.STATE.clips = comm, clips
            start, stop = clips[comm.rank]
            return layer(x[:, :, start:stop])
        return torch.cat(clip_parallel.run_ranks(2, rank), dim=2)
    zeros = torch.zeros_like(x[:, :, :4])
    expected = torch.cat([block(torch.cat([zeros, x[:, :, :10]], 2))[:, :, 4:10],
                          block(torch.cat([x[:, :, 2:], zeros], 2))[:, :, 4:10]], 2)
    assert rel_err(run(published.Published()), expected) < 1e-12
    assert rel_err(run(published.Published.only()), block(x)) < 1e-12
    assert rel_err(expected, block(x)) > 1e-2


def synthetic_track(frames=64, start=(5.0, 30.0), velocity=(2.5, 0.0), size=64, shift_at=None, shift=(0.0, 0.0),
                    noise=0.0, seed=0):
    """Ground-truth motion of the data: constant velocity, bouncing off the walls [0, size]; optionally everything
    from frame shift_at on displaced by `shift` (a seam), or noise added to every position."""
    p, v, xs, ys = list(start), list(velocity), [], []
    rng = np.random.default_rng(seed)
    for f in range(frames):
        dx, dy = shift if shift_at is not None and f >= shift_at else (0.0, 0.0)
        xs.append(p[0] + dx + noise * rng.standard_normal())
        ys.append(p[1] + dy + noise * rng.standard_normal())
        for k in (0, 1):
            p[k] += v[k]
            if not 0 <= p[k] <= size:
                p[k] = -p[k] if p[k] < 0 else 2 * size - p[k]
                v[k] = -v[k]
    return dict(found=[True] * frames, x=xs, y=ys, colour=["red"] * frames, shape=["circle"] * frames)


def test_coherence_metrics_on_synthetic_tracks():
    from tiny import coherence
    smooth = synthetic_track()
    across, within, ratio = coherence.seam_jump(smooth)
    # 2.5 px a frame, less at the two bounces, where the wall folds a step (62.5 -> 63: 0.5 px)
    assert within == pytest.approx(2.5, abs=0.15) and ratio == pytest.approx(1.0, abs=0.07)
    assert coherence.jerk(smooth, 64, 64) < 1e-9  # constant velocity and bounces (x bounces twice in 64 frames)
    jumped = synthetic_track(shift_at=32, shift=(0.0, 12.0))  # a discontinuity at the seam 31 -> 32
    across, within, ratio = coherence.seam_jump(jumped)
    # seams 15 -> 16, 31 -> 32, 47 -> 48
    assert across == pytest.approx((2 * 2.5 + math.hypot(2.5, 12)) / 3, abs=1e-9)
    assert ratio > 2.2
    off_seam = synthetic_track(shift_at=40, shift=(0.0, 12.0))  # the same jump inside a clip: not a seam's
    assert coherence.seam_jump(off_seam)[2] == pytest.approx(1.0, abs=0.07)
    # |a| = 12 twice over 62 frames x 2 axes, less 3 x-values around each of the two bounces
    assert coherence.jerk(jumped, 64, 64) == pytest.approx(2 * 12 / (62 * 2 - 6))
    assert coherence.jerk(synthetic_track(noise=1.0), 64, 64) > 1.5  # about 1.95 sigma
    lost = dict(smooth, found=[f % 2 == 0 for f in range(64)])  # no consecutive detections: nothing to measure
    assert math.isnan(coherence.seam_jump(lost)[2]) and math.isnan(coherence.jerk(lost, 64, 64))


def test_coherence_identity_segments_and_summary():
    from tiny import coherence
    track = synthetic_track(frames=32)
    track["colour"] = ["red"] * 20 + ["blue"] * 12
    track["found"] = [True] * 30 + [False] * 2
    assert coherence.identity(track, ["red"] * 32, ["circle"] * 32) == pytest.approx(20 / 32)
    prompts = [("red", "circle", "right"), ("blue", "circle", "left")]
    match, shown = coherence.segments(track, prompts, 32)  # segments: frames 0-15 red, 16-31 blue
    assert match == pytest.approx((16 + 10) / 32) and shown == 1.0
    m = coherence.video_metrics(track, prompts[:1], 32, 64, 64)
    assert m["identity"] == pytest.approx(20 / 32) and m["found"] == pytest.approx(30 / 32)
    s = coherence.summarise([1.0, 2.0, 3.0, math.nan])
    assert s["n"] == 3 and s["mean"] == 2.0 and s["std"] == 1.0 and s["ci95"] == pytest.approx(4.303 / 3 ** 0.5)


def test_coherence_fast_blob_is_the_detectors():
    """coherence.largest_blob (scipy's labelling, swapped into the detector for 10^5 frames) picks the very blob of
    tiny/detect.py's search, ties included, on random masks of every density."""
    pytest.importorskip("scipy")
    from tiny import coherence, detect
    rng = np.random.default_rng(0)
    for density in np.linspace(0.05, 0.65, 40):
        mask = rng.random((24, 24)) < density
        assert (coherence.largest_blob(mask) == detect.largest_blob(mask)).all()
    assert not coherence.largest_blob(np.zeros((4, 4), bool)).any()


if __name__ == "__main__":  # rewrites the tables of docs/errors.md from the rows above, and prints them
    torch.set_grad_enabled(False)
    path = os.path.join(HERE, "docs", "errors.md")
    with open(path) as f:
        text = f.read()
    tables = error_table()
    with open(path, "w") as f:
        f.write(text[:text.index(ERRORS_BEGIN)] + tables + text[text.index(ERRORS_END) + len(ERRORS_END):])
    print(tables)
