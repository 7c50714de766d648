"""What the pcscd and Mosquitto harnesses share: one child service process, stopped with
SIGTERM (then SIGKILL), never outliving the process that started it."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from typing import Any, Self


def die_with_parent() -> None:
    """``preexec_fn``: the service gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
    killed daemon or test never leaves a pcscd or broker behind that blocks the next one."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class ServiceProcess:
    """Base of the harnesses. Subclasses must override :meth:`start`, which sets ``_proc``."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[Any] | None = None

    def start(self) -> None:
        raise NotImplementedError

    def _after_stop(self) -> None:
        """May be overridden: clean-up once the process has gone."""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._after_stop()

    close = stop

    def kill(self) -> None:
        """SIGKILL: a crash, not a clean stop."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
            self._after_stop()

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
