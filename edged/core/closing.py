"""Closing time per area (R6, R7, R17): at an area's closing time on a day the calendar
keeps open, the area must be empty and its cabinets checked by a last leaver that day;
otherwise ``alarm.area_not_closed``, until a confirmed lock check clears it. A sub-machine
of the core: its own state, local dates and times handed in, outcomes returned (the core
writes the records; this never calls back into it).

Before, nothing happened at the end of the day: an area still "occupied" at night, or a
day without any ``lockcheck.confirmed``, raised nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field


def parse_closing(text: str) -> dt.time:
    """``HH:MM`` (24-hour) as a time; ValueError otherwise."""
    hh, sep, mm = text.partition(":")
    if not (sep and len(hh) == 2 and len(mm) == 2 and hh.isdigit() and mm.isdigit()):
        raise ValueError(f"expected HH:MM, got {text!r}")
    return dt.time(int(hh), int(mm))


@dataclass(frozen=True)
class Due:
    """Closing time came for ``area`` on ``day``: the core judges it with what it knows."""

    area: str
    day: dt.date


@dataclass
class Closing:
    """``checked``: area -> the last local day a lock check was confirmed there;
    ``judged``: area -> the last day its closing was judged; ``open_alarm``: area -> the
    day of its alarm not yet cleared. Rebuilt from the journal at start (core.replay)."""

    checked: dict[str, dt.date] = field(default_factory=dict)
    judged: dict[str, dt.date] = field(default_factory=dict)
    open_alarm: dict[str, dt.date] = field(default_factory=dict)
    used: dict[str, dt.date] = field(default_factory=dict)  # the last day someone went in
    reset_on: dict[str, dt.date] = field(default_factory=dict)  # the last scheduled reset
    shut: set[str] = field(default_factory=set)  # past closing time, nobody in since
    last_in_ms: dict[str, int] = field(default_factory=dict)  # the last grant (replayed)

    def shut_since_restart(
        self, local: dt.datetime, closing: dict[str, dt.time], occupied: set[str]
    ) -> None:
        """After a restart: an area nobody went into since its last closing time, and
        nobody is counted in, is shut (motion there is an alarm, as before the restart)."""
        for area, at in closing.items():
            day = local.date() if local.time() >= at else local.date() - dt.timedelta(days=1)
            moment = dt.datetime.combine(day, at, tzinfo=local.tzinfo).timestamp() * 1000
            if area not in occupied and self.last_in_ms.get(area, 0) < moment:
                self.shut.add(area)

    def entered(self, area: str, day: dt.date) -> None:
        self.used[area] = day
        self.shut.discard(area)

    def needs_check(self, area: str, day: dt.date) -> bool:
        """Used today and no lock check confirmed since (an area nobody entered needs none)."""
        return self.used.get(area) == day and self.checked.get(area) != day

    def due(
        self, local: dt.datetime, closing: dict[str, dt.time], open_day: bool
    ) -> list[Due]:
        """The areas whose closing time has come today and was not yet judged today (on a
        day the calendar closes, none is judged, but each area is shut all the same)."""
        today, out = local.date(), []
        for area, at in sorted(closing.items()):
            if local.time() >= at and self.judged.get(area) != today:
                self.judged[area] = today
                self.shut.add(area)
                if open_day:
                    out.append(Due(area, today))
        return out

    def resets(self, local: dt.datetime, reset: dict[str, dt.time]) -> list[Due]:
        """The areas whose daily reset time has come and was not yet done today (every
        day: a reset is about counting, not about working days)."""
        today, out = local.date(), []
        for area, at in sorted(reset.items()):
            if local.time() >= at and self.reset_on.get(area) != today:
                self.reset_on[area] = today
                out.append(Due(area, today))
        return out

    def lock_checked(self, area: str, day: dt.date) -> bool:
        """A last leaver confirmed the cabinets of ``area``: whether that clears an alarm."""
        self.checked[area] = day
        return self.open_alarm.pop(area, None) is not None

    def alarmed(self, area: str, day: dt.date) -> None:
        self.open_alarm[area] = day

    def alarm(self) -> bool:
        return bool(self.open_alarm)
