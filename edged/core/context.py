"""What every sub-machine of the core reads and no sub-machine writes: the site's
configuration, the access list in force, the local clock and calendar, which reader is
where; and the record fields they all share."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from edged.core.actions import Action, Denial, Indicate, Record, SetLock, Step
from edged.core.calendar import Calendar
from edged.core.policy import AccessList, Person, SitePolicy
from edged.core.state import NS, CoreState, Now


class Context:
    """The site as the core sees it. ``acl`` is replaced when a new list is adopted."""

    def __init__(self, cfg: SitePolicy, acl: AccessList | None) -> None:
        self.cfg = cfg
        self.acl = acl
        self.tz = zoneinfo.ZoneInfo(cfg.clock.timezone)
        self.calendar = Calendar(cfg.calendar)
        self.door_of_reader: dict[str, tuple[str, str]] = {}
        for d in cfg.doors.values():
            self.door_of_reader[d.entry_reader] = (d.name, "entry")
            if d.exit_reader:
                self.door_of_reader[d.exit_reader] = (d.name, "exit")
        self.cabinet_of_reader = {c.reader: c.name for c in cfg.cabinets.values() if c.reader}

    def person(self, pid: str) -> Person | None:
        return self.acl.people.get(pid) if self.acl is not None else None

    def by_card(self, card: str) -> Person | None:
        return self.acl.by_card(card) if self.acl is not None and card else None

    def local(self, now: Now) -> dt.datetime:
        return dt.datetime.fromtimestamp(now.wall_ms / 1000, tz=self.tz)

    def base(
        self, door: str, direction: str, card: str, person: Person | None = None
    ) -> dict[str, Any]:
        f: dict[str, Any] = {
            "door": door,
            "area": self.cfg.doors[door].area,
            "direction": direction,
            "card": card,
        }
        if person is not None:
            f.update(person=person.id, name=person.name, role=person.role)
        return f

    def deny(
        self, door: str, card: str, reason: Denial, person: Person | None = None, **extra: Any
    ) -> list[Action]:
        f = {**self.base(door, "entry", card, person), "reason": reason, **extra}
        return [Record("door.denied", f)]

    def area_cabinets(self, area: str) -> list[str]:
        return sorted(n for n, c in self.cfg.cabinets.items() if c.area == area)

    def cabinet_states(self, state: CoreState, area: str) -> dict[str, str]:
        return {
            n: "locked" if state.cabinets.get(n, False) else "open"
            for n in self.area_cabinets(area)
        }

    def prompt_deadline(self, now: Now, door: str, steps: list[Step]) -> int:
        secs = (
            self.cfg.policy.lockcheck_seconds
            if steps[0] == "lockcheck"
            else self.cfg.keypads[door].timeout_seconds
        )
        return now.mono + int(secs * NS)

    def first_door(self, area: str) -> str | None:
        return next((d.name for d in self.cfg.doors.values() if d.area == area), None)


def whole(x: float) -> int | str:
    """A configured number as a record holds it: records take no floats (one canonical
    JSON form), and the configuration reads 30 as 30.0; 1.5 stays "1.5"."""
    return int(x) if float(x).is_integer() else str(x)


def unlock(state: CoreState, door: str, now: Now, *, needs_record: bool) -> list[Action]:
    """Open ``door`` for its unlock time; a grant's unlock waits for its record."""
    state.doors[door].unlock(now.mono)
    return [SetLock(door, True, needs_record=needs_record), Indicate("green", True)]
