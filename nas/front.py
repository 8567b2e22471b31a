"""Pareto dominance, non-dominated sorting, crowding, hypervolume and feasibility: the only copy.

Everything here works on minimised objective values, an ``(n, m)`` array where smaller is
better in every column (:func:`minimised` turns an Optuna study's values into that form).
Samplers, the early-stopping rule, reports, export and the benchmarks all call these functions,
so "dominated", "on the front" and "feasible" mean the same thing everywhere.

Ranking and crowding follow NSGA-II (Deb et al., 2002, "A fast and elitist multiobjective
genetic algorithm: NSGA-II").  Populations here are tens to hundreds of points, so the plain
O(M N^2) non-dominated sort is fast enough and easy to read.  Hypervolume is Optuna's exact WFG
implementation (While et al., 2012); Optuna has no public name for it, so its private module is
imported here and nowhere else.  This module needs numpy and optuna, never torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

__all__ = [
    "broken_constraints",
    "constraints_met",
    "crowding_distance",
    "dominates",
    "hypervolume",
    "is_feasible",
    "minimised",
    "non_dominated_ranks",
    "normalise",
    "pareto_mask",
]


class _Constrained(Protocol):
    """What :func:`is_feasible` reads of a trial (an Optuna ``FrozenTrial`` has both)."""

    user_attrs: dict[str, Any]
    constraints: dict[str, float]


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    """Whether ``a`` Pareto-dominates ``b`` (both minimised): no worse anywhere, better somewhere."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def non_dominated_ranks(values: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of ``values`` ``(n, m)``; smaller is better."""
    values = np.asarray(values, dtype=float)
    n = len(values)
    # dominated_by[i, j]: row j dominates row i (the vectorised form of `dominates`).
    le = np.all(values[None, :, :] <= values[:, None, :], axis=2)
    lt = np.any(values[None, :, :] < values[:, None, :], axis=2)
    dominated_by = le & lt
    ranks = np.full(n, -1, dtype=int)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        # A point is on the current front if no remaining point dominates it.
        front = remaining & ~np.any(dominated_by & remaining[None, :], axis=1)
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    return ranks


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (equal points are all kept)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    return non_dominated_ranks(values) == 0


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front; boundary points get ``inf``."""
    values = np.asarray(values, dtype=float)
    n, m = values.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(values[:, k], kind="stable")
        column = values[order, k]
        span = column[-1] - column[0]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span <= 0:
            continue
        distance[order[1:-1]] += (column[2:] - column[:-2]) / span
    return distance


def hypervolume(values: np.ndarray, reference_point: np.ndarray) -> float:
    """Hypervolume dominated by minimised ``values`` ``(n, m)`` and bounded by ``reference_point``.

    Points that do not strictly dominate the reference point add nothing and are dropped first,
    because Optuna's WFG implementation requires every point to lie inside the box.
    """
    from optuna._hypervolume import compute_hypervolume

    values = np.asarray(values, dtype=float)
    reference_point = np.asarray(reference_point, dtype=float)
    if len(values) == 0:
        return 0.0
    inside = values[np.all(values < reference_point, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, reference_point))


def minimised(values: Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """Objective ``values`` ``(n, m)`` as minimised values: maximised columns change sign.

    ``directions`` are Optuna ``StudyDirection`` members or the strings ``"minimize"`` /
    ``"maximize"``.
    """
    signs = np.array([-1.0 if _is_maximise(d) else 1.0 for d in directions])
    if len(values) == 0:
        return np.zeros((0, len(signs)))
    return np.asarray(values, dtype=float) * signs


def normalise(points: np.ndarray) -> np.ndarray:
    """Each column of ``points`` scaled to [0, 1] over the rows (a constant column becomes 0)."""
    points = np.asarray(points, dtype=float)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / np.where(hi > lo, hi - lo, 1.0)


def constraints_met(values: Iterable[float]) -> bool:
    """Whether every constraint value is met: ``<= 0``, Optuna's convention (``> 0`` is the excess)."""
    return all(value <= 0.0 for value in values)


def broken_constraints(values: Mapping[str, float]) -> dict[str, float]:
    """The constraints ``values`` break, with their excess over the limit."""
    return {key: value for key, value in values.items() if not constraints_met([value])}


def is_feasible(trial: _Constrained) -> bool:
    """Feasible when every constraint is met (:func:`constraints_met`) and the trial's ``feasible``
    user attribute (how the cheap gate marks a candidate) does not say otherwise."""
    if trial.user_attrs.get("feasible") is False:
        return False
    return constraints_met(trial.constraints.values())


def _is_maximise(direction: Any) -> bool:
    name = getattr(direction, "name", direction)
    return str(name).lower() == "maximize"
