"""The web console (issue 15, first part): logins, sessions, CSRF, headers, roles, the
audit trail; and in Debian's headless Chromium driven by Playwright: log in, an alarm
appears live, acknowledge it, a ledger downloaded and read back (R15, R16, R21)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice
from edged.simulators.mosquitto import free_port

from edged.central.collector import Collector
from edged.central.store import open_store
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.records import GENESIS
from tests.conftest import EDGED

pytestmark = pytest.mark.system

XSS = "<script>alert(1)</script>"
PASSWORD = "correct horse battery"


class Site:
    """A central store with one door's records, users, and a running console."""

    def __init__(self, tmp: Path, *console_args: str) -> None:
        self.tmp = tmp
        self.db = tmp / "central.db"
        self.key = init_role_key(tmp / "collector", "collector")
        self.door = FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate())
        (tmp / "trust" / "tokyo").mkdir(parents=True)
        (tmp / "trust" / "tokyo" / "door-1.pub").write_text(
            public_key_pem(self.door.key.public_key())
        )
        d = self.door
        d.append("door.granted", {"door": "main", "area": "handling", "person": "S1001",
                                  "name": "Yamada"})  # fmt: skip
        d.append("door.granted", {"door": "main", "area": "handling", "person": "S1002",
                                  "name": XSS})  # fmt: skip
        d.append("door.exit", {"door": "main", "area": "handling", "person": "S1001"})
        self.ingest()
        for name, role in (("ayako", "admin"), ("ken", "viewer")):
            subprocess.run(
                [EDGED, "console", "--store", str(self.db), "user", "add", name, "--role", role,
                 "--password-stdin"],
                input=PASSWORD + "\n", text=True, check=True, capture_output=True,
            )  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                EDGED,
                "console",
                "--store",
                str(self.db),
                "--listen",
                f"127.0.0.1:{self.port}",
                *console_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "console on" in line, line
        self._wait_listening()

    def _wait_listening(self) -> None:
        import socket
        import time

        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)  # uvicorn binds just after printing: a connect is the event
        raise AssertionError("console did not listen")

    def ingest(self) -> None:
        col = Collector("127.0.0.1", 1, self.db, self.tmp / "trust", self.key)
        done = set(col.store.seqs(("tokyo", "door-1")))
        col.ingest_batch(
            [(d.site, d.device, r.wire()) for d in [self.door] for r in d.records
             if r.seq not in done]
        )  # fmt: skip
        col.close()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None


def http(url: str, data: dict | None = None, cookies: dict | None = None):
    """(status, headers, body) without following redirects."""
    req = urllib.request.Request(url, data=urllib.parse.urlencode(data).encode() if data else None)
    if cookies:
        req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(req, timeout=10) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def cookies_of(headers) -> dict:
    out = {}
    for h in headers.get_all("Set-Cookie") or []:
        k, _, v = h.split(";", 1)[0].partition("=")
        out[k] = v
    return out


def login(site: Site, user: str, password: str = PASSWORD):
    _s, h, body = http(site.url + "/login")
    c = cookies_of(h)
    csrf = body.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    return http(site.url + "/login", {"csrf": csrf, "user": user, "password": password}, c)


def test_nothing_without_a_session_and_forms_need_their_token(site):
    """R12, R21: every page and the event stream need a session; a form without the
    session's CSRF token is refused; strict headers on every answer; a viewer cannot
    acknowledge; five wrong passwords lock the account (then even the right one fails);
    a name with markup is shown as text; SQL metacharacters in filters are only text."""
    paths = (
        "/",
        "/alarms",
        "/ledger",
        "/audit",
        "/devices",
        "/reviews",
        "/ledger?site=tokyo&format=csv",
    )
    for path in paths:
        status, headers, _ = http(site.url + path)
        assert status == 303 and headers["Location"] == "/login", path
        assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert http(site.url + "/events")[0] == 401
    assert http(site.url + "/alarms/1/ack", {"csrf": "x"})[0] == 303  # to the login page

    status, headers, _ = login(site, "ayako")
    assert status == 303, status
    admin = cookies_of(headers)
    cookie = next(h for h in headers.get_all("Set-Cookie") if h.startswith("edged_session"))
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    status, _h, page = http(site.url + "/", cookies=admin)
    assert status == 200 and "S1002" in page
    assert XSS not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # A forged token on a real session: refused, nothing done.
    store = open_store(site.db)
    store.add_alarm("2026-11-27T00:00:00.000Z", ("tokyo", "door-1"), "tamper", "lid")
    [alarm] = store.alarm_list()
    store.close()
    status, _h, body = http(
        site.url + f"/alarms/{alarm['id']}/ack", {"csrf": "forged", "comment": "x"}, admin
    )
    assert status == 403 and "CSRF" in body
    # A viewer may look, not acknowledge.
    viewer = cookies_of(login(site, "ken")[1])
    assert http(site.url + f"/alarms/{alarm['id']}/ack", {"csrf": "x"}, viewer)[0] == 403
    assert http(site.url + "/audit", cookies=viewer)[0] == 403
    assert http(site.url + "/reviews", cookies=viewer)[0] == 403
    assert http(site.url + "/reviews", {"csrf": "x", "site": "tokyo"}, viewer)[0] == 403
    # SQL metacharacters are values, not SQL.
    q = urllib.parse.urlencode({"site": "tokyo' OR '1'='1", "person": 'x"; DROP TABLE records;--'})
    status, _h, page = http(site.url + "/ledger?" + q, cookies=admin)
    assert status == 200 and "0 records from 0 devices" in page
    store = open_store(site.db)
    assert store.seqs(("tokyo", "door-1")) == [1, 2, 3]
    store.close()
    # Five wrong passwords: locked, and the right one does not open it either.
    for _ in range(5):
        assert login(site, "ken", "wrong password!")[0] == 401
    status, _h, body = login(site, "ken")
    assert status == 401 and "locked" in body


def test_in_a_browser_log_in_see_an_alarm_live_acknowledge_and_file_the_ledger(site):
    """R8, R15: an alarm recorded while the page is open appears without reloading, is
    acknowledged with a comment; who did what is in the hash-chained audit trail; R16:
    the month's ledger downloads as CSV and reads back, and the reviewer's sign-off of
    the period is recorded like an acknowledgement."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    shots = site.tmp / "shots"
    shots.mkdir()
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        page = browser.new_context(accept_downloads=True, locale="en-US").new_page()
        page.goto(site.url + "/alarms?lang=en")
        assert page.url.endswith("/login")
        page.fill("input[name=user]", "ayako")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(site.url + "/")
        page.screenshot(path=str(shots / "overview.png"), full_page=True)
        assert page.locator("#inside").inner_text().count("S1002") == 1
        page.goto(site.url + "/alarms?lang=en")
        assert "Source" in page.locator("#alarms thead").inner_text()  # English when asked
        # A door alarm, recorded and stored now: on the open page within 2 s.
        site.door.append("alarm.door_held_open", {"door": "main", "seconds": 30})
        site.ingest()
        row = page.locator("tr.fresh", has_text="door_held_open")
        row.wait_for(timeout=2000)
        page.screenshot(path=str(shots / "alarm-live.png"), full_page=True)
        page.reload()
        form = page.locator("tr", has_text="door_held_open").locator("form")
        form.locator("input[name=comment]").fill("closed by the guard")
        form.locator("button").click()
        page.wait_for_url(site.url + "/alarms")
        acked = page.locator("tr", has_text="door_held_open").inner_text()
        assert "ayako" in acked and "closed by the guard" in acked
        page.screenshot(path=str(shots / "alarms.png"), full_page=True)
        page.goto(site.url + "/ledger?site=tokyo&lang=en")
        assert "every hash and chain link checked" in page.locator("#verify").inner_text()
        # The site list comes from the store: the filter form keeps the site.
        assert page.locator("select[name=site] option").all_inner_texts() == ["tokyo"]
        page.screenshot(path=str(shots / "ledger.png"), full_page=True)
        with page.expect_download() as dl:
            page.click("#csv")
        rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
        assert sorted(r[3] for r in rows if r[0] == "visit") == ["S1001", "S1002"]
        # R16: the reviewer signs off the period; the sign-off is itself a record.
        page.goto(site.url + "/reviews")
        f = page.locator("#signoff")
        f.locator("input[name=site]").fill("tokyo")
        f.locator("input[name=from]").fill("2026-11-01")
        f.locator("input[name=to]").fill("2026-11-30")
        f.locator("input[name=method]").fill("ledger read against the door list")
        f.locator("input[name=findings]").fill("none")
        f.locator("button").click()
        page.wait_for_url(site.url + "/reviews")
        assert "ledger read against the door list" in page.locator("#reviews").inner_text()
        page.screenshot(path=str(shots / "reviews.png"), full_page=True)
        page.goto(site.url + "/devices")
        shown = page.locator("#devices").inner_text()
        # Never heard from (no heartbeat in this test): unknown, not "down".
        assert "tokyo / door-1" in shown and "DOWN" not in shown and "NOT synced" not in shown
        page.screenshot(path=str(shots / "devices.png"), full_page=True)
        page.goto(site.url + "/audit")
        page.screenshot(path=str(shots / "audit.png"), full_page=True)
        browser.close()
    for shot in shots.iterdir():  # pages rendered, not blank
        assert shot.stat().st_size > 8000, shot
    # The audit trail: login, acknowledgement and download, chained by hash.
    store = open_store(site.db)
    rows = store.audit_rows()
    store.close()
    actions = [r["action"] for r in rows]
    want = {"user_add", "login", "alarm_ack", "ledger_download", "review_signoff"}
    assert want <= set(actions), actions
    prev = GENESIS
    for r in rows:
        body = {k: r[k] for k in ("seq", "ts", "name", "action", "detail")} | {"prev": prev}
        text = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        assert r["prev"] == prev and r["hash"] == hashlib.sha256(text.encode()).hexdigest()
        prev = r["hash"]


def test_an_access_list_signed_offline_is_published_and_recorded(tmp_path, mosquitto):
    """R5, R21: an admin uploads an envelope signed offline with the admin key (the
    private key never reaches the console); it is checked against the admin's public key,
    published retained to its device, and recorded; one signed with another key is
    refused and the refusal recorded; a viewer does not get the page."""
    import threading

    from playwright.sync_api import sync_playwright

    from edged.protocol.mqtt import Broker, new_client
    from edged.protocol.signed import sign_doc

    admin = init_role_key(tmp_path / "admin", "admin")
    site = Site(
        tmp_path, "--broker", f"127.0.0.1:{mosquitto.port}",
        "--admin-pubkey", str(tmp_path / "admin" / "admin_ed25519.pub"),
    )  # fmt: skip
    try:
        doc = {"site": "tokyo", "device": "door-1", "version": 3, "people": []}
        good, forged = tmp_path / "acl-v3.json", tmp_path / "forged.json"
        good.write_text(json.dumps(sign_doc(doc, admin)))
        forged.write_text(json.dumps(sign_doc(doc, Ed25519PrivateKey.generate())))
        got: list[bytes] = []
        arrived = threading.Event()
        sub = new_client(Broker("127.0.0.1", mosquitto.port), "acl-watch")
        sub.on_connect = lambda c, *_a: c.subscribe("edged/v1/tokyo/door-1/acl", 1)
        sub.on_message = lambda _c, _u, m: (got.append(bytes(m.payload)), arrived.set())
        sub.connect("127.0.0.1", mosquitto.port)
        sub.loop_start()
        viewer = cookies_of(login(site, "ken")[1])
        assert http(site.url + "/acl", cookies=viewer)[0] == 403
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.goto(site.url + "/login")
            page.fill("input[name=user]", "ayako")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(site.url + "/")
            page.goto(site.url + "/acl")
            assert page.locator("h2").inner_text() == "権限表"  # Japanese by default
            page.set_input_files("input[name=envelope]", str(forged))
            page.click("#publish button")
            assert "refused: unknown_key: signed by key" in page.content()
            page.goto(site.url + "/acl")
            page.set_input_files("input[name=envelope]", str(good))
            page.click("#publish button")
            page.wait_for_url("**/acl?m=**")
            assert "published version 3 to tokyo/door-1" in page.locator("#message").inner_text()
            row = page.locator("#acl tr", has_text="tokyo / door-1").inner_text().split()
            assert row[-2:] == ["3", "-"], row  # published, not yet applied
            page.screenshot(path=str(tmp_path / "acl.png"), full_page=True)
            browser.close()
        assert arrived.wait(10) and got == [good.read_bytes()]
        sub.loop_stop()
        sub.disconnect()
    finally:
        site.close()
    store = open_store(site.db)
    rows = store.audit_rows()
    store.close()
    done = [(r["action"], json.loads(r["detail"])) for r in rows if r["action"].startswith("acl")]
    assert done[0][0] == "acl_refused" and done[0][1]["reason"] == "unknown_key", done
    assert done[1] == ("acl_publish", {"site": "tokyo", "device": "door-1", "version": 3})


def test_live_alarms_from_the_start_come_once_each_in_order(site):
    """R8: the event stream asked for alarms after 0 sends each alarm once, oldest first.
    (It once sent the newest first, then took the oldest as its mark and sent them all
    again every half second.)"""
    import http.client

    store = open_store(site.db)
    for kind in ("tamper", "door_forced", "door_held_open"):
        store.add_alarm("2026-11-27T00:00:00.000Z", ("tokyo", "door-1"), kind, "x")
    store.close()
    cookies = cookies_of(login(site, "ayako")[1])
    conn = http.client.HTTPConnection("127.0.0.1", site.port, timeout=10)
    session = {"Cookie": f"edged_session={cookies['edged_session']}"}
    conn.request("GET", "/events?after=0", headers=session)
    resp = conn.getresponse()
    ids: list[int] = []
    while len(ids) < 3:
        line = resp.fp.readline().decode()
        if line.startswith("id: "):
            ids.append(int(line[4:]))
    # Nothing more for five polls of the stream: no alarm is sent twice.
    conn.sock.settimeout(2.5)
    more = []
    try:
        while line := resp.fp.readline().decode():
            more.append(line)
    except (TimeoutError, OSError):
        pass
    conn.close()
    assert ids == [1, 2, 3], ids
    assert not [x for x in more if x.startswith("id: ")], more
