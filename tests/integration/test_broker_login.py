"""A broker that lets in only named users, each to its own topics: the device and
``edged collect`` log in with a username and a password file, and a wrong password or
none is refused (R12)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
import pytest
from edged.simulators.mosquitto import MosquittoHarness

from edged.central.collector import Collector
from edged.central.store import open_store
from edged.clock import SystemClock
from edged.device.config import SyncConfig
from edged.device.sync.agent import SyncAgent
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker
from tests.helpers.central import CollectorProc, wait_until

pytestmark = pytest.mark.integration

SITE, DEVICE = "hq", "door-1"
USERS = {"collector": "c0llector pass", DEVICE: "d00r pass"}
# Least privilege on the broker: the device reaches its own topics only.
ACL = (
    f"user collector\ntopic readwrite edged/#\n\n"
    f"user {DEVICE}\ntopic readwrite edged/v1/{SITE}/{DEVICE}/#\n"
)


def _secret(path, text):
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_device_and_collector_log_in_to_the_broker(tmp_path, signed_door):
    """R12: with anonymous clients refused and a per-user ACL, a device (``username`` and
    ``password_file`` in its config) and ``edged collect --username --password-file``
    carry every record to the central copy, receipted; the collector with a wrong
    password is refused, and so is a client with no login."""
    if MosquittoHarness.available():
        pytest.fail(MosquittoHarness.available())
    broker = MosquittoHarness(tmp_path / "mq", users=USERS, acl=ACL)
    broker.start()
    door = signed_door(SITE, DEVICE)
    state, trust = door.state, door.trust
    with door.journal() as j:
        j.append_many(
            ("door.granted", {"door": "main", "person": f"S{i:04}", "reason": "ok"})
            for i in range(300)
        )
        head = j.head()[0]
    db = tmp_path / "central.db"
    col = CollectorProc(
        tmp_path, 1, str(db), broker.port, None,
        "--username", "collector",
        "--password-file", str(_secret(tmp_path / "collector.pw", USERS["collector"] + "\n")),
    )  # fmt: skip
    agent = SyncAgent(
        SyncConfig(
            host="127.0.0.1",
            port=broker.port,
            username=DEVICE,
            password_file=_secret(tmp_path / "device.pw", USERS[DEVICE]),
            collector_pubkey=tmp_path / "collector" / "collector_ed25519.pub",
            heartbeat_seconds=1,
        ),
        site=SITE,
        device=DEVICE,
        journal_path=state / "journal.db",
        state_dir=state,
        clock=SystemClock(),
        boot_id="login",
        on_inbound=lambda *_: None,
    )
    try:
        col.start()
        agent.start()
        # Receipted: the collector's signed receipts reached the device through the ACL.
        assert agent.wait_for(lambda s: s["acked_seq"] == head, timeout=60), agent.status()
        col.stop()
        store = open_store(db)
        try:
            assert store.seqs((SITE, DEVICE)) == list(range(1, head + 1))
        finally:
            store.close()

        # The collector's own login, wrong: refused, and it says so.
        key = init_role_key(tmp_path / "other", "collector")
        bad = Broker(
            "127.0.0.1", broker.port, username="collector",
            password_file=_secret(tmp_path / "wrong.pw", "not it"),
        )  # fmt: skip
        wrong = Collector(bad, tmp_path / "other.db", trust, key)
        wrong.start()
        try:
            assert wrong.link.refused.wait(15)
            assert not wrong.link.connected.is_set()
        finally:
            wrong.close()

        # No login at all: refused by the broker.
        anon = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        codes = []
        anon.on_connect = lambda _c, _u, _f, rc, _p=None: codes.append(rc)
        anon.connect("127.0.0.1", broker.port)
        wait_until(lambda: anon.loop(0.2) != mqtt.MQTT_ERR_SUCCESS or codes, 10, "CONNACK")
        assert codes and codes[0].is_failure
    finally:
        agent.close()
        col.stop()
        broker.stop()
    assert b"broker_refused" not in col.log.read_bytes()
