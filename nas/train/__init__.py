"""Train an exported architecture fully: :func:`train` with a :class:`TrainRequest`.

Full training uses the proxy evaluator's recipe unchanged, only for longer (by default 8x the
budget's steps), with held-out evaluations, atomic checkpoints and an exact resume
(:mod:`nas.train.run`); what a run is asked for and what determines its result are
:mod:`nas.train.settings`.  ``python -m nas.train`` is the command line over it.
"""

from __future__ import annotations

from typing import Any

from nas.train.run import StepCallback, run_training
from nas.train.settings import CHECKPOINT, SETTINGS, TRAIN_MULTIPLIER, RunSettings, TrainRequest, plan_run

__all__ = ["CHECKPOINT", "SETTINGS", "TRAIN_MULTIPLIER", "RunSettings", "StepCallback", "TrainRequest", "plan_run",
           "run_training", "train"]


def train(request: TrainRequest, *, progress: bool = True, on_step: StepCallback | None = None) -> dict[str, Any]:
    """Plan the run ``request`` asks for and train it; returns the ``final.json`` data.

    Input errors (a bad config, an existing run directory without ``resume``, conflicting resume
    settings) are :class:`~nas.errors.ConfigError` raised before anything is written.
    """
    from evaluators.device import pick_device

    device = pick_device(request.device)
    settings, _ = plan_run(request, device_type=device.type)
    return run_training(settings, request.out, device=str(device), resume=request.resume, progress=progress,
                        on_step=on_step)
