"""What the sync agent keeps on disk: the last seq and hash the collector receipted
(R13). Publishing resumes after it; nothing below it is sent again. It is also a memory
of the journal's head that lives outside the journal file (R9)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from edged.device.journal.witness import Head
from edged.device.paths import StatePaths
from edged.log import get_logger

log = get_logger("sync")

_SAVE = "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)"


class SyncState:
    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        self._conn = self._connect()
        self._conn.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT)")
        rows = dict(self._conn.execute("SELECT key, value FROM state").fetchall())
        self.acked_seq = int(rows.get("acked_seq", 0))
        self.acked_hash = rows.get("acked_hash", "")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def save(self, seq: int, h: str) -> None:
        """Durably, before anything counts the records as kept apart."""
        rows = [("acked_seq", str(seq)), ("acked_hash", h)]
        try:
            self._conn.executemany(_SAVE, rows)
        except sqlite3.Error:
            # A storage fault may have left this connection on a file system that is
            # gone; try once through a fresh one (raises while the fault lasts).
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = self._connect()
            self._conn.executemany(_SAVE, rows)
        self.acked_seq, self.acked_hash = seq, h

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()


def receipted_head(state_dir: Path) -> Head | None:
    """The last receipted (seq, hash) in the sync state, read without changing anything:
    a memory of the journal's head that lives outside the journal file (R9)."""
    path = StatePaths(Path(state_dir)).sync_state
    if not path.exists():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = dict(conn.execute("SELECT key, value FROM state").fetchall())
        finally:
            conn.close()
        seq, h = int(rows.get("acked_seq", 0)), str(rows.get("acked_hash", ""))
    except (sqlite3.Error, ValueError):
        log.error("sync_state_unreadable", path=str(path))
        return None
    return Head(seq, h, "sync") if seq > 0 and h else None
