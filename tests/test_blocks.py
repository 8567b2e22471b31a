"""Behaviour of the U-Net building blocks: shapes, identity at init, conditioning, registries."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from nas.blocks import (
    ATTENTION_LAYERS,
    DOWNSAMPLERS,
    RES_BLOCKS,
    UPSAMPLERS,
    LinearAttention,
    SelfAttention,
    SqueezeExcite,
    TimeConditioning,
    TimestepEmbedding,
    TransformerBlock,
    lookup,
    make_attention,
    make_res_block,
    make_resample,
    sinusoidal_embedding,
)
from nas.blocks.layers import SeparableConv2d
from nas.errors import ConfigError
from nas.spec import ATTENTION_TYPES, CONV_TYPES, RESAMPLES, TIME_CONDITIONINGS

EMB = 16  # time-embedding width used throughout


def randomize_zero_inits(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialised weights random values so every branch is active and gets gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def assert_all_grads_finite(module: nn.Module) -> None:
    for name, p in module.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tensors here are tiny: intra-op threads only add synchronisation cost (tens of ms per
    # conv on a busy 2-core machine), so run single-threaded and restore afterwards.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ----- registries -----------------------------------------------------------------------
def test_registries_cover_exactly_the_spec_names() -> None:
    assert tuple(RES_BLOCKS) == CONV_TYPES
    assert tuple(ATTENTION_LAYERS) == ATTENTION_TYPES
    assert tuple(DOWNSAMPLERS) == RESAMPLES
    assert tuple(UPSAMPLERS) == RESAMPLES


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match=r"conv: unknown value 'standrd' \(did you mean 'standard'\?\)"
                                          r".*'depthwise_separable', 'inverted_residual'"):
        make_res_block("standrd", in_channels=4, out_channels=4, emb_channels=EMB,
                       time_conditioning="additive", norm_groups=2)
    with pytest.raises(ConfigError, match=r"attention: .*\['none', 'full', 'linear', 'transformer'\]"):
        make_attention("flash", channels=8, heads=2, norm_groups=2, emb_channels=EMB)
    with pytest.raises(ConfigError, match=r"resample: .*\['conv', 'avgpool', 'resblock', 'pixel_shuffle'\]"):
        make_resample("bilinear", "up", in_channels=4, out_channels=4, emb_channels=EMB,
                      time_conditioning="additive", norm_groups=2)
    with pytest.raises(ConfigError, match="expected one of"):
        lookup(RES_BLOCKS, None, key="conv")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="time_conditioning: unknown time conditioning 'adagn'"):
        TimeConditioning(channels=4, emb_channels=EMB, mode="adagn", norm_groups=2)


# ----- time embedding -------------------------------------------------------------------
def test_sinusoidal_embedding_shapes_and_values() -> None:
    t = torch.tensor([0, 1, 10, 999])
    emb = sinusoidal_embedding(t, 8)
    assert emb.shape == (4, 8)
    torch.testing.assert_close(emb, sinusoidal_embedding(t.float(), 8))  # int and float agree
    torch.testing.assert_close(emb[0], torch.tensor([1.0] * 4 + [0.0] * 4))  # cos 0, sin 0
    assert torch.cdist(emb, emb).add(torch.eye(4)).min() > 0.1  # distinct timesteps differ
    odd = sinusoidal_embedding(t, 7)
    assert odd.shape == (4, 7) and (odd[:, -1] == 0).all()


def test_timestep_embedding_mlp() -> None:
    embed = TimestepEmbedding(8, 32)
    out = embed(torch.tensor([3, 500]))
    assert out.shape == (2, 32)
    assert not torch.allclose(out[0], out[1])


def test_scale_shift_starts_from_the_plain_norm_when_projection_is_zero() -> None:
    cond = TimeConditioning(channels=4, emb_channels=EMB, mode="scale_shift", norm_groups=2)
    nn.init.zeros_(cond.proj[1].weight)
    nn.init.zeros_(cond.proj[1].bias)
    h = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(cond(h, torch.randn(2, EMB)), cond.norm(h))


# ----- residual blocks ------------------------------------------------------------------
def _block(conv: str, tc: str, se: bool, cin: int, cout: int, **kw: object) -> nn.Module:
    return make_res_block(conv, in_channels=cin, out_channels=cout, emb_channels=EMB,
                          time_conditioning=tc, norm_groups=2, dropout=0.1,
                          se_reduction=2 if se else None, expansion=2, **kw)


@pytest.mark.parametrize(("conv", "tc", "se"),
                         list(itertools.product(CONV_TYPES, TIME_CONDITIONINGS, (False, True))))
def test_res_block(conv: str, tc: str, se: bool) -> None:
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, EMB)

    same = _block(conv, tc, se, 8, 8).eval()
    torch.testing.assert_close(same(x, emb), x)  # zero-initialised last conv: identity at init

    block = randomize_zero_inits(_block(conv, tc, se, 8, 4)).eval()
    out = block(x, emb)
    assert out.shape == (2, 4, 6, 6)
    assert not torch.allclose(out, block(x, torch.randn(2, EMB)))  # the time embedding matters
    assert (block.se is not None) == se
    block.train()
    block(x, emb).square().mean().backward()
    assert_all_grads_finite(block)


def test_depthwise_separable_block_is_separable_and_smaller() -> None:
    std = _block("standard", "additive", False, 16, 16)
    sep = _block("depthwise_separable", "additive", False, 16, 16)
    assert isinstance(sep.in_conv, SeparableConv2d) and sep.in_conv.depthwise.groups == 16
    assert sum(p.numel() for p in sep.parameters()) < sum(p.numel() for p in std.parameters())
    # only the pointwise half of the last conv is zeroed, so the depthwise half still learns
    assert sep.out_conv.depthwise.weight.any() and not sep.out_conv.pointwise.weight.any()


def test_inverted_residual_expands_by_the_ratio() -> None:
    block = make_res_block("inverted_residual", in_channels=8, out_channels=4, emb_channels=EMB,
                           time_conditioning="additive", norm_groups=2, expansion=3)
    assert block.expand.out_channels == 12 and block.depthwise.groups == 12
    assert block.project.out_channels == 4


def test_squeeze_excite_gates_each_channel_between_zero_and_one() -> None:
    se = SqueezeExcite(8, reduction=4)
    assert se.fc1.out_channels == 2
    x = torch.rand(2, 8, 5, 5) + 0.1
    ratio = se(x) / x
    assert ((ratio > 0) & (ratio < 1)).all()
    # one gate per (sample, channel): constant over space
    torch.testing.assert_close(ratio, ratio[:, :, :1, :1].expand_as(ratio))
    assert SqueezeExcite(2, reduction=8).fc1.out_channels == 1


# ----- attention ------------------------------------------------------------------------
def _attention(name: str, channels: int = 8) -> nn.Module:
    layer = make_attention(name, channels=channels, heads=channels // 4, norm_groups=2, emb_channels=EMB)
    assert layer is not None
    return layer


def test_attention_none_builds_nothing_and_heads_must_divide_channels() -> None:
    assert make_attention("none", channels=8, heads=2, norm_groups=2, emb_channels=EMB) is None
    for name in ("full", "linear", "transformer"):
        assert _attention(name, 12).heads == 3
        with pytest.raises(ValueError, match="6 channels cannot be split into 4 attention heads"):
            make_attention(name, channels=6, heads=4, norm_groups=2, emb_channels=EMB)


@pytest.mark.parametrize("name", ["full", "linear", "transformer"])
def test_attention_layer(name: str) -> None:
    x, emb = torch.randn(2, 8, 4, 5), torch.randn(2, EMB)
    layer = _attention(name)
    torch.testing.assert_close(layer(x, emb), x)  # zero-initialised output / gates: identity

    randomize_zero_inits(layer)
    out = layer(x, emb)
    assert out.shape == x.shape and not torch.allclose(out, x)
    torch.testing.assert_close(layer(x.to(memory_format=torch.channels_last), emb), out)
    out.square().mean().backward()
    assert_all_grads_finite(layer)


@pytest.mark.parametrize("name", ["full", "linear", "transformer"])
def test_attention_is_permutation_equivariant_over_pixels(name: str) -> None:
    # No positional information: shuffling the pixels shuffles the output the same way.
    layer = randomize_zero_inits(_attention(name))
    x, emb = torch.randn(2, 8, 3, 4), torch.randn(2, EMB)
    perm = torch.randperm(12)
    shuffled = x.flatten(2)[:, :, perm].reshape(x.shape)
    torch.testing.assert_close(layer(shuffled, emb), layer(x, emb).flatten(2)[:, :, perm].reshape(x.shape))


def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
    b, c, n = t.shape
    return t.reshape(b, heads, c // heads, n)  # (B, heads, d, N)


def test_full_attention_matches_softmax_reference() -> None:
    layer = randomize_zero_inits(SelfAttention(8, heads=2, norm_groups=2))
    x = torch.randn(1, 8, 3, 3)
    q, k, v = (_heads(t, 2) for t in layer.qkv(layer.norm(x)).flatten(2).chunk(3, dim=1))
    weights = torch.softmax(q.transpose(-1, -2) @ k / 2.0, dim=-1)       # (B, heads, N, N), d=4
    ref = (v @ weights.transpose(-1, -2)).reshape(1, 8, 3, 3)
    torch.testing.assert_close(layer(x), x + layer.proj(ref))


def test_linear_attention_matches_quadratic_reference() -> None:
    layer = randomize_zero_inits(LinearAttention(8, heads=2, norm_groups=2))
    x = torch.randn(1, 8, 3, 3)
    q, k, v = (_heads(t, 2) for t in layer.qkv(layer.norm(x)).flatten(2).chunk(3, dim=1))
    sim = (F.elu(q) + 1).transpose(-1, -2) @ (F.elu(k) + 1)              # (B, heads, N, N)
    ref = (v @ (sim / sim.sum(-1, keepdim=True)).transpose(-1, -2)).reshape(1, 8, 3, 3)
    torch.testing.assert_close(layer(x), x + layer.proj(ref))


def test_transformer_block_is_conditioned_on_time() -> None:
    layer = randomize_zero_inits(TransformerBlock(8, heads=2, emb_channels=EMB))
    x = torch.randn(2, 8, 3, 3)
    assert not torch.allclose(layer(x, torch.randn(2, EMB)), layer(x, torch.randn(2, EMB)))


# ----- resampling -----------------------------------------------------------------------
@pytest.mark.parametrize(("name", "cin", "cout"), list(itertools.product(RESAMPLES, (4, 8), (8,))))
def test_resample(name: str, cin: int, cout: int) -> None:
    common = {"emb_channels": EMB, "time_conditioning": "scale_shift", "norm_groups": 2}
    down = randomize_zero_inits(make_resample(name, "down", in_channels=cin, out_channels=cout, **common))
    up = randomize_zero_inits(make_resample(name, "up", in_channels=cout, out_channels=cin, **common))
    x, emb = torch.randn(2, cin, 8, 6, requires_grad=True), torch.randn(2, EMB)
    h = down(x, emb)
    assert h.shape == (2, cout, 4, 3)
    y = up(h, emb)
    assert y.shape == x.shape
    torch.testing.assert_close(up(down(x.to(memory_format=torch.channels_last), emb), emb), y)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert_all_grads_finite(down)
    assert_all_grads_finite(up)


def test_avgpool_resample_adds_a_projection_only_when_width_changes() -> None:
    common = {"emb_channels": EMB, "time_conditioning": "additive", "norm_groups": 2}
    assert not list(make_resample("avgpool", "down", in_channels=4, out_channels=4, **common).parameters())
    assert list(make_resample("avgpool", "up", in_channels=8, out_channels=4, **common).parameters())
    x = torch.randn(1, 4, 4, 4)
    down = make_resample("avgpool", "down", in_channels=4, out_channels=4, **common)
    torch.testing.assert_close(down(x, None), F.avg_pool2d(x, 2))


def test_resblock_resample_uses_the_time_embedding() -> None:
    down = randomize_zero_inits(make_resample("resblock", "down", in_channels=4, out_channels=8,
                                              emb_channels=EMB, time_conditioning="additive",
                                              norm_groups=2))
    x = torch.randn(2, 4, 4, 4)
    assert not torch.allclose(down(x, torch.randn(2, EMB)), down(x, torch.randn(2, EMB)))


def test_bad_resample_direction() -> None:
    with pytest.raises(ValueError, match="direction"):
        make_resample("conv", "sideways", in_channels=4, out_channels=4, emb_channels=EMB,
                      time_conditioning="additive", norm_groups=2)
