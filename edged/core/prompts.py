"""Keypad dialogues at the entry (R1, R3, R4, R19): PIN, a PIN change, purpose, carry-in
and the administrator's choice. A sub-machine of the core: it writes the open dialogues,
the wrong-PIN counts and the PINs changed here, and returns an outcome: the dialogue goes
on (:class:`Asking`), every step is answered (:class:`Answered`: the core grants), it
ended in a refusal (:class:`Refused`), or the administrator asked to empty the area
(:class:`ResetAsked`). The lock check and carry-out questions, asked on the way out, are
:mod:`edged.core.leaving`'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.core.actions import Action, Denial, Record, StorePin
from edged.core.context import Context
from edged.core.policy import CARRY_IN, Person
from edged.core.state import CoreState, LocalPin, Now, Prompt, outputs

# The steps asked on the way out; their keys go to edged.core.leaving.
LEAVING_STEPS = frozenset({"lockcheck", "carry_out", "carry_out_approval"})


@dataclass(frozen=True)
class Asking:
    actions: list[Action] = field(default_factory=list)


@dataclass(frozen=True)
class Answered:
    prompt: Prompt
    actions: list[Action] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    actions: list[Action]


@dataclass(frozen=True)
class ResetAsked:
    prompt: Prompt


Outcome = Asking | Answered | Refused | ResetAsked


@dataclass(frozen=True)
class _Pin:
    """The PIN that holds for a person now: the list's, or one changed at this door."""

    hash: str | None
    expires: dt.date | None
    initial: bool


class Prompts:
    def __init__(
        self,
        ctx: Context,
        state: CoreState,
        pin_check: Callable[[str, str], bool],
        pin_hash: Callable[[str], str] | None,
    ) -> None:
        self.ctx, self.s = ctx, state
        self.pin_check = pin_check
        self.pin_hash = pin_hash  # None: PINs cannot be changed at this door

    @staticmethod
    def typed(pr: Prompt, key: str) -> str | None:
        """A key into the dialogue's buffer; what was entered once "#" ends it."""
        if key == "*":
            pr.buffer = ""
        elif key != "#":
            if len(pr.buffer) < 8:
                pr.buffer += key
        else:
            entered, pr.buffer = pr.buffer, ""
            return entered
        return None

    def answer(self, pr: Prompt, entered: str, now: Now) -> Outcome:
        """What was entered at an entry step."""
        step = pr.step
        if step == "pin":
            return self._pin_entered(pr, entered, now)
        if step in ("pin_new", "pin_repeat"):
            return self._pin_change(pr, entered, now)
        if step == "purpose":
            purposes = self.ctx.cfg.areas[pr.area].purposes
            if entered not in purposes:
                return self._refuse(pr, "purpose_invalid")
            pr.collected["purpose"] = purposes[entered]
        elif step == "carry_in":
            if entered not in CARRY_IN:
                return self._refuse(pr, "carry_in_invalid")
            pr.collected["carry_in"] = CARRY_IN[entered]
        elif step == "admin":
            if entered == "0":
                self.s.prompts.pop(pr.door, None)
                return ResetAsked(pr)
            if entered != "":
                return self._refuse(pr, "admin_choice_invalid")
        return self._next_step(pr, now)

    def _refuse(self, pr: Prompt, reason: Denial, **extra: Any) -> Refused:
        self.s.prompts.pop(pr.door, None)
        deny = self.ctx.deny(pr.door, pr.card, reason, pr.person, **extra)
        return Refused(deny + outputs(self.s))

    def _next_step(self, pr: Prompt, now: Now, actions: list[Action] | None = None) -> Outcome:
        pr.steps.pop(0)
        if pr.steps:
            pr.deadline = self.ctx.prompt_deadline(now, pr.door, pr.steps)
            return Asking(actions or [])
        self.s.prompts.pop(pr.door, None)
        return Answered(pr, actions or [])

    def pin_of(self, p: Person) -> _Pin:
        """The list's PIN, unless one was changed at this door since it was issued."""
        local = self.s.local_pins.get(p.id)
        if local is not None and (p.pin_issued is None or local.set_on >= p.pin_issued):
            return _Pin(local.hash, local.expires, False)
        return _Pin(p.pin, p.pin_expires, p.pin_initial)

    def pin_ok(self, pr: Prompt, entered: str) -> bool:
        stored = self.pin_of(pr.person).hash
        return bool(stored) and entered.isdigit() and self.pin_check(entered, stored or "")

    def _pin_entered(self, pr: Prompt, entered: str, now: Now) -> Outcome:
        if not self.pin_ok(pr, entered):
            self.s.prompts.pop(pr.door, None)
            n, locked = self.s.lockout.wrong(pr.card, now.mono)
            out = self.ctx.deny(pr.door, pr.card, "pin_wrong", pr.person, attempt=n)
            if locked:
                f = {**self.ctx.base(pr.door, "entry", pr.card, pr.person), "attempts": n,
                     "minutes": int(self.s.lockout.minutes)}  # fmt: skip
                out.append(Record("alarm.pin_lockout", f))
            return Refused(out + outputs(self.s))
        self.s.lockout.right(pr.card)
        pin = self.pin_of(pr.person)
        today = self.ctx.local(now).date()
        if pin.expires is not None and today > pin.expires:
            # R19: reviewed PINs: an expired one opens nothing (the administrator issues a
            # new one); it was right, so it does not count towards lock-out.
            return self._refuse(pr, "pin_expired", expired=str(pin.expires))
        if pin.initial:
            if self.pin_hash is None:
                return self._refuse(pr, "pin_change_failed", why="cannot_change_here")
            # R19: an initial PIN opens nothing until it is changed, here and now.
            pr.steps[1:1] = ["pin_new", "pin_repeat"]
            return self._next_step(pr, now)
        if pin.expires is not None:
            left = (pin.expires - today).days
            if left <= self.ctx.cfg.policy.pin_warning_days:
                pr.collected["pin_expires_in_days"] = left
        return self._next_step(pr, now)

    def _pin_change(self, pr: Prompt, entered: str, now: Now) -> Outcome:
        """A new PIN, then the same again: kept as a hash on this device alone (StorePin),
        recorded without any of its digits."""
        if pr.step == "pin_new":
            if not (entered.isdigit() and 4 <= len(entered) <= 8) or self.pin_ok(pr, entered):
                pr.collected.pop("new_pin", None)
                return self._refuse(pr, "pin_change_failed", why="new_pin_unfit")
            pr.collected["new_pin"] = entered  # in memory for this dialogue only
            return self._next_step(pr, now)
        new = pr.collected.pop("new_pin", "")
        if entered != new or self.pin_hash is None:
            return self._refuse(pr, "pin_change_failed", why="repeat_differs")
        today = self.ctx.local(now).date()
        expires = today + dt.timedelta(days=self.ctx.cfg.policy.pin_max_age_days)
        h = self.pin_hash(new)
        p = pr.person
        self.s.local_pins[p.id] = LocalPin(h, today, expires)
        out: list[Action] = [
            StorePin(p.id, h, today.isoformat(), expires.isoformat()),
            Record("pin.changed", {"door": pr.door, "area": pr.area, "person": p.id,
                                   "name": p.name, "expires": expires.isoformat()}),
        ]  # fmt: skip
        return self._next_step(pr, now, out)

    def ended(self, pr: Prompt, why: str) -> list[Action]:
        """An entry dialogue cut short (another card, or its time ran out)."""
        self.s.prompts.pop(pr.door, None)
        reason: Denial = "prompt_timeout" if why == "timeout" else "prompt_cancelled"
        return self.ctx.deny(pr.door, pr.card, reason, pr.person, step=pr.step)
