"""Test-wide setup: every cache the tests fill lives in a temporary directory, never in the home.

The FID reference cache (``$UNET_NAS_CACHE``) and matplotlib's font cache (``$MPLCONFIGDIR``)
point into one temporary directory, set when pytest starts so that the subprocesses tests
launch (``python -m nas.search ...``) inherit it too; it is removed when the session ends.
Ray test clusters run with token authentication off.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="unet-nas-tests-")
os.environ["UNET_NAS_CACHE"] = os.path.join(_CACHE, "unet-nas")
os.environ["MPLCONFIGDIR"] = os.path.join(_CACHE, "matplotlib")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # read when Ray starts: no token for test clusters


def pytest_unconfigure(config: pytest.Config) -> None:
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
