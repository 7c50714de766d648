"""Who may use the console: people with a role (viewer, auditor, admin), passwords under
scrypt, logins rate-limited and locked out after repeated failures, sessions held server
side by the hash of their token, a CSRF token per session (R12, R21)."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ROLES = ("viewer", "auditor", "admin")
# scrypt cost: about 50 ms and 16 MiB a try on this machine, so a stolen users table
# yields passwords slowly.
_N, _R, _P = 2**14, 8, 1
MAX_FAILED = 5  # failed logins in a row before the account is locked...
LOCK_MS = 15 * 60 * 1000  # ...for this long
SESSION_IDLE_MS = 30 * 60 * 1000
COOKIE = "edged_session"
# Checked when the user name is unknown, so that the answer takes as long as a real one.
DUMMY_HASH = "scrypt$16384$8$1$00$00"


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    h = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, maxmem=64 << 20)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${h.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, want = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=bytes.fromhex(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=64 << 20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), want)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def role_allows(role: str, needed: str) -> bool:
    """Roles are ordered: an admin may do what an auditor may, an auditor what a viewer."""
    return ROLES.index(role) >= ROLES.index(needed) if role in ROLES else False
