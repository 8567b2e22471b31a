"""Video U-Nets: the spec's time axis, the temporal layers and the builder's video path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.blocks.temporal import TemporalAttention, TemporalConv, frames_to_sequences, sequences_to_frames
from nas.cost import static_costs
from nas.errors import ConfigError
from nas.spec import LevelSpec, UNetSpec
from nas.unet import build_unet

TEMPORAL = ["conv1d", "attention"]


def video_spec(frames: int, temporal: str = "attention", placement: str = "every", **kw: object) -> UNetSpec:
    levels = (LevelSpec(channel_mult=1, blocks=1, decoder_blocks=2, temporal=temporal, temporal_placement=placement),
              LevelSpec(channel_mult=2, blocks=1, decoder_blocks=2, temporal=temporal, temporal_placement=placement))
    return UNetSpec(image_size=16, frames=frames, base_channels=8, head_channels=8, levels=levels, **kw)


def perturbed(model: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter moved off its initial value: the zero-initialised output layers (the
    temporal layers' and the U-Net's last conv) would otherwise hide any mixing."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=gen))
    return model.eval()


# A one-frame spec has no temporal layers (refused, see the last test).
@pytest.mark.parametrize(("frames", "temporal"), [(1, "none")] + [(f, t) for f in (4, 8) for t in ["none", *TEMPORAL]])
def test_shapes_for_1_4_and_8_frames(frames: int, temporal: str) -> None:
    spec = video_spec(frames, temporal)
    assert spec.sample_shape == ((1, frames, 16, 16) if frames > 1 else (1, 16, 16))
    model = build_unet(spec)
    x = torch.randn(2, 1, frames, 16, 16)
    out = model(x, torch.tensor([3, 500]))
    assert out.shape == x.shape
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Costs are counted for a whole clip: MACs grow with the frame count.
    assert static_costs(spec)["macs"] > 0


def test_an_image_spec_is_bit_identical_through_the_video_path() -> None:
    spec = UNetSpec(image_size=16, base_channels=8, head_channels=8,
                    levels=(LevelSpec(attention="full"), LevelSpec(channel_mult=2)))
    model = perturbed(build_unet(spec))
    x, t = torch.randn(3, 1, 16, 16), torch.tensor([0, 10, 999])
    with torch.no_grad():
        image = model(x, t)
        video = model(x.unsqueeze(2), t)
    assert video.shape == (3, 1, 1, 16, 16)
    assert torch.equal(video.squeeze(2), image)


def test_an_image_spec_keeps_its_digest_fields_and_parameter_names() -> None:
    spec = UNetSpec()
    data = spec.to_dict()
    assert "frames" not in data and all("temporal" not in lv and "temporal_placement" not in lv
                                        for lv in data["levels"])
    assert not any("temporal" in name for name, _ in build_unet(spec).named_parameters())
    video = video_spec(4)
    assert video.to_dict()["frames"] == 4 and UNetSpec.from_dict(video.to_dict()) == video
    assert video.digest() != video_spec(8).digest()


@pytest.mark.parametrize("layer", [TemporalConv(8, norm_groups=4), TemporalAttention(8, heads=2, norm_groups=4)],
                         ids=TEMPORAL)
def test_temporal_layers_commute_with_spatial_shifts(layer: nn.Module) -> None:
    layer = perturbed(layer)
    frames = 5
    h = torch.randn(2 * frames, 8, 6, 7)
    shift = lambda x: torch.roll(x, shifts=(2, -3), dims=(2, 3))
    with torch.no_grad():
        torch.testing.assert_close(layer(shift(h), frames), shift(layer(h, frames)))


def test_frame_sequences_round_trip() -> None:
    h = torch.randn(3 * 4, 5, 6, 7)
    seq = frames_to_sequences(h, 4)
    assert seq.shape == (3 * 6 * 7, 5, 4)
    # Clip 1, pixel (2, 3), channel 4 over its frames is one sequence.
    assert torch.equal(seq[1 * 42 + 2 * 7 + 3, 4], h.reshape(3, 4, 5, 6, 7)[1, :, 4, 2, 3])
    assert torch.equal(sequences_to_frames(seq, 4, 6, 7), h)
    with pytest.raises(ValueError, match="not a whole number of 4-frame clips"):
        frames_to_sequences(torch.randn(6, 5, 6, 7), 4)


@pytest.mark.parametrize("temporal", ["none", *TEMPORAL])
def test_frame_zero_reaches_frame_three_only_through_temporal_layers(temporal: str) -> None:
    model = perturbed(build_unet(video_spec(4, temporal)))
    x = torch.randn(1, 1, 4, 16, 16)
    changed = x.clone()
    changed[:, :, 0] += torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        before, after = model(x, torch.tensor([100])), model(changed, torch.tensor([100]))
    moved = (after[:, :, 3] - before[:, :, 3]).abs().max().item()
    if temporal == "none":
        assert moved < 1e-6  # frames are independent: the network is the image U-Net per frame
    else:
        assert moved > 1e-3
    assert (after[:, :, 0] - before[:, :, 0]).abs().max().item() > 1e-3


def test_last_placement_puts_one_temporal_layer_per_encoder_and_decoder_level() -> None:
    spec = video_spec(4, "conv1d", placement="last")
    every = video_spec(4, "conv1d", placement="every")
    count = lambda s: sum(isinstance(m, TemporalConv) for m in build_unet(s).modules())
    # 2 levels x (encoder 1 block + decoder 2 blocks) + the bottleneck's 2 layers.
    assert count(every) == 2 * 3 + 2
    assert count(spec) == 2 * 2 + 1


def test_a_fresh_video_unet_is_the_image_unet_frame_by_frame() -> None:
    # Zero-initialised temporal branches: identity at initialisation (Make-A-Video's choice).
    spec = video_spec(4, "attention")
    model = build_unet(spec).eval()
    x = torch.randn(2, 1, 4, 16, 16)
    t = torch.tensor([5, 50])
    with torch.no_grad():
        out = model(x, t)
        per_frame = torch.stack([model(x[:, :, f], t) for f in range(4)], dim=2)
    torch.testing.assert_close(out, per_frame)


def test_spec_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"levels\[0\]\.temporal: temporal = conv1d needs a video spec"):
        UNetSpec(levels=(LevelSpec(temporal="conv1d"),))
    with pytest.raises(ConfigError, match=r"temporal: unknown value 'lstm'.*expected one of \['none', 'conv1d'"):
        LevelSpec(temporal="lstm")
    with pytest.raises(ConfigError, match=r"frames: expected a value in \[1, 64\], got 0"):
        UNetSpec(frames=0)
    with pytest.raises(ConfigError, match=r"levels\[1\]\.temporal: 24 channels are not divisible by head_channels 16"):
        UNetSpec(frames=4, base_channels=8, head_channels=16, levels=(
            LevelSpec(), LevelSpec(channel_mult=3, temporal="attention")))
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 1, H, W\) or \(B, 1, F, H, W\)"):
        build_unet(video_spec(4))(torch.randn(1, 1, 1, 4, 16, 16), torch.tensor([1]))
