"""The web console as a process of its own, on a store with one door's records and two
users, and the plain HTTP client the console's tests log in and post forms with."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice
from edged.simulators.mosquitto import free_port

from edged.central.collector import Collector
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker
from tests.conftest import EDGED

XSS = "<script>alert(1)</script>"
PASSWORD = "correct horse battery"


class ConsoleProc:
    """``edged console`` on a store, with two users (an admin and a viewer)."""

    def __init__(self, store: str, *console_args: str) -> None:
        self.store = store
        for name, role in (("ayako", "admin"), ("ken", "viewer")):
            subprocess.run(
                [EDGED, "console", "--store", store, "user", "add", name, "--role", role,
                 "--password-stdin"],
                input=PASSWORD + "\n", text=True, check=True, capture_output=True,
            )  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [EDGED, "console", "--store", store, "--listen", f"127.0.0.1:{self.port}",
             *console_args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
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

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Site(ConsoleProc):
    """A central SQLite store with one door's records, users, and a running console."""

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
        super().__init__(str(self.db), *console_args)

    def ingest(self) -> None:
        col = Collector(Broker("127.0.0.1", 1), self.db, self.tmp / "trust", self.key)
        done = set(col.store.seqs(("tokyo", "door-1")))
        col.ingest_batch(
            [(d.site, d.device, r.wire()) for d in [self.door] for r in d.records
             if r.seq not in done]
        )  # fmt: skip
        col.close()


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
