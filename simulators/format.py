"""Human-readable lines for records, shared by `edged sim` and `edged demo`."""

from __future__ import annotations

_QUIET = {
    "seq",
    "type",
    "ts",
    "mono_us",
    "mono_ns",
    "boot_id",
    "site",
    "device",
    "clock_synced",
    "prev",
    "key_id",
    "epoch",
}


def format_records(records: list[dict[str, object]]) -> list[str]:
    """One readable line per record: seq, type, then its own fields."""
    out = []
    for r in records:
        rest = " ".join(f"{k}={v}" for k, v in sorted(r.items()) if k not in _QUIET)
        out.append(f"seq {r.get('seq'):>5} {r.get('type')!s:<22} {rest}".rstrip())
    return out or ["(no record)"]
