"""The entry/exit ledger (入退室管理表) of one door's journal, verified (R1, R16); the
ledger itself (rows, CSV, printable HTML) is :mod:`edged.ledger`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
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
    last: dict[str, object] = {}

    def remembered() -> Iterator[dict[str, object]]:
        for r in reader.bodies():
            last.clear()
            last.update(r)
            yield r

    with JournalReader(db) as reader:
        add_records(led, remembered(), reader.first_synced_per_boot())
    if last:  # the journal's own identity, as its newest record signs it
        who = "/".join(str(last[k]) for k in ("site", "device") if last.get(k))
        led.source = f"{who} (key {last.get('key_id')})".strip()
    return led
