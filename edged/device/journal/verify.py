"""Verify a journal file: every hash, signature, link and sequence number (R9).

The walk stops at the first bad record and names its seq and what is wrong:

- ``modified``: the body no longer hashes to the stored hash, or the indexed columns
  disagree with the signed body;
- ``unknown key``: signed by a key that is not trusted;
- ``bad signature``: the signature does not verify under the named key;
- ``missing``: a seq is absent (deleted rows, or the tail below the head marker);
- ``reordered``: records stand out of seq order;
- ``inserted``: a record that does not belong (a repeated seq, or a validly signed
  record whose ``prev`` does not link to its predecessor);
- ``unreadable``: SQLite cannot read further (the file was cut or damaged).

A signed ``alarm.journal_rollback`` record may skip seqs: it links to the record before
it and says the journal had gone back to an older copy (docs/rollback.md). The walk
accepts it and lists it in ``discontinuities``; the result is still ``ok`` (every record
in the file is genuine and linked) but the summary says what went missing, and
``edged verify`` exits 3 so that no script takes it for a clean journal.

Tail truncation together with a forged head marker cannot be seen in the file alone;
the central copy catches it through signed checkpoints.
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.device.journal.epochs import load_chain
from edged.device.journal.schema import connect
from edged.errors import JournalCorruptError
from edged.protocol import tlog
from edged.protocol.epochs import CERT, EpochChain
from edged.protocol.note import Checkpoint, NoteError, open_note, origin_of
from edged.protocol.records import FORMAT, GENESIS, ROLLBACK, SNAPSHOT, digest
from edged.protocol.signatures import NOT_CANONICAL


@dataclass
class VerifyResult:
    """Outcome of a verification: ``ok`` or the first bad seq and the problem there."""

    ok: bool
    records: int
    head_seq: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None
    detail: str | None = None
    # Each accepted rollback record: {seq, found_seq, known_seq, source, ts}
    discontinuities: list[dict[str, Any]] = field(default_factory=list)
    # A pruned journal: the records before this seq were dropped after the central copy
    # receipted them, as the signed snapshot at ``snapshot_seq`` says.
    pruned_before: int = 0
    snapshot_seq: int = 0

    def summary(self) -> str:
        if self.ok:
            text = f"OK: {self.records} records, head seq {self.head_seq} hash {self.head_hash}"
            if self.pruned_before:
                text += (
                    f"\nPRUNED: seqs 1..{self.pruned_before - 1} were dropped after the central"
                    f" copy receipted them; the signed snapshot at seq {self.snapshot_seq}"
                    f" carries their state and the hash of seq {self.pruned_before - 1}"
                )
            for d in self.discontinuities:
                text += (
                    f"\nROLLBACK at seq {d['seq']} ({d['ts']}): the journal went back to seq"
                    f" {d['found_seq']} after the {d['source']} had seen seq {d['known_seq']};"
                    f" seqs {d['found_seq'] + 1}..{d['seq'] - 1} are not in this file"
                    " (kept centrally where they were synced)"
                )
            return text
        return (
            f"FAIL: seq {self.first_bad_seq} {self.problem}: {self.detail}"
            f" ({self.records} records verified before it)"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _open_readonly(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise JournalCorruptError(f"{path}: no such file")
    if path.is_dir():
        raise JournalCorruptError(f"{path}: is a directory, not a journal file")
    if path.stat().st_size == 0:
        raise JournalCorruptError(f"{path}: empty file, not an edged journal")
    try:
        conn = connect(path, readonly=True)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        raise JournalCorruptError(f"{path}: not a readable SQLite database ({e})") from None
    if not {"records", "meta"} <= tables:
        conn.close()
        raise JournalCorruptError(f"{path}: not an edged journal (no records/meta tables)")
    try:
        fmt = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        conn.close()
        raise JournalCorruptError(f"{path}: journal metadata unreadable ({e})") from None
    if not fmt or fmt[0] != FORMAT:
        conn.close()
        raise JournalCorruptError(f"{path}: not an edged journal (format {fmt and fmt[0]!r})")
    return conn


def verify_journal(path: Path, trusted: dict[str, Ed25519PublicKey]) -> VerifyResult:
    """Walk every record of ``path``; ``trusted`` maps key ids to public keys.

    Raises :class:`JournalCorruptError` for a file that is not an edged journal at all.
    """
    path = Path(path)
    conn = _open_readonly(path)
    try:
        return _walk(conn, trusted)
    except (sqlite3.DatabaseError, UnicodeDecodeError) as e:
        # Damage the walk did not expect where it was reading: the file, not a record.
        raise JournalCorruptError(f"{path}: damaged ({e})") from None
    finally:
        conn.close()


def _tree_start(conn: sqlite3.Connection, pruned: int) -> tlog.Frontier | None:
    """The tree as it stood before the first kept record; None for a journal that has no
    tree (from before it)."""
    from edged.device.journal import tree as jtree

    try:
        if conn.execute("SELECT 1 FROM tree_hashes LIMIT 1").fetchone() is None:
            return None
        if not pruned:
            return tlog.Frontier()
        # The hashes kept for the pruned records; the signed roots vouch for them.
        return tlog.Frontier.stored(jtree.leaf_of(conn, pruned), jtree.stored_reader(conn))
    except (sqlite3.DatabaseError, tlog.ProofError):
        return None


def _tree_check(tree_: tlog.Frontier, obj: dict[str, Any], chain: EpochChain) -> str | None:
    """A checkpoint's tree size, root and signed note (by the key of the checkpoint's
    own epoch) against the tree grown so far."""
    if obj.get("type") != "checkpoint" or "tree_size" not in obj:
        return None
    pub = chain.key_for(obj)
    if isinstance(pub, str):
        return pub
    if obj["tree_size"] != tree_.size:
        return f"checkpoint says {obj['tree_size']} records in the tree, there are {tree_.size}"
    try:
        root = tree_.root()
    except tlog.ProofError as e:
        return f"the tree cannot be grown again ({e})"
    origin = origin_of(str(obj.get("site", "")), str(obj.get("device", "")))
    try:
        cp = Checkpoint.parse(open_note(str(obj.get("note")), origin, pub))
    except NoteError as e:
        return f"checkpoint note: {e}"
    if cp.root != root or cp.size != tree_.size or cp.origin != origin:
        return "the signed checkpoint's root is not the tree of the records before it"
    if obj.get("root") != base64.b64encode(root).decode():
        return "the checkpoint's root field is not the tree's root"
    return None


def _walk(conn: sqlite3.Connection, trusted: dict[str, Ed25519PublicKey]) -> VerifyResult:
    return _Walk(conn, trusted).run()


class _Bad(Exception):
    """The first bad record: what is wrong with it (at ``seq``, else the expected one)."""

    def __init__(self, problem: str, detail: str, seq: int | None = None) -> None:
        super().__init__(problem)
        self.problem, self.detail, self.seq = problem, detail, seq


class _Walk:
    """Every record in seq order: its columns, body, place in the sequence, hash,
    signature under its epoch's key, link, indexed columns and leaf of the tree."""

    def __init__(self, conn: sqlite3.Connection, trusted: dict[str, Ed25519PublicKey]) -> None:
        self.conn, self.trusted = conn, trusted
        self.expected, self.prev, self.count = 1, GENESIS, 0
        self.jumps: list[dict[str, Any]] = []
        self.pruned = self.snapshot_at = 0
        self._pruned_start()
        # The Merkle tree, grown again from the records (a pruned journal's start from the
        # hashes it kept for it, which the signed roots then vouch for).
        self.tree = _tree_start(conn, self.pruned)
        # The device's signing epochs, from its identity key on: a record must be signed by
        # the key of the epoch its seq lies in (a key stolen later signs nothing earlier).
        self.chain: EpochChain | None = None
        try:
            sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'epochs'"
            self.has_epochs = conn.execute(sql).fetchone() is not None
        except sqlite3.DatabaseError:
            self.has_epochs = False

    def _pruned_start(self) -> None:
        """Pruned: the start is what a signed snapshot says it is (checked in the walk like
        any record); without one, the records before it are missing."""
        try:
            first = self.conn.execute("SELECT min(seq) FROM records").fetchone()[0] or 1
            if first <= 1:
                return
            row = self.conn.execute(
                "SELECT seq, body FROM records WHERE type = ? AND json_valid(body)"
                " AND json_extract(body, '$.kept_from_seq') = ? ORDER BY seq LIMIT 1",
                (SNAPSHOT, first),
            ).fetchone()
            if row is not None and isinstance(json.loads(row[1]).get("kept_from_prev"), str):
                self.expected, self.prev = first, json.loads(row[1])["kept_from_prev"]
                self.pruned, self.snapshot_at = first, row[0]
        except (sqlite3.DatabaseError, ValueError):
            pass  # the walk reports the damage where it meets it

    def run(self) -> VerifyResult:
        try:
            try:
                cur = self.conn.execute(
                    "SELECT seq, type, ts, prev, hash, sig, key_id, body FROM records ORDER BY seq"
                )
            except sqlite3.DatabaseError as e:
                raise _Bad("unreadable", f"SQLite cannot read the records ({e})", 1) from None
            while (row := self._fetch(cur)) is not None:
                self._record(row)
            self._head_marker()
        except _Bad as b:
            seq = b.seq if b.seq is not None else self.expected
            return VerifyResult(False, self.count, self.expected - 1, self.prev, seq, b.problem,
                                b.detail, self.jumps)  # fmt: skip
        return VerifyResult(True, self.count, self.expected - 1, self.prev,
                            discontinuities=self.jumps, pruned_before=self.pruned,
                            snapshot_seq=self.snapshot_at)  # fmt: skip

    def _fetch(self, cur: sqlite3.Cursor) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = cur.fetchone()
        except UnicodeDecodeError:
            raise _Bad("modified", "record text is not valid UTF-8") from None
        except sqlite3.DatabaseError as e:
            past = self.expected - 1
            raise _Bad("unreadable", f"SQLite cannot read past seq {past} ({e})") from None
        if row is not None and not all(type(c) is str for c in row[1:]):
            # A damaged record header can turn a text column into a blob or a number.
            raise _Bad("modified", "a stored column has the wrong type")
        return row

    def _record(self, row: tuple[Any, ...]) -> None:
        c_seq, c_type, c_ts, c_prev, c_hash, c_sig, c_key, body = row
        try:
            obj = json.loads(body)
            b_seq = obj["seq"]
            if not isinstance(obj, dict) or type(b_seq) is not int:
                raise ValueError("no integer seq")
        except (ValueError, TypeError, KeyError) as e:
            raise _Bad("modified", f"record body is not a valid record ({e})") from None
        self._in_sequence(obj, b_seq)
        h = digest(body.encode("utf-8"))
        if h != c_hash:
            raise _Bad("modified", "record body does not match its hash")
        key_id = self._signed(obj, h, c_sig)
        if obj.get("prev") != self.prev:
            raise _Bad("inserted", f"prev does not link to seq {self.expected - 1}: this record"
                                   " or its predecessor was substituted")  # fmt: skip
        signed = (b_seq, obj.get("type"), obj.get("ts"), obj.get("prev"), key_id)
        if (c_seq, c_type, c_ts, c_prev, c_key) != signed:
            raise _Bad("modified", "indexed columns disagree with the signed record")
        if self.tree is not None:
            self._leaf(obj, body)
        self.prev = h
        self.count += 1
        self.expected += 1

    def _in_sequence(self, obj: dict[str, Any], b_seq: int) -> None:
        """At its place, or a genuine rollback record's jump past the seqs it lost."""
        expected = self.expected
        jump = (
            b_seq > expected
            and obj.get("type") == ROLLBACK
            and obj.get("found_seq") == expected - 1
            and obj.get("found_hash") == self.prev
            and type(obj.get("known_seq")) is int
            and b_seq == max(expected - 1, obj["known_seq"]) + 1
        )
        if jump:
            # Checked like any record after this (hash, signature, link to its predecessor).
            self.jumps.append({"seq": b_seq, "found_seq": expected - 1,
                               "known_seq": obj["known_seq"], "source": str(obj.get("source")),
                               "ts": str(obj.get("ts"))})  # fmt: skip
            self.expected = b_seq
            return
        if b_seq == expected:
            return
        if b_seq < expected:
            raise _Bad("inserted", f"a record claiming seq {b_seq} stands after seq {expected - 1}")
        try:
            later = self.conn.execute(
                "SELECT 1 FROM records WHERE json_valid(body)"
                " AND json_extract(body, '$.seq') = ? LIMIT 1",
                (expected,),
            ).fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError):
            later = None  # the file is damaged further on: report the gap itself
        if later:
            raise _Bad("reordered", f"seq {b_seq} stands where seq {expected} belongs")
        raise _Bad("missing", f"records {expected}..{b_seq - 1} are missing")

    def _signed(self, obj: dict[str, Any], h: str, sig: str) -> Any:
        """Signed by a trusted key, the one of its epoch; its key id."""
        key_id = obj.get("key_id")
        pub = self.trusted.get(key_id) if isinstance(key_id, str) else None
        if pub is None:
            raise _Bad("unknown key", f"signed by untrusted key id {key_id!r}")
        if self.chain is None or self.chain.identity is not pub:
            try:
                self.chain = load_chain(self.conn, pub) if self.has_epochs else EpochChain(pub)
            except JournalCorruptError as e:
                raise _Bad("bad signature", f"the journal's epoch certificates: {e}") from None
        obj["hash"], obj["sig"] = h, sig
        why = self.chain.problem(obj)
        if why is not None and why.startswith(NOT_CANONICAL):
            # Same signature bytes, other spelling: still a change to the stored record,
            # and one form only is ever written.
            raise _Bad("modified", NOT_CANONICAL)
        if why is not None:
            raise _Bad("bad signature", f"{why}, device key {key_id}")
        if obj.get("type") == CERT and (why := self.chain.learn(obj)) is not None:
            raise _Bad("bad signature", why)
        del obj["hash"], obj["sig"]
        return key_id

    def _leaf(self, obj: dict[str, Any], body: str) -> None:
        assert self.tree is not None and self.chain is not None
        problem = _tree_check(self.tree, obj, self.chain)
        if obj.get("type") == CERT and obj.get("leaf") != self.tree.size:
            # Its checkpoints' sizes are judged by this leaf: it must be its own.
            problem = f"the epoch certificate names leaf {obj.get('leaf')}, it is {self.tree.size}"
        if problem is not None:
            raise _Bad("tree", problem)
        self.tree.add(body.encode())

    def _head_marker(self) -> None:
        """A tail cut deeper than the last checkpoint: the head marker names more."""
        try:
            marker = self.conn.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
            head_marker = int(marker[0]) if marker else 0
        except (sqlite3.DatabaseError, ValueError):
            head_marker = 0
        last = self.expected - 1
        if head_marker > last and not any(
            d["found_seq"] < head_marker < d["seq"] for d in self.jumps
        ):
            raise _Bad(
                "missing",
                f"the journal's head marker says seq {head_marker}; records"
                f" {self.expected}..{head_marker} are missing (truncated)",
            )
