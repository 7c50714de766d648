"""The journal's reading queries, over its connection: what start-up needs (the last
time under a synchronised clock, the last record of a type, the records that rebuild the
core's state) and the records themselves in seq order."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from edged.device.journal.prune import covering_snapshot
from edged.protocol.records import SNAPSHOT, Record


def newest_synced_ts(conn: sqlite3.Connection, head: int, within: int) -> str | None:
    """The ts of the newest of the last ``within`` records made under a synchronised
    clock (start-up: decisions never take the time as earlier than that)."""
    row = conn.execute(
        "SELECT ts FROM records WHERE seq > ? AND json_extract(body, '$.clock_synced')"
        " ORDER BY seq DESC LIMIT 1",
        (head - within,),
    ).fetchone()
    return row[0] if row else None


def last_of_type(conn: sqlite3.Connection, rtype: str) -> dict[str, Any] | None:
    """The newest record of ``rtype``, parsed, or None."""
    row = conn.execute(
        "SELECT body FROM records WHERE type = ? ORDER BY seq DESC LIMIT 1", (rtype,)
    ).fetchone()
    return json.loads(row[0]) if row else None


def bodies(conn: sqlite3.Connection, types: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The records of the given types, parsed, in seq order (start-up replay). A
    pruned journal starts with the snapshot that stands for what it no longer holds;
    other snapshots in the sequence are not yielded (their state is older)."""
    types = list(types)
    cover = covering_snapshot(conn)
    if cover is not None and SNAPSHOT in types:
        yield cover
    marks = ",".join("?" * len(types))
    sql = f"SELECT body FROM records WHERE type IN ({marks}) ORDER BY seq"  # noqa: S608
    for (body,) in conn.execute(sql, types):
        rec = json.loads(body)
        if rec.get("type") != SNAPSHOT:
            yield rec


def records(
    conn: sqlite3.Connection, from_seq: int = 1, to_seq: int | None = None
) -> Iterator[Record]:
    """Committed records in seq order."""
    sql = "SELECT seq, type, body, hash, sig FROM records WHERE seq >= ?"
    args: list[Any] = [from_seq]
    if to_seq is not None:
        sql += " AND seq <= ?"
        args.append(to_seq)
    for seq, rtype, body, h, sig in conn.execute(sql + " ORDER BY seq", args):
        yield Record(seq=seq, type=rtype, body=body.encode("utf-8"), hash=h, sig=sig)
