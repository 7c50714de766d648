"""Cabinets and their custodians (R7, R17): reed switches, cabinet readers, electric
locks, and cabinets left open too long. A sub-machine of the core: it writes the
cabinets' part of the state (locked, released, open since), reads who is inside, and
returns actions; the core adds the lights and tells the lock check a cabinet was locked.
"""

from __future__ import annotations

from typing import Any

from edged.core.access import card_gate
from edged.core.actions import Action, Record, SetCabinetLock
from edged.core.context import Context, whole
from edged.core.events import CabinetChanged, CardPresented
from edged.core.state import NS, CoreState, Now


class Cabinets:
    def __init__(self, ctx: Context, state: CoreState) -> None:
        self.ctx, self.s = ctx, state

    def _custodian(self, pid: str, cabinet: str) -> bool:
        p = self.ctx.person(pid)
        return p is not None and cabinet in p.cabinets

    def seed(self, locked: dict[str, bool], now: Now) -> list[Action]:
        """The reed switches as read at start: an open one is recorded, as a cabinet
        found open (not as one opened now: nobody is asked who opened it)."""
        out: list[Action] = []
        for name, is_locked in locked.items():
            self.s.cabinets[name] = is_locked
            if not is_locked:
                out += self.changed(CabinetChanged(cabinet=name, locked=False), now)
        return out

    def changed(self, ev: CabinetChanged, now: Now) -> list[Action]:
        """A reed switch changed. Every opening records who was inside (R17); a guarded
        cabinet opened with none of its custodians inside, or an electric lock opened
        without a release, is ``alarm.cabinet_unauthorised``."""
        s = self.s
        was_locked = s.cabinets.get(ev.cabinet, True)
        s.cabinets[ev.cabinet] = ev.locked
        c = self.ctx.cfg.cabinets.get(ev.cabinet)
        area = c.area if c else None
        fields: dict[str, Any] = {"cabinet": ev.cabinet, "area": area}
        inside = sorted(s.occupancy.get(area, {})) if area is not None else []
        opened = not ev.locked and was_locked
        if opened:
            fields["inside"] = inside
            doubt = sorted(s.untapped.uncertain.get(area or "", set()) & set(inside))
            if doubt:
                # Counted inside, but an exit by the button may have been theirs: the
                # record says so (an alarm here would ring whenever a colleague had left
                # by the button; the closing check is where an empty room is judged).
                fields["uncertain"] = doubt
        out: list[Action] = [Record("cabinet.locked" if ev.locked else "cabinet.unlocked", fields)]
        if not ev.locked:
            s.open_cabinets.opened(ev.cabinet, now.mono)
        elif s.open_cabinets.locked(ev.cabinet):
            out.append(Record("alarm.cleared", {"cabinet": ev.cabinet, "area": area,
                                                "was": "cabinet_open_too_long"}))  # fmt: skip
        if area is None or ev.locked:
            return out
        if not inside:
            out.append(Record("alarm.cabinet_unattended", {"cabinet": ev.cabinet, "area": area}))
        elif opened and c is not None and c.guarded:
            why = None
            if c.lock_pin is not None and ev.cabinet not in s.cabinet_release:
                why = "not_released"  # the electric lock was forced or bypassed
            elif not [pid for pid in inside if self._custodian(pid, ev.cabinet)]:
                why = "no_custodian_inside"
            if why is not None:
                f = {"cabinet": ev.cabinet, "area": area, "why": why, "inside": inside}
                out.append(Record("alarm.cabinet_unauthorised", f))
        return out

    def card(self, cabinet: str, ev: CardPresented, now: Now) -> list[Action]:
        """A card at a cabinet's own reader: only a custodian who is inside the area
        releases its electric lock (R17), with a card of a kind the area accepts."""
        c, card = self.ctx.cfg.cabinets[cabinet], ev.card
        f: dict[str, Any] = {"cabinet": cabinet, "area": c.area, "card": card}
        p, reason = card_gate(self.ctx, self.s.lockout, c.area, ev, now)
        if p is not None:
            f.update(person=p.id, name=p.name)
        if reason is None and p is not None:
            if cabinet not in p.cabinets:
                reason = "not_custodian"
            elif p.id not in self.s.occupancy.get(c.area, {}):
                reason = "not_inside"  # tailgated in, or the card of someone outside
        if reason is not None:
            return [Record("cabinet.denied", {**f, "reason": reason})]
        self.s.cabinet_release[cabinet] = now.mono + int(c.unlock_seconds * NS)
        inside = sorted(self.s.occupancy.get(c.area, {}))
        return [Record("cabinet.granted", {**f, "inside": inside}), SetCabinetLock(cabinet, True)]

    def relock(self, now: Now) -> list[Action]:
        """Electric locks whose release ran out close again."""
        out: list[Action] = []
        for cab, until in list(self.s.cabinet_release.items()):
            if now.mono >= until:
                del self.s.cabinet_release[cab]
                out.append(SetCabinetLock(cab, False, needs_record=False))
        return out

    def overdue(self, now: Now) -> tuple[list[Action], bool]:
        """Cabinets open past their max_open_minutes: a reminder at the area's door, then
        the alarm (:mod:`edged.core.open_cabinets`). Also whether an alarm was raised."""
        out: list[Action] = []
        alarmed = False
        for o in self.s.open_cabinets.tick(now.mono):
            area = self.ctx.cfg.cabinets[o.cabinet].area
            inside = sorted(self.s.occupancy.get(area, {}))
            f = {"cabinet": o.cabinet, "area": area, "door": self.ctx.first_door(area),
                 "minutes": whole(o.minutes), "inside": inside}  # fmt: skip
            out.append(Record("alarm.cabinet_open_too_long" if o.alarm else
                              "cabinet.open_reminder", f))  # fmt: skip
            alarmed = alarmed or o.alarm
        return out, alarmed

    def deadlines(self) -> list[int]:
        return [*self.s.cabinet_release.values(), *self.s.open_cabinets.deadlines()]
