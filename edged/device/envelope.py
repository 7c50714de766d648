"""Signed access-list envelopes: the only way a central authority changes a device's list.

Checked in this order, each failure a :class:`Rejected` with its reason code: oversize,
malformed, unknown_key, bad_signature, wrong_scope, expired, not_newer (a replay or a
rollback), invalid (the list itself), wrong_card_key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.core.policy import AccessList, parse_stored
from edged.errors import ConfigError
from edged.protocol.canonical import canonical_bytes
from edged.protocol.signed import Rejected, parse_signed, sign_doc

FORMAT = "edged-acl-envelope/1"
MAX_BYTES = 1 << 20


def make_envelope(
    acl: AccessList,
    key: Ed25519PrivateKey,
    *,
    device: str,
    expires: dt.datetime,
    issued: dt.datetime | None = None,
) -> bytes:
    """Sign ``acl`` for ``device`` (or ``"*"``: every device of the site)."""
    issued = issued or dt.datetime.now(dt.UTC)
    doc = {
        "format": FORMAT,
        "site": acl.site,
        "device": device,
        "version": acl.version,
        "issued": issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "expires": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "acl": acl.to_json(),
    }
    return json.dumps(sign_doc(doc, key), ensure_ascii=False, separators=(",", ":")).encode()


def open_envelope(
    payload: bytes,
    admin_key: Ed25519PublicKey | None,
    *,
    site: str,
    device: str,
    now_ms: int,
    current: AccessList | None,
    card_key: str,
    areas: set[str],
) -> AccessList:
    """The list inside a valid envelope, or :class:`Rejected` with the reason."""
    doc: dict[str, Any] = parse_signed(payload, admin_key, max_bytes=MAX_BYTES)
    if (
        doc.get("format") != FORMAT
        or not isinstance(doc.get("acl"), dict)
        or type(doc.get("version")) is not int
    ):
        raise Rejected("malformed", "not an access-list envelope")
    if doc.get("site") != site or doc.get("device") not in (device, "*"):
        raise Rejected("wrong_scope", f"for {doc.get('site')}/{doc.get('device')}")
    try:
        expires = dt.datetime.strptime(str(doc.get("expires")), "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise Rejected("malformed", "expires is not a UTC time") from None
    if expires.replace(tzinfo=dt.UTC).timestamp() * 1000 <= now_ms:
        raise Rejected("expired", f"expired at {doc['expires']}")
    if (
        current is not None
        and doc["version"] == current.version
        and hashlib.sha256(canonical_bytes(doc["acl"])).hexdigest() == current.sha256
    ):
        # The retained list already in force, delivered again after a reconnect.
        raise Rejected("already_applied", f"version {current.version}")
    if current is not None and doc["version"] <= current.version:
        raise Rejected(
            "not_newer",
            f"version {doc['version']} is not newer than {current.version} (replay or rollback)",
        )
    try:
        acl = parse_stored(json.dumps(doc["acl"]).encode(), "acl envelope", areas)
    except ConfigError as e:
        raise Rejected("invalid", str(e)) from None
    if acl.version != doc["version"] or acl.site != site:
        raise Rejected("invalid", "envelope and list disagree on version or site")
    if acl.card_key != card_key:
        raise Rejected("wrong_card_key", "card fingerprints were made with another secret")
    return acl
