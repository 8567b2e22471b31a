"""Test-wide setup: every cache the tests fill lives in a temporary directory, never in the home.

The FID reference cache (``$UNET_NAS_CACHE``) and matplotlib's font cache (``$MPLCONFIGDIR``)
point into one temporary directory, set when pytest starts so that the subprocesses tests
launch (``python -m nas.search ...``) inherit it too; it is removed when the session ends.
Ray test clusters run with token authentication off.

Under pytest-xdist (``-n 3``, the README's command) the workers inherit the controller's
environment, so they share that one cache (its writers are atomic and locked, as for
``--workers N``) and the classifier and data caches are built once; only the process that made
the directory removes it.  Each worker runs torch with one intra-op thread, and so do the
processes it launches (``OMP_NUM_THREADS=1``): workers with two threads each on two cores wait on
each other at every parallel region (see ``evaluators/contention.py``).
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_ROOT_ENV = "UNET_NAS_TEST_CACHE_ROOT"
_OWNS_CACHE = _ROOT_ENV not in os.environ  # false in an xdist worker: the controller made it
if _OWNS_CACHE:
    os.environ[_ROOT_ENV] = tempfile.mkdtemp(prefix="unet-nas-tests-")
_CACHE = os.environ[_ROOT_ENV]
os.environ["UNET_NAS_CACHE"] = os.path.join(_CACHE, "unet-nas")
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "matplotlib")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # read when Ray starts: no token for test clusters

if "PYTEST_XDIST_WORKER" in os.environ:
    import torch

    torch.set_num_threads(1)
    # The searches and benchmarks the tests launch inherit it: their thread policy then takes one
    # core (evaluators.contention.available_cores), where two threads each in three workers' and
    # their children's processes on two cores ran the benchmark tests several times slower.
    os.environ["OMP_NUM_THREADS"] = "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Modules holding slow end-to-end tests first (a stable sort: otherwise collection order).

    Under the README's ``-n 3`` each module goes to one xdist worker as a unit, in this order
    (``--dist loadscope --no-loadscope-reorder`` in pyproject.toml): starting with the long ones
    leaves the many short modules to fill the end, so the workers finish together instead of
    one running a long benchmark test alone at the end.
    """
    slow = {item.module.__name__ for item in items if item.module and item.get_closest_marker("slow")}
    items.sort(key=lambda item: not (item.module and item.module.__name__ in slow))


def pytest_unconfigure(config: pytest.Config) -> None:
    if _OWNS_CACHE:
        shutil.rmtree(_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> object:
    """A throwaway PostgreSQL server for the session (``tests/postgres_server.py``); skips with one
    line where none can be started, unless ``UNET_NAS_REQUIRE_POSTGRES=1`` (CI), where it fails."""
    from postgres_server import running_server

    try:
        import psycopg  # noqa: F401 - the driver the storage URL names
        server_context = running_server()
        server = server_context.__enter__()
    except (ImportError, FileNotFoundError, OSError) as err:
        if os.environ.get("UNET_NAS_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required here but could not start: {err}")
        pytest.skip(f"no PostgreSQL server available: {err}")
    try:
        yield server
    finally:
        server_context.__exit__(None, None, None)


@pytest.fixture()
def postgres_url(postgres_server: object, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on the session's PostgreSQL server, as a ``--storage`` URL."""
    import re

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50]
    return postgres_server.create_database(name)  # type: ignore[attr-defined]
