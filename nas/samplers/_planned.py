"""Samplers that decide a trial's whole architecture at once, and the pieces they share.

Optuna asks a sampler for the decisions shared by every earlier trial in ``sample_relative``
and for each conditional decision (a level that exists only at depth 3, the head width that
exists only with attention) later, one at a time, in ``sample_independent``.  A proposal that
moves one decision of a front member, or that a model ranked among many, is a whole assignment:
:class:`PlannedSampler` makes it once per trial (``_plan``) and answers both calls from it,
falling back to a uniform draw for a decision the plan does not hold.

:class:`SeenIndex` answers "was this assignment already evaluated?" in a conditional space: an
assignment repeats an earlier trial when it agrees with every decision that trial made (its
other decisions are then never asked, so the architecture is the same), the decisions of levels
the network does not have left out (:func:`nas.samplers._space.network_params`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.front import crowding_distance, is_feasible, minimised, non_dominated_ranks
from nas.samplers._history import HistorySampler, completed_trials, trial_rng
from nas.samplers._space import choices_of, contains, network_params, random_value

__all__ = ["PlannedSampler", "RankedMembers", "SeenIndex", "known_distributions", "neighbours", "ranked_members"]


def _key(value: Any) -> tuple[str, Any]:
    # Type as well as value: ``True == 1`` must not make a bool choice equal an int one.
    return (type(value).__name__, value)


class SeenIndex:
    """The assignments of earlier trials, for "would this proposal repeat one?" checks."""

    def __init__(self, trials: Iterable[FrozenTrial]) -> None:
        # Per set of decision names a trial made: the value tuples seen with exactly those names.
        self._by_names: dict[tuple[str, ...], set[tuple[Any, ...]]] = {}
        for trial in trials:
            if trial.params:
                self.add(trial.params)

    def add(self, params: dict[str, Any]) -> None:
        """Record ``params`` as seen."""
        params = network_params(params)
        names = tuple(sorted(params))
        self._by_names.setdefault(names, set()).add(tuple(_key(params[n]) for n in names))

    def __contains__(self, params: dict[str, Any]) -> bool:
        params = network_params(params)
        for names, values in self._by_names.items():
            if all(n in params for n in names) and tuple(_key(params[n]) for n in names) in values:
                return True
        return False


def known_distributions(trials: Iterable[FrozenTrial]) -> dict[str, BaseDistribution]:
    """Every decision any trial made, with its distribution (the latest trial's, if they differ)."""
    out: dict[str, BaseDistribution] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        out.update(trial.distributions)
    return out


def neighbours(params: dict[str, Any], distributions: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
    """Every assignment that changes exactly one enumerable decision of ``params``, in name order."""
    out: list[dict[str, Any]] = []
    for name in sorted(params):
        distribution = distributions.get(name)
        choices = choices_of(distribution) if distribution is not None else None
        for value in choices or []:
            if _key(value) != _key(params[name]):
                out.append({**params, name: value})
    return out


class RankedMembers:
    """A study's feasible completed trials with NSGA-II's (Pareto rank, crowding distance)."""

    def __init__(self, trials: Sequence[FrozenTrial], ranks: np.ndarray, crowding: np.ndarray,
                 values: np.ndarray) -> None:
        self.trials = list(trials)
        self.ranks = ranks
        self.crowding = crowding
        self.values = values  # minimised objective values, one row per trial

    def front(self, rank: int = 0) -> list[FrozenTrial]:
        """Members of non-dominated rank ``rank``, sparsest region (largest crowding) first."""
        chosen = [i for i in range(len(self.trials)) if self.ranks[i] == rank]
        chosen.sort(key=lambda i: (-self.crowding[i], self.trials[i].number))
        return [self.trials[i] for i in chosen]


def ranked_members(study: optuna.Study, trials: Sequence[FrozenTrial]) -> RankedMembers:
    """Rank and crowd the feasible COMPLETE trials among ``trials`` (the study's trial list)."""
    feasible = [t for t in completed_trials(study, trials) if is_feasible(t)]
    if not feasible:
        empty = np.zeros(0)
        return RankedMembers([], empty.astype(int), empty, np.zeros((0, len(study.directions))))
    values = minimised([t.values for t in feasible], study.directions)
    ranks = non_dominated_ranks(values)
    crowding = np.zeros(len(feasible))
    for rank in np.unique(ranks):
        chosen = ranks == rank
        crowding[chosen] = crowding_distance(values[chosen])
    return RankedMembers(feasible, ranks, crowding, values)


class PlannedSampler(HistorySampler):
    """Base of samplers whose proposal is a whole assignment made once per trial.

    Subclasses implement :meth:`_plan`: the assignment for a trial (decision name -> value,
    conditional decisions included where known) or ``None`` to draw uniformly.  Until
    ``n_startup`` trials have finished (COMPLETE or PRUNED) and one of them is feasible, every
    trial is drawn uniformly, as in every model-based sampler.
    """

    _salt = "planned"

    def __init__(self, *, seed: int | None, n_startup: int) -> None:
        super().__init__(seed=seed)
        self._n_startup = n_startup

    def _plan(self, study: optuna.Study, trial: FrozenTrial, trials: Sequence[FrozenTrial],
              members: RankedMembers) -> dict[str, Any] | None:
        raise NotImplementedError

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """The plan's values for the decisions every earlier trial shares."""
        trials = study._get_trials(deepcopy=False, use_cache=False)
        finished = sum(1 for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED))
        plan = None
        if finished >= self._n_startup:
            members = ranked_members(study, trials)
            if members.trials:
                plan = self._plan(study, trial, [t for t in trials if t.number != trial.number], members)
        self._remember(study, trial, plan)  # for this trial's conditional decisions
        if plan is None:
            return {}
        return {name: plan[name] for name, d in search_space.items() if name in plan and contains(d, plan[name])}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """The plan's value when it holds a legal one, else a uniform draw."""
        plan: dict[str, Any] | None = self._recall(study, trial)
        if plan is not None and param_name in plan and contains(param_distribution, plan[param_name]):
            return plan[param_name]
        return random_value(param_distribution, trial_rng(self._seed, trial.number, f"{self._salt}:{param_name}"))
