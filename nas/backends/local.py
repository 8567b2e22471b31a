"""The local backend (``--backend optuna``): worker processes on this machine sharing the study.

Each worker asks for a trial under the search's lock file (:func:`nas.study.ask_if_room`), runs it
with the trial runner while its heartbeat beats, and tells the study the outcome, until the
study has the requested number of finished trials.  A worker killed mid-trial leaves that trial
RUNNING; its heartbeat stops, and after the grace period the next ask fails it and re-enqueues
it once with the same parameters (RDB storages).  One worker runs in this process; several are
spawned processes that receive the resolved context (nothing is parsed again).
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass

import optuna

from nas.backends.base import Backend, BackendRun, Progress, SearchJob
from nas.context import RunContext
from nas.errors import ConfigError
from nas.study import ask_if_room, count, heartbeat, quiet_optuna

__all__ = ["LocalBackend", "worker_loop"]

# Seconds a worker waits when the study is full of running trials (one may still fail).
_RECHECK_S = 2.0


def worker_loop(context: RunContext, job: SearchJob, worker: int = 0, *, workers: int = 1,
                threads: int | None = None, progress: Progress | None = None) -> int:
    """Run trials until the study has ``job.trials`` finished ones (or the deadline passes).

    Before each trial torch's CPU threads are chosen from the cores free then
    (:func:`evaluators.contention.choose_threads`; ``threads`` fixes the count), and recorded on
    the trial as ``torch_threads``.  Returns how many trials this worker finished.  Ctrl-C
    records the running trial FAIL ``interrupted`` and re-raises.
    """
    quiet_optuna()
    import torch

    from evaluators.contention import CoreLoad, choose_threads
    from evaluators.device import worker_device
    from evaluators.proxy import EvalContext
    from nas.notes import write_trial_note
    from nas.scheduling import make_rule
    from nas.trial_runner import TrialRunner

    context = context.on_device(worker_device(context.device, worker))  # its GPU, when several share some
    study = context.open_study(job.sampler, worker=worker)
    data = context.space.data
    eval_context = EvalContext.load(dataset=data.dataset, image_size=data.image_size, channels=data.channels,
                                    frames=data.frames, device=context.device, seed=0, latent=data.latent)
    runner = TrialRunner.for_search(context, study, eval_context=eval_context,
                                    rule=make_rule(job.stopping, eta=context.budget.eta))
    done = 0
    cpu = context.device.type == "cpu"
    load = CoreLoad()  # the other processes' load over each trial, read before the next
    while True:
        # Chosen before the ask: the first reading takes a moment, and a trial should not sit
        # RUNNING without its decisions meanwhile (a kill then would retry an empty trial).
        chosen = choose_threads(requested=threads, workers=workers, load=load) if cpu else None
        ask = ask_if_room(study, trials=job.trials, lock=context.ask_lock, deadline=job.deadline)
        if ask.done:
            break
        if ask.trial is None:
            time.sleep(_RECHECK_S)  # room only if a running trial fails
            continue
        trial = ask.trial
        if chosen is not None:
            torch.set_num_threads(chosen)
            trial.set_user_attr("torch_threads", chosen)
        try:
            with heartbeat(trial, study):
                outcome = runner.run(trial)
        except KeyboardInterrupt:
            trial.set_user_attr("status", "interrupted")
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            raise
        study.tell(trial, outcome.values, state=outcome.state)
        write_trial_note(study, trial.number)
        done += 1
        if progress is not None:
            progress(count(study))
    return done


@dataclass
class LocalBackend(Backend):
    """Worker processes on this machine (``--workers``), all sharing the study's storage."""

    workers: int = 1
    threads: int | None = None  # torch CPU threads per worker; None: chosen per trial from the free cores
    name = "optuna"

    def check(self) -> None:
        """``--workers`` must be at least 1."""
        if self.workers < 1:
            raise ConfigError(f"expected at least 1, got {self.workers}", key="--workers")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"expected at least 1, got {self.threads}", key="--threads")

    def run(self, context: RunContext, job: SearchJob, *, progress: Progress | None = None) -> BackendRun:
        """One worker in this process, or ``workers`` spawned processes; Ctrl-C ends the run interrupted."""
        try:
            if self.workers == 1:
                worker_loop(context, job, 0, threads=self.threads, progress=progress)
                return BackendRun()
            spawn = mp.get_context("spawn")
            procs = [spawn.Process(target=worker_loop, args=(context, job, i),
                                   kwargs={"workers": self.workers, "threads": self.threads}, daemon=False)
                     for i in range(self.workers)]
            for p in procs:
                p.start()
            study = context.open_study(job.sampler)
            while any(p.is_alive() for p in procs):
                if progress is not None:
                    progress(count(study))
                time.sleep(1.0)
            for p in procs:
                p.join()
            if progress is not None:
                progress(count(study))
        except KeyboardInterrupt:
            return BackendRun(interrupted=True)
        return BackendRun()
