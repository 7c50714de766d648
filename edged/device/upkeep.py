"""What the daemon's loop looks after between events: how long it may wait, the systemd
watchdog (pinged from the loop itself: if the core hangs, the pings stop), records a
failing journal refused and may take now, the journal's checkpoint period, and when to
look at pruning."""

from __future__ import annotations

import time
from collections.abc import Callable

from edged.device.config import Config
from edged.device.journal import Journal
from edged.device.journal.guard import GuardedJournal
from edged.device.notify import sd_notify, watchdog_interval
from edged.errors import EdgedError
from edged.log import get_logger

log = get_logger("daemon")


class Upkeep:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.watchdog = watchdog_interval()
        self._next_ping = 0.0
        self._next_prune = 0.0  # first look right after start, then every prune_check_seconds

    def wait_cap(self, refusals_until: float | None) -> float:
        """At least every 5 s (the checkpoint period), in time for the watchdog and for
        the refusal count that is due."""
        cap = min(5.0, self.watchdog or 5.0)
        if refusals_until is not None:
            cap = max(0.0, min(cap, refusals_until - time.monotonic()))
        return cap

    def ping(self, status: Callable[[], str]) -> None:
        if self.watchdog is not None and time.monotonic() >= self._next_ping:
            sd_notify("WATCHDOG=1\nSTATUS=" + status())
            self._next_ping = time.monotonic() + self.watchdog

    def journal(self, journal: Journal, guard: GuardedJournal | None) -> None:
        if guard is not None and (done := guard.retry()) is not None:
            log.warning("record", seq=done.seq, type=done.type, **done.fields)
        try:
            journal.maybe_checkpoint()
        except EdgedError as e:
            log.error("checkpoint_failed", error=str(e))

    def prune_due(self) -> bool:
        if time.monotonic() < self._next_prune:
            return False
        self._next_prune = time.monotonic() + self.cfg.journal.prune_check_seconds
        return True
