"""The entry/exit ledger (入退室管理表) of one door's journal, verified (R1, R16); the
ledger itself (rows, CSV, printable HTML) is :mod:`edged.ledger`."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from edged.device.journal.reader import JournalReader
from edged.device.journal.verify import VerifyResult
from edged.ledger import Ledger, add_records, new_ledger, to_csv, to_html

__all__ = ["build_ledger", "to_csv", "to_html"]


def build_ledger(
    db: Path, start: dt.date, end: dt.date, tz_name: str, verify: VerifyResult | None
) -> Ledger:
    """Read the journal once, in seq order, and assemble the period's ledger."""
    led = new_ledger(start, end, tz_name, verify)
    with JournalReader(db) as reader:
        add_records(led, reader.bodies(), reader.first_synced_per_boot())
    return led
