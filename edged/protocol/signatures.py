"""The one signature check: Ed25519 over given bytes, with the signature in its one
canonical spelling (lower-case hex). The journal verifier, the collector and signed
documents all call it, so they cannot drift apart."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

BAD = "bad signature"
NOT_CANONICAL = "signature is not in its canonical form"


def signature_problem(key: Ed25519PublicKey, sig_hex: object, message: bytes) -> str | None:
    """Why ``sig_hex`` is not ``key``'s signature of ``message`` (:data:`BAD`, or
    :data:`NOT_CANONICAL` for the same bytes spelled another way), or None."""
    if not isinstance(sig_hex, str):
        return BAD
    try:
        raw = bytes.fromhex(sig_hex)
        key.verify(raw, message)
    except (InvalidSignature, ValueError):
        return BAD
    # Same bytes, other spelling (upper case, spaces): a change to what was stored.
    return NOT_CANONICAL if raw.hex() != sig_hex else None
