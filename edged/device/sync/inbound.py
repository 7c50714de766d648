"""Messages from the collector, opened (R13): receipts and commands, each signed by the
pinned collector key and scoped to this device, or :class:`Rejected` with the reason.
What they mean for the outbox is the agent's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.protocol.signed import Rejected, parse_signed


@dataclass(frozen=True)
class CentralHead:
    """The collector holds (seq, hash) of this device: does the journal contain it?"""

    seq: int
    hash: str


@dataclass(frozen=True)
class Resend:
    from_seq: int


def _open(payload: bytes, collector: Ed25519PublicKey | None, site: str, device: str) -> Any:
    doc = parse_signed(payload, collector, max_bytes=4096)
    if doc.get("site") != site or doc.get("device") != device:
        raise Rejected("wrong_scope", f"for {doc.get('site')}/{doc.get('device')}")
    return doc


def receipt(
    payload: bytes, collector: Ed25519PublicKey | None, site: str, device: str
) -> tuple[int, str]:
    """(seq, hash) the collector says it committed."""
    doc = _open(payload, collector, site, device)
    seq, h = doc.get("seq"), doc.get("hash")
    if type(seq) is not int or not isinstance(h, str):
        raise Rejected("malformed", "receipt needs seq and hash")
    return seq, h


def command(
    payload: bytes, collector: Ed25519PublicKey | None, site: str, device: str
) -> CentralHead | Resend:
    doc = _open(payload, collector, site, device)
    if doc.get("cmd") == "central_head":
        seq, h = doc.get("seq"), doc.get("hash")
        if type(seq) is not int or not isinstance(h, str) or len(h) != 64:
            raise Rejected("malformed", "central_head needs seq and hash")
        return CentralHead(seq, h)
    if doc.get("cmd") != "resend" or type(doc.get("from_seq")) is not int:
        raise Rejected("malformed", "unknown command")
    return Resend(doc["from_seq"])
