"""The console's people, their sessions and the audit trail of what they did (R12, R15,
R21): its own concern, in the central store's database (migration 6 made its tables).

Failed logins are counted in the database, in the statement that admits the try, before
its password is checked: guesses sent at the same moment each see the count the others
left (they once read it, waited 50 ms for scrypt, and wrote count+1 over each other, so
twelve parallel guesses left it at 2)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edged.protocol.records import GENESIS

if TYPE_CHECKING:
    from edged.central.store import CentralStore

# A session's last use is written at most this often (the idle limit is minutes).
SESSION_TOUCH_MS = 30_000


@dataclass(frozen=True)
class Attempt:
    """A login try admitted (``admitted``: its password may be checked; ``failed``: the
    tries in a row counted so far, this one included) or refused before any check."""

    admitted: bool
    failed: int = 0
    reason: str = ""


class Accounts:
    """Console users, sessions and the hash-chained audit trail, on one store's
    connection (its transactions, its SQL dialect)."""

    def __init__(self, store: CentralStore) -> None:
        self._s = store

    def _x(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self._s._x(sql, params)

    # -- people ----------------------------------------------------------------------
    def add_user(self, name: str, role: str, pw_hash: str, ts: str) -> None:
        """Add a user, or give one a new role and password. A new password ends the
        user's sessions: whoever held one may have been why it was changed."""
        old = self.user(name)
        self._x(
            "INSERT INTO console_users (name, role, pw_hash, created_ts) VALUES (?,?,?,?)"
            " ON CONFLICT (name) DO UPDATE SET role=excluded.role, pw_hash=excluded.pw_hash,"
            " failed=0, locked_until_ms=0",
            (name, role, pw_hash, ts),
        )
        if old is not None and old["pw_hash"] != pw_hash:
            self._x("DELETE FROM console_sessions WHERE name = ?", (name,))

    def set_role(self, name: str, role: str) -> bool:
        """Give a user another role; whether there was one. Pages and open alarm streams
        see it at their next request or batch."""
        return bool(
            self._x("UPDATE console_users SET role = ? WHERE name = ?", (role, name)).rowcount
        )

    def remove_user(self, name: str) -> bool:
        """Remove a user and every session of theirs; whether there was one."""
        self._x("DELETE FROM console_sessions WHERE name = ?", (name,))
        return bool(self._x("DELETE FROM console_users WHERE name = ?", (name,)).rowcount)

    def user(self, name: str) -> dict[str, Any] | None:
        cols = ("name", "role", "pw_hash", "failed", "locked_until_ms")
        row = self._x(
            f"SELECT {', '.join(cols)} FROM console_users WHERE name = ?",  # noqa: S608
            (name,),
        ).fetchone()
        return dict(zip(cols, row, strict=True)) if row else None

    # -- logins ----------------------------------------------------------------------
    def begin_login(self, name: str, now_ms: int, max_failed: int, lock_ms: int) -> Attempt:
        """Count a try as failed before its password is checked, in one statement. Tries
        beyond ``max_failed`` in a row (sent alongside the others) lock the account and
        are refused unchecked; a locked account refuses every try until it unlocks."""
        row = self._x(
            "UPDATE console_users SET failed = failed + 1 WHERE name = ? AND"
            " locked_until_ms <= ? RETURNING failed",
            (name, now_ms),
        ).fetchone()
        if row is None:
            if self.user(name) is None:
                return Attempt(True)  # no such user: checked against a dummy, for the time
            return Attempt(False, reason="locked")
        failed = int(row[0])
        if failed > max_failed:
            self._lock(name, now_ms + lock_ms)
            return Attempt(False, failed, "locked")
        return Attempt(True, failed)

    def end_login(
        self, name: str, attempt: Attempt, ok: bool, now_ms: int, max_failed: int, lock_ms: int
    ) -> bool:
        """The verdict on an admitted try; whether it locked the account. A right password
        starts the count again (an account locked meanwhile by guesses sent alongside
        stays locked); the wrong one that reaches ``max_failed`` locks it."""
        if ok:
            self._x("UPDATE console_users SET failed = 0 WHERE name = ?", (name,))
            return False
        if attempt.failed >= max_failed:
            self._lock(name, now_ms + lock_ms)
            return True
        return False

    def _lock(self, name: str, until_ms: int) -> None:
        self._x(
            "UPDATE console_users SET locked_until_ms = ?, failed = 0 WHERE name = ?",
            (until_ms, name),
        )

    # -- sessions --------------------------------------------------------------------
    def add_session(self, token_hash: str, name: str, csrf: str, now_ms: int) -> None:
        self._x(
            "INSERT INTO console_sessions VALUES (?,?,?,?,?)",
            (token_hash, name, csrf, now_ms, now_ms),
        )

    def session(
        self, token_hash: str, idle_ms: int, now_ms: int, *, touch: bool = True
    ) -> dict[str, Any] | None:
        """The session's user, role and CSRF token, if it was used within ``idle_ms``.
        ``touch=False`` looks without counting as a use (an open alarm stream must not
        keep a session alive that its person left)."""
        row = self._x(
            "SELECT s.name, u.role, s.csrf, s.seen_ms FROM console_sessions s JOIN"
            " console_users u ON u.name = s.name WHERE s.token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None or now_ms - row[3] > idle_ms:
            return None
        if touch and now_ms - row[3] > SESSION_TOUCH_MS:  # not a write (and a commit) per page
            self._x(
                "UPDATE console_sessions SET seen_ms = ? WHERE token_hash = ?",
                (now_ms, token_hash),
            )
        return {"name": row[0], "role": row[1], "csrf": row[2]}

    def drop_session(self, token_hash: str) -> None:
        self._x("DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    # -- the audit trail -------------------------------------------------------------
    def audit(self, ts: str, name: str, action: str, detail: str) -> int:
        """Append to the console's audit trail, chained by hash; its seq."""
        self._s.begin()
        last = self._x(
            "SELECT seq, hash FROM console_audit ORDER BY seq DESC LIMIT 1"  # noqa: S608
            + self._s._lock_suffix()
        ).fetchone()
        seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
        body = {"seq": seq, "ts": ts, "name": name, "action": action, "detail": detail,
                "prev": prev}  # fmt: skip
        h = hashlib.sha256(
            json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        ).hexdigest()
        self._x(
            "INSERT INTO console_audit VALUES (?,?,?,?,?,?,?)",
            (seq, ts, name, action, detail, prev, h),
        )
        self._s.commit()
        return seq

    def audit_rows(self) -> list[dict[str, Any]]:
        cols = ("seq", "ts", "name", "action", "detail", "prev", "hash")
        rows = self._x(f"SELECT {', '.join(cols)} FROM console_audit ORDER BY seq").fetchall()  # noqa: S608
        return [dict(zip(cols, r, strict=True)) for r in rows]
