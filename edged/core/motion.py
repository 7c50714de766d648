"""An area's presence sensor (R6, R7; issue 37): a PIR that says whether anyone moves
there. Counting people at the door goes wrong in ordinary ways (two through one unlock,
an exit by the button); the sensor is the area's own witness. A sub-machine of the core:
its own state, monotonic times handed in, outcomes returned.

- No motion for ``presence_empty_minutes`` after an exit: the area is empty, whatever
  the count says (:meth:`Motion.due` names it; the core counts everyone out, recorded).
- Motion while the area is counted empty after its closing time: someone is there who
  never came in through the door (``alarm.presence_after_closing``), until someone does.

A cut wire reads as motion (the alarm contact opens), so a broken sensor never confirms
an empty room.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NS = 1_000_000_000


@dataclass
class Motion:
    """``limits``: area -> ns of stillness after an exit that confirms it empty;
    ``moving``: area -> seen now; ``still_since``: area -> mono when motion last ended;
    ``exit_at``: area -> mono of an exit not yet confirmed; ``alarmed``: areas whose
    alarm stands."""

    limits: dict[str, int] = field(default_factory=dict)
    moving: dict[str, bool] = field(default_factory=dict)
    still_since: dict[str, int] = field(default_factory=dict)
    exit_at: dict[str, int] = field(default_factory=dict)
    alarmed: set[str] = field(default_factory=set)

    def seen(self, area: str, motion: bool, mono: int) -> bool:
        """The sensor changed: whether motion started."""
        was = self.moving.get(area, False)
        self.moving[area] = motion
        if was and not motion:
            self.still_since[area] = mono
        return motion and not was

    def exited(self, area: str, mono: int) -> None:
        if area in self.limits:
            self.exit_at[area] = mono

    def _due_at(self, area: str) -> int:
        return max(self.exit_at[area], self.still_since.get(area, 0)) + self.limits[area]

    def due(self, mono: int) -> list[str]:
        """Areas still since an exit for their limit: empty. Each exit confirms once."""
        out = []
        for area in sorted(self.exit_at):
            if not self.moving.get(area, False) and mono >= self._due_at(area):
                del self.exit_at[area]
                out.append(area)
        return out

    def deadlines(self) -> list[int]:
        return [self._due_at(a) for a in self.exit_at if not self.moving.get(a, False)]

    def alarm(self) -> bool:
        return bool(self.alarmed)
