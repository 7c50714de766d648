"""The daemon's view of time: the moment for decisions, and a record whenever the wall
clock steps or its synchronisation comes or goes (a Pi has no RTC)."""

from __future__ import annotations

from edged.clock import Clock
from edged.core.actions import Record
from edged.core.state import Now

Reading = tuple[int, int, bool]  # (mono ns, wall ms, synchronised)


class ClockWatch:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.floor = 0  # ms: the newest time a synchronised clock showed
        self._seen: tuple[int, bool] | None = None  # (wall - mono offset, synced)

    def read(self) -> Reading:
        return self.clock.mono_ns(), self.clock.wall_ms(), self.clock.synced()

    def now(self, reading: Reading | None = None) -> Now:
        """The moment for decisions. While the clock is not synchronised it may be far
        behind (a Pi without RTC starts in 1970, or at fake-hwclock's last save), so it
        is never taken as earlier than the newest time a synchronised clock showed:
        valid_from dates then still hold, and records keep the raw clock with
        clock_synced = false. ``reading``: one taken already this step."""
        mono, wall, synced = reading or self.read()
        if synced:
            self.floor = max(self.floor, wall)
        elif wall < self.floor:
            wall = self.floor
        return Now(mono, wall, synced)

    def changes(self, reading: Reading) -> list[Record]:
        """A record when the wall clock steps (NTP, an administrator, a battery) or its
        synchronisation comes or goes: the ts of the records around it read with it."""
        mono, wall, synced = reading
        offset = wall - mono // 1_000_000
        last, self._seen = self._seen, (offset, synced)
        if last is None:
            return []
        stepped = offset - last[0]
        if abs(stepped) < 2000 and synced == last[1]:
            return []  # drift and slewing stay below this
        return [Record("clock.changed", {"stepped_ms": stepped, "synced": synced})]
