"""What the core asks the daemon to do. The daemon records first, then acts (Invariant 2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from edged.protocol.records import RecordType, is_alarm

# The keypad's steps, in the order an entry asks them (R1, R3, R4, R6).
Step = Literal[
    "admin",
    "pin",
    "pin_new",
    "pin_repeat",
    "purpose",
    "carry_in",
    "lockcheck",
    "carry_out",
    "carry_out_approval",
]

# Why a door says no: the ``reason`` of every door.denied (R1), so a misspelt reason is a
# type error and the ledger's legend can list them all.
Denial = Literal[
    "reader_not_bound",
    "no_access_list",
    "unknown_card",
    "clock_untrusted",
    "not_yet_valid",
    "expired",
    "area_not_allowed",
    "outside_window",
    "holiday",
    "pin_locked_out",
    "already_inside",
    "pin_not_enrolled",
    "no_keypad",
    "pin_wrong",
    "purpose_invalid",
    "carry_in_invalid",
    "admin_choice_invalid",
    "prompt_cancelled",
    "prompt_timeout",
    "escort_needed",
    "not_custodian",
    "not_inside",
    "pin_expired",
    "pin_change_failed",
    "card_auth_failed",  # the card did not prove its key (a copy, a wrong key, a replay)
    "card_kind_not_allowed",  # the area accepts only cards that prove themselves
]


@dataclass(frozen=True)
class Action:
    """Base of all actions."""


@dataclass(frozen=True)
class Record(Action):
    """Append a journal record. Alarms are records whose type starts with ``alarm.``."""

    type: RecordType
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def is_alarm(self) -> bool:
        return is_alarm(self.type)


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
class SetCabinetLock(Action):
    """Release or relock a cabinet's electric lock; a release needs its record (R17)."""

    cabinet: str
    unlocked: bool
    needs_record: bool = True


@dataclass(frozen=True)
class StorePin(Action):
    """Keep a PIN changed at this door (its hash only), on this device alone (R19)."""

    person: str
    hash: str
    set_on: str  # YYYY-MM-DD
    expires: str

    def __repr__(self) -> str:  # logs name the action, never the hash
        return f"StorePin(person={self.person!r}, expires={self.expires!r})"


@dataclass(frozen=True)
class Indicate(Action):
    """Switch an indicator (``buzzer``, ``green``, ``red``); ``blink`` for attention
    patterns (cabinets left open at the lock check)."""

    name: str
    on: bool
    blink: bool = False
