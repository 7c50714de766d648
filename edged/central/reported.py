"""What devices report besides their records, decided (R9, R10, R13): where a device's
journal head is, a checkpoint it retained, and that its journal cannot record. Pure
beside :mod:`edged.central.ingest`: each function reads what it is given (and may ask
the store through a callable) and returns an outcome; the collector does it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.protocol.records import parse_ts
from edged.protocol.signed import Rejected, parse_signed


@dataclass(frozen=True)
class HeadReport:
    """A live status or heartbeat: the device's journal head, and what it was receipted."""

    head: int
    known: bool  # the device knows its head (false while its journal cannot be read)
    acked: int | None
    ts: Any
    doc: dict[str, Any]

    @property
    def heartbeat(self) -> bool:
        return "backlog" in self.doc  # what the central alarms look at


def head_report(payload: bytes) -> HeadReport | None:
    try:
        doc = json.loads(payload)
        head = doc.get("head_seq")
        report = HeadReport(head, doc.get("head_known", True) is True, doc.get("acked_seq"),
                            doc.get("ts"), doc)  # fmt: skip
    except (ValueError, AttributeError):
        return None
    return report if type(head) is int else None


@dataclass(frozen=True)
class HeadOutcome:
    receipt_from: int | None = None  # our receipt was lost: send it again from here
    lagging: bool = False  # it holds records we lack: ask for them if none arrive
    went_back: bool = False  # its journal went back: an alarm, and tell it our head


def judge_head(
    r: HeadReport, last: int, receipted: int, ts_at: Callable[[int], str | None]
) -> HeadOutcome:
    """Ahead of us: it holds records we lack (published before we subscribed, or lost
    with a broker). Behind us: its journal went back, but only if our record after its
    head was written before it reported (with several collectors, a heartbeat can be
    handled after records the device wrote later, and such a report is merely old)."""
    receipt_from = None
    if type(r.acked) is int and r.acked < min(last, receipted):
        # A broker died between taking and delivering our receipt: the device waits.
        receipt_from = r.acked
    if r.head > last:
        return HeadOutcome(receipt_from, lagging=True)
    went_back = r.head < last and _written_before(ts_at(r.head + 1), r.ts)
    return HeadOutcome(receipt_from, went_back=went_back)


def _written_before(written: str | None, reported: Any) -> bool:
    if written is None or not isinstance(reported, str):
        return False
    try:
        return parse_ts(written) < parse_ts(reported)
    except ValueError:
        return False


def judge_checkpoint(seq: int, h: str, best: int, stored: str | None) -> tuple[str, str] | None:
    """A retained checkpoint against what is stored: (alarm kind, detail), or None when
    it holds (the store notes it)."""
    if seq < best:
        return "rollback", f"checkpoint at seq {seq} is older than seq {best} seen before"
    if stored is not None and stored != h:
        return "rewrite", f"checkpoint at seq {seq} differs"
    return None


def journal_unavailable(
    payload: bytes, site: str, device: str, keys: dict[str, Ed25519PublicKey]
) -> str:
    """A device's signed word that its journal cannot record (signed by the key in
    force: one of its known epochs', by key id): the alarm's detail. ValueError (or
    :class:`Rejected`) with the reason it is ignored."""
    try:
        kid = str(json.loads(payload).get("key_id")) if len(payload) <= 4096 else ""
        doc = parse_signed(payload, keys.get(kid), max_bytes=4096)
    except (ValueError, AttributeError):
        raise ValueError("malformed") from None
    if doc.get("site") != site or doc.get("device") != device:
        raise Rejected("wrong_scope", f"{doc.get('site')}/{doc.get('device')}")
    return (
        f"since {doc.get('since')}: {doc.get('unrecorded')} unrecorded;"
        f" {str(doc.get('error'))[:200]}"
    )
