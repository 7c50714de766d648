"""Central-side processes for tests: ``edged collect`` as a process of its own (so that
it can be killed), and waiting on conditions held by other processes."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from tests.conftest import EDGED


def wait_until(pred, timeout: float, what: str, every: float = 0.2) -> None:
    """Poll a condition of other processes (a database, a fleet) until it holds."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class CollectorProc:
    """``edged collect`` as a process of its own, so that it can be killed."""

    def __init__(
        self, tmp: Path, n: int, store: str, port: int, share: str | None, *extra: str
    ) -> None:
        key = tmp / "collector" / "collector_ed25519.key"
        self.args = [
            EDGED, "collect", "--broker", f"127.0.0.1:{port}", "--store", store,
            "--trust", str(tmp / "trust"), "--key", str(key),
        ]  # fmt: skip
        if share:
            self.args += ["--share", share]
        self.args += list(extra)
        self.log = tmp / f"collector-{n}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:  # the child keeps its own descriptor
            self.proc = subprocess.Popen(self.args, stdout=out, stderr=subprocess.STDOUT)
        # Subscribed once it says so in its log (the broker has taken the subscriptions).
        wait_until(lambda: b"collector_connected" in self.log.read_bytes(), 30, "collector up")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
