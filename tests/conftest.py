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
