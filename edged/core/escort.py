"""Visitors and their escorts (R2). A sub-machine of the core: who waits at which door
for an escort, which escort just went in, who escorts whom inside, and which visitors
were left without one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from edged.core.policy import Person


@dataclass(frozen=True)
class WaitingVisitor:
    """A visitor who tapped and waits for an escort's card until ``until`` (mono ns)."""

    person: Person
    card: str
    until: int


@dataclass(frozen=True)
class RecentEscort:
    """An escort who went in at ``at`` (mono ns): a visitor may follow for a while."""

    person: Person
    at: int


@dataclass(frozen=True)
class Handover:
    """What an escort's leaving did: the visitors handed to ``to``, or left alone."""

    visitors: list[str]
    to: str | None


@dataclass
class Escorts:
    waiting: dict[str, WaitingVisitor] = field(default_factory=dict)  # door ->
    recent: dict[str, RecentEscort] = field(default_factory=dict)  # door ->
    # area -> visitor id -> the escort who is with them
    escorting: dict[str, dict[str, str]] = field(default_factory=dict)
    # area -> visitors inside whose escort left with nobody to take over (an alarm state)
    unescorted: dict[str, set[str]] = field(default_factory=dict)

    def followed(self, door: str, mono: int, window_ns: int) -> Person | None:
        """The escort who went in at ``door`` within ``window_ns``, if any."""
        r = self.recent.get(door)
        return r.person if r is not None and mono - r.at <= window_ns else None

    def wait(self, door: str, visitor: Person, card: str, until: int) -> None:
        self.waiting[door] = WaitingVisitor(visitor, card, until)

    def take_waiting(self, door: str, mono: int) -> WaitingVisitor | None:
        """The visitor waiting at ``door`` (now taken in by the escort who tapped)."""
        w = self.waiting.get(door)
        if w is None or mono > w.until:
            return None
        del self.waiting[door]
        return w

    def expired(self, mono: int) -> list[tuple[str, WaitingVisitor]]:
        """Waiting visitors whose escort never came (removed)."""
        out = [(d, w) for d, w in self.waiting.items() if mono >= w.until]
        for d, _w in out:
            del self.waiting[d]
        return out

    def entered(self, area: str, visitor: str, escort: str) -> None:
        self.escorting.setdefault(area, {})[visitor] = escort

    def went_in(self, door: str, escort: Person, mono: int) -> None:
        self.recent[door] = RecentEscort(escort, mono)

    def left(
        self, area: str, pid: str, can_take_over: Callable[[str], bool], inside: dict[str, str]
    ) -> Handover | None:
        """``pid`` has left ``area``. A visitor's own exit ends their escort; an escort
        who leaves visitors behind hands them to another escort inside (the first by
        id), or leaves them unescorted. None when nobody was left behind."""
        escorting = self.escorting.get(area, {})
        escorting.pop(pid, None)
        self.unescorted.get(area, set()).discard(pid)
        behind = sorted(v for v, e in escorting.items() if e == pid)
        if not behind:
            return None
        takers = sorted(q for q in inside if q not in escorting and can_take_over(q))
        if takers:
            for v in behind:
                escorting[v] = takers[0]
            return Handover(behind, takers[0])
        for v in behind:
            del escorting[v]
        self.unescorted.setdefault(area, set()).update(behind)
        return Handover(behind, None)

    def forget(self, area: str, pid: str | None = None) -> None:
        """``pid``'s escort record (a grant that was not recorded), or the whole area's
        (occupancy reset)."""
        if pid is None:
            self.escorting.pop(area, None)
            self.unescorted.pop(area, None)
        else:
            self.escorting.get(area, {}).pop(pid, None)

    def alarm(self) -> bool:
        return any(self.unescorted.values())

    def deadlines(self) -> list[int]:
        return [w.until for w in self.waiting.values()]
