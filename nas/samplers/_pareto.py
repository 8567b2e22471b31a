"""Pareto ranking, crowding distance and hypervolume for small populations (minimisation).

Ranking and crowding follow NSGA-II (Deb et al., 2002, "A fast and elitist multiobjective
genetic algorithm: NSGA-II"); populations here are tens of points, so the plain O(M N^2)
non-dominated sort is fast enough and easy to read.
"""

from __future__ import annotations

import numpy as np
from optuna._hypervolume import compute_hypervolume

__all__ = ["crowding_distance", "hypervolume", "non_dominated_ranks", "pareto_mask"]


def non_dominated_ranks(values: np.ndarray) -> np.ndarray:
    """Front index (0 = non-dominated) of each row of ``values`` ``(n, m)``, smaller is better."""
    n = len(values)
    # dominated_by[i, j]: row j dominates row i.
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
    """Boolean mask of the non-dominated rows of ``values`` (duplicates all kept)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    return non_dominated_ranks(values) == 0


def crowding_distance(values: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row within one front; boundary points get ``inf``."""
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
    """Hypervolume dominated by ``values`` (minimisation) and bounded by ``reference_point``.

    Points that do not strictly dominate the reference point add nothing and are dropped first,
    because Optuna's WFG implementation requires every point to be inside the box.
    """
    values = np.asarray(values, dtype=float)
    reference_point = np.asarray(reference_point, dtype=float)
    if len(values) == 0:
        return 0.0
    inside = values[np.all(values < reference_point, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, reference_point))
