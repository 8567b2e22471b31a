"""The Ray Tune function trainable: one search trial inside a Ray worker process.

The driver (:class:`nas.ray_backend.searcher.StudySearcher`) asks the Optuna study for a trial and
samples its decisions; the trial reaches the worker as ``{"number", "optuna_trial_id"}``.  The worker
reopens that same Optuna trial from the storage and runs it through
:class:`nas.objective.CandidateRunner`, the code path of the Optuna backend (gate, duplicate
reuse, proxy evaluation, user attributes, constraints, artifacts), so the two backends record
identical trials.  Re-suggesting on the reopened trial returns the decisions the driver stored
(Optuna never samples a parameter a trial already has).

At each of the evaluator's rungs the held-out loss goes to Ray with ``tune.report`` (a Ray
scheduler such as ASHA, Li et al. 2020, "A System for Massively Parallel Hyperparameter
Tuning", may stop the trial there); the last report carries the trial's outcome, which the
driver tells the study.  Tune's function trainables report synchronously: the worker waits at
each report until the driver has decided, so a trial the scheduler stops exits at that rung and
writes nothing more.

Data, the FID reference and the storage connection are built once per worker process and
cached (a module global); with ``reuse_actors`` a worker serves many trials.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

# Ray imports this module to start every trial actor: heavy imports (torch, optuna, the
# evaluator) wait for the first trial, so that actors start fast and Tune does not fall back to
# reusing one busy actor while another is still starting.
if TYPE_CHECKING:
    import optuna

    from nas.ray_backend.runner import TuneCandidateRunner

__all__ = ["FINAL_KEY", "RUNG_KEY", "ray_trial", "worker_state"]

# Present only in a trial's last report: the Optuna state the worker decided.
FINAL_KEY = "optuna_state"
# Intermediate reports: ``RUNG_KEY`` counts the rungs passed (1, 2, ...), the scheduler's clock.
RUNG_KEY = "rung"


@dataclass
class _Worker:
    study: optuna.Study
    runner: TuneCandidateRunner


_WORKERS: dict[Any, _Worker] = {}


def worker_state(search_config: Any) -> _Worker:  # noqa: ANN401 - a nas.search.SearchConfig
    """The study handle and runner of this worker process for ``search_config`` (built once)."""
    cached = _WORKERS.get(search_config)
    if cached is not None:
        return cached
    import optuna
    import torch
    from optuna.samplers import RandomSampler

    from nas.ray_backend.runner import TuneCandidateRunner
    from nas.search import Search, _quiet
    from nas.study import make_storage

    _quiet()
    # Ray sizes the process to the trial's CPUs; torch would otherwise start a thread per core.
    torch.set_num_threads(max(1, int(search_config.cpus_per_trial)))
    search = Search.resolve(search_config)
    # The driver owns heartbeats and ask/tell; this process only reads and records.  The driver
    # suggested every decision already, so this sampler never samples; a RandomSampler keeps
    # Trial() from running our sampler's per-trial bookkeeping a second time.
    storage = make_storage(search.storage_url, heartbeat=False)
    study = optuna.load_study(study_name=search.study_name, storage=storage, sampler=RandomSampler())
    runner = search.make_runner(study, runner_cls=TuneCandidateRunner)  # ASHA stops trials under Ray
    _WORKERS[search_config] = _Worker(study=study, runner=runner)
    return _WORKERS[search_config]


def ray_trial(config: dict[str, Any], *, search: Any) -> None:  # noqa: ANN401 - a SearchConfig
    """Ray Tune function trainable: run Optuna trial ``config["optuna_trial_id"]`` of ``search``'s study.

    Records where it ran (``ray_node_id``, ``ray_host`` as host:pid, ``ray_trial_id``) and how
    many times Ray started it (``ray_attempts``), then reports rung losses and the outcome.
    """
    import optuna
    import ray
    from ray import tune

    worker = worker_state(search)
    trial = optuna.Trial(worker.study, int(config["optuna_trial_id"]))
    trial.set_user_attr("ray_attempts", int(trial.user_attrs.get("ray_attempts", 0)) + 1)
    trial.set_user_attr("ray_node_id", ray.get_runtime_context().get_node_id())
    trial.set_user_attr("ray_host", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("ray_trial_id", tune.get_context().get_trial_id())
    outcome = worker.runner.run(trial)
    metrics: dict[str, Any] = {FINAL_KEY: outcome.state.name, "values": outcome.values,
                               "status": outcome.status, "number": trial.number}
    names = [o.metric for o in worker.runner.space.objectives]
    if outcome.values is not None:
        metrics.update(zip(names, outcome.values, strict=True))
    # Tune checks that every report carries the scheduler's metric; the final report has no
    # rung key, so the scheduler ignores it.
    metrics.setdefault("val_loss", trial.user_attrs.get("val_loss", float("nan")))
    tune.report(metrics)
