"""A candidate's timing under a budget: the one measurement the gate and the evaluator both take.

:func:`candidate_timing` times a built network with :func:`evaluators.throughput.timing_figures`
at the budget's timing batch and repeat length (one CPU thread, :mod:`evaluators.contention`)
and, in a latent search, adds ``throughput_with_decode`` (:mod:`evaluators.latent`).  It sits
apart from both so that neither module imports the other.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from evaluators.contention import timing_threads
from evaluators.throughput import timing_figures

__all__ = ["candidate_timing"]


def candidate_timing(model: nn.Module, *, input_shape: tuple[int, ...], budget: Any, device: torch.device,
                     dtype: str, latent: Any = None) -> dict[str, Any]:
    """A candidate's timing figures under ``budget`` (:func:`timing_figures` at its timing batch and
    repeat length, one CPU thread), plus ``throughput_with_decode`` in a latent search (``latent``:
    its :class:`evaluators.latent.LatentConfig`).  The gate and the evaluator both time through it."""
    timing = {"batch_size": budget.throughput_batch, "device": device, "dtype": dtype,
              "num_threads": timing_threads(device), "min_repeat_s": budget.timing_repeat_s}
    figures = timing_figures(model, input_shape=input_shape, sample_steps=budget.sample_steps, **timing)
    if latent is not None:  # imported here: a pixel search's gate never loads the autoencoder's modules
        from evaluators.latent import throughput_with_decode

        figures["throughput_with_decode"] = throughput_with_decode(figures["throughput"], latent, **timing)
    return figures
