"""Every bundled space: the CLI from any directory, and 100 random specs each that build and train."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nas.space import BUNDLED_DIR, load_space
from nas.spec import UNetSpec
from nas.unet import build_unet, count_parameters

BUNDLED = sorted(p.name for p in BUNDLED_DIR.glob("*.yaml"))
ENV = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


def test_the_bundled_spaces() -> None:
    assert {"light.yaml", "adm.yaml", "mobile.yaml", "diffusers.yaml", "video.yaml", "latent.yaml"} <= set(BUNDLED)


@pytest.mark.parametrize("name", BUNDLED)
def test_validate_from_root_prints_exact_cardinality(name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "nas.space", "validate", name, "--n", "20"], cwd="/",
                          capture_output=True, text=True, timeout=300, env=ENV)
    assert proc.returncode == 0, proc.stderr
    expected = load_space(name, check_constraints=False).cardinality()
    assert f"cardinality: {expected} distinct architectures" in proc.stdout
    assert f"space: {name.removesuffix('.yaml')}" in proc.stdout
    assert "parameters over 20 sampled points: min" in proc.stdout


def test_sample_cli_is_reproducible_and_every_spec_builds() -> None:
    cmd = [sys.executable, "-m", "nas.space", "sample", "light.yaml", "--n", "5", "--seed", "0"]
    first = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=120, env=ENV)
    second = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=120, env=ENV)
    assert first.returncode == 0 and first.stdout == second.stdout
    documents = first.stdout.split("\n---\n")
    assert len(documents) == 5
    for text in documents:
        spec = UNetSpec.from_yaml(text)
        model = build_unet(spec)
        x = torch.randn(2, spec.in_channels, spec.image_size, spec.image_size)
        t = torch.randint(0, spec.diffusion_steps, (2,))
        assert model(x, t).shape == (2, spec.out_channels, spec.image_size, spec.image_size)


def reduced(spec: UNetSpec) -> UNetSpec:
    """The same topology at width 8 (4 groups, 8 channels per head): cheap on a CPU."""
    return dataclasses.replace(spec, base_channels=8, norm_groups=4, head_channels=8)


def fewer_frames(spec: UNetSpec) -> UNetSpec:
    """A video spec with 2 frames of a quarter the size: every temporal layer still mixes frames,
    at a small part of the cost of 8 full frames."""
    return smaller_images(dataclasses.replace(spec, frames=2)) if spec.is_video else spec


def smaller_images(spec: UNetSpec) -> UNetSpec:
    """The same modules on images half the size where every level still halves evenly (no layer's
    shape depends on the image size; full attention at 32x32 costs 16 times that at 16x16)."""
    half = spec.image_size // 2
    if spec.image_size % 2 == 0 and half % 2 ** (len(spec.levels) - 1) == 0:
        return dataclasses.replace(spec, image_size=half)
    return spec


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLED)
def test_random_specs_build_train_and_round_trip(name: str) -> None:
    space = load_space(name, check_constraints=False)
    # 100 specs; 40 of a video space, whose temporal layers make each several times dearer.
    n = 40 if space.data.frames > 1 else 100
    specs = space.sample(n, seed=123)
    assert len({s.digest() for s in specs}) > 0.75 * n  # a real spread of the space
    torch.manual_seed(0)
    for i, spec in enumerate(specs):
        assert UNetSpec.from_yaml(spec.to_yaml()) == spec
        assert UNetSpec.from_dict(yaml.safe_load(spec.to_yaml())) == spec
        small = fewer_frames(smaller_images(reduced(spec) if spec.base_channels > 16 else spec))
        model = build_unet(small)
        if i % 10 == 0:  # the meta-device count is exact but not free
            assert count_parameters(small) == sum(p.numel() for p in model.parameters())
        x = torch.randn(2, *small.sample_shape)
        out = model(x, torch.tensor([3, 700]))
        assert out.shape == (2, small.out_channels, *small.sample_shape[1:])
        out.square().mean().backward()
        assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
