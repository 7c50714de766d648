"""The door state machine: pure, single-threaded, clock handed in (Invariant 1, 3).

``handle(event, now)`` and ``tick(now)`` return actions; the daemon executes them,
committing every :class:`Record` before any :class:`SetLock` of the same step.
``next_deadline()`` tells the daemon how long it may wait for the next event.

Every card decision is a record with a ``reason`` code (R1); PIN digits never leave the
keypad buffer (R3); exit is never blocked (Invariant 4).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from edged.core.actions import (
    Action,
    Denial,
    Indicate,
    Record,
    SetCabinetLock,
    SetLock,
    Step,
    StorePin,
)
from edged.core.calendar import Calendar
from edged.core.closing import Closing, parse_closing
from edged.core.doors import Door
from edged.core.escort import Escorts
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
    ReaderFound,
    ReaderLost,
    Tamper,
)
from edged.core.indicators import indicators
from edged.core.lockout import PinLockout
from edged.core.occupancy import Stays, Untapped
from edged.core.open_cabinets import OpenCabinets, Reminder
from edged.core.policy import CARRY_IN, AccessList, Person, SitePolicy
from edged.protocol.records import RecordType, format_ts

NS = 1_000_000_000


@dataclass(frozen=True)
class Now:
    """The moment a step happens: monotonic ns, wall-clock ms, and whether to trust the wall."""

    mono: int
    wall_ms: int
    synced: bool


@dataclass(frozen=True)
class LocalPin:
    """A PIN changed at this door: its hash and life. Kept on the device only."""

    hash: str
    set_on: dt.date
    expires: dt.date


@dataclass(frozen=True)
class _Pin:
    """The PIN that holds for a person now: the list's, or one changed at this door."""

    hash: str | None
    expires: dt.date | None
    initial: bool


@dataclass
class Prompt:
    """A keypad dialogue at a door: PIN, purpose, carry-in, admin choice or lock check."""

    door: str
    area: str
    person: Person
    card: str
    steps: list[Step]
    deadline: int
    collected: dict[str, Any] = field(default_factory=dict)
    buffer: str = ""

    @property
    def step(self) -> Step:
        return self.steps[0]


@dataclass
class CoreState:
    """Everything the core keeps between events."""

    doors: dict[str, Door] = field(default_factory=dict)
    readers_lost: dict[str, str] = field(default_factory=dict)
    tamper: bool = False
    cabinets: dict[str, bool] = field(default_factory=dict)
    occupancy: dict[str, dict[str, str]] = field(default_factory=dict)  # area -> id -> name
    lockout: PinLockout = field(default_factory=PinLockout)
    prompts: dict[str, Prompt] = field(default_factory=dict)  # door -> open dialogue
    lockcheck_open: dict[str, list[str]] = field(default_factory=dict)  # area -> open cabinets
    escorts: Escorts = field(default_factory=Escorts)
    expiry_warned_on: str | None = None
    cabinet_release: dict[str, int] = field(default_factory=dict)  # cabinet -> relock mono
    local_pins: dict[str, LocalPin] = field(default_factory=dict)  # person -> changed here
    untapped: Untapped = field(default_factory=Untapped)  # exits without a tap
    closing: Closing = field(default_factory=Closing)  # closing time, per area
    stays: Stays = field(default_factory=Stays)  # since when each person is counted inside
    open_cabinets: OpenCabinets = field(default_factory=OpenCabinets)  # open too long


# Who may confirm the last leaver's lock check: a visitor is never the one who vouches
# that the cabinets are locked (R2, R6).
CONFIRM_ROLES = frozenset({"staff", "admin"})


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
        self.acl = acl
        self._pin_check = pin_check
        self._pin_hash = pin_hash  # None: PINs cannot be changed at this door
        self._tz = zoneinfo.ZoneInfo(config.clock.timezone)
        self.calendar = Calendar(config.calendar)
        self.state = CoreState(
            doors={n: Door(d) for n, d in config.doors.items()},
            occupancy={a: {} for a in config.areas},
            lockout=PinLockout(config.policy.pin_attempts, config.policy.lockout_minutes),
            open_cabinets=OpenCabinets(
                {c.name: c.max_open_minutes for c in config.cabinets.values()
                 if c.max_open_minutes > 0}
            ),
        )
        self._door_of_reader: dict[str, tuple[str, str]] = {}
        for d in config.doors.values():
            self._door_of_reader[d.entry_reader] = (d.name, "entry")
            if d.exit_reader:
                self._door_of_reader[d.exit_reader] = (d.name, "exit")
        self._cabinet_of_reader = {c.reader: c.name for c in config.cabinets.values() if c.reader}
        self._max_stay = {
            a.name: a.max_stay_hours for a in config.areas.values() if a.max_stay_hours > 0
        }
        self._closing_at = {
            a.name: parse_closing(a.closing_time)
            for a in config.areas.values()
            if a.closing_time is not None
        }

    # -- access list -----------------------------------------------------------------
    def set_acl(self, acl: AccessList, source: str) -> list[Action]:
        """Adopt a new list (already validated and stored) and record it (R5)."""
        self.acl = acl
        self.state.expiry_warned_on = None
        return [
            Record(
                "acl.applied",
                {
                    "version": acl.version,
                    "sha256": acl.sha256,
                    "people": len(acl.people),
                    "source": source,
                },
            )
        ]

    def adopt_acl(self, acl: AccessList) -> None:
        """The stored list, at start: in force at once (the caller records acl.loaded)."""
        self.acl = acl

    def load_local_pins(self, pins: dict[str, LocalPin]) -> None:
        """PINs changed at this door (kept on the device only), at start."""
        self.state.local_pins = dict(pins)

    def seed_cabinets(self, locked: dict[str, bool], now: Now) -> list[Action]:
        """The cabinets' reed switches as read at start: an open one is recorded, as a
        cabinet found open (not as one opened now: nobody is asked who opened it)."""
        out: list[Action] = []
        for name, is_locked in locked.items():
            self.state.cabinets[name] = is_locked
            if not is_locked:
                out += self._cabinet(CabinetChanged(cabinet=name, locked=False), now)
        return out

    def restore(self, records: Iterable[dict[str, Any]], now: Now, boot_id: str) -> None:
        """State that must survive a restart or a power cut, replayed from the journal's
        records (:data:`edged.core.replay.REPLAYED`): who is inside and with which
        escort, wrong-PIN counts and lock-outs with their remaining time (R1, R2, R3)."""
        from edged.core.replay import replay

        replay(self.state, records, now, boot_id, set(self.cfg.areas), self._tz)

    # -- events ----------------------------------------------------------------------
    def handle(self, ev: Event, now: Now) -> list[Action]:
        """Actions for one event, in the order they must happen."""
        match ev:
            case CardPresented():
                return self._card(ev, now)
            case CardAuthFailed():
                return self._auth_failed(ev)
            case CardUnreadable():
                door = self._door_of_reader.get(ev.reader, (None, None))[0]
                return [
                    Record(
                        "card.unreadable",
                        {"reader": ev.reader, "door": door, "reason": ev.reason[:200]},
                    )
                ]
            case CardRemoved():
                return []
            case KeypadKey():
                return self._key(ev, now)
            case ReaderLost():
                self.state.readers_lost[ev.reader] = ev.reason
                return [
                    Record("alarm.reader_lost", {"reader": ev.reader, "reason": ev.reason[:200]}),
                    *self._outputs(),
                ]
            case ReaderFound():
                was_lost = self.state.readers_lost.pop(ev.reader, None)
                return [
                    Record("reader.found", {"reader": ev.reader, "was_lost": was_lost is not None}),
                    *self._outputs(),
                ]
            case Tamper():
                if ev.active == self.state.tamper:
                    return []
                self.state.tamper = ev.active
                return [
                    Record("alarm.tamper" if ev.active else "tamper.cleared", {}),
                    *self._outputs(),
                ]
            case DoorContact():
                return self._contact(ev, now)
            case ExitButton():
                return self._exit_button(ev, now)
            case CabinetChanged():
                return self._cabinet(ev, now)
            case DriverFault():
                return [
                    Record("alarm.driver_fault", {"device": ev.device, "reason": ev.reason[:200]}),
                    *self._outputs(),
                ]
        return [Record("event.unknown", {"event": type(ev).__name__})]

    # -- cards -----------------------------------------------------------------------
    def _card(self, ev: CardPresented, now: Now) -> list[Action]:
        door, direction = self._door_of_reader.get(ev.reader, (None, None))
        if ev.reader in self._cabinet_of_reader:
            return self._cabinet_card(self._cabinet_of_reader[ev.reader], ev, now)
        if door is None:
            return [
                Record(
                    "door.denied",
                    {"reader": ev.reader, "card": ev.card, "reason": "reader_not_bound"},
                )
            ]
        out: list[Action] = []
        pr = self.state.prompts.get(door)
        if pr is not None and pr.step == "carry_out_approval" and direction == "exit":
            return self._carry_out_approver(pr, ev, now)
        if pr is not None:
            out += self._end_prompt_cancelled(pr, now)
        if direction == "exit":
            genuine = self._genuine(self.cfg.doors[door].area, ev)
            return out + self._exit(door, ev.card, now, genuine=genuine)
        return out + self._entry(door, ev, now)

    # The one gate every card read passes, at any reader and in any prompt (entry, escort,
    # carry-out approver, custodian at a cabinet): the card's kind and proof, the access
    # list, the person's validity, areas and hours, and a PIN lock-out. Each caller adds
    # only its own question (is the approver inside, is the custodian the cabinet's).
    def _genuine(self, area: str, ev: CardPresented) -> bool:
        """The card showed itself the way ``area`` asks (an identifier alone is anyone's
        copy where the area takes only proven cards)."""
        a = self.cfg.areas.get(area)
        return not (a is not None and a.cards and (ev.proof or "id") not in a.cards)

    def _card_gate(
        self, area: str, ev: CardPresented, now: Now
    ) -> tuple[Person | None, Denial | None]:
        """Whose card this is, and why it may not act in ``area`` now (None: it may)."""
        p = self.acl.by_card(ev.card) if self.acl is not None else None
        if not self._genuine(area, ev):
            return p, "card_kind_not_allowed"
        if self.acl is None:
            return None, "no_access_list"
        if p is None:
            return None, "unknown_card"
        reason = self._check_person(p, area, now)
        if reason is None and self.state.lockout.locked(ev.card, now.mono):
            reason = "pin_locked_out"
        return p, reason

    def _auth_failed(self, ev: CardAuthFailed) -> list[Action]:
        """A card that did not prove its key: refused at any reader, with what failed and
        whose identity it claimed (a copy of that person's card, most likely)."""
        door, direction = self._door_of_reader.get(ev.reader, (None, None))
        p = self.acl.by_card(ev.card) if self.acl is not None and ev.card else None
        f: dict[str, Any] = {"reader": ev.reader, "card_kind": ev.kind, "detail": ev.reason[:200]}
        cabinet = self._cabinet_of_reader.get(ev.reader)
        if cabinet is not None:
            f.update(cabinet=cabinet, area=self.cfg.cabinets[cabinet].area, card=ev.card)
            if p is not None:
                f.update(person=p.id, name=p.name)
            return [Record("cabinet.denied", {**f, "reason": "card_auth_failed"})]
        if door is not None:
            f.update(self._base(door, direction or "entry", ev.card, p))
        elif ev.card:
            f["card"] = ev.card
        return [Record("door.denied", {**f, "reason": "card_auth_failed"})]

    def _base(
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

    def _deny(
        self, door: str, card: str, reason: Denial, person: Person | None = None, **extra: Any
    ) -> list[Action]:
        return [
            Record(
                "door.denied",
                {**self._base(door, "entry", card, person), "reason": reason, **extra},
            )
        ]

    def _local(self, now: Now) -> dt.datetime:
        return dt.datetime.fromtimestamp(now.wall_ms / 1000, tz=self._tz)

    def _check_person(self, p: Person, area: str, now: Now) -> Denial | None:
        """Why ``p`` may not enter ``area`` now, or None."""
        policy = self.cfg.clock.when_unsynced
        if not now.synced and policy == "deny_all":
            return "clock_untrusted"
        local = self._local(now)
        if local.date() < p.valid_from:
            return "not_yet_valid"
        if local.date() > p.valid_until:
            return "expired"
        if area not in p.areas:
            return "area_not_allowed"
        if p.windows:
            if not now.synced and policy == "deny_windowed":
                return "clock_untrusted"
            minute = local.hour * 60 + local.minute
            closed = self.calendar.closed(local.date()) is not None
            if not p.in_window(local.weekday(), minute, closed=closed):
                # A working day's window would have let them in: the day is closed.
                return (
                    "holiday"
                    if closed and p.in_window(local.weekday(), minute)
                    else ("outside_window")
                )
        return None

    def _entry(self, door: str, ev: CardPresented, now: Now) -> list[Action]:
        area, card = self.cfg.doors[door].area, ev.card
        # How the card showed it is this card goes into the grant (the ledger's auditor
        # can tell a proven card from a number that anyone could have copied).
        proven = {"proof": ev.proof} if ev.proof else {}
        p, reason = self._card_gate(area, ev, now)
        if reason == "card_kind_not_allowed":
            a = self.cfg.areas[area]
            return self._deny(door, card, reason, p, card_kind=ev.kind, accepted=sorted(a.cards))
        if reason in ("no_access_list", "unknown_card"):
            return self._deny(door, card, reason, card_kind=ev.kind)
        if reason == "holiday":
            day = self.calendar.closed(self._local(now).date())
            return self._deny(door, card, reason, p, closed_day=day)
        if reason:
            return self._deny(door, card, reason, p)
        assert p is not None
        passback = self._passback(area, p.id)
        if passback in ("uncertain", "soft"):
            proven["passback"] = passback

        if p.role == "visitor":
            if passback == "refuse":
                return self._deny(door, card, "already_inside", p)
            window = int(self.cfg.policy.escort_seconds * NS)
            esc = self.state.escorts.followed(door, now.mono, window)
            if esc is not None:
                steps = self._steps(area, pin=False)
                return self._begin(door, area, p, card, steps, now, {"escort": esc, **proven})
            self.state.escorts.wait(door, p, card, now.mono + window)
            return [Indicate("green", True, blink=True)]  # waiting for an escort

        pending = self.state.escorts.take_waiting(door, now.mono) if p.escort else None
        if pending is not None:
            # This tap is the escort of a waiting visitor: the escort authenticates
            # (PIN in management areas), then both go in.
            steps = self._steps(area, pin=self._needs_pin(area))
            if "pin" in steps and p.pin is None:
                return self._deny(door, card, "pin_not_enrolled", p)
            return self._begin(door, area, p, card, steps, now, {"visitor": pending, **proven})

        if passback == "refuse":
            return self._deny(door, card, "already_inside", p)  # anti-passback
        steps = self._steps(area, pin=self._needs_pin(area))
        if "pin" in steps and p.pin is None:
            return self._deny(door, card, "pin_not_enrolled", p)
        if p.role == "admin":
            steps = ["admin", *steps]
        return self._begin(door, area, p, card, steps, now, dict(proven))

    def _count_out(self, area: str, person: str) -> str | None:
        """``person`` is no longer counted inside ``area``: the count, since when, and the
        area's doubt (gone with its last person) together. Their name, if counted."""
        inside = self.state.occupancy.get(area, {})
        name = inside.pop(person, None)
        self.state.stays.left(area, person)
        self.state.untapped.identified(area, person)
        if not inside:
            self.state.untapped.forget(area)
        return name

    def _passback(self, area: str, person: str) -> str | None:
        """A tap in by someone counted inside ``area``: "refuse" (hard anti-passback), or
        why they go in all the same: "uncertain" (an exit without a tap may have been
        theirs: nobody is refused in the morning for yesterday's exit button), "soft"
        (the area records it and lets them in). None: not counted inside."""
        if person not in self.state.occupancy.get(area, {}):
            return None
        if self.state.untapped.is_uncertain(area, person):
            return "uncertain"
        return "soft" if self.cfg.areas[area].anti_passback == "soft" else "refuse"

    def _needs_pin(self, area: str) -> bool:
        a = self.cfg.areas.get(area)
        return bool(a and a.pin_required)

    def _steps(self, area: str, *, pin: bool) -> list[Step]:
        a = self.cfg.areas.get(area)
        steps: list[Step] = ["pin"] if pin else []
        if a and a.purposes:
            steps.append("purpose")
        if a and a.carry_in:
            steps.append("carry_in")
        return steps

    def _begin(
        self,
        door: str,
        area: str,
        p: Person,
        card: str,
        steps: list[Step],
        now: Now,
        collected: dict[str, Any],
    ) -> list[Action]:
        if not steps:
            return self._grant(door, area, p, card, now, collected)
        if door not in self.cfg.keypads:
            return self._deny(door, card, "no_keypad", p, needs=steps)
        self.state.prompts[door] = Prompt(
            door, area, p, card, steps, self._prompt_deadline(now, door, steps), collected
        )
        return [Indicate("green", True, blink=True)]

    def _prompt_deadline(self, now: Now, door: str, steps: list[Step]) -> int:
        secs = (
            self.cfg.policy.lockcheck_seconds
            if steps[0] == "lockcheck"
            else self.cfg.keypads[door].timeout_seconds
        )
        return now.mono + int(secs * NS)

    def _grant(
        self, door: str, area: str, p: Person, card: str, now: Now, collected: dict[str, Any]
    ) -> list[Action]:
        extra: dict[str, Any] = {}
        for key in ("purpose", "carry_in", "pin_expires_in_days", "proof", "passback"):
            if key in collected:
                extra[key] = collected[key]
        inside = self.state.occupancy.setdefault(area, {})
        out: list[Action] = []
        esc: Person | None = collected.get("escort")
        visitor = collected.get("visitor")
        if visitor is not None:
            # p is the escort; the visitor it came for goes in with it.
            v, vcard = visitor.person, visitor.card
            if p.id not in inside:
                out.append(
                    Record(
                        "door.granted",
                        {
                            **self._base(door, "entry", card, p),
                            "reason": "ok",
                            "escorting": v.id,
                            **extra,
                        },
                    )
                )
                inside[p.id] = p.name
                self.state.stays.entered(area, p.id, now.wall_ms)
            out.append(
                Record(
                    "door.granted",
                    {
                        **self._base(door, "entry", vcard, v),
                        "reason": "escorted",
                        "escort": p.id,
                        "escort_name": p.name,
                        # The proof was the escort's card's, not the visitor's.
                        **{k: v for k, v in extra.items() if k != "proof"},
                        **self._answerable(v, area),
                    },
                )
            )
            inside[v.id] = v.name
            self.state.stays.entered(area, v.id, now.wall_ms)
            self.state.escorts.entered(area, v.id, p.id)
        else:
            fields = {
                **self._base(door, "entry", card, p),
                "reason": "ok",
                **extra,
                **self._answerable(p, area),
            }
            if esc is not None:
                fields.update(reason="escorted", escort=esc.id, escort_name=esc.name)
                self.state.escorts.entered(area, p.id, esc.id)
            out.append(Record("door.granted", fields))
            inside[p.id] = p.name
            self.state.stays.entered(area, p.id, now.wall_ms)
            self.state.untapped.identified(area, p.id)
            if p.escort:
                self.state.escorts.went_in(door, p, now.mono)
        self.state.lockout.right(card)
        self.state.closing.entered(area, self._local(now).date())
        return out + self._unlock(door, now, needs_record=True)

    def _answerable(self, p: Person, area: str) -> dict[str, Any]:
        """For the ledger (R1): who answers for this entry (確認者: the person's approver,
        else the area's), and a visitor's company and host, by name as the list has them
        now, so that the signed record says who they were at the time."""
        out: dict[str, Any] = {}
        people = self.acl.people if self.acl is not None else {}
        a = self.cfg.areas.get(area)
        approver = p.approver or (a.approver if a is not None else None)
        if approver is not None and approver != p.id:
            out["approver"] = approver
            if approver in people:
                out["approver_name"] = people[approver].name
        if p.company:
            out["company"] = p.company
        if p.host:
            out["host"] = p.host
            if p.host in people:
                out["host_name"] = people[p.host].name
        return out

    def _unlock(self, door: str, now: Now, *, needs_record: bool) -> list[Action]:
        self.state.doors[door].unlock(now.mono)
        return [SetLock(door, True, needs_record=needs_record), Indicate("green", True)]

    # -- keypad ----------------------------------------------------------------------
    def _key(self, ev: KeypadKey, now: Now) -> list[Action]:
        pr = self.state.prompts.get(ev.keypad)
        if pr is None:
            return []
        if ev.key == "*":
            pr.buffer = ""
            return []
        if ev.key != "#":
            if len(pr.buffer) < 8:
                pr.buffer += ev.key
            return []
        entered, pr.buffer = pr.buffer, ""
        step = pr.step
        if step == "pin":
            return self._pin_entered(pr, entered, now)
        if step in ("pin_new", "pin_repeat"):
            return self._pin_change(pr, entered, now)
        if step == "purpose":
            area = self.cfg.areas[pr.area]
            if entered not in area.purposes:
                self.state.prompts.pop(pr.door, None)
                return self._deny(pr.door, pr.card, "purpose_invalid", pr.person) + self._idle()
            pr.collected["purpose"] = area.purposes[entered]
        elif step == "carry_in":
            if entered not in CARRY_IN:
                self.state.prompts.pop(pr.door, None)
                return self._deny(pr.door, pr.card, "carry_in_invalid", pr.person) + self._idle()
            pr.collected["carry_in"] = CARRY_IN[entered]
        elif step == "admin":
            if entered == "0":
                self.state.prompts.pop(pr.door, None)
                return self._reset_occupancy(pr) + self._idle()
            if entered != "":
                self.state.prompts.pop(pr.door, None)
                return (
                    self._deny(pr.door, pr.card, "admin_choice_invalid", pr.person) + self._idle()
                )
        elif step == "lockcheck":
            return self._lockcheck_entered(pr, entered, now)
        elif step == "carry_out":
            return self._carry_out_entered(pr, entered, now)
        elif step == "carry_out_approval":
            return []  # waiting for the approver's card, not for keys
        return self._next_step(pr, now)

    def _next_step(self, pr: Prompt, now: Now) -> list[Action]:
        pr.steps.pop(0)
        if pr.steps:
            pr.deadline = self._prompt_deadline(now, pr.door, pr.steps)
            return []
        self.state.prompts.pop(pr.door, None)
        return self._grant(pr.door, pr.area, pr.person, pr.card, now, pr.collected)

    def _pin_of(self, p: Person) -> _Pin:
        """The list's PIN, unless one was changed at this door since it was issued."""
        local = self.state.local_pins.get(p.id)
        if local is not None and (p.pin_issued is None or local.set_on >= p.pin_issued):
            return _Pin(local.hash, local.expires, False)
        return _Pin(p.pin, p.pin_expires, p.pin_initial)

    def _pin_ok(self, pr: Prompt, entered: str) -> bool:
        stored = self._pin_of(pr.person).hash
        return bool(stored) and entered.isdigit() and self._pin_check(entered, stored or "")

    def _pin_entered(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        if self._pin_ok(pr, entered):
            self.state.lockout.right(pr.card)
            pin = self._pin_of(pr.person)
            today = self._local(now).date()
            if pin.expires is not None and today > pin.expires:
                # R19: reviewed PINs: an expired one opens nothing (the administrator
                # issues a new one); it was right, so it does not count towards lock-out.
                self.state.prompts.pop(pr.door, None)
                return (
                    self._deny(pr.door, pr.card, "pin_expired", pr.person, expired=str(pin.expires))
                    + self._idle()
                )
            if pin.initial:
                if self._pin_hash is None:
                    self.state.prompts.pop(pr.door, None)
                    return self._deny(pr.door, pr.card, "pin_change_failed", pr.person,
                                      why="cannot_change_here") + self._idle()  # fmt: skip
                # R19: an initial PIN opens nothing until it is changed, here and now.
                pr.steps[1:1] = ["pin_new", "pin_repeat"]
                return self._next_step(pr, now)
            if pin.expires is not None:
                left = (pin.expires - today).days
                if left <= self.cfg.policy.pin_warning_days:
                    pr.collected["pin_expires_in_days"] = left
            return self._next_step(pr, now)
        self.state.prompts.pop(pr.door, None)
        n, locked = self.state.lockout.wrong(pr.card, now.mono)
        out = self._deny(pr.door, pr.card, "pin_wrong", pr.person, attempt=n)
        if locked:
            out.append(
                Record(
                    "alarm.pin_lockout",
                    {
                        **self._base(pr.door, "entry", pr.card, pr.person),
                        "attempts": n,
                        "minutes": int(self.state.lockout.minutes),
                    },
                )
            )
        return out + self._idle()

    def _pin_change(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        """A new PIN, then the same again: kept as a hash on this device alone (StorePin),
        recorded without any of its digits."""
        if pr.step == "pin_new":
            if not (entered.isdigit() and 4 <= len(entered) <= 8) or self._pin_ok(pr, entered):
                self.state.prompts.pop(pr.door, None)
                pr.collected.pop("new_pin", None)
                return self._deny(pr.door, pr.card, "pin_change_failed", pr.person,
                                  why="new_pin_unfit") + self._idle()  # fmt: skip
            pr.collected["new_pin"] = entered  # in memory for this dialogue only
            return self._next_step(pr, now)
        new = pr.collected.pop("new_pin", "")
        if entered != new or self._pin_hash is None:
            self.state.prompts.pop(pr.door, None)
            return self._deny(pr.door, pr.card, "pin_change_failed", pr.person,
                              why="repeat_differs") + self._idle()  # fmt: skip
        today = self._local(now).date()
        expires = today + dt.timedelta(days=self.cfg.policy.pin_max_age_days)
        h = self._pin_hash(new)
        p = pr.person
        self.state.local_pins[p.id] = LocalPin(h, today, expires)
        out: list[Action] = [
            StorePin(p.id, h, today.isoformat(), expires.isoformat()),
            Record("pin.changed", {"door": pr.door, "area": pr.area, "person": p.id,
                                   "name": p.name, "expires": expires.isoformat()}),
        ]  # fmt: skip
        return out + self._next_step(pr, now)

    def _end_prompt_cancelled(self, pr: Prompt, now: Now) -> list[Action]:
        if pr.step in ("carry_out", "carry_out_approval"):
            return self._carry_out_unfinished(pr, now, "cancelled")
        self.state.prompts.pop(pr.door, None)
        if pr.step == "lockcheck":
            return [
                Record(
                    "lockcheck.cancelled",
                    {"area": pr.area, "person": pr.person.id, "name": pr.person.name},
                )
            ]
        return self._deny(pr.door, pr.card, "prompt_cancelled", pr.person, step=pr.step)

    def _idle(self) -> list[Action]:
        """Back to rest: green follows the locks, red/buzzer follow the alarms."""
        return self._outputs()

    def _reset_occupancy(self, pr: Prompt) -> list[Action]:
        inside = self.state.occupancy.get(pr.area, {})
        removed = sorted(inside)
        self.state.occupancy[pr.area] = {}
        self.state.escorts.forget(pr.area)
        self.state.untapped.forget(pr.area)
        self.state.stays.forget(pr.area)
        return [
            Record(
                "occupancy.reset",
                {
                    "area": pr.area,
                    "by": pr.person.id,
                    "by_name": pr.person.name,
                    "removed": removed,
                },
            )
        ]

    # -- exit and the last leaver ----------------------------------------------------
    def _exit(
        self,
        door: str,
        card: str,
        now: Now,
        carry: dict[str, Any] | None = None,
        *,
        genuine: bool = True,
    ) -> list[Action]:
        """A card at the exit reader. ``carry``: what was declared taken out (R18), once
        the carry-out questions are answered (asked first where the area says so). A card
        that is not ``genuine`` (an identifier alone where the area takes proven cards)
        still opens the door from inside, but counts nobody out and answers no prompt:
        validity is not asked here, so that a right that ended while inside still lets its
        holder leave and be counted out."""
        area = self.cfg.doors[door].area
        p = self.acl.by_card(card) if self.acl else None
        inside = self.state.occupancy.setdefault(area, {})
        self.state.untapped.taken(door)  # a card at the exit reader answers the offer
        if not genuine:
            f = self._base(door, "exit", card, p)
            f.update(was_inside=False, reason="card_kind_not_allowed")
            return [Record("door.exit", f), *self._unlock(door, now, needs_record=False)]
        a = self.cfg.areas.get(area)
        if (
            carry is None
            and p is not None
            and p.id in inside
            and a is not None
            and a.carry_out
            and door in self.cfg.keypads
        ):
            steps: list[Step] = ["carry_out"]
            self.state.prompts[door] = Prompt(
                door, area, p, card, steps, self._prompt_deadline(now, door, steps)
            )
            return [Indicate("green", True, blink=True)]
        carry = carry or {}
        if p is not None and p.id in inside:
            self.state.untapped.identified(area, p.id)
            # The last one out: nobody else counted inside, or nobody else known to be
            # there (everyone else counted was in the room at an exit without a tap).
            others = set(inside) - {p.id}
            last = not others or self.state.untapped.all_uncertain(area, others)
            if last and self._area_cabinets(area):
                if p.role not in CONFIRM_ROLES:
                    # Out they go (never trapped), but nobody vouched for the cabinets.
                    return self._lockcheck_done(
                        door,
                        area,
                        p,
                        card,
                        now,
                        "missed",
                        self._cabinet_states(area),
                        method="role_cannot_confirm",
                        carry=carry,
                    )
                return self._lockcheck_start(door, area, p, card, now, carry)
            self._count_out(area, p.id)
            return [
                Record(
                    "door.exit",
                    {**self._base(door, "exit", card, p), "was_inside": True, **carry},
                ),
                *self._left(area, p, door),
                *self._unlock(door, now, needs_record=False),
            ]
        # Unknown, or not counted inside (tailgated in): the door still opens (Invariant 4).
        f = self._base(door, "exit", card, p)
        f.update(was_inside=False, reason="unknown_card" if p is None else "not_inside")
        return [Record("door.exit", f), *self._unlock(door, now, needs_record=False)]

    # -- taking things out (R18) ----------------------------------------------------
    def _carry_out_entered(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        if entered not in CARRY_IN:
            pr.deadline = self._prompt_deadline(now, pr.door, pr.steps)  # ask again
            return []
        item = CARRY_IN[entered]
        area = self.cfg.areas[pr.area]
        if item == "none" or not area.carry_out_approval:
            self.state.prompts.pop(pr.door, None)
            return self._exit(pr.door, pr.card, now, {"carry_out": item})
        # A second card, of someone inside with the right to approve, within the escort
        # window; the leaver waits at the door meanwhile (the exit button always opens).
        pr.collected["carry_out"] = item
        pr.steps = ["carry_out_approval"]
        pr.deadline = now.mono + int(self.cfg.policy.escort_seconds * NS)
        return [Indicate("green", True, blink=True)]

    def _carry_out_approver(self, pr: Prompt, ev: CardPresented, now: Now) -> list[Action]:
        q, denial = self._card_gate(pr.area, ev, now)
        reason: str | None = denial
        f: dict[str, Any] = {"door": pr.door, "area": pr.area, "person": pr.person.id,
                             "item": pr.collected["carry_out"], "card": ev.card}  # fmt: skip
        if q is not None:
            f.update(approver=q.id, approver_name=q.name)
        if reason is None:
            assert q is not None
            reason = (
                "self" if q.id == pr.person.id
                else "not_approver" if not q.approves_carry_out
                else "not_inside" if q.id not in self.state.occupancy.get(pr.area, {})
                else None
            )  # fmt: skip
        if reason is not None:
            return [Record("carry_out.refused", {**f, "reason": reason})]  # still waiting
        assert q is not None
        self.state.prompts.pop(pr.door, None)
        carry = {"carry_out": f["item"], "carry_out_approver": q.id,
                 "carry_out_approver_name": q.name}  # fmt: skip
        return [
            Record("carry_out.approved", {**f, "name": pr.person.name}),
            *self._exit(pr.door, pr.card, now, carry),
        ]

    def _carry_out_unfinished(self, pr: Prompt, now: Now, why: str) -> list[Action]:
        """The questions were not finished: out they go all the same (never trapped),
        with what is known; an item declared but not approved is an alarm."""
        self.state.prompts.pop(pr.door, None)
        item = pr.collected.get("carry_out")
        out: list[Action] = []
        if item is not None:
            out.append(
                Record(
                    "alarm.carry_out_unapproved",
                    {
                        "door": pr.door,
                        "area": pr.area,
                        "person": pr.person.id,
                        "name": pr.person.name,
                        "item": item,
                        "why": why,
                    },
                )
            )
        carry = {"carry_out": item or "undeclared", "carry_out_unfinished": why}
        return [*out, *self._exit(pr.door, pr.card, now, carry), *self._outputs()]

    def _left(self, area: str, p: Person, door: str) -> list[Action]:
        """Escort bookkeeping when ``p`` has left ``area`` (R2): a handover to another
        escort inside is recorded; with none, ``alarm.visitor_unescorted``."""

        def can_escort(pid: str) -> bool:
            q = self.acl.people.get(pid) if self.acl is not None else None
            return q is not None and q.escort

        inside = self.state.occupancy.get(area, {})
        h = self.state.escorts.left(area, p.id, can_escort, inside)
        if h is None:
            return []
        if h.to is not None:
            return [
                Record(
                    "visitor.escort_changed",
                    {"area": area, "door": door, "from": p.id, "to": h.to, "visitors": h.visitors},
                )
            ]
        return [
            Record(
                "alarm.visitor_unescorted",
                {
                    "area": area,
                    "door": door,
                    "escort": p.id,
                    "name": p.name,
                    "visitors": h.visitors,
                },
            ),
            *self._outputs(),
        ]

    def _area_cabinets(self, area: str) -> list[str]:
        return sorted(n for n, c in self.cfg.cabinets.items() if c.area == area)

    def _cabinet_states(self, area: str) -> dict[str, str]:
        return {
            n: "locked" if self.state.cabinets.get(n, False) else "open"
            for n in self._area_cabinets(area)
        }

    def _lockcheck_start(
        self, door: str, area: str, p: Person, card: str, now: Now, carry: dict[str, Any]
    ) -> list[Action]:
        states = self._cabinet_states(area)
        open_ = [n for n, s in states.items() if s != "locked"]
        if open_:
            # R6, R7: every monitored lock counts; the leaver closes them and taps again.
            self.state.lockcheck_open[area] = open_
            return [
                Record(
                    "lockcheck.open",
                    {
                        "area": area,
                        "door": door,
                        "person": p.id,
                        "name": p.name,
                        "open": open_,
                        "cabinets": states,
                    },
                ),
                *self._outputs(),
            ]
        self.state.lockcheck_open.pop(area, None)
        steps: list[Step] = ["lockcheck"]
        if door not in self.cfg.keypads:
            # No keypad to confirm on: the check itself is recorded, the exit proceeds.
            return self._lockcheck_done(
                door, area, p, card, now, "confirmed", states, method="no_keypad", carry=carry
            )
        self.state.prompts[door] = Prompt(
            door, area, p, card, steps, self._prompt_deadline(now, door, steps), {"carry": carry}
        )
        return [Indicate("green", True, blink=True), *self._outputs()]

    def _lockcheck_entered(self, pr: Prompt, entered: str, now: Now) -> list[Action]:
        area_cfg = self.cfg.areas.get(pr.area)
        if area_cfg and area_cfg.lockcheck_pin:
            if not self._pin_ok(pr, entered):
                pr.deadline = self._prompt_deadline(now, pr.door, pr.steps)  # try again
                return [Record("lockcheck.pin_wrong", {"area": pr.area, "person": pr.person.id})]
            method = "pin"
        elif entered != "":
            return []  # only "#" confirms; other keys are ignored
        else:
            method = "key"
        self.state.prompts.pop(pr.door, None)
        states = self._cabinet_states(pr.area)
        carry = pr.collected.get("carry", {})
        if any(s != "locked" for s in states.values()):
            # A cabinet opened while the leaver was confirming: back to the start.
            return self._lockcheck_start(pr.door, pr.area, pr.person, pr.card, now, carry)
        return self._lockcheck_done(
            pr.door, pr.area, pr.person, pr.card, now, "confirmed", states, method=method,
            carry=carry,
        )  # fmt: skip

    def _lockcheck_done(
        self,
        door: str,
        area: str,
        p: Person,
        card: str,
        now: Now,
        outcome: str,
        states: dict[str, str],
        *,
        method: str,
        carry: dict[str, Any] | None = None,
    ) -> list[Action]:
        self._count_out(area, p.id)
        inside = self.state.occupancy.setdefault(area, {})
        self._left(area, p, door)  # the last one out: nobody is left behind to alarm for
        rtype: RecordType = (
            "lockcheck.confirmed" if outcome == "confirmed" else "alarm.lockcheck_missed"
        )
        fields = {"area": area, "door": door, "person": p.id, "name": p.name,
                  "cabinets": states, "method": method}  # fmt: skip
        if inside:
            # Still counted, though an exit without a tap may have been theirs.
            fields["uncertain"] = sorted(inside)
        cleared: list[Action] = []
        if outcome == "confirmed" and self.state.closing.lock_checked(
            area, self._local(now).date()
        ):
            cleared = [Record("alarm.cleared", {"area": area, "was": "area_not_closed"})]
        return [
            Record(rtype, fields),
            *cleared,
            Record(
                "door.exit",
                {
                    **self._base(door, "exit", card, p),
                    "was_inside": True,
                    "last_leaver": True,
                    **(carry or {}),
                },
            ),
            *self._unlock(door, now, needs_record=False),
            *self._outputs(),
        ]

    def _exit_button(self, ev: ExitButton, now: Now) -> list[Action]:
        """The door opens (Invariant 4). Nobody is identified, so it is never silent:
        the record names who may have left, their count turns uncertain, and a door with
        an exit reader offers the last-out check (:mod:`edged.core.occupancy`)."""
        if ev.door not in self.state.doors:
            return [Record("event.unknown_door", {"door": ev.door})]
        d = self.cfg.doors[ev.door]
        inside = sorted(self.state.occupancy.get(d.area, {}))
        fields: dict[str, Any] = {"door": ev.door, "area": d.area, "person": None}
        if inside:
            fields["may_have_left"] = inside
        wait = int(self.cfg.policy.lockcheck_seconds * NS)
        deadline = now.mono + wait if d.exit_reader else None
        offer = self.state.untapped.exit_without_tap(ev.door, d.area, inside, deadline)
        if offer is not None:
            fields["last_out_offered"] = True
        return [
            Record("door.exit_request", fields),
            *self._unlock(ev.door, now, needs_record=False),
            *(self._outputs() if offer is not None else []),
        ]

    def _cabinet(self, ev: CabinetChanged, now: Now) -> list[Action]:
        """A reed switch changed. Every opening records who was inside (R17); a guarded
        cabinet opened with none of its custodians inside, or an electric lock opened
        without a release, is ``alarm.cabinet_unauthorised``."""
        was_locked = self.state.cabinets.get(ev.cabinet, True)
        self.state.cabinets[ev.cabinet] = ev.locked
        c = self.cfg.cabinets.get(ev.cabinet)
        area = c.area if c else None
        fields: dict[str, Any] = {"cabinet": ev.cabinet, "area": area}
        inside = sorted(self.state.occupancy.get(area, {})) if area is not None else []
        opened = not ev.locked and was_locked
        if opened:
            fields["inside"] = inside
            doubt = sorted(self.state.untapped.uncertain.get(area or "", set()) & set(inside))
            if doubt:
                # Counted inside, but an exit by the button may have been theirs: the
                # record says so (an alarm here would ring whenever a colleague had left
                # by the button; the closing check is where an empty room is judged).
                fields["uncertain"] = doubt
        out: list[Action] = [Record("cabinet.locked" if ev.locked else "cabinet.unlocked", fields)]
        if not ev.locked:
            self.state.open_cabinets.opened(ev.cabinet, now.mono)
        elif self.state.open_cabinets.locked(ev.cabinet):
            out.append(Record("alarm.cleared", {"cabinet": ev.cabinet, "area": area,
                                                "was": "cabinet_open_too_long"}))  # fmt: skip
        if area is not None:
            open_ = self.state.lockcheck_open.get(area)
            if open_ is not None and ev.locked and ev.cabinet in open_:
                open_.remove(ev.cabinet)
                if not open_:
                    del self.state.lockcheck_open[area]
            if not ev.locked and not inside:
                out.append(
                    Record("alarm.cabinet_unattended", {"cabinet": ev.cabinet, "area": area})
                )

            elif opened and c is not None and c.guarded:
                why = None
                if c.lock_pin is not None and ev.cabinet not in self.state.cabinet_release:
                    why = "not_released"  # the electric lock was forced or bypassed
                elif not [pid for pid in inside if self._custodian(pid, ev.cabinet)]:
                    why = "no_custodian_inside"
                if why is not None:
                    out.append(
                        Record(
                            "alarm.cabinet_unauthorised",
                            {"cabinet": ev.cabinet, "area": area, "why": why, "inside": inside},
                        )
                    )
        return out + self._outputs()

    def _custodian(self, pid: str, cabinet: str) -> bool:
        p = self.acl.people.get(pid) if self.acl is not None else None
        return p is not None and cabinet in p.cabinets

    def _cabinet_card(self, cabinet: str, ev: CardPresented, now: Now) -> list[Action]:
        """A card at a cabinet's own reader: only a custodian who is inside the area
        releases its electric lock (R17), with a card of a kind the area accepts."""
        c, card = self.cfg.cabinets[cabinet], ev.card
        f: dict[str, Any] = {"cabinet": cabinet, "area": c.area, "card": card}
        p, reason = self._card_gate(c.area, ev, now)
        if p is not None:
            f.update(person=p.id, name=p.name)
        if reason is None and p is not None:
            if cabinet not in p.cabinets:
                reason = "not_custodian"
            elif p.id not in self.state.occupancy.get(c.area, {}):
                reason = "not_inside"  # tailgated in, or the card of someone outside
        if reason is not None:
            return [Record("cabinet.denied", {**f, "reason": reason})]
        self.state.cabinet_release[cabinet] = now.mono + int(c.unlock_seconds * NS)
        inside = sorted(self.state.occupancy.get(c.area, {}))
        return [
            Record("cabinet.granted", {**f, "inside": inside}),
            SetCabinetLock(cabinet, True),
        ]

    # -- door contact ----------------------------------------------------------------
    def _contact(self, ev: DoorContact, now: Now) -> list[Action]:
        d = self.state.doors.get(ev.door)
        changed = d.contact(ev.closed, now.mono) if d is not None else None
        return [*changed, *self._outputs()] if changed else []

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        """The earliest mono ns at which ``tick`` has work, or None."""
        times = []
        for d in self.state.doors.values():
            times += d.deadlines()
        times += [pr.deadline for pr in self.state.prompts.values()]
        times += self.state.escorts.deadlines()
        times += self.state.lockout.deadlines()
        times += self.state.cabinet_release.values()
        times += self.state.untapped.deadlines()
        times += self.state.open_cabinets.deadlines()
        return min(times) if times else None

    def tick(self, now: Now) -> list[Action]:
        out: list[Action] = []
        for cab, until in list(self.state.cabinet_release.items()):
            if now.mono >= until:
                del self.state.cabinet_release[cab]
                out.append(SetCabinetLock(cab, False, needs_record=False))
        for d in self.state.doors.values():
            if changed := d.tick(now.mono):
                out += [*changed, *self._outputs()]
        for pr in [pr for pr in self.state.prompts.values() if now.mono >= pr.deadline]:
            self.state.prompts.pop(pr.door, None)
            if pr.step == "lockcheck":
                out += self._lockcheck_done(
                    pr.door,
                    pr.area,
                    pr.person,
                    pr.card,
                    now,
                    "missed",
                    self._cabinet_states(pr.area),
                    method="timeout",
                    carry=pr.collected.get("carry"),
                )
            elif pr.step in ("carry_out", "carry_out_approval"):
                self.state.prompts[pr.door] = pr  # ended below, as a cancelled one is
                out += self._carry_out_unfinished(pr, now, "timeout")
            else:
                out += self._deny(pr.door, pr.card, "prompt_timeout", pr.person, step=pr.step)
                out += self._idle()
        for u in self.state.untapped.tick(now.mono):
            o = u.offer
            if self.cfg.areas[o.area].tap_out == "required":
                who = {"door": o.door, "area": o.area, "may_have_left": list(o.inside)}
                out.append(Record("alarm.exit_without_tap", who))
            out += self._outputs()
        for door, w in self.state.escorts.expired(now.mono):
            out += self._deny(door, w.card, "escort_needed", w.person) + self._idle()
        self.state.lockout.tick(now.mono)
        out += self._expiry_warning(now)
        out += self._open_too_long(now)
        out += self._overstays(now)
        out += self._closing_time(now)
        return out

    def _open_too_long(self, now: Now) -> list[Action]:
        """Cabinets open past their max_open_minutes: a reminder at the area's door, then
        the alarm (:mod:`edged.core.open_cabinets`)."""
        out: list[Action] = []
        for o in self.state.open_cabinets.tick(now.mono):
            area = self.cfg.cabinets[o.cabinet].area
            door = next((d.name for d in self.cfg.doors.values() if d.area == area), None)
            f = {"cabinet": o.cabinet, "area": area, "door": door, "minutes": o.minutes,
                 "inside": sorted(self.state.occupancy.get(area, {}))}  # fmt: skip
            if isinstance(o, Reminder):
                out.append(Record("cabinet.open_reminder", f))
            else:
                out += [Record("alarm.cabinet_open_too_long", f), *self._outputs()]
        return out

    def _overstays(self, now: Now) -> list[Action]:
        """Nobody stays counted inside for days (areas' max_stay_hours; a synchronised
        clock): whoever left uncounted is let in again, and the record says so."""
        if not self._max_stay or not now.synced:
            return []
        out: list[Action] = []
        for area, pid, since in self.state.stays.overstayed(now.wall_ms, self._max_stay):
            name = self._count_out(area, pid)
            if name is None:
                continue  # not counted any more
            self.state.escorts.forget(area, pid)
            out.append(Record("occupancy.expired", {
                "area": area, "person": pid, "name": name, "since": format_ts(since),
                "hours": self._max_stay[area],
            }))  # fmt: skip
        return out

    def _closing_time(self, now: Now) -> list[Action]:
        """At each area's closing time (open days, a synchronised clock): empty, cabinets
        locked, and checked by a last leaver if it was used today; else the alarm."""
        if not self._closing_at or not now.synced:
            return []
        local = self._local(now)
        open_day = self.calendar.closed(local.date()) is None
        out: list[Action] = []
        for due in self.state.closing.due(local, self._closing_at, open_day):
            area = due.area
            inside = sorted(self.state.occupancy.get(area, {}))
            open_ = [n for n, st in self._cabinet_states(area).items() if st != "locked"]
            unchecked = bool(self._area_cabinets(area)) and self.state.closing.needs_check(
                area, due.day
            )
            if not (inside or open_ or unchecked):
                continue
            f: dict[str, Any] = {
                "area": area,
                "day": due.day.isoformat(),
                "inside": inside,
                "open_cabinets": open_,
                "lockcheck_today": not unchecked,
            }
            doubt = sorted(self.state.untapped.uncertain.get(area, set()) & set(inside))
            if doubt:
                f["uncertain"] = doubt
            self.state.closing.alarmed(area, due.day)
            out += [Record("alarm.area_not_closed", f), *self._outputs()]
        return out

    def _expiry_warning(self, now: Now) -> list[Action]:
        """Once a day, the people whose rights end soon (R5)."""
        if self.acl is None or not now.synced:
            return []
        today = self._local(now).date()
        if self.state.expiry_warned_on == today.isoformat():
            return []
        self.state.expiry_warned_on = today.isoformat()
        soon = self.acl.expiring(today, self.cfg.policy.expiry_warning_days)
        if not soon:
            return []
        return [
            Record(
                "acl.expiring",
                {
                    "within_days": self.cfg.policy.expiry_warning_days,
                    "people": [
                        {"id": p.id, "valid_until": p.valid_until.isoformat()} for p in soon
                    ],
                },
            )
        ]

    def revert_unrecorded(self, actions: list[Action]) -> None:
        """The journal refused the records of a step: what was not recorded did not
        happen; undo the grants, unlocks, releases and PIN changes among them."""
        for a in actions:
            if isinstance(a, StorePin):
                self.state.local_pins.pop(a.person, None)  # the old PIN holds
            if isinstance(a, Record) and a.type == "door.granted" and a.fields.get("person"):
                area = a.fields.get("area", "")
                self.state.occupancy.get(area, {}).pop(a.fields["person"], None)
                self.state.stays.left(area, a.fields["person"])
                self.state.escorts.forget(area, a.fields["person"])
            elif isinstance(a, SetLock) and a.unlocked and a.needs_record:
                self.state.doors[a.door].revert_unlock()
            elif isinstance(a, SetCabinetLock) and a.unlocked and a.needs_record:
                self.state.cabinet_release.pop(a.cabinet, None)

    # -- indicators ------------------------------------------------------------------
    def alarm_active(self) -> bool:
        s = self.state
        return (
            s.tamper
            or bool(s.readers_lost)
            or any(d.alarm for d in s.doors.values())
            or s.escorts.alarm()
            or s.closing.alarm()
            or s.open_cabinets.alarm()
        )

    def _outputs(self) -> list[Action]:
        alarm = self.alarm_active()
        attention = bool(self.state.lockcheck_open)
        unlocked = any(d.unlocked for d in self.state.doors.values())
        waiting = (
            bool(self.state.prompts)
            or bool(self.state.escorts.waiting)
            or bool(self.state.untapped.offers)
        )
        return indicators(alarm=alarm, attention=attention, unlocked=unlocked, waiting=waiting)

    def snapshot(self) -> dict[str, Any]:
        """State for ``edged sim state`` / ``edged status``: no PINs, no key buffers."""
        s = self.state
        return {
            "doors": {n: d.snapshot() for n, d in s.doors.items()},
            "occupancy": {a: sorted(people) for a, people in s.occupancy.items()},
            "prompts": {
                d: {"step": pr.step, "person": pr.person.id} for d, pr in s.prompts.items()
            },
            "lockcheck_open": dict(s.lockcheck_open),
            "uncertain": {a: sorted(v) for a, v in s.untapped.uncertain.items() if v},
            "last_out_offers": {d: o.area for d, o in s.untapped.offers.items()},
            "not_closed": {a: d.isoformat() for a, d in s.closing.open_alarm.items()},
            "cabinets_released": sorted(s.cabinet_release),
            "waiting_visitors": sorted(s.escorts.waiting),
            "unescorted": {a: sorted(v) for a, v in s.escorts.unescorted.items() if v},
            "locked_out_cards": len(s.lockout.until),
            "readers_lost": dict(s.readers_lost),
            "tamper": s.tamper,
            "alarm": self.alarm_active(),
            "acl_version": self.acl.version if self.acl else None,
        }
