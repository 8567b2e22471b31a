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
        self._averaged = list(self.model.parameters())
        self._averaged_buffers = list(self.model.buffers())
        self._source: tuple[nn.Module, list[torch.Tensor], list[torch.Tensor]] | None = None

    def _tensors_of(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        # Listing a module's parameters walks every submodule each step (a few per cent of a small
        # U-Net's training time), so the lists are kept while the same module is passed.
        if self._source is None or self._source[0] is not model:
            self._source = (model, [p.detach() for p in model.parameters()], list(model.buffers()))
        return self._source[1], self._source[2]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards ``model``'s current weights (buffers are copied)."""
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params, buffers = self._tensors_of(model)
        if len(params) != len(self._averaged) or len(buffers) != len(self._averaged_buffers):
            raise ValueError("EMA.update: the model's parameters do not match the averaged copy's")
        if params:
            torch._foreach_lerp_(self._averaged, params, 1 - decay)  # one fused call, as torch.optim's foreach paths
        for avg, cur in zip(self._averaged_buffers, buffers, strict=True):
            avg.copy_(cur)
