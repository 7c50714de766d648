"""The record format: canonical JSON, hash-chained and signed (DESIGN.md, "Records")."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from edged.canonical import dumps_checked

FORMAT = "edged-journal/1"
GENESIS = "0" * 64  # `prev` of seq 1
# The one record that may skip seqs: it says the journal went back to an older copy and
# which seqs lie in between (docs/rollback.md).
ROLLBACK = "alarm.journal_rollback"

# Fields the journal fills in; a caller may not supply them.
ENVELOPE_FIELDS = frozenset(
    {
        "seq",
        "ts",
        "mono_us",
        "mono_ns",  # older records; new ones carry mono_us (stays below 2^53 for 285 years)
        "boot_id",
        "clock_synced",
        "type",
        "prev",
        "hash",
        "sig",
        "key_id",
        "site",
        "device",
    }
)


def digest(body: bytes) -> str:
    """SHA-256 hex of a record's canonical body (the record without ``hash`` and ``sig``)."""
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True)
class Record:
    """One committed record: its signed body and the hash and signature over it."""

    seq: int
    type: str
    body: bytes  # canonical JSON without hash and sig: exactly what was hashed
    hash: str
    sig: str

    @property
    def fields(self) -> dict[str, Any]:
        return json.loads(self.body)

    def wire(self) -> bytes:
        """The full record as canonical JSON, as published and as a verifier receives it."""
        obj = self.fields
        obj["hash"] = self.hash
        obj["sig"] = self.sig
        # The body was canonical JSON already: its values need no second type check.
        return dumps_checked(obj)
