"""The journal file's tables, triggers and pragmas, in one place: every writer and reader
opens it through :func:`connect`; :func:`create` makes a new one (or completes an old
one) in the caller's transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from edged.device.journal import tree
from edged.protocol.records import FORMAT

INSERT = (
    "INSERT INTO records (seq, type, ts, prev, hash, sig, key_id, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

TRIGGERS = (
    """CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
       BEGIN SELECT RAISE(ABORT, 'edged journal is append-only: UPDATE refused'); END""",
    """CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
       BEGIN SELECT RAISE(ABORT, 'edged journal is append-only: DELETE refused'); END""",
)


# The certificate of each epoch after the first (a copy of its ``key.epoch`` record, in
# wire form): never pruned, so a pruned journal still links its keys to the identity.
EPOCH_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS epochs (epoch INTEGER PRIMARY KEY, seq INTEGER NOT NULL,
       wire TEXT NOT NULL)""",
    """CREATE TRIGGER IF NOT EXISTS epochs_no_change BEFORE UPDATE ON epochs
       BEGIN SELECT RAISE(ABORT, 'edged epochs are append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS epochs_no_delete BEFORE DELETE ON epochs
       BEGIN SELECT RAISE(ABORT, 'edged epochs are append-only'); END""",
)


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open a journal file with the pragmas every writer and reader must use."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    else:
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: the WAL is fsynced at every commit, so a returned append survives power loss.
        conn.execute("PRAGMA synchronous=FULL")
        # R25: what pruning drops is overwritten with zeros, not left in free pages.
        conn.execute("PRAGMA secure_delete=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def create(conn: sqlite3.Connection, key_id: str, created_ts: str) -> None:
    db = sqlite_utils.Database(conn)
    db.table("meta").create({"key": str, "value": str}, pk="key", if_not_exists=True)
    records = db.table("records")
    records.create(
        {
            "seq": int,
            "type": str,
            "ts": str,
            "prev": str,
            "hash": str,
            "sig": str,
            "key_id": str,
            "body": str,
        },
        pk="seq",
        not_null={"type", "ts", "prev", "hash", "sig", "key_id", "body"},
        if_not_exists=True,
    )
    # One index (type: checkpoints, ledger queries). No ts index: reports scan by seq,
    # and every index is another page fsynced with each door decision.
    records.create_index(["type"], if_not_exists=True)
    for sql in (*TRIGGERS, *tree.SCHEMA, *EPOCH_SCHEMA):
        conn.execute(sql)
    conn.executemany(
        "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
        [("format", FORMAT), ("key_id", key_id), ("created", created_ts), ("head_seq", "0")],
    )
