"""Who is counted inside (R1, R2): leaving the count, the escort bookkeeping a leaver
causes, an administrator emptying an area, and stays too long to be true. Functions over
the state that :mod:`edged.core.leaving` and :mod:`edged.core.lockcheck` share, so that
the count, since when, and the area's doubt always change together.
"""

from __future__ import annotations

import datetime as dt

from edged.core.actions import Action, Record
from edged.core.context import Context, whole
from edged.core.policy import Person
from edged.core.state import CoreState, Now, outputs
from edged.protocol.records import format_ts


def count_out(s: CoreState, area: str, person: str) -> str | None:
    """``person`` is no longer counted inside ``area``: the count, since when, and the
    area's doubt (gone with its last person) together. Their name, if counted."""
    inside = s.occupancy.get(area, {})
    name = inside.pop(person, None)
    s.stays.left(area, person)
    s.untapped.identified(area, person)
    if not inside:
        s.untapped.forget(area)
    return name


def escort_left(ctx: Context, s: CoreState, area: str, p: Person, door: str) -> list[Action]:
    """Escort bookkeeping when ``p`` has left ``area`` (R2): a handover to another escort
    inside is recorded; with none, ``alarm.visitor_unescorted``."""

    def can_escort(pid: str) -> bool:
        q = ctx.person(pid)
        return q is not None and q.escort

    h = s.escorts.left(area, p.id, can_escort, s.occupancy.get(area, {}))
    if h is None:
        return []
    if h.to is not None:
        f = {"area": area, "door": door, "from": p.id, "to": h.to, "visitors": h.visitors}
        return [Record("visitor.escort_changed", f)]
    f = {"area": area, "door": door, "escort": p.id, "name": p.name, "visitors": h.visitors}
    return [Record("alarm.visitor_unescorted", f), *outputs(s)]


def reset(s: CoreState, area: str, by: Person) -> list[Action]:
    """An administrator's choice at the keypad: nobody is counted inside ``area`` now."""
    removed = sorted(s.occupancy.get(area, {}))
    s.occupancy[area] = {}
    s.escorts.forget(area)
    s.untapped.forget(area)
    s.stays.forget(area)
    f = {"area": area, "by": by.id, "by_name": by.name, "removed": removed}
    return [Record("occupancy.reset", f)]


def scheduled_resets(
    s: CoreState, reset_at: dict[str, dt.time], local: dt.datetime
) -> list[Action]:
    """Each area's daily reset time (R1, R2: the count may not stay wrong for days):
    whoever went in before today's reset moment is counted out, in one signed record.
    Who went in after it stays counted, so a restart later in the day changes nothing."""
    out: list[Action] = []
    for due in s.closing.resets(local, reset_at):
        at = reset_at[due.area]
        moment = int(dt.datetime.combine(due.day, at, tzinfo=local.tzinfo).timestamp() * 1000)
        since = s.stays.since.get(due.area, {})
        removed = sorted(p for p in s.occupancy.get(due.area, {}) if since.get(p, 0) < moment)
        for pid in removed:
            count_out(s, due.area, pid)
            s.escorts.forget(due.area, pid)
        if removed:
            f = {"area": due.area, "by": "schedule", "at": at.strftime("%H:%M"),
                 "removed": removed}  # fmt: skip
            out.append(Record("occupancy.reset", f))
    return out


def motion_seen(ctx: Context, s: CoreState, area: str, motion: bool, now: Now) -> list[Action]:
    """An area's presence sensor changed (:mod:`edged.core.motion`): motion in an area
    counted empty after its closing time is ``alarm.presence_after_closing``, once, until
    someone goes in."""
    started = s.motion.seen(area, motion, now.mono)
    if not started or s.occupancy.get(area) or area not in s.closing.shut:
        return []
    if area in s.motion.alarmed:
        return []
    s.motion.alarmed.add(area)
    f = {"area": area, "door": ctx.first_door(area)}
    return [Record("alarm.presence_after_closing", f), *outputs(s)]


def after_step(ctx: Context, s: CoreState, actions: list[Action], now: Now) -> list[Action]:
    """What a step's own records mean for the presence sensors: an exit starts the wait
    for stillness; a grant ends a standing presence alarm (someone came to see)."""
    out: list[Action] = []
    for a in actions:
        if not isinstance(a, Record) or a.type not in ("door.exit", "door.exit_request",
                                                       "door.granted"):  # fmt: skip
            continue
        area = a.fields.get("area", "")
        if a.type != "door.granted":
            s.motion.exited(area, now.mono)
        elif area in s.motion.alarmed:
            s.motion.alarmed.discard(area)
            out += [Record("alarm.cleared", {"area": area, "was": "presence_after_closing"}),
                    *outputs(s)]  # fmt: skip
    return out


def confirmed_empty(ctx: Context, s: CoreState, now: Now) -> list[Action]:
    """No motion for the area's presence_empty_minutes after an exit: nobody is there,
    whoever the count still names (left behind someone else, or by the button)."""
    out: list[Action] = []
    for area in s.motion.due(now.mono):
        removed = sorted(s.occupancy.get(area, {}))
        if not removed:
            continue
        for pid in removed:
            count_out(s, area, pid)
            s.escorts.forget(area, pid)
        minutes = whole(ctx.cfg.areas[area].presence_empty_minutes)
        f = {"area": area, "removed": removed, "minutes": minutes}
        out.append(Record("occupancy.confirmed_empty", f))
    return out


def overstays(s: CoreState, max_stay: dict[str, float], now: Now) -> list[Action]:
    """Nobody stays counted inside for days (areas' max_stay_hours; a synchronised
    clock): whoever left uncounted is let in again, and the record says so."""
    if not max_stay or not now.synced:
        return []
    out: list[Action] = []
    for area, pid, since in s.stays.overstayed(now.wall_ms, max_stay):
        name = count_out(s, area, pid)
        if name is None:
            continue  # not counted any more
        s.escorts.forget(area, pid)
        out.append(Record("occupancy.expired", {
            "area": area, "person": pid, "name": name, "since": format_ts(since),
            "hours": whole(max_stay[area]),
        }))  # fmt: skip
    return out
