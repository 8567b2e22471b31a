"""Load a search-space YAML file into a validated :class:`SearchSpace`.

Top-level keys::

    name: light                 # defaults to the file name
    extends: other.yaml         # optional: inherit a space and override keys
    description: ...
    data: {dataset: mnist, image_size: 28, channels: 1}   # frames: 8 makes it video (clips)
    latent: {autoencoder: kl, factor: 2, channels: 4}      # optional: U-Nets over latents (evaluators.latent)
    objectives: [{metric: val_loss, direction: minimize}, ...]
    constraints: {max_params: 2.0e6}
    budgets: {smoke: {...}, cpu: {...}, gpu: {...}}   # merged over the built-in defaults
    space: {<spec field>: <decision>, levels: <decision>, per_level: {<level field>: <decision>}}

Every error names the file, the key path and what was expected (:class:`nas.errors.ConfigError`).
This module parses each key; the checks over the parsed space as a whole (values against the spec's
field rules, references, cycles, impossible combinations, reachable constraints) are in
:mod:`nas.space.validation`.
Spec fields not named in ``space`` keep `UNetSpec` defaults; ``decoder_blocks`` defaults to
``{tie: blocks, offset: 1}`` (DDPM).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from pathlib import Path
from typing import Any

from evaluators.budget import Budget, parse_budgets
from nas.errors import ConfigError, close_match_hint
from nas.metrics import METRICS, objective_metrics
from nas.readers import read_yaml
from nas.space.decisions import Decision, Fixed, Tie, parse_decision
from nas.space.search_space import CONSTRAINT_KEYS, DataConfig, Objective, SearchSpace
from nas.space.validation import (
    check_combinations,
    check_constraints_reachable,
    check_references,
    check_ties,
    check_values,
    dependency_order,
    pivot_keys,
)
from nas.spec import LEVEL_FIELDS, LevelSpec, UNetSpec, check_field

__all__ = ["BUNDLED_DIR", "load_space", "resolve_space_path"]

BUNDLED_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
TOP_KEYS = ("name", "extends", "description", "data", "latent", "objectives", "constraints", "budgets", "space")
# Spec fields that come from `data:` rather than from `space:`.
DATA_FIELDS = ("image_size", "in_channels", "frames")
GLOBAL_KEYS = tuple(k for k in UNetSpec.__dataclass_fields__ if k not in DATA_FIELDS)
# Objectives when a space names none: quality, sample quality and speed.
DEFAULT_OBJECTIVES = ("val_loss", "fid_proxy", "throughput")


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A path as given when it exists, else the bundled ``search_spaces/`` file of that name."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError("is a directory; expected a space YAML file", source=str(name_or_path))
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
            check_constraints_reachable(space)
    except ConfigError as err:
        raise err.within(source=source) from None
    return space


# ----- YAML and extends --------------------------------------------------------------------
def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
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


# ----- building (the space-level checks live in nas.space.validation) -----------------------
def _build(raw: dict[str, Any], *, source: str, default_name: str) -> SearchSpace:
    name = raw.get("name", default_name)
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a non-empty string, got {name!r}", key="name")
    data = _parse_data(raw.get("data", {}), latent=raw.get("latent"))
    objectives = _parse_objectives(raw.get("objectives"), frames=data.frames, latent=data.latent is not None)
    constraints = _parse_constraints(raw.get("constraints", {}))
    budgets = parse_budgets(raw.get("budgets", {}))
    _check_teachers(budgets, data)
    global_decisions, level_decisions = _parse_space(raw.get("space"))
    order = dependency_order(global_decisions, level_decisions)
    check_ties(global_decisions, level_decisions)
    pivots = pivot_keys(global_decisions, level_decisions)
    space = SearchSpace(
        name=name, source=source, data=data, objectives=objectives, constraints=constraints,
        budgets=budgets, global_decisions=global_decisions, level_decisions=level_decisions,
        order=order, description=str(raw.get("description", "")), pivots=pivots)
    check_combinations(space)
    return space


def _check_teachers(budgets: dict[str, Budget], data: DataConfig) -> None:
    """Each distilling budget's teacher is a trained run for this space's data (evaluators.distill)."""
    from evaluators.distill import check_teacher

    for name, budget in budgets.items():
        if budget.distill is None:
            continue
        try:
            check_teacher(budget.distill.teacher, image_size=data.model_image_size, channels=data.model_channels,
                          frames=data.frames, latent=data.latent is not None)
        except ConfigError as err:
            raise ConfigError(err.message, key=f"budgets.{name}.{err.key}") from None


def _parse_data(raw: Any, *, latent: Any = None) -> DataConfig:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping, got {raw!r}", key="data")
    valid = [k for k in DataConfig.__dataclass_fields__ if k != "latent"]  # latent: is a top-level key
    for key in raw:
        if key not in valid:
            raise ConfigError(f"unknown key{close_match_hint(key, valid)}; valid keys are {valid}", key=f"data.{key}")
    data = DataConfig(**raw)
    if not isinstance(data.dataset, str):
        raise ConfigError(f"expected a dataset name or path, got {data.dataset!r}", key="data.dataset")
    for key, field_name in (("image_size", "image_size"), ("channels", "in_channels"), ("frames", "frames")):
        try:
            check_field(field_name, getattr(data, key))  # the spec's own rule for the field it becomes
        except ConfigError as err:
            raise ConfigError(err.message, key=f"data.{key}") from None
    if latent is not None:
        from evaluators.latent import LatentConfig

        if data.frames > 1:
            raise ConfigError("latent video spaces are not supported; leave out latent: or set data.frames 1",
                              key="latent")
        data = dataclasses.replace(data, latent=LatentConfig.parse(latent, image_size=data.image_size,
                                                                   image_channels=data.channels))
    return data


def _parse_objectives(raw: Any, *, frames: int = 1, latent: bool = False) -> tuple[Objective, ...]:
    valid = objective_metrics()  # metric -> natural direction, from the registry
    if raw is None:
        raw = [{"metric": m, "direction": valid[m]} for m in DEFAULT_OBJECTIVES]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"expected a non-empty list of {{metric, direction}}, got {raw!r}", key="objectives")
    out = []
    for i, item in enumerate(raw):
        key = f"objectives[{i}]"
        if not isinstance(item, dict) or set(item) - {"metric", "direction"} or "metric" not in item:
            raise ConfigError(f"expected {{metric: NAME, direction: minimize|maximize}}, got {item!r}", key=key)
        metric = item["metric"]
        if metric not in valid:
            raise ConfigError(f"unknown metric {metric!r}{close_match_hint(metric, valid)}; "
                              f"valid metrics are {list(valid)}", key=f"{key}.metric")
        if METRICS[metric].video_only and frames == 1:
            raise ConfigError(f"{metric!r} is measured for clips only; a video space sets data.frames > 1",
                              key=f"{key}.metric")
        if METRICS[metric].latent_only and not latent:
            raise ConfigError(f"{metric!r} is measured in latent spaces only; such a space sets latent:",
                              key=f"{key}.metric")
        direction = item.get("direction", valid[metric])
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
            with contextlib.suppress(ValueError):
                value = float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"expected a positive, finite number, got {value!r}", key=f"constraints.{key}")
        out[key] = float(value)
    return out


def _parse_space(raw: Any) -> tuple[dict[str, Decision], dict[str, tuple[Decision, ...]]]:
    if not isinstance(raw, dict):
        raise ConfigError(f"expected a mapping of decisions, got {raw!r}", key="space")
    valid = ["levels", "per_level", *[k for k in GLOBAL_KEYS if k != "levels"]]
    for key in raw:
        if key not in valid:
            from_data = key in ("image_size", "in_channels", "channels", "frames")
            extra = " (image size, channels and frames come from 'data:')" if from_data else ""
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
        check_values(decision, key=key, where=f"space.{key}")
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
            check_values(decision, key=key, where=where if len(set(decisions)) == 1 else f"{where}[{i}]")
        level_decisions[key] = decisions
    check_references(global_decisions, level_decisions)
    return global_decisions, level_decisions
