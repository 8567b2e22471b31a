"""Multi-objective early stopping at the evaluator's rungs (our rule; Optuna cannot prune MO studies).

At rung ``r`` a candidate reports its held-out loss so far; its rung point is
``(val_loss at r, -throughput, params)`` (all minimised; throughput and params are known before
training).  It is stopped when it is Pareto-dominated at that rung by at least
``max(min_dominators, ceil(fraction * reached))`` of the ``reached`` other candidates that
reported the same rung, and only once ``reached >= min_reached``.  Dominated on all three, such a
candidate is unlikely to reach the final front, and stopping it saves the rest of its training.
This is the Pareto analogue of successive halving's "keep the top share at each rung".

Rung values live in each trial's user attributes (``rung<r>_val_loss``), so parallel workers and
resumed runs see each other's rungs through the storage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from nas.front import dominates

__all__ = ["ParetoRungRule", "rung_key"]


def rung_key(rung: int) -> str:
    """The user-attribute name holding a trial's held-out loss at ``rung``."""
    return f"rung{rung}_val_loss"


@dataclass(frozen=True)
class ParetoRungRule:
    """The stopping rule (see the module docstring)."""

    min_reached: int = 4
    min_dominators: int = 2
    fraction: float = 0.25

    def should_stop(self, point: tuple[float, ...], others: list[tuple[float, ...]]) -> bool:
        """Whether ``point`` is dominated by enough of ``others`` (points at the same rung)."""
        if len(others) < self.min_reached:
            return False
        needed = max(self.min_dominators, math.ceil(self.fraction * len(others)))
        return sum(dominates(o, point) for o in others) >= needed

    def check(self, study: optuna.Study, trial_number: int, rung: int, val_loss: float,
              throughput: float, params: float) -> bool:
        """Apply the rule against the other trials of ``study`` that reported ``rung``."""
        key = rung_key(rung)
        others = []
        for other in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                              TrialState.RUNNING)):
            attrs = other.user_attrs
            if other.number == trial_number or key not in attrs or attrs.get("duplicate_of") is not None:
                continue
            others.append((attrs[key], -attrs.get("throughput", 0.0), attrs.get("params", 0.0)))
        return self.should_stop((val_loss, -throughput, params), others)
