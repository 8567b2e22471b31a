"""The Pareto front of a study, its hypervolume, the knee, and the reports written from it.

The front is taken over COMPLETE, feasible trials with finite values (duplicates of an earlier
trial count once).  ``results/<study>/`` receives ``pareto.csv``, ``trials.csv``,
``pareto.png`` and ``report.md``; the same summary goes into the study's optuna-dashboard note.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

__all__ = ["front_trials", "hypervolume", "knee_trial", "write_reports", "summary_markdown", "is_feasible"]


def is_feasible(trial: FrozenTrial) -> bool:
    """Feasible when every constraint value is <= 0 and the user attribute does not say otherwise."""
    if trial.user_attrs.get("feasible") is False:
        return False
    return all(v <= 0 for v in trial.constraints.values())


def _minimised(study: optuna.Study, values: list[float]) -> np.ndarray:
    signs = [1.0 if d == optuna.study.StudyDirection.MINIMIZE else -1.0 for d in study.directions]
    return np.asarray(values, dtype=float) * np.asarray(signs)


def candidate_trials(study: optuna.Study) -> list[FrozenTrial]:
    """COMPLETE, feasible, finite, non-duplicate trials."""
    out = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is None or not all(math.isfinite(v) for v in t.values):
            continue
        if is_feasible(t) and t.user_attrs.get("duplicate_of") is None:
            out.append(t)
    return out


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The non-dominated trials among :func:`candidate_trials`, by trial number."""
    trials = candidate_trials(study)
    points = [_minimised(study, t.values) for t in trials]
    front = []
    for i, p in enumerate(points):
        dominated = any(np.all(q <= p) and np.any(q < p) for j, q in enumerate(points) if j != i)
        if not dominated:
            front.append(trials[i])
    return sorted(front, key=lambda t: t.number)


def normalised(study: optuna.Study, trials: list[FrozenTrial]) -> np.ndarray:
    """Minimised objective values scaled to [0, 1] per objective over ``trials``."""
    points = np.array([_minimised(study, t.values) for t in trials], dtype=float)
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - lo) / np.where(hi > lo, hi - lo, 1.0)


def knee_trial(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> FrozenTrial:
    """The knee of the front: the trial closest (Euclidean) to the ideal point after each
    objective is normalised to [0, 1] over the front.  Ties go to the lower trial number."""
    trials = trials if trials is not None else front_trials(study)
    if not trials:
        raise ValueError("the study has no feasible completed trial")
    distances = np.linalg.norm(normalised(study, trials), axis=1)
    return trials[int(np.argmin(distances))]


def hypervolume(points: np.ndarray, reference: np.ndarray) -> float:
    """Hypervolume dominated by minimised ``points`` (N, M) up to ``reference`` (M,)."""
    from optuna._hypervolume import compute_hypervolume

    inside = points[np.all(points < reference, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(compute_hypervolume(inside, reference))


def _row(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    names = study.metric_names or [f"objective{i}" for i in range(len(study.directions))]
    attrs = trial.user_attrs
    row: dict[str, Any] = {"number": trial.number, "state": trial.state.name, "status": attrs.get("status", "")}
    for i, name in enumerate(names):
        row[name] = trial.values[i] if trial.values else None
    for key in ("params", "macs", "throughput", "latency_ms", "val_loss", "fid_proxy", "fid_floor", "kid_mean",
                "kid_std", "steps", "eval_seconds", "feasible", "duplicate_of", "reason"):
        if key not in row:
            row[key] = attrs.get(key)
    row.update({k: v for k, v in trial.params.items()})
    return row


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    with path.open("w", newline="") as fh:
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
    fig.savefig(path)
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
             "Objectives: " + ", ".join(f"{n} ({d.name.lower()})" for n, d in zip(names, study.directions)), ""]
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
    """Write ``pareto.csv``, ``trials.csv``, ``pareto.png`` and ``report.md``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in ("pareto.csv", "trials.csv", "pareto.png", "report.md")}
    _write_csv(paths["trials.csv"], [_row(study, t) for t in study.get_trials(deepcopy=False)])
    _write_csv(paths["pareto.csv"], [_row(study, t) for t in front_trials(study)])
    _plot(study, paths["pareto.png"])
    paths["report.md"].write_text(summary_markdown(study))
    return {k: v for k, v in paths.items() if v.exists()}
