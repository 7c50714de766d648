"""Records are bound to their (site, device): a genuine record republished under another
site or device is refused with an alarm, and devices of one name live at two sites
(R9, R13)."""

from __future__ import annotations

import shutil

import paho.mqtt.client as mqtt
import pytest

from edged.device.keys import load_keys
from edged.device.paths import PUBLIC_KEY_FILE
from edged.protocol import topics
from edged.protocol.mqtt import Broker
from tests.helpers.central import held
from tests.helpers.door import SignedDoor

pytestmark = pytest.mark.integration


def journal_wires(door: SignedDoor, n: int = 3) -> list[bytes]:
    with door.journal() as j:
        j.append_many(("door.exit_request", {"door": "main", "n": i}) for i in range(n))
        return [r.wire() for r in j.records(1, n)]


def test_records_replayed_under_another_site_are_refused(tmp_path, mosquitto, signed_door):
    """R9, R13: door-1 exists at two sites with its own key each. Site A's genuine records
    republished under site B (same device name) and under another device of site A are
    refused and alarmed (before: stored as the other site's, silently); each site's own
    records are stored under its own name."""
    a = journal_wires(signed_door("site-a", "door-1", "a"))
    b = journal_wires(signed_door("site-b", "door-1", "b"))
    # Site A's second door, with a key of its own.
    col = signed_door("site-a", "door-2", "a2").collector(Broker("127.0.0.1", mosquitto.port))
    col.start()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()

    def send(site: str, device: str, wire: bytes) -> None:
        pub.publish(topics.event(site, device, "door.exit_request"), wire, qos=1).wait_for_publish(
            10
        )

    try:
        assert col.subscribed.wait(15)
        for w in a:
            send("site-b", "door-1", w)  # A's records under B's name
            send("site-a", "door-2", w)  # and under another door of A
        for w in a:
            send("site-a", "door-1", w)
        for w in b:
            send("site-b", "door-1", w)
        assert col.wait_for(
            lambda: (
                held(col).seqs("site-a", "door-1") == [1, 2, 3]
                and held(col).seqs("site-b", "door-1") == [1, 2, 3]
            )
        )
        with col.changed:
            col.changed.wait_for(lambda: len(held(col).alarms()) >= 2, 10)
        assert held(col).seqs("site-a", "door-2") == []
        stored_a = held(col).hashes("site-a", "door-1")
        stored_b = held(col).hashes("site-b", "door-1")
        assert len(stored_b) == 3 and not set(stored_a) & set(stored_b)
        kinds = [t for t, _d in held(col).alarms()]
        # Under either other name, A's record fails that name's pinned key (one
        # rate-limited alarm per name).
        assert set(kinds) == {"bad_record"}, held(col).alarms()
        assert held(col).alarm_origins() == {
            ("site-b", "door-1"),
            ("site-a", "door-2"),
        }
        assert len(held(col).alarms()) <= 4  # six forged messages, bounded alarms
    finally:
        pub.loop_stop()
        pub.disconnect()
        col.close()


def test_a_record_signed_for_another_site_is_refused_by_its_binding(mosquitto, signed_door):
    """R9, R13: even where the key lookup would let it through (the same key pinned at the
    other name), the site and device inside the signed record must match the topic."""
    from edged.central.verify import WRONG_ORIGIN, check_record

    door = signed_door("site-a", "door-1", "a")
    wires = journal_wires(door, 1)
    keys = load_keys(door.state)
    assert isinstance(check_record(wires[0], keys.public_key, origin=("site-a", "door-1")), dict)
    why = check_record(wires[0], keys.public_key, origin=("site-b", "door-1"))
    assert isinstance(why, str) and why.startswith(WRONG_ORIGIN)


def test_a_key_listed_under_two_names_is_trusted_under_neither(signed_door):
    """R9, R13: a key is one device at one site; copied to a second name by mistake (or
    on purpose), it would let one device's records pass as the other's."""
    door = signed_door("site-a", "door-1", "a")
    trust = door.trust
    (trust / "site-b").mkdir()
    shutil.copy(door.state / PUBLIC_KEY_FILE, trust / "site-b" / "door-1.pub")
    col = door.collector()
    try:
        assert col.trust.key("site-a", "door-1") == (None, "")
        assert col.trust.key("site-b", "door-1") == (None, "")
        (trust / "site-b" / "door-1.pub").unlink()
        col.trust.load()
        assert col.trust.key("site-a", "door-1")[0] is not None
    finally:
        col.close()
