"""Has the journal gone back? (R9, R10; docs/rollback.md) Whether a head someone
remembers is in this file, and the fields of the signed record that says it is not."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

from edged.device.journal.prune import covering_snapshot
from edged.device.journal.witness import Head
from edged.protocol.records import ROLLBACK


def contains(conn: sqlite3.Connection, h: Head) -> bool:
    """The record at ``h.seq`` has its hash, or its seq lies in a gap that a rollback
    record already accounted for, or before where a pruned journal starts."""
    row = conn.execute("SELECT hash FROM records WHERE seq = ?", (h.seq,)).fetchone()
    if row is not None:
        return bool(row[0] == h.hash)
    # Absent: inside a gap that a later rollback record declared?
    gap = conn.execute(
        "SELECT 1 FROM records WHERE type = ? AND seq > ?"
        " AND json_extract(body, '$.found_seq') < ? LIMIT 1",
        (ROLLBACK, h.seq, h.seq),
    ).fetchone()
    if gap is not None:
        return True
    # Pruned after the central copy receipted it: a signed snapshot says where the
    # journal now starts, and this head lies before it.
    cover = covering_snapshot(conn)
    return cover is not None and h.seq < int(cover["kept_from_seq"])


def furthest_missing(conn: sqlite3.Connection, remembered: Iterable[Head]) -> Head | None:
    """The furthest remembered head this journal does not contain, or None. A head beyond
    ours, or a record of another hash at its seq (a fork), means the file went back to
    an older copy."""
    worst: Head | None = None
    for h in remembered:
        if h.seq <= 0 or contains(conn, h):
            continue
        if worst is None or h.seq > worst.seq:
            worst = h
    return worst


def rollback_record(
    known: Head, seq: int, prev: str, fields: dict[str, Any]
) -> tuple[int, str, dict[str, Any]]:
    """(seq, type, fields) of the record that says so: it continues this file's chain from
    its head (``found_*``) but takes its seq past every seq the remembered head
    (``known_*``) may have used, so no seq is ever signed twice with two meanings."""
    return max(seq, known.seq) + 1, ROLLBACK, {
        **fields, "found_seq": seq, "found_hash": prev, "known_seq": known.seq,
        "known_hash": known.hash, "source": known.source,
    }  # fmt: skip
