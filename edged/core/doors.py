"""One door's timing and contact: the strike's unlock window, authorised and forced
openings, held open too long (R8). A sub-machine of the core; the core adds the
indicators after any change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edged.core.actions import Action, Record, SetLock
from edged.core.policy import DoorConfig

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
class Door:
    cfg: DoorConfig
    s: DoorState = field(default_factory=DoorState)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def alarm(self) -> bool:
        return self.s.held_alarm or self.s.forced_alarm

    @property
    def unlocked(self) -> bool:
        return self.s.unlocked_until is not None

    @property
    def closed(self) -> bool:
        return self.s.closed

    def unlock(self, mono: int) -> None:
        """Open the strike for the unlock window: the next opening is authorised."""
        self.s.unlocked_until = mono + int(self.cfg.unlock_seconds * NS)
        self.s.authorised_open = True

    def revert_unlock(self) -> None:
        """An unlock whose record the journal refused: it never happened."""
        self.s.unlocked_until = None
        if self.s.closed:
            self.s.authorised_open = False

    def contact(self, closed: bool, mono: int) -> list[Action] | None:
        """The door contact changed; None when it did not."""
        d = self.s
        if d.closed == closed:
            return None
        d.closed = closed
        if not closed:
            d.opened_at = mono
            if d.authorised_open:
                return [Record("door.opened", {"door": self.name})]
            d.forced_alarm = True
            return [Record("alarm.door_forced", {"door": self.name, "area": self.cfg.area})]
        # Closed: relock at once (the strike need not wait for its timer) and clear.
        out: list[Action] = [
            Record(
                "door.closed",
                {"door": self.name, "open_ms": (mono - (d.opened_at or mono)) // 1_000_000},
            )
        ]
        if d.held_alarm or d.forced_alarm:
            was = "held_open" if d.held_alarm else "forced"
            out.append(Record("alarm.cleared", {"door": self.name, "was": was}))
        d.opened_at = None
        d.authorised_open = False
        d.held_alarm = d.forced_alarm = False
        if d.unlocked_until is not None:
            d.unlocked_until = None
            out.append(SetLock(self.name, False))
        return out

    def deadlines(self) -> list[int]:
        d, out = self.s, list[int]()
        if d.unlocked_until is not None:
            out.append(d.unlocked_until)
        if d.opened_at is not None and not d.held_alarm:
            out.append(d.opened_at + int(self.cfg.held_open_seconds * NS))
        return out

    def tick(self, mono: int) -> list[Action]:
        """The unlock window ending (relock) and the held-open alarm."""
        d, out = self.s, list[Action]()
        if d.unlocked_until is not None and mono >= d.unlocked_until:
            d.unlocked_until = None
            if d.closed:
                d.authorised_open = False  # never opened: the grant lapses
            out.append(SetLock(self.name, False))
        limit = self.cfg.held_open_seconds
        if d.opened_at is not None and not d.held_alarm and mono - d.opened_at >= limit * NS:
            d.held_alarm = True
            out.append(Record("alarm.door_held_open", {"door": self.name, "seconds": int(limit)}))
        return out

    def snapshot(self) -> dict[str, Any]:
        return {
            "closed": self.s.closed,
            "unlocked": self.unlocked,
            "held_open_alarm": self.s.held_alarm,
            "forced_alarm": self.s.forced_alarm,
        }
