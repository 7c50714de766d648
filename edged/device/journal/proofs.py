"""Proofs from a journal's Merkle tree, against its signed checkpoints (issue 17):
that a record is in the log (inclusion), and that a later checkpoint's log extends an
earlier one's (consistency). Each proof travels as one JSON document with the signed
checkpoint note(s) and the device's note verifier key, so that anyone, with edged or
with Go's ``golang.org/x/mod/sumdb/{note,tlog}``, can check it against the device's
enrolled public key alone."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.device.journal import tree
from edged.device.journal.schema import connect
from edged.errors import JournalError
from edged.protocol import tlog
from edged.protocol.canonical import dumps_checked
from edged.protocol.epochs import EpochChain
from edged.protocol.note import NoteError, verifier_key
from edged.protocol.records import Record, digest


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode()


def _checkpoints(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT body FROM records WHERE type = 'checkpoint' ORDER BY seq"
    ).fetchall()
    out = [json.loads(b) for (b,) in rows]
    return [c for c in out if isinstance(c.get("note"), str) and type(c.get("tree_size")) is int]


def _checkpoint_of_size(conn: sqlite3.Connection, size: int | None, least: int) -> dict[str, Any]:
    cps = [c for c in _checkpoints(conn) if c["tree_size"] >= least]
    if size is not None:
        cps = [c for c in cps if c["tree_size"] == size]
    if not cps:
        raise JournalError(
            f"no signed checkpoint of {size if size is not None else f'{least} or more'}"
            " records in this journal (checkpoints come every journal.checkpoint_every"
            " records or checkpoint_seconds)"
        )
    return cps[-1]


def _certs(conn: sqlite3.Connection, *recs: dict[str, Any]) -> list[dict[str, str]]:
    """The epoch certificates a checker needs for these records: from epoch 1 up to the
    newest epoch among them, each as its canonical body and signature."""
    upto = max(int(r.get("epoch", 0)) for r in recs)
    out = []
    for (wire,) in conn.execute("SELECT wire FROM epochs WHERE epoch <= ? ORDER BY epoch", (upto,)):
        rec = json.loads(wire)
        sig = rec.pop("sig")
        rec.pop("hash")
        out.append({"record": dumps_checked(rec).decode(), "sig": sig})
    return out


def prove_inclusion(db: Path, seq: int, size: int | None = None) -> dict[str, Any]:
    """The proof that record ``seq`` is in the log of a signed checkpoint (the newest
    covering it, or the one of ``size`` records)."""
    conn = connect(Path(db), readonly=True)
    try:
        row = conn.execute(
            "SELECT seq, type, body, hash, sig FROM records WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            raise JournalError(f"{db}: no record with seq {seq} (pruned, or not yet written)")
        rec = Record(seq=row[0], type=row[1], body=row[2].encode(), hash=row[3], sig=row[4])
        leaf = tree.leaf_of(conn, seq)
        cp = _checkpoint_of_size(conn, size, leaf + 1)
        proof = tlog.prove_record(cp["tree_size"], leaf, tree.stored_reader(conn))
        certs = _certs(conn, cp, rec.fields)
    finally:
        conn.close()
    return {
        "kind": "inclusion",
        "checkpoint": cp["note"],
        "leaf": leaf,
        # The leaf's bytes: the record's canonical body (its hash is SHA-256 of these,
        # its signature is over that hash).
        "record": rec.body.decode(),
        "hash": rec.hash,
        "sig": rec.sig,
        "proof": [_b64(h) for h in proof],
        "epochs": certs,
    }


def prove_consistency(db: Path, old: int, new: int) -> dict[str, Any]:
    """The proof that the log of the signed checkpoint of ``new`` records extends the
    one of ``old`` records."""
    conn = connect(Path(db), readonly=True)
    try:
        a = _checkpoint_of_size(conn, old, 1)
        b = _checkpoint_of_size(conn, new, old)
        proof = tlog.prove_tree(new, old, tree.stored_reader(conn))
        certs = _certs(conn, a, b)
    finally:
        conn.close()
    return {
        "kind": "consistency",
        "old": a["note"],
        "checkpoint": b["note"],
        "proof": [_b64(h) for h in proof],
        "epochs": certs,
    }


def with_verifier(doc: dict[str, Any], pub: Ed25519PublicKey) -> dict[str, Any]:
    """The document with the note verifier key of the device's identity (epoch 0) under
    the checkpoint's origin; the epoch certificates lead from it to later keys."""
    origin = doc["checkpoint"].split("\n", 1)[0]
    return {**doc, "verifier_key": verifier_key(origin, pub)}


def check_proof(doc: dict[str, Any], pub: Ed25519PublicKey) -> str:
    """What the proof proves, in a line; ProofError or NoteError if it does not. ``pub``
    is the device's enrolled identity; the document's epoch certificates must lead from
    it to the keys that signed the checkpoints (and, for inclusion, the record)."""
    origin = str(doc.get("checkpoint", "")).split("\n", 1)[0]
    chain = EpochChain(pub)
    chain.learn_doc(list(doc.get("epochs", [])))
    cp = chain.open_checkpoint(str(doc.get("checkpoint")), origin)
    proof = [base64.b64decode(p, validate=True) for p in doc.get("proof", [])]
    if doc.get("kind") == "inclusion":
        record = str(doc.get("record", "")).encode()
        leaf = doc.get("leaf")
        if type(leaf) is not int:
            raise tlog.ProofError("inclusion proof: no leaf index")
        tlog.check_record(proof, cp.size, cp.root, leaf, tlog.record_hash(record))
        fields = json.loads(record)
        seq = fields.get("seq")
        # In the log, and signed by the key of its own epoch: a thief's key of a later
        # epoch makes neither a record of an earlier one nor its checkpoint.
        why = chain.problem({**fields, "hash": digest(record), "sig": doc.get("sig")})
        if why is not None:
            raise NoteError(f"record seq {seq}: {why}")
        return f"OK: record seq {seq} is leaf {leaf} of {cp.origin}'s log of {cp.size} records"
    if doc.get("kind") == "consistency":
        old = chain.open_checkpoint(str(doc.get("old")), origin)
        if old.origin != cp.origin:
            raise NoteError("the two checkpoints are of different logs")
        tlog.check_tree(proof, cp.size, cp.root, old.size, old.root)
        return f"OK: {cp.origin}'s log of {cp.size} records extends its log of {old.size}"
    raise tlog.ProofError("not an edged proof (kind: inclusion or consistency)")
