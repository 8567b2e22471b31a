"""``python -m nas.search --space light.yaml``: the architecture search.

Proposes candidates with a sampler from :mod:`nas.samplers`, gates, trains and scores each with
the proxy evaluator, stops dominated candidates early at the evaluator's rungs, and keeps the
Pareto front in an Optuna study (``results/<space>.db`` by default).  Running the same command
again continues the study: trials already finished count toward ``--trials``.

Workers (``--workers N``) are processes on this machine sharing the storage; a lock file next to
the results makes "is there room for another trial?" and "ask for it" one atomic step, so a
study ends with exactly ``--trials`` finished trials.  A worker killed mid-trial leaves that
trial RUNNING; its heartbeat stops, and after the grace period the trial is failed and
re-enqueued once with the same parameters (RDB storages).  Ctrl-C records what finished,
writes the reports and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import multiprocessing as mp
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SearchConfig", "main", "run_search"]


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search worker needs, picklable for worker processes."""

    space: str
    trials: int
    sampler: str
    budget: str | None
    storage: str | None
    study_name: str | None
    seed: int
    workers: int
    device: str
    out: str
    prune: bool
    timeout: float | None
    # --backend ray (nas.tune): where and with what resources trials run.
    backend: str = "optuna"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None


@dataclass
class Counts:
    finished: int
    running: int
    front: int


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    # We run trials with ask/tell and start the heartbeat thread ourselves (see worker_loop).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def finished_trials(study) -> list:  # noqa: ANN001
    """Trials that count toward ``--trials``: COMPLETE, PRUNED, and candidates that failed on their
    own (diverged, oom, timeout, invalid, error); not trials interrupted by a dead worker."""
    from optuna.trial import TrialState

    from nas.objective import FAILED_STATUSES

    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            out.append(t)
        elif t.state == TrialState.FAIL and t.user_attrs.get("status") in FAILED_STATUSES:
            out.append(t)
    return out


def count(study) -> Counts:  # noqa: ANN001
    from optuna.trial import TrialState

    from nas.pareto import front_trials

    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return Counts(finished=len(finished_trials(study)), running=running, front=len(front_trials(study)))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class Search:
    """The resolved pieces of one search (built in every worker process)."""

    config: SearchConfig
    space: object
    budget: object
    budget_name: str
    study_name: str
    storage_url: str
    device: object

    @classmethod
    def resolve(cls, config: SearchConfig) -> Search:
        from evaluators.proxy import pick_device
        from nas.errors import ConfigError
        from nas.space import load_space
        from nas.study import default_storage_url

        space = load_space(config.space)
        device = pick_device(config.device)
        budget_name = config.budget or ("gpu" if device.type == "cuda" else "cpu")
        if budget_name not in space.budgets:
            raise ConfigError(f"unknown budget {budget_name!r}; the space defines {list(space.budgets)}",
                              key="--budget")
        study_name = config.study_name or space.name
        storage_url = config.storage or default_storage_url(space.name, config.out)
        return cls(config=config, space=space, budget=space.budgets[budget_name], budget_name=budget_name,
                   study_name=study_name, storage_url=storage_url, device=device)

    @property
    def results_dir(self) -> Path:
        return Path(self.config.out) / self.study_name

    def open(self, *, worker: int = 0):  # noqa: ANN201
        from nas.samplers import make_sampler
        from nas.study import make_storage, open_study

        storage = make_storage(self.storage_url)
        # Seeded per worker so that parallel workers of built-in samplers do not propose the
        # same points; our own samplers derive each trial's randomness from (seed, number).
        sampler = make_sampler(self.config.sampler, seed=self.config.seed + worker)
        return open_study(self.space, storage=storage, study_name=self.study_name, sampler=sampler)

    def make_runner(self, study, *, runner_cls=None, rule=None):  # noqa: ANN001, ANN201
        """The candidate runner of this worker process: data and FID reference loaded once,
        artifacts under ``results_dir``.  ``runner_cls`` defaults to
        :class:`nas.objective.CandidateRunner` (Ray workers pass their subclass); ``rule`` is
        the early-stopping rule, or None."""
        from optuna.artifacts import FileSystemArtifactStore

        from evaluators.proxy import EvalContext
        from nas.objective import CandidateRunner

        space = self.space
        context = EvalContext.load(dataset=space.data.dataset, image_size=space.data.image_size,
                                   channels=space.data.channels, device=self.device, seed=0)
        artifacts = self.results_dir / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        return (runner_cls or CandidateRunner)(
            space=space, budget=self.budget, context=context, study=study,
            artifact_store=FileSystemArtifactStore(str(artifacts)), rule=rule, seed=self.config.seed,
            budget_name=self.budget_name)


def worker_loop(config: SearchConfig, worker: int = 0, progress=None) -> int:  # noqa: ANN001
    """Run trials until the study has ``config.trials`` finished ones (or the timeout passes).

    Returns how many trials this worker finished.
    """
    _quiet()
    import optuna
    from optuna.storages import fail_stale_trials
    from optuna.storages._heartbeat import get_heartbeat_thread

    from nas.pruning import ParetoRungRule

    if config.workers > 1:
        import torch

        # One share of the cores per worker: torch's default of a thread per core in every
        # process oversubscribes the machine and slows every trial down.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // config.workers))
    search = Search.resolve(config)
    study = search.open(worker=worker)
    runner = search.make_runner(study, rule=ParetoRungRule() if config.prune else None)
    lock = search.results_dir / ".ask.lock"
    deadline = time.time() + config.timeout if config.timeout else None
    done = 0
    while True:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)
        with _locked(lock):
            counts = count(study)
            if counts.finished >= config.trials or (deadline and time.time() > deadline):
                break
            trial = study.ask() if counts.finished + counts.running < config.trials else None
        if trial is None:
            # Room only if a running trial fails: wait for it to finish or go stale.
            time.sleep(2)
            continue
        try:
            with get_heartbeat_thread(trial._trial_id, study._storage):
                outcome = runner.run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("status", "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, outcome.values, state=outcome.state)
        done += 1
        if progress is not None:
            progress(count(study))
    return done


def _progress_bar(total: int, initial: Counts):  # noqa: ANN202
    from tqdm import tqdm

    bar = tqdm(total=total, initial=min(initial.finished, total), unit="trial", dynamic_ncols=True,
               desc="search", file=sys.stderr)
    bar.set_postfix(front=initial.front)

    def update(counts: Counts) -> None:
        bar.n = min(counts.finished, total)
        bar.set_postfix(front=counts.front, running=counts.running)
        bar.refresh()

    return bar, update


def run_search(config: SearchConfig) -> int:
    """Run the search (in-process, or ``config.workers`` processes), then write the reports."""
    if config.backend == "ray":
        from nas.tune import run_ray_search

        return run_ray_search(config)
    _quiet()
    search = Search.resolve(config)
    study = search.open()
    bar, update = _progress_bar(config.trials, count(study))
    try:
        if config.workers <= 1:
            worker_loop(config, 0, progress=update)
        else:
            ctx = mp.get_context("spawn")
            procs = [ctx.Process(target=worker_loop, args=(config, i), daemon=False) for i in range(config.workers)]
            for p in procs:
                p.start()
            while any(p.is_alive() for p in procs):
                update(count(study))
                time.sleep(1.0)
            for p in procs:
                p.join()
            update(count(study))
    except KeyboardInterrupt:
        bar.close()
        print("\ninterrupted: finished trials are recorded; run the same command to continue", file=sys.stderr)
        _finish(search, study)
        return 130
    bar.close()
    _finish(search, study)
    return 0


def _finish(search: Search, study) -> None:  # noqa: ANN001
    import optuna_dashboard

    from nas.pareto import summary_markdown, write_reports

    paths = write_reports(study, search.results_dir)
    optuna_dashboard.save_note(study, summary_markdown(study))
    print(summary_markdown(study))
    print("results: " + ", ".join(str(p) for p in paths.values()))
    artifact_dir = search.results_dir / "artifacts"
    print(f"inspect: optuna-dashboard {search.storage_url} --artifact-dir {artifact_dir}")


def build_parser() -> argparse.ArgumentParser:
    from nas.samplers import SAMPLERS

    parser = argparse.ArgumentParser(prog="python -m nas.search", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--space", default="light.yaml", help="a space file or a bundled name (light.yaml)")
    parser.add_argument("--trials", type=int, default=8, help="finished trials the study should have")
    parser.add_argument("--timeout", type=float, default=None, help="start no trial after this many seconds")
    parser.add_argument("--sampler", default="evolution", choices=sorted(SAMPLERS), help="proposal strategy")
    parser.add_argument("--budget", default=None, help="budget name from the space (default: gpu on CUDA, else cpu)")
    parser.add_argument("--storage", default=None, help="Optuna storage URL (default sqlite:///OUT/SPACE.db); "
                        "a .log path for a journal file; postgresql://... for a cluster")
    parser.add_argument("--study-name", default=None, help="default: the space's name")
    parser.add_argument("--seed", type=int, default=0, help="sampler and training seed")
    parser.add_argument("--workers", type=int, default=1, help="worker processes on this machine")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--out", default="results", help="results directory")
    parser.add_argument("--no-prune", action="store_true", help="turn off multi-objective early stopping")
    ray = parser.add_argument_group("Ray Tune backend (--backend ray; see nas.tune)")
    ray.add_argument("--backend", default="optuna", choices=["optuna", "ray"],
                     help="optuna: worker processes on this machine; ray: trials scheduled by Ray Tune")
    ray.add_argument("--address", default=None, help="Ray cluster to join: auto, HOST:PORT or ray://HOST:PORT; "
                     "if not given, $RAY_ADDRESS, else a new local Ray sized to this machine")
    ray.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs Ray reserves per trial")
    ray.add_argument("--gpus-per-trial", type=float, default=None,
                     help="GPUs Ray reserves per trial, fractions allowed; if not given, 1 when the cluster has GPUs")
    ray.add_argument("--max-concurrent", type=int, default=None,
                     help="trials running at once; if not given, as many as the resources allow")
    return parser


def main(argv: list[str] | None = None) -> int:
    from nas.errors import exit_on_config_error

    @exit_on_config_error
    def _main() -> int:
        args = build_parser().parse_args(argv)
        if args.trials < 1 or args.workers < 1:
            build_parser().error("--trials and --workers must be at least 1")
        config = SearchConfig(space=args.space, trials=args.trials, sampler=args.sampler, budget=args.budget,
                              storage=args.storage, study_name=args.study_name, seed=args.seed,
                              workers=args.workers, device=args.device, out=args.out, prune=not args.no_prune,
                              timeout=args.timeout, backend=args.backend, address=args.address,
                              cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                              max_concurrent=args.max_concurrent)
        return run_search(config)

    return _main()


if __name__ == "__main__":
    sys.exit(main())
