"""Space-level validation: checks that look at a parsed space as a whole, at load time.

What :func:`nas.space.load_space` checks here, beyond parsing each key:

* values: every value a decision can take (and its ``default``) passes the spec's own rule for
  that field (:func:`nas.spec.check_field`: type, named choices, numeric range), so a value the
  spec refuses is refused at load time with the YAML key path;
* references: every key a ``when:`` condition or a ``tie:`` names exists, and a global key ties
  to no per-level key;
* order: conditions and ties form no cycle, and a dependency order of the keys (the order in
  which :meth:`SearchSpace.resolve` resolves them); the "pivots" that conditions read;
* combinations: no value of ``levels`` is impossible for the image size, and ``norm_groups`` and
  ``head_channels`` divide every width a level can have;
* constraints: some probed point of the space meets every static constraint (parameters, MACs).

Every failure is a :class:`nas.errors.ConfigError` naming the key path.
"""

from __future__ import annotations

import itertools
from typing import Any

from nas.errors import ConfigError, close_match_hint
from nas.front import constraints_met
from nas.space.decisions import Decision, Tie
from nas.space.search_space import SearchSpace, inactive_value
from nas.spec import check_field

__all__ = [
    "check_combinations",
    "check_constraints_reachable",
    "check_references",
    "check_values",
    "dependency_order",
    "pivot_keys",
]


def check_values(decision: Decision, *, key: str, where: str) -> None:
    """Check every value ``decision`` can take (and its default) against spec field ``key``.

    Errors carry the YAML key path ``where`` (e.g. ``space.per_level.conv``) instead of the
    spec field name.
    """
    values = list(decision.values())
    if decision.default is not None:
        values.append(decision.default)
    for value in values:
        try:
            check_field(key, value)
        except ConfigError as err:
            raise ConfigError(err.message, key=where) from None


def _references(decision: Decision) -> set[str]:
    refs = set(decision.when.keys) if decision.when else set()
    if isinstance(decision, Tie):
        refs.add(decision.target)
    return refs


def check_references(global_decisions: dict[str, Decision],
                     level_decisions: dict[str, tuple[Decision, ...]]) -> None:
    """Every key a condition or tie names exists; a global key never ties to a per-level key."""
    known = set(global_decisions) | set(level_decisions)
    for scope, table in (("space", {k: (d,) for k, d in global_decisions.items()}),
                         ("space.per_level", level_decisions)):
        for key, decisions in table.items():
            for decision in decisions:
                for ref in _references(decision):
                    if ref not in known:
                        raise ConfigError(f"refers to unknown key {ref!r}{close_match_hint(ref, known)}",
                                          key=f"{scope}.{key}")
                    if scope == "space" and isinstance(decision, Tie) and ref in level_decisions:
                        raise ConfigError(f"a global key cannot tie to the per-level key {ref!r}",
                                          key=f"{scope}.{key}")
    for key, decisions in level_decisions.items():
        for own, decision in enumerate(decisions):
            if not isinstance(decision, Tie) or decision.level is None:
                continue
            where = f"space.per_level.{key}"
            if decision.target not in level_decisions:
                raise ConfigError(f"'level' needs a per-level key to tie to; {decision.target!r} is global",
                                  key=where)
            if decision.level >= len(level_decisions[decision.target]):
                raise ConfigError(f"ties to level {decision.level}, but the space has "
                                  f"{len(level_decisions[decision.target])} levels", key=where)
            # Levels of one key resolve in order, so a key can copy only an earlier level of itself.
            if decision.target == key and decision.level >= own:
                raise ConfigError(f"level {own} ties to level {decision.level} of the same key; "
                                  "expected an earlier level", key=where)


def dependency_order(global_decisions: dict[str, Decision],
                     level_decisions: dict[str, tuple[Decision, ...]]) -> tuple[str, ...]:
    """Topological order of keys; per-level keys appear as ``per_level.<key>``.

    Raises :class:`ConfigError` when conditions or ties form a cycle.
    """

    def node(ref: str) -> str:
        return f"per_level.{ref}" if ref in level_decisions else ref

    deps: dict[str, set[str]] = {}
    for key, decision in global_decisions.items():
        refs = _references(decision)
        deps[key] = {node(r) for r in refs} | ({"levels"} if key != "levels" else set())
    for key, decisions in level_decisions.items():
        # A tie to an earlier level of the key itself is no cycle: levels resolve in order
        # (check_references allows only earlier levels).
        refs = set().union(*(_references(d) for d in decisions
                             if not (isinstance(d, Tie) and d.target == key and d.level is not None)))
        deps[f"per_level.{key}"] = {node(r) for r in refs} | {"levels"}
    order: list[str] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name):], name])
            raise ConfigError(f"conditions or ties form a cycle: {cycle}", key=f"space.{visiting[-1]}")
        visiting.append(name)
        for dep in sorted(deps[name]):
            visit(dep)
        visiting.pop()
        order.append(name)

    visit("levels")
    for name in deps:
        visit(name)
    return tuple(order)


def pivot_keys(global_decisions: dict[str, Decision],
               level_decisions: dict[str, tuple[Decision, ...]]) -> frozenset[str]:
    """Keys whose value a condition reads, closed over ties (see SearchSpace.cardinality)."""
    all_decisions = [*global_decisions.items()] + [(k, d) for k, ds in level_decisions.items() for d in ds]
    pivots = {ref for _, d in all_decisions if d.when for ref in d.when.keys}
    changed = True
    while changed:
        changed = False
        for key, d in all_decisions:
            if key in pivots and isinstance(d, Tie) and d.target not in pivots:
                pivots.add(d.target)
                changed = True
    return frozenset(pivots)


def _possible(decision: Decision, key: str) -> list[Any]:
    """Every value ``key`` can end up with: the decision's values, and its inactive value."""
    values = list(decision.values())
    if decision.when is not None and not isinstance(decision, Tie):
        values.append(inactive_value(key, decision))
    return values


def check_ties(global_decisions: dict[str, Decision], level_decisions: dict[str, tuple[Decision, ...]]) -> None:
    """Every value a tie can give its key is valid for that key (call after :func:`dependency_order`,
    which rules out cycles): a tie copies another key's value plus an offset, so a tie to a key of
    another kind (``mid_attention: {tie: skip_fusion}``), or an offset on names, would only fail
    when a trial resolves it."""

    def possible(key: str, level: int | None) -> list[Any]:
        decision = global_decisions[key] if level is None or key not in level_decisions else level_decisions[key][level]
        if not isinstance(decision, Tie):
            return _possible(decision, key)
        target_level = (level if decision.level is None else decision.level) \
            if decision.target in level_decisions else None
        sources = possible(decision.target, target_level)
        if decision.offset and not all(isinstance(v, int) and not isinstance(v, bool) for v in sources):
            raise ConfigError(f"a tie with an offset needs an integer key, but {decision.target!r} takes "
                              f"{sorted(map(repr, sources))}", key=where(key, level))
        values = [v + decision.offset if decision.offset else v for v in sources]
        for source, value in zip(sources, values, strict=True):
            try:
                check_field(key, value)
            except ConfigError as err:
                raise ConfigError(f"ties to {decision.target!r}, which can be {source!r}: {err.message}",
                                  key=where(key, level)) from None
        return values

    def where(key: str, level: int | None) -> str:
        return f"space.{key}" if level is None else f"space.per_level.{key}"

    for key in global_decisions:
        if key != "levels":
            possible(key, None)
    for key, decisions in level_decisions.items():
        for level in range(len(decisions)):
            possible(key, level)


def check_combinations(space: SearchSpace) -> None:
    """Impossible combinations, checked over every value each key can take."""
    g, lv = space.global_decisions, space.level_decisions
    factor = 2 ** (space.max_levels - 1)
    size = space.data.model_image_size
    if size % factor:
        what = (f"latent size {size} (data.image_size / latent.factor)" if space.data.latent is not None
                else f"image size {size} (data.image_size)")
        raise ConfigError(f"{what} is not divisible by 2^(levels-1) = {factor} for {space.max_levels} levels",
                          key="space.levels")
    if space.data.frames == 1:
        for i, decision in enumerate(lv["temporal"]):
            if any(v != "none" for v in _possible(decision, "temporal")):
                raise ConfigError(f"level {i} can have a temporal layer, which needs video data: set data.frames "
                                  "above 1 (clips) or keep temporal: none", key="space.per_level.temporal")
    bases = _possible(g["base_channels"], "base_channels")
    groups = _possible(g["norm_groups"], "norm_groups")
    heads = list(g["head_channels"].values())  # while inactive, no layer uses it
    attention_possible_mid = any(v != "none" for v in _possible(g["mid_attention"], "mid_attention"))
    for i in range(space.max_levels):
        mults = _possible(lv["channel_mult"][i], "channel_mult")
        attention_here = any(v != "none" for v in _possible(lv["attention"][i], "attention"))
        # The bottleneck runs at the last level's width: level i is last when levels == i + 1.
        attention_here |= attention_possible_mid and (i + 1) in g["levels"].values()
        for base, mult, group in itertools.product(bases, mults, groups):
            if (base * mult) % group:
                raise ConfigError(
                    f"{group} does not divide the {base * mult} channels of level {i} "
                    f"(base_channels {base} x channel_mult {mult})", key="space.norm_groups")
        if attention_here:
            for base, mult, head in itertools.product(bases, mults, heads):
                if base * mult > head and (base * mult) % head:
                    raise ConfigError(
                        f"{head} does not divide the {base * mult} channels of level {i} "
                        f"(base_channels {base} x channel_mult {mult}), which may carry attention",
                        key="space.head_channels")


def check_constraints_reachable(space: SearchSpace, probes: int = 24) -> None:
    """Fail when no probed point meets the constraints (a constraint no point can meet)."""
    from nas.cost import static_costs  # builds on the meta device: no memory, fast

    candidates = [space.extreme_spec(), *space.sample(probes, seed=0)]
    best: dict[str, float] = {}  # the smallest excess over each limit among the probes
    for spec in candidates:
        costs = static_costs(spec, needs=set(space.constraints))
        # Only the static costs are known here; throughput, latency and memory are measured later.
        values = space.constraint_values(costs)
        for key, value in values.items():
            best[key] = min(best.get(key, value), value)
        if constraints_met(values.values()):
            return
    # Static costs only have upper limits, so limit + excess is the smallest value probed.
    key = next(k for k in space.constraints if best.get(k, 0) > 0)
    raise ConfigError(f"no point of the space meets {space.constraints[key]:g}: the smallest of "
                      f"{len(candidates)} probed points has {space.constraints[key] + best[key]:.0f}",
                      key=f"constraints.{key}")
