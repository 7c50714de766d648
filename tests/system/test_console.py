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
from edged.simulators.fleet import Fleet, FleetSettings

from edged.central.store import open_store
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker
from edged.protocol.records import GENESIS
from tests.helpers.central import CollectorProc, wait_until
from tests.helpers.console import (
    PASSWORD,
    XSS,
    ConsoleProc,
    Site,
    cookies_of,
    http,
    login,
)

pytestmark = pytest.mark.system


@pytest.fixture
def site(tmp_path):
    s = Site(tmp_path)
    yield s
    s.close()


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
        "/ledger?site=tokyo&format=pdf",
        "/?site=tokyo",
        "/acl",
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
    store.alarms.add("2026-11-27T00:00:00.000Z", ("tokyo", "door-1"), "tamper", "lid")
    [alarm] = store.alarms.after()
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
    # SQL metacharacters are values, not SQL, in every filter.
    evil = ("tokyo' OR '1'='1", 'x"; DROP TABLE records;--', "%' UNION SELECT 1--", "\\")
    for bad in evil:
        for field in ("site", "area", "door", "person"):
            q = urllib.parse.urlencode({"site": "tokyo", field: bad})
            status, _h, page = http(site.url + "/ledger?" + q, cookies=admin)
            assert status == 200, (field, bad)
            if field == "site":
                assert "0 records from 0 devices" in page
            else:  # the site's records were read; the filter matched nobody
                assert "S1002" not in page.split('id="visits"')[1], (field, bad)
        status, _h, page = http(site.url + "/?" + urllib.parse.urlencode({"site": bad}),
                                cookies=admin)  # fmt: skip
        assert status == 200 and "S1002" not in page
        status, _h, body = http(site.url + "/ledger?site=tokyo&from=" + urllib.parse.quote(bad),
                                cookies=admin)  # fmt: skip
        assert status == 400 and "YYYY-MM-DD" in body
    store = open_store(site.db)
    assert store.seqs(("tokyo", "door-1")) == [1, 2, 3]
    store.close()
    # A device never heard from (no heartbeat here): dashes, not "down".
    status, _h, page = http(site.url + "/devices", cookies=admin)
    assert status == 200 and "tokyo / door-1" in page
    assert "DOWN" not in page and "NOT synced" not in page
    # Five wrong passwords: locked, and the right one does not open it either.
    for _ in range(5):
        assert login(site, "ken", "wrong password!")[0] == 401
    status, _h, body = login(site, "ken")
    assert status == 401 and "locked" in body


def _browser(p):
    return p.chromium.launch(
        executable_path=shutil.which("chromium") or "/usr/bin/chromium",
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"],
    )  # fmt: skip


def _not_blank(png: Path) -> None:
    """A page rendered: a real screenshot of text and tables, not an empty canvas."""
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 8000, png


def test_in_a_browser_on_a_store_fed_by_the_fleet(tmp_path, mosquitto, postgres):
    """On PostgreSQL fed by a real collector from simulated doors over a real Mosquitto:
    R1: who is inside and the doors' states on the overview (a name with markup shown as
    text, no script run); R8, R15: a door alarm appears on the open page within 2 s of
    the door sending it, is acknowledged with a comment, and who did what is in the
    hash-chained audit trail; R16: a person's visits found, the month's ledger downloaded
    as CSV and PDF and read back, the reviewer's sign-off recorded; the devices page shows
    each device's signing key."""
    import time

    from playwright.sync_api import sync_playwright

    key = init_role_key(tmp_path / "collector", "collector")
    fleet = Fleet(
        3, Broker("127.0.0.1", mosquitto.port), key.public_key(), site="tokyo",
        settings=FleetSettings(rate=15, heartbeat_seconds=0.5),
    )  # fmt: skip
    fleet.write_trust(tmp_path / "trust")
    collector = CollectorProc(tmp_path, 1, postgres.url, mosquitto.port, None)
    collector.start()
    console = ConsoleProc(postgres.url)
    fleet.start()
    fleet.generate(True)
    a = fleet.devices[0]
    visitor = {"door": "main", "area": "server-room", "person": "S2002", "name": XSS}
    fleet.call(lambda: (a.append("door.granted", visitor), fleet._pump(a)))
    store = open_store(postgres.url)

    def inside() -> set[str]:
        store.commit()  # a fresh snapshot each time
        return {p["person"] for p in store.reports.present_people()}

    wait_until(lambda: "S2002" in inside(), 20, "the visitor's entry stored")
    shots = tmp_path / "shots"
    shots.mkdir()
    dialogs: list[str] = []
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            page = browser.new_context(accept_downloads=True, locale="en-US").new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(console.url + "/alarms?lang=en")
            assert page.url.endswith("/login")
            page.fill("input[name=user]", "ayako")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(console.url + "/")
            page.goto(console.url + "/?lang=en")
            sites = page.locator("#sites")
            room = sites.locator("[data-area='tokyo/server-room']").inner_text()
            assert "S2002" in room and XSS in room  # the markup as text
            assert f"Door main ({a.device}): " in sites.inner_text()
            page.screenshot(path=str(shots / "overview.png"), full_page=True)
            # A door alarm sent now: on the open page within 2 s.
            page.goto(console.url + "/alarms")
            assert "Source" in page.locator("#alarms thead").inner_text()  # English kept
            sent = time.monotonic()
            held = {"door": "main", "seconds": 30}
            fleet.call(lambda: (a.append("alarm.door_held_open", held), fleet._pump(a)))
            page.locator("tr.fresh", has_text="door_held_open").wait_for(timeout=2000)
            shown_after = time.monotonic() - sent
            page.screenshot(path=str(shots / "alarm-live.png"), full_page=True)
            page.reload()
            form = page.locator("tr", has_text="door_held_open").locator("form")
            form.locator("input[name=comment]").fill("closed by the guard")
            form.locator("button").click()
            page.wait_for_url(console.url + "/alarms")
            acked = page.locator("tr", has_text="door_held_open").inner_text()
            assert "ayako" in acked and "closed by the guard" in acked
            assert "Door main has been open for more than 30 s." in acked
            page.screenshot(path=str(shots / "alarms.png"), full_page=True)
            # A person's visits, then the month's ledger as files.
            page.goto(console.url + "/ledger?site=tokyo&person=S2002")
            rows = page.locator("#visits tbody tr").all_inner_texts()
            assert len(rows) == 1 and "S2002" in rows[0] and "server-room" in rows[0], rows
            page.goto(console.url + "/ledger?site=tokyo")
            assert "every hash and chain link checked" in page.locator("#verify").inner_text()
            assert page.locator("select[name=site] option").all_inner_texts() == ["tokyo"]
            page.screenshot(path=str(shots / "ledger.png"), full_page=True)
            with page.expect_download() as dl:
                page.click("#csv")
            rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
            assert {r[3] for r in rows if r[0] == "visit"} == {"S1001", "S2002"}
            with page.expect_download(timeout=60_000) as dl:
                page.click("#pdf")
            pdf = Path(dl.value.path()).read_bytes()
            assert pdf.startswith(b"%PDF")
            (tmp_path / "ledger.pdf").write_bytes(pdf)
            text = subprocess.run(
                ["pdftotext", "-layout", str(tmp_path / "ledger.pdf"), "-"],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            # Table cells wrap in print: the name with markup is read back in its parts.
            assert "S2002" in text and "<script>alert(1)" in text
            assert "OK: central copy of site tokyo" in text
            # R16: the reviewer signs off the period; the sign-off is itself a record.
            page.goto(console.url + "/reviews")
            f = page.locator("#signoff")
            f.locator("input[name=site]").fill("tokyo")
            f.locator("input[name=from]").fill("2026-11-01")
            f.locator("input[name=to]").fill("2026-11-30")
            f.locator("input[name=method]").fill("ledger read against the door list")
            f.locator("input[name=findings]").fill("none")
            f.locator("button").click()
            page.wait_for_url(console.url + "/reviews")
            assert "ledger read against the door list" in page.locator("#reviews").inner_text()
            page.screenshot(path=str(shots / "reviews.png"), full_page=True)
            page.goto(console.url + "/devices")
            shown = page.locator("#devices").inner_text()
            for d in fleet.devices:
                row = page.locator("#devices tr", has_text=f"tokyo / {d.device}").inner_text()
                assert d.key_id[:16] in row, row
            assert "DOWN" not in shown
            page.screenshot(path=str(shots / "devices.png"), full_page=True)
            page.goto(console.url + "/audit")
            page.screenshot(path=str(shots / "audit.png"), full_page=True)
            page.goto(console.url + "/acl")
            page.screenshot(path=str(shots / "acl.png"), full_page=True)
            browser.close()
    finally:
        fleet.stop()
        console.close()
        collector.stop()
    assert shown_after < 2.0, shown_after
    assert not dialogs, dialogs  # no script from a name ran
    for shot in shots.iterdir():
        _not_blank(shot)
    # The audit trail: login, acknowledgement, downloads and sign-off, chained by hash.
    rows = store.accounts.audit_rows()
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
    rows = store.accounts.audit_rows()
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
        store.alarms.add("2026-11-27T00:00:00.000Z", ("tokyo", "door-1"), kind, "x")
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
