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
    expected = 1
    prev = GENESIS
    count = 0
    jumps: list[dict[str, Any]] = []
    pruned = snapshot_at = 0
    try:
        first = conn.execute("SELECT min(seq) FROM records").fetchone()[0] or 1
        if first > 1:
            # Pruned: the start is what a signed snapshot says it is (checked in the walk
            # like any record); without one, the records before it are missing.
            row = conn.execute(
                "SELECT seq, body FROM records WHERE type = ? AND json_valid(body)"
                " AND json_extract(body, '$.kept_from_seq') = ? ORDER BY seq LIMIT 1",
                (SNAPSHOT, first),
            ).fetchone()
            if row is not None and isinstance(json.loads(row[1]).get("kept_from_prev"), str):
                expected, prev = first, json.loads(row[1])["kept_from_prev"]
                pruned, snapshot_at = first, row[0]
    except (sqlite3.DatabaseError, ValueError):
        pass  # the walk reports the damage where it meets it

    def fail(seq: int, problem: str, detail: str) -> VerifyResult:
        return VerifyResult(False, count, expected - 1, prev, seq, problem, detail, jumps)

    # The Merkle tree, grown again from the records (a pruned journal's start from the
    # hashes it kept for it, which the signed roots then vouch for).
    tree_ = _tree_start(conn, pruned)
    # The device's signing epochs, from its identity key on: a record must be signed by
    # the key of the epoch its seq lies in (a key stolen later signs nothing earlier).
    chain: EpochChain | None = None
    try:
        has_epochs = (
            conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'epochs'"
            ).fetchone()
            is not None
        )
    except sqlite3.DatabaseError:
        has_epochs = False

    try:
        cur = conn.execute(
            "SELECT seq, type, ts, prev, hash, sig, key_id, body FROM records ORDER BY seq"
        )
    except sqlite3.DatabaseError as e:
        return fail(1, "unreadable", f"SQLite cannot read the records ({e})")
    while True:
        try:
            row = cur.fetchone()
        except UnicodeDecodeError:
            return fail(expected, "modified", "record text is not valid UTF-8")
        except sqlite3.DatabaseError as e:
            return fail(expected, "unreadable", f"SQLite cannot read past seq {expected - 1} ({e})")
        if row is None:
            break
        c_seq, c_type, c_ts, c_prev, c_hash, c_sig, c_key, body = row
        if not (
            type(c_type) is type(c_ts) is type(c_prev) is type(c_hash) is str
            and type(c_sig) is type(c_key) is type(body) is str
        ):
            # A damaged record header can turn a text column into a blob or a number.
            return fail(expected, "modified", "a stored column has the wrong type")
        try:
            obj = json.loads(body)
            b_seq = obj["seq"]
            if not isinstance(obj, dict) or type(b_seq) is not int:
                raise ValueError("no integer seq")
        except (ValueError, TypeError, KeyError) as e:
            return fail(expected, "modified", f"record body is not a valid record ({e})")

        jump = (
            b_seq > expected
            and obj.get("type") == ROLLBACK
            and obj.get("found_seq") == expected - 1
            and obj.get("found_hash") == prev
            and type(obj.get("known_seq")) is int
            and b_seq == max(expected - 1, obj["known_seq"]) + 1
        )
        if jump:
            # Checked below like any record (hash, signature, link to its predecessor).
            jumps.append(
                {
                    "seq": b_seq,
                    "found_seq": expected - 1,
                    "known_seq": obj["known_seq"],
                    "source": str(obj.get("source")),
                    "ts": str(obj.get("ts")),
                }
            )
            expected = b_seq
        if b_seq != expected:
            if b_seq > expected:
                try:
                    later = conn.execute(
                        "SELECT 1 FROM records WHERE json_valid(body)"
                        " AND json_extract(body, '$.seq') = ? LIMIT 1",
                        (expected,),
                    ).fetchone()
                except (sqlite3.DatabaseError, UnicodeDecodeError):
                    later = None  # the file is damaged further on: report the gap itself
                if later:
                    return fail(
                        expected, "reordered", f"seq {b_seq} stands where seq {expected} belongs"
                    )
                return fail(expected, "missing", f"records {expected}..{b_seq - 1} are missing")
            return fail(
                expected,
                "inserted",
                f"a record claiming seq {b_seq} stands after seq {expected - 1}",
            )

        h = digest(body.encode("utf-8"))
        if h != c_hash:
            return fail(expected, "modified", "record body does not match its hash")
        key_id = obj.get("key_id")
        pub = trusted.get(key_id) if isinstance(key_id, str) else None
        if pub is None:
            return fail(expected, "unknown key", f"signed by untrusted key id {key_id!r}")
        if chain is None or chain.identity is not pub:
            try:
                chain = load_chain(conn, pub) if has_epochs else EpochChain(pub)
            except JournalCorruptError as e:
                return fail(expected, "bad signature", f"the journal's epoch certificates: {e}")
        obj["hash"], obj["sig"] = h, c_sig
        why = chain.problem(obj)
        if why is not None and why.startswith(NOT_CANONICAL):
            # Same signature bytes, other spelling: still a change to the stored record,
            # and one form only is ever written.
            return fail(expected, "modified", NOT_CANONICAL)
        if why is not None:
            return fail(expected, "bad signature", f"{why}, device key {key_id}")
        if obj.get("type") == CERT:
            why = chain.learn(obj)
            if why is not None:
                return fail(expected, "bad signature", why)
        if obj.get("prev") != prev:
            return fail(
                expected,
                "inserted",
                f"prev does not link to seq {expected - 1}: this record or its predecessor"
                " was substituted",
            )
        del obj["hash"], obj["sig"]
        if (c_seq, c_type, c_ts, c_prev, c_key) != (
            b_seq,
            obj.get("type"),
            obj.get("ts"),
            obj.get("prev"),
            key_id,
        ):
            return fail(expected, "modified", "indexed columns disagree with the signed record")
        if tree_ is not None:
            problem = _tree_check(tree_, obj, chain)
            if obj.get("type") == CERT and obj.get("leaf") != tree_.size:
                # Its checkpoints' sizes are judged by this leaf: it must be its own.
                problem = f"the epoch certificate names leaf {obj.get('leaf')}, it is {tree_.size}"
            if problem is not None:
                return fail(expected, "tree", problem)
            tree_.add(body.encode())
        prev = h
        count += 1
        expected += 1

    try:
        marker = conn.execute("SELECT value FROM meta WHERE key='head_seq'").fetchone()
        head_marker = int(marker[0]) if marker else 0
    except (sqlite3.DatabaseError, ValueError):
        head_marker = 0
    if head_marker > expected - 1 and not any(
        d["found_seq"] < head_marker < d["seq"] for d in jumps
    ):
        return fail(
            expected,
            "missing",
            f"the journal's head marker says seq {head_marker}; records {expected}.."
            f"{head_marker} are missing (truncated)",
        )
    return VerifyResult(
        True,
        count,
        expected - 1,
        prev,
        discontinuities=jumps,
        pruned_before=pruned,
        snapshot_seq=snapshot_at,
    )
