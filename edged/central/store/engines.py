"""The two engines: SQLite (one file, one office) and PostgreSQL (many collectors, a
company), each a small hook over :class:`CentralStore`; and :func:`open_store`."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edged.central.store.records import CentralStore
from edged.errors import ConfigError


class SqliteStore(CentralStore):
    """The store in one SQLite file. Several collectors on one file are safe (the write
    lock serialises them) but gain nothing; the default for one office."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self._rows = []
        self.trees.events = []
        self.trees.forget()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        # R25: records removed after their keeping period are overwritten, not freed.
        self._db.execute("PRAGMA secure_delete=ON")
        self._migrate()

    def disposed(self) -> None:
        """After a removal: the WAL's old pages written back and the WAL truncated, so no
        copy of what was removed stays readable in the files."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _upgrade_unversioned(self) -> None:
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(records)")]
        if cols and "sig_checked" not in cols:  # a database from before the audit: all were checked
            self._db.execute(
                "ALTER TABLE records ADD COLUMN sig_checked INTEGER NOT NULL DEFAULT 1"
            )

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        return self._db.execute(sql, params)

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.trees.flush()
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._rows = []
        self.trees.events = []
        self.trees.forget()
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


class PostgresStore(CentralStore):
    """The store in PostgreSQL (psycopg 3), for many collectors and many sites."""

    ENGINE = "postgresql"
    INT = "BIGINT"
    AUTO_ID = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    GREATEST = "GREATEST"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "--store postgresql://: psycopg is not installed (pip install edged[central])"
            ) from None
        self.url = url
        self._rows = []
        self.trees.events = []
        self.trees.forget()
        try:
            # Autocommit, with explicit BEGIN/COMMIT: a read outside a batch never leaves
            # a transaction open (and row locks held) behind it.
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise ConfigError(f"--store {_redact(url)}: {str(e).strip().splitlines()[0]}") from None
        self._in_tx = False
        # Two collectors starting together must not both create the schema.
        self._db.execute("SELECT pg_advisory_lock(7302185)")
        try:
            self._migrate()
        finally:
            self._db.execute("SELECT pg_advisory_unlock(7302185)")

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        if not params:  # taken as written: a function body's % is not a placeholder
            return self._db.execute(sql)  # type: ignore[arg-type]
        return self._db.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)  # type: ignore[arg-type]

    def _lock_suffix(self) -> str:
        return " FOR UPDATE"

    def _skip_locked_suffix(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        self.trees.flush()
        if self._in_tx:
            self._in_tx = False
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._rows = []
        self.trees.events = []
        self.trees.forget()
        if self._in_tx:
            self._in_tx = False
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()

    def prepare_months(self, now_ms: int) -> None:
        import datetime as dt

        import psycopg

        d = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().replace(day=1)
        for _ in range(3):
            nxt = (d + dt.timedelta(days=32)).replace(day=1)
            name = f"records_{d:%Y_%m}"
            if not self._x("SELECT 1 FROM pg_class WHERE relname = ?", (name,)).fetchone():
                # Outside any transaction: a failure (another collector made it meanwhile,
                # or rows of that month sit in the default partition) costs nothing else.
                with contextlib.suppress(psycopg.Error):
                    self._x(
                        f"CREATE TABLE {name} PARTITION OF records"
                        f" FOR VALUES FROM ('{d:%Y-%m}') TO ('{nxt:%Y-%m}')"
                    )
            d = nxt

    def _remove_before(self, cutoff_ts: str) -> None:
        # Whole months before the cutoff go as partitions; the rest row by row, with the
        # append-only guard lifted inside this transaction only.
        parts = self._x(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'records'::regclass"
        ).fetchall()
        for name, bound in parts:
            upper = bound.rsplit("TO ('", 1)[-1].split("'")[0] if "TO ('" in bound else None
            if upper is not None and upper <= cutoff_ts[:7] and name.startswith("records_"):
                self._x(f"DROP TABLE {name}")
        self._x("ALTER TABLE records DISABLE TRIGGER records_no_delete")
        self._x("DELETE FROM records WHERE ts < ?", (cutoff_ts,))
        self._x("ALTER TABLE records ENABLE TRIGGER records_no_delete")

    def try_lead(self, name: str) -> bool:
        """Take a session-wide advisory lock: one collector of many runs the central
        alarm checks; another takes over when its session ends."""
        import hashlib

        # A 63-bit key from the whole name: each shard's leader lock is its own.
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1
        row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])


def _redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.split(':')[0]}:***@{tail}"


def open_store(spec: str | Path) -> CentralStore:
    """``postgresql://…`` (or ``postgres://``) for PostgreSQL, anything else a SQLite file.
    A file that cannot be opened is a one-line ConfigError naming it, not a traceback."""
    s = str(spec)
    if s.startswith(("postgresql://", "postgres://")):
        return PostgresStore(s)
    path = Path(s)
    if not s or path.is_dir():
        raise ConfigError(f"--store {s!r}: not a database file (FILE.db or postgresql://…)")
    if not path.parent.is_dir():
        raise ConfigError(f"--store {s}: no directory {path.parent} (create it first)")
    try:
        return SqliteStore(path)
    except sqlite3.DatabaseError as e:
        raise ConfigError(f"--store {s}: cannot open it as a SQLite database ({e})") from None
