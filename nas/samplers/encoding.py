"""Architectures as feature vectors, for the models that rank them.

One encoder serves the surrogate-assisted sampler (over a study's trials) and the benchmark's
surrogate (over a table's rows), so both models see a decision the same way: a numeric decision
(channel multiplier, block count) as its value, a categorical one (convolution type, attention,
a bool) one-hot, and each decision's absence (a conditional decision the architecture never
made, e.g. level 2's choices at depth 2) as its own column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DecisionEncoder"]


def _numeric(choices: Sequence[Any]) -> bool:
    return all(isinstance(c, int | float) and not isinstance(c, bool) for c in choices)


def _key(value: Any) -> tuple[str, Any]:
    return (type(value).__name__, value)


class DecisionEncoder:
    """Encode assignments (decision name -> value; absent or ``None``: not made) over fixed choices.

    Args:
        choices: every decision's possible values, by name.
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]]) -> None:
        self._choices = {name: list(values) for name, values in sorted(choices.items())}
        self.columns: list[str] = []
        # Per decision: its first column, whether it is numeric, and a one-hot column per choice
        # (keyed by type and value: ``True == 1`` must not make a bool choice an int one).
        self._layout: list[tuple[str, int, bool, dict[tuple[str, Any], int]]] = []
        for name, values in self._choices.items():
            numeric = _numeric(values)
            start = len(self.columns)
            if numeric:
                self.columns.append(name)
                onehot = {_key(v): start for v in values}
            else:
                onehot = {_key(v): start + i for i, v in enumerate(values)}
                self.columns += [f"{name}={v}" for v in values]
            self.columns.append(f"{name}:absent")
            self._layout.append((name, start, numeric, onehot))
        self._floor = {name: min(v) - 1.0 for name, v in self._choices.items() if _numeric(v)}

    def encode(self, assignments: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """One row of :attr:`columns` per assignment; values outside the choices encode as absent."""
        out = np.zeros((len(assignments), len(self.columns)))
        for row, assignment in enumerate(assignments):
            for name, start, numeric, onehot in self._layout:
                value = assignment.get(name)
                column = onehot.get(_key(value)) if value is not None else None
                absent = start + (1 if numeric else len(onehot))
                if column is None:
                    out[row, absent] = 1.0
                    if numeric:
                        # Absent sits below every choice, so a split on the value also separates it.
                        out[row, start] = self._floor[name]
                elif numeric:
                    out[row, start] = float(value)
                else:
                    out[row, column] = 1.0
        return out
