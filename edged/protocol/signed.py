"""Signed JSON documents: receipts, commands and access-list envelopes (R9, R12).

A document is a JSON object; ``key_id`` and ``sig`` are added by :func:`sign_doc`, the
signature being Ed25519 over the canonical bytes of everything else.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.errors import EdgedError
from edged.protocol.canonical import canonical_bytes
from edged.protocol.keys import key_id_of
from edged.protocol.signatures import signature_problem


class Rejected(EdgedError):
    """An inbound message that must not be acted on; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def sign_doc(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """``doc`` with ``key_id`` and ``sig`` added."""
    body = {k: v for k, v in doc.items() if k not in ("key_id", "sig")}
    body["key_id"] = key_id_of(key.public_key())
    body["sig"] = key.sign(canonical_bytes(body)).hex()
    return body


def parse_signed(
    payload: bytes, pubkey: Ed25519PublicKey | None, *, max_bytes: int = 1 << 20
) -> dict[str, Any]:
    """Decode and verify a signed document, or raise :class:`Rejected` saying why."""
    if len(payload) > max_bytes:
        raise Rejected("oversize", f"{len(payload)} bytes > {max_bytes}")
    try:
        doc = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected("malformed", "not JSON") from None
    if (
        not isinstance(doc, dict)
        or not isinstance(doc.get("sig"), str)
        or not isinstance(doc.get("key_id"), str)
    ):
        raise Rejected("malformed", "not a signed object")
    if pubkey is None:
        raise Rejected("unknown_key", "no key is pinned for this kind of message")
    if doc["key_id"] != key_id_of(pubkey):
        raise Rejected("unknown_key", f"signed by key {doc['key_id'][:16]!r}")
    sig = doc.pop("sig")
    try:
        message = canonical_bytes(doc)
    except EdgedError:
        raise Rejected("bad_signature") from None
    if signature_problem(pubkey, sig, message) is not None:
        raise Rejected("bad_signature")
    return doc
