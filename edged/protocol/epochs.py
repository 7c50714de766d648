"""Forward-secure signing epochs (issue 17): which key signed a record, and why a key
stolen today cannot sign yesterday.

A device's records are signed in epochs. Epoch 0's key is the enrolled identity key
(the public half pinned centrally). Each epoch ends with a ``key.epoch`` record signed
by that epoch's key: it names the next epoch's public key and its own leaf in the
Merkle tree. The record is the certificate; once it is committed the device erases the
old private key. So epoch *k+1*'s key is vouched for by epoch *k*'s, back to the
identity, and a thief who takes the key of epoch *k* signs nothing that passes as an
earlier epoch: a record says its epoch, its seq must lie in that epoch's range, and its
signature must verify under that epoch's key.

:class:`EpochChain` is the one place this is checked, by ``edged verify``, the
collector, proofs and the daemon alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.errors import EdgedError
from edged.protocol.canonical import dumps_checked
from edged.protocol.note import Checkpoint, NoteError, open_note
from edged.protocol.records import digest
from edged.protocol.signatures import signature_problem

CERT = "key.epoch"  # the record that ends an epoch and names the next key


def raw_hex(pub: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def epoch_of(rec: dict[str, Any]) -> int | None:
    """A record's epoch (0 for records from before epochs), or None if malformed."""
    e = rec.get("epoch", 0)
    return e if type(e) is int and e >= 0 else None


@dataclass(frozen=True)
class Epoch:
    number: int
    key: Ed25519PublicKey
    after_seq: int  # its records have seqs above this (the certificate's seq)
    leaf: int  # the certificate's leaf: checkpoints it signs are of larger trees
    cert_hash: str  # "" for epoch 0


@dataclass
class EpochChain:
    """The epochs of one device that are proven so far, from its identity key on."""

    identity: Ed25519PublicKey
    epochs: list[Epoch] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.epochs:
            self.epochs = [Epoch(0, self.identity, 0, -1, "")]

    @property
    def latest(self) -> Epoch:
        return self.epochs[-1]

    def knows(self, rec: dict[str, Any]) -> bool:
        """Whether the epoch ``rec`` names is one this chain has a certificate for (a
        malformed epoch counts as known: it is refused, not waited for)."""
        e = epoch_of(rec)
        return e is None or e < len(self.epochs)

    def key_for(self, rec: dict[str, Any]) -> Ed25519PublicKey | str:
        """The key that must have signed ``rec``, or why no key may (naming the epoch)."""
        e, seq = epoch_of(rec), rec.get("seq")
        if e is None or type(seq) is not int:
            return "malformed epoch"
        if e >= len(self.epochs):
            newest = self.latest.number
            return f"signed in epoch {e}, which no certificate introduces (newest: {newest})"
        ep = self.epochs[e]
        end = self.epochs[e + 1].after_seq if e + 1 < len(self.epochs) else None
        if seq <= ep.after_seq or (end is not None and seq > end):
            span = f"seqs {ep.after_seq + 1}..{end if end is not None else ''}"
            return f"signed as epoch {e}, whose records are {span}"
        return ep.key

    def problem(self, rec: dict[str, Any]) -> str | None:
        """Why ``rec``'s signature is not its epoch key's, or None. The record's hash is
        taken as checked by the caller (the signature is over its 32 bytes)."""
        key = self.key_for(rec)
        if isinstance(key, str):
            return key
        h = rec.get("hash")
        try:
            raw = bytes.fromhex(h) if isinstance(h, str) else b""
        except ValueError:
            raw = b""
        why = signature_problem(key, rec.get("sig"), raw) if len(raw) == 32 else "bad signature"
        return None if why is None else f"{why} (epoch {epoch_of(rec)})"

    def learn(self, rec: dict[str, Any]) -> str | None:
        """Take a ``key.epoch`` record (hash already checked) as the certificate of the
        next epoch: None when it is accepted or already known; else why not. A second,
        different certificate for a known epoch means that epoch's predecessor key signed
        twice: stolen, or a journal forked."""
        nxt = rec.get("next_epoch")
        if type(nxt) is not int or nxt < 1:
            return "epoch certificate without next_epoch"
        if nxt < len(self.epochs):
            if self.epochs[nxt].cert_hash == rec.get("hash"):
                return None
            return (
                f"a second certificate for epoch {nxt}: the key of epoch {nxt - 1} signed"
                " two successors (a stolen key, or a forked journal)"
            )
        if nxt != len(self.epochs) or epoch_of(rec) != nxt - 1:
            have = self.latest.number
            return f"certificate of epoch {nxt} from epoch {epoch_of(rec)} (have {have})"
        why = self.problem(rec)
        if why is not None:
            return f"epoch {nxt} certificate: {why}"
        key, leaf = rec.get("next_key"), rec.get("leaf")
        try:
            pub = Ed25519PublicKey.from_public_bytes(bytes.fromhex(str(key)))
        except ValueError:
            return f"epoch {nxt} certificate: next_key is not an Ed25519 public key"
        if type(leaf) is not int or leaf <= self.latest.leaf:
            return f"epoch {nxt} certificate: leaf must grow"
        self.epochs.append(Epoch(nxt, pub, rec["seq"], leaf, str(rec["hash"])))
        return None

    def learn_wire(self, wire: str) -> str | None:
        """A certificate in wire form (its hash checked here)."""
        try:
            rec = json.loads(wire)
            body = {k: v for k, v in rec.items() if k not in ("hash", "sig")}
            if rec.get("type") != CERT or digest(dumps_checked(body)) != rec.get("hash"):
                return "epoch certificate does not match its hash"
        except (ValueError, AttributeError, TypeError, EdgedError):
            return "epoch certificate is not a record"
        return self.learn(rec)

    def open_checkpoint(self, note: str, origin: str) -> Checkpoint:
        """The checkpoint in ``note`` if the key of one of these epochs signed it, as
        ``origin``, at a size that epoch can have signed: a tree that holds the epoch's
        certificate and not yet the next one's. NoteError otherwise."""
        text = None
        for i, ep in enumerate(self.epochs):
            try:
                text = open_note(note, origin, ep.key)
            except NoteError:
                continue
            cp = Checkpoint.parse(text)
            end = self.epochs[i + 1].leaf if i + 1 < len(self.epochs) else None
            if cp.size <= ep.leaf or (end is not None and cp.size > end):
                raise NoteError(
                    f"a checkpoint of {cp.size} records signed in epoch {ep.number}, whose"
                    f" checkpoints are of {ep.leaf + 1}..{end if end is not None else ''} records"
                )
            return cp
        raise NoteError(f"not signed by {origin} in any of its epochs 0..{self.latest.number}")

    def learn_doc(self, certs: list[dict[str, Any]]) -> None:
        """Certificates as a proof document carries them ({record, sig}): each learnt or
        NoteError."""
        for c in certs:
            try:
                body = str(c["record"]).encode()
                rec = json.loads(body)
                rec.update(hash=digest(body), sig=c["sig"])
            except (KeyError, TypeError, ValueError, AttributeError):
                raise NoteError("malformed epoch certificate") from None
            why = self.learn(rec) if rec.get("type") == CERT else "not an epoch certificate"
            if why is not None:
                raise NoteError(why)
