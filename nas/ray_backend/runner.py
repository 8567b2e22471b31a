"""The Optuna backend's candidate runner, reporting its rung losses to Ray Tune.

A Ray scheduler (ASHA by default, Li et al. 2020) decides on those reports; see
:mod:`nas.ray_backend.trainable` for how a stopped trial ends.
"""

from __future__ import annotations

import optuna

from nas.objective import CandidateRunner
from nas.ray_backend.trainable import RUNG_KEY

__all__ = ["TuneCandidateRunner"]


class TuneCandidateRunner(CandidateRunner):
    """The Optuna backend's runner, whose rung hook also reports the held-out loss to Ray Tune."""

    def _rung_hook(self, trial: optuna.Trial):  # noqa: ANN202 - see evaluators.training.RungHook
        record = super()._rung_hook(trial)  # writes rung<r>_val_loss; no Pareto rule under Ray

        def hook(rung: int, step: int, val_loss: float) -> bool:
            from ray import tune

            stop = record(rung, step, val_loss)
            # Blocks until the driver's scheduler has seen it; a stopped trial ends here.
            tune.report({RUNG_KEY: rung + 1, "step": step, "val_loss": val_loss})
            return stop

        return hook
