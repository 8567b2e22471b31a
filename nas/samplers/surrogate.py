"""Surrogate-assisted evolution: many mutations ranked by a model of the study's own trials,
one evaluated.

Every evaluation of a candidate costs a training run; a forest of regression trees fitted on the
trials so far costs milliseconds.  Each proposal therefore (1) draws ``n_candidates`` unseen
children of the current members (mutations of one to three decisions of a front member, some
after a uniform crossover with a second member, a few uniform draws for exploration), (2) fits a
random forest (scikit-learn) from the decisions (:class:`~nas.samplers.encoding.DecisionEncoder`)
to the objectives of the feasible completed trials, and, where the study has infeasible ones,
a classifier of feasibility, and where early stopping has stopped some, a classifier of
reaching the end of training (a stopped trial has no objectives to fit, but it says where not
to look), and (3) evaluates the child whose optimistic prediction (mean minus ``exploration``
times the spread over the trees) adds most hypervolume to the current front, or when none adds
any, the one closest to it (additive epsilon); a child either classifier gives less than even
odds is evaluated only when no other is left.  This is the model-ranked mutation
step of BANANAS (White, Neiswanger, Savani, AAAI 2021) and of surrogate-assisted evolution
(Sun et al., 2019), for several objectives.

Nothing is kept between trials: each proposal is rebuilt from the storage and a random stream of
``(seed, trial number)``, including the forest's seed, so a resumed study continues the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError
from nas.front import hypervolume, is_feasible
from nas.samplers._history import trial_rng
from nas.samplers._planned import PlannedSampler, RankedMembers, SeenIndex, known_distributions
from nas.samplers._space import choices_of, mutate_value, random_value
from nas.samplers.encoding import DecisionEncoder

__all__ = ["SurrogateSampler"]

# Normalised hypervolume reference point (objectives min-max scaled over the feasible members).
_REFERENCE = 1.1
# How many decisions a child changes, and how often each count is drawn.
_MUTATIONS = (1, 2, 3)
_MUTATION_WEIGHTS = (0.6, 0.3, 0.1)


class SurrogateSampler(PlannedSampler):
    """Evolution whose children are ranked by a random-forest model before one is evaluated.

    Args:
        seed: base seed; trial ``n``'s proposal depends only on ``(seed, n)`` and the stored trials.
        n_startup: finished trials drawn uniformly before the model is used.
        n_candidates: children ranked by the model per proposal.
        n_trees: trees of the forest.
        exploration: weight of the trees' spread in the optimistic prediction (0: the mean).
        crossover_prob: share of children that cross two members before mutating.
        random_share: share of candidates drawn uniformly instead of from members.
    """

    _salt = "surrogate"

    def __init__(self, *, seed: int | None = None, n_startup: int = 10, n_candidates: int = 256,
                 n_trees: int = 48, exploration: float = 1.0, crossover_prob: float = 0.3,
                 random_share: float = 0.1) -> None:
        if n_startup < 2:
            raise ConfigError(f"must be >= 2, got {n_startup}", key="n_startup")
        if n_candidates < 1:
            raise ConfigError(f"must be >= 1, got {n_candidates}", key="n_candidates")
        if n_trees < 1:
            raise ConfigError(f"must be >= 1, got {n_trees}", key="n_trees")
        if exploration < 0:
            raise ConfigError(f"must be >= 0, got {exploration}", key="exploration")
        for key, value in (("crossover_prob", crossover_prob), ("random_share", random_share)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"must be in [0, 1], got {value}", key=key)
        super().__init__(seed=seed, n_startup=n_startup)
        self._n_candidates = n_candidates
        self._n_trees = n_trees
        self._exploration = exploration
        self._crossover_prob = crossover_prob
        self._random_share = random_share

    def _plan(self, study: optuna.Study, trial: FrozenTrial, trials: Sequence[FrozenTrial],
              members: RankedMembers) -> dict[str, Any] | None:
        """The candidate child with the best optimistic hypervolume gain (None: no unseen child)."""
        rng = trial_rng(self._seed, trial.number, "surrogate:plan")
        distributions = known_distributions(trials)
        candidates = self._candidates(members, distributions, SeenIndex(trials), rng)
        if not candidates:
            return None
        choices = {n: c for n, d in distributions.items() if (c := choices_of(d)) is not None}
        encoder = DecisionEncoder(choices)
        lo = members.values.min(axis=0)
        span = np.where(np.ptp(members.values, axis=0) > 0, np.ptp(members.values, axis=0), 1.0)
        features = encoder.encode([c for c in candidates])
        mean, spread = self._predict(encoder.encode([t.params for t in members.trials]),
                                     (members.values - lo) / span, features, rng)
        scores = _gains(mean - self._exploration * spread, (members.values[members.ranks == 0] - lo) / span)
        # Likely infeasible, then likely stopped at a rung: last resort only.  Without the second,
        # early stopping hides its verdicts from the model (which fits completed trials only) and
        # the sampler keeps proposing children like the ones just stopped.
        for labelled in (_feasibility_labels(trials), _survival_labels(trials)):
            likely = self._probability(labelled, encoder, features, rng)
            if likely is not None and (likely >= 0.5).any():
                scores = np.where(likely >= 0.5, scores, -np.inf)
        return candidates[int(np.argmax(scores))]

    # -- internals ---------------------------------------------------------------------------

    def _candidates(self, members: RankedMembers, distributions: dict[str, Any], seen: SeenIndex,
                    rng: np.random.Generator) -> list[dict[str, Any]]:
        front = members.front(0)
        out: list[dict[str, Any]] = []
        proposed = SeenIndex([])
        # A bounded number of draws: late in a small space most children repeat a trial.
        for _ in range(4 * self._n_candidates):
            if len(out) == self._n_candidates:
                break
            if rng.random() < self._random_share:
                child = {n: random_value(d, rng) for n, d in sorted(distributions.items())}
            else:
                child = dict(front[int(rng.integers(len(front)))].params)
                if rng.random() < self._crossover_prob and len(members.trials) > 1:
                    other = members.trials[int(rng.integers(len(members.trials)))].params
                    for name in sorted(set(child) | set(other)):
                        if name in other and (name not in child or rng.random() < 0.5):
                            child[name] = other[name]
                names = sorted(n for n in child if n in distributions)
                count = min(len(names), int(rng.choice(_MUTATIONS, p=_MUTATION_WEIGHTS)))
                for name in rng.choice(names, size=count, replace=False):
                    child[str(name)] = mutate_value(distributions[str(name)], child[str(name)], rng)
            if child not in seen and child not in proposed:
                proposed.add(child)
                out.append(child)
        return out

    def _predict(self, x: np.ndarray, y: np.ndarray, candidates: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread over the forest's trees of each candidate's (normalised) objectives."""
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(n_estimators=self._n_trees, random_state=int(rng.integers(2**31 - 1)),
                                       n_jobs=1).fit(x, y)
        # The trees' own predict: the estimator wrapper re-validates its input once per tree.
        x32 = np.ascontiguousarray(candidates, dtype=np.float32)
        per_tree = np.stack([tree.tree_.predict(x32).reshape(len(candidates), -1) for tree in forest.estimators_])
        return per_tree.mean(axis=0), per_tree.std(axis=0)

    def _probability(self, labelled: list[tuple[FrozenTrial, bool]], encoder: DecisionEncoder,
                     candidates: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """Each candidate's predicted probability of the label True, from a forest over the
        ``(trial, label)`` pairs (None: one label only, nothing to learn)."""
        from sklearn.ensemble import RandomForestClassifier

        labels = np.array([label for _, label in labelled], dtype=bool)
        if labels.all() or not labels.any():
            return None  # draws nothing from rng: a study without stopped trials proposes as before
        forest = RandomForestClassifier(n_estimators=self._n_trees, random_state=int(rng.integers(2**31 - 1)),
                                        n_jobs=1).fit(encoder.encode([t.params for t, _ in labelled]), labels)
        return forest.predict_proba(candidates)[:, list(forest.classes_).index(True)]


def _feasibility_labels(trials: Sequence[FrozenTrial]) -> list[tuple[FrozenTrial, bool]]:
    """Completed trials, labelled by whether they met the space's constraints."""
    return [(t, is_feasible(t)) for t in trials if t.state == TrialState.COMPLETE and t.params]


def _survival_labels(trials: Sequence[FrozenTrial]) -> list[tuple[FrozenTrial, bool]]:
    """Trials that passed the constraints and were trained, labelled by whether they reached the
    end (COMPLETE) or were stopped at a rung (PRUNED)."""
    return [(t, t.state == TrialState.COMPLETE) for t in trials
            if t.params and t.state in (TrialState.COMPLETE, TrialState.PRUNED) and is_feasible(t)]


def _gains(points: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Hypervolume each (minimised, normalised) point adds to ``front``; a point the front weakly
    dominates scores minus its additive-epsilon distance to it (how far it must move to join)."""
    reference = np.full(points.shape[1], _REFERENCE)
    base = hypervolume(front, reference)
    out = np.empty(len(points))
    for i, point in enumerate(points):
        gaps = np.max(point - front, axis=1)  # per front member: the move that makes point equal it
        if np.all(front <= point, axis=1).any():
            out[i] = -float(gaps.min())
        else:
            out[i] = hypervolume(np.vstack([front, point]), reference) - base
    return out
