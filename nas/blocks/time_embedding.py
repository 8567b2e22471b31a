"""Sinusoidal timestep embedding followed by an MLP (Ho et al. 2020, "Denoising Diffusion
Probabilistic Models", after Vaswani et al. 2017's positional encoding), and the layer that
injects it into a feature map: additive (DDPM) or scale-shift / AdaGN (Dhariwal & Nichol 2021).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nas.errors import ConfigError, close_match_hint
from nas.spec import TIME_CONDITIONINGS

__all__ = ["TimeConditioning", "TimestepEmbedding", "sinusoidal_embedding"]


def sinusoidal_embedding(t: Tensor, dim: int, *, max_period: float = 10_000.0) -> Tensor:
    """Embed timesteps ``t`` (shape ``(B,)``, int or float) as ``(B, dim)`` cos/sin features.

    Frequencies fall geometrically from 1 to ``1 / max_period``; an odd ``dim`` gets a zero
    column so the width is exact.
    """
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=t.device) / max(half, 1)
    freqs = torch.exp(-math.log(max_period) * exponents)          # (half,)
    args = t.to(torch.float32)[:, None] * freqs[None, :]          # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)   # (B, 2*half)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """Sinusoidal features of width ``channels`` -> Linear-SiLU-Linear to ``emb_channels``."""

    def __init__(self, channels: int, emb_channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.mlp = nn.Sequential(
            nn.Linear(channels, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels)
        )

    def forward(self, t: Tensor) -> Tensor:
        return self.mlp(sinusoidal_embedding(t, self.channels))


class TimeConditioning(nn.Module):
    """GroupNorm a feature map and condition it on the time embedding.

    ``additive`` (DDPM): ``norm(h + W e)``.  ``scale_shift`` (AdaGN, ADM):
    ``norm(h) * (1 + scale) + shift`` with ``(scale, shift) = W e``.  The caller applies the
    activation afterwards.
    """

    def __init__(self, *, channels: int, emb_channels: int, mode: str, norm_groups: int) -> None:
        super().__init__()
        if mode not in TIME_CONDITIONINGS:
            raise ConfigError(
                f"unknown time conditioning {mode!r}{close_match_hint(mode, TIME_CONDITIONINGS)}; "
                f"expected one of {list(TIME_CONDITIONINGS)}", key="time_conditioning")
        self.scale_shift = mode == "scale_shift"
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.proj = nn.Sequential(
            nn.SiLU(), nn.Linear(emb_channels, channels * (2 if self.scale_shift else 1))
        )

    def forward(self, h: Tensor, emb: Tensor) -> Tensor:
        e = self.proj(emb)[:, :, None, None]  # (B, C) or (B, 2C) -> broadcast over H, W
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            return self.norm(h) * (1 + scale) + shift
        return self.norm(h + e)
