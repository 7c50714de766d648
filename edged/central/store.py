"""The central store on SQLite: one file for one office. It owns all of the central
side's SQL; the collector decides, the store keeps (records once per (site, device, seq),
the head of each device's chain, forks, discontinuities, alarms).

Writes are grouped: :meth:`begin` opens a transaction if none is open, :meth:`commit`
ends it; a receipt is only ever sent for what a commit covered.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from edged.protocol.records import GENESIS

Dev = tuple[str, str]  # (site, device)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (site TEXT, device TEXT, last_seq INTEGER NOT NULL,
       last_hash TEXT NOT NULL, best_checkpoint INTEGER NOT NULL DEFAULT 0,
       PRIMARY KEY (site, device))""",
    """CREATE TABLE IF NOT EXISTS records (site TEXT, device TEXT, seq INTEGER, type TEXT,
       ts TEXT, hash TEXT NOT NULL, body TEXT NOT NULL, sig_checked INTEGER NOT NULL,
       PRIMARY KEY (site, device, seq))""",
    # Records whose own signature is still to be checked (see audit_signatures).
    """CREATE INDEX IF NOT EXISTS records_unchecked ON records (site, device, seq)
       WHERE sig_checked = 0""",
    """CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, ts TEXT, site TEXT,
       device TEXT, type TEXT, detail TEXT)""",
    # Genuine records of a device that do not lie on its stored chain (its journal went
    # back and grew again): kept, verified, apart.
    """CREATE TABLE IF NOT EXISTS forks (site TEXT, device TEXT, seq INTEGER, hash TEXT,
       prev TEXT NOT NULL, type TEXT, ts TEXT, body TEXT NOT NULL,
       PRIMARY KEY (site, device, seq, hash))""",
    # Where a device's chain skips seqs: its journal went back from known_seq to found_seq
    # and continued at seq; central_seq is what this store held then.
    """CREATE TABLE IF NOT EXISTS discontinuities (site TEXT, device TEXT, seq INTEGER,
       found_seq INTEGER NOT NULL, known_seq INTEGER NOT NULL, central_seq INTEGER NOT NULL,
       source TEXT, ts TEXT, PRIMARY KEY (site, device, seq))""",
)


class SqliteStore:
    """The collector's SQLite database. Used under the collector's lock (one writer)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA[0])
        self._db.execute(SCHEMA[1])
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(records)")]
        if "sig_checked" not in cols:  # a database from before the audit: all were checked
            self._db.execute(
                "ALTER TABLE records ADD COLUMN sig_checked INTEGER NOT NULL DEFAULT 1"
            )
        for sql in SCHEMA[2:]:
            self._db.execute(sql)

    # -- transactions ------------------------------------------------------------------
    def begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    # -- devices -----------------------------------------------------------------------
    def head(self, dev: Dev) -> tuple[int, str]:
        """(last seq, its hash) of the device's stored chain; (0, GENESIS) if none."""
        row = self._db.execute(
            "SELECT last_seq, last_hash FROM devices WHERE site=? AND device=?", dev
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def save_heads(self, heads: list[tuple[str, str, int, str]]) -> None:
        self.begin()
        self._db.executemany(
            "INSERT INTO devices (site, device, last_seq, last_hash) VALUES"
            " (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " last_seq=excluded.last_seq, last_hash=excluded.last_hash",
            heads,
        )

    def devices(self) -> list[tuple[str, str, int]]:
        """Every known device: (site, device, last seq)."""
        return self._db.execute("SELECT site, device, last_seq FROM devices").fetchall()

    def best_checkpoint(self, dev: Dev) -> int:
        row = self._db.execute(
            "SELECT best_checkpoint FROM devices WHERE site=? AND device=?", dev
        ).fetchone()
        return row[0] if row else 0

    def note_checkpoint(self, dev: Dev, head: tuple[int, str], seq: int) -> None:
        self._db.execute(
            "INSERT INTO devices (site, device, last_seq, last_hash, best_checkpoint)"
            " VALUES (?,?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " best_checkpoint=max(best_checkpoint, excluded.best_checkpoint)",
            (*dev, *head, seq),
        )

    # -- records -----------------------------------------------------------------------
    def insert(self, dev: Dev, rec: dict[str, Any], body: str, checked: bool) -> None:
        self.begin()
        self._db.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?,?)",
            (*dev, rec["seq"], rec.get("type"), rec.get("ts"), rec["hash"], body, checked),
        )

    def hash_at(self, dev: Dev, seq: int) -> str | None:
        row = self._db.execute(
            "SELECT hash FROM records WHERE site=? AND device=? AND seq=?", (*dev, seq)
        ).fetchone()
        return row[0] if row else None

    def any_unchecked(self) -> bool:
        return (
            self._db.execute("SELECT 1 FROM records WHERE sig_checked = 0 LIMIT 1").fetchone()
            is not None
        )

    def unchecked(self, limit: int) -> list[tuple[str, str, int, str]]:
        """Records stored on their run's proof whose own signature is still unchecked."""
        return self._db.execute(
            "SELECT site, device, seq, body FROM records WHERE sig_checked = 0 LIMIT ?", (limit,)
        ).fetchall()

    def count_unchecked(self) -> int:
        return self._db.execute("SELECT count(*) FROM records WHERE sig_checked = 0").fetchone()[0]

    def mark_checked(self, dev: Dev, seq: int, ok: bool) -> None:
        self.begin()
        self._db.execute(
            "UPDATE records SET sig_checked = ? WHERE site=? AND device=? AND seq=?",
            (1 if ok else -1, *dev, seq),
        )

    def seqs(self, dev: Dev) -> list[int]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT seq FROM records WHERE site=? AND device=? ORDER BY seq", dev
            )
        ]

    # -- forks and discontinuities -----------------------------------------------------
    def in_fork(self, dev: Dev, seq: int, h: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM forks WHERE site=? AND device=? AND seq=? AND hash=?", (*dev, seq, h)
            ).fetchone()
            is not None
        )

    def add_fork(self, dev: Dev, rec: dict[str, Any], body: str) -> bool:
        """Keep a record off the chain; False if it was kept already."""
        self.begin()
        cur = self._db.execute(
            "INSERT OR IGNORE INTO forks VALUES (?,?,?,?,?,?,?,?)",
            (*dev, rec["seq"], rec["hash"], rec["prev"], rec.get("type"), rec.get("ts"), body),
        )
        return bool(cur.rowcount)

    def forked(self, dev: Dev) -> list[int]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT seq FROM forks WHERE site=? AND device=? ORDER BY seq", dev
            )
        ]

    def in_gap(self, dev: Dev, seq: int) -> bool:
        """Does a declared discontinuity cover ``seq`` (between what the store held then
        and the rollback record)?"""
        return (
            self._db.execute(
                "SELECT 1 FROM discontinuities WHERE site=? AND device=? AND central_seq < ?"
                " AND seq > ?",
                (*dev, seq, seq),
            ).fetchone()
            is not None
        )

    def add_discontinuity(
        self, dev: Dev, seq: int, found: int, known: int, central: int, source: str, ts: Any
    ) -> None:
        self.begin()
        self._db.execute(
            "INSERT OR IGNORE INTO discontinuities VALUES (?,?,?,?,?,?,?,?)",
            (*dev, seq, found, known, central, source, ts),
        )

    def discontinuities(self, dev: Dev) -> list[tuple[int, int, int, int]]:
        return self._db.execute(
            "SELECT seq, found_seq, known_seq, central_seq FROM discontinuities"
            " WHERE site=? AND device=? ORDER BY seq",
            dev,
        ).fetchall()

    # -- alarms ------------------------------------------------------------------------
    def add_alarm(self, ts: str, dev: Dev, atype: str, detail: str) -> None:
        self._db.execute(
            "INSERT INTO alarms (ts, site, device, type, detail) VALUES (?,?,?,?,?)",
            (ts, *dev, atype, detail),
        )

    def alarms(self) -> list[tuple[str, str]]:
        return self._db.execute("SELECT type, detail FROM alarms ORDER BY id").fetchall()

    def alarm_origins(self) -> set[tuple[str, str]]:
        """The (site, device) names alarms were raised under."""
        return {(s, d) for s, d in self._db.execute("SELECT site, device FROM alarms")}

    def hashes(self, dev: Dev) -> list[str]:
        """The stored chain's hashes, in seq order."""
        return [
            r[0]
            for r in self._db.execute(
                "SELECT hash FROM records WHERE site=? AND device=? ORDER BY seq", dev
            )
        ]
