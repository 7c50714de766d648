"""The console under attack (issue 26): password guesses sent in parallel, a shared
reverse proxy's address, live alarm streams that outlive their session, download names
built from what the client sent (R12, R15, R21)."""

from __future__ import annotations

import http.client as hc
import subprocess
import threading
import time
import urllib.parse
from email.message import Message
from pathlib import Path

import pytest

from edged.central.console.app import content_disposition
from edged.central.console.guard import Budget, client_address, parse_networks
from edged.central.store import open_store
from tests.conftest import EDGED
from tests.helpers.console import PASSWORD, ConsoleProc, Site, cookies_of, http

pytestmark = pytest.mark.system


def login_as(url: str, user: str, password: str = PASSWORD, xff: str | None = None):
    """One whole login (form, then POST), optionally through a proxy's X-Forwarded-For:
    (status, headers, body)."""
    host, port = urllib.parse.urlsplit(url).netloc.split(":")
    extra = {"X-Forwarded-For": xff} if xff else {}
    conn = hc.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/login", headers=extra)
        r = conn.getresponse()
        body = r.read().decode()
        nonce = cookies_of(r.headers)["edged_login"]
        csrf = body.split('name="csrf" value="', 1)[1].split('"', 1)[0]
        form = urllib.parse.urlencode({"csrf": csrf, "user": user, "password": password})
        conn.request("POST", "/login", body=form, headers={
            **extra, "Cookie": f"edged_login={nonce}",
            "Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
        r = conn.getresponse()
        return r.status, r.headers, r.read().decode()
    finally:
        conn.close()


def _parallel_guesses(url: str, user: str, n: int) -> list[int]:
    """``n`` wrong passwords for ``user``, released at the same moment."""
    start = threading.Barrier(n)
    statuses: list[int] = []

    def guess(i: int) -> None:
        start.wait()
        statuses.append(login_as(url, user, f"wrong guess {i:04d}", xff=f"10.9.0.{i}")[0])

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return statuses


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_parallel_guesses_lock_the_account(tmp_path, engine, request):
    """R12, R21: twelve wrong passwords sent at the same moment lock the account, on
    SQLite and on PostgreSQL (each try is counted in the store before its check; they
    once overwrote each other's count and left it at 2, unlocked). Then the right
    password is refused too, and the audit trail names the lock."""
    store = str(tmp_path / "central.db")
    if engine == "postgresql":
        store = request.getfixturevalue("postgres").url
    console = ConsoleProc(store, "--trusted-proxy", "127.0.0.1")  # one address per guess
    try:
        statuses = _parallel_guesses(console.url, "ken", 12)
        assert statuses == [401] * 12, statuses
        s = open_store(store)
        user = s.accounts.user("ken")
        failed = [r for r in s.accounts.audit_rows() if r["action"] == "login_failed"]
        s.close()
        assert user is not None and user["locked_until_ms"] > time.time() * 1000, user
        assert any('"locked": true' in r["detail"] for r in failed), failed
        assert len(failed) <= 5  # guesses beyond the limit were refused unchecked
        # The right password no longer opens it (refused as locked, or by the account's
        # budget that the twelve spent).
        status, _h, body = login_as(console.url, "ken", PASSWORD, xff="10.9.1.1")
        assert status == 401 and ("locked" in body or "for this account" in body), body
        # Four wrong and then the right one, in a row, still opens (the count restarts).
        for i in range(4):
            assert login_as(console.url, "ayako", f"wrong {i}", xff="10.9.2.1")[0] == 401
        assert login_as(console.url, "ayako", PASSWORD, xff="10.9.2.1")[0] == 303
        assert login_as(console.url, "ayako", "wrong again", xff="10.9.2.1")[0] == 401
        assert login_as(console.url, "ayako", PASSWORD, xff="10.9.2.1")[0] == 303
    finally:
        console.close()


def test_the_rate_limit_keys_on_the_client_behind_a_trusted_proxy_only(tmp_path):
    """R12: behind a trusted proxy one client spending its 20 tries a minute does not
    stop another; a header from anyone but a trusted proxy is ignored (else any client
    could name itself anew each try); and one account gets 10 tries a minute from all
    addresses together, names that do not exist included."""
    behind = ConsoleProc(str(tmp_path / "a.db"), "--trusted-proxy", "127.0.0.0/8")
    direct = ConsoleProc(str(tmp_path / "b.db"))
    try:
        for i in range(20):  # other names each time: only the address budget is spent
            assert login_as(behind.url, f"nobody{i}", "x", xff="192.0.2.7")[0] == 401
        status, _h, body = login_as(behind.url, "ken", PASSWORD, xff="192.0.2.7")
        assert status == 401 and "from this address" in body
        # A spoofed hop written by that client before the proxy's: still that client.
        status, _h, body = login_as(behind.url, "ken", PASSWORD, xff="198.51.100.1, 192.0.2.7")
        assert status == 401 and "from this address" in body
        assert login_as(behind.url, "ken", PASSWORD, xff="192.0.2.8")[0] == 303
        # Straight to the console, the header is the client's own words: ignored.
        for i in range(20):
            assert login_as(direct.url, f"nobody{i}", "x", xff=f"203.0.113.{i}")[0] == 401
        status, _h, body = login_as(direct.url, "ken", PASSWORD, xff="203.0.113.99")
        assert status == 401 and "from this address" in body
        # Per account, from twenty addresses: ten tries a minute.
        codes = [login_as(behind.url, "ghost", "x", xff=f"192.0.2.{100 + i}") for i in range(11)]
        assert [c[0] for c in codes] == [401] * 11
        assert "for this account" in codes[-1][2] and "for this account" not in codes[-2][2]
        s = open_store(str(tmp_path / "a.db"))
        logins = [r for r in s.accounts.audit_rows() if r["action"] == "login"]
        s.close()
        assert '"address": "192.0.2.8"' in logins[-1]["detail"]  # the client, not the proxy
    finally:
        behind.close()
        direct.close()


def test_client_address_and_budget_units():
    """R12: the address rules and the bounded budget on their own."""
    trusted = parse_networks(["10.0.0.1", "10.1.0.0/16"])
    assert client_address("10.0.0.1", ["203.0.113.5"], trusted) == "203.0.113.5"
    assert client_address("10.0.0.1", ["1.1.1.1, 203.0.113.5, 10.1.2.3"], trusted) == "203.0.113.5"
    assert client_address("10.0.0.1", ["1.1.1.1", "203.0.113.5"], trusted) == "203.0.113.5"
    assert client_address("10.0.0.1", ["garbage"], trusted) == "10.0.0.1"
    assert client_address("10.0.0.1", [], trusted) == "10.0.0.1"
    assert client_address("10.0.0.2", ["203.0.113.5"], trusted) == "10.0.0.2"
    assert client_address("10.0.0.1", ["[2001:db8::1]:443"], trusted) == "2001:db8::1"
    with pytest.raises(ValueError, match="--trusted-proxy: not an address"):
        parse_networks(["proxy.example"])
    b = Budget(2, window=60, max_keys=3)
    assert b.spend("a", 0) and b.spend("a", 1) and not b.spend("a", 2)
    assert b.spend("a", 61)  # the window moved on
    assert b.spend("b", 61) and b.spend("c", 61) and not b.spend("d", 61)  # table full
    assert b.spend("d", 200) and len(b) == 1  # the stale keys were forgotten


# -- live streams ------------------------------------------------------------------------
class Stream:
    """An open /events stream: its lines as they come."""

    def __init__(self, url: str, token: str) -> None:
        host, port = urllib.parse.urlsplit(url).netloc.split(":")
        self.conn = hc.HTTPConnection(host, int(port), timeout=20)
        self.conn.request("GET", "/events?after=0", headers={"Cookie": f"edged_session={token}"})
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        assert self.resp.readline() == b"retry: 2000\n"

    def events_until_closed(self) -> list[str]:
        """Every event name sent until the server closes the stream (20 s at most)."""
        names = []
        while line := self.resp.readline():
            if line.startswith(b"event: "):
                names.append(line[7:].strip().decode())
        self.conn.close()
        return names


def _alarm(db: Path, kind: str) -> None:
    s = open_store(db)
    s.alarms.add("2026-11-27T00:00:00.000Z", ("tokyo", "door-1"), kind, "x")
    s.commit()
    s.close()


def _user_cmd(site: Site, *args: str) -> None:
    subprocess.run([EDGED, "console", "--store", str(site.db), "user", *args], check=True,
                   capture_output=True, text=True)  # fmt: skip


@pytest.mark.parametrize("ending", ["logout", "expiry", "removal", "demotion"])
def test_a_live_stream_ends_with_its_session(tmp_path, ending):
    """R12, R21: an open alarm stream delivers while its session holds, and says `end`
    and closes when the session ends by logout, by idle expiry (the stream itself does
    not keep it alive), by the user's removal, or when the user's role changes; the
    alarm raised after that is never sent to it."""
    site = Site(tmp_path, "--idle-minutes", "0.1" if ending == "expiry" else "30")
    try:
        status, headers, _ = login_as(site.url, "ayako")
        assert status == 303
        token = cookies_of(headers)["edged_session"]
        _alarm(site.db, "tamper")
        stream = Stream(site.url, token)
        if ending == "logout":
            _s, _h, page = http(site.url + "/alarms", cookies={"edged_session": token})
            csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            assert http(site.url + "/logout", {"csrf": csrf}, {"edged_session": token})[0] == 303
        elif ending == "removal":
            _user_cmd(site, "remove", "ayako")
        elif ending == "demotion":
            _user_cmd(site, "role", "ayako", "--role", "viewer")
        # expiry: nothing to do but wait for the stream's end (6 s of no use)
        names = stream.events_until_closed()
        _alarm(site.db, "door_forced")
        assert names[-1:] == ["end"] and names.count("alarm") <= 1, names
        if ending == "demotion":  # the same session, seen with its new role
            assert http(site.url + "/audit", cookies={"edged_session": token})[0] == 403
            assert http(site.url + "/alarms", cookies={"edged_session": token})[0] == 200
        else:
            assert http(site.url + "/events", cookies={"edged_session": token})[0] == 401
    finally:
        site.close()


# -- download names -----------------------------------------------------------------------
def test_download_names_are_built_from_validated_values(site_with_admin):
    """R15, R16: a download's Content-Disposition is RFC 6266/5987 from a validated site
    (a `"` in the site once broke the header); a site that is no site name is refused."""
    site, admin = site_with_admin
    for bad in ('tokyo"; filename="evil.exe', "tokyo\r\nSet-Cookie: x=1", "Tokyo", "a/b"):
        q = urllib.parse.urlencode({"site": bad, "format": "csv"})
        status, headers, body = http(site.url + "/ledger?" + q, cookies=admin)
        assert status == 400 and "site" in body and "Content-Disposition" not in headers, bad
    status, headers, _ = http(site.url + "/ledger?site=tokyo&format=csv&from=2026-11-01"
                              "&to=2026-11-30", cookies=admin)  # fmt: skip
    assert status == 200
    msg = Message()
    msg["Content-Disposition"] = headers["Content-Disposition"]
    assert msg.get_filename() == "ledger-tokyo-2026-11-01-2026-11-30.csv"
    # The helper on a name that needs encoding: an ASCII fallback and the exact name.
    value = content_disposition('台帳 "x".csv')
    ascii_part, star = value.split("; filename*=")
    assert ascii_part == 'attachment; filename="____x_.csv"'
    assert star.startswith("UTF-8''") and urllib.parse.unquote(star[7:]) == '台帳 "x".csv'
    assert all(c.isascii() and c not in ' "\r\n;' for c in star)


@pytest.fixture
def site_with_admin(tmp_path):
    s = Site(tmp_path)
    status, headers, _ = login_as(s.url, "ayako")
    assert status == 303
    yield s, {"edged_session": cookies_of(headers)["edged_session"]}
    s.close()
