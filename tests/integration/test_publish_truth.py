"""Every "published" an administrator reads is true (R5, R21): `edged acl publish` and the
console's access-list upload say so only once the broker acknowledged the message; a
broker that refuses the login, one whose ACL refuses the topic, and one that is down
each give a clear one-line error, nothing is recorded as published, and the broker holds
nothing. Before: "published (retained)" and exit 0 with a wrong password."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.mosquitto import MosquittoHarness

from edged.central.store import open_store
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker, new_client
from edged.protocol.signed import sign_doc
from tests.conftest import EDGED

pytestmark = pytest.mark.integration

USERS = {"admin": "right pass", "watch": "watch pass"}
# The admin may publish access lists of site tokyo only.
ACL = "user admin\ntopic write edged/v1/tokyo/+/acl\n\nuser watch\ntopic read edged/#\n"


def _envelope(tmp: Path, site: str, version: int = 3) -> Path:
    key = Ed25519PrivateKey.generate()
    path = tmp / f"acl-{site}-v{version}.json"
    doc = {"site": site, "device": "door-1", "version": version, "people": []}
    path.write_text(json.dumps(sign_doc(doc, key)))
    return path


def _retained(broker: MosquittoHarness, topic: str) -> bytes | None:
    """What the broker holds retained on ``topic``: a fresh subscriber is sent it right
    after the SUBACK; the SUBACK of a second subscription comes after it, so once that
    one has arrived, nothing means the broker holds nothing."""
    got: list[bytes] = []
    subscribed, c = threading.Event(), new_client(
        Broker("127.0.0.1", broker.port, username="watch", password_file=_pw(broker, "watch"))
    )
    c.on_subscribe = lambda *_a: subscribed.set()
    c.on_message = lambda _c, _u, m: got.append(bytes(m.payload))
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, 1)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        assert subscribed.wait(10)
        second = threading.Event()
        c.on_subscribe = lambda *_a: second.set()
        c.subscribe("edged/v1/none/none/none", 1)
        assert second.wait(10)
    finally:
        c.loop_stop()
        c.disconnect()
    return got[0] if got else None


def _pw(broker: MosquittoHarness, user: str, text: str | None = None) -> Path:
    p = broker.workdir / f"{user}.pw"
    p.write_text((USERS[user] if text is None else text) + "\n")
    p.chmod(0o600)
    return p


@pytest.fixture
def broker(tmp_path):
    if MosquittoHarness.available():
        pytest.fail(MosquittoHarness.available())
    with MosquittoHarness(tmp_path / "mq", users=USERS, acl=ACL) as b:
        yield b


def _publish(broker_port: int, file: Path, pw: Path | None):
    login = ["--username", "admin", "--password-file", str(pw)] if pw else []
    return subprocess.run(
        [EDGED, "acl", "publish", str(file), "--broker", f"127.0.0.1:{broker_port}", *login],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert p.returncode != 0 and "published" not in p.stdout, p.stdout + p.stderr
    err = p.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert all(n in err for n in needles), err


def test_acl_publish_says_published_only_when_the_broker_took_it(tmp_path, broker):
    """R5, R21: a wrong password, no login, a topic the broker's ACL refuses and a broker
    that is down each fail with one line saying why, and the broker holds nothing; the
    right login publishes, retained, and says the broker acknowledged it."""
    good, other_site = _envelope(tmp_path, "tokyo"), _envelope(tmp_path, "osaka")
    topic = "edged/v1/tokyo/door-1/acl"
    _one_line_error(_publish(broker.port, good, _pw(broker, "admin", "wrong")),
                    "refused the connection", "127.0.0.1")  # fmt: skip
    _one_line_error(_publish(broker.port, good, None), "refused the connection")
    _one_line_error(_publish(broker.port, other_site, _pw(broker, "admin")),
                    "refused edged/v1/osaka/door-1/acl", "Not authorized")  # fmt: skip
    assert _retained(broker, topic) is None
    assert _retained(broker, "edged/v1/osaka/door-1/acl") is None
    ok = _publish(broker.port, good, _pw(broker, "admin"))
    assert ok.returncode == 0 and "acknowledged" in ok.stdout, ok.stdout + ok.stderr
    assert _retained(broker, topic) == good.read_bytes()
    port = broker.port
    broker.stop()
    _one_line_error(_publish(port, good, _pw(broker, "admin")), "cannot connect")


def test_the_console_says_published_only_when_the_broker_took_it(tmp_path, broker):
    """R5, R21: the console publishing with the broker's TLS-less login options: a wrong
    password and a broker that is down are "not published: …" with the reason, recorded
    in the audit trail as a failure and never as a publish; the right login publishes."""
    from tests.helpers.console import PASSWORD, Site, cookies_of, http, login

    admin = init_role_key(tmp_path / "admin", "admin")
    pw = _pw(broker, "admin", "wrong")
    site = Site(
        tmp_path, "--broker", f"127.0.0.1:{broker.port}", "--broker-username", "admin",
        "--broker-password-file", str(pw),
        "--admin-pubkey", str(tmp_path / "admin" / "admin_ed25519.pub"),
    )  # fmt: skip
    try:
        doc = {"site": "tokyo", "device": "door-1", "version": 3, "people": []}
        env = json.dumps(sign_doc(doc, admin)).encode()
        cookies = cookies_of(login(site, "ayako", PASSWORD)[1])
        page = http(site.url + "/acl", cookies=cookies)[2]
        csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]

        def upload() -> tuple[int, str]:
            return _upload(site.url + "/acl", cookies, csrf, env)

        code, text = upload()
        assert code == 502 and text.startswith("not published: ") and "refused" in text, text
        _pw(broker, "admin")  # the password put right
        code, text = upload()
        assert code == 303, (code, text)
        assert _retained(broker, "edged/v1/tokyo/door-1/acl") == env
        broker.stop()
        code, text = upload()
        assert code == 502 and "cannot connect" in text, text
        store = open_store(str(site.db))
        audit = [r["action"] for r in store.accounts.audit_rows()]
        store.close()
        assert audit.count("acl_publish") == 1 and audit.count("acl_publish_failed") == 2, audit
    finally:
        site.close()


def _upload(url: str, cookies: dict, csrf: str, envelope: bytes) -> tuple[int, str]:
    """The console's upload form as a browser posts it (multipart), without following
    the redirect: (status, body)."""
    import urllib.error
    import urllib.request

    from tests.helpers.console import NoRedirect

    b = "edged-test-boundary"
    body = (
        f'--{b}\r\nContent-Disposition: form-data; name="csrf"\r\n\r\n{csrf}\r\n'
        f'--{b}\r\nContent-Disposition: form-data; name="envelope"; filename="acl.json"\r\n'
        "Content-Type: application/json\r\n\r\n"
    ).encode() + envelope + f"\r\n--{b}--\r\n".encode()
    req = urllib.request.Request(url, data=body)
    req.add_header("Content-Type", f"multipart/form-data; boundary={b}")
    req.add_header("Cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()))
    try:
        with urllib.request.build_opener(NoRedirect).open(req, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
