"""Time-conditioned residual blocks, the three ``LevelSpec.conv`` types.

- ``standard``: the DDPM / ADM block (Ho et al. 2020; Dhariwal & Nichol 2021,
  arXiv:2105.05233): GroupNorm-SiLU-Conv3x3, time conditioning, GroupNorm-SiLU-Dropout-Conv3x3,
  a 1x1 skip when the width changes, last conv zero-initialised so the block starts as the
  identity.  With ``resample`` it is also BigGAN's up/down residual block (Brock et al. 2019).
- ``depthwise_separable``: the same block with each 3x3 conv replaced by depthwise 3x3 +
  pointwise 1x1 (Howard et al. 2017, "MobileNets").
- ``inverted_residual``: MobileNetV2's expand-depthwise-project block (Sandler et al. 2018,
  arXiv:1801.04381) with GroupNorm, SiLU and time conditioning on the expanded features.

Squeeze-excitation (Hu et al. 2018) sits on the residual branch: after the last conv in the
first two types (SE-ResNet), after the depthwise conv in the inverted residual (MobileNetV3).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from nas.blocks.layers import conv3x3, zero_init_
from nas.blocks.squeeze_excite import SqueezeExcite
from nas.blocks.time_embedding import TimeConditioning

__all__ = ["DepthwiseSeparableResBlock", "InvertedResidualBlock", "ResBlock"]

_RESAMPLE_DIRECTIONS = (None, "down", "up")


def _skip(in_channels: int, out_channels: int) -> nn.Module:
    return nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)


def _resample(direction: str | None) -> nn.Module:
    if direction == "down":
        return nn.AvgPool2d(2)
    if direction == "up":
        return nn.Upsample(scale_factor=2.0, mode="nearest")
    return nn.Identity()


class ResBlock(nn.Module):
    """DDPM/ADM residual block; ``forward(x (B, in, H, W), emb (B, E)) -> (B, out, H', W')``.

    ``resample`` (``"down"`` / ``"up"``) halves or doubles H and W inside the block on both
    paths, after the first activation, as in BigGAN and ADM.
    """

    separable = False  # subclasses swap the 3x3 convs for depthwise-separable ones

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        time_conditioning: str = "scale_shift",
        norm_groups: int = 32,
        dropout: float = 0.0,
        se_reduction: int | None = None,
        resample: str | None = None,
    ) -> None:
        super().__init__()
        if resample not in _RESAMPLE_DIRECTIONS:
            raise ValueError(f"resample must be one of {list(_RESAMPLE_DIRECTIONS)}, got {resample!r}")
        self.in_norm = nn.GroupNorm(norm_groups, in_channels)
        self.resample = _resample(resample)
        self.in_conv = conv3x3(in_channels, out_channels, separable=self.separable)
        self.cond = TimeConditioning(channels=out_channels, emb_channels=emb_channels,
                                     mode=time_conditioning, norm_groups=norm_groups)
        self.dropout = nn.Dropout(dropout)
        self.out_conv = zero_init_(conv3x3(out_channels, out_channels, separable=self.separable))
        self.se = SqueezeExcite(out_channels, reduction=se_reduction) if se_reduction else None
        self.skip = _skip(in_channels, out_channels)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = F.silu(self.in_norm(x))
        # Resample after the activation on both paths so the skip sees the same grid (ADM).
        h, x = self.resample(h), self.resample(x)
        h = self.in_conv(h)                       # (B, out, H', W')
        h = F.silu(self.cond(h, emb))
        h = self.out_conv(self.dropout(h))
        if self.se is not None:
            h = self.se(h)
        return self.skip(x) + h


class DepthwiseSeparableResBlock(ResBlock):
    """:class:`ResBlock` with each 3x3 conv as depthwise 3x3 + pointwise 1x1 (MobileNet)."""

    separable = True


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 inverted residual with time conditioning.

    ``x -> GroupNorm -> 1x1 expand to out*expansion -> time conditioning -> SiLU -> depthwise
    3x3 -> GroupNorm -> SiLU -> [SE] -> Dropout -> 1x1 project (zero-init)``, plus the skip.
    No activation before the expansion or after the projection: MobileNetV2's linear
    bottleneck keeps the narrow tensors free of non-linearities.  The hidden width follows the
    output width so that a decoder block fed a concatenated skip is no wider inside.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        emb_channels: int,
        time_conditioning: str = "scale_shift",
        norm_groups: int = 32,
        dropout: float = 0.0,
        se_reduction: int | None = None,
        expansion: int = 4,
    ) -> None:
        super().__init__()
        hidden = out_channels * expansion
        self.in_norm = nn.GroupNorm(norm_groups, in_channels)
        self.expand = nn.Conv2d(in_channels, hidden, 1)
        self.cond = TimeConditioning(channels=hidden, emb_channels=emb_channels,
                                     mode=time_conditioning, norm_groups=norm_groups)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.mid_norm = nn.GroupNorm(norm_groups, hidden)
        self.se = SqueezeExcite(hidden, reduction=se_reduction) if se_reduction else None
        self.dropout = nn.Dropout(dropout)
        self.project = zero_init_(nn.Conv2d(hidden, out_channels, 1))
        self.skip = _skip(in_channels, out_channels)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.expand(self.in_norm(x))          # (B, out*expansion, H, W)
        h = F.silu(self.cond(h, emb))
        h = F.silu(self.mid_norm(self.depthwise(h)))
        if self.se is not None:
            h = self.se(h)
        h = self.project(self.dropout(h))         # (B, out, H, W)
        return self.skip(x) + h
