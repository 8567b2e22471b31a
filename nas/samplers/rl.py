"""A REINFORCE controller over the decisions, as an Optuna sampler.

Follows Williams (1992), "Simple statistical gradient-following algorithms for connectionist
reinforcement learning", as used for architecture search by Zoph & Le (2017), "Neural
Architecture Search with Reinforcement Learning", with the recurrent controller replaced by a
factorised categorical policy: one logit vector per decision (integer ranges are treated as
categorical over their values).  Several objectives become one reward by

* ``"chebyshev"``: objectives are normalised to [0, 1] by the running min/max over completed
  feasible trials (0 = best) and scalarised as ``-max_i w_i * g_i`` with weights ``w`` drawn
  from a flat Dirichlet seeded by the trial number (random scalarisations, as in ParEGO,
  Knowles 2006), so that over many trials the whole front is rewarded, not one corner;
* ``"hypervolume"``: the hypervolume improvement of the trial over the feasible front so far
  (in the same normalised space, reference point 1.1), or, for a dominated trial, minus its
  additive-epsilon distance to that front.

Infeasible trials (constraints > 0, or ``user_attrs["feasible"] is False``) get the worst
reward, -1.  FAIL and PRUNED trials carry no objective values and are skipped: a pruned
candidate was stopped by a rule outside the sampler, not judged, so it neither helps nor hurts.

The policy is never stored: it is rebuilt by replaying every completed trial in trial-number
order (a left fold, so a cached policy can be advanced by the new trials only), which makes a
resumed study, or several processes sharing one storage, continue the same controller.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from nas.errors import ConfigError, close_match_hint
from nas.front import hypervolume, is_feasible, minimised, pareto_mask
from nas.samplers._history import HistorySampler, completed_trials, study_key, trial_rng
from nas.samplers._space import choices_of, index_of, random_value

__all__ = ["REWARDS", "ReinforceSampler"]

REWARDS = ("chebyshev", "hypervolume")
# Reward of an infeasible trial: the lowest either scalarisation can give a feasible one.
_WORST_REWARD = -1.0
# Reference point of the normalised hypervolume (objectives normalised to [0, 1], 0 best).
_HV_REFERENCE = 1.1


@dataclass
class _Policy:
    """The controller after replaying some trials (all fields advance together)."""

    logits: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    baseline: float | None = None
    spread: float = 0.0  # moving mean of |reward - baseline|: the advantage scale
    low: np.ndarray | None = None  # running min / max of feasible minimised objectives
    high: np.ndarray | None = None
    front: list[np.ndarray] = field(default_factory=list)  # feasible minimised values so far
    pending: list[FrozenTrial] = field(default_factory=list)  # warm-up trials not yet learnt
    replayed: tuple[int, ...] = ()  # trial numbers folded in, in order

    def copy(self) -> _Policy:
        """A copy that advancing will not alter (arrays are copied, trials are never mutated)."""
        return _Policy(
            logits={key: value.copy() for key, value in self.logits.items()},
            baseline=self.baseline,
            spread=self.spread,
            low=None if self.low is None else self.low.copy(),
            high=None if self.high is None else self.high.copy(),
            front=list(self.front),
            pending=list(self.pending),
            replayed=self.replayed,
        )


class ReinforceSampler(HistorySampler):
    """REINFORCE with a factorised categorical policy, a moving-average baseline and entropy bonus.

    Args:
        seed: base seed; trial ``n``'s draws depend only on ``(seed, n)`` and the stored trials.
        learning_rate: step size of the policy-gradient ascent on the logits.
        entropy_weight: weight of the entropy bonus (keeps the policy from collapsing early).
        baseline_decay: decay of the exponential moving-average reward baseline.
        warmup_trials: completed trials gathered before the first update; they are then learnt
            from all at once, with the normalisation known by then.
        reward: ``"chebyshev"`` (default) or ``"hypervolume"``; see the module docstring.
    """

    def __init__(
        self,
        *,
        seed: int | None = None,
        learning_rate: float = 0.1,
        entropy_weight: float = 0.01,
        baseline_decay: float = 0.9,
        warmup_trials: int = 10,
        reward: str = "chebyshev",
    ) -> None:
        if reward not in REWARDS:
            raise ConfigError(
                f"unknown reward {reward!r}{close_match_hint(reward, REWARDS)}; "
                f"valid: {', '.join(REWARDS)}",
                key="reward",
            )
        if learning_rate <= 0:
            raise ConfigError(f"must be > 0, got {learning_rate}", key="learning_rate")
        if entropy_weight < 0:
            raise ConfigError(f"must be >= 0, got {entropy_weight}", key="entropy_weight")
        if not 0.0 <= baseline_decay < 1.0:
            raise ConfigError(f"must be in [0, 1), got {baseline_decay}", key="baseline_decay")
        if warmup_trials < 1:
            raise ConfigError(f"must be >= 1, got {warmup_trials}", key="warmup_trials")
        super().__init__(seed=seed)
        self._learning_rate = learning_rate
        self._entropy_weight = entropy_weight
        self._baseline_decay = baseline_decay
        self._warmup_trials = warmup_trials
        self._reward = reward
        self._lock = threading.Lock()
        # Cache: the policy after the last replay, per (storage, study); advanced incrementally.
        self._cache: dict[tuple[int, int, str], _Policy] = {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Rebuild the policy from storage, then sample every shared decision from it."""
        policy = self.policy(study)
        self._remember(study, trial, policy)  # its conditional decisions sample the same policy
        # One stream for the shared decisions, drawn in sorted-name order (deterministic).
        rng = trial_rng(self._seed, trial.number, "rl:relative")
        return {
            name: self._draw(policy, rng, name, search_space[name]) for name in sorted(search_space)
        }

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """Conditional decisions come from the same policy snapshot as the trial's others."""
        policy: _Policy | None = self._recall(study, trial)
        if policy is None:
            policy = self.policy(study)
        rng = trial_rng(self._seed, trial.number, f"rl:{param_name}")
        return self._draw(policy, rng, param_name, param_distribution)

    def policy(self, study: optuna.Study) -> _Policy:
        """The controller after replaying every completed trial of ``study`` in number order.

        Cached per study: when the completed trials extend the cached replay (the usual case)
        only the new ones are folded in; otherwise (a parallel worker finished an older trial)
        the replay restarts from scratch, which gives the same result as an uninterrupted run.
        """
        trials = completed_trials(study)
        numbers = tuple(t.number for t in trials)
        key = study_key(study)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and numbers[: len(cached.replayed)] == cached.replayed:
                if len(numbers) == len(cached.replayed):
                    return cached
                policy = cached.copy()  # snapshots handed out must not change
                start = len(cached.replayed)
            else:
                policy, start = _Policy(), 0
            directions = study.directions
            for trial in trials[start:]:
                self._fold(policy, trial, directions)
            policy.replayed = numbers
            self._cache[key] = policy
            return policy

    def probabilities(
        self, policy: _Policy, name: str, distribution: BaseDistribution
    ) -> np.ndarray | None:
        """The policy's probabilities over ``distribution``'s choices for ``name``.

        ``None`` when the distribution is not enumerable (floats, huge int ranges): those
        decisions are sampled uniformly and not learnt.
        """
        choices = choices_of(distribution)
        if choices is None:
            return None
        logits = policy.logits.get((name, self._key(distribution)))
        if logits is None:
            return np.full(len(choices), 1.0 / len(choices))
        return _softmax(logits)

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _key(distribution: BaseDistribution) -> str:
        # The same name may be re-suggested with other choices; each version gets its own logits.
        return repr(distribution)

    def _draw(
        self, policy: _Policy, rng: np.random.Generator, name: str, distribution: BaseDistribution
    ) -> Any:
        probs = self.probabilities(policy, name, distribution)
        if probs is None:
            return random_value(distribution, rng)
        choices = choices_of(distribution)
        assert choices is not None
        # Inverse-CDF draw: one uniform per decision, cheaper than ``rng.choice(p=...)``.
        index = int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum(), side="right"))
        return choices[min(index, len(choices) - 1)]

    def _fold(self, policy: _Policy, trial: FrozenTrial, directions: Sequence[Any]) -> None:
        """Advance ``policy`` by one completed trial (the step of the left fold)."""
        feasible = is_feasible(trial)
        value = minimised([trial.values], directions)[0]
        if feasible:
            policy.low = value.copy() if policy.low is None else np.minimum(policy.low, value)
            policy.high = value.copy() if policy.high is None else np.maximum(policy.high, value)
        if policy.baseline is None and len(policy.pending) + 1 < self._warmup_trials:
            policy.pending.append(trial)
            return
        # Warm-up over: learn from the buffered trials with the normalisation known now.
        batch = [*policy.pending, trial]
        policy.pending = []
        rewards = []
        for item in batch:
            rewards.append(self._reward_of(policy, item, directions))
            if is_feasible(item):
                # Dominance survives the monotone normalisation, so the raw front can be pruned.
                front = np.vstack([*policy.front, minimised([item.values], directions)[0]])
                policy.front = list(front[pareto_mask(front)])
        if policy.baseline is None:
            policy.baseline = float(np.mean(rewards))
            policy.spread = float(np.mean(np.abs(np.asarray(rewards) - policy.baseline)))
        decay = self._baseline_decay
        for item, reward in zip(batch, rewards, strict=True):
            advantage = reward - policy.baseline
            # Rewards live on a problem-dependent scale (normalised objectives bunch up as the
            # search converges), so the advantage is divided by its moving mean magnitude:
            # ``learning_rate`` alone then sets the step.  Updating the scale first bounds the
            # ratio by 1 / (1 - baseline_decay).
            policy.spread = decay * policy.spread + (1.0 - decay) * abs(advantage)
            if policy.spread > 0.0:
                self._update(policy, item, advantage / policy.spread)
            policy.baseline = decay * policy.baseline + (1.0 - decay) * reward

    def _normalise(self, policy: _Policy, value: np.ndarray) -> np.ndarray:
        assert policy.low is not None and policy.high is not None
        span = policy.high - policy.low
        # A constant objective carries no information: map it to the middle.
        return np.where(span > 0, (value - policy.low) / np.where(span > 0, span, 1.0), 0.5)

    def _reward_of(self, policy: _Policy, trial: FrozenTrial, directions: Sequence[Any]) -> float:
        if not is_feasible(trial) or policy.low is None:
            return _WORST_REWARD
        point = self._normalise(policy, minimised([trial.values], directions)[0])
        if self._reward == "chebyshev":
            weights = trial_rng(self._seed, trial.number, "rl:weights").dirichlet(
                np.ones(len(point))
            )
            return -float(np.max(weights * point))
        front = np.array([self._normalise(policy, f) for f in policy.front]).reshape(-1, len(point))
        if len(front) and np.any(np.all(front <= point, axis=1)):
            # Dominated (or equal): how far it is from becoming non-dominated (additive epsilon).
            return -float(np.min(np.max(point - front, axis=1)))
        front = front[pareto_mask(front)] if len(front) else front
        reference = np.full(len(point), _HV_REFERENCE)
        return hypervolume(np.vstack([front, point]), reference) - hypervolume(front, reference)

    def _update(self, policy: _Policy, trial: FrozenTrial, advantage: float) -> None:
        """One REINFORCE step: ascend ``advantage * grad log pi(a) + beta * grad H(pi)``."""
        for name, distribution in trial.distributions.items():
            index = index_of(distribution, trial.params[name])
            if index is None or distribution.single():
                continue
            key = (name, self._key(distribution))
            logits = policy.logits.get(key)
            if logits is None:
                logits = policy.logits[key] = np.zeros(len(choices_of(distribution) or ()))
            probs = _softmax(logits)
            # d log softmax(z)_a / dz = onehot(a) - p ;  dH/dz = -p * (log p + H).
            grad_logp = -probs
            grad_logp[index] += 1.0
            log_probs = np.log(probs + 1e-12)
            entropy = -float(np.sum(probs * log_probs))
            grad_entropy = -probs * (log_probs + entropy)
            logits += self._learning_rate * (
                advantage * grad_logp + self._entropy_weight * grad_entropy
            )


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()
