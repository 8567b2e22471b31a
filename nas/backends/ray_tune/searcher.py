"""A Ray Tune ``Searcher`` that drives our Optuna study with ask/tell, from the Ray driver.

Why not ``ray.tune.search.optuna.OptunaSearch`` itself?  It takes our sampler and storage, but
Ray 2.60's version cannot give a multi-objective NAS study the semantics the Optuna backend has:

* a trial stopped by a Ray scheduler reaches ``on_trial_complete`` with its last *intermediate*
  result; OptunaSearch tells it COMPLETE with whatever objective values that result holds (a
  list with ``None`` for unreported objectives, whose ``tell`` fails and is only logged, leaving
  the trial RUNNING), never PRUNED;
* candidates that fail on their own (invalid, diverged, out of memory) or break a constraint
  are decided inside the trial; OptunaSearch can only tell COMPLETE, or FAIL when the trainable
  raises (which makes Ray retry a deterministic failure);
* ``num_samples`` counts trials of this run, while a search's ``--trials`` counts finished
  trials in the study, resumed runs and other workers included.

So this searcher keeps Optuna doing all sampling and storage and Ray all scheduling, and only
replaces the glue: :meth:`suggest` asks the study (under the same lock file as the Optuna
backend's workers, so both can share a study) and samples the decisions here, on the driver;
:meth:`on_trial_complete` tells the state the worker decided, PRUNED for trials a scheduler
stopped, and FAIL for trials Ray gave up on.  While a trial runs, the driver beats its Optuna
heartbeat (RDB storages): if the driver dies, the next run fails the trial and re-enqueues it
once with the same decisions, as in the Optuna backend.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from nas.backends.ray_tune.trainable import FINAL_KEY, RUNG_KEY
from nas.errors import ConfigError
from nas.samplers import DEFAULT_SAMPLER
from nas.study import StudyCounts, ask_if_room, count, heartbeat

if TYPE_CHECKING:
    from nas.context import RunContext

__all__ = ["MAX_CONSECUTIVE_ERRORS", "StudySearcher"]

# How often a searcher with no room left re-reads the study (Tune polls suggest() often).
_RECHECK_S = 1.0
# Trials in a row that Ray gave up on before the search stops: a broken setup (a storage the
# workers cannot reach, a missing package on a node) would otherwise fail every remaining trial.
MAX_CONSECUTIVE_ERRORS = 3


@dataclass
class _Live:
    trial: optuna.Trial
    heartbeat: Any  # optuna.storages._heartbeat.BaseHeartbeatThread


class StudySearcher(Searcher):
    """Ask/tell our Optuna study from Ray Tune until it has ``trials`` finished trials.

    ``context`` is the search's resolved :class:`~nas.context.RunContext`; the study is opened
    lazily with the registry sampler ``sampler``, so the searcher pickles as its configuration
    (Tune saves it).  ``progress(counts)`` is called after every finished trial; ``deadline`` (a
    ``time.time()`` value) stops starting new trials; ``stopper`` names the scheduler in the
    reason of the trials it stops.
    """

    def __init__(self, context: RunContext, *, trials: int, sampler: str = DEFAULT_SAMPLER,
                 deadline: float | None = None, progress: Callable[[StudyCounts], None] | None = None,
                 stopper: str = "the Ray scheduler") -> None:
        super().__init__(metric=None, mode=None)
        self.context = context
        self.sampler = sampler
        self.trials = trials
        self.deadline = deadline
        self.progress = progress
        self.stopper = stopper
        self._study: optuna.Study | None = None
        self._live: dict[str, _Live] = {}
        self._blocked_until = 0.0
        self.told: dict[str, TrialState] = {}  # Ray trial id -> the state told to the study
        self.consecutive_errors = 0

    # ----- Tune's Searcher interface ------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        """The space is ours (the study's); accept Tune's metric/mode without using them."""
        return True

    @property
    def study(self) -> optuna.Study:
        """The study, opened on first use with the search's sampler and storage."""
        if self._study is None:
            self._study = self.context.open_study(self.sampler)
        return self._study

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """Ask the study for a trial and sample its decisions; FINISHED once the study is full."""
        if self.broken:
            return Searcher.FINISHED
        if time.monotonic() < self._blocked_until:
            return None
        study = self.study
        ask = ask_if_room(study, trials=self.trials, lock=self.context.ask_lock, deadline=self.deadline)
        if ask.done:
            return Searcher.FINISHED
        if ask.trial is None:
            # Room only if a running trial (ours or another worker's) fails.
            self._blocked_until = time.monotonic() + _RECHECK_S
            return None
        trial = ask.trial
        beat = heartbeat(trial, study)  # the driver beats for trials that run in Ray workers
        beat.start()
        self._live[trial_id] = _Live(trial, beat)
        # An unbuildable point: the worker re-suggests, gets the same error and records FAIL.
        with contextlib.suppress(ConfigError):
            self.context.space.suggest(trial)
        return {"number": trial.number, "optuna_trial_id": trial._trial_id}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the study how the trial ended (see the module docstring)."""
        live = self._live.pop(trial_id, None)
        if live is None:
            return
        self._blocked_until = 0.0  # a finished trial may make room
        live.heartbeat.join()
        trial = live.trial
        ray_error = False
        if result is not None and FINAL_KEY in result:
            state = TrialState[result[FINAL_KEY]]
            values = result["values"] if state == TrialState.COMPLETE else None
        elif error:
            state, values, ray_error = TrialState.FAIL, None, True
            self._set_status(trial, "error", f"the Ray trial {trial_id} failed after "
                             f"{trial.user_attrs.get('ray_attempts', 0)} attempt(s); see its error.txt "
                             "under the run's Ray directory")
        elif result is not None and RUNG_KEY in result:
            state, values = TrialState.PRUNED, None
            self._set_status(trial, "pruned", f"stopped by {self.stopper} at rung {result[RUNG_KEY] - 1} "
                             f"(step {result.get('step')})")
        else:
            state, values = TrialState.FAIL, None
            self._set_status(trial, "interrupted", "the Ray trial ended before reporting")
        self._tell(trial, values, state)
        self.told[trial_id] = state
        self.consecutive_errors = self.consecutive_errors + 1 if ray_error else 0
        if self.progress is not None:
            self.progress(count(self.study))

    @property
    def broken(self) -> bool:
        """Whether the last :data:`MAX_CONSECUTIVE_ERRORS` trials all failed in Ray (no more are started)."""
        return self.consecutive_errors >= MAX_CONSECUTIVE_ERRORS

    def close(self) -> int:
        """Record trials still running (the run was interrupted) as FAIL ``interrupted``.

        They do not count toward ``trials``; the next run replaces them.  Returns how many.
        """
        interrupted = 0
        for trial_id in list(self._live):
            live = self._live.pop(trial_id)
            live.heartbeat.join()
            self._set_status(live.trial, "interrupted", "the search stopped while the trial ran")
            self._tell(live.trial, None, TrialState.FAIL)
            self.told[trial_id] = TrialState.FAIL
            interrupted += 1
        return interrupted

    # ----- persistence: the study is the state; Tune's pickles keep only the configuration ----
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_study=None, _live={}, progress=None, _blocked_until=0.0)
        return state

    def save(self, checkpoint_path: str) -> None:
        """Tune saves searchers with the experiment; ours holds no state beyond the study."""
        import pickle

        Path(checkpoint_path).write_bytes(pickle.dumps({"told": {k: v.name for k, v in self.told.items()}}))

    def restore(self, checkpoint_path: str) -> None:
        """Inverse of :meth:`save`."""
        import pickle

        data = pickle.loads(Path(checkpoint_path).read_bytes())
        self.told = {k: TrialState[v] for k, v in data["told"].items()}

    def _tell(self, trial: optuna.Trial, values: list[float] | None, state: TrialState) -> None:
        from nas.notes import write_trial_note

        try:
            self.study.tell(trial, values, state=state)
            write_trial_note(self.study, trial.number)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process sharing the study failed it as stale (its heartbeat lagged); it is
            # recorded already, and a search must not stop over it.
            warnings.warn(f"trial {trial.number} was finished by another process; keeping that record",
                          stacklevel=2)

    @staticmethod
    def _set_status(trial: optuna.Trial, status: str, reason: str) -> None:
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # see _tell
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
