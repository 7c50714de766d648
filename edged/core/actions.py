"""What the core asks the daemon to do. The daemon records first, then acts (Invariant 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Action:
    """Base of all actions."""


@dataclass(frozen=True)
class Record(Action):
    """Append a journal record. Alarms are records whose type starts with ``alarm.``."""

    type: str
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def is_alarm(self) -> bool:
        return self.type.startswith("alarm.")


@dataclass(frozen=True)
class SetLock(Action):
    """Lock or unlock a door.

    ``needs_record``: only if the records of the same step were committed. A grant needs
    its record; an exit does not, because exit is never blocked by software (Invariant 4).
    """

    door: str
    unlocked: bool
    needs_record: bool = True


@dataclass(frozen=True)
class Indicate(Action):
    """Switch an indicator (``buzzer``, ``green``, ``red``); ``blink`` for attention
    patterns (cabinets left open at the lock check)."""

    name: str
    on: bool
    blink: bool = False
