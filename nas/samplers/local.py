"""Pareto local search as an Optuna sampler: evaluate an unseen neighbour of a front member.

Local search is the strongest simple baseline on NAS benchmarks (White, Nolen, Hutter, "Exploring
the loss landscape in neural architecture search", UAI 2021: it reaches the NAS-Bench-201 optimum
in about 127 queries); Pareto local search (Paquete, Chiarandini, Stuetzle, 2004) is its
multi-objective form: the archive is the non-dominated set, and each step evaluates a neighbour
(one decision changed) of an archive member not yet evaluated.

Each proposal is a function of the storage and ``(seed, trial number)``: the trial's random
stream picks a member of the current front (members whose neighbourhood is exhausted are
skipped, then the next rank is used) and one of its unseen neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.errors import ConfigError
from nas.samplers._history import trial_rng
from nas.samplers._planned import PlannedSampler, RankedMembers, SeenIndex, known_distributions, neighbours

__all__ = ["LocalSearchSampler"]


class LocalSearchSampler(PlannedSampler):
    """Multi-objective (Pareto) local search over categorical and integer decisions.

    Args:
        seed: base seed; trial ``n``'s proposal depends only on ``(seed, n)`` and the stored trials.
        n_startup: finished trials drawn uniformly before the local search starts.
    """

    _salt = "local"

    def __init__(self, *, seed: int | None = None, n_startup: int = 10) -> None:
        if n_startup < 1:
            raise ConfigError(f"must be >= 1, got {n_startup}", key="n_startup")
        super().__init__(seed=seed, n_startup=n_startup)

    def _plan(self, study: optuna.Study, trial: FrozenTrial, trials: Sequence[FrozenTrial],
              members: RankedMembers) -> dict[str, Any] | None:
        """An unseen one-decision neighbour of a random front member (None: every front exhausted)."""
        seen = SeenIndex(trials)
        distributions = known_distributions(trials)
        rng = trial_rng(self._seed, trial.number, "local:plan")
        for rank in range(int(members.ranks.max()) + 1):
            front = members.front(rank)
            for index in rng.permutation(len(front)):
                unseen = [n for n in neighbours(front[index].params, distributions) if n not in seen]
                if unseen:
                    return unseen[int(rng.integers(len(unseen)))]
        return None
