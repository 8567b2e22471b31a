"""The Pareto front of a study: which trials compete, which are non-dominated, and the knee.

The front is taken over COMPLETE, feasible trials with finite values (duplicates of an earlier
trial count once), with the study's directions; dominance itself is :mod:`nas.front`'s.
"""

from __future__ import annotations

import math

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.front import is_feasible, minimised, normalise, pareto_mask

__all__ = ["candidate_trials", "front_of", "front_trials", "knee_trial", "minimised_values"]


def minimised_values(study: optuna.Study, trials: list[FrozenTrial]) -> np.ndarray:
    """The objective values of ``trials`` ``(n, m)``, minimised under the study's directions."""
    return minimised([t.values for t in trials], study.directions)


def candidate_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE, feasible, finite, non-duplicate trials."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is None or not all(math.isfinite(v) for v in t.values):
            continue
        if is_feasible(t) and t.user_attrs.get("duplicate_of") is None:
            out.append(t)
    return out


def front_of(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The non-dominated trials among ``trials`` under the study's directions, by trial number."""
    if not trials:
        return []
    mask = pareto_mask(minimised_values(study, trials))
    return sorted((t for t, keep in zip(trials, mask, strict=True) if keep), key=lambda t: t.number)


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's Pareto front: the non-dominated trials among :func:`candidate_trials`."""
    return front_of(study, candidate_trials(study))


def knee_trial(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> FrozenTrial:
    """The knee of the front: the trial closest (Euclidean) to the ideal point after each
    objective is normalised to [0, 1] over the front.  Ties go to the lower trial number."""
    trials = trials if trials is not None else front_trials(study)
    if not trials:
        raise ValueError("the study has no feasible completed trial")
    distances = np.linalg.norm(normalise(minimised_values(study, trials)), axis=1)
    return trials[int(np.argmin(distances))]
