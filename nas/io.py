"""Writing files so that a crash never leaves half of one, and one lock for work shared between processes.

Every file the tool writes for later reading (checkpoints, run settings, model YAML, reports,
the FID cache, benchmark tables and results) goes through :func:`atomic_writer`: the data goes to
a temporary file in the same directory, is flushed and fsynced, and is then renamed over the
target, so a reader sees the old file or the complete new one, never a torn one, even after a
power loss.  :func:`file_lock` is an exclusive inter-process lock (``filelock``), used where
several workers must not do the same step at once (asking the study for a trial, building the
FID reference).  :func:`cache_root` is where computed-once files live.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["CACHE_ENV", "atomic_write", "atomic_writer", "cache_root", "file_lock", "json_default", "write_json"]

CACHE_ENV = "UNET_NAS_CACHE"  # where what the tool computes once is kept (FID reference, decoded data)


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """``cache_dir``, else ``$UNET_NAS_CACHE``, else ``~/.cache/unet-nas``."""
    return Path(cache_dir or os.environ.get(CACHE_ENV) or "~/.cache/unet-nas").expanduser()


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike[str], *, binary: bool = False,
                  newline: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path``.

    On an exception inside the block the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        mode = "wb" if binary else "w"
        with os.fdopen(fd, mode, newline=None if binary else newline,
                       encoding=None if binary else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the rename below must not expose unwritten data
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text or bytes) to ``path`` atomically; returns the path."""
    with atomic_writer(path, binary=isinstance(data, bytes)) as handle:
        handle.write(data)
    return Path(path)


def json_default(value: Any) -> Any:
    """JSON for what ``json`` cannot write: numpy values as plain numbers, anything else as text."""
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    return str(value)


def _finite(value: Any) -> Any:
    # JSON has no NaN or infinity; None says "no value" to every reader.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN and infinity become null)."""
    return atomic_write(path, json.dumps(_finite(data), indent=2, default=json_default) + "\n")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], *, timeout: float = -1) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the block, across processes.

    ``timeout`` seconds to wait (-1: forever).  Where the directory is not writable the block
    runs unlocked: the atomic writes above still keep every file consistent.
    """
    from filelock import FileLock

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path), timeout=timeout)
        lock.acquire()
    except OSError:
        yield
        return
    try:
        yield
    finally:
        lock.release()
