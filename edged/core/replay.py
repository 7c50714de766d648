"""Rebuild the core's lasting state from journal records after a restart (R1, R2, R3).

The records are the truth: who is inside, who escorts which visitor, how many wrong PINs
each card has entered in a row and which cards are locked out, with how long is left. A
power cut must not forgive wrong PINs, and a SIGKILL must not forget who is inside.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edged.core.machine import CoreState, Now

NS = 1_000_000_000

# The record types whose replay rebuilds the state; the journal reads only these.
REPLAYED = (
    "door.granted",
    "door.exit",
    "door.denied",
    "occupancy.reset",
    "alarm.pin_lockout",
    "alarm.visitor_unescorted",
    "visitor.escort_changed",
)


def mono_of(rec: dict[str, Any]) -> int | None:
    """The record's monotonic time in ns (``mono_us`` now; ``mono_ns`` in older records)."""
    us = rec.get("mono_us")
    if type(us) is int:
        return us * 1000
    ns = rec.get("mono_ns")
    return ns if type(ns) is int else None


def lockout_until(rec: dict[str, Any], now: Now, boot_id: str) -> int:
    """When a recorded lock-out ends, on this boot's monotonic clock.

    Same boot: exactly, from the record's monotonic time. Another boot (a power cut):
    from the wall clock if both the record and now are synchronised; otherwise the time
    that passed is unknown, so the lock-out runs its full length again (fail secure).
    """
    from edged.protocol.records import parse_ts

    length = int(float(rec.get("minutes", 0)) * 60 * NS)
    mono = mono_of(rec)
    if rec.get("boot_id") == boot_id and mono is not None:
        return mono + length
    if rec.get("clock_synced") is True and now.synced:
        try:
            elapsed_ms = now.wall_ms - parse_ts(str(rec.get("ts")))
        except ValueError:
            return now.mono + length
        if elapsed_ms >= 0:
            return now.mono + max(0, length - elapsed_ms * 1_000_000)
    return now.mono + length


def replay(
    state: CoreState, records: Iterable[dict[str, Any]], now: Now, boot_id: str, areas: set[str]
) -> None:
    """Apply ``records`` (types in :data:`REPLAYED`, in seq order) to ``state``."""
    occ: dict[str, dict[str, str]] = {a: {} for a in areas}
    escorts: dict[str, dict[str, str]] = {}
    unescorted: dict[str, set[str]] = {}
    failures: dict[str, int] = {}
    locked: dict[str, int] = {}
    for r in records:
        t, area, person, card = r.get("type"), r.get("area") or "", r.get("person"), r.get("card")
        if t == "door.granted" and person:
            occ.setdefault(area, {})[person] = r.get("name", "")
            if r.get("escort"):
                escorts.setdefault(area, {})[person] = r["escort"]
            if isinstance(card, str):
                failures.pop(card, None)
        elif t == "door.exit" and person:
            occ.setdefault(area, {}).pop(person, None)
            escorts.get(area, {}).pop(person, None)
            unescorted.get(area, set()).discard(person)
        elif t == "occupancy.reset":
            occ.setdefault(area, {}).clear()
            escorts.pop(area, None)
            unescorted.pop(area, None)
        elif t == "door.denied" and r.get("reason") == "pin_wrong" and isinstance(card, str):
            attempt = r.get("attempt")
            failures[card] = attempt if type(attempt) is int else failures.get(card, 0) + 1
        elif t == "alarm.pin_lockout" and isinstance(card, str):
            failures.pop(card, None)
            locked[card] = lockout_until(r, now, boot_id)
        elif t == "alarm.visitor_unescorted":
            for v in r.get("visitors") or []:
                escorts.get(area, {}).pop(v, None)
                unescorted.setdefault(area, set()).add(v)
        elif t == "visitor.escort_changed":
            for v in r.get("visitors") or []:
                escorts.setdefault(area, {})[v] = r.get("to", "")
    for area in areas:
        state.occupancy[area] = occ.get(area, {})
    state.escorts.escorting = {a: e for a, e in escorts.items() if e}
    state.escorts.unescorted = {a: v for a, v in unescorted.items() if v}
    state.lockout.failures = failures
    state.lockout.until = {c: until for c, until in locked.items() if until > now.mono}
