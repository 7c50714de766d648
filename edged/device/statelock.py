"""One daemon per state directory: two would write one journal from two places. The
lock (flock) dies with the process, so a SIGKILL leaves nothing stale behind; the PID
file only says who holds it."""

from __future__ import annotations

import fcntl
import os

from edged.device.paths import StatePaths
from edged.errors import EdgedError


class StateLock:
    def __init__(self, paths: StatePaths) -> None:
        self.paths = paths
        self._fd: int | None = None

    def acquire(self) -> None:
        self.paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.paths.lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            try:
                pid = self.paths.pid.read_text().strip() or "?"
            except OSError:
                pid = "?"
            raise EdgedError(
                f"state directory {self.paths.root} is in use by PID {pid} (another edged"
                " daemon); stop it first, or give this one its own --state-dir"
            ) from None
        self._fd = fd

    def write_pid(self) -> None:
        self.paths.pid.write_text(f"{os.getpid()}\n")

    def remove_pid(self) -> None:
        if self.paths.pid.exists():
            self.paths.pid.unlink()

    def release(self) -> None:
        self.remove_pid()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
