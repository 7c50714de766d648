"""Refused inbound access lists, recorded within bounds: anyone on the broker can send
them, and a flood must not fill the journal. The first refusal of an interval is
recorded in full with an alarm; the rest are counted by reason into one alarm when the
interval ends."""

from __future__ import annotations

from dataclasses import dataclass, field

from edged.core.actions import Record


@dataclass
class Refusals:
    interval: float  # seconds
    open_until: float | None = None  # monotonic seconds; None: quiet
    count: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    since: str = ""
    total: int = 0  # since start (tests, metrics)

    def refused(self, reason: str, detail: str, mono: float, ts: str) -> list[Record]:
        """A refusal: the records to write now (none while an interval is open)."""
        self.total += 1
        if self.open_until is not None:
            self.count += 1
            self.reasons[reason] = self.reasons.get(reason, 0) + 1
            return []
        self._open(mono, ts)
        return [
            Record("acl.rejected", {"reason": reason, "detail": detail[:300]}),
            Record("alarm.acl_rejected", {"reason": reason, "refused": 1}),
        ]

    def due(self, mono: float, ts: str) -> list[Record]:
        """At the end of an interval: the count, if anything was refused in it."""
        if self.open_until is None or mono < self.open_until:
            return []
        if self.count == 0:
            self.open_until = None  # quiet: the next refusal is recorded in full
            return []
        fields = {
            "reason": max(self.reasons, key=lambda r: self.reasons[r]),
            "refused": self.count,
            "reasons": dict(sorted(self.reasons.items())),
            "since": self.since,
        }
        self._open(mono, ts)
        return [Record("alarm.acl_rejected", fields)]

    def _open(self, mono: float, ts: str) -> None:
        self.open_until = mono + self.interval
        self.count, self.reasons, self.since = 0, {}, ts
