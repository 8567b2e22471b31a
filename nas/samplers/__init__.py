"""Samplers that propose architectures: a name -> factory registry over Optuna samplers.

Every entry builds an ``optuna.samplers.BaseSampler`` from a seed, so the search loop, Ray
Tune's ``OptunaSearch`` and the tests treat them alike.  ``evolution`` and ``rl`` are ours
(:mod:`nas.samplers.evolution`, :mod:`nas.samplers.rl`); the rest are Optuna's, with
population sizes chosen for NAS budgets of tens to a few hundred trials.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.samplers import (
    BaseSampler,
    NSGAIIISampler,
    NSGAIISampler,
    RandomSampler,
    TPESampler,
)

from nas.errors import ConfigError, close_match_hint
from nas.samplers.evolution import EvolutionSampler
from nas.samplers.rl import ReinforceSampler

__all__ = ["SAMPLERS", "EvolutionSampler", "ReinforceSampler", "make_sampler", "sampler_names"]

# Small enough that a 100-trial study runs several generations.
_GA_POPULATION = 20


def _nsga3(seed: int | None) -> BaseSampler:
    # NSGA-III is still experimental in Optuna 5; choosing it here is deliberate.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return NSGAIIISampler(population_size=_GA_POPULATION, seed=seed)


SAMPLERS: dict[str, Callable[[int | None], BaseSampler]] = {
    "nsga2": lambda seed: NSGAIISampler(population_size=_GA_POPULATION, seed=seed),
    "nsga3": _nsga3,
    "tpe": lambda seed: TPESampler(multivariate=True, constant_liar=True, seed=seed),
    "random": lambda seed: RandomSampler(seed=seed),
    "evolution": lambda seed: EvolutionSampler(seed=seed),
    "rl": lambda seed: ReinforceSampler(seed=seed),
}


def sampler_names() -> list[str]:
    """Registered sampler names, in registration order (for ``argparse`` ``choices=``)."""
    return list(SAMPLERS)


def make_sampler(name: str, *, seed: int | None) -> optuna.samplers.BaseSampler:
    """Build the sampler registered as ``name``; unknown names raise :class:`ConfigError`."""
    try:
        factory = SAMPLERS[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown sampler {name!r}{close_match_hint(name, SAMPLERS)}; "
            f"valid: {', '.join(SAMPLERS)}",
            key="sampler",
        ) from None
    return factory(seed)
