"""Rebuild the core's lasting state from journal records after a restart (R1, R2, R3).

The records are the truth: who is inside, who escorts which visitor, how many wrong PINs
each card has entered in a row and which cards are locked out, with how long is left. A
power cut must not forgive wrong PINs, and a SIGKILL must not forget who is inside.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from edged.protocol.records import SNAPSHOT, format_ts

if TYPE_CHECKING:
    from edged.core.state import CoreState, Now

NS = 1_000_000_000

# The record types whose replay rebuilds the state; the journal reads only these.
REPLAYED = (
    SNAPSHOT,
    "door.granted",
    "door.exit",
    "door.exit_request",
    "door.denied",
    "occupancy.reset",
    "occupancy.expired",
    "occupancy.confirmed_empty",
    "lockcheck.confirmed",
    "alarm.area_not_closed",
    "alarm.presence_after_closing",
    "alarm.cleared",
    "alarm.pin_lockout",
    "alarm.visitor_unescorted",
    "visitor.escort_changed",
)


def _ms(ts: str) -> int | None:
    from edged.protocol.records import parse_ts

    try:
        return parse_ts(ts)
    except ValueError:
        return None


def _local_day(ts: str, tz: dt.tzinfo) -> dt.date | None:
    from edged.protocol.records import parse_ts

    try:
        return dt.datetime.fromtimestamp(parse_ts(ts) / 1000, tz).date()
    except ValueError:
        return None


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
    if isinstance(rec.get("until"), str):  # from a snapshot: when it ends, on the wall
        if rec.get("until_synced") is True and now.synced:
            try:
                left_ms = parse_ts(rec["until"]) - now.wall_ms
            except ValueError:
                return now.mono + length
            return now.mono + min(length, max(0, left_ms) * 1_000_000)
        return now.mono + length
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


class _Replayed:
    """The lasting state, built record by record; exported whole into a snapshot."""

    def __init__(self) -> None:
        self.occ: dict[str, dict[str, str]] = {}
        # Counted inside, but an exit without a tap may have been theirs (core/occupancy).
        self.uncertain: dict[str, set[str]] = {}
        # Closing time (core/closing): when each area was last used and lock-checked (ts),
        # and its alarm not yet cleared (area -> day).
        self.used_ts: dict[str, str] = {}
        self.checked_ts: dict[str, str] = {}
        self.not_closed: dict[str, str] = {}
        # Motion after closing (core/motion): areas whose alarm stands.
        self.presence_alarm: set[str] = set()
        # When each person counted inside went in (their grant's ts), for max_stay_hours.
        self.since: dict[str, dict[str, str]] = {}
        self.escorts: dict[str, dict[str, str]] = {}
        self.unescorted: dict[str, set[str]] = {}
        self.failures: dict[str, int] = {}
        # The newest lock-out record per card: how long it lasts is worked out at start.
        self.lockouts: dict[str, dict[str, Any]] = {}

    def seed(self, snap: dict[str, Any]) -> None:
        """Start from a snapshot: the state of every record before its ``kept_from_seq``."""
        self.occ = {a: dict(p) for a, p in (snap.get("occupancy") or {}).items()}
        self.uncertain = {a: set(v) for a, v in (snap.get("uncertain") or {}).items()}
        self.not_closed = dict(snap.get("not_closed") or {})
        self.presence_alarm = set(snap.get("presence_alarm") or [])
        self.escorts = {a: dict(e) for a, e in (snap.get("escorts") or {}).items()}
        self.unescorted = {a: set(v) for a, v in (snap.get("unescorted") or {}).items()}
        self.failures = dict(snap.get("pin_failures") or {})
        # As lock-out records: lockout_until reads "until" back (see _until_of).
        self.lockouts = {r["card"]: dict(r) for r in snap.get("lockouts") or [] if "card" in r}

    def apply(self, r: dict[str, Any]) -> None:
        t, area, person, card = r.get("type"), r.get("area") or "", r.get("person"), r.get("card")
        occ, escorts, unescorted, failures = self.occ, self.escorts, self.unescorted, self.failures
        if t == SNAPSHOT:
            self.seed(r)
        elif t == "door.granted" and person:
            self.presence_alarm.discard(area)  # someone went in: it is cleared
            occ.setdefault(area, {})[person] = r.get("name", "")
            self.used_ts[area] = str(r.get("ts", ""))
            self.uncertain.get(area, set()).discard(person)
            self.since.setdefault(area, {})[person] = str(r.get("ts", ""))
            if r.get("escort"):
                escorts.setdefault(area, {})[person] = r["escort"]
            if isinstance(card, str):
                failures.pop(card, None)
        elif t in ("door.exit", "occupancy.expired") and person:
            self._out(area, person)
        elif t == "occupancy.confirmed_empty" or (
            t == "occupancy.reset" and r.get("by") == "schedule"
        ):
            # The daily reset counts out only who went in before it (a restart after it
            # must not count out who came in since).
            for p in r.get("removed") or []:
                self._out(area, p)
        elif t == "lockcheck.confirmed":
            self.checked_ts[area] = str(r.get("ts", ""))
            self.not_closed.pop(area, None)
        elif t == "alarm.area_not_closed" and isinstance(r.get("day"), str):
            self.not_closed[area] = r["day"]
        elif t == "alarm.cleared" and r.get("was") == "area_not_closed":
            self.not_closed.pop(area, None)
        elif t == "alarm.presence_after_closing":
            self.presence_alarm.add(area)
        elif t == "alarm.cleared" and r.get("was") == "presence_after_closing":
            self.presence_alarm.discard(area)
        elif t == "door.exit_request":
            may = [p for p in r.get("may_have_left") or [] if p in occ.get(area, {})]
            if may:
                self.uncertain.setdefault(area, set()).update(may)
        elif t == "occupancy.reset":
            occ.setdefault(area, {}).clear()
            self.uncertain.pop(area, None)
            self.since.pop(area, None)
            escorts.pop(area, None)
            unescorted.pop(area, None)
        elif t == "door.denied" and r.get("reason") == "pin_wrong" and isinstance(card, str):
            attempt = r.get("attempt")
            failures[card] = attempt if type(attempt) is int else failures.get(card, 0) + 1
        elif t == "alarm.pin_lockout" and isinstance(card, str):
            failures.pop(card, None)
            self.lockouts[card] = r
        elif t == "alarm.visitor_unescorted":
            for v in r.get("visitors") or []:
                escorts.get(area, {}).pop(v, None)
                unescorted.setdefault(area, set()).add(v)
        elif t == "visitor.escort_changed":
            for v in r.get("visitors") or []:
                escorts.setdefault(area, {})[v] = r.get("to", "")

    def _out(self, area: str, person: Any) -> None:
        occ = self.occ.setdefault(area, {})
        occ.pop(person, None)
        self.since.get(area, {}).pop(person, None)
        self.uncertain.get(area, set()).discard(person)
        if not occ:
            self.uncertain.pop(area, None)
        self.escorts.get(area, {}).pop(person, None)
        self.unescorted.get(area, set()).discard(person)

    def export(self, now: Now, boot_id: str) -> dict[str, Any]:
        """The state as a snapshot record's fields (sorted, so equal states sign alike).
        A lock-out is kept as when it ends on the wall clock (a monotonic time of 12 digits
        could pass for an Individual Number, and means nothing after a reboot), marked
        unsynced when the clock could not be trusted: then it runs its full length again."""
        lockouts = []
        for card in sorted(self.lockouts):
            r = self.lockouts[card]
            until = lockout_until(r, now, boot_id)
            if until <= now.mono:
                continue  # over already
            lockouts.append(
                {
                    "card": card,
                    "minutes": r.get("minutes", 0),
                    "until": format_ts(now.wall_ms + (until - now.mono) // 1_000_000),
                    "until_synced": now.synced,
                }
            )
        return {
            "occupancy": {a: dict(sorted(p.items())) for a, p in sorted(self.occ.items()) if p},
            "uncertain": {a: sorted(v) for a, v in sorted(self.uncertain.items()) if v},
            "not_closed": dict(sorted(self.not_closed.items())),
            "escorts": {a: dict(sorted(e.items())) for a, e in sorted(self.escorts.items()) if e},
            "unescorted": {a: sorted(v) for a, v in sorted(self.unescorted.items()) if v},
            "pin_failures": dict(sorted(self.failures.items())),
            "lockouts": lockouts,
            **({"presence_alarm": sorted(self.presence_alarm)} if self.presence_alarm else {}),
        }


def snapshot_state(records: Iterable[dict[str, Any]], now: Now, boot_id: str) -> dict[str, Any]:
    """The lasting state of ``records`` (types in :data:`REPLAYED`, in seq order) as the
    fields of a ``journal.snapshot`` record: what start-up needs once they are pruned."""
    acc = _Replayed()
    for r in records:
        acc.apply(r)
    return acc.export(now, boot_id)


def replay(
    state: CoreState,
    records: Iterable[dict[str, Any]],
    now: Now,
    boot_id: str,
    areas: set[str],
    tz: dt.tzinfo = dt.UTC,
) -> None:
    """Apply ``records`` (types in :data:`REPLAYED`, in seq order; a pruned journal's
    covering snapshot first) to ``state``; ``tz``: the site's, for the days of closing."""
    acc = _Replayed()
    for r in records:
        acc.apply(r)
    closing = state.closing
    for area, ts in acc.used_ts.items():
        if (day := _local_day(ts, tz)) is not None:
            closing.used[area] = day
        if (ms := _ms(ts)) is not None:
            closing.last_in_ms[area] = ms
    for area, ts in acc.checked_ts.items():
        if (day := _local_day(ts, tz)) is not None:
            closing.checked[area] = day
    for area, day_s in acc.not_closed.items():
        try:
            closing.open_alarm[area] = closing.judged[area] = dt.date.fromisoformat(day_s)
        except ValueError:
            continue
    for area in areas:
        state.occupancy[area] = acc.occ.get(area, {})
        for person in state.occupancy[area]:
            # Known from its grant; from a snapshot (its grant pruned): counted from now.
            ms = _ms(acc.since.get(area, {}).get(person, ""))
            state.stays.entered(area, person, now.wall_ms if ms is None else ms)
    state.untapped.uncertain = {a: set(v) for a, v in acc.uncertain.items() if v}
    state.escorts.escorting = {a: e for a, e in acc.escorts.items() if e}
    state.escorts.unescorted = {a: v for a, v in acc.unescorted.items() if v}
    state.motion.alarmed = set(acc.presence_alarm) & areas
    state.lockout.failures = acc.failures
    locked = {c: lockout_until(r, now, boot_id) for c, r in acc.lockouts.items()}
    state.lockout.until = {c: until for c, until in locked.items() if until > now.mono}
