"""What the central side reports: every device alarm stored and announced again on one
central topic, and the central side's own alarms (a silent device, a stalled sync, a clock
that stays unsynchronised) raised and cleared (R8, R13, R15). On the SQLite store and on
PostgreSQL: the same schema, the same behaviour."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
import pytest
from edged.simulators.fleet import Fleet, FleetSettings

from edged.central.alarms import CENTRAL_ALARMS
from edged.central.collector import Collector
from edged.central.watch import Watch
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker, new_client
from tests.helpers.central import held

pytestmark = pytest.mark.integration


class Announcements:
    """Everything said on the central alarm topic."""

    def __init__(self, port: int) -> None:
        self.docs: list[dict] = []
        self.cond = threading.Condition()
        self.c = new_client(Broker("127.0.0.1", port), "alarm-listener")
        subscribed = threading.Event()
        self.c.on_connect = lambda c, *_a: c.subscribe(CENTRAL_ALARMS, 1)
        self.c.on_subscribe = lambda *_a: subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.docs.append(json.loads(msg.payload))
            self.cond.notify_all()

    def wait(self, pred, timeout: float = 20.0) -> dict:
        with self.cond:
            found: list[dict] = []

            def seen() -> bool:
                found[:] = [d for d in self.docs if pred(d)]
                return bool(found)

            assert self.cond.wait_for(seen, timeout), self.docs[-10:]
            return found[0]

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_spec(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    return request.getfixturevalue("postgres").url


def test_device_and_central_alarms_are_stored_announced_and_cleared(
    tmp_path, mosquitto, store_spec
):
    """R8, R15: a device's alarm record is stored once as an alarm and announced on the
    central topic; R13: the central side raises device_silent, sync_stalled and
    clock_unsynced from the devices' heartbeats, acl_not_applied from a published list and
    the device's acl.applied record (R5), and clears each when it ends."""
    key = init_role_key(tmp_path / "collector", "collector")
    fleet = Fleet(
        3,
        Broker("127.0.0.1", mosquitto.port),
        key.public_key(),
        settings=FleetSettings(rate=0, heartbeat_seconds=0.2, stall_seconds=3600),
    )
    fleet.write_trust(tmp_path / "trust")
    col = Collector(
        Broker("127.0.0.1", mosquitto.port),
        store_spec,
        tmp_path / "trust",
        key,
        watch=Watch(silent=1.0, stall=1.0, clock=1.0, acl=1.0, every=0.2),
    )
    heard = Announcements(mosquitto.port)
    col.start()
    assert col.subscribed.wait(10)
    fleet.start()
    a, b, c = fleet.devices
    try:
        # A device alarm: stored with its record, announced with the device as source.
        fleet.call(lambda: (a.append("alarm.door_held_open", {"door": "main", "seconds": 30}),))
        fleet.call(lambda: fleet._pump(a))
        got = heard.wait(lambda d: d["type"] == "alarm.door_held_open")
        assert (got["site"], got["device"], got["seq"], got["source"]) == (
            "fleet",
            a.device,
            1,
            "device",
        )
        assert col.wait_for(lambda: any(t == "door_held_open" for t, _d in held(col).alarms()))

        # Silent: b stops its heartbeats; then speaks again.
        fleet.call(lambda: setattr(b, "heartbeats", False))
        heard.wait(lambda d: d["type"] == "device_silent" and d["device"] == b.device)
        fleet.call(lambda: setattr(b, "heartbeats", True))
        heard.wait(lambda d: d["type"] == "device_silent" and d.get("cleared"))

        # Clock: c's clock is not synchronised for longer than allowed; then it is.
        fleet.call(lambda: setattr(c, "clock_synced", False))
        heard.wait(lambda d: d["type"] == "clock_unsynced" and d["device"] == c.device)
        fleet.call(lambda: setattr(c, "clock_synced", True))
        heard.wait(lambda d: d["type"] == "clock_unsynced" and d.get("cleared"))

        # Stalled: c ignores receipts (a broken path back), so its backlog stays; then
        # takes them again and the backlog drains.
        def stall() -> None:
            c.take_receipts = False
            for _ in range(3):
                c.append("door.opened", {"door": "main"})
            fleet._pump(c)

        fleet.call(stall)
        heard.wait(lambda d: d["type"] == "sync_stalled" and d["device"] == c.device)

        def unstall() -> None:
            c.take_receipts = True
            c.cursor = c.acked + 1  # it sends again and takes the receipt now
            fleet._pump(c)

        fleet.call(unstall)
        heard.wait(lambda d: d["type"] == "sync_stalled" and d.get("cleared"), timeout=30)

        # An access list published for a and not applied in time; then a records it.
        listener = heard.c
        listener.publish(
            f"edged/v1/fleet/{a.device}/acl", json.dumps({"version": 7}), qos=1, retain=True
        ).wait_for_publish(10)
        heard.wait(lambda d: d["type"] == "acl_not_applied" and d["device"] == a.device)
        fleet.call(lambda: (a.append("acl.applied", {"version": 7, "source": "mqtt"}),))
        fleet.call(lambda: fleet._pump(a))
        heard.wait(lambda d: d["type"] == "acl_not_applied" and d.get("cleared"))
    finally:
        fleet.stop()
        col.close()
        heard.close()
    rows = col_rows(store_spec)
    device_alarms = [r for r in rows if r["source"] == "device"]
    assert [(r["device"], r["type"], r["seq"]) for r in device_alarms] == [
        (a.device, "door_held_open", 1)
    ]
    central = {(r["device"], r["type"]): r for r in rows if r["source"] == "central"}
    for dev, atype in (
        (b, "device_silent"),
        (c, "clock_unsynced"),
        (c, "sync_stalled"),
        (a, "acl_not_applied"),
    ):
        row = central[(dev.device, atype)]
        assert row["cleared_ts"] is not None and row["cleared_ts"] >= row["ts"], row
    # Raised once each, not once per check.
    assert len([r for r in rows if r["source"] == "central"]) == len(central)


def col_rows(spec: str) -> list[dict]:
    from edged.central.store import open_store

    s = open_store(spec)
    try:
        return s.alarms.rows()
    finally:
        s.close()
