"""Reading a study's history the same way in every sampler, and per-trial random streams.

Our samplers keep no state that matters across processes: each decision is a pure function of
``(seed, trial.number)`` and of the trials in the storage.  That is what lets a resumed run, or
several processes sharing one storage, continue the same search.  This module holds the two
pieces every sampler needs for that: which finished trials count (and with which values), and a
random generator derived from the seed and the trial number rather than from process history,
and the base class :class:`HistorySampler` that both samplers build on.
"""

from __future__ import annotations

import math
import secrets
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

__all__ = [
    "HistorySampler",
    "StudySpaces",
    "base_seed",
    "completed_trials",
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


class HistorySampler(BaseSampler):
    """Base of our samplers: every proposal is a function of the storage and ``(seed, trial number)``.

    Subclasses keep only caches between trials and draw each trial's randomness from
    :func:`trial_rng` with ``self._seed``, so this base needs no generator to reseed.  The
    relative search space is the decisions every completed trial shares (conditional decisions
    go through ``sample_independent``).
    """

    def __init__(self, *, seed: int | None) -> None:
        self._seed = base_seed(seed)
        self._spaces = StudySpaces()
        # Per running trial, in this process only: what ``sample_relative`` decided (a plan, a
        # policy snapshot), for the same trial's conditional decisions in ``sample_independent``.
        self._running: dict[tuple[int, int], Any] = {}

    def _remember(self, study: optuna.Study, trial: FrozenTrial, decided: Any) -> None:
        self._running[(id(study._storage), trial._trial_id)] = decided

    def _recall(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        """What :meth:`_remember` kept for ``trial``, or None."""
        return self._running.get((id(study._storage), trial._trial_id))

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        """Forget what was kept for the finished trial."""
        self._running.pop((id(study._storage), trial._trial_id), None)

    def reseed_rng(self) -> None:
        """Nothing to reseed: each trial's stream already differs by its number."""

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Decisions present with the same distribution in every completed trial."""
        return self._spaces.relative(study)
