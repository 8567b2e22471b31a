"""Random search that a resumed run or a second worker continues instead of repeating.

Optuna's ``RandomSampler`` draws from one generator seeded when it is built, so a search resumed
with the same seed proposes its first candidates again, one by one.  Here each decision is
drawn from the trial's own stream, ``(seed, trial number, decision name)``: trial 40 of a
resumed run gets what trial 40 of an uninterrupted run would have, whichever process asks.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from nas.samplers._history import HistorySampler, trial_rng
from nas.samplers._space import random_value

__all__ = ["UniformSampler"]


class UniformSampler(HistorySampler):
    """Every decision uniformly at random, from the trial's own random stream.

    Args:
        seed: base seed; trial ``n``'s decisions depend only on ``(seed, n)``.
    """

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        """Nothing is decided jointly: every decision is independent."""
        return {}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """Nothing: see :meth:`sample_independent`."""
        return {}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        """A uniform draw from ``param_distribution`` with the trial's stream for this decision."""
        return random_value(param_distribution, trial_rng(self._seed, trial.number, f"uniform:{param_name}"))
