"""What a full training run is asked for (:class:`TrainRequest`) and what determines its result
(:class:`RunSettings`, stored as ``run.json`` in the run directory).

:func:`plan_run` turns a request into settings: it reads the exported config (spec, ``data:``,
``budgets:``, ``provenance:``), fills defaults (the budget by device, 8x its steps, a tenth of
the run between checkpoints and held-out evaluations), refuses an existing run directory
unless asked to resume, and on ``resume`` merges the stored settings with the ones the user may
change (steps, intervals); any other difference is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.errors import ConfigError, close_match_hint

__all__ = ["AUTOENCODER", "CHECKPOINT", "SETTINGS", "TRAIN_MULTIPLIER", "RunSettings", "TrainRequest", "plan_run",
           "resolve_settings"]

TRAIN_MULTIPLIER = 8  # default steps = this x the budget's proxy steps
CHECKPOINT = "checkpoint.pt"
AUTOENCODER = "autoencoder.safetensors"  # a latent model's autoencoder, in its run directory
SETTINGS = "run.json"


@dataclass(frozen=True, kw_only=True)
class TrainRequest:
    """A training run as the command line names it; None means "the default" (see ``--help``)."""

    config: str | Path
    out: str | Path
    steps: int | None = None
    budget: str | None = None
    dataset: str | None = None
    device: str = "auto"
    seed: int | None = None
    batch_size: int | None = None
    checkpoint_every: int | None = None
    eval_every: int | None = None
    resume: bool = False


@dataclass(frozen=True)
class RunSettings:
    """Everything that determines a training run's result; stored as ``run.json``."""

    spec: dict[str, Any]
    config: str
    dataset: str
    budget_name: str
    budget: dict[str, Any]
    steps: int
    seed: int
    batch_size: int
    checkpoint_every: int
    eval_every: int
    search_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    # A latent model's autoencoder (evaluators.latent.LatentConfig.to_dict(), its file absolute).
    latent: dict[str, Any] | None = None

    # Settings a resumed run may change without changing what has been computed so far.
    MUTABLE = ("steps", "checkpoint_every", "eval_every", "config")

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as ``run.json`` holds it."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        """Inverse of :meth:`to_dict` (unknown keys of newer versions are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"expected a positive number, got {value}", key=name)


def _check_dataset(name: Any, *, flag: bool, config: str, frames: int) -> None:
    """An unknown dataset names where it came from: ``--dataset``, or the config's ``data.dataset``."""
    from evaluators.video_data import check_source

    try:
        check_source(name, frames=frames)
    except ConfigError as err:
        if flag:
            raise ConfigError(err.message, key="--dataset") from None
        raise ConfigError(err.message, key="data.dataset", source=config) from None


def resolve_settings(request: TrainRequest, *, device_type: str) -> RunSettings:
    """The run's settings from the request's config and options, defaults filled in."""
    from evaluators.budget import default_budget_name, parse_budgets
    from nas.model_io import read_model_yaml

    for name in ("steps", "checkpoint_every", "eval_every", "batch_size"):
        _positive(f"--{name.replace('_', '-')}", getattr(request, name))
    from nas.model_io import latent_section

    spec, config = read_model_yaml(request.config)
    latent = latent_section(config, Path(request.config))
    budgets = parse_budgets(config.get("budgets"), source=str(request.config))
    name = request.budget or default_budget_name(device_type)
    if name not in budgets:
        hint = close_match_hint(name, budgets)
        raise ConfigError(f"unknown budget {name!r}{hint}; valid: {sorted(budgets)}", key="--budget")
    budget = budgets[name]
    steps = request.steps or TRAIN_MULTIPLIER * budget.steps
    data = config.get("data") or {}
    provenance = config.get("provenance") or {}
    seed = request.seed if request.seed is not None else int(provenance.get("seed") or 0)
    dataset = request.dataset or data.get("dataset") or "mnist"
    _check_dataset(dataset, flag=request.dataset is not None, config=str(request.config), frames=spec.frames)
    return RunSettings(
        spec=spec.to_dict(), config=str(request.config),
        dataset=dataset, budget_name=name, budget=budget.to_dict(),
        steps=steps, seed=seed, batch_size=request.batch_size or budget.batch_size,
        checkpoint_every=request.checkpoint_every or max(1, steps // 10),
        eval_every=request.eval_every or max(1, steps // 10),
        search_metrics=dict(config.get("metrics") or {}), provenance=dict(provenance),
        latent={**latent.to_dict(), "autoencoder": str(Path(latent.autoencoder).resolve())} if latent else None)


def _merge_resume(stored: RunSettings, given: RunSettings, request: TrainRequest) -> RunSettings:
    """The stored settings, with the mutable ones the user passed; other differences are errors."""
    explicit = {"steps": request.steps, "checkpoint_every": request.checkpoint_every,
                "eval_every": request.eval_every, "seed": request.seed, "dataset": request.dataset,
                "batch_size": request.batch_size, "budget": request.budget}
    conflicts = []
    if given.spec != stored.spec:
        conflicts.append(f"--config {given.config} holds a different spec than the run's ({stored.config})")
    for key in ("seed", "dataset", "batch_size"):
        if explicit[key] is not None and getattr(given, key) != getattr(stored, key):
            conflicts.append(f"--{key.replace('_', '-')} {getattr(given, key)} (the run used {getattr(stored, key)})")
    if explicit["budget"] is not None and given.budget_name != stored.budget_name:
        conflicts.append(f"--budget {given.budget_name} (the run used {stored.budget_name})")
    if conflicts:
        raise ConfigError("cannot resume with other settings: " + "; ".join(conflicts), key="--resume")
    changes = {k: getattr(given, k) for k in stored.MUTABLE if k == "config" or explicit.get(k) is not None}
    return dataclasses.replace(stored, **changes)


def _stored(path: Path) -> RunSettings:
    from nas.readers import read_json

    data = read_json(path)
    try:
        return RunSettings.from_dict(data)
    except (TypeError, AttributeError) as err:
        raise ConfigError(f"not the settings of a nas.train run ({err}); remove the run directory or choose "
                          "another --out", source=str(path)) from None


def plan_run(request: TrainRequest, *, device_type: str) -> tuple[RunSettings, bool]:
    """The settings of the run ``request`` asks for, and whether it continues a stored run."""
    given = resolve_settings(request, device_type=device_type)
    out = Path(request.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory", key="--out")
    if out.is_dir() and any(out.iterdir()) and not request.resume:
        raise ConfigError(f"run directory {out} already exists; pass --resume to continue it or choose "
                          "another --out", key="--out")
    stored = out / SETTINGS
    if request.resume and stored.is_file():
        return _merge_resume(_stored(stored), given, request), True
    return given, False
