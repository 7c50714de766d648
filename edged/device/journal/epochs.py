"""The journal's signing epochs (R9; docs/keys.md): which key is in force, when the next
is due, and the certificates that link each key to the device's identity. The key store
keeps the keys; the journal keeps the certificates, in its ``epochs`` table (never
pruned), and signs each next key's certificate with the key in force.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.clock import Clock
from edged.device.journal.witness import Head
from edged.device.keys import DeviceKeys
from edged.device.keystore import EpochKey
from edged.errors import EdgedError, JournalCorruptError, JournalError
from edged.log import get_logger
from edged.protocol.epochs import EpochChain, raw_hex
from edged.protocol.keys import key_id_of
from edged.protocol.records import Record, parse_ts

log = get_logger("journal")


def load_chain(conn: sqlite3.Connection, identity: Ed25519PublicKey) -> EpochChain:
    """The journal's epochs, each certificate checked against its predecessor's key."""
    chain = EpochChain(identity)
    for epoch, wire in conn.execute("SELECT epoch, wire FROM epochs ORDER BY epoch"):
        why = chain.learn_wire(wire)
        if why is not None:
            raise JournalCorruptError(f"epoch {epoch}: {why}")
    return chain


def cert_wire(conn: sqlite3.Connection, epoch: int) -> str:
    row = conn.execute("SELECT wire FROM epochs WHERE epoch = ?", (epoch,)).fetchone()
    return str(row[0]) if row else ""


class Epochs:
    """``chain`` the certificates, ``signer`` the key in force, ``start_ms`` when its
    epoch began; a new epoch every ``records`` records or ``seconds`` of wall clock."""

    chain: EpochChain
    signer: EpochKey
    start_ms: int

    def __init__(self, keys: DeviceKeys, clock: Clock, records: int, seconds: float) -> None:
        if records < 1 or seconds <= 0:
            raise ValueError("epoch_records must be >= 1 and epoch_seconds > 0")
        self.keys, self.clock = keys, clock
        self.records, self.ms = records, int(seconds * 1000)

    def take_up(self, conn: sqlite3.Connection, created: str, path: Path) -> Head | None:
        """Match the journal's newest epoch with the key store's key in force: finish an
        epoch change that committed its certificate but crashed before the key store
        took the next key up; drop one that never committed; take certificates the key
        store kept that a restored older journal lacks (then the head the store saw is
        returned: the file went back). A journal signed beyond the key the store holds
        cannot go on (its key is lost): the error says so."""
        try:
            chain = load_chain(conn, self.keys.public_key)
        except JournalCorruptError as e:
            raise JournalCorruptError(f"{path}: {e}") from None
        store = self.keys.store
        newest = chain.latest
        pending = store.pending()
        if pending is not None:
            same = raw_hex(pending.public_key) == raw_hex(newest.key)
            if pending.epoch == newest.number and same:
                store.commit(cert_wire(conn, newest.number))
            else:
                store.discard()
        current = store.current()
        seen: Head | None = None
        if current.epoch > newest.number:
            # The file is older than the key (put back from a copy): the certificates
            # between are in the key store, each checked against its predecessor.
            added = []
            for wire in store.certs():
                n = len(chain.epochs)
                if chain.learn_wire(wire) is None and len(chain.epochs) > n:
                    added.append((chain.latest.number, chain.latest.after_seq, wire))
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO epochs (epoch, seq, wire) VALUES (?, ?, ?)", added)
            conn.execute("COMMIT")
            if added:
                cert = json.loads(added[-1][2])
                seen = Head(cert["seq"], cert["hash"], "key store")
        if current.epoch != chain.latest.number or raw_hex(current.public_key) != raw_hex(
            chain.latest.key
        ):
            raise JournalError(
                f"{path}: the journal is signed up to epoch {chain.latest.number} but the"
                f" key store holds the key of epoch {current.epoch}; the key in force is lost,"
                " so nothing more can be signed here (re-enrol: edged keys init --force)"
            )
        self.chain, self.signer = chain, current
        wire = cert_wire(conn, chain.latest.number) if chain.latest.number else ""
        ts = json.loads(wire)["ts"] if wire else created
        try:
            self.start_ms = parse_ts(ts)
        except ValueError:
            self.start_ms = self.clock.wall_ms()
        return seen

    def due(self, seq: int) -> bool:
        if seq - self.chain.latest.after_seq >= self.records:
            return True
        # Forward only: a clock set back does not start epochs (the record count still does).
        return self.clock.wall_ms() - self.start_ms >= self.ms

    def prepare_next(self, leaf: int) -> tuple[dict[str, Any], EpochKey]:
        """The next key, made and kept by the key store but not in force until its
        certificate commits, and the certificate's fields."""
        nxt = self.keys.store.prepare(self.signer.epoch + 1)
        fields = {
            "next_epoch": nxt.epoch,
            "next_key": raw_hex(nxt.public_key),
            "next_key_id": key_id_of(nxt.public_key),
            "leaf": leaf,
        }
        return fields, nxt

    def taken_up(self, cert: Record, signer: EpochKey) -> None:
        """The certificate is committed: the next key is in force, the old one erased.
        A crash before this is finished when the journal is opened again."""
        wire = cert.wire().decode()
        self.chain.learn_wire(wire)
        self.signer = signer
        self.start_ms = parse_ts(cert.fields["ts"])
        try:
            self.keys.store.commit(wire)
        except (OSError, EdgedError) as e:
            # The records are committed and the next key signs from now on; the old key
            # is erased when the journal is next opened (it finishes the change).
            log.error("epoch_key_not_erased", epoch=signer.epoch - 1, error=str(e))
