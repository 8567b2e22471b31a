"""The reports written from a study: CSV tables, the front's plot and the markdown summary.

``results/<study>/`` receives ``pareto.csv``, ``trials.csv``, ``pareto.png`` and ``report.md``;
``report.md`` is the study's note (:func:`nas.notes.study_note`), the summary optuna-dashboard
shows too.  Column names, units and directions come from the metric registry (:mod:`nas.metrics`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.io import atomic_write, atomic_writer
from nas.metrics import METRICS, REPORT_METRICS
from nas.notes import study_note
from nas.pareto import candidate_trials, front_trials

__all__ = ["REPORT_FILES", "axis_label", "write_reports"]

REPORT_FILES = ("pareto.csv", "trials.csv", "pareto.png", "report.md")
# Bookkeeping columns after the metrics.
_TRIAL_COLUMNS = ("feasible", "duplicate_of", "reason")


def _row(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "status": attrs.get("status", "")}
    for i, name in enumerate(names):
        row[name] = trial.values[i] if trial.values else None
    for key in (*REPORT_METRICS, *_TRIAL_COLUMNS):
        special = key in METRICS and (METRICS[key].video_only or METRICS[key].latent_only)
        if key not in row and (key in attrs or not special):
            row[key] = attrs.get(key)
    row.update(dict(trial.params.items()))
    return row


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with atomic_writer(path, newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def axis_label(name: str, direction: str) -> str:
    """``val_loss (MSE, lower is better)``: a metric with its unit and which way is better."""
    metric = METRICS.get(name)
    unit = f"{metric.unit}, " if metric and metric.unit else ""
    return f"{name} ({unit}{'higher' if direction == 'maximize' else 'lower'} is better)"


def _plot(study: optuna.Study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = study.metric_names or []
    trials = candidate_trials(study)
    front = {t.number for t in front_trials(study)}
    if len(names) < 2 or not trials:
        return
    x_name, y_name = names[0], names[1]
    c_name = names[2] if len(names) > 2 else None
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=110)
    xs = [t.values[0] for t in trials]
    ys = [t.values[1] for t in trials]
    colours = [t.values[2] for t in trials] if c_name else None
    sc = ax.scatter(xs, ys, c=colours, cmap="viridis", s=28, alpha=0.8, label="feasible trials")
    fx = [t.values[0] for t in trials if t.number in front]
    fy = [t.values[1] for t in trials if t.number in front]
    ax.scatter(fx, fy, facecolors="none", edgecolors="red", s=90, linewidths=1.5, label="Pareto front")
    for t in trials:
        if t.number in front:
            ax.annotate(str(t.number), (t.values[0], t.values[1]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    directions = [d.name.lower() for d in study.directions]
    if c_name:
        fig.colorbar(sc, ax=ax, label=axis_label(c_name, directions[2]))
    ax.set_xlabel(axis_label(x_name, directions[0]))
    ax.set_ylabel(axis_label(y_name, directions[1]))
    ax.set_title(f"{study.study_name}: {len(trials)} feasible trials, front of {len(front)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(path, binary=True) as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def write_reports(study: optuna.Study, out_dir: Path) -> dict[str, Path]:
    """Write :data:`REPORT_FILES` into ``out_dir``; return the paths of those written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in REPORT_FILES}
    _write_csv(paths["trials.csv"], [_row(study, t) for t in study.get_trials(deepcopy=False)])
    _write_csv(paths["pareto.csv"], [_row(study, t) for t in front_trials(study)])
    _plot(study, paths["pareto.png"])
    atomic_write(paths["report.md"], study_note(study))
    return {k: v for k, v in paths.items() if v.exists()}
