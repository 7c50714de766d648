"""Writing to a journal whose storage may fail (a full or dying SD card): what cannot be
recorded is counted, the fault is reported on the one channel that needs no journal, and
the first record once the journal works again accounts for the gap (R10, R14)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from edged.clock import Clock
from edged.core.actions import Record
from edged.device.journal.store import Journal
from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.records import Record as Committed
from edged.protocol.records import format_ts

log = get_logger("daemon")

RETRY_SECONDS = 5.0

# Told of a fault ({since, unrecorded, error}) or its end (None): the sync agent sends a
# signed alarm and the heartbeat's journal_ok, which need no journal.
FaultSink = Callable[[dict[str, Any] | None], None]


class GuardedJournal:
    """Appends through ``journal``; ``fault`` is None while it records."""

    def __init__(self, journal: Journal, clock: Clock, on_fault: FaultSink) -> None:
        self.journal = journal
        self._clock = clock
        self._on_fault = on_fault
        self.fault: dict[str, Any] | None = None
        self._retry_at = 0.0

    def _gap_record(self) -> Record:
        """What the journal writes first when it works again: the gap, accounted for."""
        f = self.fault
        assert f is not None
        return Record(
            "alarm.journal_unavailable",
            {"since": f["since"], "unrecorded": f["unrecorded"], "error": f["error"]},
        )

    def append(self, records: Sequence[Record]) -> list[Committed]:
        """Commit ``records`` (after the gap record, if the journal was down); raises
        EdgedError, counted, when the journal cannot record them."""
        batch = [self._gap_record(), *records] if self.fault else list(records)
        try:
            done = self.journal.append_many([(r.type, r.fields) for r in batch])
        except EdgedError as e:
            self._failed(e, len(records))
            raise
        if self.fault is not None:
            self._recovered()
        return done

    def retry(self) -> Committed | None:
        """Every few seconds while the journal is down, even with no event to record:
        the gap record, once it can be written."""
        if self.fault is None or time.monotonic() < self._retry_at:
            return None
        rec = self._gap_record()
        try:
            [done] = self.journal.append_many([(rec.type, rec.fields)])
        except EdgedError as e:
            self._retry_at = time.monotonic() + RETRY_SECONDS
            log.error("journal_still_unavailable", error=str(e))
            return None
        self._recovered()
        return done

    def _failed(self, e: EdgedError, lost: int) -> None:
        f = self.fault
        if f is None:
            f = self.fault = {
                "since": format_ts(self._clock.wall_ms()),
                "unrecorded": 0,
                "error": "",
            }
        f["unrecorded"] += lost
        f["error"] = str(e)[:300]
        self._retry_at = time.monotonic() + RETRY_SECONDS
        self._on_fault(dict(f))

    def _recovered(self) -> None:
        log.warning("journal_recovered", **(self.fault or {}))
        self.fault = None
        self._on_fault(None)
