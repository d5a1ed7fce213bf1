"""A real PostgreSQL server for tests: initdb in tmp_path, a free loopback port, always stopped.

Uses the binaries of Debian's ``postgresql`` package (``/usr/lib/postgresql/*/bin``).
PostgreSQL refuses to run as root, so as root the cluster is made and run by the
``postgres`` user (``runuser``) and the test's folders are made traversable for it.
``session_postgres`` starts one server per test session (initdb costs seconds); each
test gets its own database from ``postgres_url``. A missing server skips locally and
fails under CI=true (``tests.conftest.require``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.broker import free_port
from tests.conftest import require


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


class Postgres:
    """One postgres process with its own cluster under ``workdir``."""

    def __init__(self, workdir: Path) -> None:
        bindir = postgres_bin()
        require(bindir is not None, "PostgreSQL",
                "apt-get install postgresql (or scripts/bootstrap.sh --test)")
        assert bindir is not None
        self.bindir = bindir
        self.as_root = os.geteuid() == 0
        if self.as_root:
            # As root the server runs as the postgres user, who cannot walk into pytest's
            # 0700 folders (and each new pytest session makes them 0700 again): the cluster
            # lives in a folder of its own, removed when this object goes.
            workdir = Path(tempfile.mkdtemp(prefix="gate-agent-pg-"))
            weakref.finalize(self, shutil.rmtree, workdir, True)
            subprocess.run(["chown", "postgres:postgres", str(workdir)], check=True)
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self._run([str(bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                   "-E", "UTF8", "--no-instructions"])

    def _cmd(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if self.as_root else argv

    def _run(self, argv: list[str]) -> None:
        subprocess.run(self._cmd(argv), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        """Start and wait until it accepts connections; a start right after an immediate
        shutdown can find the old backends' shared memory still in use: try again."""
        deadline = time.monotonic() + 40
        while True:
            log = (self.workdir / "postgres.log").open("ab")
            self.proc = subprocess.Popen(
                self._cmd([str(self.bindir / "postgres"), "-D", str(self.data),
                           "-p", str(self.port), "-k", str(self.workdir),
                           "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=50"]),
                stdout=log, stderr=log)
            log.close()
            while self.proc.poll() is None and not self._accepts():
                if time.monotonic() > deadline:
                    raise TimeoutError(f"PostgreSQL did not accept connections: see "
                                       f"{self.workdir}/postgres.log")
                time.sleep(0.05)
            if self.proc.poll() is None:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL exited at start: see {self.workdir}/postgres.log")
            time.sleep(0.5)

    def _accepts(self) -> bool:
        import psycopg
        try:
            psycopg.connect(self.url, connect_timeout=2).close()
            return True
        except psycopg.OperationalError:
            return False

    def create_database(self) -> str:
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def stop(self) -> None:
        if self.proc is None:
            return
        # postgres runs as the postgres user under runuser: signal the server itself.
        # SIGINT is the fast shutdown (sessions ended, a clean checkpoint); the smart one
        # (SIGTERM) would wait for every client, e.g. a running gate-centre, to leave.
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def kill(self) -> None:
        """Immediate shutdown (SIGQUIT): every backend is killed at once, nothing is
        flushed, the next start runs crash recovery: the database is down, abruptly.
        (A SIGKILLed postmaster leaves backends holding shared memory, and a restart
        refuses to run until they are gone.)"""
        pid_file = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            os.kill(int(pid_file.read_text().splitlines()[0]), 3)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture(scope="session")
def session_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    server = Postgres(tmp_path_factory.mktemp("postgres"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(session_postgres: Postgres) -> str:
    """A fresh, empty database on the session's PostgreSQL server."""
    return session_postgres.create_database()
