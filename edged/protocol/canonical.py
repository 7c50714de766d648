"""Canonical JSON: the exact bytes that are hashed and signed, in RFC 8785 (JCS) form.

Keys sorted by their UTF-16 code units, no whitespace, UTF-8, strings escaped as
ECMAScript's JSON.stringify does, no floats (their text form is not portable), and every
integer within ±(2^53 − 1), the range that JCS implementations and JavaScript represent
exactly. Any RFC 8785 library therefore reproduces a record's bytes and its hash.
"""

from __future__ import annotations

import json
import re
from typing import Any

from edged.errors import JournalError

# The largest integer an IEEE 754 double holds exactly: beyond it JCS refuses the value
# and JavaScript rounds it.
MAX_SAFE_INT = 2**53 - 1

# Characters outside the Basic Multilingual Plane: only keys holding one can sort
# differently by UTF-16 code units than by code points.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
# One encoder for every record: json.dumps with options builds a new one each call.
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def _check(value: Any, path: str) -> None:
    if type(value) is int and abs(value) > MAX_SAFE_INT:
        raise JournalError(f"field {path!r}: integer beyond ±(2^53-1) has no portable JSON form")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        raise JournalError(f"field {path!r}: floats are not allowed in records (use integers)")
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check(v, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise JournalError(f"field {path!r}: keys must be strings")
            _check(v, f"{path}.{k}" if path else k)
        return
    raise JournalError(f"field {path!r}: type {type(value).__name__} cannot be recorded")


def canonical_bytes(obj: dict[str, Any]) -> bytes:
    """Encode ``obj`` canonically; raises :class:`JournalError` on values JSON cannot pin down."""
    _check(obj, "")
    return dumps_checked(obj)


def _utf16_ordered(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return {k: _utf16_ordered(value[k]) for k in keys}
    if isinstance(value, list | tuple):
        return [_utf16_ordered(v) for v in value]
    return value


def dumps_checked(obj: dict[str, Any]) -> bytes:
    """Canonical bytes of an object whose value types were already checked."""
    text = _ENCODE(obj)
    if _ASTRAL.search(text):
        # Rare (an emoji or an extension-B kanji somewhere): only then can code-point
        # order differ from JCS's UTF-16 order, so only then sort again.
        text = json.dumps(_utf16_ordered(obj), separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise JournalError(f"record text is not valid Unicode ({e.reason})") from None
