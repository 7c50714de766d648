"""A record as the journal writes it: the fields it is given, checked, and the envelope
the journal adds (seq, time, boot, chain, key, epoch, origin), signed by the key in force
(R9, R13; DESIGN.md, record format)."""

from __future__ import annotations

from typing import Any

from edged.device.keystore import EpochKey
from edged.errors import JournalError
from edged.protocol.privacy import check_fields
from edged.protocol.records import ENVELOPE_FIELDS, Record, seal

Now = tuple[str, int, bool]  # ts, mono ns, clock synchronised: read once per transaction


def validate(rtype: str, fields: dict[str, Any]) -> None:
    if not isinstance(rtype, str) or not rtype or len(rtype) > 64:
        raise JournalError(f"record type {rtype!r}: must be a non-empty string of <= 64 chars")
    if not ENVELOPE_FIELDS.isdisjoint(fields):
        clash = sorted(ENVELOPE_FIELDS.intersection(fields))
        raise JournalError(f"fields {clash}: reserved for the journal itself")
    check_fields(fields)


def build(
    seq: int, prev: str, rtype: str, fields: dict[str, Any], now: Now, signer: EpochKey,
    key_id: str, boot_id: str, origin: dict[str, str],
) -> tuple[Record, tuple[Any, ...]]:  # fmt: skip
    """The signed record and its table row. Every record names its site and device
    inside what is signed, so it can never be passed off as another site's."""
    ts, mono, synced = now
    obj = dict(fields)
    obj.update(origin)
    obj.update(
        seq=seq, ts=ts, mono_us=mono // 1000, boot_id=boot_id, clock_synced=synced,
        type=rtype, prev=prev, key_id=key_id, epoch=signer.epoch,
    )  # fmt: skip
    rec = seal(obj, signer.sign)
    return rec, (seq, rtype, ts, prev, rec.hash, rec.sig, key_id, rec.body.decode("utf-8"))
