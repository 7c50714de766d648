"""Wrong PINs in a row and the lock-outs they earn, per card (R3). A sub-machine of the
core: its own state, monotonic times handed in."""

from __future__ import annotations

from dataclasses import dataclass, field

NS = 1_000_000_000


@dataclass
class PinLockout:
    """``failures``: card -> wrong PINs in a row; ``until``: card -> end of its lock-out
    (monotonic ns)."""

    attempts: int = 5
    minutes: float = 15.0
    failures: dict[str, int] = field(default_factory=dict)
    until: dict[str, int] = field(default_factory=dict)

    def locked(self, card: str, mono: int) -> bool:
        """Is ``card`` locked out now? An expired lock-out is forgotten."""
        end = self.until.get(card)
        if end is None:
            return False
        if mono < end:
            return True
        del self.until[card]
        return False

    def wrong(self, card: str, mono: int) -> tuple[int, bool]:
        """A wrong PIN: (attempts in a row, whether this one locked the card out)."""
        n = self.failures.get(card, 0) + 1
        if n < self.attempts:
            self.failures[card] = n
            return n, False
        self.failures.pop(card, None)
        self.until[card] = mono + int(self.minutes * 60 * NS)
        return n, True

    def right(self, card: str) -> None:
        """The right PIN, or a grant: the count starts again."""
        self.failures.pop(card, None)

    def deadlines(self) -> list[int]:
        return list(self.until.values())

    def tick(self, mono: int) -> None:
        for card, end in list(self.until.items()):
            if mono >= end:
                del self.until[card]
