"""Load a search-space YAML file into a validated :class:`SearchSpace`.

Top-level keys::

    name: light                 # defaults to the file name
    extends: other.yaml         # optional: inherit a space and override keys
    description: ...
    data: {dataset: mnist, image_size: 28, channels: 1}
    objectives: [{metric: val_loss, direction: minimize}, ...]
    constraints: {max_params: 2.0e6}
    budgets: {smoke: {...}, cpu: {...}, gpu: {...}}   # merged over the built-in defaults
    space: {<spec field>: <decision>, levels: <decision>, per_level: {<level field>: <decision>}}

Every error names the file, the key path and what was expected (:class:`nas.errors.ConfigError`).
Spec fields not named in ``space`` keep `UNetSpec` defaults; ``decoder_blocks`` defaults to
``{tie: blocks, offset: 1}`` (DDPM).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import yaml

from evaluators.budget import DEFAULT_BUDGETS, parse_budget
from nas.errors import ConfigError, close_match_hint
from nas.space.decisions import Choice, Decision, Fixed, IntRange, Tie, parse_decision
from nas.space.search_space import CONSTRAINT_KEYS, METRICS, DataConfig, Objective, SearchSpace
from nas.spec import (LEVEL_FIELDS, MAX_BLOCKS, MAX_DECODER_BLOCKS, MAX_LEVELS, NAMED_CHOICES,
                      LevelSpec, UNetSpec)

__all__ = ["BUNDLED_DIR", "load_space", "resolve_space_path"]

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
TOP_KEYS = ("name", "extends", "description", "data", "objectives", "constraints", "budgets", "space")
# Spec fields that come from `data:` rather than from `space:`.
DATA_FIELDS = ("image_size", "in_channels")
GLOBAL_KEYS = tuple(k for k in UNetSpec.__dataclass_fields__ if k not in DATA_FIELDS)
FIELD_TYPES = {**{k: f.type for k, f in UNetSpec.__dataclass_fields__.items()},
               **{k: f.type for k, f in LevelSpec.__dataclass_fields__.items()}}
INT_RANGES = {"blocks": (0, MAX_BLOCKS), "decoder_blocks": (0, MAX_DECODER_BLOCKS),
              "levels": (1, MAX_LEVELS), "channel_mult": (1, 64)}


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else the bundled ``search_spaces/`` file of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (BUNDLED_DIR / path.name, BUNDLED_DIR / f"{path.name}.yaml"):
        if candidate.is_file():
            return candidate
    bundled = sorted(p.name for p in BUNDLED_DIR.glob("*.yaml"))
    hint = close_match_hint(path.name, bundled)
    raise ConfigError(f"no such file, and no bundled space of that name{hint}; bundled: {bundled}",
                      source=str(name_or_path))


def load_space(name_or_path: str | Path, *, check_constraints: bool = True) -> SearchSpace:
    """Load, merge (``extends``) and validate a space; a path or a bundled name like ``light.yaml``.

    ``check_constraints`` probes the space for a point meeting its constraints (builds a few
    networks on the meta device; about a second).
    """
    path = resolve_space_path(name_or_path)
    raw = _load_merged(path, seen=())
    source = str(path)
    try:
        space = _build(raw, source=source, default_name=path.stem)
        if check_constraints and space.constraints:
            _check_constraints_reachable(space)
    except ConfigError as err:
        raise err.within(source=source) from None
    return space


# ----- YAML and extends --------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"cannot read file: {err.strerror}", source=str(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or "invalid YAML"
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"YAML syntax error{where}: {problem}", source=str(path)) from None
    if not isinstance(data, dict):
        raise ConfigError(f"expected a mapping at the top level, got {type(data).__name__}", source=str(path))
    for key in data:
        if key not in TOP_KEYS:
            raise ConfigError(f"unknown key{close_match_hint(key, TOP_KEYS)}; valid keys are {list(TOP_KEYS)}",
                              key=str(key), source=str(path))
    return data


def _is_decision_mapping(value: Any) -> bool:
    return isinstance(value, dict) and any(k in value for k in ("choice", "int", "tie"))


def _merge(base: Any, override: Any) -> Any:
    """Deep merge; a decision mapping in ``override`` replaces rather than merges."""
    if isinstance(base, dict) and isinstance(override, dict) and not _is_decision_mapping(override):
        out = dict(base)
        for key, value in override.items():
            out[key] = _merge(base[key], value) if key in base else value
        return out
    return override


def _load_merged(path: Path, *, seen: tuple[Path, ...]) -> dict[str, Any]:
    if path.resolve() in seen:
        chain = " -> ".join(p.name for p in (*seen, path))
        raise ConfigError(f"'extends' forms a cycle: {chain}", key="extends", source=str(path))
    data = _read_yaml(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"expected a space file name, got {parent!r}", key="extends", source=str(path))
    local = path.parent / parent
    try:
        parent_path = local if local.is_file() else resolve_space_path(parent)
    except ConfigError as err:
        raise ConfigError(err.message, key="extends", source=str(path)) from None
    base = _load_merged(parent_path, seen=(*seen, path.resolve()))
    base.pop("name", None)  # a child is its own space
    return _merge(base, data)


# ----- building and validation ---------------------------------------------------------------
def _build(raw: dict[str, Any], *, source: str, default_name: str) -> SearchSpace:
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a non-empty string, got {name!r}", key="name")
    data = _parse_data(raw.get("data", {}))
    objectives = _parse_objectives(raw.get("objectives"))
    constraints = _parse_constraints(raw.get("constraints", {}))
    budgets = _parse_budgets(raw.get("budgets", {}))
    global_decisions, level_decisions = _parse_space(raw.get("space"))
    order = _dependency_order(global_decisions, level_decisions)
    pivots = _pivots(global_decisions, level_decisions)
    space = SearchSpace(
        name=name, source=source, data=data, objectives=objectives, constraints=constraints,
        budgets=budgets, global_decisions=global_decisions, level_decisions=level_decisions,
        order=order, description=str(raw.get("description", "")), pivots=pivots)
    _check_combinations(space)
    return space


def _parse_data(raw: Any) -> DataConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {raw!r}", key="data")
    valid = list(DataConfig.__dataclass_fields__)
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown key{close_match_hint(key, valid)}; valid keys are {valid}", key=f"data.{key}")
    data = DataConfig(**raw)
    if not isinstance(data.dataset, str):
        raise ConfigError(f"expected a dataset name or path, got {data.dataset!r}", key="data.dataset")
    for key in ("image_size", "channels"):
        value = getattr(data, key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"expected a positive integer, got {value!r}", key=f"data.{key}")
    return data


def _parse_objectives(raw: Any) -> tuple[Objective, ...]:
    if raw is None:
        raw = [{"metric": m, "direction": METRICS[m]} for m in ("val_loss", "fid_proxy", "throughput")]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"expected a non-empty list of {{metric, direction}}, got {raw!r}", key="objectives")
    out = []
    for i, item in enumerate(raw):
        key = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) - {"metric", "direction"} or "metric" not in item:
            raise ConfigError(f"expected {{metric: NAME, direction: minimize|maximize}}, got {item!r}", key=key)
        metric = item["metric"]
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}{close_match_hint(metric, METRICS)}; "
                              f"valid metrics are {list(METRICS)}", key=f"{key}.metric")
        direction = item.get("direction", METRICS[metric])
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"expected minimize or maximize, got {direction!r}", key=f"{key}.direction")
        out.append(Objective(metric=metric, direction=direction))
    metrics = [o.metric for o in out]
    if len(set(metrics)) != len(metrics):
        raise ConfigError(f"a metric appears twice: {metrics}", key="objectives")
    return tuple(out)


def _parse_constraints(raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {raw!r}", key="constraints")
    out = {}
    for key, value in raw.items():
        if key not in CONSTRAINT_KEYS:
            raise ConfigError(f"unknown constraint{close_match_hint(key, CONSTRAINT_KEYS)}; "
                              f"valid constraints are {list(CONSTRAINT_KEYS)}", key=f"constraints.{key}")
        if isinstance(value, str):  # YAML 1.1 reads "2e6" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"expected a positive number, got {value!r}", key=f"constraints.{key}")
        out[key] = float(value)
    return out


def _parse_budgets(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of budget names, got {raw!r}", key="budgets")
    budgets = dict(DEFAULT_BUDGETS)
    for name, fields in raw.items():
        try:
            budgets[name] = parse_budget(fields, base=DEFAULT_BUDGETS.get(name))
        except ConfigError as err:
            raise err.within(key_prefix=f"budgets.{name}") from None
    return budgets


def _parse_space(raw: Any) -> tuple[dict[str, Decision], dict[str, tuple[Decision, ...]]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of decisions, got {raw!r}", key="space")
    valid = ["levels", "per_level", *[k for k in GLOBAL_KEYS if k != "levels"]]
    for key in raw:
        if key not in valid:
            extra = " (image size and channels come from 'data:')" if key in ("image_size", "in_channels", "channels") else ""
            raise ConfigError(f"unknown key{close_match_hint(key, valid)}{extra}; valid keys are {sorted(valid)}",
                              key=f"space.{key}")
    global_decisions: dict[str, Decision] = {}
    for key in GLOBAL_KEYS:
        if key == "levels":
            decision = parse_decision(raw.get("levels", 2), key="space.levels")
            if isinstance(decision, Tie) or decision.when is not None:
                raise ConfigError("levels must be a value, a choice or an int range", key="space.levels")
        elif key in raw:
            decision = parse_decision(raw[key], key=f"space.{key}")
        else:
            decision = Fixed(value=UNetSpec.__dataclass_fields__[key].default)
        _check_values(decision, key=key, where=f"space.{key}")
        global_decisions[key] = decision
    max_levels = max(global_decisions["levels"].values())

    per_level = raw.get("per_level", {})
    if not isinstance(per_level, dict):
        raise ConfigError(f"expected a mapping of per-level decisions, got {per_level!r}", key="space.per_level")
    for key in per_level:
        if key not in LEVEL_FIELDS:
            raise ConfigError(f"unknown key{close_match_hint(key, LEVEL_FIELDS)}; valid per-level keys are "
                              f"{list(LEVEL_FIELDS)}", key=f"space.per_level.{key}")
    level_decisions: dict[str, tuple[Decision, ...]] = {}
    for key in LEVEL_FIELDS:
        where = f"space.per_level.{key}"
        if key in per_level:
            value = per_level[key]
        elif key == "decoder_blocks":
            value = {"tie": "blocks", "offset": 1}
        else:
            value = LevelSpec.__dataclass_fields__[key].default
        # One value or decision for every level, or a list with one per level (broadcast once).
        if isinstance(value, list):
            if len(value) != max_levels:
                raise ConfigError(f"expected one value or a list of {max_levels} (one per level up to the "
                                  f"largest 'levels'), got a list of {len(value)}", key=where)
            decisions = tuple(parse_decision(v, key=f"{where}[{i}]") for i, v in enumerate(value))
        else:
            decisions = (parse_decision(value, key=where),) * max_levels
        for i, decision in enumerate(decisions):
            _check_values(decision, key=key, where=where if len(set(decisions)) == 1 else f"{where}[{i}]")
        level_decisions[key] = decisions
    _check_references(global_decisions, level_decisions)
    return global_decisions, level_decisions


def _check_values(decision: Decision, *, key: str, where: str) -> None:
    """Type, name and range checks of every value a decision can take (and its default)."""
    values = list(decision.values())
    if decision.default is not None:
        values.append(decision.default)
    expected = "int" if key == "levels" else FIELD_TYPES[key]
    for value in values:
        if expected == "int" and not (isinstance(value, int) and not isinstance(value, bool)):
            raise ConfigError(f"expected an integer, got {value!r}", key=where)
        if expected == "bool" and not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=where)
        if expected == "float" and not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise ConfigError(f"expected a number, got {value!r}", key=where)
        if expected == "str":
            valid = NAMED_CHOICES[key]
            if value not in valid:
                raise ConfigError(f"unknown value {value!r}{close_match_hint(str(value), valid)}; "
                                  f"expected one of {list(valid)}", key=where)
        if expected == "int":
            lo, hi = INT_RANGES.get(key, (1, None))
            if value < lo or (hi is not None and value > hi):
                bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ConfigError(f"expected values {bound}, got {value!r}", key=where)
        if key == "dropout" and not 0 <= value < 1:
            raise ConfigError(f"expected a value in [0, 1), got {value!r}", key=where)


def _references(decision: Decision) -> set[str]:
    refs = set(decision.when.keys) if decision.when else set()
    if isinstance(decision, Tie):
        refs.add(decision.target)
    return refs


def _check_references(global_decisions: dict[str, Decision],
                      level_decisions: dict[str, tuple[Decision, ...]]) -> None:
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


def _dependency_order(global_decisions: dict[str, Decision],
                      level_decisions: dict[str, tuple[Decision, ...]]) -> tuple[str, ...]:
    """Topological order of keys; per-level keys appear as ``per_level.<key>``."""

    def node(ref: str, *, from_level: bool) -> str:
        return f"per_level.{ref}" if ref in level_decisions else ref

    deps: dict[str, set[str]] = {}
    for key, decision in global_decisions.items():
        refs = _references(decision)
        deps[key] = {node(r, from_level=False) for r in refs} | ({"levels"} if key != "levels" else set())
    for key, decisions in level_decisions.items():
        refs = set().union(*(_references(d) for d in decisions))
        deps[f"per_level.{key}"] = {node(r, from_level=True) for r in refs} | {"levels"}
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


def _pivots(global_decisions: dict[str, Decision],
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
    values = list(decision.values())
    if decision.when is not None and not isinstance(decision, Tie):
        from nas.space.search_space import inactive_value

        values.append(inactive_value(key, decision))
    return values


def _check_combinations(space: SearchSpace) -> None:
    """Impossible combinations, checked over every value each key can take."""
    g, lv = space.global_decisions, space.level_decisions
    factor = 2 ** (space.max_levels - 1)
    if space.data.image_size % factor:
        raise ConfigError(f"image size {space.data.image_size} (data.image_size) is not divisible by "
                          f"2^(levels-1) = {factor} for {space.max_levels} levels", key="space.levels")
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


def _check_constraints_reachable(space: SearchSpace, probes: int = 24) -> None:
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
        if all(v <= 0 for v in values.values()):
            return
    # Static costs only have upper limits, so limit + excess is the smallest value probed.
    key = next(k for k in space.constraints if best.get(k, 0) > 0)
    raise ConfigError(f"no point of the space meets {space.constraints[key]:g}: the smallest of "
                      f"{len(candidates)} probed points has {space.constraints[key] + best[key]:.0f}",
                      key=f"constraints.{key}")
