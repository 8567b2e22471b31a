"""``--pick``: which trial of a study to export.

``knee`` is :func:`nas.pareto.knee_trial` on the feasible front (the trial nearest the ideal
point after normalising each objective over the front); ``best:<metric>`` the best feasible
COMPLETE trial on one metric (an objective in the study's direction, any other metric of the
registry in its natural direction, :mod:`nas.metrics`); ``trial:<N>`` one trial by number.
``--where`` (:mod:`nas.export.where`) narrows the candidates first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError, close_match_hint
from nas.export.where import Clause, filter_trials
from nas.metrics import METRICS

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

__all__ = ["Pick", "pick_trial"]


@dataclass(frozen=True)
class Pick:
    """A parsed ``--pick``: ``kind`` is knee, best or trial; ``arg`` the metric or number."""

    kind: str
    arg: str | int | None = None

    @classmethod
    def parse(cls, text: str) -> Pick:
        """``knee``, ``best:<metric>`` or ``trial:<N>``; anything else is a ConfigError."""
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
    return METRICS[metric].direction or "minimize"


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _pickable_metrics(study: optuna.Study, trials: list[FrozenTrial]) -> list[str]:
    """Figures of merit the candidates recorded: the objectives and the registry's directed metrics."""
    directed = {name for name, m in METRICS.items() if m.direction is not None} | set(study.metric_names or [])
    return sorted({k for t in trials for k, v in t.user_attrs.items() if _numeric(v)} & directed)


def pick_trial(study: optuna.Study, pick: Pick, *,
               where: list[Clause] | None = None) -> tuple[FrozenTrial, str]:
    """The trial ``pick`` names among the study's feasible COMPLETE trials passing ``where``.

    Returns the trial and a one-line description of how it was chosen.
    """
    from optuna.trial import TrialState

    from nas.front import broken_constraints, is_feasible
    from nas.pareto import candidate_trials, front_of, front_trials, knee_trial
    from nas.study import trial_spec

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
            broken = broken_constraints({k: v for k, v in trial.constraints.items() if not k.isdigit()})
            raise ConfigError(f"trial {pick.arg} is infeasible (constraint excess: {broken or trial.constraints})",
                              key="--pick")
        if trial_spec(trial) is None:
            raise ConfigError(f"trial {pick.arg} recorded no spec", key="--pick")
        if not filter_trials([trial], where, known):
            raise ConfigError(f"trial {pick.arg} does not pass --where {', '.join(map(str, where))}", key="--where")
        return trial, f"trial {trial.number}"

    candidates = filter_trials(candidate_trials(study), where, known)
    if not candidates:
        empty = f"the Pareto front of study {study.study_name!r} is empty: " if pick.kind == "knee" else ""
        raise ConfigError(f"{empty}study {study.study_name!r} has no feasible COMPLETE trial{suffix} "
                          f"({len(everything)} trials in all)", key="--pick")

    if pick.kind == "knee":
        front = front_trials(study) if not where else front_of(study, candidates)
        if not front:
            raise ConfigError(f"the Pareto front of study {study.study_name!r} is empty{suffix}", key="--pick")
        trial = knee_trial(study, front)
        return trial, f"knee of a {len(front)}-trial front{suffix}"

    metric = str(pick.arg)
    valid = _pickable_metrics(study, candidates)
    if metric not in valid:
        hint = close_match_hint(metric, valid)
        raise ConfigError(f"unknown metric {metric!r}{hint}; valid: {valid}", key="--pick")
    scored = [t for t in candidates if _numeric(t.user_attrs.get(metric))]
    direction = _direction(study, metric)
    sign = -1.0 if direction == "maximize" else 1.0
    trial = min(scored, key=lambda t: (sign * t.user_attrs[metric], t.number))  # ties: lower number
    return trial, f"best {metric} ({direction}d) of {len(scored)} trials{suffix}"
