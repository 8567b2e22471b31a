"""Sampler efficiency on a tabular benchmark: real evaluations of every point of a small space,
replayed by each sampler, and what multi-objective early stopping saves there.

    python benchmarks/sampler_efficiency.py build  --size cpu     # the real compute (tens of minutes)
    python benchmarks/sampler_efficiency.py replay --size cpu     # seconds: no training

``build`` evaluates every point of ``benchmarks/tabular_space.yaml`` (a 72-point sub-space of
``light.yaml``, same data, objectives and constraints) once with the proxy evaluator (seed 0)
and stores one row per point in ``table.csv``: the decisions, status, objectives, params, MACs,
the held-out loss after 1/16, 1/9, 1/4, 1/3 and 1/2 of the steps (``_tabular.PROBES``: the rungs
of the layouts the replay judges), steps and seconds.  Rows are appended as points finish, so a
killed build resumes where it stopped.  Points that break the space's constraints are not
trained, exactly as the search's cheap gate skips them.

``replay`` runs each sampler of :data:`SAMPLER_ORDER` for N trials
over several seeds on an in-memory Optuna study opened as ``nas.search`` opens one, answering
each trial from the table instead of training: the search's own ``TrialRunner`` records every
trial (duplicates, the gate, infeasible points, rung hooks, failures), with the gate's figures
and the evaluation taken from the table (``_tabular.TableLookup``).  After every trial it computes the
hypervolume of the feasible points found so far, with objectives min-max normalised over every
feasible table row (minimised orientation, reference point 1.1), as a share of the whole
table's hypervolume.  It then replays ``random`` and ``evolution`` again with each early-stopping
layout of :data:`STOPPING` (``halving``: the search's default multi-objective successive
halving, eta 3 at 1/9 and 1/3; ``pareto``: the rule before, at 1/4 and 1/2; a stopped trial is
PRUNED and costs the steps up to its rung) and reports the training steps and evaluation
seconds spent against the final hypervolume share kept.

Sizes: ``quick`` builds the first 4 points at the smoke budget (the test; seconds) and replays
2 seeds x 8 trials (on that partial table points not in it are recorded FAIL ``error``);
``cpu`` builds all 72 points at the cpu recipe cut to 30 steps and 128 FID samples (the
committed table) and replays 10 seeds x 40% of the table; ``gpu`` builds the table at the full
cpu budget (100 steps, 256 FID samples) on one GPU, meant to finish within 10 minutes on an
H100, and replays 20 seeds; nobody has run the gpu size here.  ``replay`` reads ``--table``, by
default ``OUT/table.csv``, except that the quick size replays the committed complete table
when there is one.  After the points, ``build`` measures every trained point's throughput again
in interleaved rounds and keeps the median (the machine may be shared; see
``_tabular.remeasure_throughput``).  Output in ``--out`` (default
``results/benchmarks/sampler_efficiency``): ``table.csv``, ``sampler_efficiency.json``,
``sampler_efficiency.png``.

The table itself (building, reading and writing it, the lookup and its normalisation, the table
budgets) is ``benchmarks/_tabular.py``; this file is the command line, the replay and its analysis.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, shown_path, write_result
from _replay import (
    STOPPING,
    Run,
    early_markdown,
    early_summary,
    layout_rule,
    plot_curves,
    plot_early,
    quiet,
    replay_one,
    stats,
    summarise_runs,
    trials_to_reach,
)
from _tabular import (
    REFERENCE,
    SPACE,
    Table,
    TableLookup,
    build_table,
    enumerated_points,
    no_skill_scores,
    read_table,
    table_budgets,
)

from nas.cli import positive_int

NAME = "sampler_efficiency"
SAMPLER_ORDER = ("random", "nsga2", "tpe", "evolution", "rl", "local", "surrogate", "gp")
PRUNED_SAMPLERS = ("random", "evolution", "tpe")  # random, our evolution, the default


@dataclass(frozen=True)
class Size:
    """What one ``--size`` builds and replays."""

    budget: str  # a key of table_budgets()
    points: int | None  # first N points of the enumeration (None: all)
    trials: int | None  # replay trials (None: 40% of the table)
    seeds: int
    throughput_rounds: int  # interleaved throughput measurements per point (_tabular.remeasure_throughput)


SIZES = {
    "quick": Size(budget="smoke", points=4, trials=8, seeds=2, throughput_rounds=2),
    "cpu": Size(budget="cpu-table", points=None, trials=None, seeds=10, throughput_rounds=3),
    "gpu": Size(budget="cpu", points=None, trials=None, seeds=20, throughput_rounds=3),
}


# ----- build: the table (benchmarks/_tabular.py) ---------------------------------------------
def build(args: argparse.Namespace) -> int:
    """Evaluate every point not yet in the table and append it (resumable), then measure the
    trained points' throughput again in interleaved rounds."""
    from nas.space import load_space

    size = SIZES[args.size]
    space = load_space(SPACE)
    build_table(output_dir(NAME, args.out) / "table.csv", space, specs=enumerated_points(space, size.points),
                budget_name=size.budget, device=args.device, throughput_rounds=size.throughput_rounds)
    return 0


# ----- the replay (benchmarks/_replay.py) ----------------------------------------------------
def exact_replay(space: Any, table: Table, sampler: str, seed: int, trials: int, *, stopping: str | None,
                 no_skill: Any) -> Run:
    """One replay answered from the table, stopped early by the layout ``stopping`` of
    :data:`STOPPING` (None: no early stopping)."""
    budget, rule = layout_rule(stopping, table_budgets()[table.budget_name])
    lookup = TableLookup(table.rows, no_skill=no_skill, budget=budget)
    return replay_one(space, table, lookup, sampler, seed, trials, rule=rule)


def default_table(out: Path, size: str, points: int) -> Path:
    """``OUT/table.csv``; at the quick size the committed complete table instead when it exists
    (the quick table covers 4 of the space's points, so most proposals would miss it)."""
    committed = REPO / "results" / "benchmarks" / NAME / "table.csv"
    if size == "quick" and committed.is_file() and len({r["digest"] for r in read_table(committed)}) >= points:
        return committed
    return out / "table.csv"


def replay(args: argparse.Namespace) -> int:
    """Replay every sampler over the table; write the JSON and the plot."""
    from nas.space import load_space

    quiet()
    size = SIZES[args.size]
    out = output_dir(NAME, args.out)
    space = load_space(SPACE)
    table_path = Path(args.table) if args.table else default_table(out, args.size, space.cardinality())
    rows = read_table(table_path)
    if not rows:
        raise SystemExit(f"error: no table at {table_path}; run `build` first (or pass --table)")
    table = Table.load(rows, space)
    cardinality = space.cardinality()
    if len(table.rows) < cardinality and args.size != "quick":
        raise SystemExit(f"error: {table_path} covers {len(table.rows)} of {cardinality} points; "
                         "finish `build` first")
    trials = args.trials or size.trials or max(1, round(0.4 * cardinality))
    seeds = list(range(args.seeds or size.seeds))
    started = time.perf_counter()
    no_skill = no_skill_scores(space, table.budget_name)

    if args.samplers and "random" not in args.samplers:
        raise SystemExit("error: --samplers must include random (every figure is relative to it)")
    samplers: dict[str, Any] = {}
    runs: dict[str, list[Run]] = {}
    for name in args.samplers or SAMPLER_ORDER:
        runs[name] = [exact_replay(space, table, name, seed, trials, stopping=None, no_skill=no_skill)
                      for seed in seeds]
        samplers[name] = summarise_runs(runs[name])
        print(f"{name:>9}: final HV share {samplers[name]['final']['mean']:.3f} "
              f"+- {samplers[name]['final']['std']:.3f}", flush=True)
    target = samplers["random"]["final"]["mean"]
    for summary in samplers.values():
        summary["trials_to_reach_random_final"] = trials_to_reach(summary["curve"]["mean"], target)

    early: dict[str, dict[str, Any]] = {}
    for layout in STOPPING:
        early[layout] = {}
        for name in [n for n in PRUNED_SAMPLERS if n in samplers]:
            pruned = [exact_replay(space, table, name, seed, trials, stopping=layout, no_skill=no_skill)
                      for seed in seeds]
            early[layout][name] = e = early_summary(runs[name], pruned)
            print(f"{name:>9} + {layout}: steps {e['steps_without']['mean']:.0f} -> {e['steps_with']['mean']:.0f} "
                  f"({e['steps_with_share']['mean']:.1%} of no stopping), final HV share "
                  f"{e['hv_without']['mean']:.3f} -> {e['hv_with']['mean']:.3f} "
                  f"({e['hv_kept']['mean']:.1%} kept)", flush=True)

    statuses: dict[str, int] = {}
    for row in table.rows.values():
        statuses[row["status"]] = statuses.get(row["status"], 0) + 1
    walls = np.array([float(r["wall_seconds"] or 0.0) for r in table.rows.values()])
    trained = np.array([float(r["wall_seconds"] or 0.0) for r in table.rows.values() if r["status"] != "infeasible"])
    payload = {
        "size": args.size,
        "space": str(SPACE.relative_to(REPO)),
        "table": {"path": shown_path(table_path), "rows": len(table.rows), "space_points": cardinality,
                  "statuses": statuses, "feasible_ok": sum(1 for r in table.rows.values()
                                                           if r["status"] == "ok" and r["feasible"]),
                  "budget_name": table.budget_name, "budget": table_budgets()[table.budget_name].to_dict(),
                  "eval_seed": 0, "throughput_rounds": sorted({r.get("throughput_rounds") for r in table.rows.values()
                                                               if r["status"] == "ok"}, key=str),
                  "build_wall_seconds_sum": float(walls.sum()),
                  "seconds_per_trained_point": stats(trained) if len(trained) else None},
        "normalisation": {"objectives": [f"{o.metric} ({o.direction})" for o in space.objectives],
                          "min_minimised": table.lo, "range": table.scale, "reference": REFERENCE,
                          "true_front_hypervolume": table.true_hv},
        "trials": trials, "seeds": seeds,
        "random_final_mean": target,
        "samplers": samplers,
        "early_stopping": {"layouts": {k: {**v, "rungs": list(v["rungs"]) if v["rungs"] else None}
                                       for k, v in STOPPING.items()}, "replays": early},
        "replay_seconds": time.perf_counter() - started,
    }
    write_result(out / f"{NAME}.json", payload)
    plot(samplers, early, target, trials, len(seeds), out / f"{NAME}.png")
    print(markdown(samplers, early, trials, len(seeds)))
    return 0


def markdown(samplers: dict[str, Any], early: dict[str, Any], trials: int, seeds: int) -> str:
    """The README rows: HV share at N trials, trials to reach random's final share, early stopping."""
    header = (f"| sampler | HV share at {trials} trials (mean ± std, {seeds} seeds) | min-max | "
              "trials to reach random's final mean |")
    lines = [header, "|---|---:|---:|---:|"]
    for name, s in samplers.items():
        reach = s["trials_to_reach_random_final"]
        lines.append(f"| `{name}` | {s['final']['mean']:.3f} ± {s['final']['std']:.3f} | "
                     f"{s['final']['min']:.3f}-{s['final']['max']:.3f} | "
                     f"{reach if reach is not None else 'not reached'} |")
    lines += ["", *early_markdown(early)]
    return "\n".join(lines)


def plot(samplers: dict[str, Any], early: dict[str, Any], target: float, trials: int, seeds: int,
         path: Path) -> None:
    """HV share against trials per sampler (mean, min-max band), random's final level dashed;
    beside it the early-stopping replays' mean curves against the plain ones, over steps spent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.6), dpi=110)
    colours = dict(zip(SAMPLER_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    plot_curves(ax, samplers, target, seeds, colours)
    plot_early(ax2, {name: samplers[name]["curve"]["mean"] for name in next(iter(early.values()))}, early,
               colours)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# ----- command line ---------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, func in (("build", build), ("replay", replay)):
        sub = commands.add_parser(name, help=func.__doc__)
        sub.add_argument("--size", choices=list(SIZES), default="cpu")
        sub.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
        sub.set_defaults(func=func)
        if name == "build":
            sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
        else:
            sub.add_argument("--table", default=None, help="table CSV (default OUT/table.csv)")
            sub.add_argument("--trials", type=positive_int, default=None, help="trials per search (default by size)")
            sub.add_argument("--seeds", type=positive_int, default=None, help="seeds 0..S-1 (default by size)")
            sub.add_argument("--samplers", nargs="+", choices=SAMPLER_ORDER, default=None,
                             help="samplers to replay (default all; random is needed for the comparisons)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
