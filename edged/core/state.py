"""What the core keeps between events, and what every sub-machine may read of it.

Each part of :class:`CoreState` is written by one sub-machine (named beside it); the
others read it. :func:`outputs` turns the whole state into the door's lights and buzzer,
which is why it lives here and not in any one sub-machine.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from edged.core.actions import Action, Step
from edged.core.closing import Closing
from edged.core.doors import Door
from edged.core.escort import Escorts
from edged.core.indicators import indicators
from edged.core.lockout import PinLockout
from edged.core.motion import Motion
from edged.core.occupancy import Stays, Untapped
from edged.core.open_cabinets import OpenCabinets
from edged.core.policy import Person

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
    """Everything the core keeps between events, by the sub-machine that writes it."""

    # the core itself (doors, readers, tamper)
    doors: dict[str, Door] = field(default_factory=dict)
    readers_lost: dict[str, str] = field(default_factory=dict)
    tamper: bool = False
    expiry_warned_on: str | None = None
    # entry (edged.core.entry) and leaving (edged.core.leaving)
    occupancy: dict[str, dict[str, str]] = field(default_factory=dict)  # area -> id -> name
    escorts: Escorts = field(default_factory=Escorts)
    stays: Stays = field(default_factory=Stays)  # since when each person is counted inside
    untapped: Untapped = field(default_factory=Untapped)  # exits without a tap
    closing: Closing = field(default_factory=Closing)  # closing time, per area
    lockcheck_open: dict[str, list[str]] = field(default_factory=dict)  # area -> open cabinets
    motion: Motion = field(default_factory=Motion)  # presence sensors (edged.core.motion)
    # keypad dialogues (edged.core.prompts)
    prompts: dict[str, Prompt] = field(default_factory=dict)  # door -> open dialogue
    lockout: PinLockout = field(default_factory=PinLockout)
    local_pins: dict[str, LocalPin] = field(default_factory=dict)  # person -> changed here
    # cabinets (edged.core.cabinets)
    cabinets: dict[str, bool] = field(default_factory=dict)  # cabinet -> locked
    cabinet_release: dict[str, int] = field(default_factory=dict)  # cabinet -> relock mono
    open_cabinets: OpenCabinets = field(default_factory=OpenCabinets)  # open too long


def alarm_active(s: CoreState) -> bool:
    return (
        s.tamper
        or bool(s.readers_lost)
        or any(d.alarm for d in s.doors.values())
        or s.escorts.alarm()
        or s.closing.alarm()
        or s.open_cabinets.alarm()
        or s.motion.alarm()
    )


def outputs(s: CoreState) -> list[Action]:
    """The lights and buzzer for the state as it is now: green follows the locks and the
    dialogues, red and buzzer the alarms and an unfinished lock check."""
    unlocked = any(d.unlocked for d in s.doors.values())
    waiting = bool(s.prompts) or bool(s.escorts.waiting) or bool(s.untapped.offers)
    return indicators(
        alarm=alarm_active(s), attention=bool(s.lockcheck_open), unlocked=unlocked,
        waiting=waiting,
    )  # fmt: skip


def snapshot(s: CoreState) -> dict[str, Any]:
    """State for ``edged sim state`` / ``edged status``: no PINs, no key buffers."""
    return {
        "doors": {n: d.snapshot() for n, d in s.doors.items()},
        "occupancy": {a: sorted(people) for a, people in s.occupancy.items()},
        "prompts": {d: {"step": pr.step, "person": pr.person.id} for d, pr in s.prompts.items()},
        "lockcheck_open": dict(s.lockcheck_open),
        "uncertain": {a: sorted(v) for a, v in s.untapped.uncertain.items() if v},
        "last_out_offers": {d: o.area for d, o in s.untapped.offers.items()},
        "not_closed": {a: d.isoformat() for a, d in s.closing.open_alarm.items()},
        "motion": {a: m for a, m in sorted(s.motion.moving.items())},
        "presence_alarm": sorted(s.motion.alarmed),
        "cabinets_released": sorted(s.cabinet_release),
        "waiting_visitors": sorted(s.escorts.waiting),
        "unescorted": {a: sorted(v) for a, v in s.escorts.unescorted.items() if v},
        "locked_out_cards": len(s.lockout.until),
        "readers_lost": dict(s.readers_lost),
        "tamper": s.tamper,
        "alarm": alarm_active(s),
    }
