"""Tests for the static costs: nas.cost.count_macs / static_costs and nas.unet.count_parameters."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from nas.cost import count_macs, static_costs
from nas.spec import LevelSpec, UNetSpec
from nas.unet import build_unet, count_parameters

# Tiny: 8 channels, 2 norm groups, 8x8 images, no attention (so convolutions and linear layers
# are the only multiply-accumulates and an analytic count is possible).
TINY = UNetSpec(image_size=8, in_channels=1, base_channels=8, norm_groups=2, head_channels=8,
                mid_attention="none",
                levels=(LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2),
                        LevelSpec(channel_mult=2, blocks=1, decoder_blocks=1)))


def analytic_macs(model: nn.Module, spec: UNetSpec) -> int:
    """Per-image MACs of every Conv2d and Linear layer, from the shapes one batch-1 forward sees."""
    total = 0

    def conv(mod: nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw  # per output element

    def linear(mod: nn.Linear, args: tuple, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * mod.in_features

    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            mod.register_forward_hook(conv)
        elif isinstance(mod, nn.Linear):
            mod.register_forward_hook(linear)
    with torch.no_grad():
        model(torch.zeros(1, spec.in_channels, spec.image_size, spec.image_size), torch.zeros(1, dtype=torch.long))
    return total


def real_macs(spec: UNetSpec, batch_size: int) -> int:
    """MACs per image counted on the materialised CPU model at ``batch_size``.

    The math attention kernel is forced: FlopCounterMode counts nothing for the fused CPU
    kernel that contiguous inputs get (torch 2.13), while on the meta device attention always
    decomposes into counted matmuls.
    """
    model = build_unet(spec).eval()
    x = torch.randn(batch_size, spec.in_channels, spec.image_size, spec.image_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(x, torch.zeros(batch_size, dtype=torch.long))
    return counter.get_total_flops() // (2 * batch_size)


@pytest.mark.parametrize(("conv", "resample"), [
    ("standard", "conv"), ("depthwise_separable", "pixel_shuffle"), ("inverted_residual", "resblock"),
    ("standard", "avgpool"),
])
def test_count_macs_matches_an_analytic_count(conv: str, resample: str) -> None:
    levels = tuple(dataclasses.replace(lv, conv=conv) for lv in TINY.levels)
    spec = dataclasses.replace(TINY, levels=levels, resample=resample)
    assert count_macs(spec) == analytic_macs(build_unet(spec), spec) > 0


@pytest.mark.parametrize("attention", ["full", "linear", "transformer"])
def test_meta_count_equals_the_real_model_count_per_image(attention: str) -> None:
    levels = (TINY.levels[0], dataclasses.replace(TINY.levels[1], attention=attention))
    spec = dataclasses.replace(TINY, levels=levels, mid_attention="full")
    macs = count_macs(spec)  # on the meta device: no weights, no arithmetic
    assert macs == real_macs(spec, 1) == real_macs(spec, 3)  # per image, whatever the batch
    assert macs > count_macs(TINY)  # attention adds work


def test_static_costs_count_macs_only_when_needed() -> None:
    assert static_costs(TINY, needs={"max_params"}) == {"params": float(count_parameters(TINY))}
    costs = static_costs(TINY)
    assert costs == {"params": float(count_parameters(TINY)), "macs": float(count_macs(TINY))}
    assert count_parameters(TINY) == sum(p.numel() for p in build_unet(TINY).parameters())
