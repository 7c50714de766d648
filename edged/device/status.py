"""What a running door says of itself: the line ``systemctl status`` shows (sent with
each watchdog ping) and the snapshot ``edged status`` prints. Read on the core thread;
both answer most of all when storage fails."""

from __future__ import annotations

from typing import Any

from edged.core import Core
from edged.device.journal import Journal
from edged.errors import EdgedError


def journal_state(journal: Journal | None, fault: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {"ok": fault is None}
    try:
        out["head_seq"], out["head_hash"] = journal.head() if journal else (0, "")
    except EdgedError as e:
        out.update(ok=False, error=str(e))
    if fault is not None:
        out["fault"] = dict(fault)
    return out


def status_line(core: Core, journal: Journal | None, fault: dict[str, Any] | None) -> str:
    """Who is inside, alarms, journal head (or since when it cannot record)."""
    inside = sum(len(v) for v in core.snapshot()["occupancy"].values())
    alarm = " ALARM" if core.alarm_active() else ""
    if fault is not None:  # the watchdog ping must go on: the loop is alive
        return (
            f"{inside} inside, JOURNAL DOWN since {fault['since']}"
            f" ({fault['unrecorded']} records refused){alarm}"
        )
    j = journal_state(journal, None)
    return f"{inside} inside, journal head {j.get('head_seq', '?')}{alarm}"
