"""Reconnect delays for every MQTT client: capped, exponential, with jitter.

A thousand doors that lose the broker at the same moment must not all knock at the same
moment when it comes back. When a connection that had proven stable drops (all of them
at once, when the broker restarts), the first delay is drawn from a window of ``first``
seconds; after that, "decorrelated jitter": each delay is drawn between the base and
three times the previous one, capped. Simulated for a broker back after 2 s, this puts
at most about a third of the clients into any one second (fixed steps: all of them),
and all are back within about 8 s.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


class Backoff:
    """Delays between connection attempts: ``next()`` after an attempt failed,
    ``ended(lasted)`` when a connection went down (one that had been stable starts
    afresh, with the first window)."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        *,
        stable: float = 30.0,
        first: float = 5.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base, self.cap, self.stable, self.first = base, cap, stable, first
        self._uniform = uniform
        self._last = base

    def next(self) -> float:
        self._last = min(self.cap, self._uniform(self.base, self._last * 3))
        return self._last

    def ended(self, lasted: float) -> float:
        """The delay after a connection that lasted ``lasted`` seconds went down."""
        if lasted >= self.stable:
            d = min(self.cap, self._uniform(0.0, self.first))
            self._last = max(self.base, d)
            return d
        return self.next()


def jitter_paho(client: Any, base: float = 1.0, cap: float = 60.0) -> None:
    """paho's own reconnect doubles a fixed first delay: give that first delay jitter,
    drawn afresh before each reconnect (call from on_disconnect too)."""
    # Jitter spreads reconnects; it is no secret (S311 is about cryptographic use).
    first = random.uniform(base, 3 * base)  # noqa: S311
    client.reconnect_delay_set(min_delay=first, max_delay=cap)
