"""Exponential moving average of a model's weights, the weights every candidate is scored with.

Scoring EMA weights matters for diffusion models: non-EMA FID can be several times worse
(DDPM reproductions, see research notes).  The decay warms up as ``min(decay, (1 + n) / (10 + n))``
(the TensorFlow ``ExponentialMovingAverage`` num_updates rule) so that a brief proxy run is not
scored on weights still dominated by the initialisation.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """A frozen copy of ``model`` tracking its weights; ``decay == 0`` copies them exactly."""

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (buffers are copied)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, cur in zip(self.model.parameters(), model.parameters(), strict=True):
            avg.lerp_(cur.detach(), 1 - decay)
        for avg, cur in zip(self.model.buffers(), model.buffers(), strict=True):
            avg.copy_(cur)
