"""What a device says of itself besides its records: the heartbeat (what the central
alarms look at: backlog, disk, clock, journal health) and the retained status (online
with its head, or offline and why). Documents only; the agent publishes them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.signed import sign_doc

log = get_logger("sync")


def heartbeat(
    device: str, ts: str, boot_id: str, head: tuple[int, str, bool], acked: int,
    published: int, disk_free: int, synced: bool, fault: dict[str, Any] | None,
) -> dict[str, Any]:  # fmt: skip
    """``head``: (seq, hash, known); a head not known (the journal unreadable) is a guess
    the collector must not take for a rolled-back journal."""
    seq, h, known = head
    beat: dict[str, Any] = {
        "device": device,
        "ts": ts,
        "boot_id": boot_id,
        "head_seq": seq,
        "head_hash": h,
        "head_known": known,
        "acked_seq": acked,
        "published_seq": published,
        "backlog": max(0, seq - acked),
        "disk_free_bytes": disk_free,
        "clock_synced": synced,
        "journal_ok": fault is None,
    }
    if fault is not None:
        beat["journal_error"] = fault["error"]
        beat["unrecorded"] = fault["unrecorded"]
    return beat


def online(beat: dict[str, Any]) -> dict[str, Any]:
    """The retained status while connected: where the head is, what was receipted."""
    keep = ("device", "ts", "boot_id", "head_seq", "head_hash", "head_known", "acked_seq")
    return {"state": "online", **{k: beat[k] for k in keep}}


def offline(device: str, boot_id: str, reason: str | None = None) -> dict[str, Any]:
    """The retained status at a clean stop (``reason``), or the broker's will, which says
    it after a timeout."""
    doc = {"state": "offline", "device": device, "boot_id": boot_id}
    return {**doc, "reason": reason} if reason else doc


def journal_unavailable(
    site: str, device: str, boot_id: str, ts: str, fault: dict[str, Any],
    key: Callable[[], Ed25519PrivateKey] | None,
) -> dict[str, Any]:  # fmt: skip
    """The journal cannot record: said over MQTT, signed by the key in force (``key``),
    since the device's own alarm record can only follow once its storage works again."""
    doc = {"type": "journal.unavailable", "site": site, "device": device,
           "boot_id": boot_id, "ts": ts, **fault}  # fmt: skip
    if key is None:
        return doc
    try:
        return sign_doc(doc, key())
    except EdgedError as e:  # the key store unreadable: sent unsigned, said so
        log.error("fault_alarm_unsigned", error=str(e))
        return doc
