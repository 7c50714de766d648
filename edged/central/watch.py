"""The central side's own alarms, from what devices last said (R10, R13): a device
silent, a sync that stalls, a clock that stays unsynchronised, an access list published
and not applied. Raised when a condition starts and cleared when it ends, through
:meth:`edged.central.alarms.Alarms.condition`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edged.central.alarms import Alarms


@dataclass(frozen=True)
class Watch:
    """When the central side raises an alarm of its own (seconds): a device not heard
    for ``silent``; a backlog that has not gone down for ``stall``; a clock unsynchronised
    for ``clock``; an access list published ``acl`` ago and not applied. Checked every
    ``every`` seconds by one collector of a group."""

    silent: float = 180.0
    stall: float = 300.0
    clock: float = 900.0
    acl: float = 600.0  # a published access list not applied within this
    every: float = 5.0
    # Records are kept this many days centrally, then removed (0: for ever); checked
    # daily by the leading collector, with the month partitions prepared ahead.
    retention_days: float = 0.0


class DeviceWatch:
    """The conditions of every device of ``mine``'s sites, checked by :meth:`check`
    (under the collector's lock; the caller commits)."""

    def __init__(
        self, store: Any, alarms: Alarms, watch: Watch, mine: Callable[[str], bool]
    ) -> None:
        self.store, self.alarms, self.watch, self._mine = store, alarms, watch, mine
        # Since when a device's backlog has not gone down, and since when its clock is
        # unsynchronised (kept by the collector that leads the checks).
        self._stalled: dict[tuple[str, str], tuple[int, float]] = {}
        self._unsynced: dict[tuple[str, str], float] = {}

    def check(self, now_ms: int, now: float) -> None:
        """``now_ms``: wall-clock milliseconds (what devices' reports are stamped with);
        ``now``: monotonic seconds (how long a condition has lasted)."""
        for st in self.store.reports.statuses():
            if self._mine(st["site"]):
                self._device(st, now_ms, now)
        for a in self.store.reports.acl_states():
            if self._mine(a["site"]):
                self._acl(a, now_ms)

    def _device(self, st: dict[str, Any], now_ms: int, now: float) -> None:
        w, dev = self.watch, (st["site"], st["device"])
        quiet = (now_ms - st["heard_ms"]) / 1000
        silent = quiet > w.silent
        self.alarms.condition(dev, "device_silent", silent, f"no heartbeat for {quiet:.0f} s")
        acked, backlog = st["acked_seq"] or 0, st["backlog"] or 0
        seen = self._stalled.get(dev)
        if backlog <= 0 or seen is None or acked > seen[0]:
            seen = self._stalled[dev] = (acked, now)
        self.alarms.condition(
            dev,
            "sync_stalled",
            backlog > 0 and now - seen[1] >= w.stall and not silent,
            f"{backlog} records waiting, none receipted for {now - seen[1]:.0f} s"
            f" (receipted up to seq {acked})",
        )
        if st["clock_synced"] == 0:
            since = self._unsynced.setdefault(dev, now)
        else:
            self._unsynced.pop(dev, None)
            since = now
        self.alarms.condition(
            dev,
            "clock_unsynced",
            now - since >= w.clock,
            f"the device's clock has not been synchronised for {now - since:.0f} s",
        )

    def _acl(self, a: dict[str, Any], now_ms: int) -> None:
        want, have = a["published_version"], a["applied_version"]
        age = (now_ms - (a["published_ms"] or now_ms)) / 1000
        late = want is not None and (have is None or have < want) and age > self.watch.acl
        self.alarms.condition(
            (a["site"], a["device"]),
            "acl_not_applied",
            late,
            f"access list version {want} published {age:.0f} s ago; the device"
            f" has applied {have if have is not None else 'none'}",
        )
