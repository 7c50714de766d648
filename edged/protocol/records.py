"""The record format: canonical JSON, hash-chained and signed (DESIGN.md, "Records")."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from edged.protocol.canonical import dumps_checked

FORMAT = "edged-journal/1"
GENESIS = "0" * 64  # `prev` of seq 1
# The one record that may skip seqs: it says the journal went back to an older copy and
# which seqs lie in between (docs/rollback.md).
ROLLBACK = "alarm.journal_rollback"
# A pruned journal's start: the signed state of the records it no longer holds, and the
# hash of the last of them (docs/central.md, retention).
SNAPSHOT = "journal.snapshot"


# Every record type edged writes. Typed, so that a misspelt type is a type error; the
# journal itself stays generic (any type of <= 64 characters is stored and verified).
RecordType = Literal[
    "acl.applied",
    "acl.expiring",
    "acl.loaded",
    "acl.rejected",
    "alarm.acl_invalid",
    "alarm.acl_rejected",
    "alarm.area_not_closed",
    "alarm.cabinet_open_too_long",
    "alarm.cabinet_unattended",
    "alarm.cabinet_unauthorised",
    "alarm.carry_out_unapproved",
    "alarm.checkpoint_contradicted",
    "alarm.cleared",
    "alarm.door_forced",
    "alarm.door_held_open",
    "alarm.driver_fault",
    "alarm.exit_without_tap",
    "alarm.presence_after_closing",
    "alarm.internal_error",
    "alarm.journal_rollback",
    "alarm.journal_unavailable",
    "alarm.lockcheck_missed",
    "alarm.pin_lockout",
    "alarm.reader_lost",
    "alarm.tamper",
    "alarm.visitor_unescorted",
    "cabinet.denied",
    "cabinet.granted",
    "cabinet.locked",
    "cabinet.open_reminder",
    "cabinet.unlocked",
    "card.unreadable",
    "carry_out.approved",
    "carry_out.refused",
    "checkpoint",
    "clock.changed",
    "daemon.started",
    "daemon.stopped",
    "door.closed",
    "door.denied",
    "door.exit",
    "door.exit_request",
    "door.granted",
    "door.opened",
    "event.unknown",
    "event.unknown_door",
    "journal.snapshot",
    "key.epoch",
    "ledger.reviewed",
    "lockcheck.cancelled",
    "lockcheck.confirmed",
    "lockcheck.open",
    "lockcheck.pin_wrong",
    "occupancy.expired",
    "occupancy.confirmed_empty",
    "occupancy.reset",
    "pin.changed",
    "reader.found",
    "system.changed",
    "tamper.cleared",
    "visitor.escort_changed",
]
RECORD_TYPES: frozenset[str] = frozenset(get_args(RecordType))


# A device's record that ends an alarm (the door closed again, the area checked): it
# names the alarm it clears in ``was``, and is not itself an alarm.
CLEARED = "alarm.cleared"
# ``was`` -> the alarm type it ends (without "alarm.").
CLEARS = {"held_open": "door_held_open", "forced": "door_forced",
          "area_not_closed": "area_not_closed",
          "cabinet_open_too_long": "cabinet_open_too_long",
          "presence_after_closing": "presence_after_closing"}  # fmt: skip


def is_alarm(rtype: str) -> bool:
    """Alarms are the records whose type starts with ``alarm.`` (R8, R15), but for
    :data:`CLEARED`, which ends one (before, the console listed it as an open alarm)."""
    return rtype.startswith("alarm.") and rtype != CLEARED


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
        "epoch",  # which key of the device signed it (0: the identity; docs/proofs.md)
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


def seal(obj: dict[str, Any], sign: Callable[[bytes], bytes]) -> Record:
    """The record of ``obj`` (every envelope field but hash and sig set): its canonical
    body, the body's hash, and ``sign`` over the hash's 32 bytes. The one place a record
    is made, for the journal and for the fleet simulator alike."""
    body = dumps_checked(obj)
    raw = hashlib.sha256(body).digest()
    return Record(seq=obj["seq"], type=obj["type"], body=body, hash=raw.hex(), sig=sign(raw).hex())


def format_ts(wall_ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a Z, the form used in every record."""
    dt = datetime.fromtimestamp(wall_ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{wall_ms % 1000:03d}Z"


def parse_ts(ts: str) -> int:
    """Milliseconds since the epoch of a record's ``ts`` (the inverse of format_ts)."""
    whole, _, frac = ts.rstrip("Z").partition(".")
    dt = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000 + int((frac or "0")[:3].ljust(3, "0"))
