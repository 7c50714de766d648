"""What devices last said (status, access-list versions), who is inside now, and the
console's summaries over them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from edged.central.present import FOLDED, Changes
from edged.central.store.sql import Dev, Sql


class ReportTable:
    """What devices said and who is inside, on the store's connection."""

    def __init__(self, sql: Sql) -> None:
        self._s = sql

    def _x(self, sql: str, params: Any = ()) -> Any:
        return self._s._x(sql, params)

    # -- what devices said -------------------------------------------------------------
    def note_status(self, dev: Dev, heard_ms: int, doc: dict[str, Any]) -> None:
        self._x(
            "INSERT INTO device_status VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (site, device)"
            " DO UPDATE SET heard_ms=excluded.heard_ms, ts=excluded.ts,"
            " head_seq=excluded.head_seq, acked_seq=excluded.acked_seq,"
            " backlog=excluded.backlog, clock_synced=excluded.clock_synced,"
            " journal_ok=excluded.journal_ok",
            (
                *dev,
                heard_ms,
                str(doc.get("ts"))[:32],
                _int(doc.get("head_seq")),
                _int(doc.get("acked_seq")),
                _int(doc.get("backlog")),
                _flag(doc.get("clock_synced")),
                _flag(doc.get("journal_ok")),
            ),
        )

    def note_acl_published(self, dev: Dev, version: int, seen_ms: int) -> None:
        """A list for the device was published; only a newer version moves the clock."""
        self._x(
            "INSERT INTO acl_state (site, device, published_version, published_ms)"
            " VALUES (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " published_version=excluded.published_version,"
            " published_ms=excluded.published_ms"
            " WHERE acl_state.published_version IS NULL"
            " OR acl_state.published_version < excluded.published_version",
            (*dev, version, seen_ms),
        )

    def note_acl_applied(self, dev: Dev, version: int, ts: str) -> None:
        self._x(
            "INSERT INTO acl_state (site, device, applied_version, applied_ts)"
            " VALUES (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " applied_version=excluded.applied_version, applied_ts=excluded.applied_ts"
            " WHERE acl_state.applied_version IS NULL"
            " OR acl_state.applied_version < excluded.applied_version",
            (*dev, version, ts),
        )

    def acl_states(self) -> list[dict[str, Any]]:
        cols = (
            "site", "device", "published_version", "published_ms", "applied_version", "applied_ts"
        )  # fmt: skip
        rows = self._x(f"SELECT {', '.join(cols)} FROM acl_state").fetchall()  # noqa: S608
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def statuses(self, site: str | None = None) -> list[dict[str, Any]]:
        cols = (
            "site",
            "device",
            "heard_ms",
            "ts",
            "head_seq",
            "acked_seq",
            "backlog",
            "clock_synced",
            "journal_ok",
        )
        return self._select("SELECT {cols} FROM device_status", cols, site, " ORDER BY device")

    def _select(self, sql: str, cols: Sequence[str], site: str | None, order: str) -> Any:
        where = " WHERE site = ?" if site is not None else ""
        rows = self._x(
            sql.format(cols=", ".join(cols)) + where + order, (site,) if where else ()
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def present_people(self, site: str | None = None) -> list[dict[str, Any]]:
        """Who is inside now, by site, area and person (see edged.central.present)."""
        cols = ("site", "device", "area", "person", "name", "since_ts")
        sql = "SELECT {cols} FROM present_people"
        return self._select(sql, cols, site, " ORDER BY site, area, person")

    def present_points(self, site: str | None = None) -> list[dict[str, Any]]:
        """Each door's and cabinet's last recorded state."""
        cols = ("site", "device", "kind", "name", "state", "area", "ts")
        sql = "SELECT {cols} FROM present_points"
        return self._select(sql, cols, site, " ORDER BY site, area, kind, name")

    def site_summary(self, heard_since_ms: int) -> list[dict[str, Any]]:
        """Per site: people inside, doors and cabinets open, devices, and devices in
        trouble (not heard since ``heard_since_ms``, or their journal down)."""
        out: dict[str, dict[str, Any]] = {}

        def row(site: str) -> dict[str, Any]:
            return out.setdefault(
                site, {"site": site, "inside": 0, "open_doors": 0, "open_cabinets": 0,
                       "devices": 0, "trouble": 0},
            )  # fmt: skip

        for site, n in self._x("SELECT site, count(*) FROM present_people GROUP BY site"):
            row(site)["inside"] = n
        for site, kind, n in self._x(
            "SELECT site, kind, count(*) FROM present_points WHERE state = 'open'"
            " GROUP BY site, kind"
        ):
            row(site)["open_doors" if kind == "door" else "open_cabinets"] = n
        for site, n, bad in self._x(
            "SELECT site, count(*), sum(CASE WHEN heard_ms < ? OR journal_ok = 0 THEN 1"
            " ELSE 0 END) FROM device_status GROUP BY site",
            (heard_since_ms,),
        ):
            row(site).update(devices=n, trouble=int(bad or 0))
        for (site,) in self._x("SELECT DISTINCT site FROM devices"):
            row(site)
        return [out[k] for k in sorted(out)]

    def head_records(self) -> dict[Dev, dict[str, Any]]:
        """Each device's newest stored record (its time, the device's key id and the
        signing epoch) and the newest checkpoint it proved."""
        rows = self._x(
            "SELECT d.site, d.device, d.best_checkpoint, r.ts, r.body FROM devices d LEFT JOIN"
            " records r ON r.site = d.site AND r.device = d.device AND r.seq = d.last_seq"
        ).fetchall()
        out: dict[Dev, dict[str, Any]] = {}
        for site, device, checkpoint, ts, body in rows:
            try:
                rec = json.loads(body or "{}")
                kid, epoch = rec.get("key_id"), rec.get("epoch", 0)
            except (ValueError, AttributeError):
                kid, epoch = None, None
            kid = kid if isinstance(kid, str) else None
            epoch = epoch if type(epoch) is int else None
            # The identity's key id, and the epoch whose key signs now (docs/proofs.md).
            out[(site, device)] = {"ts": ts, "key_id": kid, "epoch": epoch,
                                   "checkpoint": checkpoint}  # fmt: skip
        return out

    def fill_present(self) -> None:
        """Fold every stored record into the present tables (once, at migration 7)."""
        marks = ",".join("?" * len(FOLDED))
        changes = Changes()
        cur = self._x(
            f"SELECT site, device, type, ts, body FROM records WHERE type IN ({marks})"  # noqa: S608
            " ORDER BY site, device, seq",
            sorted(FOLDED),
        )
        for site, device, rtype, ts, body in cur.fetchall():
            changes.add(site, device, rtype, ts, body)
        for sql, args in changes.statements():
            self._s._exec_many(sql, args)


def _int(v: Any) -> int | None:
    return v if type(v) is int and -(2**62) < v < 2**62 else None


def _flag(v: Any) -> int | None:
    return int(v) if type(v) is bool else None
