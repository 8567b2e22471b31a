"""`SearchSpace`: a parsed, validated space that turns decisions into `UNetSpec` s.

The same space is used three ways, all through :meth:`SearchSpace.resolve`:

* by Optuna (:meth:`suggest`, any trial, any sampler);
* without Optuna (:meth:`sample` with a seed, :meth:`enumerate` for small spaces);
* by counting (:meth:`cardinality`, exact, without enumerating every point).

Per-level decisions use a fixed-length encoding: one parameter per level up to the largest
``levels`` value (``level0.conv``, ``level1.conv``, ...), always suggested, the unused ones
ignored, so that evolutionary samplers can cross over and mutate them position by position.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError
from nas.space.conditions import Term
from nas.space.decisions import Decision, Fixed, IntRange, Tie
from nas.spec import LevelSpec, UNetSpec

if TYPE_CHECKING:
    import optuna

    from evaluators.budget import Budget
    from evaluators.latent import LatentConfig

__all__ = ["CONSTRAINT_KEYS", "DataConfig", "Objective", "SearchSpace"]

# Constraint key -> (metric, "max" or "min"); each metric is an objective-capable one of
# nas.metrics.METRICS (tests/test_space.py checks it).
CONSTRAINT_KEYS: dict[str, tuple[str, str]] = {
    "max_params": ("params", "max"),
    "max_macs": ("macs", "max"),
    "min_throughput": ("throughput", "min"),
    "max_latency_ms": ("latency_ms", "max"),
    "max_peak_mem_mb": ("peak_mem_mb", "max"),
}

Chooser = Callable[[str, Decision], Any]


@dataclass(frozen=True)
class DataConfig:
    """Which images (or, with ``frames > 1``, video clips) a space is searched on."""

    dataset: str = "mnist"
    image_size: int = 28
    channels: int = 1
    frames: int = 1  # > 1: clips of this many frames (evaluators.video_data), a video U-Net
    # The space's top-level latent: key: U-Nets over an autoencoder's latents (evaluators.latent).
    latent: LatentConfig | None = None

    @property
    def model_image_size(self) -> int:
        """Height and width of what the U-Nets model: the images, or their latents."""
        return self.latent.latent_size if self.latent is not None else self.image_size

    @property
    def model_channels(self) -> int:
        """Channels of what the U-Nets model: the images', or the latents'."""
        return self.latent.channels if self.latent is not None else self.channels


@dataclass(frozen=True)
class Objective:
    """One objective of the search: an evaluator metric and its direction."""

    metric: str
    direction: str


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space; build it with :func:`nas.space.load_space`.

    ``global_decisions`` holds one :class:`Decision` per global spec field and ``levels``;
    ``level_decisions`` one tuple of per-level decisions (length ``max_levels``) per
    :class:`LevelSpec` field; ``order`` is a dependency order of both (per-level keys as
    ``"per_level.<key>"``) so that conditions and ties read resolved values only.
    """

    name: str
    source: str
    data: DataConfig
    objectives: tuple[Objective, ...]
    constraints: dict[str, float]
    budgets: dict[str, Budget]
    global_decisions: dict[str, Decision]
    level_decisions: dict[str, tuple[Decision, ...]]
    order: tuple[str, ...]
    description: str = ""
    pivots: frozenset[str] = field(default_factory=frozenset)

    # ----- basic facts ------------------------------------------------------------------
    def constraint_values(self, costs: dict[str, Any]) -> dict[str, float]:
        """Each constraint's value for ``costs`` (metric -> number), in Optuna's convention:
        ``<= 0`` is met, ``> 0`` broken by that much.  Constraints whose metric ``costs`` lacks
        (measured only later, e.g. throughput) are left out."""
        values: dict[str, float] = {}
        for key, limit in self.constraints.items():
            metric, kind = CONSTRAINT_KEYS[key]
            if costs.get(metric) is None:
                continue
            value = float(costs[metric])
            values[key] = value - limit if kind == "max" else limit - value
        return values

    @property
    def max_levels(self) -> int:
        """The largest number of levels any point of the space has."""
        return max(v for v in self.global_decisions["levels"].values())

    def param_names(self) -> list[tuple[str, Decision]]:
        """Every searched parameter (Optuna name, decision), in resolution order."""
        out = []
        for node in self.order:
            if node.startswith("per_level."):
                key = node.removeprefix("per_level.")
                out += [(f"level{i}.{key}", d) for i, d in enumerate(self.level_decisions[key]) if d.searched]
            elif self.global_decisions[node].searched:
                out.append((node, self.global_decisions[node]))
        return out

    # ----- resolution -------------------------------------------------------------------
    def resolve(self, choose: Chooser) -> UNetSpec:
        """Resolve every decision (searched ones through ``choose(name, decision)``) to a spec.

        Raises :class:`ConfigError` when the resolved values do not form a valid spec.
        """
        state = _Resolution(self)
        for node in self.order:
            if node.startswith("per_level."):
                key = node.removeprefix("per_level.")
                for i in range(self.max_levels):
                    state.set(key, i, state.decide(key, i, choose))
            else:
                state.set(node, None, state.decide(node, None, choose))
        return state.spec()

    def suggest(self, trial: optuna.trial.BaseTrial) -> UNetSpec:
        """Resolve through an Optuna trial (any sampler); conditional keys become conditional params."""

        def choose(name: str, decision: Decision) -> Any:
            if isinstance(decision, IntRange):
                return trial.suggest_int(name, decision.low, decision.high, step=decision.step)
            return trial.suggest_categorical(name, list(decision.values()))

        return self.resolve(choose)

    def sample(self, n: int, *, seed: int = 0, max_tries: int | None = None) -> list[UNetSpec]:
        """``n`` specs drawn uniformly per decision with ``seed`` (no Optuna needed).

        Points that do not form a valid spec are redrawn (rejection sampling); at most
        ``max_tries`` draws (default ``50 * n``).
        """
        rng = random.Random(seed)
        out: list[UNetSpec] = []
        tries = 0
        limit = max_tries or 50 * n
        last: ConfigError | None = None
        while len(out) < n:
            tries += 1
            if tries > limit:
                why = f"; the last draw failed with: {last}" if last is not None else ""
                raise ConfigError(f"only {len(out)} valid specs in {limit} draws{why}", source=self.source)
            try:
                out.append(self.resolve(lambda _name, d: rng.choice(d.values())))
            except ConfigError as err:
                last = err
        return out

    def enumerate(self, *, limit: int = 100_000) -> Iterator[UNetSpec]:
        """Every distinct architecture of the space (for small spaces; stops after ``limit``)."""
        count = self.cardinality()
        if count > limit:
            raise ConfigError(f"the space has {count} points, more than the enumeration limit {limit}",
                              source=self.source)
        yield from _enumerate(self, every_key_is_pivot=True, yield_specs=True)  # type: ignore[misc]

    def cardinality(self) -> int:
        """The exact number of distinct architectures (distinct resolved specs).

        Only keys that conditions read ("pivots") and ``levels`` are enumerated; every other
        active decision multiplies the count by its number of values.
        """
        return sum(_enumerate(self, every_key_is_pivot=False, yield_specs=False))  # type: ignore[arg-type]

    def extreme_spec(self) -> UNetSpec:
        """The point taking the smallest value of every numeric decision and the first option of
        every other one: usually among the smallest networks, used to probe constraints."""

        def smallest(_name: str, decision: Decision) -> Any:
            values = decision.values()
            numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if "none" in values:
                return "none"
            return min(numeric) if len(numeric) == len(values) else values[0]

        return self.resolve(smallest)


class _Resolution:
    """Mutable state while one point of a space is resolved."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.globals: dict[str, Any] = {}
        self.levels: list[dict[str, Any]] = [{} for _ in range(space.max_levels)]

    def set(self, key: str, level: int | None, value: Any) -> None:
        if level is None:
            self.globals[key] = value
        else:
            self.levels[level][key] = value

    def lookup(self, key: str, level: int | None) -> Any:
        if level is not None and key in self.space.level_decisions:
            return self.levels[level][key]
        return self.globals[key]

    def term_holds(self, term: Term, level: int | None) -> bool:
        if level is None and term.key in self.space.level_decisions:
            # A per-level key in a global condition: true at any active level.
            active = self.levels[: self.globals["levels"]]
            return any(term.holds(lv[term.key]) for lv in active)
        return term.holds(self.lookup(term.key, level))

    def active(self, decision: Decision, level: int | None) -> bool:
        return decision.when is None or decision.when.evaluate(lambda t: self.term_holds(t, level))

    def decide(self, key: str, level: int | None, choose: Chooser) -> Any:
        decision = self.decision(key, level)
        if isinstance(decision, Tie):
            source_level = level if decision.level is None else decision.level
            return self.lookup(decision.target, source_level) + decision.offset
        if not self.active(decision, level):
            return inactive_value(key, decision)
        if isinstance(decision, Fixed) or not decision.searched:
            return decision.values()[0]
        name = key if level is None else f"level{level}.{key}"
        return choose(name, decision)

    def decision(self, key: str, level: int | None) -> Decision:
        if level is None:
            return self.space.global_decisions[key]
        return self.space.level_decisions[key][level]

    def spec(self) -> UNetSpec:
        n = self.globals["levels"]
        levels = tuple(LevelSpec(**lv) for lv in self.levels[:n])
        fields = {k: v for k, v in self.globals.items() if k != "levels"}
        return UNetSpec(levels=levels, image_size=self.space.data.model_image_size,
                        in_channels=self.space.data.model_channels, frames=self.space.data.frames, **fields)


def inactive_value(key: str, decision: Decision) -> Any:
    """The value a key takes while its ``when`` is false: its ``default``, else the spec's."""
    if decision.default is not None:
        return decision.default
    if key in LevelSpec.__dataclass_fields__:
        return LevelSpec.__dataclass_fields__[key].default
    return UNetSpec.__dataclass_fields__[key].default


def _enumerate(space: SearchSpace, *, every_key_is_pivot: bool, yield_specs: bool) -> Iterator[Any]:
    """Depth-first walk over pivot values; yields a count per pivot assignment (or each spec)."""
    items: list[tuple[str, int | None]] = []
    for node in space.order:
        if node.startswith("per_level."):
            key = node.removeprefix("per_level.")
            items += [(key, i) for i in range(space.max_levels)]
        else:
            items.append((node, None))
    state = _Resolution(space)

    def walk(index: int, multiplicity: int) -> Iterator[Any]:
        if index == len(items):
            yield state.spec() if yield_specs else multiplicity
            return
        key, level = items[index]
        decision = state.decision(key, level)
        inactive_level = level is not None and level >= state.globals["levels"]
        if inactive_level or isinstance(decision, Tie) or not decision.searched or not state.active(decision, level):
            # Not a free choice here: one value, taken as resolve() would take it.
            state.set(key, level, state.decide(key, level, lambda _n, d: d.values()[0]))
            yield from walk(index + 1, multiplicity)
            return
        values = decision.values()
        if every_key_is_pivot or key in space.pivots or key == "levels":
            for value in values:
                state.set(key, level, value)
                yield from walk(index + 1, multiplicity)
        else:
            state.set(key, level, values[0])
            yield from walk(index + 1, multiplicity * len(values))

    yield from walk(0, 1)
