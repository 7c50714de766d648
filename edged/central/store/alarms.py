"""The alarms table: device alarms with their record, what the collector found, and the
central side's watched conditions (open until cleared); acknowledged from the console."""

from __future__ import annotations

from typing import Any

from edged.central.store.sql import Dev, Sql

ALARM_COLUMNS = (
    "id", "ts", "site", "device", "type", "detail", "source", "seq", "cleared_ts", "acked_by",
    "acked_ts", "ack_comment",
)  # fmt: skip


class AlarmTable:
    """The alarms table on the store's connection (in its open transaction)."""

    def __init__(self, sql: Sql) -> None:
        self._s = sql

    def _x(self, sql: str, params: Any = ()) -> Any:
        return self._s._x(sql, params)

    def add(
        self,
        ts: str,
        dev: Dev,
        atype: str,
        detail: str,
        *,
        source: str = "collector",
        seq: int | None = None,
    ) -> None:
        # Joins the open transaction (a batch), or commits by itself.
        self._x(
            "INSERT INTO alarms (ts, site, device, type, detail, source, seq)"
            " VALUES (?,?,?,?,?,?,?)",
            (ts, *dev, atype, detail, source, seq),
        )

    def clear_device(self, dev: Dev, atype: str, where: dict[str, str], ts: str) -> None:
        """A device's alarm of ``atype`` at ``where`` (its door or area, as its detail line
        has them) ended: the open ones are cleared (they leave the list of alarms to act
        on, acknowledged or not)."""
        sql = ("UPDATE alarms SET cleared_ts = ? WHERE site = ? AND device = ? AND type = ?"
               " AND source = 'device' AND cleared_ts IS NULL")  # fmt: skip
        params: list[Any] = [ts, *dev, atype]
        for k, v in sorted(where.items()):
            sql += " AND (' ' || detail || ' ') LIKE ?"
            params.append(f"% {k}={v} %")
        self._x(sql, tuple(params))

    def raise_condition(self, ts: str, dev: Dev, atype: str, detail: str) -> bool:
        """Open a condition alarm (a silent device, a stalled sync...) unless one of that
        type is open for the device already; True when it was opened now."""
        self._s.begin()
        if self._x(
            "SELECT 1 FROM alarms WHERE site=? AND device=? AND type=? AND cleared_ts IS NULL"
            " AND source = 'central'",
            (*dev, atype),
        ).fetchone():
            return False
        self.add(ts, dev, atype, detail, source="central")
        return True

    def clear_condition(self, ts: str, dev: Dev, atype: str) -> bool:
        """Close the open condition alarm of that type; True when one was open."""
        self._s.begin()
        cur = self._x(
            "UPDATE alarms SET cleared_ts=? WHERE site=? AND device=? AND type=?"
            " AND cleared_ts IS NULL AND source = 'central'",
            (ts, *dev, atype),
        )
        return bool(cur.rowcount)

    def all(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._x("SELECT type, detail FROM alarms ORDER BY id")]  # type: ignore[misc]

    def rows(self) -> list[dict[str, Any]]:
        """Every alarm, oldest first."""
        return self.after(after_id=0, limit=2**62)

    def origins(self) -> set[tuple[str, str]]:
        """The (site, device) names alarms were raised under."""
        return {(s, d) for s, d in self._x("SELECT site, device FROM alarms")}

    def ack(self, alarm_id: int, name: str, ts: str, comment: str) -> bool:
        cur = self._x(
            "UPDATE alarms SET acked_by = ?, acked_ts = ?, ack_comment = ? WHERE id = ?"
            " AND acked_by IS NULL",
            (name, ts, comment, alarm_id),
        )
        return bool(cur.rowcount)

    def active(self, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """The newest alarms neither cleared nor acknowledged, and the newest alarm id."""
        cols = ALARM_COLUMNS
        rows = self._x(
            f"SELECT {', '.join(cols)} FROM alarms WHERE cleared_ts IS NULL"  # noqa: S608
            " AND acked_by IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        last = self._x("SELECT max(id) FROM alarms").fetchone()[0] or 0
        return [dict(zip(cols, r, strict=True)) for r in rows], last

    def after(self, after_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest first; with ``after_id`` (0: from the start), those after it, oldest
        first."""
        cols = ALARM_COLUMNS
        sql = f"SELECT {', '.join(cols)} FROM alarms"  # noqa: S608
        if after_id is not None:
            rows = self._x(sql + " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        else:
            rows = self._x(sql + " ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]
