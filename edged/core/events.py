"""Events: what the drivers tell the core. Plain frozen data, safe to pass between threads.

Drivers run in their own threads (pyscard, gpiozero, paho); they only build these and
put them on the core's queue. No event carries a raw card number: the driver turns the
identifier into a keyed fingerprint before anything leaves it (R11).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    """Base of all events; ``mono_ns`` is when the driver saw it (injected clock)."""

    mono_ns: int = field(default=0, kw_only=True)


@dataclass(frozen=True)
class CardPresented(Event):
    """A card was read on a reader; ``card`` is its keyed fingerprint, never the raw id.
    ``proof``: how the card proved it is that card ("desfire": its AES key, "piv": its
    Card Authentication key); empty for an identifier only, which anyone can copy."""

    reader: str
    card: str
    kind: str
    proof: str = ""


@dataclass(frozen=True)
class CardAuthFailed(Event):
    """A card claimed to be one that proves itself and did not prove it: a copy, a wrong
    key, a replayed exchange. ``card``: the fingerprint of the identity it claimed, if it
    named one."""

    reader: str
    kind: str
    reason: str
    card: str = ""


@dataclass(frozen=True)
class CardRemoved(Event):
    """The card left the reader."""

    reader: str


@dataclass(frozen=True)
class CardUnreadable(Event):
    """A card was present but did not give a usable identifier."""

    reader: str
    reason: str


@dataclass(frozen=True)
class ReaderLost(Event):
    """A configured reader disappeared (unplugged, pcscd gone)."""

    reader: str
    reason: str


@dataclass(frozen=True)
class ReaderFound(Event):
    """A configured reader is (back) in service."""

    reader: str


@dataclass(frozen=True)
class DoorContact(Event):
    """The door contact changed: ``closed`` True when the door is shut."""

    door: str
    closed: bool


@dataclass(frozen=True)
class ExitButton(Event):
    """Request-to-exit pressed on the inside of a door."""

    door: str


@dataclass(frozen=True)
class Tamper(Event):
    """The enclosure tamper switch changed: ``active`` True when the box is open."""

    active: bool


@dataclass(frozen=True)
class Presence(Event):
    """An area's presence sensor (PIR) changed: ``motion`` True while it sees someone, or
    while its wire is cut."""

    area: str
    motion: bool


@dataclass(frozen=True)
class CabinetChanged(Event):
    """A cabinet's reed switch changed: ``locked`` True when it reads the locked state."""

    cabinet: str
    locked: bool


@dataclass(frozen=True)
class KeypadKey(Event):
    """One key from a keypad: digits, ``*`` (clear), ``#`` (submit), ``A``-``D``."""

    keypad: str
    key: str


@dataclass(frozen=True)
class DriverFault(Event):
    """A driver hit an error it could not handle itself; the core decides what it means."""

    device: str
    reason: str


EventSink = Callable[[Event], None]
