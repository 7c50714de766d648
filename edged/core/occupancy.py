"""Exits without a tap, and the count they leave uncertain (R1, R6, R7). A sub-machine of
the core: its own state, monotonic times handed in, outcomes returned; it never calls
back into the core.

Someone who leaves by the exit button is not identified: the people counted inside at
that moment *may* have left. Before, they stayed "inside" for good, so the area never
emptied, no last leaver was ever asked to check the cabinets, and the next morning their
tap was refused as already inside. Now:

- the door offers the last-out check for a while (its display: "last out? tap your
  card"): a card at its exit reader in that time is an ordinary tap out, and the last one
  out checks the cabinets;
- the people counted inside at the press are *uncertain* until they are identified again
  (a tap in or out); a tap in by an uncertain person is let in, never refused as already
  inside; a tap out by someone whose every companion is uncertain runs the lock check;
- an offer nobody took is :class:`Unanswered`, which the core turns into
  ``alarm.exit_without_tap`` where the area requires tapping out.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Offer:
    """The last-out check offered at ``door`` after an exit without a tap."""

    door: str
    area: str
    inside: tuple[str, ...]  # counted inside at the press: who may have left
    deadline: int  # mono ns


@dataclass(frozen=True)
class Unanswered:
    """An offer that ran out with nobody tapping out: the outcome the core records."""

    offer: Offer


@dataclass
class Untapped:
    """``uncertain``: area -> people counted inside whose presence an untapped exit put in
    doubt; ``offers``: door -> its open offer."""

    uncertain: dict[str, set[str]] = field(default_factory=dict)
    offers: dict[str, Offer] = field(default_factory=dict)

    def exit_without_tap(
        self, door: str, area: str, inside: list[str], deadline: int | None
    ) -> Offer | None:
        """The exit button at ``door``: everyone counted inside becomes uncertain; an
        offer is opened when ``deadline`` is given (the door can ask)."""
        if not inside:
            return None
        self.uncertain.setdefault(area, set()).update(inside)
        if deadline is None:
            return None
        offer = Offer(door, area, tuple(sorted(inside)), deadline)
        self.offers[door] = offer
        return offer

    def identified(self, area: str, person: str) -> bool:
        """``person`` tapped in or out of ``area``: no longer uncertain. Whether they were."""
        doubt = self.uncertain.get(area)
        if doubt is None or person not in doubt:
            return False
        doubt.discard(person)
        if not doubt:
            del self.uncertain[area]
        return True

    def is_uncertain(self, area: str, person: str) -> bool:
        return person in self.uncertain.get(area, ())

    def all_uncertain(self, area: str, people: set[str]) -> bool:
        """Every one of ``people`` (non-empty) is uncertain: nobody is known to be there."""
        return bool(people) and people <= self.uncertain.get(area, set())

    def taken(self, door: str) -> Offer | None:
        """A card was tapped at ``door``'s exit reader: its offer, answered."""
        return self.offers.pop(door, None)

    def forget(self, area: str, keep: set[str] | None = None) -> None:
        """The area's count was set anew (emptied, reset): only ``keep`` may stay uncertain."""
        doubt = self.uncertain.pop(area, set()) & (keep or set())
        if doubt:
            self.uncertain[area] = doubt

    def tick(self, mono: int) -> list[Unanswered]:
        gone = [o for o in self.offers.values() if mono >= o.deadline]
        for o in gone:
            del self.offers[o.door]
        return [Unanswered(o) for o in gone]

    def deadlines(self) -> list[int]:
        return [o.deadline for o in self.offers.values()]


@dataclass
class Stays:
    """When each person counted inside went in (wall ms), so that nobody stays counted
    for days: someone who left without being counted (following another out) would be
    refused as already inside every morning after. ``since``: area -> person -> ms."""

    since: dict[str, dict[str, int]] = field(default_factory=dict)

    def entered(self, area: str, person: str, wall_ms: int) -> None:
        self.since.setdefault(area, {})[person] = wall_ms

    def left(self, area: str, person: str) -> None:
        self.since.get(area, {}).pop(person, None)

    def forget(self, area: str) -> None:
        self.since.pop(area, None)

    def overstayed(self, wall_ms: int, limits: dict[str, float]) -> list[tuple[str, str, int]]:
        """(area, person, since) of those counted longer than their area's limit (hours);
        they are forgotten here, the core records them and stops counting them."""
        out = []
        for area, hours in limits.items():
            people = self.since.get(area, {})
            for person, since in sorted(people.items()):
                if wall_ms - since >= hours * 3_600_000:
                    out.append((area, person, since))
                    del people[person]
        return out
