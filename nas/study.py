"""Opening the Optuna study of a search: storages, objective names, heartbeats.

Storage URLs (nothing home-made stands in for Optuna's storages):

* ``sqlite:///results/light.db`` (default): one machine; several local processes work too;
* a path ending in ``.log`` or ``.journal`` (or ``journal:PATH``): Optuna's journal file, made for
  several processes on one machine, also on network file systems;
* ``postgresql://...`` / ``mysql://...``: a cluster (install the ``postgres`` extra).

RDB storages get a heartbeat (a crashed or SIGKILLed worker's trial is failed after the grace
period) and a retry callback that re-enqueues such a trial once with the same parameters.
The journal storage has no heartbeat in Optuna, so its interrupted trials stay RUNNING until
:func:`fail_orphaned_trials` is called from a process that knows no other worker is alive.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from nas.errors import ConfigError
from nas.space import SearchSpace

__all__ = ["HEARTBEAT_INTERVAL", "GRACE_PERIOD", "default_storage_url", "make_storage", "open_study",
           "fail_orphaned_trials"]

HEARTBEAT_INTERVAL = 5  # seconds between a running trial's heartbeats
GRACE_PERIOD = 15  # a trial whose heartbeat is older than this is stale (its worker died)


def default_storage_url(space_name: str, results_dir: str | Path = "results") -> str:
    """``sqlite:///results/<space>.db``, creating the directory."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(results_dir) / space_name}.db"


def make_storage(url: str, *, heartbeat: bool = True) -> BaseStorage:
    """An Optuna storage for ``url`` (see the module docstring for the forms)."""
    if url.startswith("journal:") or url.endswith((".log", ".journal")):
        path = url.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if "://" not in url:
        raise ConfigError(f"expected sqlite:///PATH, postgresql://..., or a journal file ending in .log, got {url!r}",
                          key="--storage")
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict = {}
    if heartbeat:
        kwargs = dict(heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    # SQLite serialises writers; a generous lock timeout lets several local workers share it.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except ImportError as err:
        raise ConfigError(f"the storage needs a driver that is not installed ({err}); for PostgreSQL "
                          "install the 'postgres' extra", key="--storage") from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL
        raise ConfigError(f"cannot open storage {url!r}: {str(err).splitlines()[0]}", key="--storage") from None


def open_study(space: SearchSpace, *, storage: BaseStorage, study_name: str,
               sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study; its directions and objective names come from the space.

    Loading a study whose objectives differ from the space's is an error (it would mix
    incomparable trials).
    """
    directions = [o.direction for o in space.objectives]
    names = [o.metric for o in space.objectives]
    study = optuna.create_study(storage=storage, study_name=study_name, directions=directions,
                                sampler=sampler, load_if_exists=True)
    existing = study.metric_names
    if [d.name.lower() for d in study.directions] != directions or (existing and existing != names):
        raise ConfigError(f"study {study_name!r} already exists with objectives {existing} "
                          f"{[d.name.lower() for d in study.directions]}; the space asks for {names} {directions}. "
                          "Use another --study-name", key="--study-name")
    if not existing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)
        study.set_user_attr("space", space.name)
        # Absolute, so that `nas.export` and `nas.train` find the space from any directory.
        study.set_user_attr("space_source", str(Path(space.source).resolve()))
    return study


def fail_orphaned_trials(study: optuna.Study) -> int:
    """Fail RUNNING trials of a storage without heartbeats (only when no other worker runs).

    Returns how many were failed; each gets the user attribute ``status: interrupted``.
    """
    failed = 0
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        try:
            study._storage.set_trial_user_attr(trial._trial_id, "status", "interrupted")
            study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            failed += 1
        except optuna.exceptions.UpdateFinishedTrialError:
            pass
    return failed
