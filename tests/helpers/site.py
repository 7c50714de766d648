"""A site for sync tests: a device state dir, admin and collector keys, a trust dir and a
config with [sync]; the daemon running in this process with its sync agent; small MQTT
and access-list helpers. Shared by the sync, rollback, schema, fuzz, TLS, storage and
network suites."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import paho.mqtt.client as mqtt

from edged.central.collector import Collector
from edged.core.events import ExitButton
from edged.device.acl import import_admin_file
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.keys import init_keys, load_keys
from edged.device.paths import PUBLIC_KEY_FILE
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker
from edged.protocol.privacy import CardFingerprinter
from tests.helpers.examples import EXAMPLE_ACL as ACL_EXAMPLE

ROOT = Path(__file__).parent.parent.parent
EXAMPLE = ROOT / "config" / "edged.toml"


class Site:
    """A device state dir, admin and collector keys, a trust dir, a config with [sync].

    ``state``: where the device keeps its state (default ``tmp/state``); ``host``: the
    broker address the device is given; ``extra``: more lines for its [sync] table.
    """

    def __init__(
        self,
        tmp: Path,
        port: int,
        *,
        state: Path | None = None,
        host: str = "127.0.0.1",
        extra: str = "",
    ) -> None:
        self.tmp = tmp
        self.state = state or tmp / "state"
        if not (self.state / PUBLIC_KEY_FILE).exists():
            init_keys(self.state)
        central = tmp / "central"
        self.collector_key = init_role_key(central, "collector")
        self.admin_key = init_role_key(central, "admin")
        self.trust = tmp / "trust"
        (self.trust / "tokyo-hq").mkdir(parents=True)
        shutil.copy(self.state / PUBLIC_KEY_FILE, self.trust / "tokyo-hq" / "door-3f-1.pub")
        text = EXAMPLE.read_text() + (
            f'\n[sync]\nbroker = "{host}:{port}"\n'
            f'collector_pubkey = "{central}/collector_ed25519.pub"\n'
            f'admin_pubkey = "{central}/admin_ed25519.pub"\nheartbeat_seconds = 1\n{extra}'
        )
        self.config = tmp / "edged.toml"
        self.config.write_text(text)
        self.port = port

    def cfg(self):
        return load_config(self.config, state_dir=self.state)

    def collector(self, host: str = "127.0.0.1") -> Collector:
        c = Collector(
            Broker(host, self.port),
            self.tmp / "central.db",
            self.trust,
            self.collector_key,
            receipt_every=50,
            receipt_seconds=0.2,
        )
        c.start()
        return c


class Running:
    """The daemon in this process (simulated hardware) with its sync agent."""

    def __init__(self, cfg) -> None:
        self.d = Daemon(cfg, simulate=True, control_socket=False)
        self.t = threading.Thread(target=lambda: self.d.run(install_signals=False), daemon=True)
        self.t.start()
        for _ in range(300):
            if self.d.running.wait(0.1) or self.d.stopped.is_set():
                break
        assert self.d.running.is_set(), "daemon did not start"

    def presses(self, n: int) -> None:
        for _ in range(n):
            self.d.queue.put(ExitButton(door="main"))
        self.d.call(lambda: None)  # all handled

    def head(self) -> int:
        return self.d.call(lambda: self.d.journal.head()[0])

    def stop(self) -> None:
        self.d.request_stop()
        self.t.join(30)


def two_checkpoints(run: Running):
    """Once connected: two presses and a checkpoint, twice; both are published."""
    assert run.d.sync.connected_event.wait(10)
    run.presses(2)
    old = run.d.call(lambda: run.d.journal.checkpoint())
    run.presses(2)
    new = run.d.call(lambda: run.d.journal.checkpoint())
    run.d.sync.notify()
    return old, new


def publish(port: int, topic: str, payload: bytes, retain: bool = False) -> None:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        c.loop_stop()
        c.disconnect()


def acl_for(site: Site, version: int):
    fp = CardFingerprinter(load_keys(site.state).fingerprint_secret)
    return import_admin_file(
        ACL_EXAMPLE, fp, site="tokyo-hq", version=version, areas={"handling", "server-room"}
    )


def next_acl_records(run: Running, send) -> list[dict]:
    before = run.d.observers.processed_count
    send()
    p = run.d.observers.wait_processed(
        lambda p: any(r["type"].startswith("acl.") for r in p.records), after=before, timeout=15
    )
    assert p is not None, "the daemon recorded nothing for the envelope"
    return list(p.records)
