"""Small layer helpers shared by the blocks: 3x3 convolutions (plain or depthwise-separable,
Howard et al. 2017, "MobileNets") and zero initialisation of a residual branch's last layer
(Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis").
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["SeparableConv2d", "conv3x3", "zero_init_"]


class SeparableConv2d(nn.Module):
    """A 3x3 depthwise convolution followed by a 1x1 pointwise one (MobileNet)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


def conv3x3(in_channels: int, out_channels: int, *, separable: bool = False) -> nn.Module:
    """A same-padded 3x3 convolution, or its depthwise-separable replacement."""
    if separable:
        return SeparableConv2d(in_channels, out_channels)
    return nn.Conv2d(in_channels, out_channels, 3, padding=1)


def zero_init_(module: nn.Module) -> nn.Module:
    """Zero the weights of ``module`` so the residual branch it ends starts as the identity.

    For a separable convolution only the pointwise half is zeroed: zeroing both halves of a
    product would leave each with a zero gradient forever.
    """
    target = module.pointwise if isinstance(module, SeparableConv2d) else module
    for p in target.parameters():
        nn.init.zeros_(p)
    return module
