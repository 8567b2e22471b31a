"""The Optuna study of a search: storages, opening and reading it, counting its trials, asking for more.

Storage URLs (nothing home-made stands in for Optuna's storages):

* ``sqlite:///results/light.db`` (default): one machine; several local processes work too;
* a path ending in ``.log`` or ``.journal`` (or ``journal:PATH``): Optuna's journal file, made for
  several processes on one machine, also on network file systems;
* ``postgresql://...`` / ``mysql://...``: a cluster (install the ``postgres`` extra).

RDB storages get a heartbeat (a crashed or SIGKILLed worker's trial is failed after the grace
period) and a retry callback that re-enqueues such a trial once with the same parameters.  The
journal storage has no heartbeat in Optuna.

Every backend asks for trials through :func:`ask_if_room`: under one file lock it fails stale
trials, counts the finished and running ones and asks only when there is room, so however many
processes share a study it ends with exactly the requested number of finished trials.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.storages import BaseStorage, JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from nas.errors import ConfigError, close_match_hint
from nas.io import file_lock

if TYPE_CHECKING:
    from nas.space import SearchSpace

__all__ = [
    "FAILED_STATUSES",
    "GRACE_PERIOD",
    "HEARTBEAT_INTERVAL",
    "SPEC_ATTR",
    "Ask",
    "StudyCounts",
    "ask_if_room",
    "count",
    "default_storage_url",
    "find_storage_url",
    "finished_trials",
    "heartbeat",
    "load_existing_study",
    "make_storage",
    "open_search_study",
    "quiet_optuna",
    "trial_spec",
]

HEARTBEAT_INTERVAL = 5  # seconds between a running trial's heartbeats
GRACE_PERIOD = 15  # a trial whose heartbeat is older than this is stale (its worker died)
# A candidate that failed on its own: it counts toward --trials (retrying would fail again).
FAILED_STATUSES = ("diverged", "oom", "timeout", "invalid", "error")
# The trial system attribute holding the spec (a plain dict); studies written before 2026-12
# kept it as the user attribute "spec".
SPEC_ATTR = "nas:spec"


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO and warns about what a search does on purpose."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    # Trials run with ask/tell and a heartbeat thread started by the backends (see heartbeat()).
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


# ----- storages -------------------------------------------------------------------------------
def default_storage_url(space_name: str, results_dir: str | Path = "results") -> str:
    """``sqlite:///<results_dir>/<space>.db``, the search's default, creating the directory."""
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(results_dir) / space_name}.db"


def find_storage_url(study_name: str, results_dir: str | Path = "results") -> str:
    """Where a search with ``--out results_dir`` put study ``study_name`` by default.

    The search names its SQLite file after the space, so a study named with ``--study-name``
    lives in another study's file: ``<results_dir>/<study>.db`` when it exists, else the one
    SQLite file there that holds the study.
    """
    results = Path(results_dir)
    direct = results / f"{study_name}.db"
    if direct.is_file() or not results.is_dir():
        return f"sqlite:///{direct}"
    found: dict[str, str] = {}  # study -> file, for the message
    for path in sorted(results.glob("*.db")):
        url = f"sqlite:///{path}"
        with contextlib.suppress(Exception):  # not an Optuna database: keep looking
            names = optuna.get_all_study_names(make_storage(url, heartbeat=False))
            if study_name in names:
                return url
            found.update(dict.fromkeys(names, path.name))
    if found:
        hint = close_match_hint(study_name, found)
        listed = ", ".join(f"{name} ({file})" for name, file in sorted(found.items()))
        raise ConfigError(f"no study {study_name!r} in the storages under {results}{hint}; studies there: {listed}",
                          key="--study")
    return f"sqlite:///{direct}"


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
    kwargs: dict[str, Any] = {}
    if heartbeat:
        kwargs = dict(heartbeat_interval=HEARTBEAT_INTERVAL, grace_period=GRACE_PERIOD,
                      heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1))
    # SQLite serialises writers; a generous lock timeout lets several local workers share it.
    # A server that does not answer is reported after 10 s, not after the OS's TCP timeout.
    engine_kwargs: dict[str, Any] | None = None
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}
    elif url.startswith("postgresql"):
        engine_kwargs = {"connect_args": {"connect_timeout": 10}}
    try:
        return _rdb_storage(url, engine_kwargs, kwargs)
    except ImportError as err:
        raise ConfigError(f"the storage {redact_url(url)} needs a database driver that is not installed "
                          f"({err}); for PostgreSQL install the 'postgres' extra: pip install -e \".[postgres]\"",
                          key="--storage") from None
    except Exception as err:  # noqa: BLE001 - sqlalchemy raises many types for a bad URL
        raise ConfigError(connection_problem(url, err), key="--storage") from None


def _rdb_storage(url: str, engine_kwargs: dict[str, Any] | None, kwargs: dict[str, Any]) -> RDBStorage:
    """``RDBStorage(url)``; retried when another process was creating the schema at the same moment.

    Two nodes started together on a fresh PostgreSQL database both run Optuna's ``CREATE TYPE``
    / ``CREATE TABLE``; the loser gets a unique violation, and once the winner has committed
    the schema exists and opening it succeeds.
    """
    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except Exception as err:  # sqlalchemy wraps the driver's error
            attempt += 1
            racing = any(sign in str(err) for sign in ("already exists", "duplicate key value"))
            if not racing or attempt == 5:
                raise
            time.sleep(0.5 * attempt)


def redact_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages: a password is never printed)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not a URL sqlalchemy parses: keep only its scheme
        return url.split("://", 1)[0] + "://..."


def connection_problem(url: str, err: BaseException) -> str:
    """What went wrong opening the database server storage ``url`` and what to fix, in one line."""
    from sqlalchemy.engine import make_url

    text = " ".join(str(err).split())
    shown = redact_url(url)
    try:
        parsed = make_url(url)
        where = f"{parsed.host or 'localhost'}:{parsed.port or 5432}"
        user, database = parsed.username, parsed.database
    except Exception:  # noqa: BLE001
        return f"cannot open storage {shown}: {text.split(' (Background')[0][:300]}"
    if "password authentication failed" in text or "no password supplied" in text:
        return (f"the server at {where} refused user {user!r}: password authentication failed "
                f"(check the user and password in {shown})")
    if "does not exist" in text and "database" in text:
        return (f"database {database!r} does not exist on the server at {where} (create it: "
                f"createdb -h {parsed.host or 'localhost'} -p {parsed.port or 5432} -U {user} {database})")
    if any(sign in text for sign in ("Connection refused", "could not translate host name", "timeout expired",
                                     "No route to host", "Name or service not known", "connection failed")):
        return (f"cannot reach a database server at {where} (is it running, and do the host and port in "
                f"{shown} point at it?)")
    detail = text.split(" (Background")[0]
    if parsed.password:  # drivers may echo the connection string
        detail = detail.replace(parsed.password, "***")
    return f"cannot open storage {shown}: {detail[:300]}"


# ----- opening ------------------------------------------------------------------------------
def open_search_study(space: SearchSpace, *, storage: BaseStorage, study_name: str,
                      sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    """Create or load the study a search writes; its directions and objective names come from the space.

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
        study.set_user_attr("constraints", dict(space.constraints))  # the limits, for the trials' notes
        # Absolute, so that `nas.export` and `nas.train` find the space from any directory.
        study.set_user_attr("space_source", str(Path(space.source).resolve()))
        if space.data.latent is not None:  # its trials model latents: an export needs the autoencoder
            study.set_user_attr("latent", space.data.latent.to_dict())
    return study


def load_existing_study(study_name: str, storage_url: str) -> optuna.Study:
    """Load study ``study_name`` for reading; a missing storage file or study is a :class:`ConfigError`."""
    if storage_url.startswith("sqlite:///"):
        path = Path(storage_url.removeprefix("sqlite:///"))
        if not path.is_file():  # opening it would create an empty database
            raise ConfigError(f"storage file {path} does not exist (run nas.search first, or pass --storage)",
                              key="--storage")
    elif "://" not in storage_url and not Path(storage_url.removeprefix("journal:")).is_file():
        raise ConfigError(f"journal file {storage_url} does not exist", key="--storage")
    storage = make_storage(storage_url, heartbeat=False)
    names = optuna.get_all_study_names(storage)
    if study_name not in names:
        hint = close_match_hint(study_name, names)
        raise ConfigError(f"no study {study_name!r} in {redact_url(storage_url)}{hint}; "
                          f"studies there: {sorted(names) or 'none'}",
                          key="--study")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study_name, storage=storage)


def trial_spec(trial: FrozenTrial) -> dict[str, Any] | None:
    """The spec a trial recorded, as plain data (None when it recorded none, e.g. an invalid point)."""
    spec = trial.system_attrs.get(SPEC_ATTR, trial.user_attrs.get("spec"))
    return spec if isinstance(spec, dict) else None


# ----- counting and asking --------------------------------------------------------------------
def finished_trials(study: optuna.Study, trials: list[FrozenTrial] | None = None) -> list[FrozenTrial]:
    """Trials that count toward ``--trials``: COMPLETE, PRUNED, and candidates that failed on their
    own (:data:`FAILED_STATUSES`); not trials interrupted by a dead worker or a stopped search.
    ``trials`` (default: the study's) are the trials to pick from."""
    out = []
    for t in study.get_trials(deepcopy=False) if trials is None else trials:
        failed_on_its_own = t.state == TrialState.FAIL and t.user_attrs.get("status") in FAILED_STATUSES
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED) or failed_on_its_own:
            out.append(t)
    return out


@dataclass(frozen=True)
class StudyCounts:
    """How far a search is: finished and running trials, and the size of the feasible front."""

    finished: int
    running: int
    front: int


def count(study: optuna.Study) -> StudyCounts:
    """The study's :class:`StudyCounts` now."""
    from nas.pareto import front_trials

    running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
    return StudyCounts(finished=len(finished_trials(study)), running=running, front=len(front_trials(study)))


@dataclass(frozen=True)
class Ask:
    """What :func:`ask_if_room` found: a new trial, ``done`` (enough trials or past the deadline),
    or neither (full for now: a running trial may still fail and make room)."""

    trial: optuna.Trial | None = None
    done: bool = False


def _uncached_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's trials read from its storage's database, past Optuna's in-process cache."""
    storage = study._storage
    backend = getattr(storage, "_backend", storage)  # optuna's _CachedStorage wraps an RDBStorage
    return backend.get_all_trials(study._study_id, deepcopy=False)


def ask_if_room(study: optuna.Study, *, trials: int, lock: Path, deadline: float | None = None) -> Ask:
    """Ask ``study`` for a trial when it has fewer than ``trials`` finished plus running ones.

    Holds ``lock`` (a file shared by every process of the search) from the count to the ask, and
    first fails trials whose heartbeat went stale (their worker died; RDB storages re-enqueue
    them once).  ``deadline`` is a ``time.time()`` value after which no trial is started.
    """
    from optuna.storages import fail_stale_trials

    with file_lock(lock):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fail_stale_trials(study)
        # Counted from the database itself, not through Optuna's per-process trial cache: another
        # process (another node) may have asked or finished a trial a moment ago.
        current = _uncached_trials(study)
        finished = len(finished_trials(study, current))
        if finished >= trials or (deadline is not None and time.time() > deadline):
            return Ask(done=True)
        running = sum(t.state == TrialState.RUNNING for t in current)
        if finished + running >= trials:
            return Ask()
        with warnings.catch_warnings():
            # Ask/tell with a heartbeat is deliberate (see heartbeat()).
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = study.ask()
        _first_beat(study, trial)
        return Ask(trial=trial)


def _first_beat(study: optuna.Study, trial: optuna.Trial) -> None:
    """Record the new trial's first heartbeat now, before the caller starts its heartbeat thread.

    Optuna's thread records its first beat whenever the thread is first scheduled; a worker killed
    before that leaves a RUNNING trial without any heartbeat, which ``fail_stale_trials`` never
    fails, so a rerun waits for it forever (the likely cause of the one hang of the SIGKILL-resume
    test, on a loaded 2-core machine).  With a beat recorded at the ask, a worker that dies at any
    point goes stale.
    """
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    storage = study._storage
    if is_heartbeat_enabled(storage) and isinstance(storage, BaseHeartbeat):
        storage.record_heartbeat(trial._trial_id)


def heartbeat(trial: optuna.Trial, study: optuna.Study) -> Any:
    """Optuna's heartbeat thread for ``trial`` (RDB storages; a no-op thread for the others).

    ``with heartbeat(trial, study):`` beats while the block runs; ``.start()`` and ``.join()``
    beat for a trial that runs elsewhere (Ray's driver).  ``Study.optimize`` does this itself; a
    search asks and tells, so it starts the thread, which Optuna has no public name for.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread

    return get_heartbeat_thread(trial._trial_id, study._storage)
