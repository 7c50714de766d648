"""The journal's Merkle tree (RFC 9162 hashing, tlog's stored-hash layout) kept in the
journal file beside the records, and the C2SP checkpoints made from it (issue 17).

Leaf i is the i-th record appended: its canonical body, the bytes its hash is of. A
record's seq is its leaf + 1 except after a gap (a journal put back and continued past
the heads others saw): ``tree_offsets`` says from which seq on the difference changes,
so a leaf is found without a row per record.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from edged.protocol import tlog
from edged.protocol.note import Checkpoint, origin_of, sign_note
from edged.protocol.records import Record

if TYPE_CHECKING:
    from edged.device.keystore import EpochKey

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tree_hashes (idx INTEGER PRIMARY KEY, hash BLOB NOT NULL)",
    # leaf = seq - 1 - offset for the seqs from from_seq on (until the next row).
    """CREATE TABLE IF NOT EXISTS tree_offsets (from_seq INTEGER PRIMARY KEY,
       offset INTEGER NOT NULL)""",
)


def stored_reader(conn: sqlite3.Connection) -> tlog.HashReader:
    def read(idxs: Sequence[int]) -> list[bytes]:
        if not idxs:
            return []
        marks = ",".join("?" * len(idxs))
        got = dict(
            conn.execute(
                f"SELECT idx, hash FROM tree_hashes WHERE idx IN ({marks})",  # noqa: S608
                list(idxs),
            ).fetchall()
        )
        try:
            return [got[i] for i in idxs]
        except KeyError as e:
            raise tlog.ProofError(f"tree hash {e} is not stored") from None

    return read


def offset_at(conn: sqlite3.Connection, seq: int) -> int:
    row = conn.execute(
        "SELECT offset FROM tree_offsets WHERE from_seq <= ? ORDER BY from_seq DESC LIMIT 1",
        (seq,),
    ).fetchone()
    return row[0] if row else 0


def leaf_of(conn: sqlite3.Connection, seq: int) -> int:
    """The leaf index of the record with this seq."""
    return seq - 1 - offset_at(conn, seq)


class TreeWriter:
    """The tree's growth within one write transaction, driven by the frontier (no reads:
    the hashes to store for a leaf are the frontier's merges). ``flush`` writes them;
    the journal adopts ``frontier`` once the transaction committed."""

    def __init__(self, conn: sqlite3.Connection, head_seq: int, frontier: tlog.Frontier) -> None:
        self.conn = conn
        self.frontier = frontier.copy()
        self.offset = offset_at(conn, head_seq) if head_seq else 0
        self.last_seq = head_seq
        self.pending: list[tuple[int, bytes]] = []
        self.segments: list[tuple[int, int]] = []
        self._next_idx = tlog.stored_hash_count(self.frontier.size)  # kept, not recounted

    @property
    def size(self) -> int:
        return self.frontier.size

    def add(self, rec: Record) -> None:
        if rec.seq != self.last_seq + 1:  # a gap in seqs: leaves go on without one
            self.offset = rec.seq - 1 - self.size
            self.segments.append((rec.seq, self.offset))
        base = self._next_idx
        hashes = self.frontier.add(leaf_data(rec))
        self.pending.extend(zip(range(base, base + len(hashes)), hashes, strict=True))
        self._next_idx = base + len(hashes)
        self.last_seq = rec.seq

    def root(self) -> bytes:
        return self.frontier.root()

    def flush(self) -> None:
        self.conn.executemany("INSERT INTO tree_hashes (idx, hash) VALUES (?, ?)", self.pending)
        self.conn.executemany(
            "INSERT INTO tree_offsets (from_seq, offset) VALUES (?, ?)", self.segments
        )
        self.pending, self.segments = [], []


def leaf_data(rec: Record) -> bytes:
    """What a leaf is: the record's canonical body, the very bytes its hash is of (and its
    signature is over that hash), so no second serialisation per record."""
    return rec.body


def load_frontier(conn: sqlite3.Connection) -> tlog.Frontier:
    """The frontier of the stored tree (its size: the leaf of the newest record + 1)."""
    row = conn.execute("SELECT max(seq) FROM records").fetchone()
    head = row[0] if row and row[0] else 0
    size = leaf_of(conn, head) + 1 if head else 0
    return tlog.Frontier.stored(size, stored_reader(conn))


def checkpoint_fields(tree: TreeWriter, signer: EpochKey, site: str, device: str) -> dict:
    """What a checkpoint record says of the tree so far: its size and root, and the
    C2SP checkpoint signed as a note by the key in force (Go's note package opens it)."""
    origin = origin_of(site, device)
    cp = Checkpoint(origin, tree.size, tree.root())
    note = sign_note(cp.text(), origin, signer.public_key, signer.sign)
    return {"tree_size": cp.size, "root": cp.text().split("\n")[2], "note": note}


def backfill(conn: sqlite3.Connection, records: Iterable[Record]) -> int:
    """Build the tree of a journal from before it had one (every record kept, in seq
    order); the number of leaves."""
    tree = TreeWriter(conn, 0, tlog.Frontier())
    for rec in records:
        tree.add(rec)
        if len(tree.pending) > 20000:  # written in chunks: memory stays small
            tree.flush()
    tree.flush()
    return tree.size


def prune_below(conn: sqlite3.Connection, leaves: int) -> int:
    """After the records of the first ``leaves`` leaves were pruned: drop their stored
    hashes but the few that stand for them in every later root and proof (one complete
    subtree per one-bit of ``leaves``). The tree keeps growing and proving the kept
    records; storage stays bounded like the records'. The hashes dropped."""
    if leaves <= 0:
        return 0
    keep = [
        tlog.stored_hash_index(level, (leaves >> level) - 1)
        for level in range(leaves.bit_length())
        if (leaves >> level) & 1
    ]
    below = tlog.stored_hash_index(0, leaves)
    marks = ",".join("?" * len(keep))
    cur = conn.execute(
        f"DELETE FROM tree_hashes WHERE idx < ? AND idx NOT IN ({marks})",  # noqa: S608
        (below, *keep),
    )
    return cur.rowcount


def contradicts(conn: sqlite3.Connection, held: int, size: int, root: bytes) -> str | None:
    """Whether a tree of ``held`` leaves contradicts a checkpoint of ``size`` and ``root``
    that someone else signed: "rollback" (fewer records than it names), "fork" (another
    tree at its size); None when it agrees, or when pruning left no way to tell."""
    if size > held:
        return "rollback"
    try:
        mine = tlog.tree_hash(size, stored_reader(conn))
    except tlog.ProofError:
        return None
    return None if mine == root else "fork"
