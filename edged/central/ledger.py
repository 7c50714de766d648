"""The ledger (入退室管理表) of a site, area, door or person across every door, built from
the central store, with a verification line that says what was proven: each record's
hash, the chain links between a device's records, each signature again with the trust
directory when given, and the gaps by device and seq (R1, R9, R13, R16)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import zoneinfo
from dataclasses import dataclass, field, replace
from typing import Any

from edged.central.store import CentralStore
from edged.central.trust import DeviceEpochs, TrustStore
from edged.central.verify import check_record, check_stored
from edged.ledger import Ledger, Scope, add_records, anchors_of, finish, new_ledger
from edged.protocol.records import ROLLBACK, format_ts

# Visits that began this long before the period are still closed by their exit in it.
LOOKBACK = dt.timedelta(days=7)


@dataclass
class CentralVerdict:
    """What was checked of the records a central ledger is built from."""

    site: str
    records: int = 0
    devices: int = 0
    signatures_checked: bool = False
    problems: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.gaps

    def summary(self) -> str:
        sig = (
            "every signature verified again with the trust directory"
            if self.signatures_checked
            else "signatures verified on arrival, not again (no --trust)"
        )
        text = (
            f"{'OK' if self.ok else 'NOT OK'}: central copy of site {self.site}: {self.records}"
            f" records from {self.devices} devices; every hash and chain link checked; {sig};"
            f" gaps: {'; '.join(self.gaps) if self.gaps else 'none'}"
        )
        for p in self.problems[:20]:
            text += f"\nPROBLEM: {p}"
        return text


def _utc_bounds(start: dt.date, end: dt.date, tz: str) -> tuple[str, str]:
    z = zoneinfo.ZoneInfo(tz)
    lo = dt.datetime.combine(start, dt.time(), z) - LOOKBACK
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), z)
    return (format_ts(int(lo.timestamp() * 1000)), format_ts(int(hi.timestamp() * 1000)))


def _check_device(
    site: str,
    device: str,
    rows: list[tuple[int, str, str]],
    epochs: DeviceEpochs | None,
    v: CentralVerdict,
) -> list[dict[str, Any]]:
    """The device's records as dicts, in seq order; problems and gaps noted in ``v``."""
    out: list[dict[str, Any]] = []
    prev: tuple[int, str] | None = None
    dev = (site, device)
    for seq, h, body in rows:
        # Without a trust directory, what can be checked again is each hash and link;
        # with one, each signature too, under the key of the record's epoch.
        if epochs is not None:
            rec = check_record(body.encode(), *epochs.trust.key(*dev), origin=dev)
            if not isinstance(rec, str):
                rec = epochs.problem(dev, rec) or rec
        else:
            rec = check_stored(body, h)
        if isinstance(rec, str):
            v.problems.append(f"{device} seq {seq}: {rec}")
            continue
        if rec.get("hash") != h:
            v.problems.append(f"{device} seq {seq}: stored hash differs from the record's")
        if prev is not None:
            if seq == prev[0] + 1 and rec.get("prev") != prev[1]:
                v.problems.append(f"{device} seq {seq}: does not link to seq {prev[0]}")
            elif seq > prev[0] + 1 and rec.get("type") != ROLLBACK:
                v.gaps.append(f"{device} seqs {prev[0] + 1}..{seq - 1} missing")
        prev = (seq, h)
        out.append(rec)
    return out


class LedgerCache:
    """The last few ledgers built, each with the digest of every stored byte it was built
    from. A ledger is a pure function of those bytes (and of site, period, scope and time
    zone), so when the store returns the same bytes the checks would repeat exactly:
    paging through a month, or downloading what is on screen, costs the query and one
    SHA-256 over its rows. A single changed byte is a miss, and everything is checked
    again."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._kept: dict[tuple[Any, ...], tuple[bytes, Ledger]] = {}

    def get(self, key: tuple[Any, ...], digest: bytes) -> Ledger | None:
        hit = self._kept.get(key)
        return hit[1] if hit is not None and hit[0] == digest else None

    def put(self, key: tuple[Any, ...], digest: bytes, led: Ledger) -> None:
        self._kept.pop(key, None)
        self._kept[key] = (digest, led)
        while len(self._kept) > self.size:
            del self._kept[next(iter(self._kept))]


def central_ledger(
    store: CentralStore,
    site: str,
    start: dt.date,
    end: dt.date,
    tz: str,
    *,
    scope: Scope = Scope(),  # noqa: B008 (frozen)
    trust: TrustStore | None = None,
    cache: LedgerCache | None = None,
) -> Ledger:
    """The period's ledger for ``site`` (narrowed by ``scope``) from every device's
    records, checked as it is read."""
    lo, hi = _utc_bounds(start, end, tz)
    rows = store.records_between(site, lo, hi)
    key = (site, start, end, tz, scope, trust is not None)
    seen = hashlib.sha256()
    if cache is not None and trust is None:  # a trust directory's keys may change: not kept
        for device, seq, h, body in rows:
            seen.update(f"{len(device)}:{device}{seq}:{h}{len(body)}:{body}".encode())
        kept = cache.get(key, seen.digest())
        if kept is not None:
            return replace(kept, reviews=_reviews(store, site, start, end))
    verdict = CentralVerdict(site, signatures_checked=trust is not None)
    led = new_ledger(start, end, tz, verdict)
    by_device: dict[str, list[tuple[int, str, str]]] = {}
    for device, seq, h, body in rows:
        by_device.setdefault(device, []).append((seq, h, body))
    epochs = DeviceEpochs(trust, store.trees.epoch_certs) if trust is not None else None
    for device, own in sorted(by_device.items()):
        records = _check_device(site, device, own, epochs, verdict)
        verdict.records += len(own)
        verdict.devices += 1
        add_records(led, records, anchors_of(records), scope)
    led.source = f"{site}: " + ", ".join(sorted(by_device)) if by_device else site
    led = finish(led)
    if cache is not None and trust is None:
        cache.put(key, seen.digest(), led)
    return replace(led, reviews=_reviews(store, site, start, end))


def _reviews(store: CentralStore, site: str, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """The sign-offs of this site's records whose period meets this one (R16, R20), from
    the console's audit trail (``edged report --reviewed-by`` writes there too)."""
    out = []
    for row in store.accounts.audit_rows():
        if row["action"] != "review_signoff":
            continue
        try:
            d = json.loads(row["detail"])
            lo, hi = dt.date.fromisoformat(d["from"]), dt.date.fromisoformat(d["to"])
        except (ValueError, KeyError, TypeError):
            continue
        if d.get("site") == site and lo <= end and hi >= start:
            out.append({"time": row["ts"], "from": d["from"], "to": d["to"],
                        "reviewer": row["name"], "method": str(d.get("method", "")),
                        "result": str(d.get("findings", ""))})  # fmt: skip
    return out
