"""Optuna's TPE that does not spend a trial on an architecture the study has already proposed.

TPE concentrates its proposals where the good trials are, so in a small categorical space it
proposes the same architecture again: on the light benchmark's replay, 222 of the default TPE's
2,000 trials (100 trials x 20 seeds) repeated one.  The search answers a repeat from the earlier
result without training (``duplicate_of``), but the trial still counts toward ``--trials``.
:class:`DistinctTPESampler` draws TPE's proposal again, up to ``redraws`` times, while it repeats
an architecture of an earlier or running trial (:class:`nas.samplers._planned.SeenIndex`, which
leaves out the decisions of levels the network does not have), and when every redraw repeats
one (a small space, where TPE's best candidate is the same each time) takes an unseen neighbour
of it (one decision changed) at random.  Redraws come from TPE's own random stream and the
neighbour from the trial's (:func:`nas.samplers._history.trial_rng`), so the sampler is as
reproducible from its seed as TPE is.  Decisions outside TPE's
relative search space (conditional ones, asked one at a time) are not seen by the check; the
bundled spaces ask every decision at every depth, so there are none.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import TPESampler
from optuna.trial import FrozenTrial

from nas.samplers._history import trial_rng
from nas.samplers._planned import SeenIndex, neighbours

__all__ = ["DistinctTPESampler"]


class DistinctTPESampler(TPESampler):
    """:class:`optuna.samplers.TPESampler` whose proposal is drawn again while it repeats an
    architecture already in the study, then replaced by an unseen neighbour (see the module
    docstring); keyword arguments go to TPE."""

    def __init__(self, *, redraws: int = 10, **kwargs: Any) -> None:
        if redraws < 0:
            raise ValueError(f"redraws must be at least 0, got {redraws}")
        super().__init__(**kwargs)
        self._redraws = redraws
        # The fallback neighbour is a function of (seed, trial number), as our samplers' proposals are.
        self._neighbour_seed = kwargs.get("seed") or 0

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        """TPE's joint proposal, drawn again while it repeats an earlier or running trial, else an
        unseen neighbour of it (the repeat itself when it has none)."""
        params = super().sample_relative(study, trial, search_space)
        if not params or self._redraws == 0:
            return params  # TPE's start-up: the decisions are drawn one at a time, uniformly
        seen = SeenIndex(t for t in study.get_trials(deepcopy=False) if t.number != trial.number)
        redraws = 0
        while params in seen and redraws < self._redraws:
            params = super().sample_relative(study, trial, search_space)
            redraws += 1
        if params not in seen:
            return params
        # In a small space TPE's best candidate is the same architecture draw after draw: take an
        # unseen neighbour of it instead (one decision changed), the next place TPE would look.
        fresh = [n for n in neighbours(params, search_space) if n not in seen]
        if not fresh:
            return params
        rng = trial_rng(self._neighbour_seed, trial.number, "distinct-neighbour")
        return fresh[int(rng.integers(len(fresh)))]
