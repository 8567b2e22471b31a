"""Search backends: where the trials of a search run (see :mod:`nas.backends.base` for the interface).

``optuna`` (:class:`~nas.backends.local.LocalBackend`) runs worker processes on this machine;
``ray`` (:class:`~nas.backends.ray_tune.backend.RayBackend`) schedules trials with Ray Tune.
:func:`make_backend` builds one from the search command's options; Ray is imported only when
its backend is chosen.
"""

from __future__ import annotations

from nas.backends.base import Backend, BackendRun, Progress, SearchJob
from nas.errors import ConfigError, close_match_hint

__all__ = ["BACKENDS", "Backend", "BackendRun", "Progress", "SearchJob", "make_backend"]

BACKENDS = ("optuna", "ray")


def make_backend(name: str, *, workers: int = 1, threads: int | None = None, address: str | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float | None = None,
                 max_concurrent: int | None = None) -> Backend:
    """The backend ``name`` with its options; options of the other backend are refused."""
    if name == "optuna":
        from nas.backends.local import LocalBackend

        backend: Backend = LocalBackend(workers=workers, threads=threads)
    elif name == "ray":
        if workers > 1:
            raise ConfigError("--workers is for the optuna backend; with Ray use --max-concurrent", key="--workers")
        if threads is not None:
            raise ConfigError("--threads is for the optuna backend; with Ray use --cpus-per-trial", key="--threads")
        from nas.backends.ray_tune.backend import RayBackend

        backend = RayBackend(address=address, cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                             max_concurrent=max_concurrent)
    else:
        raise ConfigError(f"unknown backend {name!r}{close_match_hint(name, BACKENDS)}; valid: {', '.join(BACKENDS)}",
                          key="--backend")
    backend.check()
    return backend
