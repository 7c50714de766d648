"""Checking a record that arrives from a device: parse, canonical form, hash, the device's
pinned key, the (site, device) it is bound to, and its signature (the one check in
:mod:`edged.protocol.signatures`)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.errors import EdgedError
from edged.protocol.canonical import dumps_checked
from edged.protocol.keys import key_id_of
from edged.protocol.records import digest
from edged.protocol.signatures import record_signature_problem

WRONG_ORIGIN = "record of another site or device"


def check_record(
    payload: bytes,
    key: Ed25519PublicKey | None,
    key_id: str = "",
    origin: tuple[str, str] | None = None,
) -> dict[str, Any] | str:
    """Everything about a wire record but its signature: it parses, is canonical, its hash
    matches, it names the device's key (``key_id``, computed from ``key`` if not given)
    and, given ``origin``, the (site, device) it arrived under. The record, or why it is
    refused."""
    try:
        rec = json.loads(payload)
        h, sig = rec.pop("hash"), rec.pop("sig")
        # Parsed JSON holds only JSON types: no need for the full value check.
        body = dumps_checked(rec)
    except (ValueError, KeyError, TypeError, EdgedError, AttributeError):
        return "malformed record"
    if digest(body) != h:
        return "hash does not match the record"
    if key is None:
        return "device not in the trust directory"
    if rec.get("key_id") != (key_id or key_id_of(key)):
        return f"signed by unknown key {str(rec.get('key_id'))[:16]}"
    if type(rec.get("seq")) is not int or not isinstance(rec.get("prev"), str):
        return "malformed record"
    if origin is not None and (rec.get("site"), rec.get("device")) != origin:
        return (
            f"{WRONG_ORIGIN}: signed for {str(rec.get('site'))[:32]}/"
            f"{str(rec.get('device'))[:32]}, arrived as {origin[0]}/{origin[1]}"
        )
    if not isinstance(sig, str):
        return "bad signature"
    rec["hash"], rec["sig"] = h, sig
    return rec


def verify_record(
    payload: bytes, key: Ed25519PublicKey | None, origin: tuple[str, str] | None = None
) -> dict[str, Any] | str:
    """A wire record checked in full against the device's public key: the record, or why
    it is refused."""
    rec = check_record(payload, key, origin=origin)
    if isinstance(rec, str):
        return rec
    assert key is not None  # check_record refuses records of unknown devices
    return record_signature_problem(rec, key) or rec
