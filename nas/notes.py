"""Notes that make the dashboard explain itself: one markdown note per trial, and the study's note.

optuna-dashboard shows a note on the study page and on every trial page.  A trial's note names
its objectives with units and direction, says whether it is on the front (and whether it is the
knee), gives its status with the reason (for an infeasible trial: which constraint, the measured
value and the limit; for a stopped or failed one: why), the budget and the device.  The study's
note is the report's summary with links to the front's trials and a word on which dashboard
view answers which question.  Names, units and directions come from the metric registry.

Notes are written when a trial finishes (its front status as of then) and all of them again when
the search command ends, so they are current whenever a search is not running.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from nas.metrics import METRICS

__all__ = ["STUDY_VIEWS", "study_note", "trial_note", "trial_url", "write_notes", "write_trial_note"]

STUDY_VIEWS = (
    "**Which dashboard view answers what.** *History* (the study's first page): the Pareto Front "
    "(infeasible trials are grey, at the no-skill corner of the quality axes) and, once there are a "
    "few dozen completed trials, Hyperparameter Importance (which decisions matter). *Trials (List)*: "
    "one trial's note, `samples.png` and `spec.yaml`. *Smart Selection* with \"Include Infeasible "
    "trials\" off: the parallel coordinates of objectives and architecture choices, and the samples "
    "of the trials you select. *Analytics*: each objective's distribution (EDF) and slices by decision.")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 1000):
        return f"{int(value):,}"
    return f"{value:.4g}"


def _better(direction: str) -> str:
    return "higher is better" if direction == "maximize" else "lower is better"


def trial_url(study: optuna.Study, number: int) -> str:
    """The trial's page in optuna-dashboard (served at the root of its host)."""
    return f"/dashboard/studies/{study._study_id}/trials?numbers={number}"


def _constraint_lines(trial: FrozenTrial, limits: dict[str, float]) -> list[str]:
    from nas.space.search_space import CONSTRAINT_KEYS

    lines = []
    for key, excess in trial.constraints.items():
        if key.isdigit() or excess <= 0 or key not in CONSTRAINT_KEYS:
            continue
        metric, kind = CONSTRAINT_KEYS[key]
        measured = trial.user_attrs.get(metric)
        limit = limits.get(key)
        if limit is None and isinstance(measured, (int, float)):
            limit = measured - excess if kind == "max" else measured + excess
        unit = METRICS[metric].unit if metric in METRICS else ""
        share = f" ({excess / limit:+.1%})" if limit else ""
        lines.append(f"- breaks `{key}`: {_number(measured)} {unit} measured, limit {_number(limit)}{share}")
    return lines


def _last_rung(attrs: dict[str, Any]) -> tuple[int, float] | None:
    from nas.scheduling import rung_values

    values = rung_values(attrs)
    return max(values.items()) if values else None


def _unfinished_table(names: list[str], study: optuna.Study, attrs: dict[str, Any]) -> list[str]:
    """What a stopped or failed trial measured before it ended: its last rung's held-out loss and
    the gate's figures; the rest is named as not computed."""
    rung = _last_rung(attrs)
    lines = ["| objective | value | unit | direction |", "|---|---:|---|---|"]
    for name, direction in zip(names, study.directions, strict=False):
        metric = METRICS.get(name)
        value = attrs.get(name)
        if name == "val_loss" and rung is not None:
            shown = f"{_number(rung[1])} (at rung {rung[0]}, on the rung's held-out images)"
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            shown = _number(value)
        else:
            shown = "(not computed: the trial ended before scoring)"
        lines.append(f"| {name} | {shown} | {metric.unit if metric else ''} | {_better(direction.name.lower())} |")
    return [*lines, ""]


def trial_note(study: optuna.Study, trial: FrozenTrial, *, front: set[int], knee: int | None,
               limits: dict[str, float] | None = None) -> str:
    """The markdown note of one finished trial (see the module docstring)."""
    attrs = trial.user_attrs
    status = attrs.get("status") or trial.state.name.lower()
    names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
    if trial.number in front:
        place = "on the Pareto front" + (", the knee" if trial.number == knee else "")
    elif status == "infeasible":
        place = "infeasible, not trained"
    elif trial.state == TrialState.PRUNED:
        place = "stopped early"
    elif trial.state == TrialState.FAIL:
        place = f"failed ({status})"
    else:
        place = "dominated" if trial.state == TrialState.COMPLETE else status
    lines = [f"## Trial {trial.number}: {place}", ""]
    if trial.values:
        lines += ["| objective | value | unit | direction |", "|---|---:|---|---|"]
        for name, value, direction in zip(names, trial.values, study.directions, strict=False):
            metric = METRICS.get(name)
            measured = name in attrs or status != "infeasible"
            shown = _number(value) if math.isfinite(value) else str(value)
            if not measured:
                shown += " (no-skill point: not trained)" if name != "throughput" else " (not timed)"
            lines.append(f"| {name} | {shown} | {metric.unit if metric else ''} | "
                         f"{_better(direction.name.lower())} |")
        lines.append("")
    elif trial.state in (TrialState.PRUNED, TrialState.FAIL):
        lines += _unfinished_table(names, study, attrs)
    if status == "infeasible":
        lines += [*_constraint_lines(trial, limits or {}), ""]
    reason = attrs.get("reason")
    if reason and status != "ok":
        lines += [f"**Why:** {reason}", ""]
    if attrs.get("duplicate_of") is not None:
        lines += [f"Same architecture as [trial {attrs['duplicate_of']}]({trial_url(study, attrs['duplicate_of'])}); "
                  "its values are reused, nothing was trained again.", ""]
    facts = [f"status **{status}**"]
    if attrs.get("budget"):
        steps = f", {_plural(int(attrs['steps']), 'step')}" if attrs.get("steps") is not None else ""
        facts.append(f"budget `{attrs['budget']}`{steps}")
    if attrs.get("device"):
        facts.append(f"{attrs['device']}, {attrs.get('dtype', '')}".rstrip(", "))
    if attrs.get("params") is not None:
        facts.append(f"{_number(attrs['params'])} params")
    if attrs.get("macs") is not None:
        facts.append(f"{attrs['macs'] / 1e6:.1f}M MACs/image")
    lines += ["; ".join(facts) + ".", ""]
    if attrs.get("spec_digest"):
        samples = "; DDIM samples from the EMA weights: `samples.png`" if status == "ok" and not attrs.get(
            "duplicate_of") else ""
        lines.append(f"Architecture: `spec.yaml` below and the parameters above (digest `{attrs['spec_digest']}`)"
                     f"{samples}.")
    return "\n".join(lines).rstrip() + "\n"


def study_note(study: optuna.Study) -> str:
    """The study's markdown summary: counts, objectives, the front (linked, knee named), the views."""
    from nas.pareto import front_trials, knee_trial

    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        key = t.user_attrs.get("status") or t.state.name.lower()
        states[key] = states.get(key, 0) + 1
    names = study.metric_names or []
    front = front_trials(study)
    lines = [f"# Study `{study.study_name}`", "",
             f"{_plural(len(trials), 'trial')}: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())), "",
             "Objectives:", ""]
    for name, direction in zip(names, study.directions, strict=False):
        metric = METRICS.get(name)
        detail = f" ({metric.unit}): {metric.meaning}" if metric else ""
        lines.append(f"- `{name}`, {_better(direction.name.lower())}{detail}")
    lines.append("")
    if not front:
        lines += ["No feasible completed trial yet.", "", STUDY_VIEWS]
        return "\n".join(lines) + "\n"
    knee = knee_trial(study, front)
    lines += [f"## Pareto front ({_plural(len(front), 'trial')}; knee: [trial {knee.number}]"
              f"({trial_url(study, knee.number)}))", "",
              "| trial | " + " | ".join(names) + " | params | MACs |",
              "|---:|" + "---:|" * (len(names) + 2)]
    for t in front:
        cells = [f"{v:.4g}" for v in t.values]
        label = f"[{t.number}]({trial_url(study, t.number)}){' (knee)' if t is knee else ''}"
        lines.append(f"| {label} | " + " | ".join(cells)
                     + f" | {t.user_attrs.get('params', 0):,} | {t.user_attrs.get('macs', 0):,} |")
    lines += ["", "The knee is the front's trial nearest the ideal point once each objective is scaled to "
              "[0, 1] over the front (`python -m nas.export --pick knee`).", "", STUDY_VIEWS]
    return "\n".join(lines) + "\n"


def _front(study: optuna.Study) -> tuple[set[int], int | None]:
    from nas.pareto import front_trials, knee_trial

    front = front_trials(study)
    return {t.number for t in front}, (knee_trial(study, front).number if front else None)


def write_trial_note(study: optuna.Study, number: int) -> None:
    """Write (or refresh) the note of finished trial ``number``."""
    from nas.note_store import save_notes

    front, knee = _front(study)
    trial = study.get_trials(deepcopy=False)[number]
    limits = study.user_attrs.get("constraints") or {}
    save_notes(study._storage, study._study_id,
               {trial._trial_id: trial_note(study, trial, front=front, knee=knee, limits=limits)})


def write_notes(study: optuna.Study) -> str:
    """Write the study's note and every finished trial's note (only those whose text changed);
    returns the study note."""
    from nas.note_store import save_notes

    front, knee = _front(study)
    limits = study.user_attrs.get("constraints") or {}
    bodies: dict[int | None, str] = {
        trial._trial_id: trial_note(study, trial, front=front, knee=knee, limits=limits)
        for trial in study.get_trials(deepcopy=False) if trial.state.is_finished()}
    bodies[None] = body = study_note(study)
    save_notes(study._storage, study._study_id, bodies)
    return body
