"""Canonical JSON: the exact bytes that are hashed and signed.

Sorted keys, no whitespace, UTF-8, no floats (their text form is not portable between
JSON libraries, so a verifier elsewhere could compute a different hash).
"""

from __future__ import annotations

import json
from typing import Any

from edged.errors import JournalError


def _check(value: Any, path: str) -> None:
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


def dumps_checked(obj: dict[str, Any]) -> bytes:
    """Canonical bytes of an object whose value types were already checked."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise JournalError(f"record text is not valid Unicode ({e.reason})") from None
