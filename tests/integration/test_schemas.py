"""Every MQTT payload kind, captured from a real run, matches its JSON Schema in docs/."""

from __future__ import annotations

import datetime as dt
import json
import threading

import paho.mqtt.client as mqtt
import pytest

from edged.core.events import Tamper
from edged.device.envelope import make_envelope
from edged.protocol import topics
from tests.helpers.central import held
from tests.helpers.schemas import validators
from tests.helpers.site import Running, Site, acl_for, publish

pytestmark = pytest.mark.integration


def schema_for(rest: str) -> str | None:
    if rest == "alarm/journal.unavailable":
        return "device-alarm"
    head = rest.split("/", 1)[0]
    return {
        "event": "record",
        "alarm": "record",
        "checkpoint": "record",
        "status": "status",
        "heartbeat": "heartbeat",
        "receipt": "receipt",
        "cmd": "cmd",
        "acl": "acl-envelope",
    }.get(head)


def test_real_messages_match_their_schemas(tmp_path, mosquitto):
    from tests.conftest import require_pcscd

    require_pcscd()
    site = Site(tmp_path, mosquitto.port)
    seen: dict[str, list[bytes]] = {}
    lock = threading.Lock()
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)

    def on_message(_c, _u, msg):
        parsed = topics.parse(msg.topic)
        if parsed and msg.payload:
            with lock:
                seen.setdefault(parsed[2], []).append(bytes(msg.payload))

    spy.on_message = on_message
    spy.connect("127.0.0.1", mosquitto.port)
    spy.subscribe("edged/#", qos=1)
    spy.loop_start()
    col = site.collector()
    run = Running(site.cfg())
    try:
        assert run.d.sync.connected_event.wait(10)
        run.presses(3)
        run.d.queue.put(Tamper(active=True))
        run.d.call(lambda: run.d.journal.checkpoint())
        run.d.sync.notify()
        env = make_envelope(
            acl_for(site, 2),
            site.admin_key,
            device="door-3f-1",
            expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
        )
        publish(site.port, topics.leaf("tokyo-hq", "door-3f-1", "acl"), env, retain=True)
        head = run.head()
        assert col.wait_for(lambda: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= head, 30)
        col.close()
        col = site.collector()  # a restarted collector asks every known device to resend
        want = {"event", "alarm", "checkpoint", "status", "heartbeat", "receipt", "cmd", "acl"}
        done = threading.Event()
        for _ in range(100):
            with lock:
                kinds = {k.split("/", 1)[0] for k in seen}
            if want <= kinds:
                break
            done.wait(0.1)
        assert want <= kinds, f"missing {want - kinds}"
    finally:
        run.stop()
        col.close()
        spy.loop_stop()
        spy.disconnect()
    v = validators()
    checked = 0
    for rest, payloads in seen.items():
        name = schema_for(rest)
        if name is None or rest.startswith("alarm/collector."):
            continue
        for p in payloads:
            errors = list(v[name].iter_errors(json.loads(p)))
            assert not errors, f"{rest}: {errors[0].message}"
            checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    "bad",
    [
        {"state": "maybe", "device": "d", "boot_id": "b"},
        {
            "cmd": "reboot",
            "site": "s",
            "device": "d",
            "ts": "t",
            "key_id": "0" * 16,
            "sig": "0" * 128,
        },
    ],
)
def test_schemas_reject_wrong_payloads(bad):
    v = validators()
    name = "status" if "state" in bad else "cmd"
    assert list(v[name].iter_errors(bad))
