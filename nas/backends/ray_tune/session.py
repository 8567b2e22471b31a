"""Starting or joining Ray, and sizing trials to it.

Without an address (and no ``RAY_ADDRESS``) a private local Ray sized to this machine is started
with token authentication off (``RAY_AUTH_MODE=disabled`` unless already set) and shut down at
the end.  ``auto`` or ``HOST:PORT`` joins a running cluster from one of its nodes;
``ray://HOST:PORT`` connects a Ray Client.  A cluster with token authentication needs the token
in ``RAY_AUTH_TOKEN`` (or ``~/.ray/auth_token``) and ``RAY_AUTH_MODE=token``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from nas.errors import ConfigError

__all__ = ["LOCAL_OBJECT_STORE_BYTES", "RUNG_KEY", "check_fits", "is_local", "ray_session"]

# Trials exchange only small dicts; the default store (a share of RAM) can exhaust /dev/shm in containers.
LOCAL_OBJECT_STORE_BYTES = 150 * 1024**2
# Intermediate reports: ``RUNG_KEY`` counts the rungs passed (1, 2, ...), the scheduler's clock.
RUNG_KEY = "rung"


def is_local(address: str | None) -> bool:
    """Whether the search starts its own private Ray (no address given, none in the environment)."""
    return not (address or os.environ.get("RAY_ADDRESS"))


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
    if is_local(address):
        # A private, single-user cluster: no token to generate, nothing for the user to set up.
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        # "local": a new private instance even when another Ray runs on this machine (a plain
        # ray.init() would join that one, e.g. a `ray start` head or a test cluster).
        kwargs.update(address="local", num_cpus=os.cpu_count() or 1, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    else:
        kwargs.update(address=address or os.environ.get("RAY_ADDRESS"))
    ray.init(**kwargs)
    try:
        yield
    finally:
        ray.shutdown()


def check_fits(resources: dict[str, float], *, cpus: float, gpus: float) -> None:
    """A trial asking for more than a local Ray has would wait forever: say so instead."""
    for name, key, need in (("CPU", "--cpus-per-trial", cpus), ("GPU", "--gpus-per-trial", gpus)):
        if need > resources.get(name, 0):
            raise ConfigError(f"a trial asks for {need:g} {name}s, this machine's Ray has "
                              f"{resources.get(name, 0):g}", key=key)
