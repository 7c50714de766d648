"""The journal file's tables, triggers and pragmas, in one place: every writer and reader
opens it through :func:`connect`; :func:`create` makes a new one (or completes an old
one) in the caller's transaction."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import sqlite_utils

from edged.device.journal import tree
from edged.errors import JournalCorruptError, JournalError
from edged.protocol.records import FORMAT, Record

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


def open_checked(path: Path, key_id: str, created_ts: str) -> sqlite3.Connection:
    """The file opened, its integrity checked, and its tables made or completed."""
    try:
        conn = connect(path)
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as e:
        raise JournalCorruptError(f"{path}: cannot open journal ({e})") from None
    if ok != "ok":
        conn.close()
        raise JournalCorruptError(f"{path}: SQLite integrity check failed: {ok}")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if tables and "records" not in tables:
        conn.close()
        raise JournalCorruptError(f"{path}: exists but is not an edged journal")
    try:
        conn.execute("BEGIN IMMEDIATE")
        create(conn, key_id, created_ts)
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        conn.close()
        raise JournalError(f"{path}: cannot prepare journal ({e})") from None
    return conn


def check_meta(
    conn: sqlite3.Connection, path: Path, origin: dict[str, str], key_id: str
) -> tuple[dict[str, str], dict[str, str]]:
    """The file's meta row against what opens it: its format, the site and device it
    belongs to (a device's history cannot move; a journal from before records named their
    origin is given the config's), and the device key. (meta, origin)."""
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != FORMAT:
        raise JournalCorruptError(f"{path}: unsupported journal format {meta.get('format')!r}")
    if not origin and meta.get("site") is not None:
        # Opened by a tool that did not say: the journal's own origin holds.
        origin = {"site": meta["site"], "device": meta.get("device", "")}
    for name, want in origin.items():
        got = meta.get(name)
        if got is None:
            conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (name, want))
        elif got != want:
            raise JournalError(
                f"{path}: journal belongs to {name} {got!r}, but the config says"
                f" {want!r}; a device's history cannot move to another {name}"
            )
    if meta.get("key_id") != key_id:
        raise JournalError(
            f"{path}: journal belongs to device key {meta.get('key_id')}, but the"
            f" loaded key is {key_id}; use the state directory it was made with"
        )
    return meta, origin


def grow_tree_of_old_journal(conn: sqlite3.Connection, path: Path) -> None:
    """A journal from before the Merkle tree gets one, once, from its records."""
    if conn.execute("SELECT 1 FROM tree_hashes LIMIT 1").fetchone() is not None:
        return
    if conn.execute("SELECT 1 FROM records LIMIT 1").fetchone() is None:
        return
    rows = conn.execute("SELECT seq, type, body, hash, sig FROM records ORDER BY seq")
    try:
        conn.execute("BEGIN IMMEDIATE")
        tree.backfill(
            conn, (Record(seq=q, type=t, body=b.encode(), hash=h, sig=g) for q, t, b, h, g in rows)
        )
        conn.execute("COMMIT")
    except sqlite3.Error as e:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise JournalError(f"{path}: cannot build the record tree ({e})") from None
