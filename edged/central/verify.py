"""Checking a record that arrives from a device: parse, canonical form, hash, the device's
pinned key and the (site, device) it is bound to. Its signature is checked under the key
of its epoch (:class:`edged.central.trust.DeviceEpochs`)."""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.errors import EdgedError
from edged.protocol.canonical import dumps_checked
from edged.protocol.keys import key_id_of
from edged.protocol.records import digest

WRONG_ORIGIN = "record of another site or device"


def check_hash(payload: bytes | str) -> dict[str, Any] | str:
    """The record if it parses, is canonical and its hash matches; else why not."""
    try:
        rec = json.loads(payload)
        h, sig = rec.pop("hash"), rec.pop("sig")
        # Parsed JSON holds only JSON types: no need for the full value check.
        body = dumps_checked(rec)
    except (ValueError, KeyError, TypeError, EdgedError, AttributeError):
        return "malformed record"
    if digest(body) != h:
        return "hash does not match the record"
    rec["hash"], rec["sig"] = h, sig
    return rec


def _member(text: str, key: str) -> tuple[str, str] | None:
    """``text`` without its first ``"key":"value"`` member (and one comma beside it), and
    the value; None if there is no such member."""
    at = text.find(f'"{key}":"')
    if at < 0:
        return None
    start = at + len(key) + 4
    stop = text.find('"', start)
    if stop < 0:
        return None
    value, end = text[start:stop], stop + 1
    if text.startswith(",", end):
        return text[:at] + text[end + 1 :], value
    if text[at - 1 : at] == ",":
        return text[: at - 1] + text[end:], value
    return text[:at] + text[end:], value


def _cut_body(text: str, h: str) -> tuple[str, str] | None:
    """(body, sig) of a stored wire record whose ``hash`` and ``sig`` members, cut out,
    leave exactly the bytes that hash to ``h``; None when the cut does not."""
    cut = _member(text, "hash")
    if cut is None or cut[1] != h:
        return None
    rest = _member(cut[0], "sig")
    if rest is None or digest(rest[0].encode()) != h:
        return None
    return rest


def check_stored(text: str, h: str) -> dict[str, Any] | str:
    """A stored record checked again against its stored hash ``h``: the record if its
    hash matches, else why not.

    The fast way (a month's ledger reads tens of thousands): cut the ``hash`` and ``sig``
    members out of the stored text; if what is left hashes to ``h``, it *is* the byte
    string the device hashed, and the record is parsed from those very bytes, so nothing
    in the rest of the text can change what is read. Whatever the cut does not turn into
    exactly those bytes (text not canonical, a nested "hash") goes the full way."""
    cut = _cut_body(text, h)
    if cut is not None:
        try:
            rec = json.loads(cut[0])
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            rec["hash"], rec["sig"] = h, cut[1]
            return rec
    rec = check_hash(text)
    if not isinstance(rec, str) and rec.get("hash") != h:
        return "stored hash differs from the record's"
    return rec


def canonical_body(text: str, h: str) -> bytes:
    """The canonical body (what the record's hash is of, and a Merkle leaf is) of a
    stored wire record: the fast cut when it hashes to ``h``, else rebuilt."""
    cut = _cut_body(text, h)
    if cut is not None:
        return cut[0].encode()
    rec = json.loads(text)
    rec.pop("hash", None)
    rec.pop("sig", None)
    return dumps_checked(rec)


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
    rec = check_hash(payload)
    if isinstance(rec, str):
        return rec
    sig = rec["sig"]
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
    return rec
