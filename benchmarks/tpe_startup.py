"""How many uniform start-up trials the default sampler (Optuna's TPE) should draw, on the light benchmark.

    python benchmarks/tpe_startup.py --jobs 2                 # start-up 3, 4, 5, 6, 10; 20 seeds x 100 trials
    python benchmarks/tpe_startup.py --startups 5 10 --seeds 2 --trials 12 --out DIR   # quick
    python benchmarks/tpe_startup.py --startups 5 10 --first-seed 20 --jobs 2   # held-out seeds 20-39

Optuna's TPE draws 10 trials uniformly before its model is used; a NAS search of tens of trials
spends a large share of itself there.  This replays the registry's ``tpe`` (multivariate,
constant liar) with each start-up count on the light benchmark's surrogate, through the same
study, trial runner and seeds as ``light_benchmark.py replay``, and reports per count the final
hypervolume share, the share at a third of the trials and the first trial at which the mean over
seeds reaches random search's final mean (from the committed ``surrogate_replay.json`` of the
same trial count).  The registry's count was chosen with it, so its figure is flattered by the
choice; the neighbouring counts show how much.  ``--first-seed`` replays other seeds than the
ones the count was chosen on (0-19): random search is replayed on the same seeds then, and its
final mean there is the target, so the check does not reuse a figure of the seeds it left out.
Writes ``tpe_startup.json`` (seeds from 0) or ``tpe_startup_seeds<A>-<B>.json`` under
``results/benchmarks/light_benchmark/``; a held-out run also pools its seeds with those of
``tpe_startup.json`` beside it (and random search's of ``surrogate_replay.json``) when the trial
and seed counts match.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, write_result
from _light_jobs import run_jobs
from _replay import seeds_stem, summarise_runs, trials_to_reach

from nas.cli import non_negative_int, positive_int
from nas.readers import read_json
from nas.samplers import SAMPLERS

NAME = "light_benchmark"
TABLE = REPO / "results" / "benchmarks" / NAME / "table.csv"
STARTUPS = (3, 4, 5, 6, 10)


def _variant(startup: int) -> str:
    return f"tpe-startup{startup}"


def _register(startups: range) -> None:
    """Register ``tpe`` with each start-up count under its own name, in this process and (this
    module being ``__main__``, which spawned workers import again) in every worker."""
    from optuna.samplers import TPESampler

    for startup in startups:
        SAMPLERS[_variant(startup)] = lambda seed, n=startup: TPESampler(multivariate=True, constant_liar=True,
                                                                       n_startup_trials=n, seed=seed)


_register(range(1, 31))  # any count the command line may ask for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--startups", nargs="+", type=positive_int, default=list(STARTUPS))
    parser.add_argument("--seeds", type=positive_int, default=20)
    parser.add_argument("--trials", type=positive_int, default=100)
    parser.add_argument("--first-seed", type=non_negative_int, default=0,
                        help="seeds FIRST..FIRST+S-1 (default 0); other than 0, random search is replayed on them too")
    parser.add_argument("--jobs", type=positive_int, default=1, help="worker processes (the result is the same)")
    parser.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    args = parser.parse_args(argv)
    if any(n > 30 for n in args.startups):
        parser.error("--startups: at most 30")
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    jobs = [(_variant(n), seed, args.trials, None) for n in args.startups for seed in seeds]
    random_path = REPO / "results" / "benchmarks" / NAME / "surrogate_replay.json"
    if args.first_seed == 0:
        committed = read_json(random_path)
        target = committed["random_final_mean"] if committed.get("trials") == args.trials else None
        random_from: Any = str(random_path.relative_to(REPO))
    else:  # held-out seeds: random search's target comes from the same seeds
        jobs += [("random", seed, args.trials, None) for seed in seeds]
    results = run_jobs(jobs, TABLE, args.jobs)
    random_summary = None
    if args.first_seed != 0:
        random_summary = summarise_runs([results[("random", seed, args.trials, None)][0] for seed in seeds])
        target, random_from = random_summary["final"]["mean"], "replayed on the same seeds"
        print(f"random: final {target:.3f} +- {random_summary['final']['std']:.3f}", flush=True)
    out: dict[str, Any] = {}
    third = max(1, args.trials // 3)
    for n in args.startups:
        summary = summarise_runs([results[(_variant(n), seed, args.trials, None)][0] for seed in seeds])
        curve = summary["curve"]["mean"]
        reach = trials_to_reach(curve, target) if target is not None else None
        out[str(n)] = {"final": summary["final"], f"mean_at_trial_{third}": curve[third - 1],
                       "trials_to_reach_random_final": reach, "curve_mean": curve}
        print(f"start-up {n:>2}: final {summary['final']['mean']:.3f} +- {summary['final']['std']:.3f}, "
              f"at trial {third} {curve[third - 1]:.3f}, reaches random's final mean at "
              f"{reach if reach is not None else 'never'}", flush=True)
    name = f"{seeds_stem('tpe_startup', seeds)}.json"
    payload: dict[str, Any] = {"trials": args.trials, "seeds": seeds, "random_final_mean": target,
                               "random_from": random_from, "startups": out}
    if random_summary is not None:
        payload["random"] = {"final": random_summary["final"], "curve_mean": random_summary["curve"]["mean"]}
        pooled = _pooled(payload, output_dir(NAME, args.out) / "tpe_startup.json", random_path)
        if pooled:
            payload["pooled_with_seeds_from_0"] = pooled
    write_result(output_dir(NAME, args.out) / name, payload)
    return 0


def _pooled(held_out: dict[str, Any], first_path: Path, random_path: Path) -> dict[str, Any] | None:
    """The held-out run pooled with the seeds-from-0 run beside it (same trial and seed counts):
    random search's final mean and each start-up count's first trial reaching it, over both seed
    sets' mean curves (equal seed counts, so the pooled mean is the mean of the two)."""
    import numpy as np

    if not first_path.is_file() or not random_path.is_file():
        return None
    first, committed = read_json(first_path), read_json(random_path)
    same = (first.get("trials") == held_out["trials"] == committed.get("trials")
            and len(first.get("seeds", [])) == len(held_out["seeds"]) == committed["samplers"]["random"].get("seeds"))
    if not same:
        return None
    random_curve = (np.array(committed["samplers"]["random"]["curve"]["mean"])
                    + np.array(held_out["random"]["curve_mean"])) / 2
    target = float(random_curve[-1])
    out: dict[str, Any] = {"seeds": sorted(first["seeds"] + held_out["seeds"]), "random_final_mean": target,
                           "startups": {}}
    for n, figures in held_out["startups"].items():
        if n not in first["startups"]:
            continue
        curve = (np.array(first["startups"][n]["curve_mean"]) + np.array(figures["curve_mean"])) / 2
        reach = trials_to_reach([float(x) for x in curve], target)
        out["startups"][n] = {"final_mean": float(curve[-1]), "trials_to_reach_random_final": reach}
        print(f"pooled over {len(out['seeds'])} seeds, start-up {n:>2}: final {curve[-1]:.3f}, reaches random's "
              f"final mean ({target:.3f}) at {reach if reach is not None else 'never'}", flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
