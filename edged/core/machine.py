"""The door state machine: pure, single-threaded, clock handed in (Invariant 1, 3).

``handle(event, now)`` and ``tick(now)`` return actions; the daemon executes them,
committing every :class:`Record` before any :class:`SetLock` of the same step.
``next_deadline()`` tells the daemon how long it may wait for the next event.

The core is a dispatcher: each event goes to the sub-machine that owns it, and the
sub-machines return what happened (actions, or an outcome such as a dialogue answered)
rather than calling back here:

- :mod:`edged.core.access`: may this card act in this area now (the one card gate);
- :mod:`edged.core.entry`: going in, escorts, the grant;
- :mod:`edged.core.prompts`: the keypad dialogues at the entry (PIN, purpose, carry-in);
- :mod:`edged.core.leaving`: going out, carry-out, the exit button, the last leaver;
- :mod:`edged.core.lockcheck`: the last leaver's lock check and the closing time;
- :mod:`edged.core.cabinets`: reed switches, cabinet readers, cabinets open too long;
- :mod:`edged.core.presence`: the count of who is inside, shared by the two above;
- :mod:`edged.core.state` and :mod:`edged.core.context`: what they all share.

Every card decision is a record with a ``reason`` code (R1); PIN digits never leave the
keypad buffer (R3); exit is never blocked (Invariant 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from edged.core.access import genuine
from edged.core.actions import Action, Record, SetCabinetLock, SetLock, StorePin
from edged.core.cabinets import Cabinets
from edged.core.closing import parse_closing
from edged.core.context import Context
from edged.core.doors import Door
from edged.core.entry import Entry
from edged.core.events import (
    CabinetChanged,
    CardAuthFailed,
    CardPresented,
    CardRemoved,
    CardUnreadable,
    DoorContact,
    DriverFault,
    Event,
    ExitButton,
    KeypadKey,
    Presence,
    ReaderFound,
    ReaderLost,
    Tamper,
)
from edged.core.leaving import Leaving
from edged.core.lockcheck import LockCheck
from edged.core.lockout import PinLockout
from edged.core.motion import Motion
from edged.core.open_cabinets import OpenCabinets
from edged.core.policy import AccessList, SitePolicy
from edged.core.presence import (
    after_step,
    confirmed_empty,
    motion_seen,
    overstays,
    reset,
    scheduled_resets,
)
from edged.core.prompts import LEAVING_STEPS, Answered, Asking, Prompts, Refused, ResetAsked
from edged.core.state import NS, CoreState, LocalPin, Now, Prompt, alarm_active, outputs, snapshot


class Core:
    """Decisions for doors, cards, keypad, occupancy, cabinets, readers and tamper."""

    def __init__(
        self,
        config: SitePolicy,
        acl: AccessList | None = None,
        *,
        pin_check: Callable[[str, str], bool] = lambda _pin, _stored: False,
        pin_hash: Callable[[str], str] | None = None,
    ) -> None:
        self.cfg = config
        self.ctx = ctx = Context(config, acl)
        self.calendar = ctx.calendar
        self.state = s = CoreState(
            doors={n: Door(d) for n, d in config.doors.items()},
            occupancy={a: {} for a in config.areas},
            lockout=PinLockout(config.policy.pin_attempts, config.policy.lockout_minutes),
            motion=Motion(limits={a.name: int(a.presence_empty_minutes * 60 * NS)
                                  for a in config.areas.values() if a.presence_pin is not None}),
            open_cabinets=OpenCabinets(
                {c.name: c.max_open_minutes for c in config.cabinets.values()
                 if c.max_open_minutes > 0}
            ),
        )  # fmt: skip
        self.prompts = Prompts(ctx, s, pin_check, pin_hash)
        self.entry = Entry(ctx, s)
        self.lockcheck = LockCheck(ctx, s, self.prompts.pin_ok)
        self.leaving = Leaving(ctx, s, self.lockcheck)
        self.cabinets = Cabinets(ctx, s)
        self._max_stay = {
            a.name: a.max_stay_hours for a in config.areas.values() if a.max_stay_hours > 0
        }
        self._reset_at = {
            a.name: parse_closing(a.reset_time) for a in config.areas.values() if a.reset_time
        }

    # -- what the daemon does to the core ------------------------------------------
    @property
    def acl(self) -> AccessList | None:
        return self.ctx.acl

    def set_acl(self, acl: AccessList, source: str) -> list[Action]:
        """Adopt a new list (already validated and stored) and record it (R5)."""
        self.ctx.acl = acl
        self.state.expiry_warned_on = None
        f = {"version": acl.version, "sha256": acl.sha256, "people": len(acl.people),
             "source": source}  # fmt: skip
        return [Record("acl.applied", f)]

    def adopt_acl(self, acl: AccessList) -> None:
        """The stored list, at start: in force at once (the caller records acl.loaded)."""
        self.ctx.acl = acl

    def load_local_pins(self, pins: dict[str, LocalPin]) -> None:
        """PINs changed at this door (kept on the device only), at start."""
        self.state.local_pins = dict(pins)

    def seed_cabinets(self, locked: dict[str, bool], now: Now) -> list[Action]:
        """The cabinets' reed switches as read at start (an open one is recorded)."""
        out = self.cabinets.seed(locked, now)
        return out + outputs(self.state) if out else out

    def restore(self, records: Iterable[dict[str, Any]], now: Now, boot_id: str) -> None:
        """State that must survive a restart or a power cut, replayed from the journal's
        records (:data:`edged.core.replay.REPLAYED`): who is inside and with which
        escort, wrong-PIN counts and lock-outs with their remaining time (R1, R2, R3)."""
        from edged.core.replay import replay

        s = self.state
        replay(s, records, now, boot_id, set(self.cfg.areas), self.ctx.tz)
        if now.synced:  # an untrusted clock shuts nothing: no alarm from a wrong hour
            occupied = {a for a, people in s.occupancy.items() if people}
            s.closing.shut_since_restart(self.ctx.local(now), self.lockcheck.closing_at, occupied)

    def revert_unrecorded(self, actions: list[Action]) -> None:
        """The journal refused the records of a step: what was not recorded did not
        happen; undo the grants, unlocks, releases and PIN changes among them."""
        s = self.state
        for a in actions:
            if isinstance(a, StorePin):
                s.local_pins.pop(a.person, None)  # the old PIN holds
            if isinstance(a, Record) and a.type == "door.granted" and a.fields.get("person"):
                area, person = a.fields.get("area", ""), a.fields["person"]
                s.occupancy.get(area, {}).pop(person, None)
                s.stays.left(area, person)
                s.escorts.forget(area, person)
            elif isinstance(a, SetLock) and a.unlocked and a.needs_record:
                s.doors[a.door].revert_unlock()
            elif isinstance(a, SetCabinetLock) and a.unlocked and a.needs_record:
                s.cabinet_release.pop(a.cabinet, None)

    # -- events ----------------------------------------------------------------------
    def handle(self, ev: Event, now: Now) -> list[Action]:
        """Actions for one event, in the order they must happen."""
        out = self._handle(ev, now)
        return out + after_step(self.ctx, self.state, out, now)

    def _handle(self, ev: Event, now: Now) -> list[Action]:
        s = self.state
        match ev:
            case CardPresented():
                return self._card(ev, now)
            case CardAuthFailed():
                return self._auth_failed(ev)
            case CardUnreadable():
                door = self.ctx.door_of_reader.get(ev.reader, (None, None))[0]
                f = {"reader": ev.reader, "door": door, "reason": ev.reason[:200]}
                return [Record("card.unreadable", f)]
            case CardRemoved():
                return []
            case KeypadKey():
                return self._key(ev, now)
            case ReaderLost():
                s.readers_lost[ev.reader] = ev.reason
                f = {"reader": ev.reader, "reason": ev.reason[:200]}
                return [Record("alarm.reader_lost", f), *outputs(s)]
            case ReaderFound():
                was_lost = s.readers_lost.pop(ev.reader, None)
                found = {"reader": ev.reader, "was_lost": was_lost is not None}
                return [Record("reader.found", found), *outputs(s)]
            case Tamper():
                if ev.active == s.tamper:
                    return []
                s.tamper = ev.active
                return [Record("alarm.tamper" if ev.active else "tamper.cleared", {}), *outputs(s)]
            case DoorContact():
                d = s.doors.get(ev.door)
                changed = d.contact(ev.closed, now.mono) if d is not None else None
                return [*changed, *outputs(s)] if changed else []
            case ExitButton():
                return self.leaving.button(ev, now)
            case CabinetChanged():
                out = self.cabinets.changed(ev, now)
                c = self.cfg.cabinets.get(ev.cabinet)
                if ev.locked and c is not None:
                    self.lockcheck.cabinet_locked(c.area, ev.cabinet)
                return out + outputs(s)
            case Presence():
                return motion_seen(self.ctx, s, ev.area, ev.motion, now)
            case DriverFault():
                f = {"device": ev.device, "reason": ev.reason[:200]}
                return [Record("alarm.driver_fault", f), *outputs(s)]
        return [Record("event.unknown", {"event": type(ev).__name__})]

    def _card(self, ev: CardPresented, now: Now) -> list[Action]:
        if ev.reader in self.ctx.cabinet_of_reader:
            return self.cabinets.card(self.ctx.cabinet_of_reader[ev.reader], ev, now)
        door, direction = self.ctx.door_of_reader.get(ev.reader, (None, None))
        if door is None:
            f = {"reader": ev.reader, "card": ev.card, "reason": "reader_not_bound"}
            return [Record("door.denied", f)]
        out: list[Action] = []
        pr = self.state.prompts.get(door)
        if pr is not None and pr.step == "carry_out_approval" and direction == "exit":
            return self.leaving.approver(pr, ev, now)
        if pr is not None:
            out += self._end_prompt(pr, now, "cancelled")
        if direction == "exit":
            ok = genuine(self.ctx, self.cfg.doors[door].area, ev)
            return out + self.leaving.card(door, ev.card, now, genuine=ok)
        return out + self.entry.card(door, ev, now)

    def _auth_failed(self, ev: CardAuthFailed) -> list[Action]:
        """A card that did not prove its key: refused at any reader, with what failed and
        whose identity it claimed (a copy of that person's card, most likely)."""
        door, direction = self.ctx.door_of_reader.get(ev.reader, (None, None))
        p = self.ctx.by_card(ev.card)
        f: dict[str, Any] = {"reader": ev.reader, "card_kind": ev.kind, "detail": ev.reason[:200]}
        cabinet = self.ctx.cabinet_of_reader.get(ev.reader)
        if cabinet is not None:
            f.update(cabinet=cabinet, area=self.cfg.cabinets[cabinet].area, card=ev.card)
            if p is not None:
                f.update(person=p.id, name=p.name)
            return [Record("cabinet.denied", {**f, "reason": "card_auth_failed"})]
        if door is not None:
            f.update(self.ctx.base(door, direction or "entry", ev.card, p))
        elif ev.card:
            f["card"] = ev.card
        return [Record("door.denied", {**f, "reason": "card_auth_failed"})]

    def _key(self, ev: KeypadKey, now: Now) -> list[Action]:
        pr = self.state.prompts.get(ev.keypad)
        if pr is None or (entered := self.prompts.typed(pr, ev.key)) is None:
            return []
        if pr.step in LEAVING_STEPS:
            return self.leaving.key(pr, entered, now)
        match self.prompts.answer(pr, entered, now):
            case Answered(prompt, actions):
                return actions + self.entry.grant(prompt, now)
            case ResetAsked(prompt):
                return reset(self.state, prompt.area, prompt.person) + outputs(self.state)
            case Refused(actions) | Asking(actions):
                return actions
        return []

    def _end_prompt(self, pr: Prompt, now: Now, why: str) -> list[Action]:
        """A dialogue cut short by another card, or by its time running out."""
        if pr.step in LEAVING_STEPS:
            return self.leaving.ended(pr, now, why)
        out = self.prompts.ended(pr, why)
        return out + outputs(self.state) if why == "timeout" else out

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        """The earliest mono ns at which ``tick`` has work, or None."""
        s = self.state
        times = [t for d in s.doors.values() for t in d.deadlines()]
        times += [pr.deadline for pr in s.prompts.values()]
        times += s.escorts.deadlines()
        times += s.lockout.deadlines()
        times += s.untapped.deadlines()
        times += self.cabinets.deadlines()
        times += s.motion.deadlines()
        return min(times) if times else None

    def tick(self, now: Now) -> list[Action]:
        s = self.state
        out = self.cabinets.relock(now)
        for d in s.doors.values():
            if changed := d.tick(now.mono):
                out += [*changed, *outputs(s)]
        for pr in [pr for pr in s.prompts.values() if now.mono >= pr.deadline]:
            out += self._end_prompt(pr, now, "timeout")
        out += self.leaving.unanswered(now)
        if expired := self.entry.escort_expired(now):
            out += expired + outputs(s)
        s.lockout.tick(now.mono)
        out += self._expiry_warning(now)
        overdue, alarmed = self.cabinets.overdue(now)
        out += overdue + (outputs(s) if alarmed else [])
        out += overstays(s, self._max_stay, now)
        if self._reset_at and now.synced:
            out += scheduled_resets(s, self._reset_at, self.ctx.local(now))
        out += self.lockcheck.closing_time(now)
        out += confirmed_empty(self.ctx, s, now)
        return out + after_step(self.ctx, s, out, now)

    def _expiry_warning(self, now: Now) -> list[Action]:
        """Once a day, the people whose rights end soon (R5)."""
        if self.acl is None or not now.synced:
            return []
        today = self.ctx.local(now).date()
        if self.state.expiry_warned_on == today.isoformat():
            return []
        self.state.expiry_warned_on = today.isoformat()
        days = self.cfg.policy.expiry_warning_days
        soon = self.acl.expiring(today, days)
        if not soon:
            return []
        people = [{"id": p.id, "valid_until": p.valid_until.isoformat()} for p in soon]
        return [Record("acl.expiring", {"within_days": days, "people": people})]

    # -- indicators ------------------------------------------------------------------
    def alarm_active(self) -> bool:
        return alarm_active(self.state)

    def snapshot(self) -> dict[str, Any]:
        """State for ``edged sim state`` / ``edged status``: no PINs, no key buffers."""
        return {**snapshot(self.state), "acl_version": self.acl.version if self.acl else None}
