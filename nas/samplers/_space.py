"""Decisions as our samplers see them: a finite list of choices per parameter.

A NAS space is categorical choices and integer ranges (``suggest_int(lo, hi, step)``), so both
samplers treat every parameter as "one of these values".  Float parameters are tolerated (they
are resampled uniformly) so that a sampler never crashes on a space it was not designed for.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

__all__ = ["choices_of", "contains", "index_of", "mutate_value", "network_params", "random_value"]

# An int range larger than this is not enumerated (the RL policy would need one logit per value).
MAX_ENUMERATED = 4096
_LEVEL_PARAM = re.compile(r"^level(\d+)\.")  # the space's per-level parameters: level<i>.<key>


def network_params(params: dict[str, Any]) -> dict[str, Any]:
    """The decisions of ``params`` that shape the network: without the ``level<i>.*`` ones of
    levels it does not have (``i >= levels``).  The spaces' fixed-length encoding asks every
    level's decisions at every depth (``nas.space.search_space``), so two assignments that
    differ only there are one architecture; on the light benchmark's replay, 344 of local
    search's 2,000 trials were such repeats."""
    depth = params.get("levels")
    if isinstance(depth, bool) or not isinstance(depth, int):
        return dict(params)
    return {k: v for k, v in params.items() if not ((m := _LEVEL_PARAM.match(k)) and int(m.group(1)) >= depth)}


def choices_of(distribution: BaseDistribution) -> list[Any] | None:
    """All values of a categorical or (small) int distribution, or ``None`` if not enumerable."""
    if isinstance(distribution, CategoricalDistribution):
        return list(distribution.choices)
    if isinstance(distribution, IntDistribution):
        step = 1 if distribution.log else distribution.step
        count = (distribution.high - distribution.low) // step + 1
        if count <= MAX_ENUMERATED:
            return list(range(distribution.low, distribution.high + 1, step))
    return None


def contains(distribution: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (an external value) is a legal value of ``distribution``."""
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


def _index_of(choices: list[Any], value: Any) -> int | None:
    # Compare type as well: ``True == 1`` must not confuse a bool choice with an int one.
    for i, choice in enumerate(choices):
        if type(choice) is type(value) and choice == value:
            return i
    return None


def random_value(distribution: BaseDistribution, rng: np.random.Generator) -> Any:
    """A uniformly random value of ``distribution``."""
    choices = choices_of(distribution)
    if choices is not None:
        return choices[int(rng.integers(len(choices)))]
    if isinstance(distribution, IntDistribution):
        if distribution.log:
            value = np.exp(rng.uniform(np.log(distribution.low), np.log(distribution.high + 1)))
            return int(min(max(np.floor(value), distribution.low), distribution.high))
        count = (distribution.high - distribution.low) // distribution.step + 1
        return distribution.low + distribution.step * int(rng.integers(count))
    if isinstance(distribution, FloatDistribution):
        if distribution.log:
            return float(np.exp(rng.uniform(np.log(distribution.low), np.log(distribution.high))))
        if distribution.step is not None:
            count = round((distribution.high - distribution.low) / distribution.step) + 1
            return float(distribution.low + distribution.step * int(rng.integers(count)))
        return float(rng.uniform(distribution.low, distribution.high))
    raise TypeError(f"unsupported distribution {distribution!r}")


def mutate_value(distribution: BaseDistribution, value: Any, rng: np.random.Generator) -> Any:
    """A value different from ``value`` when the distribution has more than one.

    Categorical: another choice, uniformly.  Integer: half the time a neighbouring value (one
    step up or down: small moves refine depth/width), otherwise any other value (large moves
    escape local optima).  Float: a uniform resample.
    """
    choices = choices_of(distribution)
    if choices is None:
        return random_value(distribution, rng)
    current = _index_of(choices, value)
    if len(choices) <= 1:
        return choices[0]
    if current is None:
        return choices[int(rng.integers(len(choices)))]
    if isinstance(distribution, IntDistribution) and rng.random() < 0.5:
        neighbours = [i for i in (current - 1, current + 1) if 0 <= i < len(choices)]
        return choices[neighbours[int(rng.integers(len(neighbours)))]]
    other = int(rng.integers(len(choices) - 1))
    return choices[other if other < current else other + 1]


def index_of(distribution: BaseDistribution, value: Any) -> int | None:
    """Position of ``value`` in :func:`choices_of` ``(distribution)``, or ``None``."""
    choices = choices_of(distribution)
    return None if choices is None else _index_of(choices, value)
