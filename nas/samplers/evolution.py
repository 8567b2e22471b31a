"""Regularized (aging) evolution for several objectives, as an Optuna sampler.

Follows Real et al. (2019), "Regularized Evolution for Image Classifier Architecture Search":
the population is the ``population_size`` most recent finished candidates (the oldest die, not
the worst), parents come from tournaments over ``sample_size`` random members, and a child is a
mutated parent.  For several objectives the tournament compares NSGA-II's (Pareto rank,
crowding distance) (Deb et al., 2002) instead of a single accuracy, and an optional uniform
crossover of two tournament winners precedes the mutation.

Nothing is kept between trials except caches: every proposal is rebuilt from
``study.get_trials`` and a random stream derived from ``(seed, trial.number)``, so a resumed
study, or several processes sharing one storage, continue the same evolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError
from nas.front import crowding_distance, is_feasible, minimised, non_dominated_ranks
from nas.samplers._history import HistorySampler, completed_trials, trial_rng
from nas.samplers._space import contains, mutate_value, network_params, random_value

__all__ = ["PARENTS_ATTR", "EvolutionSampler"]

# How many times a child that repeats an existing trial is re-drawn before it is accepted.
_MAX_RETRIES = 10
# The system attribute that records a child's parents (trial numbers), for lineage plots.
PARENTS_ATTR = "evolution:parents"


@dataclass(frozen=True)
class _Plan:
    """What one trial inherits: its parents and whether it is a crossover child."""

    parents: tuple[FrozenTrial, ...]
    crossover: bool
    mutation_prob: float


class EvolutionSampler(HistorySampler):
    """Multi-objective regularized evolution over categorical and integer decisions.

    Args:
        seed: base seed; the proposal of trial ``n`` depends only on ``(seed, n)`` and the
            trials stored before it.  ``None`` draws a fresh base seed.
        population_size: how many of the most recent COMPLETE feasible trials, and trials the
            search's scheduler stopped (PRUNED, ranked below every completed one), form the
            population (aging: older ones leave it whatever their quality).
        sample_size: tournament size; larger means greedier parent selection.
        mutation_prob: per-decision mutation probability; default ``1 / number of decisions``.
            At least one decision is always mutated.
        crossover_prob: probability that a child is the uniform crossover of two parents.
        min_completed: population members (as above; at least one COMPLETE) needed before
            evolving; until then proposals are uniformly random.  Default ``population_size``.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        population_size: int = 20,
        sample_size: int = 8,
        mutation_prob: float | None = None,
        crossover_prob: float = 0.5,
        min_completed: int | None = None,
    ) -> None:
        if population_size < 2:
            raise ConfigError(f"must be >= 2, got {population_size}", key="population_size")
        if not 1 <= sample_size <= population_size:
            raise ConfigError(
                f"must be in [1, population_size={population_size}], got {sample_size}",
                key="sample_size",
            )
        if mutation_prob is not None and not 0.0 <= mutation_prob <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {mutation_prob}", key="mutation_prob")
        if not 0.0 <= crossover_prob <= 1.0:
            raise ConfigError(f"must be in [0, 1], got {crossover_prob}", key="crossover_prob")
        if min_completed is not None and min_completed < 1:
            raise ConfigError(f"must be >= 1, got {min_completed}", key="min_completed")
        super().__init__(seed=seed)
        self._population_size = population_size
        self._sample_size = sample_size
        self._mutation_prob = mutation_prob
        self._crossover_prob = crossover_prob
        self._min_completed = population_size if min_completed is None else min_completed

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Choose parents by tournament and return their mutated (crossed-over) child."""
        all_trials = study._get_trials(deepcopy=False, use_cache=False)
        plan = self._plan(study, trial, all_trials)
        self._remember(study, trial, plan)  # for this trial's conditional decisions
        if plan is None or not search_space:
            return {}
        study._storage.set_trial_system_attr(
            trial._trial_id, PARENTS_ATTR, [p.number for p in plan.parents]
        )
        names = sorted(search_space)
        seen = {self._signature(t.params, names) for t in all_trials if t.number != trial.number}
        rng = trial_rng(self._seed, trial.number, "evolution:relative")
        for _ in range(_MAX_RETRIES):
            child = self._child(plan, search_space, rng)
            if self._signature(child, names) not in seen:
                break
        return child

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """Conditional decisions: inherit from a parent that has it (maybe mutated), else random."""
        rng = trial_rng(self._seed, trial.number, f"evolution:{param_name}")
        plan: _Plan | None = self._recall(study, trial)
        donors = (
            []
            if plan is None
            else [
                p
                for p in plan.parents
                if param_name in p.params and contains(param_distribution, p.params[param_name])
            ]
        )
        if not donors:
            return random_value(param_distribution, rng)
        assert plan is not None
        value = donors[int(rng.integers(len(donors)))].params[param_name]
        if rng.random() < plan.mutation_prob:
            value = mutate_value(param_distribution, value, rng)
        return value

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _signature(params: dict[str, Any], names: list[str]) -> tuple[Any, ...]:
        params = network_params(params)  # moves of a level the network lacks make the same network
        return tuple((name, type(params.get(name)).__name__, params.get(name)) for name in names)

    def _plan(
        self, study: optuna.Study, trial: FrozenTrial, all_trials: Sequence[FrozenTrial]
    ) -> _Plan | None:
        """Parents for ``trial`` from the aged population, or ``None`` while still random."""
        feasible = [t for t in completed_trials(study, all_trials) if is_feasible(t)]
        # Candidates the search's scheduler stopped at a rung lost there against the others: they
        # are evaluated members (ranked below every completed one), not holes in the history.
        # Without them a search that stops half its candidates would stay random for twice as long.
        stopped = [t for t in all_trials if t.state == TrialState.PRUNED and t.params]
        members = sorted(feasible + stopped, key=lambda t: t.number)
        if len(members) < self._min_completed or not feasible:
            return None
        # Aging: the most recent members by trial number, whatever their quality.
        population = members[-self._population_size :]
        done = [t for t in population if t.state == TrialState.COMPLETE]
        values = minimised([t.values for t in done], study.directions) if done else np.zeros((0, 1))
        done_ranks = non_dominated_ranks(values) if done else np.zeros(0, dtype=int)
        done_crowding = np.zeros(len(done))
        for rank in np.unique(done_ranks):
            chosen = done_ranks == rank
            done_crowding[chosen] = crowding_distance(values[chosen])
        worst = int(done_ranks.max()) + 1 if done else 0
        by_number = {t.number: (int(r), float(c)) for t, r, c in zip(done, done_ranks, done_crowding, strict=True)}
        ranks = np.array([by_number.get(t.number, (worst, 0.0))[0] for t in population])
        crowding = np.array([by_number.get(t.number, (worst, 0.0))[1] for t in population])

        rng = trial_rng(self._seed, trial.number, "evolution:parents")

        def tournament() -> int:
            size = min(self._sample_size, len(population))
            entrants = rng.choice(len(population), size=size, replace=False)
            # Lowest rank wins; ties go to the larger crowding distance (a sparser region).
            return int(min(entrants, key=lambda i: (ranks[i], -crowding[i])))

        first = tournament()
        crossover = rng.random() < self._crossover_prob
        parents = [population[first]]
        if crossover:
            parents.append(population[tournament()])
        n_decisions = max(1, len(population[first].params))
        mutation_prob = (
            self._mutation_prob if self._mutation_prob is not None else 1.0 / n_decisions
        )
        return _Plan(parents=tuple(parents), crossover=crossover, mutation_prob=mutation_prob)

    def _child(
        self, plan: _Plan, search_space: dict[str, BaseDistribution], rng: np.random.Generator
    ) -> dict[str, Any]:
        names = sorted(search_space)
        child: dict[str, Any] = {}
        for name in names:
            # Uniform crossover: each decision from either parent with equal probability.
            donor = plan.parents[int(rng.integers(len(plan.parents)))]
            child[name] = donor.params[name]
        mutated = [name for name in names if rng.random() < plan.mutation_prob]
        if not mutated:
            mutated = [names[int(rng.integers(len(names)))]]
        for name in mutated:
            child[name] = mutate_value(search_space[name], child[name], rng)
        return child
