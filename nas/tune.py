"""``python -m nas.search --backend ray``: the same search, scheduled by Ray Tune on a Ray cluster.

Ray Tune runs each candidate as a function trainable with ``{cpu: --cpus-per-trial, gpu:
--gpus-per-trial}``; our Optuna sampler (any registry name) proposes candidates into our Optuna
storage and study (:class:`nas.ray_backend.searcher.StudySearcher`, which says why it is not
``OptunaSearch``), and each worker records its trial exactly as the Optuna backend does
(:mod:`nas.ray_backend.trainable`).  The study therefore has the same objective names, user
attributes, constraints and artifacts whichever backend filled it, and ``nas.pareto``,
optuna-dashboard and ``nas.export`` read it unchanged.  Running the command again continues the
study: ``--trials`` counts finished trials already in it.

Early stopping is Ray's: ASHA (Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning") on the held-out loss at the evaluator's rungs, clocked by rung number; a trial it stops
is recorded PRUNED.  ``--no-prune`` turns it off.  ASHA looks at the loss only, so unlike the
Optuna backend's Pareto rung rule it may stop a fast candidate whose loss lags.

Ray itself: without ``--address`` (and no ``RAY_ADDRESS``) a local Ray sized to this machine
is started with token authentication off (``RAY_AUTH_MODE=disabled`` unless already set) and
shut down at the end.  ``--address auto`` or ``HOST:PORT`` joins a running cluster from one of its
nodes; ``ray://HOST:PORT`` connects a Ray Client, and Tune then runs the search loop on the head
node, so storage URLs and ``--out`` must be valid there.  On several nodes, every node must
reach the storage (PostgreSQL) and ``--out`` (a shared file system: artifacts and Ray's
results under ``<out>/<study>/ray``).  A cluster with token authentication needs the token in
``RAY_AUTH_TOKEN`` (or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.errors import ConfigError

if TYPE_CHECKING:
    from ray.tune.schedulers import TrialScheduler

    from nas.search import SearchConfig

__all__ = ["ASHA_REDUCTION_FACTOR", "LOCAL_OBJECT_STORE_BYTES", "make_scheduler", "ray_session",
           "run_ray_search"]

# ASHA keeps the best 1/factor at each rung; 2 is mild, since the loss is only one of the objectives.
ASHA_REDUCTION_FACTOR = 2
# Trials exchange only small dicts; the default store (a share of RAM) can exhaust /dev/shm in containers.
LOCAL_OBJECT_STORE_BYTES = 150 * 1024**2


def make_scheduler(budget: Any, *, reduction_factor: float = ASHA_REDUCTION_FACTOR) -> TrialScheduler | None:  # noqa: ANN401
    """ASHA on ``val_loss`` at ``budget``'s rungs (None when the budget has no rungs).

    The clock is the rung number (1, 2, ...): the evaluator reports the held-out loss only there.
    The trial's final report carries no rung number, so ASHA never stops a finished trial.
    """
    from ray.tune.schedulers import ASHAScheduler

    from evaluators.training import rung_steps
    from nas.ray_backend.trainable import RUNG_KEY

    rungs = len(rung_steps(budget))
    if rungs == 0:
        return None
    return ASHAScheduler(time_attr=RUNG_KEY, metric="val_loss", mode="min", max_t=rungs + 1, grace_period=1,
                         reduction_factor=reduction_factor)


@contextlib.contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Connect to ``address``, or start a quiet local Ray sized to this machine; shut it down after.

    A Ray session this process already holds (a notebook, a test fixture) is used and left running.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is None:
        # A private, single-user cluster: no token to generate, nothing for the user to set up.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # "local": a new private instance even when another Ray runs on this machine (a plain
        # ray.init() would join that one, e.g. a `ray start` head or a test cluster).
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    else:
        kwargs.update(address=address)
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def _absolute(config: SearchConfig) -> SearchConfig:
    """Paths as absolute ones: Ray workers run in their trial directories, maybe on other nodes."""
    space = config.space
    if Path(space).exists():
        space = str(Path(space).resolve())
    storage = config.storage
    if storage and storage.startswith("sqlite:///") and not Path(storage.removeprefix("sqlite:///")).is_absolute():
        storage = "sqlite:///" + str(Path(storage.removeprefix("sqlite:///")).resolve())
    elif storage and "://" not in storage:
        prefix = "journal:" if storage.startswith("journal:") else ""
        storage = prefix + str(Path(storage.removeprefix("journal:")).resolve())
    return dataclasses.replace(config, space=space, storage=storage, out=str(Path(config.out).resolve()))


def _check(config: SearchConfig) -> None:
    if config.workers > 1:
        raise ConfigError("--workers is for the optuna backend; with Ray use --max-concurrent", key="--workers")
    if config.cpus_per_trial <= 0:
        raise ConfigError(f"expected a positive number, got {config.cpus_per_trial}", key="--cpus-per-trial")
    if config.gpus_per_trial is not None and config.gpus_per_trial < 0:
        raise ConfigError(f"expected 0 or more, got {config.gpus_per_trial}", key="--gpus-per-trial")
    if config.max_concurrent is not None and config.max_concurrent < 1:
        raise ConfigError(f"expected at least 1, got {config.max_concurrent}", key="--max-concurrent")
    if config.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"Ray assigns devices to trials; expected auto, cpu or cuda, got {config.device!r}",
                          key="--device")


def _check_fits(resources: dict[str, float], *, cpus: float, gpus: float) -> None:
    for name, key, need in (("CPU", "--cpus-per-trial", cpus), ("GPU", "--gpus-per-trial", gpus)):
        if need > resources.get(name, 0):
            raise ConfigError(f"a trial asks for {need:g} {name}s, this machine's Ray has "
                              f"{resources.get(name, 0):g}", key=key)


def run_ray_search(config: SearchConfig, *, scheduler: TrialScheduler | None = None,
                   trainable: Callable[..., None] | None = None) -> int:
    """Run the search through Ray Tune, then write the reports; returns the exit code.

    ``scheduler`` replaces the default (:func:`make_scheduler`, or none with ``config.prune``
    off); ``trainable`` replaces :func:`nas.ray_backend.trainable.ray_trial` (it is called as
    ``trainable(config, search=SearchConfig)``; wrappers can add behaviour around it).
    """
    import ray
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from nas.ray_backend.searcher import StudySearcher
    from nas.ray_backend.trainable import ray_trial
    from nas.search import Search, _finish, _progress_bar, _quiet, count
    from nas.space import load_space

    _quiet()
    _check(config)
    config = _absolute(config)
    # Bad input fails before Ray starts (the budget default waits for the cluster's resources).
    if config.budget is None:
        load_space(config.space)
    else:
        Search.resolve(dataclasses.replace(config, device="cpu"))
    with ray_session(config.address):
        gpus = config.gpus_per_trial
        if gpus is None:  # one GPU per trial where the cluster has GPUs
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        if config.device == "cuda" and gpus == 0:
            raise ConfigError("--device cuda needs --gpus-per-trial above 0", key="--device")
        if not (config.address or os.environ.get("RAY_ADDRESS")):
            # A local Ray never grows: a trial bigger than the machine would wait forever.
            _check_fits(ray.cluster_resources(), cpus=config.cpus_per_trial, gpus=gpus)
        elif len(ray.nodes()) > 1 and not (config.storage or "").startswith(("postgresql", "mysql")):
            print("note: workers on every node record their trials in the storage; with several nodes use "
                  "PostgreSQL (--storage postgresql+psycopg://...), or a path on a file system all nodes share",
                  file=sys.stderr)
        budget = config.budget or ("gpu" if gpus > 0 else "cpu")
        # The driver never trains: resolve names and paths on CPU; workers resolve their device.
        search = Search.resolve(dataclasses.replace(config, budget=budget, device="cpu"))
        config = dataclasses.replace(config, budget=budget, gpus_per_trial=gpus, storage=search.storage_url)
        if scheduler is None and config.prune:
            scheduler = make_scheduler(search.budget)
        client = ray.util.client.ray.is_connected()  # Tune moves the search loop to the head node
        searcher = StudySearcher(search, trials=config.trials,
                                 deadline=time.time() + config.timeout if config.timeout else None,
                                 stopper=type(scheduler).__name__ if scheduler is not None else "Ray")
        study = searcher.study
        bar, update = _progress_bar(config.trials, count(study))
        searcher.progress = None if client else update
        run_dir = search.results_dir / "ray"
        # Keep the terminal to our progress bar: Tune's legacy reporter is silent at verbose=0 (the
        # new one still prints banners), and TensorBoard logging only complains about inf values.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        fn = tune.with_resources(tune.with_parameters(trainable or ray_trial, search=config),
                                 {"cpu": config.cpus_per_trial, "gpu": gpus})
        tuner = tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=config.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name=f"{search.study_name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                                      storage_path=str(run_dir), verbose=0,
                                      callbacks=[JsonLoggerCallback(), CSVLoggerCallback()],
                                      failure_config=tune.FailureConfig(max_failures=1)))
        interrupted = False
        try:
            tuner.fit()
        except KeyboardInterrupt:
            interrupted = True
        finally:
            interrupted = searcher.close() > 0 or interrupted
        update(count(study))
        bar.close()
    if interrupted:
        print("\ninterrupted: finished trials are recorded; run the same command to continue", file=sys.stderr)
    _finish(search, study)
    print(f"ray results: {run_dir}")
    if searcher.broken:
        print(f"stopped: the last {searcher.consecutive_errors} trials failed in Ray workers; their errors are in "
              f"{run_dir}/*/*/error.txt", file=sys.stderr)
        return 1
    return 130 if interrupted else 0
