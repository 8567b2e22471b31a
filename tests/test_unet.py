"""The U-Net builder: shapes, skip bookkeeping, parameter counting and a sweep of random specs."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from nas.errors import ConfigError
from nas.spec import (
    ATTENTION_TYPES,
    CONV_TYPES,
    MAX_BLOCKS,
    MAX_DECODER_BLOCKS,
    PREDICTIONS,
    RESAMPLES,
    SCHEDULES,
    SKIP_FUSIONS,
    TIME_CONDITIONINGS,
    VARIANCES,
    LevelSpec,
    UNetSpec,
)
from nas.unet import UNet, build_unet, count_parameters


def randomize_zero_inits(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialised weights random values so every branch is active and gets gradients."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def tiny(**overrides: Any) -> UNetSpec:
    """A tiny spec (base 8, 2 norm groups, 8x8 images) with every field overridable."""
    fields: dict[str, Any] = {
        "image_size": 8, "in_channels": 1, "base_channels": 8, "norm_groups": 2, "head_channels": 4,
        "expansion": 2, "se_reduction": 2,
        "levels": (LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2, attention="none"),
                LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, attention="full")),
        "mid_attention": "full", "diffusion_steps": 100,
    }
    fields.update(overrides)
    return UNetSpec(**fields)


def run(model: UNet, batch: int = 2, *, seed: int = 0) -> torch.Tensor:
    spec = model.spec
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, spec.in_channels, spec.image_size, spec.image_size, generator=gen)
    t = torch.randint(0, spec.diffusion_steps, (batch,), generator=gen)
    return model(x, t)


def forward_backward(spec: UNetSpec, *, seed: int = 0) -> UNet:
    """Build, activate the zero-initialised branches, run forward + backward, check everything."""
    torch.manual_seed(seed)
    model = randomize_zero_inits(build_unet(spec), seed)
    out = run(model, seed=seed)
    assert out.shape == (2, spec.out_channels, spec.image_size, spec.image_size)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing}"
    assert torch.isfinite(torch.cat([p.grad.flatten() for p in model.parameters()])).all()
    return model


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # Tiny tensors: intra-op threads only add synchronisation cost on a busy 2-core machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----- structure ------------------------------------------------------------------------
def test_build_unet_returns_a_module_holding_its_spec() -> None:
    spec = tiny()
    model = build_unet(spec)
    assert isinstance(model, UNet) and model.spec is spec
    out = run(model)
    assert out.shape == (2, 1, 8, 8)
    assert not out.any()  # zero-initialised output conv (ADM): the untrained net predicts 0


def test_learned_variance_doubles_output_channels() -> None:
    spec = tiny(in_channels=3, variance="learned")
    assert run(build_unet(spec)).shape == (2, 6, 8, 8)


@pytest.mark.parametrize("fusion", SKIP_FUSIONS)
def test_skip_fusion(fusion: str) -> None:
    model = forward_backward(tiny(skip_fusion=fusion))
    first = model.decoder[0][0]
    assert first.takes_skip
    expected = 16 if fusion == "concat" else 8
    assert first.block.in_norm.num_channels == expected


def test_ddpm_decoder_consumes_every_skip_and_extra_blocks_take_none() -> None:
    levels = (LevelSpec(blocks=2, decoder_blocks=3), LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2))
    model = build_unet(tiny(levels=levels))
    assert [[layer.takes_skip for layer in lv] for lv in model.decoder] == [[True] * 3, [True] * 2]

    levels = (LevelSpec(blocks=1, decoder_blocks=4), LevelSpec(channel_mult=2, blocks=2, decoder_blocks=1))
    model = forward_backward(tiny(levels=levels))
    assert [[layer.takes_skip for layer in lv] for lv in model.decoder] == [
        [True, True, False, False], [True]]


def test_skips_are_consumed_most_recent_first() -> None:
    # One level, one encoder block, add fusion, blocks without time effect: compare against a
    # hand-written forward that pops the block output first and the stem output second.
    model = randomize_zero_inits(build_unet(tiny(
        levels=(LevelSpec(blocks=1, decoder_blocks=2),), skip_fusion="add", mid_attention="none")))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 2])
    emb = model.time_embed(t)
    stem = model.stem(x)
    enc = model.encoder[0][0](stem, emb)
    h = model.mid[1](model.mid[0](enc, emb), emb)
    h = model.decoder[0][0](h + enc, emb)
    h = model.decoder[0][1](h + stem, emb)
    expected = model.out_conv(torch.nn.functional.silu(model.out_norm(h)))
    torch.testing.assert_close(model(x, t), expected)


def test_mid_uses_last_level_conv_se_and_mid_attention() -> None:
    levels = (LevelSpec(), LevelSpec(channel_mult=2, conv="inverted_residual", se=True))
    model = build_unet(tiny(levels=levels, mid_attention="linear"))
    assert type(model.mid[0].block).__name__ == "InvertedResidualBlock"
    assert model.mid[0].block.se is not None
    assert type(model.mid[0].attention).__name__ == "LinearAttention"
    assert model.mid[1].attention is None


def test_attention_heads_follow_head_channels_with_one_head_when_narrower() -> None:
    levels = (LevelSpec(attention="full"), LevelSpec(channel_mult=4, attention="transformer"))
    model = forward_backward(tiny(levels=levels, head_channels=16, mid_attention="linear"))
    assert model.encoder[0][0].attention.heads == 1     # 8 channels < 16: one head of 8
    assert model.encoder[1][0].attention.heads == 2     # 32 channels: two heads of 16
    assert model.mid[0].attention.heads == 2


def test_zero_block_levels() -> None:
    levels = (LevelSpec(blocks=0, decoder_blocks=0, attention="full"),
              LevelSpec(channel_mult=2, blocks=0, decoder_blocks=1),
              LevelSpec(channel_mult=2, blocks=2, decoder_blocks=0, attention="linear"))
    model = forward_backward(tiny(levels=levels))
    assert [len(lv) for lv in model.encoder] == [0, 0, 2]
    assert [len(lv) for lv in model.decoder] == [0, 1, 0]


@pytest.mark.parametrize(("levels", "size"), [(1, 8), (3, 28), (3, 32), (4, 8), (5, 16), (6, 32)])
def test_level_counts_and_image_sizes(levels: int, size: int) -> None:
    lv = tuple(LevelSpec(channel_mult=1 + i % 2, blocks=1, decoder_blocks=1) for i in range(levels))
    forward_backward(tiny(levels=lv, image_size=size, mid_attention="none"))


def test_channels_last_input_gives_the_same_output() -> None:
    spec = tiny(levels=(LevelSpec(attention="transformer"), LevelSpec(channel_mult=2, attention="linear")),
                resample="pixel_shuffle")
    model = randomize_zero_inits(build_unet(spec))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([5, 50])
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last), t), model(x, t))
    model_cl = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model_cl(x.to(memory_format=torch.channels_last), t), model(x, t))


def test_bfloat16_autocast_forward_and_backward() -> None:
    levels = (LevelSpec(attention="linear"), LevelSpec(channel_mult=2, attention="transformer"))
    model = randomize_zero_inits(build_unet(tiny(levels=levels)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run(model)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("attention", ["full", "linear", "transformer"])
def test_forward_runs_on_the_meta_device(attention: str) -> None:
    # nas.cost counts MACs by running the model on `meta`; every layer must support it.
    spec = tiny(levels=(LevelSpec(attention=attention), LevelSpec(channel_mult=2)), resample="resblock")
    with torch.device("meta"):
        model = build_unet(spec)
        out = model(torch.zeros(1, 1, 8, 8), torch.zeros(1, dtype=torch.long))
    assert out.shape == (1, 1, 8, 8) and out.is_meta


def test_timesteps_int_float_and_scalar_agree() -> None:
    model = randomize_zero_inits(build_unet(tiny()))
    x = torch.randn(2, 1, 8, 8)
    out = model(x, torch.tensor([7, 7]))
    torch.testing.assert_close(model(x, torch.tensor([7.0, 7.0])), out)
    torch.testing.assert_close(model(x, torch.tensor(7)), out)
    assert not torch.allclose(model(x, torch.tensor([8, 8])), out)


def test_dropout_reaches_the_residual_blocks() -> None:
    model = randomize_zero_inits(build_unet(tiny(dropout=0.5)))
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert dropouts and all(m.p == 0.5 for m in dropouts)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 4])
    assert not torch.allclose(model(x, t), model(x, t))      # train mode: stochastic
    model.eval()
    torch.testing.assert_close(model(x, t), model(x, t))      # eval mode: deterministic


def test_bad_inputs_are_reported() -> None:
    model = build_unet(tiny())
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 1, H, W\)"):
        model(torch.randn(2, 3, 8, 8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="not divisible by 2"):
        model(torch.randn(2, 1, 9, 9), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"expected t of shape \(2,\)"):
        model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2, 3]))


def test_a_few_adam_steps_reduce_the_loss() -> None:
    torch.manual_seed(0)
    model = build_unet(tiny(dropout=0.0))
    x, t = torch.randn(4, 1, 8, 8), torch.randint(0, 100, (4,))
    target = torch.randn(4, 1, 8, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (model(x, t) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


# ----- parameter counting ---------------------------------------------------------------
@pytest.mark.parametrize("overrides", [
    {},
    {"skip_fusion": "add", "resample": "resblock", "time_conditioning": "additive"},
    {"levels": (LevelSpec(conv="inverted_residual", se=True, attention="transformer"),
                LevelSpec(channel_mult=3, conv="depthwise_separable", blocks=0, decoder_blocks=4)),
     "resample": "pixel_shuffle", "mid_attention": "none", "head_channels": 8,
     "variance": "learned", "in_channels": 3},
])
def test_count_parameters_matches_the_real_model(overrides: dict[str, Any]) -> None:
    spec = tiny(**overrides)
    assert count_parameters(spec) == sum(p.numel() for p in build_unet(spec).parameters())


def test_count_parameters_of_a_large_spec_is_fast_and_allocates_nothing() -> None:
    spec = UNetSpec(image_size=256, base_channels=256, head_channels=64, norm_groups=32,
                    levels=tuple(LevelSpec(channel_mult=m, blocks=3, decoder_blocks=4, attention="full")
                                 for m in (1, 1, 2, 2, 4, 4)))
    assert count_parameters(spec) > 500_000_000  # would need > 2 GB if materialised


# ----- random specs ---------------------------------------------------------------------
def random_spec(rng: random.Random) -> UNetSpec:
    """Choose every LevelSpec and UNetSpec field at random; retry until the spec is valid."""
    while True:
        n = rng.randint(1, 3)  # 4-6 levels: test_level_counts_and_image_sizes
        levels = tuple(
            LevelSpec(channel_mult=rng.choice([1, 2, 3]),
                      blocks=rng.randint(0, MAX_BLOCKS),
                      decoder_blocks=rng.randint(0, MAX_DECODER_BLOCKS),
                      conv=rng.choice(CONV_TYPES),
                      se=rng.random() < 0.5,
                      attention=rng.choice(ATTENTION_TYPES))
            for _ in range(n))
        try:
            return UNetSpec(
                image_size=rng.choice([8, 16]),
                in_channels=rng.choice([1, 3]),
                base_channels=rng.choice([4, 8]),
                levels=levels,
                mid_attention=rng.choice(ATTENTION_TYPES),
                head_channels=rng.choice([4, 8]),
                expansion=rng.choice([1, 2, 4]),
                se_reduction=rng.choice([1, 2, 4]),
                skip_fusion=rng.choice(SKIP_FUSIONS),
                time_conditioning=rng.choice(TIME_CONDITIONINGS),
                resample=rng.choice(RESAMPLES),
                norm_groups=rng.choice([1, 2, 4]),
                dropout=rng.choice([0.0, 0.1]),
                prediction=rng.choice(PREDICTIONS),
                variance=rng.choice(VARIANCES),
                schedule=rng.choice(SCHEDULES),
                diffusion_steps=rng.choice([10, 1000]),
            )
        except ConfigError:
            continue


def test_random_specs_build_run_and_backpropagate() -> None:
    rng = random.Random(1234)
    seen: dict[str, set[Any]] = {"conv": set(), "attention": set(), "resample": set(), "levels": set()}
    for i in range(100):
        spec = random_spec(rng)
        model = forward_backward(spec, seed=i)
        if i % 4 == 0:  # counting on `meta` costs a model build; a quarter of the sweep suffices
            assert count_parameters(spec) == sum(p.numel() for p in model.parameters())
        seen["conv"].update(lv.conv for lv in spec.levels)
        seen["attention"].update(lv.attention for lv in spec.levels)
        seen["resample"].add(spec.resample)
        seen["levels"].add(len(spec.levels))
    # the sweep really covers every option
    assert seen["conv"] == set(CONV_TYPES) and seen["attention"] == set(ATTENTION_TYPES)
    assert seen["resample"] == set(RESAMPLES) and seen["levels"] == {1, 2, 3}
