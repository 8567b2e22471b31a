"""What early stopping saves and costs in a real search: the same search with each stopping rule.

    python benchmarks/early_stopping.py --budget cpu --trials 24            # the README's figures
    python benchmarks/early_stopping.py --budget smoke --trials 6 --out DIR  # quick (the test)

Runs ``nas.search`` once per rule (``--stopping halving`` and ``none`` by default; add ``pareto``
with ``--rules``) with the same space, seed and sampler, each into its own results folder and as a
fresh process, then reports per rule: the wall time, training steps, trials stopped, the
evaluation seconds, and the hypervolume of the final front with objectives normalised over the
union of every run's feasible trials (reference point 1.1 in every normalised objective).  One
untimed one-trial search first builds the on-disk caches.
Writes ``early_stopping.json`` under ``results/benchmarks/early_stopping/``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, output_dir, write_result

from nas.samplers import DEFAULT_SAMPLER

NAME = "early_stopping"


def run(space: str, budget: str, trials: int, sampler: str, seed: int, rule: str, out: Path) -> float:
    """One search as a fresh process; returns its wall seconds."""
    cmd = [sys.executable, "-m", "nas.search", "--space", space, "--budget", budget, "--trials", str(trials),
           "--sampler", sampler, "--seed", str(seed), "--out", str(out), "--device", "cpu", "--stopping", rule]
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"search failed ({rule}): {proc.stderr[-2000:]}")
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--budget", default="cpu")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rules", nargs="+", default=["halving", "none"], help="stopping rules to run")
    parser.add_argument("--out", default=None, help=f"output folder (default results/benchmarks/{NAME})")
    args = parser.parse_args(argv)

    import optuna

    from nas.front import hypervolume
    from nas.pareto import candidate_trials, front_trials, minimised_values
    from nas.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    name = load_space(args.space, check_constraints=False).name
    out = output_dir(NAME, args.out)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        # One untimed trial first: the first search on a machine builds the on-disk caches (FID
        # classifier, reference features), which would otherwise be charged to the first rule.
        run(args.space, args.budget, 1, args.sampler, args.seed, "none", Path(tmp) / "warm-up")
        studies = {}
        for rule in args.rules:
            folder = Path(tmp) / rule
            wall = run(args.space, args.budget, args.trials, args.sampler, args.seed, rule, folder)
            studies[rule] = optuna.load_study(study_name=name, storage=f"sqlite:///{folder / name}.db")
            runs[rule] = {"wall_seconds": wall}
            print(f"{rule:>8}: {wall:.0f} s wall", flush=True)
        points = {rule: minimised_values(study, candidate_trials(study)) for rule, study in studies.items()}
        union = np.concatenate([p for p in points.values() if len(p)])
        lo, hi = union.min(axis=0), union.max(axis=0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        for rule, study in studies.items():
            trials = study.trials
            trained = [t for t in trials if t.user_attrs.get("duplicate_of") is None]
            front = front_trials(study)
            norm = (minimised_values(study, front) - lo) / scale
            runs[rule].update(
                steps=int(sum(t.user_attrs.get("steps", 0) for t in trained)),
                eval_seconds=float(sum(t.user_attrs.get("eval_seconds", 0.0) for t in trained)),
                pruned=sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
                complete=sum(t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs.get("status") == "ok"
                             for t in trials),
                front=len(front), front_trials=[t.number for t in front],
                hypervolume=float(hypervolume(norm, np.full(norm.shape[1], 1.1)) if len(front) else 0.0))
    base = runs.get("none")
    for rule, r in runs.items():
        if base is not None:
            r["steps_share"] = r["steps"] / base["steps"] if base["steps"] else None
            r["wall_share"] = r["wall_seconds"] / base["wall_seconds"]
            r["hypervolume_kept"] = r["hypervolume"] / base["hypervolume"] if base["hypervolume"] else None
        print(f"{rule:>8}: {r['wall_seconds']:.0f} s, {r['steps']} steps, {r['pruned']} stopped, front {r['front']}, "
              f"hypervolume {r['hypervolume']:.4f}", flush=True)
    write_result(out / f"{NAME}.json", {"space": args.space, "budget": args.budget, "trials": args.trials,
                                        "sampler": args.sampler, "seed": args.seed, "runs": runs,
                                        "normalisation": {"min": lo, "range": scale, "reference": 1.1}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
