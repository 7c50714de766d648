"""What a device says of itself besides its records: the heartbeat (what the central
alarms look at: backlog, disk, clock, journal health) and the retained status (online
with its head, or offline and why). Documents only; the agent publishes them."""

from __future__ import annotations

from typing import Any


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


def offline(device: str, boot_id: str, reason: str) -> dict[str, Any]:
    """The retained status at a clean stop (the broker's will says it after a timeout)."""
    return {"state": "offline", "device": device, "boot_id": boot_id, "reason": reason}
