"""The connection every part of the central store writes through: a DB-API connection
under one transaction at a time, and the hooks an engine supplies (placeholders, how a
transaction starts, how rows are locked). Records of the open transaction are written in
one executemany before any other statement, so every read sees them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

Dev = tuple[str, str]  # (site, device)


class Sql:
    """The statements' way to the database; engines supply the hooks."""

    ENGINE = "sqlite"
    INT = "INTEGER"
    AUTO_ID = "INTEGER PRIMARY KEY"
    GREATEST = "max"
    url: str
    # Records of the open transaction not yet sent: written in one executemany before
    # any other statement and before commit, so every read sees them.
    _rows: list[tuple[Any, ...]]

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._rows:
            self._write_rows()
        return self._exec(sql, params)

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._rows:
            self._write_rows()
        self._exec_many(sql, list(rows))

    def _write_rows(self) -> None:
        raise NotImplementedError

    def write_pending(self) -> None:
        """The open transaction's records, sent now (a statement after must see them)."""
        if self._rows:
            self._write_rows()

    def begin(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _lock_suffix(self) -> str:
        return ""

    def _for_keys(self, sql: str, keys: Iterable[tuple[Any, ...]], tail: str = "") -> list[Any]:
        """Rows of ``sql`` (ending in ``IN (VALUES``) for many keys of one width, 200
        keys a statement: a batch asks about many devices at once."""
        todo = sorted(set(keys))
        rows: list[Any] = []
        for i in range(0, len(todo), 200):
            part = todo[i : i + 200]
            marks = ", ".join(["(" + ",".join("?" * len(part[0])) + ")"] * len(part))
            rows += self._x(f"{sql} {marks}){tail}", [x for k in part for x in k]).fetchall()
        return rows

    def _skip_locked_suffix(self) -> str:
        return ""
