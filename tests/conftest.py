"""Shared fixtures: real files in a temp dir, keys in memory, a clock that moves on demand."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal
from edged.device.keys import DeviceKeys, init_keys
from tests.helpers.examples import EXAMPLE_ACL

# Console script of the installed package, next to the interpreter running the tests.
EDGED = str(Path(sys.executable).with_name("edged"))
EXAMPLE_CONFIG = Path(__file__).parent.parent / "config" / "edged.toml"
LONG = os.environ.get("EDGED_LONG", "") not in ("", "0")
# Every count that EDGED_LONG=1 raises, in one place: name -> (default, EDGED_LONG=1).
# The defaults keep the whole suite inside 15 minutes on 2 cores; the long sizes are for a
# night's run before a release. 0 as the long size of bitflip_positions: every bit.
SIZES = {
    "bitflip_positions": (1500, 0),  # bits of a journal flipped one at a time
    "sync_backlog_records": (20_000, 100_000),  # records drained after an outage
    "journal_crash_kills": (40, 200),  # appender processes killed mid-write
    "daemon_crash_kills": (40, 1000),  # daemons killed with SIGKILL at random moments
    "daemon_fuzz_examples": (200, 2000),  # random event sequences against the daemon
    "month_days": (5, 30),  # days the door lives through in tests/system/test_month.py
    "fleet_devices": (200, 200),  # devices in the central scale test (EDGED_FLEET_DEVICES)
}


def size(name: str) -> int:
    """The count ``name`` runs with (:data:`SIZES`)."""
    default, long = SIZES[name]
    return long if LONG else default


@pytest.fixture(autouse=True)
def _no_pcscd_left_behind():
    """A test that fails half-way may leave its simulated pcscd running; pcscd's socket
    is one per machine, so every later test would fail with it. Stopped here, after the
    test, if the test started it and did not stop it."""
    from edged.simulators.pcscd import PcscdHarness
    from edged.simulators.process import ServiceProcess

    before = set(ServiceProcess.live)
    yield
    for h in set(ServiceProcess.live) - before:
        if isinstance(h, PcscdHarness):
            h.stop()


@pytest.fixture
def keys() -> DeviceKeys:
    return DeviceKeys.generate()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    init_keys(d)
    return d


@pytest.fixture
def signed_door(tmp_path: Path):
    """Make a door with keys, its public key pinned for a collector, and its journal:
    ``signed_door(site, device, name="state")`` (:class:`tests.helpers.door.SignedDoor`)."""
    from tests.helpers.door import SignedDoor

    return lambda site="tokyo", device="door-1", name="state": SignedDoor(
        tmp_path, site, device, name
    )


@pytest.fixture
def journal(tmp_path: Path, keys: DeviceKeys, clock: FakeClock):
    j = Journal(tmp_path / "journal.db", keys, clock, boot_id="test-boot")
    yield j
    j.close()


class EventLog:
    """A thread-safe event sink that tests can wait on (no sleeping)."""

    def __init__(self) -> None:
        import threading

        self.events: list = []
        self._cond = threading.Condition()

    def __call__(self, event) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, pred, timeout: float = 30.0, start: int = 0):
        """The first event from index ``start`` on that satisfies ``pred``; fails on timeout."""
        with self._cond:
            found = []

            def check():
                found[:] = [e for e in self.events[start:] if pred(e)]
                return bool(found)

            if not self._cond.wait_for(check, timeout):
                raise AssertionError(f"no matching event in {timeout}s; saw {self.events[start:]}")
            return found[0]

    def mark(self) -> int:
        with self._cond:
            return len(self.events)

    def of(self, cls, start: int = 0) -> list:
        with self._cond:
            return [e for e in self.events[start:] if isinstance(e, cls)]


@pytest.fixture
def events() -> EventLog:
    return EventLog()


def require_pcscd() -> None:
    """Fail loudly (never skip) when the PC/SC stack is missing: CI must have it."""
    from edged.simulators.pcscd import PcscdHarness

    missing = PcscdHarness.available()
    if missing:
        pytest.fail(f"PC/SC test stack missing: {missing}; run scripts/bootstrap.sh as root")


@pytest.fixture(scope="module")
def pcscd(tmp_path_factory):
    """A real pcscd with two vpcd readers, "entry" and "exit"."""
    from edged.simulators.pcscd import PcscdHarness

    require_pcscd()
    h = PcscdHarness(tmp_path_factory.mktemp("pcscd"))
    h.start()
    yield h
    h.stop()


GO_SOURCE = Path(__file__).parent / "go" / "verify_edged.go"
GOPATH = "/usr/share/gocode"


@pytest.fixture(scope="session")
def go_verifier(tmp_path_factory) -> Path:
    """Go's verifier of edged's proofs, built offline in GOPATH mode from Debian's x/mod
    sources (tests/go/verify_edged.go)."""
    import shutil
    import subprocess

    if shutil.which("go") is None or not Path(GOPATH, "src/golang.org/x/mod").is_dir():
        pytest.fail("golang-go and golang-golang-x-mod-dev are needed (scripts/test.sh)")
    out = tmp_path_factory.mktemp("go") / "verify_edged"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOFLAGS": "",
           "GOCACHE": str(out.parent / "cache"), "GOPROXY": "off"}  # fmt: skip
    subprocess.run(["go", "build", "-o", str(out), str(GO_SOURCE)], env=env, check=True,
                   capture_output=True, timeout=300)  # fmt: skip
    return out


@pytest.fixture
def mosquitto(tmp_path):
    """A real Mosquitto on a free loopback port; fails loudly when not installed."""
    from edged.simulators.mosquitto import MosquittoHarness

    missing = MosquittoHarness.available()
    if missing:
        pytest.fail(f"MQTT test broker missing: {missing}; run scripts/bootstrap.sh as root")
    with MosquittoHarness(tmp_path / "mosquitto") as m:
        yield m


@pytest.fixture
def postgres():
    """A real PostgreSQL in a temporary directory (initdb as the postgres user), with an
    empty database ``edged``; fails loudly when not installed."""
    from edged.simulators.postgres import PostgresHarness

    missing = PostgresHarness.available()
    if missing:
        pytest.fail(f"PostgreSQL missing: {missing}; run scripts/bootstrap.sh as root")
    pg = PostgresHarness()
    pg.start()
    yield pg
    pg.remove()


@pytest.fixture
def log_lines():
    """Capture structlog output as parsed JSON lines; restores the previous set-up after."""
    import io
    import json
    import threading

    import structlog

    from edged.log import configure_logging

    saved, hook = structlog.get_config(), threading.excepthook
    buf = io.StringIO()
    configure_logging(buf, json=True)

    def read():
        return [json.loads(x) for x in buf.getvalue().splitlines() if x.strip()]

    yield read
    structlog.configure(**saved)
    threading.excepthook = hook


def has_token(text: str, token: str) -> bool:
    """``token`` stands alone in ``text``: not as a fragment of a hex hash or base64 string."""
    import re

    return re.search(rf"(?<![0-9A-Za-z+/]){re.escape(token)}(?![0-9A-Za-z+/])", text) is not None


def import_acl(state: Path, acl: Path = EXAMPLE_ACL, config: Path = EXAMPLE_CONFIG):
    """`edged acl import` as an administrator runs it; the completed process."""
    import subprocess

    return subprocess.run(
        [EDGED, "acl", "import", str(acl), "--config", str(config), "--state-dir", str(state)],
        capture_output=True,
        text=True,
    )


def enrol(state: Path, config: Path = EXAMPLE_CONFIG) -> None:
    """Device keys (if none yet) and the example access list in ``state``."""
    if not (state / "device_ed25519.key").exists():
        init_keys(state)
    p = import_acl(state, config=config)
    assert p.returncode == 0, p.stderr


TIERS = ("unit", "integration", "system")
# A hung test fails (pytest-timeout) instead of hanging the run: per tier, generous for
# what each tier starts; a test may ask for more with its own @pytest.mark.timeout.
TIMEOUTS = {"unit": 60, "integration": 300, "system": 900}


def pytest_collection_modifyitems(config, items):
    """Every test sits in exactly one tier (module-level ``pytestmark``), in the folder of
    that tier (tests/unit, tests/integration, tests/system), so that ``pytest -m unit``
    or ``pytest tests/unit`` on a laptop runs what needs no services, and nothing is
    missed; each gets its tier's time limit unless it sets its own."""
    wrong = []
    for item in items:
        tiers = [t for t in TIERS if item.get_closest_marker(t) is not None]
        folder = Path(str(item.fspath)).parent.name
        if len(tiers) != 1 or tiers[0] != folder:
            wrong.append(f"{item.nodeid} ({','.join(tiers) or 'no tier'} in {folder}/)")
        elif item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS[tiers[0]]))
    if wrong:
        raise pytest.UsageError(
            f"tests without exactly one tier marker {TIERS}, or outside its folder: {wrong[:5]}"
        )
