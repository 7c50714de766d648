"""What the daemon did, for those who watch it from other threads: the control socket
(``edged sim`` waits for a tap's records), the tests, the benchmarks. The core thread
adds each handled step; watchers wait on one condition, never on a sleep."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged.core.events import Event


@dataclass(frozen=True)
class Processed:
    """One handled event and the records it produced (for observers: tests, control socket)."""

    n: int
    event: Event | None
    records: tuple[dict[str, Any], ...]


class Observers:
    """``stopped``: set when the daemon has stopped (waiters give up); ``refused``: how many
    inbound lists were refused since start (read under :attr:`cond`)."""

    def __init__(
        self, stopped: threading.Event, refused: Callable[[], int], keep: int = 1000
    ) -> None:
        self.cond = threading.Condition()
        self.steps: deque[Processed] = deque(maxlen=keep)
        self.count = 0
        self.stopped, self._refused = stopped, refused

    @property
    def processed_count(self) -> int:
        with self.cond:
            return self.count

    @property
    def refused_total(self) -> int:
        with self.cond:
            return self._refused()

    def wait_refused(self, total: int, timeout: float = 10.0) -> bool:
        """Wait until ``total`` inbound lists have been refused since start."""
        with self.cond:
            return self.cond.wait_for(lambda: self._refused() >= total, timeout)

    def observed(self, event: Event | None, written: list[dict[str, Any]]) -> None:
        with self.cond:
            self.count += 1
            self.steps.append(Processed(self.count, event, tuple(written)))
            self.cond.notify_all()

    def wait_processed(
        self, pred: Callable[[Processed], bool], *, after: int, timeout: float = 10.0
    ) -> Processed | None:
        """The first step after ``after`` that satisfies ``pred``, waiting up to
        ``timeout`` (None when it runs out, or the daemon stopped)."""
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                for p in self.steps:
                    if p.n > after and pred(p):
                        return p
                left = end - time.monotonic()
                if left <= 0 or self.stopped.is_set():
                    return None
                self.cond.wait(left)

    def records_since(self, after: int) -> list[dict[str, Any]]:
        with self.cond:
            return [r for p in self.steps if p.n > after for r in p.records]

    def steps_since(self, after: int) -> list[Processed]:
        with self.cond:
            return [p for p in self.steps if p.n > after]

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()
