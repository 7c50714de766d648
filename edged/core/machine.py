"""The door state machine: pure, single-threaded, clock handed in (Invariant 1, 3).

``handle(event, now_ns)`` and ``tick(now_ns)`` return actions; the daemon executes them,
committing every :class:`Record` before any :class:`SetLock` of the same step.
``next_deadline()`` tells the daemon how long it may wait for the next event.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edged.config import Config
from edged.core.actions import Action, Indicate, Record, SetLock
from edged.events import (
    CabinetChanged,
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

NS = 1_000_000_000


@dataclass
class DoorState:
    """What the core knows about one door."""

    closed: bool = True
    unlocked_until: int | None = None  # mono ns; None = locked
    opened_at: int | None = None
    authorised_open: bool = False  # the current opening was granted or requested from inside
    held_alarm: bool = False
    forced_alarm: bool = False


@dataclass
class CoreState:
    """Everything the core keeps between events."""

    doors: dict[str, DoorState] = field(default_factory=dict)
    readers_lost: dict[str, str] = field(default_factory=dict)
    tamper: bool = False
    cabinets: dict[str, bool] = field(default_factory=dict)


class Core:
    """Decisions for doors, readers, tamper and cabinets."""

    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.state = CoreState(doors={n: DoorState() for n in config.doors})
        self._door_of_reader = {}
        for d in config.doors.values():
            self._door_of_reader[d.entry_reader] = (d.name, "entry")
            if d.exit_reader:
                self._door_of_reader[d.exit_reader] = (d.name, "exit")

    # -- events ----------------------------------------------------------------------
    def handle(self, ev: Event, now: int) -> list[Action]:
        """Actions for one event, in the order they must happen."""
        match ev:
            case CardPresented():
                return self._card(ev, now)
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
            case ReaderLost():
                self.state.readers_lost[ev.reader] = ev.reason
                return [
                    Record("alarm.reader_lost", {"reader": ev.reader, "reason": ev.reason[:200]}),
                    *self._alarm_outputs(),
                ]
            case ReaderFound():
                was_lost = self.state.readers_lost.pop(ev.reader, None)
                return [
                    Record("reader.found", {"reader": ev.reader, "was_lost": was_lost is not None}),
                    *self._alarm_outputs(),
                ]
            case Tamper():
                if ev.active == self.state.tamper:
                    return []
                self.state.tamper = ev.active
                rtype = "alarm.tamper" if ev.active else "tamper.cleared"
                return [Record(rtype, {}), *self._alarm_outputs()]
            case DoorContact():
                return self._contact(ev, now)
            case ExitButton():
                return self._exit_button(ev, now)
            case CabinetChanged():
                self.state.cabinets[ev.cabinet] = ev.locked
                c = self.cfg.cabinets.get(ev.cabinet)
                return [
                    Record(
                        "cabinet.locked" if ev.locked else "cabinet.unlocked",
                        {"cabinet": ev.cabinet, "area": c.area if c else None},
                    )
                ]
            case KeypadKey():
                return []  # keys matter only inside a PIN/purpose/confirmation prompt
            case DriverFault():
                return [
                    Record("alarm.driver_fault", {"device": ev.device, "reason": ev.reason[:200]}),
                    *self._alarm_outputs(),
                ]
        return [Record("event.unknown", {"event": type(ev).__name__})]

    def _card(self, ev: CardPresented, now: int) -> list[Action]:
        door, direction = self._door_of_reader.get(ev.reader, (None, None))
        if door is None:
            return [
                Record(
                    "door.denied",
                    {"reader": ev.reader, "card": ev.card, "reason": "reader_not_bound"},
                )
            ]
        # Access decisions come with the access list; until one is loaded, deny.
        return [
            Record(
                "door.denied",
                {
                    "door": door,
                    "direction": direction,
                    "reader": ev.reader,
                    "card": ev.card,
                    "card_kind": ev.kind,
                    "reason": "no_access_list",
                },
            )
        ]

    def _unlock(self, door: str, now: int, needs_record: bool) -> list[Action]:
        d = self.state.doors[door]
        d.unlocked_until = now + int(self.cfg.doors[door].unlock_seconds * NS)
        d.authorised_open = True
        return [SetLock(door, True, needs_record=needs_record)]

    def _exit_button(self, ev: ExitButton, now: int) -> list[Action]:
        if ev.door not in self.state.doors:
            return [Record("event.unknown_door", {"door": ev.door})]
        return [
            Record("door.exit_request", {"door": ev.door, "person": None}),
            *self._unlock(ev.door, now, needs_record=False),
        ]

    def _contact(self, ev: DoorContact, now: int) -> list[Action]:
        d = self.state.doors.get(ev.door)
        if d is None or d.closed == ev.closed:
            return []
        d.closed = ev.closed
        out: list[Action] = []
        if not ev.closed:
            d.opened_at = now
            if d.authorised_open:
                out.append(Record("door.opened", {"door": ev.door}))
            else:
                d.forced_alarm = True
                out += [
                    Record(
                        "alarm.door_forced", {"door": ev.door, "area": self.cfg.doors[ev.door].area}
                    ),
                    *self._alarm_outputs(),
                ]
            return out
        # Closed: relock at once (the strike need not wait for its timer) and clear.
        out.append(
            Record(
                "door.closed",
                {"door": ev.door, "open_ms": (now - (d.opened_at or now)) // 1_000_000},
            )
        )
        if d.held_alarm or d.forced_alarm:
            out.append(
                Record(
                    "alarm.cleared",
                    {"door": ev.door, "was": "held_open" if d.held_alarm else "forced"},
                )
            )
        d.opened_at = None
        d.authorised_open = False
        d.held_alarm = d.forced_alarm = False
        if d.unlocked_until is not None:
            d.unlocked_until = None
            out.append(SetLock(ev.door, False))
        out += self._alarm_outputs()
        return out

    # -- time ------------------------------------------------------------------------
    def next_deadline(self) -> int | None:
        """The earliest mono ns at which ``tick`` has work, or None."""
        times = []
        for name, d in self.state.doors.items():
            if d.unlocked_until is not None:
                times.append(d.unlocked_until)
            if d.opened_at is not None and not d.held_alarm:
                times.append(d.opened_at + int(self.cfg.doors[name].held_open_seconds * NS))
        return min(times) if times else None

    def tick(self, now: int) -> list[Action]:
        out: list[Action] = []
        for name, d in self.state.doors.items():
            if d.unlocked_until is not None and now >= d.unlocked_until:
                d.unlocked_until = None
                if d.closed:
                    d.authorised_open = False  # never opened: the grant lapses
                out.append(SetLock(name, False))
            limit = self.cfg.doors[name].held_open_seconds
            if d.opened_at is not None and not d.held_alarm and now - d.opened_at >= limit * NS:
                d.held_alarm = True
                out += [
                    Record("alarm.door_held_open", {"door": name, "seconds": int(limit)}),
                    *self._alarm_outputs(),
                ]
        return out

    # -- indicators ------------------------------------------------------------------
    def alarm_active(self) -> bool:
        s = self.state
        return (
            s.tamper
            or bool(s.readers_lost)
            or any(d.held_alarm or d.forced_alarm for d in s.doors.values())
        )

    def _alarm_outputs(self) -> list[Action]:
        on = self.alarm_active()
        return [Indicate("red", on), Indicate("buzzer", on)]

    def snapshot(self) -> dict[str, Any]:
        """State for ``edged sim state`` / ``edged status``."""
        s = self.state
        return {
            "doors": {
                n: {
                    "closed": d.closed,
                    "unlocked": d.unlocked_until is not None,
                    "held_open_alarm": d.held_alarm,
                    "forced_alarm": d.forced_alarm,
                }
                for n, d in s.doors.items()
            },
            "readers_lost": dict(s.readers_lost),
            "tamper": s.tamper,
            "alarm": self.alarm_active(),
        }
