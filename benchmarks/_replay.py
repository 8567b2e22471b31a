"""Replaying a search against recorded (or predicted) evaluations, and summarising the replays.

Used by ``benchmarks/sampler_efficiency.py`` (the exact 72-point table) and
``benchmarks/light_benchmark.py`` (its surrogate over the whole of ``light.yaml``): one replay is
the search's own study, sampler and trial runner, with the gate's figures and the evaluation
answered by a *lookup* instead of measured and trained.  A lookup has ``runner(space, study,
rule=, budget_name=)`` (a :class:`nas.trial_runner.TrialRunner` over its answers) and
``row(digest)`` (the recorded or predicted row of a point: steps, seconds; None when it has
none).  Hypervolume shares are taken over a :class:`_tabular.Table`'s normalisation.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tabular import Table

__all__ = ["Run", "plot_curves", "quiet", "replay_one", "stats", "summarise_runs", "trials_to_reach"]


def quiet() -> None:
    """Optuna logs every trial at INFO; a replay runs thousands."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


@dataclass
class Run:
    """One replayed search: HV share after every trial and the training it cost."""

    hv_share: list[float]
    cum_steps: list[int]  # training steps spent up to and including each trial
    steps: int
    train_seconds: float
    eval_seconds: float
    states: dict[str, int]
    distinct: int


def replay_one(space: Any, table: Table, lookup: Any, sampler: str, seed: int, trials: int, *,
               rule: Any = None) -> Run:
    """Replay one search of ``trials`` trials with the registry sampler ``sampler`` and ``seed``:
    the search's own study, sampler and trial runner, answered by ``lookup`` (see the module
    docstring), stopped early by the scheduling ``rule`` (None: no early stopping)."""
    import optuna
    from optuna.trial import TrialState

    from nas.samplers import make_sampler
    from nas.study import open_search_study

    study = open_search_study(space, storage=optuna.storages.InMemoryStorage(), study_name=f"{sampler}-{seed}",
                              sampler=make_sampler(sampler, seed=seed))
    runner = lookup.runner(space, study, rule=rule, budget_name=table.budget_name)
    found: list[list[float]] = []
    hv_share: list[float] = []
    cum_steps: list[int] = []
    steps, train_s, eval_s, states, digests = 0, 0.0, 0.0, {}, set()
    for _ in range(trials):
        trial = study.ask()
        outcome = runner.run(trial)
        status = "duplicate" if trial.user_attrs.get("duplicate_of") is not None else outcome.status
        row = lookup.row(trial.user_attrs.get("spec_digest", ""))
        if row is not None and status not in ("duplicate", "infeasible"):
            used = int(trial.user_attrs.get("steps", 0))
            steps += used
            full = max(int(row["steps"] or 0), 1)
            train_s += float(row["train_seconds"] or 0.0) * used / full
            # A stopped trial skips the final held-out loss and the FID proxy.
            eval_s += float(row["eval_seconds"] or 0.0) if outcome.state == TrialState.COMPLETE else \
                float(row["train_seconds"] or 0.0) * used / full
            digests.add(row["digest"])
        study.tell(trial, outcome.values, state=outcome.state)
        states[status] = states.get(status, 0) + 1
        if outcome.state == TrialState.COMPLETE and status == "ok":
            found.append(outcome.values)  # type: ignore[arg-type]
        hv_share.append(table.hypervolume(np.array(found)) / table.true_hv if found else 0.0)
        cum_steps.append(steps)
    return Run(hv_share=hv_share, cum_steps=cum_steps, steps=steps, train_seconds=train_s, eval_seconds=eval_s,
               states=states, distinct=len(digests))


def stats(values: np.ndarray) -> dict[str, Any]:
    """Mean, standard deviation, min and max of ``values``."""
    return {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
            "max": float(values.max())}


def trials_to_reach(curve: list[float], level: float) -> int | None:
    """First trial (1-based) at which ``curve`` reaches ``level`` (None: never)."""
    for i, value in enumerate(curve):
        if value >= level - 1e-12:
            return i + 1
    return None


def summarise_runs(runs: list[Run]) -> dict[str, Any]:
    """One sampler's replays: the HV-share curve's mean/std/min/max per trial, the final share,
    distinct points evaluated and the trial states."""
    curves = np.array([r.hv_share for r in runs])
    states: dict[str, int] = {}
    for r in runs:
        for k, v in r.states.items():
            states[k] = states.get(k, 0) + v
    return {"curve": {k: [float(x) for x in getattr(curves, k)(axis=0)] for k in ("mean", "std", "min", "max")},
            "final": stats(curves[:, -1]), "final_per_seed": [float(x) for x in curves[:, -1]],
            "distinct_points": stats(np.array([r.distinct for r in runs], dtype=float)),
            "states": states}


def plot_curves(ax: Any, samplers: dict[str, Any], target: float, seeds: int, colours: dict[str, Any]) -> None:
    """HV share against trials per sampler on ``ax`` (mean, min-max band), ``target`` (random's
    final mean) dashed."""
    for name, s in samplers.items():
        c = s["curve"]
        x = np.arange(1, len(c["mean"]) + 1)
        ax.plot(x, c["mean"], color=colours.get(name), label=name)
        ax.fill_between(x, c["min"], c["max"], color=colours.get(name), alpha=0.12)
    ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"random's final mean ({target:.3f})")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume share of the table's front")
    ax.set_title(f"mean over {seeds} seeds, band min-max")
    ax.legend(fontsize=8, loc="lower right")
