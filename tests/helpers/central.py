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


class Held:
    """What a running collector holds, read under its lock (the collector itself keeps
    no query that only tests ask)."""

    def __init__(self, collector) -> None:
        self.c = collector

    def seqs(self, site: str, device: str) -> list[int]:
        return self.c.read(lambda s: s.seqs((site, device)))

    def hashes(self, site: str, device: str) -> list[str]:
        return self.c.read(lambda s: s.hashes((site, device)))

    def forked(self, site: str, device: str) -> list[int]:
        """The seqs of the device's records kept apart from its chain."""
        return self.c.read(lambda s: s.forked((site, device)))

    def discontinuities(self, site: str, device: str) -> list[tuple[int, int, int, int]]:
        """Where the device's chain skips: (seq, found_seq, known_seq, central_seq)."""
        return self.c.read(lambda s: s.discontinuities((site, device)))

    def alarms(self) -> list[tuple[str, str]]:
        return self.c.read(lambda s: s.alarms.all())

    def alarm_origins(self) -> set[tuple[str, str]]:
        return self.c.read(lambda s: s.alarms.origins())

    def store_cosigned(self, site: str, device: str) -> list[tuple[int, str]]:
        """The device's checkpoints this collector cosigned: (tree size, note)."""
        return self.c.read(lambda s: s.trees.cosigned((site, device)))


def held(collector) -> Held:
    return Held(collector)
