"""What multi-objective early stopping saves and costs: the same search with and without it.

    python benchmarks/early_stopping.py --space light.yaml --budget smoke --trials 16

Runs ``nas.search`` twice with the same seed and sampler (``--no-prune`` for the second), then
prints the training steps each spent, how many trials were stopped, and the hypervolume of each
final front (objectives normalised over the union of both studies' feasible trials; reference
point 1.1 in every normalised objective).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="light.yaml")
    parser.add_argument("--budget", default="smoke")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--sampler", default="random")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from nas.front import hypervolume
    from nas.pareto import candidate_trials, front_trials, minimised_values
    from nas.search.__main__ import main as search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("prune", []), ("no-prune", ["--no-prune"])):
            out = Path(tmp) / label
            started = time.perf_counter()
            search(["--space", args.space, "--budget", args.budget, "--trials", str(args.trials), "--sampler",
                    args.sampler, "--seed", str(args.seed), "--out", str(out), "--device", "cpu", *extra])
            wall = time.perf_counter() - started
            name = next(out.glob("*.db")).stem
            study = optuna.load_study(study_name=name, storage=f"sqlite:///{out / name}.db")
            rows[label] = (study, wall)
        points = {k: minimised_values(s, candidate_trials(s)) for k, (s, _) in rows.items()}
        union = np.concatenate([p for p in points.values() if len(p)])
        lo, hi = union.min(axis=0), union.max(axis=0)
        scale = np.where(hi > lo, hi - lo, 1.0)
        print(f"{args.space}, budget {args.budget}, {args.trials} trials, sampler {args.sampler}, seed {args.seed}; "
              f"{platform.machine()}, torch CPU")
        for label, (study, wall) in rows.items():
            trials = study.trials
            steps = sum(t.user_attrs.get("steps", 0) for t in trials if t.user_attrs.get("duplicate_of") is None)
            pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in trials)
            front = front_trials(study)
            norm = (minimised_values(study, front) - lo) / scale
            hv = hypervolume(norm, np.full(norm.shape[1], 1.1)) if len(front) else 0.0
            print(f"  {label:>8}: {steps} training steps, {pruned} pruned, wall {wall:.0f} s, "
                  f"front {len(front)}, hypervolume {hv:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
