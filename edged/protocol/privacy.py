"""What must never be written anywhere: Individual Numbers and raw card numbers (R11).

A card is known only by a keyed fingerprint (HMAC-SHA256 with a device secret), so a
stolen journal does not reveal card numbers and cannot be matched against card dumps
from another site.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import Any

from edged.errors import JournalError, PrivacyError
from edged.protocol.canonical import MAX_SAFE_INT

# Twelve digits, optionally grouped 4-4-4 by a space or hyphen, not glued to other
# letters or digits (so hex digests and longer numbers do not match by accident).
_CANDIDATE = re.compile(r"(?<![0-9A-Za-z])(\d{4})[ -]?(\d{4})[ -]?(\d{4})(?![0-9A-Za-z])")

# Field names that would hold a secret or a raw identifier; refused whatever their value.
FORBIDDEN_FIELDS = frozenset(
    {
        "pin",
        "pin_code",
        "password",
        "uid",
        "idm",
        "card_uid",
        "card_id",
        "card_number",
        "raw_card",
        "my_number",
        "mynumber",
        "individual_number",
    }
)


def my_number_check_digit(first11: str) -> int:
    """Check digit of an Individual Number from its first 11 digits.

    The ordinance (行政手続における特定の個人を識別するための番号の利用等に関する法律施行令
    第8条): weights Qn = n+1 for n=1..6 and n-5 for n=7..11, Pn counted from the right;
    remainder r = sum(Pn*Qn) mod 11; check digit 0 when r <= 1, else 11 - r.
    """
    if len(first11) != 11 or not first11.isdigit():
        raise ValueError("need exactly 11 digits")
    total = 0
    for n in range(1, 12):
        p = int(first11[11 - n])
        q = n + 1 if n <= 6 else n - 5
        total += p * q
    r = total % 11
    return 0 if r <= 1 else 11 - r


def is_individual_number(digits: str) -> bool:
    """True for 12 digits whose last digit is the valid check digit of the first 11."""
    return (
        len(digits) == 12
        and digits.isdigit()
        and my_number_check_digit(digits[:11]) == int(digits[11])
    )


def contains_individual_number(text: str) -> bool:
    """True when ``text`` holds something shaped like a valid Individual Number."""
    return any(is_individual_number("".join(m.groups())) for m in _CANDIDATE.finditer(text))


def _where(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _check(value: Any, path: tuple[str | int, ...]) -> None:
    t = type(value)
    if t is str:
        # Only strings with 12 digits can hold a number; skip the regex for the rest.
        if len(value) >= 12 and contains_individual_number(value):
            raise PrivacyError(
                f"field {_where(path)!r}: value looks like an Individual Number (個人番号); refused"
            )
    elif t is int:
        if abs(value) > MAX_SAFE_INT:
            raise JournalError(
                f"field {_where(path)!r}: integer beyond ±(2^53-1) has no portable JSON form"
            )
        if abs(value) >= 10**11 and is_individual_number(str(abs(value)).zfill(12)):
            raise PrivacyError(
                f"field {_where(path)!r}: value looks like an Individual Number (個人番号); refused"
            )
    elif t is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise JournalError(f"field {_where(path)!r}: keys must be strings")
            if k.lower() in FORBIDDEN_FIELDS:
                raise PrivacyError(
                    f"field {_where((*path, k))!r}: raw identifiers and secrets are never recorded"
                )
            tv = type(v)
            # Short strings, flags and nulls (most of a record) need no call of their own.
            if (tv is str and len(v) < 12) or tv is bool or v is None:
                continue
            _check(v, (*path, k))
    elif t is list or t is tuple:
        for i, v in enumerate(value):
            _check(v, (*path, i))
    elif value is None or t is bool:
        pass
    elif t is float:
        raise JournalError(
            f"field {_where(path)!r}: floats are not allowed in records (use integers)"
        )
    else:
        raise JournalError(f"field {_where(path)!r}: type {t.__name__} cannot be recorded")


def check_fields(fields: dict[str, Any]) -> None:
    """Refuse what must not or cannot be recorded, naming the field but never the value.

    :class:`PrivacyError` for an Individual Number or a secret/raw-identifier field name;
    :class:`JournalError` for a value without one canonical JSON form (floats, bytes, ...).
    One walk does both, since it runs for every record.
    """
    _check(fields, ())


class CardFingerprinter:
    """Turns a raw card identifier into the only form edged keeps: a keyed fingerprint."""

    PREFIX = "fp1:"

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("fingerprint secret must be at least 32 bytes")
        self._secret = secret

    @property
    def secret(self) -> bytes:
        """The card secret itself (for deriving the PIN pepper; never logged)."""
        return self._secret

    def fingerprint(self, card_uid: bytes) -> str:
        """128-bit truncated HMAC-SHA256: plenty to tell cards apart, short in records."""
        if not card_uid:
            raise ValueError("empty card identifier")
        mac = hmac.new(self._secret, card_uid, hashlib.sha256).hexdigest()
        return self.PREFIX + mac[:32]

    @property
    def key_id(self) -> str:
        """Names the secret (not reversible): a list made with another secret is refused."""
        return hmac.new(self._secret, b"edged card key id", hashlib.sha256).hexdigest()[:16]

    def __repr__(self) -> str:
        return "CardFingerprinter(<secret>)"
