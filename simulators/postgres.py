"""A real PostgreSQL server in a temporary directory, for tests, benchmarks and a fleet
demo: ``initdb`` as the ``postgres`` system user (the server refuses to run as root), a
loopback port, a Unix socket in its own directory, trust authentication on loopback only.
Ready is awaited by connecting, not by sleeping."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from edged.simulators.mosquitto import free_port
from edged.simulators.process import ServiceProcess, spawn

from edged.errors import EdgedError

# Debian installs the server binaries per major version, off PATH.
_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
SERVICE_USER = "postgres"


def _binary(name: str) -> str | None:
    for d in _BIN_DIRS:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


class PostgresHarness(ServiceProcess):
    """One server; ``url`` names database ``edged``. ``kill()`` for crash tests."""

    def __init__(self, port: int | None = None, *, fsync: bool = True) -> None:
        super().__init__()
        self.port = port or free_port()
        self.fsync = fsync
        self.dir: Path | None = None

    @staticmethod
    def available() -> str | None:
        if _binary("initdb") is None or _binary("postgres") is None:
            return "PostgreSQL is not installed (apt-get install postgresql)"
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"no {SERVICE_USER!r} user (apt-get install postgresql makes it)"
        return None

    @property
    def url(self) -> str:
        return f"postgresql://{SERVICE_USER}@127.0.0.1:{self.port}/edged"

    def _as_service_user(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        pw = pwd.getpwnam(SERVICE_USER)
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}

    def start(self, timeout: float = 60.0) -> None:
        missing = self.available()
        if missing:
            raise EdgedError(f"postgres harness: {missing}")
        if self.dir is None:
            # Not under a test's private tmp: the service user must reach it.
            self.dir = Path(tempfile.mkdtemp(prefix="edged-pg-"))
            pw = pwd.getpwnam(SERVICE_USER)
            if os.geteuid() == 0:
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            data = self.dir / "data"
            subprocess.run(
                [
                    str(_binary("initdb")),
                    "-D",
                    str(data),
                    "-U",
                    SERVICE_USER,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **self._as_service_user(),
            )
        data = self.dir / "data"
        self._proc = spawn(
            [
                str(_binary("postgres")),
                "-D",
                str(data),
                "-p",
                str(self.port),
                "-k",
                str(self.dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"fsync={'on' if self.fsync else 'off'}",
                "-c",
                "max_connections=100",
            ],
            stdout=open(self.dir / "postgres.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            **self._as_service_user(),
        )
        end = time.monotonic() + timeout
        while not self._answers():
            if self._proc.poll() is not None:
                log = (self.dir / "postgres.log").read_text(errors="replace")[-2000:]
                raise EdgedError(f"postgres exited at start:\n{log}")
            if time.monotonic() > end:
                self.stop()
                raise EdgedError(f"postgres did not accept connections on {self.port}")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(0.1)
        self._create_db()

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                pass
        except OSError:
            return False
        import psycopg

        try:
            psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", connect_timeout=2).close()
        except psycopg.OperationalError:
            return False  # "the database system is starting up"
        return True

    def _create_db(self) -> None:
        import psycopg

        with psycopg.connect(self.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            if not c.execute("SELECT 1 FROM pg_database WHERE datname='edged'").fetchone():
                c.execute("CREATE DATABASE edged")

    def kill(self) -> None:
        """SIGKILL the server (a crash); ``start()`` again recovers the same data."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        """A fast shutdown (SIGINT): SIGTERM would wait for every client to leave."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def remove(self) -> None:
        """Stop and delete the data directory."""
        self.stop()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
