"""Cabinets left open too long (R7, R17; ``000`` 【3】(ア)②3: cabinets are locked as soon as
the work no longer needs them). A sub-machine of the core: its own state, monotonic times
handed in, outcomes returned.

At ``max_open_minutes`` an open cabinet is :class:`Overdue` without ``alarm`` (a reminder
the door's display names), at twice as long with ``alarm`` (red LED, until it is locked). Locking
it ends both; an alarm raised is then cleared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NS = 1_000_000_000


@dataclass(frozen=True)
class Overdue:
    """``cabinet`` has been open ``minutes``: a reminder, or (``alarm``) too long."""

    cabinet: str
    minutes: float
    alarm: bool


@dataclass
class OpenCabinets:
    """``since``: cabinet -> mono ns it opened (only cabinets with a limit); ``stage``:
    cabinet -> 1 reminded, 2 alarmed."""

    limits: dict[str, float] = field(default_factory=dict)  # cabinet -> minutes
    since: dict[str, int] = field(default_factory=dict)
    stage: dict[str, int] = field(default_factory=dict)

    def opened(self, cabinet: str, mono: int) -> None:
        if cabinet in self.limits and cabinet not in self.since:
            self.since[cabinet] = mono

    def locked(self, cabinet: str) -> bool:
        """Locked again: whether an alarm was raised for it (the core clears it)."""
        self.since.pop(cabinet, None)
        return self.stage.pop(cabinet, 0) == 2

    def _due(self, cabinet: str) -> int:
        step = int(self.limits[cabinet] * 60 * NS)
        return self.since[cabinet] + step * (self.stage.get(cabinet, 0) + 1)

    def tick(self, mono: int) -> list[Overdue]:
        out: list[Overdue] = []
        for cabinet in sorted(self.since):
            stage = self.stage.get(cabinet, 0)
            if stage < 2 and mono >= self._due(cabinet):
                self.stage[cabinet] = stage + 1
                minutes = self.limits[cabinet] * (stage + 1)
                out.append(Overdue(cabinet, minutes, alarm=stage == 1))
        return out

    def deadlines(self) -> list[int]:
        return [self._due(c) for c in self.since if self.stage.get(c, 0) < 2]

    def alarm(self) -> bool:
        return 2 in self.stage.values()
