"""A throwaway PostgreSQL server for the tests: ``initdb`` in a temporary directory, ``pg_ctl``
on a free local port, password authentication, stopped and removed at the end.

The server binaries come from ``$PATH`` or Debian's ``/usr/lib/postgresql/<version>/bin``.
PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres`` user
(Debian's package creates it) and every server command runs through ``runuser``.  Where no
server can be found the tests that need one skip with one line, except when
``UNET_NAS_REQUIRE_POSTGRES=1`` (set by ``.ci/run``), where they fail.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "nas"
PASSWORD = "test-secret-7f3a"  # a test cluster's; the error tests check it is never printed


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where it listens and how to make a database on it."""

    host: str
    port: int
    bin_dir: Path

    def url(self, database: str, *, password: str = PASSWORD) -> str:
        """The ``--storage`` URL of ``database`` on this server."""
        return f"postgresql+psycopg://{USER}:{password}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database ``name``; returns its URL."""
        import psycopg

        with psycopg.connect(host=self.host, port=self.port, user=USER, password=PASSWORD, dbname="postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(candidate, "initdb").is_file() and Path(candidate, "pg_ctl").is_file():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_owner(cmd: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *cmd] if owner else cmd


@contextmanager
def running_server() -> Iterator[PostgresServer]:
    """Start a fresh cluster and yield it; it is stopped and deleted however the block ends."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise FileNotFoundError("no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql")
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres").pw_name
        except KeyError:
            raise FileNotFoundError("running as root and there is no 'postgres' user to own the cluster") from None
    root = Path(tempfile.mkdtemp(prefix="unet-nas-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    pwfile = root / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        for path in (root, socket_dir, pwfile):
            shutil.chown(path, user=owner)
    port = _free_port()
    started = False
    try:
        subprocess.run(_as_owner([str(bin_dir / "initdb"), "-D", str(data), "-U", USER, f"--pwfile={pwfile}",
                                  "--auth=scram-sha-256", "--encoding=UTF8", "--no-sync"], owner),
                       check=True, capture_output=True, timeout=120)
        # fsync off and a small footprint: a throwaway test cluster, never a user's data.
        options = (f"-p {port} -k {socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                  str(root / "server.log"), "-w", "-t", "60", "start"], owner),
                       check=True, capture_output=True, timeout=120)
        started = True
        server = PostgresServer(host="127.0.0.1", port=port, bin_dir=bin_dir)
        _wait_until_accepting(server)
        yield server
    finally:
        if started:
            subprocess.run(_as_owner([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                                     owner), capture_output=True, timeout=120, check=False)
        shutil.rmtree(root, ignore_errors=True)


def _wait_until_accepting(server: PostgresServer, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(host=server.host, port=server.port, user=USER, password=PASSWORD,
                                 dbname="postgres", connect_timeout=5):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
