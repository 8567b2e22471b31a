"""A tabular benchmark over the whole of ``light.yaml``, hard enough to rank samplers (issue 15).

    python benchmarks/light_benchmark.py build --size cpu               # hours on 2 CPU cores; resumable
    python benchmarks/light_benchmark.py build --size cpu --points 300  # grows the same draw
    python benchmarks/light_benchmark.py replay --size cpu              # samplers on its surrogate
    python benchmarks/light_benchmark.py stopping --size cpu            # early stopping on it

``benchmarks/sampler_efficiency.py`` replays samplers on every point of a 72-point sub-space
with 5 decisions, at a 30-step recipe where width decides most of the front; samplers can
barely be told apart there.  This table draws from all of ``light.yaml``'s decisions instead:
a fixed draw (``_tabular.drawn_points``, seed 0, uniform per decision, distinct points, until
``--points`` of them pass the space's static constraints) evaluated once each with the proxy
evaluator at the full ``cpu`` budget (100 steps), recording the held-out loss at the probe
rungs (``_tabular.PROBES``) as well.  The draw is a prefix property, so a larger ``--points``
keeps every existing row and evaluates only the new points; a killed build resumes where it
stopped.  Points that break a constraint are recorded infeasible without training, as the
search's gate skips them.  When every drawn point is in the table, the trained points'
throughput is measured again in interleaved rounds (``_tabular.remeasure_throughput``); run the
build on a quiet machine for that step.

``replay`` fits a surrogate of the table (``benchmarks/_surrogate.py``: gradient-boosted trees
per figure, parameters and MACs counted exactly), reports its 5-fold held-out rank correlation
per figure, and replays every sampler for N trials over several seeds through the search's own
study, sampler and trial runner (``_replay.replay_one``), answered by the surrogate.  The
hypervolume share is over the table's normalisation (its feasible trained rows, minimised,
reference 1.1); predicted points can beat the table's front, so a share can exceed 1.  A
sampler's result counts only for objectives whose held-out Spearman is at least 0.8
(:data:`MIN_SPEARMAN`); the JSON says which do.  Written to ``--out``: ``surrogate_replay.json``
and ``surrogate_replay.png``.

``stopping`` replays random search and the default sampler on the same surrogate without early
stopping and with each rung layout of ``_replay.STOPPING`` (the surrogate predicts the held-out
loss at the table's rung probes too; its held-out Spearman per probe, and how well the probes
rank against the final loss measured and predicted, are in the JSON), and reports the training
steps, evaluation seconds and hypervolume with and without: ``early_stopping.json`` and
``early_stopping.png``.

Sizes: ``quick`` draws 3 feasible points at the smoke budget into ``--out`` and replays 1 seed
x 12 trials on the committed table (the test; seconds); ``cpu`` builds 200 feasible points at
the ``cpu`` budget (the committed table, ``results/benchmarks/light_benchmark/table.csv``) and
replays 100 trials x 20 seeds, 5 seeds for ``gp`` (its proposals fit a GP each trial: seconds
apiece on 2 cores); ``stopping`` replays 1 seed x 12 trials (quick) or 100 trials x 10 seeds.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, shown_path, write_result
from _light_jobs import SPACE, Job, run_jobs
from _replay import (
    STOPPING,
    early_markdown,
    early_summary,
    plot_curves,
    plot_early,
    quiet,
    seeds_stem,
    summarise_runs,
    trials_to_reach,
)
from _surrogate import cross_validate
from _tabular import REFERENCE, Table, build_table, drawn_points, read_table, table_budgets

from nas.cli import non_negative_int, positive_int
from nas.samplers import DEFAULT_SAMPLER

NAME = "light_benchmark"
COMMITTED = REPO / "results" / "benchmarks" / NAME / "table.csv"
SAMPLER_ORDER = ("random", "nsga2", "tpe", "tpe-distinct", "evolution", "rl", "local", "surrogate", "gp")
MIN_SPEARMAN = 0.8  # a replayed result counts for an objective the surrogate ranks at least this well


@dataclass(frozen=True)
class Size:
    """What one ``--size`` builds."""

    budget: str  # a key of _tabular.table_budgets()
    points: int  # feasible points of the draw
    throughput_rounds: int  # interleaved throughput measurements per point
    trials: int  # replay trials per search
    seeds: int  # replay seeds per sampler
    gp_seeds: int  # fewer for Optuna's GPSampler: it fits a GP for each proposal
    stopping_seeds: int  # seeds per sampler and rung layout of the early-stopping replay


SIZES = {
    "quick": Size(budget="smoke", points=3, throughput_rounds=2, trials=12, seeds=1, gp_seeds=1, stopping_seeds=1),
    "cpu": Size(budget="cpu", points=200, throughput_rounds=3, trials=100, seeds=20, gp_seeds=5, stopping_seeds=10),
}


def build(args: argparse.Namespace) -> int:
    """Evaluate the drawn points not yet in the table and append them (resumable)."""
    from nas.space import load_space

    size = SIZES[args.size]
    space = load_space(SPACE)
    specs = drawn_points(space, args.points or size.points, seed=0)
    build_table(output_dir(NAME, args.out) / "table.csv", space, specs=specs, budget_name=size.budget,
                device=args.device, throughput_rounds=size.throughput_rounds)
    return 0


def _earlier(path: Path, trials: int, table_path: Path, **same: Any) -> dict[str, Any]:
    """An earlier result in the same folder, when it replayed the same table for as many trials
    (and has the values ``same`` names; else nothing: it would not be comparable)."""
    from nas.readers import read_json

    if not path.is_file():
        return {}
    earlier = read_json(path)
    if (earlier.get("trials") != trials or earlier.get("table") != shown_path(table_path)
            or any(earlier.get(key) != value for key, value in same.items())):
        print(f"note: {path} replayed another table, trial count or seeds; not merged", flush=True)
        return {}
    return earlier


def replay(args: argparse.Namespace) -> int:
    """Fit the surrogate, report its held-out rank correlations, replay every sampler on it."""
    import time

    from nas.space import load_space

    quiet()
    size = SIZES[args.size]
    out = output_dir(NAME, args.out)
    space = load_space(SPACE)
    table_path = Path(args.table) if args.table else COMMITTED
    rows = read_table(table_path)
    if not rows:
        raise SystemExit(f"error: no table at {table_path}; run `build` first (or pass --table)")
    started = time.perf_counter()
    table = Table.load(rows, space)
    correlation = cross_validate(space, rows)
    for figure, c in correlation.items():
        print(f"surrogate {figure:>10}: held-out Spearman {c['spearman']:.3f}, Kendall {c['kendall']:.3f}", flush=True)
    trials = args.trials or size.trials
    names = args.samplers or list(SAMPLER_ORDER)
    first = args.first_seed
    if first and "random" not in names:
        names = ["random", *names]  # seeds other than the committed ones: random search's target replayed too
    jobs = [(name, seed, trials, None) for name in names
            for seed in range(first, first + (args.seeds or (size.gp_seeds if name == "gp" else size.seeds)))]
    results = run_jobs(jobs, table_path, args.jobs)
    samplers: dict[str, Any] = {}
    stem = seeds_stem("surrogate_replay", [seed for _, seed, _, _ in jobs])
    if args.merge:  # the samplers not replayed now keep their earlier figures
        samplers = dict(_earlier(out / f"{stem}.json", trials, table_path).get("samplers", {}))
    for name in names:
        mine = [results[job] for job in jobs if job[0] == name]
        runs = [run for run, _, _ in mine]
        samplers[name] = {**summarise_runs(runs), "seeds": len(runs),
                          "seconds_per_trial": sum(s for _, s, _ in mine) / (len(runs) * trials)}
        samplers[name]["replayed"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")
        print(f"{name:>9}: final HV share {samplers[name]['final']['mean']:.3f} "
              f"+- {samplers[name]['final']['std']:.3f} ({len(runs)} seeds)", flush=True)
    samplers = {n: samplers[n] for n in SAMPLER_ORDER if n in samplers}
    target = samplers["random"]["final"]["mean"] if "random" in samplers else float("nan")
    spread = samplers["random"]["final"]["std"] if "random" in samplers else float("nan")
    for summary in samplers.values():
        reach = trials_to_reach(summary["curve"]["mean"], target)
        summary["trials_to_reach_random_final"] = reach
        summary["reaches_random_final_in_a_third"] = reach is not None and reach <= trials / 3
        summary["above_random_by_more_than_its_spread"] = summary["final"]["mean"] - target > spread
    counted = [o.metric for o in space.objectives if correlation[o.metric]["spearman"] >= MIN_SPEARMAN]
    payload = {
        "size": args.size, "space": str(SPACE.relative_to(REPO)), "table": shown_path(table_path),
        "table_rows": len(rows), "trained_rows": correlation["val_loss"]["rows"],
        "surrogate": {"model": "sklearn GradientBoostingRegressor(n_estimators=400, learning_rate=0.03, "
                               "max_depth=3, subsample=0.8), one per figure; log for throughput and latency",
                      "features": "decision encoding (nas.samplers.encoding) + log params + log MACs",
                      "held_out": correlation, "folds": 5, "min_spearman": MIN_SPEARMAN,
                      "objectives_counted": counted},
        "normalisation": {"min_minimised": table.lo, "range": table.scale, "reference": REFERENCE,
                          "table_front_hypervolume": table.true_hv},
        "trials": trials, "first_seed": first, "random_final_mean": target, "random_final_std": spread,
        "exact_static_costs_counted": sum(counted for _, _, counted in results.values()),
        "jobs": args.jobs,
        "samplers": samplers, "replay_seconds": time.perf_counter() - started,
    }
    write_result(out / f"{stem}.json", payload)
    _plot(samplers, target, out / f"{stem}.png")
    print(markdown(samplers, trials))
    return 0


def stopping(args: argparse.Namespace) -> int:
    """Replay random search and the default sampler on the surrogate without early stopping and
    with each rung layout; report steps, seconds and hypervolume kept."""
    import time

    from nas.space import load_space

    quiet()
    size = SIZES[args.size]
    out = output_dir(NAME, args.out)
    space = load_space(SPACE)
    table_path = Path(args.table) if args.table else COMMITTED
    rows = read_table(table_path)
    if not rows:
        raise SystemExit(f"error: no table at {table_path}; run `build` first (or pass --table)")
    started = time.perf_counter()
    table = Table.load(rows, space)
    correlation = cross_validate(space, rows)
    for figure, c in correlation.items():
        versus = c.get("rung_vs_final")
        extra = (f"; against the final loss {versus['measured']:.3f} measured, {versus['predicted']:.3f} predicted"
                 if versus else "")
        print(f"surrogate {figure:>16}: held-out Spearman {c['spearman']:.3f}{extra}", flush=True)
    trials, seeds = args.trials or size.trials, args.seeds or size.stopping_seeds
    names = args.samplers or ["random", DEFAULT_SAMPLER]
    chosen = args.layouts or list(STOPPING)
    layouts: list[str | None] = [None, *chosen]
    jobs: list[Job] = [(name, seed, trials, layout) for name in names for layout in layouts for seed in range(seeds)]
    results = run_jobs(jobs, table_path, args.jobs)
    runs = {(name, layout): [results[(name, seed, trials, layout)][0] for seed in range(seeds)]
            for name in names for layout in layouts}
    early: dict[str, dict[str, Any]] = {layout: {} for layout in chosen}
    plain: dict[str, Any] = {}
    if args.merge:  # the samplers (and layouts) not replayed now keep their earlier figures
        earlier = _earlier(out / "early_stopping.json", trials, table_path, seeds=list(range(seeds)))
        plain.update(earlier.get("plain", {}))
        for layout, by_sampler in earlier.get("early_stopping", {}).get("replays", {}).items():
            early.setdefault(layout, {}).update(by_sampler)
    for name in names:
        s = summarise_runs(runs[(name, None)])
        plain[name] = {"final": s["final"], "curve_mean": s["curve"]["mean"], "states": s["states"]}
        for layout in chosen:
            early[layout][name] = early_summary(runs[(name, None)], runs[(name, layout)])
    order = [n for n in SAMPLER_ORDER if n in plain]
    plain = {n: plain[n] for n in order}
    early = {layout: {n: by[n] for n in order if n in by} for layout, by in early.items()}
    for layout, by_sampler in early.items():
        for name, e in by_sampler.items():
            d = e.get("rung_decisions")  # merged rows from before 2026-12-04 have none
            why = (f"; rung decisions: {d['first']} first, {d['front']} on the rung's front, {d['top']} behind it, "
                   f"{d['stopped']} stopped") if d else ""
            print(f"{name:>9} + {layout}: {e['steps_with_share']['mean']:.1%} of the steps, "
                  f"{e['hv_kept']['mean']:.1%} of the hypervolume{why}", flush=True)
    payload = {
        "size": args.size, "space": str(SPACE.relative_to(REPO)), "table": shown_path(table_path),
        "trained_rows": correlation["val_loss"]["rows"],
        "surrogate": {"held_out": correlation, "folds": 5},
        "budget": table_budgets()[table.budget_name].to_dict(),
        "trials": trials, "seeds": list(range(seeds)), "samplers": order, "replayed_now": names,
        "plain": plain,
        "early_stopping": {"layouts": {k: {**v, "rungs": list(v["rungs"]) if v["rungs"] else None}
                                       for k, v in STOPPING.items()}, "replays": early},
        "jobs": args.jobs, "replay_seconds": time.perf_counter() - started,
    }
    write_result(out / "early_stopping.json", payload)
    _plot_early(plain, early, seeds, out / "early_stopping.png")
    print("\n".join(early_markdown(early)))
    return 0


def _plot_early(plain: dict[str, Any], early: dict[str, Any], seeds: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
    colours = dict(zip(SAMPLER_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    plot_early(ax, {name: s["curve_mean"] for name, s in plain.items()}, early, colours)
    ax.set_title(f"light.yaml surrogate: early stopping, mean over {seeds} seeds", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(samplers: dict[str, Any], trials: int) -> str:
    """The README rows: final HV share, trials to reach random's final mean, and the two tests."""
    lines = [f"| sampler | seeds | HV share at {trials} trials (mean ± std) | min-max | trials to reach random's "
             "final mean | above random by more than its spread | s per trial |",
             "|---|---:|---:|---:|---:|---|---:|"]
    for name, s in samplers.items():
        reach = s["trials_to_reach_random_final"]
        lines.append(f"| `{name}` | {s['seeds']} | {s['final']['mean']:.3f} ± {s['final']['std']:.3f} | "
                     f"{s['final']['min']:.3f}-{s['final']['max']:.3f} | "
                     f"{reach if reach is not None else 'not reached'} | "
                     f"{'yes' if s['above_random_by_more_than_its_spread'] else 'no'} | "
                     f"{s['seconds_per_trial']:.2f} |")
    return "\n".join(lines)


def _plot(samplers: dict[str, Any], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=110)
    colours = dict(zip(SAMPLER_ORDER, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    seeds = max((s["seeds"] for s in samplers.values()), default=0)
    plot_curves(ax, samplers, target, seeds, colours)
    ax.set_title(f"light.yaml surrogate: mean over {seeds} seeds (gp fewer), band min-max", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    sub = commands.add_parser("build", help=build.__doc__)
    sub.add_argument("--size", choices=list(SIZES), default="cpu")
    sub.add_argument("--points", type=positive_int, default=None,
                     help="feasible points of the draw (default by size; more grows the same draw)")
    sub.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    sub.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    sub.set_defaults(func=build)
    sub = commands.add_parser("replay", help=replay.__doc__)
    sub.add_argument("--size", choices=list(SIZES), default="cpu")
    sub.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    sub.add_argument("--table", default=None, help="table CSV (default the committed one)")
    sub.add_argument("--trials", type=positive_int, default=None, help="trials per search (default by size)")
    sub.add_argument("--seeds", type=positive_int, default=None, help="seeds 0..S-1 for every sampler")
    sub.add_argument("--first-seed", type=non_negative_int, default=0,
                     help="seeds FIRST..FIRST+S-1 instead, written to surrogate_replay_seeds<A>-<B>.json; random "
                          "search is replayed on them too (a check on seeds a setting was not chosen on)")
    sub.add_argument("--jobs", type=positive_int, default=1, help="worker processes (the result is the same)")
    sub.add_argument("--samplers", nargs="+", choices=SAMPLER_ORDER, default=None,
                     help="samplers to replay (default all; random first for the comparisons)")
    sub.add_argument("--merge", action="store_true",
                     help="keep the other samplers' results of the existing surrogate_replay.json (same table and "
                          "trial count) and replace only those replayed")
    sub.set_defaults(func=replay)
    sub = commands.add_parser("stopping", help=stopping.__doc__)
    sub.add_argument("--size", choices=list(SIZES), default="cpu")
    sub.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    sub.add_argument("--table", default=None, help="table CSV (default the committed one)")
    sub.add_argument("--trials", type=positive_int, default=None, help="trials per search (default by size)")
    sub.add_argument("--seeds", type=positive_int, default=None, help="seeds 0..S-1 per sampler and layout")
    sub.add_argument("--jobs", type=positive_int, default=1, help="worker processes (the result is the same)")
    sub.add_argument("--samplers", nargs="+", choices=SAMPLER_ORDER, default=None,
                     help=f"samplers to replay (default random and the default sampler, {DEFAULT_SAMPLER})")
    sub.add_argument("--layouts", nargs="+", choices=list(STOPPING), default=None,
                     help="rung layouts to replay besides no stopping (default all)")
    sub.add_argument("--merge", action="store_true",
                     help="keep the other samplers' and layouts' results of the existing early_stopping.json (same "
                          "table, trials and seeds) and replace only those replayed")
    sub.set_defaults(func=stopping)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
