"""``python -m nas.search --space light.yaml``: the architecture search (see :mod:`nas.search`).

Workers (``--workers N``) are processes on this machine sharing the storage; a lock file next to
the results makes "is there room for another trial?" and "ask for it" one atomic step, so a
study ends with exactly ``--trials`` finished trials.  A worker killed mid-trial leaves that
trial RUNNING; its heartbeat stops, and after the grace period the trial is failed and
re-enqueued once with the same parameters (RDB storages).  Ctrl-C records what finished,
writes the reports and exits.  ``--backend ray`` schedules the same trials with Ray Tune.
"""

from __future__ import annotations

import argparse
import sys

from nas.cli import ArgumentParser, configure_logging, positive_float, positive_int, run_cli

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The search's flags, with defaults shown in ``--help``."""
    from nas.backends import BACKENDS
    from nas.samplers import DEFAULT_SAMPLER, sampler_names
    from nas.scheduling import RULES

    parser = ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="light.yaml", help="a space file or a bundled name (light.yaml)")
    parser.add_argument("--trials", type=positive_int, default=8, help="finished trials the study should have")
    parser.add_argument("--timeout", type=positive_float, default=None, help="start no trial after this many seconds")
    parser.add_argument("--sampler", default=DEFAULT_SAMPLER, choices=sampler_names(), help="proposal strategy")
    parser.add_argument("--budget", default=None, help="budget name from the space (default: gpu on CUDA, else cpu)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/SPACE.db); "
                        "a .log path for a journal file; postgresql://... for a cluster")
    parser.add_argument("--study-name", default=None, help="default: the space's name")
    parser.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes on this machine")
    parser.add_argument("--threads", type=positive_int, default=None,
                        help="torch CPU threads per worker (default: chosen before each trial from the cores "
                        "other processes leave free)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default="results", help="results directory")
    parser.add_argument("--stopping", default="halving", choices=RULES,
                        help="early stopping at the evaluator's rungs: halving (multi-objective successive "
                        "halving, eta from the budget), pareto (the rule before), none")
    parser.add_argument("--no-prune", action="store_true", help="the same as --stopping none")
    ray = parser.add_argument_group("Ray Tune backend (--backend ray; see nas.backends.ray_tune)")
    ray.add_argument("--backend", default="optuna", choices=BACKENDS,
                     help="optuna: worker processes on this machine; ray: trials scheduled by Ray Tune")
    ray.add_argument("--address", default=None, help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT; "
                     "if not given, $RAY_ADDRESS, else a new local Ray sized to this machine")
    ray.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial")
    ray.add_argument("--gpus-per-trial", type=float, default=None,
                     help="GPUs Ray reserves per trial, fractions allowed; if not given, 1 when the cluster has GPUs")
    ray.add_argument("--max-concurrent", type=int, default=None,
                     help="trials running at once; if not given, as many as the resources allow")
    return parser


@run_cli
def main(argv: list[str] | None = None) -> int:
    """Parse the flags, run the search, print the front and where to look; returns the exit code."""
    from nas.search import SearchSettings, run_search

    args = build_parser().parse_args(argv)
    configure_logging()
    settings = SearchSettings(space=args.space, trials=args.trials, sampler=args.sampler, budget=args.budget,
                              storage=args.storage, study_name=args.study_name, seed=args.seed,
                              workers=args.workers, threads=args.threads, device=args.device, out=args.out,
                              stopping="none" if args.no_prune else args.stopping,
                              timeout=args.timeout, backend=args.backend, address=args.address,
                              cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                              max_concurrent=args.max_concurrent)
    outcome = run_search(settings)
    if outcome.interrupted:
        print("\ninterrupted: finished trials are recorded; run the same command to continue", file=sys.stderr)
    print(outcome.summary)
    print("results: " + ", ".join(str(p) for p in outcome.reports.values()))
    print(f"inspect: {outcome.dashboard_command}")
    for note in outcome.notes:
        print(note)
    if outcome.failure:
        print(outcome.failure, file=sys.stderr)
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
