"""Resampling between U-Net levels, the ``UNetSpec.resample`` types.  Downsamplers map level
``i``'s width to level ``i+1``'s and halve H, W; upsamplers do the reverse.

- ``conv``: stride-2 3x3 conv down, nearest x2 + 3x3 conv up (DDPM, Ho et al. 2020).
- ``avgpool``: 2x2 average pool down, nearest x2 up, with a 1x1 conv only when the width
  changes (applied at the lower resolution, where it is cheaper).
- ``resblock``: a time-conditioned residual block that resamples inside (BigGAN, Brock et al.
  2019; ADM's ``resblock_updown``).
- ``pixel_shuffle``: space-to-depth + 1x1 down, 1x1 + depth-to-space up (Shi et al. 2016,
  "Real-Time Single Image and Video Super-Resolution ... Sub-Pixel Convolution").

All take ``forward(x, emb)``; only the residual-block resamplers use ``emb``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks.residual import ResBlock

__all__ = [
    "AvgPoolDownsample",
    "ConvDownsample",
    "ConvUpsample",
    "NearestUpsample",
    "PixelShuffleUpsample",
    "PixelUnshuffleDownsample",
    "ResBlockDownsample",
    "ResBlockUpsample",
]


def _pointwise_if_needed(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)


class ConvDownsample(nn.Module):
    """Stride-2 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(x)


class ConvUpsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AvgPoolDownsample(nn.Module):
    """2x2 average pool, then a 1x1 conv if the width changes."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = _pointwise_if_needed(in_channels, out_channels)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.proj(F.avg_pool2d(x, 2))


class NearestUpsample(nn.Module):
    """A 1x1 conv if the width changes, then nearest-neighbour x2 (the two commute)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = _pointwise_if_needed(in_channels, out_channels)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return F.interpolate(self.proj(x), scale_factor=2.0, mode="nearest")


class PixelUnshuffleDownsample(nn.Module):
    """Space-to-depth (C -> 4C at half resolution), then a 1x1 conv to the new width."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(2)
        self.proj = nn.Conv2d(4 * in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.proj(self.unshuffle(x))


class PixelShuffleUpsample(nn.Module):
    """A 1x1 conv to 4x the new width, then depth-to-space (sub-pixel convolution)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, 4 * out_channels, 1)
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: Tensor, emb: Tensor | None = None) -> Tensor:
        return self.shuffle(self.proj(x))


class ResBlockDownsample(ResBlock):
    """BigGAN/ADM residual block that halves the resolution (average pool on both paths)."""

    def __init__(self, *, in_channels: int, out_channels: int, emb_channels: int,
                 time_conditioning: str = "scale_shift", norm_groups: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         emb_channels=emb_channels, time_conditioning=time_conditioning,
                         norm_groups=norm_groups, dropout=dropout, resample="down")


class ResBlockUpsample(ResBlock):
    """BigGAN/ADM residual block that doubles the resolution (nearest on both paths)."""

    def __init__(self, *, in_channels: int, out_channels: int, emb_channels: int,
                 time_conditioning: str = "scale_shift", norm_groups: int = 32,
                 dropout: float = 0.0) -> None:
        super().__init__(in_channels=in_channels, out_channels=out_channels,
                         emb_channels=emb_channels, time_conditioning=time_conditioning,
                         norm_groups=norm_groups, dropout=dropout, resample="up")
