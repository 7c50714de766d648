"""What is true now, folded from stored records as they are stored: who is inside each
area, and the last state of each door and cabinet. The console's overview reads these
small tables instead of replaying years of records on every page (R1, R6).

The central copy holds every record, so the fold never needs a device's
``journal.snapshot`` (a snapshot stands for records *before* its ``kept_from_seq``, which
the central copy has anyway; applied where it lies in the chain it would forget entries
recorded between that seq and the snapshot's own)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

# The record types the fold reads; the rest pass by without being parsed.
INSIDE_TYPES = frozenset({"door.granted", "door.exit", "occupancy.expired", "occupancy.reset"})
POINT_TYPES = {
    "door.opened": ("door", "door", "open"),
    "door.closed": ("door", "door", "closed"),
    "cabinet.unlocked": ("cabinet", "cabinet", "open"),
    "cabinet.locked": ("cabinet", "cabinet", "locked"),
}
FOLDED = INSIDE_TYPES | set(POINT_TYPES)


def _text(v: Any) -> str:
    return v if isinstance(v, str) else ""


@dataclass
class Changes:
    """The net effect of a run of records, so a batch costs three statements, not one
    per record: areas emptied first, then people gone, then people in and points set."""

    resets: set[tuple[str, str, str]] = field(default_factory=set)
    # (site, device, area, person) -> (name, since) when inside, None when gone.
    people: dict[tuple[str, str, str, str], tuple[str, str] | None] = field(default_factory=dict)
    # (site, device, kind, name) -> (state, area, ts)
    points: dict[tuple[str, str, str, str], tuple[str, str, str]] = field(default_factory=dict)

    def add(self, site: str, device: str, rtype: str | None, ts: str | None, body: str) -> None:
        """One stored record, in seq order per device."""
        if rtype not in FOLDED:
            return
        try:
            r = json.loads(body)
        except ValueError:
            return
        if not isinstance(r, dict):
            return
        area = _text(r.get("area"))
        person = r.get("person")
        if rtype in POINT_TYPES:
            kind, field_, state = POINT_TYPES[rtype]
            name = r.get(field_)
            if isinstance(name, str) and name:
                self.points[(site, device, kind, name)] = (state, area, str(ts or ""))
        elif rtype == "occupancy.reset":
            self.resets.add((site, device, area))
            for k in [k for k in self.people if k[:3] == (site, device, area)]:
                del self.people[k]
        elif isinstance(person, str) and person:
            key = (site, device, area, person)
            if rtype == "door.granted":
                self.people[key] = (_text(r.get("name")), str(ts or ""))
            else:
                self.people[key] = None

    def statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """(SQL, rows) to run in order; SQL in the store's ``?`` style."""
        gone = [k for k, v in self.people.items() if v is None]
        came = [(*k, *v) for k, v in self.people.items() if v is not None]
        out: list[tuple[str, list[tuple[Any, ...]]]] = [
            (
                "DELETE FROM present_people WHERE site=? AND device=? AND area=?",
                sorted(self.resets),
            ),
            (
                "DELETE FROM present_people WHERE site=? AND device=? AND area=? AND person=?",
                gone,
            ),
            (
                "INSERT INTO present_people VALUES (?,?,?,?,?,?) ON CONFLICT"
                " (site, device, area, person) DO UPDATE SET name=excluded.name,"
                " since_ts=excluded.since_ts",
                came,
            ),
            (
                "INSERT INTO present_points VALUES (?,?,?,?,?,?,?) ON CONFLICT"
                " (site, device, kind, name) DO UPDATE SET state=excluded.state,"
                " area=excluded.area, ts=excluded.ts",
                [(*k, *v) for k, v in self.points.items()],
            ),
        ]
        return [(sql, rows) for sql, rows in out if rows]
