"""What the pcscd and Mosquitto harnesses share: one child service process, stopped with
SIGTERM (then SIGKILL), never outliving the process that started it."""

from __future__ import annotations

import ctypes
import signal
import subprocess
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Self

# Looked up before any fork: the child only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: the service gets SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
    killed daemon or test never leaves a pcscd or broker behind that blocks the next one."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


# PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process: a service
# started from a short-lived thread (a control-socket handler restarting pcscd to
# "unplug" a reader) would be killed with that thread. So every service is forked from
# this one thread, which lives as long as the process.
_launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="service-launcher")


def spawn(args: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` from the launcher thread, dying with this process."""

    def start() -> subprocess.Popen[Any]:
        return subprocess.Popen(args, preexec_fn=die_with_parent, **kwargs)

    return _launcher.submit(start).result()


def exited(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Whether ``proc`` exited within ``timeout`` s, awaited on its pidfd. Popen.wait's
    timeout polls with time.sleep, which fails with EINVAL under libfaketime (the clock
    moved for the tests that live on another day), and polling is a guess anyway."""
    import os
    import select

    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        return True  # reaped already
    try:
        return bool(select.select([fd], [], [], timeout)[0]) or proc.poll() is not None
    finally:
        os.close(fd)


class ServiceProcess:
    """Base of the harnesses. Subclasses must override :meth:`start`, which sets ``_proc``."""

    # Every harness with a process, so that a test that failed half-way (its harness
    # never stopped) can be cleaned up after: one pcscd left over breaks every later one.
    live: ClassVar[weakref.WeakSet[ServiceProcess]] = weakref.WeakSet()

    def __init__(self) -> None:
        self.__proc: subprocess.Popen[Any] | None = None

    @property
    def _proc(self) -> subprocess.Popen[Any] | None:
        return self.__proc

    @_proc.setter
    def _proc(self, proc: subprocess.Popen[Any] | None) -> None:
        self.__proc = proc
        if proc is None:
            ServiceProcess.live.discard(self)
        else:
            ServiceProcess.live.add(self)

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
        if not exited(proc, 10):
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
