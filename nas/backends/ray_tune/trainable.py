"""The Ray Tune function trainable: one search trial inside a Ray worker process.

The driver (:class:`~nas.backends.ray_tune.searcher.StudySearcher`) asks the Optuna study for a
trial and samples its decisions; the trial reaches the worker as ``{"number", "optuna_trial_id"}``,
together with the search's resolved :class:`~nas.context.RunContext`.  The worker reopens that
same Optuna trial from the storage and runs it through :class:`nas.trial_runner.TrialRunner`, the
code path of the local backend (gate, duplicate reuse, proxy evaluation, user attributes,
constraints, artifacts), so the two backends record identical trials.  Re-suggesting on the
reopened trial returns the decisions the driver stored (Optuna never samples a parameter a trial
already has).

At each of the evaluator's rungs the search's stopping rule decides, against the study, as in the
local backend (a stopped trial ends PRUNED), and the held-out loss goes to Ray with
``tune.report`` (a Ray scheduler a caller adds may stop the trial there too); the last report
carries the trial's outcome, which the driver tells the study.  Tune's function trainables report
synchronously: the worker waits at each report until the driver has decided, so a trial the
scheduler stops exits at that rung and writes nothing more.

Data, the FID reference and the storage connection are built once per worker process and
cached (a module global); with ``reuse_actors`` a worker serves many trials.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nas.backends.ray_tune.session import RUNG_KEY

# Ray imports this module to start every trial actor: heavy imports (torch, optuna, the
# evaluator) wait for the first trial, so that actors start fast and Tune does not fall back to
# reusing one busy actor while another is still starting.
if TYPE_CHECKING:
    import optuna

    from nas.context import RunContext
    from nas.trial_runner import TrialRunner

__all__ = ["FINAL_KEY", "RUNG_KEY", "ray_trial", "worker_state"]

# Present only in a trial's last report: the Optuna state the worker decided.
FINAL_KEY = "optuna_state"


@dataclass
class _Worker:
    study: optuna.Study
    runner: TrialRunner


_WORKERS: dict[tuple[str, str, str, int, str], _Worker] = {}


def _report_rung(rung: int, step: int, val_loss: float) -> None:
    from ray import tune

    # Blocks until the driver's scheduler has seen it; a stopped trial ends here.
    tune.report({RUNG_KEY: rung + 1, "step": step, "val_loss": val_loss})


def worker_state(context: RunContext, *, cpus: float, stopping: str = "halving") -> _Worker:
    """The study handle and runner of this worker process for ``context``'s search (built once)."""
    key = (context.storage_url, context.study_name, context.budget_name, context.seed, stopping)
    cached = _WORKERS.get(key)
    if cached is not None:
        return cached
    import optuna
    import torch
    from optuna.samplers import RandomSampler

    from evaluators.device import pick_device
    from evaluators.proxy import EvalContext
    from nas.scheduling import make_rule
    from nas.study import make_storage, quiet_optuna
    from nas.trial_runner import TrialRunner

    quiet_optuna()
    # Ray sizes the process to the trial's CPUs; torch would otherwise start a thread per core.
    torch.set_num_threads(max(1, int(cpus)))
    # The driver named the device type; "cuda" here is the GPU Ray gave this worker.
    context = context.on_device(pick_device(context.device.type))
    # The driver owns heartbeats and ask/tell; this process only reads and records.  The driver
    # suggested every decision already, so this sampler never samples; a RandomSampler keeps
    # Trial() from running our sampler's per-trial bookkeeping a second time.
    storage = make_storage(context.storage_url, heartbeat=False)
    study = optuna.load_study(study_name=context.study_name, storage=storage, sampler=RandomSampler())
    data = context.space.data
    eval_context = EvalContext.load(dataset=data.dataset, image_size=data.image_size, channels=data.channels,
                                    frames=data.frames, device=context.device, seed=0, latent=data.latent)
    # The search's own stopping rule, against the study, exactly as the local backend applies it;
    # the rung reports still reach Ray (its logs, and a scheduler a caller adds).
    runner = TrialRunner.for_search(context, study, eval_context=eval_context,
                                    rule=make_rule(stopping, eta=context.budget.eta), on_rung=_report_rung)
    _WORKERS[key] = _Worker(study=study, runner=runner)
    return _WORKERS[key]


def ray_trial(config: dict[str, Any], *, context: RunContext, cpus: float = 1.0, stopping: str = "halving") -> None:
    """Ray Tune function trainable: run Optuna trial ``config["optuna_trial_id"]`` of ``context``'s study.

    Records where it ran (``ray_node_id``, ``ray_host`` as host:pid, ``ray_trial_id``) and how
    many times Ray started it (``ray_attempts``), then reports rung losses and the outcome.
    """
    import optuna
    import ray
    from ray import tune

    worker = worker_state(context, cpus=cpus, stopping=stopping)
    trial = optuna.Trial(worker.study, int(config["optuna_trial_id"]))
    trial.set_user_attr("ray_attempts", int(trial.user_attrs.get("ray_attempts", 0)) + 1)
    trial.set_user_attr("ray_node_id", ray.get_runtime_context().get_node_id())
    trial.set_user_attr("ray_host", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("ray_trial_id", tune.get_context().get_trial_id())
    trial.set_user_attr("torch_threads", max(1, int(cpus)))  # Ray reserved these cores for the trial
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
