"""Reconnect delays for every MQTT client: capped, exponential, with jitter.

A thousand doors that lose the broker at the same moment must not all knock at the same
moment when it comes back. "Decorrelated jitter": each delay is drawn between the base
and three times the previous one, capped, so the clients spread out after a few rounds
whatever their start. A connection that lasted ``stable`` seconds starts afresh.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any


class Backoff:
    """Delays between connection attempts. ``next()`` after a failure; ``connected()``
    when a connection came up; ``reset()`` once it has proven stable."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        *,
        stable: float = 30.0,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        if not 0 < base <= cap:
            raise ValueError("backoff needs 0 < base <= cap")
        self.base, self.cap, self.stable = base, cap, stable
        self._uniform = uniform
        self._last = base

    def next(self) -> float:
        self._last = min(self.cap, self._uniform(self.base, self._last * 3))
        return self._last

    def reset(self) -> None:
        self._last = self.base

    def ended(self, lasted: float) -> float:
        """The delay after a connection that lasted ``lasted`` seconds went down."""
        if lasted >= self.stable:
            self.reset()
        return self.next()


def jitter_paho(client: Any, base: float = 1.0, cap: float = 60.0) -> None:
    """paho's own reconnect doubles a fixed first delay: give that first delay jitter,
    drawn afresh before each reconnect (call from on_disconnect too)."""
    # Jitter spreads reconnects; it is no secret (S311 is about cryptographic use).
    first = random.uniform(base, 3 * base)  # noqa: S311
    client.reconnect_delay_set(min_delay=first, max_delay=cap)
