"""`RayBackend`: the search's trials as Ray Tune trials, on a local Ray or a cluster.

Ray Tune runs each candidate as a function trainable with ``{cpu: --cpus-per-trial, gpu:
--gpus-per-trial}``; our Optuna sampler (any registry name) proposes candidates into our study
(:class:`~nas.backends.ray_tune.searcher.StudySearcher`, which says why it is not
``OptunaSearch``), and each worker records its trial exactly as the local backend does
(:mod:`~nas.backends.ray_tune.trainable`).  The study therefore has the same objective names, user
attributes, constraints and artifacts whichever backend filled it, and the reports,
optuna-dashboard and ``nas.export`` read it unchanged.  Running the command again continues the
study: ``--trials`` counts finished trials already in it.

``ray://HOST:PORT`` connects a Ray Client, and Tune then runs the search loop on the head node,
so storage URLs and ``--out`` must be valid there.  On several nodes, every node must reach the
storage (PostgreSQL) and ``--out`` (a shared file system: artifacts and Ray's results under
``<out>/<study>/ray``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nas.backends.base import Backend, BackendRun, Progress, SearchJob
from nas.backends.ray_tune.session import check_fits, is_local, ray_session
from nas.errors import ConfigError
from nas.study import count

if TYPE_CHECKING:
    import torch
    from ray.tune.schedulers import TrialScheduler

    from nas.context import RunContext

__all__ = ["RayBackend"]

log = logging.getLogger(__name__)


@dataclass
class RayBackend(Backend):
    """Trials scheduled by Ray Tune (see the module docstring).

    ``address``: the cluster to join (None: ``$RAY_ADDRESS``, else a private local Ray);
    ``cpus_per_trial`` / ``gpus_per_trial``: what Ray reserves per trial (GPUs default to 1 where
    the cluster has any, else 0); ``max_concurrent``: trials at once (None: as many as fit).
    Early stopping is the search's own rule (``--stopping``, :mod:`nas.scheduling`), applied inside
    each trial against the study, as in the local backend; ``scheduler`` adds a Ray Tune scheduler
    on top (none by default: Ray's own are loss-only);
    ``trainable`` replaces :func:`~nas.backends.ray_tune.trainable.ray_trial` (called as
    ``trainable(config, context=..., cpus=...)``; wrappers can add behaviour around it).
    """

    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    scheduler: TrialScheduler | None = None
    trainable: Callable[..., None] | None = None
    name = "ray"

    def check(self) -> None:
        """Resource flags in range."""
        if self.cpus_per_trial <= 0:
            raise ConfigError(f"expected a positive number, got {self.cpus_per_trial}", key="--cpus-per-trial")
        if self.gpus_per_trial is not None and self.gpus_per_trial < 0:
            raise ConfigError(f"expected 0 or more, got {self.gpus_per_trial}", key="--gpus-per-trial")
        if self.max_concurrent is not None and self.max_concurrent < 1:
            raise ConfigError(f"expected at least 1, got {self.max_concurrent}", key="--max-concurrent")

    @contextlib.contextmanager
    def session(self, device: str) -> Iterator[torch.device]:
        """Start or join Ray; trials train on CUDA when they get GPUs (``--device auto``) or ``--device cuda``.

        Fills in ``gpus_per_trial`` when it was not given, from the cluster's resources."""
        import ray
        import torch

        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"Ray assigns devices to trials; expected auto, cpu or cuda, got {device!r}",
                              key="--device")
        with ray_session(self.address):
            if self.gpus_per_trial is None:  # one GPU per trial where the cluster has GPUs
                self.gpus_per_trial = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
            if device == "cuda" and self.gpus_per_trial == 0:
                raise ConfigError("--device cuda needs --gpus-per-trial above 0", key="--device")
            if is_local(self.address):
                # A local Ray never grows: a trial bigger than the machine would wait forever.
                check_fits(ray.cluster_resources(), cpus=self.cpus_per_trial, gpus=self.gpus_per_trial)
            cuda = device == "cuda" or (device == "auto" and self.gpus_per_trial > 0)
            # The driver never trains; the device type is what the trials get.
            yield torch.device("cuda" if cuda else "cpu")

    def run(self, context: RunContext, job: SearchJob, *, progress: Progress | None = None) -> BackendRun:
        """Run the trials through a ``ray.tune.Tuner`` inside :meth:`session`."""
        import ray
        from ray import tune
        from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

        from nas.backends.ray_tune.searcher import StudySearcher
        from nas.backends.ray_tune.trainable import ray_trial

        context = context.absolute()  # Ray workers run in their trial directories, maybe on other nodes
        notes: list[str] = []
        if not is_local(self.address) and len(ray.nodes()) > 1 and not context.storage_url.startswith(
                ("postgresql", "mysql")):
            log.warning("note: workers on every node record their trials in the storage; with several nodes use "
                        "PostgreSQL (--storage postgresql+psycopg://...), or a path on a file system all nodes share")
        scheduler = self.scheduler
        client = ray.util.client.ray.is_connected()  # Tune moves the search loop to the head node
        searcher = StudySearcher(context, trials=job.trials, sampler=job.sampler, deadline=job.deadline,
                                 stopper=type(scheduler).__name__ if scheduler is not None else "Ray")
        searcher.progress = None if client else progress
        run_dir = context.results_dir / "ray"
        # Keep the terminal to our progress bar: Tune's legacy reporter is silent at verbose=0 (the
        # new one still prints banners), and TensorBoard logging only complains about inf values.
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        gpus = float(self.gpus_per_trial or 0.0)
        fn = tune.with_resources(tune.with_parameters(self.trainable or ray_trial, context=context,
                                                      cpus=self.cpus_per_trial, stopping=job.stopping),
                                 {"cpu": self.cpus_per_trial, "gpu": gpus})
        tuner = tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                        max_concurrent_trials=self.max_concurrent, reuse_actors=True),
            run_config=tune.RunConfig(name=f"{context.study_name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
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
        if progress is not None:
            progress(count(searcher.study))
        notes.append(f"ray results: {run_dir}")
        failure = ""
        if searcher.broken:
            failure = (f"stopped: the last {searcher.consecutive_errors} trials failed in Ray workers; their errors "
                       f"are in {run_dir}/*/*/error.txt")
        return BackendRun(interrupted=interrupted, failure=failure, notes=notes)

