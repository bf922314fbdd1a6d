"""All tests: exactness against the original VideoCrafter2 (fixtures/), clip-parallel equivalence, sampling, errors.

Every check asserts a number. Nothing here depends on the fixtures' shapes or widths: configs, cases and sizes
are read from the fixture files, so the same tests run on fixtures made with other seeds, sizes and widths.
"""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import model

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
torch.set_grad_enabled(False)


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


def test_unet_fps_int_equals_tensor(tiny_unet):
    c = fixture_tensors("unet_tiny_cases.safetensors", unet_cases()[0] + ".")
    fps = int(c["fps"][0])
    a = tiny_unet(c["x"][:1], c["timesteps"][:1], c["context"][:1], fps)
    b = tiny_unet(c["x"][:1], c["timesteps"][:1], c["context"][:1], torch.tensor([fps]))
    assert torch.equal(a, b)


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
