"""Pruning (R25; storage bounded after years of service): what a journal may drop, the
state of what it drops, and the one DELETE the journal ever runs. The queries, over the
journal's connection; :meth:`edged.device.journal.store.Journal.prune` signs the snapshot
between them."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING, Any

from edged.core.replay import REPLAYED, snapshot_state
from edged.core.state import Now
from edged.device.journal import schema, tree
from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.records import SNAPSHOT, Record, format_ts

if TYPE_CHECKING:
    from edged.device.journal.store import Journal

log = get_logger("journal")


def first_seq(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT min(seq) FROM records").fetchone()
    return row[0] or 0


def covering_snapshot(conn: sqlite3.Connection) -> dict[str, Any] | None:
    """For a pruned journal, the signed snapshot whose ``kept_from_seq`` is the first seq
    held: the state of every record before it. None when nothing was pruned."""
    first = first_seq(conn)
    if first <= 1:
        return None
    row = conn.execute(
        "SELECT body FROM records WHERE type = ? AND"
        " json_extract(body, '$.kept_from_seq') = ? ORDER BY seq LIMIT 1",
        (SNAPSHOT, first),
    ).fetchone()
    return json.loads(row[0]) if row else None


def first_seq_since(conn: sqlite3.Connection, head: int, ts: str) -> int:
    """The first seq whose ts is at or after ``ts`` (head + 1 if none): a binary search on
    seq, as records are written in time order (a clock step back only moves the boundary
    by the step)."""
    lo, hi = max(first_seq(conn), 1), head + 1
    while lo < hi:
        mid = (lo + hi) // 2
        row = conn.execute("SELECT ts FROM records WHERE seq = ?", (mid,)).fetchone()
        if row is None or row[0] >= ts:
            hi = mid
        else:
            lo = mid + 1
    return lo


def dropped_state(
    conn: sqlite3.Connection, keep_from: int, now: Now, boot_id: str
) -> dict[str, Any]:
    """The lasting state (who is inside, escorts, wrong PINs, lock-outs) of every record
    before ``keep_from``, from the snapshot that already stands for older ones."""
    cover = covering_snapshot(conn)
    dropped = conn.execute(
        f"SELECT body FROM records WHERE type IN ({','.join('?' * len(REPLAYED))})"  # noqa: S608
        " AND seq < ? ORDER BY seq",
        (*REPLAYED, keep_from),
    )
    before = (json.loads(b) for (b,) in dropped)
    kept = [*([cover] if cover else []), *(r for r in before if r.get("type") != SNAPSHOT)]
    return snapshot_state(kept, now, boot_id)


def delete_below(conn: sqlite3.Connection, keep_from: int) -> None:
    """The one DELETE the journal ever runs, inside the caller's write transaction, with
    its guard lifted and put back: a crash leaves the records and the trigger as they
    were."""
    conn.execute("DROP TRIGGER records_no_delete")
    conn.execute("DELETE FROM records WHERE seq < ?", (keep_from,))
    tree.prune_below(conn, tree.leaf_of(conn, keep_from))
    conn.execute(schema.TRIGGERS[1])


def prune_receipted(
    j: Journal, keep_days: float, batch: int, receipted: int, wall_ms: int
) -> Record | None:
    """Drop what the central copy has receipted and what is older than ``keep_days``, in
    batches of at least ``batch`` records, after a signed snapshot. The snapshot, or None
    (nothing due, or it failed: said in the log, tried again later)."""
    cutoff = format_ts(wall_ms - int(keep_days * 86_400_000))
    try:
        keep_from = min(j.first_seq_since(cutoff), receipted + 1)
        if keep_from - max(j.first_seq(), 1) < batch:
            return None
        snap = j.prune(keep_from, receipted)
    except EdgedError as e:
        log.error("prune_failed", error=str(e))
        return None
    if snap is not None:
        log.info("journal_pruned", kept_from_seq=keep_from, snapshot_seq=snap.seq)
    return snap
