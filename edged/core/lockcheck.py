"""The last leaver's lock check, and the closing time that judges the day (R6, R7).

The last one out is shown the area's cabinets: an open one is named and must be locked
first; all locked, they confirm on the keypad ("#", or their PIN where the area asks);
no answer, or a leaver who may not vouch (a visitor), is ``alarm.lockcheck_missed``. At
an area's closing time an area still occupied, with a cabinet open, or used today and
never checked, is ``alarm.area_not_closed`` until a check is confirmed.

A sub-machine of the core: it writes the open lock checks and the closing state, counts
the last leaver out, and returns actions. It never decides who the last leaver is
(:mod:`edged.core.leaving` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from edged.core.actions import Action, Indicate, Record, Step
from edged.core.closing import parse_closing
from edged.core.context import Context, unlock
from edged.core.presence import count_out, escort_left
from edged.core.state import CoreState, Now, Prompt, outputs
from edged.protocol.records import RecordType


class LockCheck:
    def __init__(
        self, ctx: Context, state: CoreState, pin_ok: Callable[[Prompt, str], bool]
    ) -> None:
        self.ctx, self.s, self.pin_ok = ctx, state, pin_ok
        self.closing_at = {
            a.name: parse_closing(a.closing_time)
            for a in ctx.cfg.areas.values()
            if a.closing_time is not None
        }

    def start(self, pr: Prompt, now: Now, carry: dict[str, Any]) -> list[Action]:
        """``pr.person`` is the last one out of ``pr.area`` at ``pr.door``."""
        door, area = pr.door, pr.area
        states = self.ctx.cabinet_states(self.s, area)
        open_ = [n for n, st in states.items() if st != "locked"]
        if open_:
            # R6, R7: every monitored lock counts; the leaver closes them and taps again.
            self.s.lockcheck_open[area] = open_
            f = {"area": area, "door": door, "person": pr.person.id, "name": pr.person.name,
                 "open": open_, "cabinets": states}  # fmt: skip
            return [Record("lockcheck.open", f), *outputs(self.s)]
        self.s.lockcheck_open.pop(area, None)
        if door not in self.ctx.cfg.keypads:
            # No keypad to confirm on: the check itself is recorded, the exit proceeds.
            return self.done(pr, now, "confirmed", method="no_keypad", carry=carry)
        steps: list[Step] = ["lockcheck"]
        deadline = self.ctx.prompt_deadline(now, door, steps)
        self.s.prompts[door] = Prompt(door, area, pr.person, pr.card, steps, deadline,
                                      {"carry": carry})  # fmt: skip
        return [Indicate("green", True, blink=True), *outputs(self.s)]

    def entered(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        area_cfg = self.ctx.cfg.areas.get(pr.area)
        if area_cfg and area_cfg.lockcheck_pin:
            if not self.pin_ok(pr, entered):
                pr.deadline = self.ctx.prompt_deadline(now, pr.door, pr.steps)  # try again
                return [Record("lockcheck.pin_wrong", {"area": pr.area, "person": pr.person.id})]
            method = "pin"
        elif entered != "":
            return []  # only "#" confirms; other keys are ignored
        else:
            method = "key"
        self.s.prompts.pop(pr.door, None)
        carry = pr.collected.get("carry", {})
        if any(st != "locked" for st in self.ctx.cabinet_states(self.s, pr.area).values()):
            # A cabinet opened while the leaver was confirming: back to the start.
            return self.start(pr, now, carry)
        return self.done(pr, now, "confirmed", method=method, carry=carry)

    def done(
        self, pr: Prompt, now: Now, outcome: str, *, method: str,
        carry: dict[str, Any] | None = None,
    ) -> list[Action]:  # fmt: skip
        """The check ended (``outcome`` "confirmed" or "missed"): the leaver goes out."""
        door, area, p = pr.door, pr.area, pr.person
        states = self.ctx.cabinet_states(self.s, area)
        count_out(self.s, area, p.id)
        inside = self.s.occupancy.setdefault(area, {})
        escort_left(self.ctx, self.s, area, p, door)  # the last one out: nobody to alarm for
        rtype: RecordType = (
            "lockcheck.confirmed" if outcome == "confirmed" else "alarm.lockcheck_missed"
        )
        fields = {"area": area, "door": door, "person": p.id, "name": p.name,
                  "cabinets": states, "method": method}  # fmt: skip
        if inside:
            # Still counted, though an exit without a tap may have been theirs.
            fields["uncertain"] = sorted(inside)
        cleared: list[Action] = []
        today = self.ctx.local(now).date()
        if outcome == "confirmed" and self.s.closing.lock_checked(area, today):
            cleared = [Record("alarm.cleared", {"area": area, "was": "area_not_closed"})]
        exit_ = {**self.ctx.base(door, "exit", pr.card, p), "was_inside": True,
                 "last_leaver": True, **(carry or {})}  # fmt: skip
        return [
            Record(rtype, fields),
            *cleared,
            Record("door.exit", exit_),
            *unlock(self.s, door, now, needs_record=False),
            *outputs(self.s),
        ]

    def missed(self, pr: Prompt, now: Now, method: str, carry: dict[str, Any]) -> list[Action]:
        return self.done(pr, now, "missed", method=method, carry=carry)

    def timed_out(self, pr: Prompt, now: Now) -> list[Action]:
        self.s.prompts.pop(pr.door, None)
        return self.missed(pr, now, "timeout", pr.collected.get("carry") or {})

    def cancelled(self, pr: Prompt) -> list[Action]:
        self.s.prompts.pop(pr.door, None)
        f = {"area": pr.area, "person": pr.person.id, "name": pr.person.name}
        return [Record("lockcheck.cancelled", f)]

    def cabinet_locked(self, area: str, cabinet: str) -> None:
        """A cabinet the last leaver was shown open is locked now."""
        open_ = self.s.lockcheck_open.get(area)
        if open_ is not None and cabinet in open_:
            open_.remove(cabinet)
            if not open_:
                del self.s.lockcheck_open[area]

    def closing_time(self, now: Now) -> list[Action]:
        """At each area's closing time (open days, a synchronised clock): empty, cabinets
        locked, and checked by a last leaver if it was used today; else the alarm."""
        if not self.closing_at or not now.synced:
            return []
        local = self.ctx.local(now)
        open_day = self.ctx.calendar.closed(local.date()) is None
        out: list[Action] = []
        for due in self.s.closing.due(local, self.closing_at, open_day):
            area = due.area
            inside = sorted(self.s.occupancy.get(area, {}))
            states = self.ctx.cabinet_states(self.s, area)
            open_ = [n for n, st in states.items() if st != "locked"]
            unchecked = bool(states) and self.s.closing.needs_check(area, due.day)
            if not (inside or open_ or unchecked):
                continue
            f: dict[str, Any] = {
                "area": area, "day": due.day.isoformat(), "inside": inside,
                "open_cabinets": open_, "lockcheck_today": not unchecked,
            }  # fmt: skip
            doubt = sorted(self.s.untapped.uncertain.get(area, set()) & set(inside))
            if doubt:
                f["uncertain"] = doubt
            self.s.closing.alarmed(area, due.day)
            out += [Record("alarm.area_not_closed", f), *outputs(self.s)]
        return out
