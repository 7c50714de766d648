"""A real Mosquitto broker on a free loopback port, for tests and the demo.

Started in the foreground with its own config file (no persistence unless asked, no
listener but 127.0.0.1), stopped with SIGTERM. Ready is awaited by connecting, not by
sleeping.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

from edged.simulators.process import ServiceProcess, spawn

from edged.errors import EdgedError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MosquittoHarness(ServiceProcess):
    """One broker process; ``start()``/``stop()``/``restart()`` keep the same port."""

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = False,
        extra_config: str = "",
        bind: str = "127.0.0.1",
        netns: str | None = None,
        host: str = "127.0.0.1",
        users: dict[str, str] | None = None,
        acl: str = "",
    ) -> None:
        """``netns``: run inside that network namespace (``ip netns exec``), listening on
        ``bind``; ``host`` is the address this process reaches it at. ``users``: names and
        passwords, and nobody else may connect; ``acl``: a Mosquitto ACL file's text."""
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.persistence = persistence
        self.extra_config = extra_config
        self.bind, self.netns, self.host = bind, netns, host
        self.users, self.acl = dict(users or {}), acl
        super().__init__()

    @staticmethod
    def available() -> str | None:
        if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
            return "mosquitto is not installed (apt-get install mosquitto)"
        return None

    def _config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "mosquitto.conf"
        lines = [
            f"listener {self.port} {self.bind}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            # Stay the user who started it: a test broker reads certificates from the test's
            # private temporary directory (as root, mosquitto would switch to "mosquitto").
            f"user {getpass.getuser()}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
        ]
        if self.users:
            # Hashed by mosquitto_passwd itself (-U), as an operator would.
            pw = self.workdir / "passwd"
            pw.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
            lines.append(f"password_file {pw}")
        if self.acl:
            (self.workdir / "acl").write_text(self.acl)
            lines.append(f"acl_file {self.workdir / 'acl'}")
        conf.write_text("\n".join(lines) + "\n" + self.extra_config)
        return conf

    def start(self, timeout: float = 10.0) -> None:
        missing = self.available()
        if missing:
            raise EdgedError(f"mosquitto harness: {missing}")
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        prefix = ["ip", "netns", "exec", self.netns] if self.netns else []
        self._proc = spawn(
            [*prefix, exe, "-c", str(self._config())],
            stdout=open(self.workdir / "mosquitto.log", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        end = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:]
                raise EdgedError(f"mosquitto exited at start:\n{log}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > end:
                    self.stop()
                    raise EdgedError(f"mosquitto did not listen on {self.port}") from None
                # The broker is coming up: connect attempts are the event we wait for;
                # back off briefly between them.
                self._wait_exit(0.05)

    def _wait_exit(self, seconds: float) -> None:
        assert self._proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(seconds)
