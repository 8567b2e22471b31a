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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _tabular import Table

__all__ = ["STOPPING", "Run", "at_steps", "early_markdown", "early_summary", "layout_rule", "plot_curves", "plot_early",
           "quiet", "replay_one", "rung_decisions", "seeds_stem", "stats", "summarise_runs", "trials_to_reach"]

# The early-stopping layouts replayed: a rule of nas.scheduling, its rungs (None: the geometric
# ladder of eta) and eta.
STOPPING = {
    "pareto": {"rule": "pareto", "rungs": (0.25, 0.5), "eta": 3.0},  # the search's rule before
    "halving": {"rule": "halving", "rungs": None, "eta": 3.0},  # the default now: rungs 1/9, 1/3
}


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
    # With a stopping rule, its decisions at the rungs by kind (see rung_decisions).
    rung_decisions: dict[str, int] = field(default_factory=dict)


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
               states=states, distinct=len(digests), rung_decisions=rung_decisions(study) if rule is not None else {})


def rung_decisions(study: Any) -> dict[str, int]:
    """Every decision at a rung of a sequentially replayed ``study``, by kind: ``first`` (nobody
    there before it), ``front`` (went on, non-dominated among itself and the earlier candidates at
    the rung on the rung point), ``top`` (went on, dominated there), ``stopped``.  Rung points are
    :func:`nas.scheduling.rung_point`'s, so with the ``halving`` rule ``front`` and ``top`` split its
    survivors into those on the rung's front and those among the top ``1/eta`` behind it."""
    from optuna.trial import TrialState

    from nas.scheduling import on_rung_front, rung_key, rung_point, rung_values

    objectives = study.metric_names or []
    seen: dict[int, list[tuple[float, ...]]] = {}
    out = {"first": 0, "front": 0, "top": 0, "stopped": 0}
    for trial in study.get_trials(deepcopy=False):  # in trial order: the order the rule saw them
        attrs = trial.user_attrs
        if attrs.get("duplicate_of") is not None:
            continue
        reached = rung_values(attrs)
        for rung, loss in reached.items():
            point = rung_point(objectives, loss, attrs)
            earlier = seen.setdefault(rung, [])
            went_on = rung_key(rung + 1) in attrs or trial.state == TrialState.COMPLETE
            if not went_on:
                kind = "stopped"
            elif not earlier:
                kind = "first"
            else:
                kind = "front" if on_rung_front(point, earlier) else "top"
            out[kind] += 1
            earlier.append(point)
    return out


def seeds_stem(stem: str, seeds: Sequence[int]) -> str:
    """The file stem of a replay over ``seeds``: ``stem`` for seeds from 0, else
    ``<stem>_seeds<first>-<last>`` (a check on seeds a setting was not chosen on)."""
    return stem if min(seeds) == 0 else f"{stem}_seeds{min(seeds)}-{max(seeds)}"


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


def layout_rule(layout: str | None, budget: Any) -> tuple[Any, Any]:
    """The replayed rung layout ``layout`` of :data:`STOPPING` as ``(budget, rule)``: ``budget`` with
    the layout's rungs and eta, and its stopping rule (``(None, None)`` for no early stopping)."""
    import dataclasses

    from nas.scheduling import make_rule

    if layout is None:
        return None, None
    spec = STOPPING[layout]
    return (dataclasses.replace(budget, rungs=spec["rungs"], eta=spec["eta"]),
            make_rule(spec["rule"], eta=spec["eta"]))


def early_summary(plain: list[Run], pruned: list[Run]) -> dict[str, Any]:
    """What a stopping layout saved and cost: the same seeds replayed without (``plain``) and with
    it (``pruned``): steps, seconds, final HV shares, the share at equal steps, mean curves."""
    without = np.array([r.steps for r in plain], dtype=float)
    with_ = np.array([r.steps for r in pruned], dtype=float)
    share = np.where(without > 0, with_ / np.where(without > 0, without, 1.0), 1.0)
    pruned_counts = np.array([r.states.get("pruned", 0) for r in pruned], dtype=float)
    hv_plain = np.array([r.hv_share[-1] for r in plain])
    hv_pruned = np.array([r.hv_share[-1] for r in pruned])
    return {
        "steps_without": stats(without), "steps_with": stats(with_), "steps_with_share": stats(share),
        "steps_saved_share": stats(1.0 - share),
        "train_seconds_without": stats(np.array([r.train_seconds for r in plain])),
        "train_seconds_with": stats(np.array([r.train_seconds for r in pruned])),
        "eval_seconds_without": stats(np.array([r.eval_seconds for r in plain])),
        "eval_seconds_with": stats(np.array([r.eval_seconds for r in pruned])),
        "hv_without": stats(hv_plain),
        "hv_with": stats(hv_pruned),
        # The stopped searches' final share over the plain ones' (both means over the seeds).
        "hv_kept": {"mean": float(hv_pruned.mean() / hv_plain.mean()) if hv_plain.mean() > 0 else 0.0},
        "hv_cost": stats(np.array([a.hv_share[-1] - b.hv_share[-1] for a, b in zip(plain, pruned, strict=True)])),
        # Equal compute: the plain run's share after its last trial within the stopped run's steps.
        "hv_without_at_equal_steps": stats(np.array([at_steps(a, b.steps)
                                                      for a, b in zip(plain, pruned, strict=True)])),
        "pruned_trials": stats(pruned_counts),
        # Summed over the seeds: why candidates went on at the rungs (rung_decisions).
        "rung_decisions": {kind: sum(r.rung_decisions.get(kind, 0) for r in pruned)
                           for kind in ("first", "front", "top", "stopped")},
        "curve_with": [float(x) for x in np.array([r.hv_share for r in pruned]).mean(axis=0)],
        "cum_steps_without": [float(x) for x in np.array([r.cum_steps for r in plain]).mean(axis=0)],
        "cum_steps_with": [float(x) for x in np.array([r.cum_steps for r in pruned]).mean(axis=0)],
        # Per seed, so a replay of fewer seeds can be checked against these (tests/test_benchmark_replay_pin.py).
        "per_seed": {"steps_with": [int(r.steps) for r in pruned], "hv_with": [float(x) for x in hv_pruned]},
    }


def at_steps(run: Run, steps: int) -> float:
    """``run``'s hypervolume share after the last trial whose cumulative steps fit in ``steps``."""
    share = 0.0
    for hv, spent in zip(run.hv_share, run.cum_steps, strict=True):
        if spent > steps:
            break
        share = hv
    return share


def early_markdown(early: dict[str, dict[str, Any]]) -> list[str]:
    """The README's early-stopping table rows, one per layout and sampler of ``early``."""
    header = ("| rule | sampler | training steps: none → with | share of no stopping | evaluation s: none → with | "
              "trials stopped | HV share: none → with | HV kept | HV share of no stopping at the steps spent |")
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for layout, by_sampler in early.items():
        for name, e in by_sampler.items():
            lines.append(
                f"| `{layout}` | `{name}` | {e['steps_without']['mean']:.0f} → {e['steps_with']['mean']:.0f} | "
                f"{e['steps_with_share']['mean']:.1%} | {e['eval_seconds_without']['mean']:.0f} → "
                f"{e['eval_seconds_with']['mean']:.0f} | {e['pruned_trials']['mean']:.1f} | "
                f"{e['hv_without']['mean']:.3f} → {e['hv_with']['mean']:.3f} | {e['hv_kept']['mean']:.1%} | "
                f"{e['hv_without_at_equal_steps']['mean']:.3f} |")
    return lines


def plot_early(ax: Any, plain_curves: dict[str, list[float]], early: dict[str, dict[str, Any]],
               colours: dict[str, Any]) -> None:
    """HV share against training steps spent on ``ax``: each sampler's mean curve without early
    stopping (``plain_curves``) and with each layout of ``early`` (:func:`early_summary`'s)."""
    styles = dict(zip(early, (":", "--", "-."), strict=False))
    for name, curve in plain_curves.items():
        replayed = [(layout, by_sampler[name]) for layout, by_sampler in early.items() if name in by_sampler]
        if not replayed:
            continue
        ax.plot(replayed[0][1]["cum_steps_without"], curve, color=colours.get(name), label=f"{name}, no stopping")
        for layout, e in replayed:
            ax.plot(e["cum_steps_with"], e["curve_with"], color=colours.get(name), linestyle=styles[layout],
                    label=f"{name} + {layout} ({e['steps_with_share']['mean']:.0%} of the steps)")
    ax.set_xlabel("training steps spent (mean over seeds, one point per trial)")
    ax.set_ylabel("hypervolume share (mean)")
    ax.set_title("early stopping at the rungs")
    ax.legend(fontsize=8, loc="lower right")
