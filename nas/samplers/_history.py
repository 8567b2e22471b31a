"""Reading a study's history the same way in every sampler, and per-trial random streams.

Our samplers keep no state that matters across processes: each decision is a pure function of
``(seed, trial.number)`` and of the trials in the storage.  That is what lets a resumed run, or
several processes sharing one storage, continue the same search.  This module holds the two
pieces every sampler needs for that: which finished trials count (and with which values), and a
random generator derived from the seed and the trial number rather than from process history.
"""

from __future__ import annotations

import math
import secrets
import zlib
from collections.abc import Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.search_space import IntersectionSearchSpace
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "StudySpaces",
    "base_seed",
    "completed_trials",
    "is_feasible",
    "minimised_values",
    "study_key",
    "trial_rng",
]


def base_seed(seed: int | None) -> int:
    """A non-negative 63-bit seed: ``seed`` itself (wrapped), or fresh entropy when ``None``."""
    if seed is None:
        return secrets.randbits(63)
    return int(seed) % (1 << 63)


def trial_rng(seed: int, number: int, salt: str = "") -> np.random.Generator:
    """The generator for one trial (and one named draw within it).

    Deriving the stream from ``(seed, trial number, salt)`` rather than from a generator that
    advances with every call makes a trial's proposal independent of which process made the
    earlier ones, and of the order in which parameters are suggested.
    """
    return np.random.default_rng([seed, number, zlib.crc32(salt.encode())])


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible iff every constraint value (Optuna 5 ``trial.constraints``) is <= 0 and
    ``user_attrs["feasible"]`` is not ``False`` (how our evaluator marks a failed gate)."""
    if trial.user_attrs.get("feasible") is False:
        return False
    return all(value <= 0.0 for value in trial.constraints.values())


def completed_trials(
    study: optuna.Study, trials: Sequence[FrozenTrial] | None = None
) -> list[FrozenTrial]:
    """COMPLETE trials with one finite value per objective, in trial-number order.

    ``trials`` is the study's trial list when the caller already fetched it (one storage read
    per proposal).  Trial-number order (not completion order) keeps the history identical
    however parallel workers interleaved; non-finite values would poison normalisation, so
    they are left out.
    """
    n_obj = len(study.directions)
    if trials is None:
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=False)
    kept = [
        t
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.values is not None
        and len(t.values) == n_obj
        and all(math.isfinite(v) for v in t.values)
    ]
    return sorted(kept, key=lambda t: t.number)


def minimised_values(
    trials: Sequence[FrozenTrial], directions: Sequence[StudyDirection]
) -> np.ndarray:
    """Objective values as an ``(n_trials, n_objectives)`` array where smaller is better."""
    signs = np.array([-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions])
    if not trials:
        return np.zeros((0, len(signs)))
    return np.array([t.values for t in trials], dtype=float) * signs


def study_key(study: optuna.Study) -> tuple[int, int, str]:
    """Identifies a study within this process: in-memory storages all number studies from 0,
    so the storage object and the (unique, auto-generated if not given) name are part of it."""
    return (id(study._storage), study._study_id, study.study_name)


class StudySpaces:
    """One :class:`~optuna.search_space.IntersectionSearchSpace` per study.

    Optuna's class caches per instance and must see a single study; a sampler instance may be
    reused on several, so each study gets its own.
    """

    def __init__(self) -> None:
        self._spaces: dict[tuple[int, int, str], IntersectionSearchSpace] = {}

    def relative(self, study: optuna.Study) -> dict[str, BaseDistribution]:
        """Decisions with the same, non-single distribution in every completed trial."""
        space = self._spaces.setdefault(study_key(study), IntersectionSearchSpace())
        return {name: d for name, d in space.calculate(study).items() if not d.single()}
