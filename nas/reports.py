"""The reports written from a study: CSV tables, the front's plot and the markdown summary.

``results/<study>/`` receives ``pareto.csv``, ``trials.csv``, ``pareto.png`` and ``report.md``;
the same summary goes into the study's optuna-dashboard note.  Column names, units and meanings
come from the metric registry (:mod:`nas.metrics`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from nas.io import atomic_write, atomic_writer
from nas.metrics import REPORT_METRICS, describe
from nas.pareto import candidate_trials, front_trials, knee_trial

__all__ = ["REPORT_FILES", "summary_markdown", "write_reports"]

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
        if key not in row:
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
    if c_name:
        fig.colorbar(sc, ax=ax, label=c_name)
    ax.set_xlabel(x_name)
    ax.set_ylabel(y_name)
    ax.set_title(f"{study.study_name}: {len(trials)} feasible trials, front of {len(front)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_writer(path, binary=True) as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


def summary_markdown(study: optuna.Study) -> str:
    """A markdown summary of the study and its front (the report and the dashboard note)."""
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        key = t.user_attrs.get("status") or t.state.name.lower()
        states[key] = states.get(key, 0) + 1
    names = study.metric_names or []
    front = front_trials(study)
    lines = [f"# Study `{study.study_name}`", "",
             f"{len(trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(states.items())), "",
             "Objectives: " + ", ".join(f"{n} ({d.name.lower()})"
                                        for n, d in zip(names, study.directions, strict=False)), ""]
    lines += [f"- {describe(name)}" for name in names] + [""]
    if not front:
        lines.append("No feasible completed trial yet.")
        return "\n".join(lines) + "\n"
    knee = knee_trial(study, front)
    lines += [f"## Pareto front ({len(front)} trials; knee: trial {knee.number})", "",
              "| trial | " + " | ".join(names) + " | params | MACs |",
              "|---:|" + "---:|" * (len(names) + 2)]
    for t in front:
        cells = [f"{v:.4g}" for v in t.values]
        lines.append(f"| {t.number}{' (knee)' if t is knee else ''} | " + " | ".join(cells)
                     + f" | {t.user_attrs.get('params', 0):,} | {t.user_attrs.get('macs', 0):,} |")
    return "\n".join(lines) + "\n"


def write_reports(study: optuna.Study, out_dir: Path) -> dict[str, Path]:
    """Write :data:`REPORT_FILES` into ``out_dir``; return the paths of those written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in REPORT_FILES}
    _write_csv(paths["trials.csv"], [_row(study, t) for t in study.get_trials(deepcopy=False)])
    _write_csv(paths["pareto.csv"], [_row(study, t) for t in front_trials(study)])
    _plot(study, paths["pareto.png"])
    atomic_write(paths["report.md"], summary_markdown(study))
    return {k: v for k, v in paths.items() if v.exists()}
