"""Squeeze-and-excitation channel gating (Hu et al. 2018, "Squeeze-and-Excitation Networks",
arXiv:1709.01507): global average pool, a bottleneck MLP and a sigmoid gate per channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Rescale each channel by a gate in (0, 1) computed from the pooled feature map.

    ``reduction`` is the bottleneck ratio ``r`` of the paper; the hidden width never drops
    below one channel.
    """

    def __init__(self, channels: int, *, reduction: int = 4) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Conv2d(channels, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        s = x.mean(dim=(2, 3), keepdim=True)   # (B, C, 1, 1) squeeze
        s = self.fc2(F.relu(self.fc1(s)))      # (B, C, 1, 1) excite
        return x * torch.sigmoid(s)
