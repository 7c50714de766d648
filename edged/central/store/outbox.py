"""The notification outbox (issue 39) on one store's connection: rows written with the
alarm they announce, delivered after the commit, retried with backoff. All its SQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edged.central.store.records import CentralStore

COLS = ("id", "created_ts", "site", "device", "type", "rule", "channel", "title", "body",
        "attempts", "next_ms", "delivered_ts", "last_error")  # fmt: skip


class Outbox:
    def __init__(self, store: CentralStore) -> None:
        self._s = store

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._s._x(sql, params)

    def add(self, ts: str, dev: tuple[str, str], atype: str, rule: str, channel: int,
            title: str, body: str, now_ms: int) -> None:  # fmt: skip
        """Joins the open transaction: the notification exists exactly when its alarm does."""
        self._x(
            "INSERT INTO notify_outbox (created_ts, site, device, type, rule, channel, title,"
            " body, next_ms) VALUES (?,?,?,?,?,?,?,?,?)",
            (ts, *dev, atype, rule, channel, title, body, now_ms),
        )

    def due(self, now_ms: int, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._x(
            f"SELECT {', '.join(COLS)} FROM notify_outbox WHERE delivered_ts IS NULL"  # noqa: S608
            " AND next_ms <= ? ORDER BY id LIMIT ?",
            (now_ms, limit),
        ).fetchall()
        return [dict(zip(COLS, r, strict=True)) for r in rows]

    def delivered(self, row_id: int, ts: str) -> None:
        self._x(
            "UPDATE notify_outbox SET delivered_ts = ?, attempts = attempts + 1 WHERE id = ?",
            (ts, row_id),
        )

    def failed(self, row_id: int, error: str, next_ms: int) -> None:
        self._x(
            "UPDATE notify_outbox SET attempts = attempts + 1, last_error = ?, next_ms = ?"
            " WHERE id = ?",
            (error[:300], next_ms, row_id),
        )

    def rows(self) -> list[dict[str, Any]]:
        """Every notification, oldest first (the console's and the tests' view)."""
        rows = self._x(f"SELECT {', '.join(COLS)} FROM notify_outbox ORDER BY id").fetchall()  # noqa: S608
        return [dict(zip(COLS, r, strict=True)) for r in rows]
