"""``python -m nas.export --study NAME --pick knee``: write a searched architecture as a config.

Picks one trial of a finished (or running) study and writes it as

* ``--format yaml`` (default): the spec under ``spec:`` with every field documented by a
  comment, the trial's metrics under ``metrics:``, ``provenance:`` (space, study, storage,
  trial, budget, seed, device, dtype, export time), the space's ``data:`` and ``budgets:`` so
  that ``python -m nas.train --config FILE`` needs nothing else.  ``nas.load_model(FILE)`` gives
  the (untrained) network;
* ``--format diffusers``: ``config.json`` for diffusers' ``UNet2DModel``,
  ``scheduler_config.json`` for its ``DDPMScheduler`` and the YAML above as ``spec.yaml``, when
  the spec lies in what diffusers can express (see :mod:`nas.diffusers_config`).

Picks: ``knee`` is :func:`nas.pareto.knee_trial` on the feasible front (the trial nearest the
ideal point after normalising each objective over the front); ``best:<metric>`` the best
feasible COMPLETE trial on one metric (the study's direction for an objective, else minimised,
except throughput which is maximised); ``trial:<N>`` one trial by number.  ``--where`` keeps
only trials whose user attributes pass simple comparisons (``params<1e6, throughput>=100``).
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.cli import HelpFormatter
from nas.errors import ConfigError, close_match_hint, exit_on_config_error

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["MAXIMISED", "Pick", "build_parser", "export_trial", "main", "open_study", "parse_where", "pick_trial"]

MAXIMISED = frozenset({"throughput"})  # non-objective metrics that are better when larger
FORMATS = ("yaml", "diffusers")
# Trial attributes that are bookkeeping, not metrics (not offered by best:<metric>).
_NOT_METRICS = frozenset({"seed", "duplicate_of", "steps", "batch_size", "feasible"})
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "!=": operator.ne, "<": operator.lt,
    ">": operator.gt, "=": operator.eq,
}
_CLAUSE = re.compile(r"^\s*([A-Za-z_][\w.@-]*)\s*(<=|>=|==|!=|<|>|=)\s*(\S.*?)\s*$")


# ----- opening the study ------------------------------------------------------------------------
def default_storage(study: str) -> str:
    """``sqlite:///results/<study>.db``, the search's default."""
    return f"sqlite:///results/{study}.db"


def open_study(name: str, storage_url: str) -> optuna.Study:
    """Load study ``name``; a missing storage file or study is a :class:`ConfigError`."""
    import optuna

    from nas.study import make_storage

    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():  # opening it would create an empty database
            raise ConfigError(f"storage file {path} does not exist (run nas.search first, or pass --storage)",
                              key="--storage")
    elif "://" not in storage_url and not Path(storage_url.removeprefix("journal:")).is_file():
        raise ConfigError(f"journal file {storage_url} does not exist", key="--storage")
    storage = make_storage(storage_url, heartbeat=False)
    names = optuna.get_all_study_names(storage)
    if name not in names:
        hint = close_match_hint(name, names)
        raise ConfigError(f"no study {name!r} in {storage_url}{hint}; studies there: {sorted(names) or 'none'}",
                          key="--study")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=storage)


# ----- --where ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Clause:
    """One comparison of ``--where``: ``key op value``."""

    key: str
    op: str
    value: Any
    text: str = ""  # as the user wrote it, for messages

    def holds(self, attrs: dict[str, Any]) -> bool:
        if self.key not in attrs or attrs[self.key] is None:
            return False
        have = attrs[self.key]
        try:
            return bool(_OPS[self.op](have, self.value))
        except TypeError:  # e.g. a string attribute compared with <
            return False

    def __str__(self) -> str:
        return self.text or f"{self.key}{self.op}{self.value}"


def _parse_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def parse_where(text: str | None) -> list[Clause]:
    """Clauses of a ``--where`` string, joined by ``,`` or ``and``; a bad clause is a ConfigError."""
    if not text or not text.strip():
        return []
    clauses = []
    for part in re.split(r",|\s+and\s+", text):
        if not part.strip():
            raise ConfigError(f"empty clause in {text!r}; expected e.g. 'params<1e6, throughput>=100'",
                              key="--where")
        match = _CLAUSE.match(part)
        if not match:
            raise ConfigError(f"cannot read {part.strip()!r}; expected KEY OP VALUE with OP one of "
                              f"<, <=, >, >=, ==, != (e.g. 'params<1e6')", key="--where")
        key, op, raw = match.groups()
        value = _parse_value(raw)
        if isinstance(value, str) and op not in ("==", "!=", "="):
            raise ConfigError(f"{part.strip()!r} compares with {op} but {raw!r} is not a number", key="--where")
        clauses.append(Clause(key, "==" if op == "=" else op, value, text=part.strip()))
    return clauses


def _attrs(trial: FrozenTrial) -> dict[str, Any]:
    return {**trial.user_attrs, "number": trial.number}


def _filter(trials: list[FrozenTrial], clauses: list[Clause], known: set[str]) -> list[FrozenTrial]:
    for clause in clauses:
        if clause.key not in known:
            hint = close_match_hint(clause.key, known)
            raise ConfigError(f"unknown key {clause.key!r}{hint}; trials record {sorted(known)}", key="--where")
    return [t for t in trials if all(c.holds(_attrs(t)) for c in clauses)]


# ----- picking ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pick:
    """A parsed ``--pick``: ``kind`` is knee, best or trial; ``arg`` the metric or number."""

    kind: str
    arg: str | int | None = None

    @classmethod
    def parse(cls, text: str) -> Pick:
        kind, _, arg = text.partition(":")
        if kind == "knee" and not arg:
            return cls("knee")
        if kind == "best" and arg:
            return cls("best", arg)
        if kind == "trial" and arg:
            try:
                return cls("trial", int(arg))
            except ValueError:
                raise ConfigError(f"expected a trial number after 'trial:', got {arg!r}", key="--pick") from None
        raise ConfigError(f"unknown pick {text!r}; expected knee, best:<metric> or trial:<N>", key="--pick")

    def __str__(self) -> str:
        return self.kind if self.arg is None else f"{self.kind}:{self.arg}"


def _direction(study: optuna.Study, metric: str) -> str:
    names = study.metric_names or []
    if metric in names:
        return study.directions[names.index(metric)].name.lower()
    return "maximize" if metric in MAXIMISED else "minimize"


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def pick_trial(study: optuna.Study, pick: Pick, *,
               where: list[Clause] | None = None) -> tuple[FrozenTrial, str]:
    """The trial ``pick`` names among the study's feasible COMPLETE trials passing ``where``.

    Returns the trial and a one-line description of how it was chosen.
    """
    from optuna.trial import TrialState

    from nas.pareto import candidate_trials, front_trials, is_feasible, knee_trial

    where = where or []
    everything = study.get_trials(deepcopy=False)
    known = {k for t in everything for k in t.user_attrs} | {"number"}
    suffix = f" matching --where {', '.join(map(str, where))}" if where else ""

    if pick.kind == "trial":
        by_number = {t.number: t for t in everything}
        trial = by_number.get(pick.arg)  # type: ignore[arg-type]
        if trial is None:
            span = f"0..{max(by_number)}" if by_number else "none"
            raise ConfigError(f"study {study.study_name!r} has no trial {pick.arg} (trials: {span})", key="--pick")
        status = trial.user_attrs.get("status", "")
        if trial.state != TrialState.COMPLETE:
            raise ConfigError(f"trial {pick.arg} is {trial.state.name}"
                              f"{f' ({status})' if status else ''}, not COMPLETE", key="--pick")
        if not is_feasible(trial):
            broken = {k: v for k, v in trial.constraints.items() if not k.isdigit() and v > 0}
            raise ConfigError(f"trial {pick.arg} is infeasible (constraint excess: {broken or trial.constraints})",
                              key="--pick")
        if "spec" not in trial.user_attrs:
            raise ConfigError(f"trial {pick.arg} recorded no spec", key="--pick")
        if not _filter([trial], where, known):
            raise ConfigError(f"trial {pick.arg} does not pass --where {', '.join(map(str, where))}", key="--where")
        return trial, f"trial {trial.number}"

    candidates = _filter(candidate_trials(study), where, known)
    if not candidates:
        empty = f"the Pareto front of study {study.study_name!r} is empty: " if pick.kind == "knee" else ""
        raise ConfigError(f"{empty}study {study.study_name!r} has no feasible COMPLETE trial{suffix} "
                          f"({len(everything)} trials in all)", key="--pick")

    if pick.kind == "knee":
        front = front_trials(study) if not where else _non_dominated(study, candidates)
        if not front:
            raise ConfigError(f"the Pareto front of study {study.study_name!r} is empty{suffix}", key="--pick")
        trial = knee_trial(study, front)
        return trial, f"knee of a {len(front)}-trial front{suffix}"

    metric = str(pick.arg)
    valid = sorted({k for t in candidates for k, v in t.user_attrs.items() if _numeric(v)} - _NOT_METRICS)
    if metric not in valid:
        hint = close_match_hint(metric, valid)
        raise ConfigError(f"unknown metric {metric!r}{hint}; valid: {valid}", key="--pick")
    scored = [t for t in candidates if _numeric(t.user_attrs.get(metric))]
    sign = -1.0 if _direction(study, metric) == "maximize" else 1.0
    trial = min(scored, key=lambda t: (sign * t.user_attrs[metric], t.number))  # ties: lower number
    return trial, f"best {metric} ({_direction(study, metric)}d) of {len(scored)} trials{suffix}"


def _non_dominated(study: optuna.Study, trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The Pareto front of ``trials`` under the study's directions (for a --where subset)."""
    import optuna

    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    points = [[s * v for s, v in zip(signs, t.values)] for t in trials]

    def dominates(q: list[float], p: list[float]) -> bool:
        return all(a <= b for a, b in zip(q, p)) and any(a < b for a, b in zip(q, p))

    front = [t for t, p in zip(trials, points) if not any(dominates(q, p) for q in points if q is not p)]
    return sorted(front, key=lambda t: t.number)


# ----- writing ------------------------------------------------------------------------------
_METRIC_KEYS = ("val_loss", "fid_proxy", "fid_floor", "kid_mean", "kid_std", "throughput", "latency_ms",
                "sample_seconds", "params", "macs", "peak_mem_mb", "steps", "batch_size", "train_seconds",
                "eval_seconds", "feature_kind", "status")


def _space_sections(source: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The space's ``data`` and ``budgets`` when its file still loads (else None, None)."""
    if not source:
        return None, None
    from nas.space import load_space

    try:
        space = load_space(source, check_constraints=False)
    except ConfigError:
        return None, None
    data = {"dataset": space.data.dataset, "image_size": space.data.image_size, "channels": space.data.channels}
    return data, {name: budget.to_dict() for name, budget in space.budgets.items()}


def export_trial(study: optuna.Study, trial: FrozenTrial, *, storage_url: str, out: str | Path,
                 fmt: str = "yaml", how: str = "") -> list[Path]:
    """Write ``trial`` of ``study`` in format ``fmt`` to ``out``; returns the written paths."""
    from nas.model_io import write_model_yaml
    from nas.spec import UNetSpec

    attrs = trial.user_attrs
    spec = UNetSpec.from_dict(attrs["spec"], source=f"trial {trial.number}")
    names = study.metric_names or []
    metrics = {k: attrs[k] for k in _METRIC_KEYS if attrs.get(k) is not None}
    metrics.update({n: v for n, v in zip(names, trial.values or []) if n not in metrics})
    source = study.user_attrs.get("space_source")
    data, budgets = _space_sections(source)
    provenance = {
        "space": study.user_attrs.get("space"),
        "space_source": source,
        "study": study.study_name,
        "storage": storage_url,
        "trial": trial.number,
        "picked_by": how,
        "duplicate_of": attrs.get("duplicate_of"),
        "budget": attrs.get("budget"),
        "seed": attrs.get("seed"),
        "device": attrs.get("device"),
        "dtype": attrs.get("dtype"),
        "spec_digest": spec.digest(),
        "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    provenance = {k: v for k, v in provenance.items() if v is not None}
    header = (f"U-Net architecture exported from study {study.study_name!r}, trial {trial.number} ({how}).\n"
              "Load it: nas.load_model(PATH) -> torch.nn.Module; train it: python -m nas.train --config PATH")
    sections = {"metrics": metrics, "provenance": provenance, "data": data, "budgets": budgets}
    out = Path(out)
    if fmt == "yaml":
        return [write_model_yaml(out, spec, header=header, sections=sections)]
    from nas.diffusers_config import diffusers_notes, scheduler_config, unet2d_config

    config = unet2d_config(spec)  # raises, naming every blocker, before anything is written
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a directory", key="--out")
    out.mkdir(parents=True, exist_ok=True)
    for note in diffusers_notes(spec):
        print(f"note: {note}", file=sys.stderr)
    paths = [out / "config.json", out / "scheduler_config.json"]
    paths[0].write_text(json.dumps(config, indent=2) + "\n")
    paths[1].write_text(json.dumps(scheduler_config(spec), indent=2) + "\n")
    paths.append(write_model_yaml(out / "spec.yaml", spec, header=header, sections=sections))
    return paths


# ----- command line -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nas.export", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--study", required=True, help="study name (the space's name by default in nas.search)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///results/STUDY.db)")
    parser.add_argument("--pick", default="knee", help="knee, best:<metric> or trial:<N>")
    parser.add_argument("--where", default=None, help="filter, e.g. 'params<1e6, throughput>=100'")
    parser.add_argument("--format", default="yaml", choices=FORMATS, help="output format")
    parser.add_argument("--out", default=None, help="output file (yaml; default best.yaml) or directory "
                        "(diffusers; default best-diffusers/)")
    return parser


@exit_on_config_error
def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns 0, or exits 2 with one line on a user error."""
    args = build_parser().parse_args(argv)
    pick = Pick.parse(args.pick)
    where = parse_where(args.where)
    storage_url = args.storage or default_storage(args.study)
    study = open_study(args.study, storage_url)
    trial, how = pick_trial(study, pick, where=where)
    out = args.out or ("best.yaml" if args.format == "yaml" else "best-diffusers")
    paths = export_trial(study, trial, storage_url=storage_url, out=out, fmt=args.format, how=how)
    names = study.metric_names or []
    values = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, trial.values or []))
    params = trial.user_attrs.get("params")
    print(f"trial {trial.number} ({how}): {values}" + (f", params={params:,}" if params else ""))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
