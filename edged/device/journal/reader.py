"""Reading a journal from another thread or process: the sync agent (its outbox), the
ledger report, tools. A read-only connection; the queries live here, beside the store
that writes them, so the journal owns all of its SQL.

Methods raise :class:`sqlite3.Error` as it comes: a reader decides for itself what a
storage fault means (the sync agent keeps its session and reads through a fresh reader).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edged.device.journal.schema import connect
from edged.protocol.records import GENESIS, Record, parse_ts


class JournalReader:
    """A read-only view of a journal file. ``close()`` is idempotent."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = connect(self.path, readonly=True)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise sqlite3.ProgrammingError(f"{self.path}: reader is closed")
        return self._conn

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, GENESIS) when empty."""
        row = self.conn.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def page(self, from_seq: int, limit: int) -> list[Record]:
        """Up to ``limit`` records from ``from_seq`` on, in seq order (gaps allowed)."""
        rows = self.conn.execute(
            "SELECT seq, type, body, hash, sig FROM records WHERE seq >= ? ORDER BY seq LIMIT ?",
            (from_seq, limit),
        ).fetchall()
        return [Record(seq=s, type=t, body=b.encode(), hash=h, sig=g) for s, t, b, h, g in rows]

    def hash_at(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def newest_checkpoint(self) -> int | None:
        row = self.conn.execute("SELECT max(seq) FROM records WHERE type = 'checkpoint'").fetchone()
        return row[0] if row else None

    def bodies(self) -> Iterator[dict[str, Any]]:
        """Every record, parsed, in seq order (the ledger reads the journal once)."""
        for (body,) in self.conn.execute("SELECT body FROM records ORDER BY seq"):
            yield json.loads(body)

    def first_synced_per_boot(self) -> dict[str, tuple[int, int]]:
        """Per boot, its first record made under a synchronised clock: (mono ns, wall ms).
        Records of a boot made before synchronisation are placed from it (the ledger)."""
        out: dict[str, tuple[int, int]] = {}
        rows = self.conn.execute(
            "SELECT json_extract(body, '$.boot_id'),"
            " coalesce(json_extract(body, '$.mono_us') * 1000,"
            " json_extract(body, '$.mono_ns')), ts"
            " FROM records WHERE json_extract(body, '$.clock_synced') ORDER BY seq"
        )
        for boot, mono, ts in rows:
            if boot not in out and isinstance(mono, int):
                out[boot] = (mono, parse_ts(ts))
        return out

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> JournalReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
