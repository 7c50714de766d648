"""Hypothesis against a running daemon: garbage on every inbound MQTT topic through a
real Mosquitto, and random keypad sequences after random cards (R3, R5, R9, R12,
Invariant 5).

What must hold: the daemon and its sync thread stay up, every access-list message that is
not a valid one is refused and recorded (acl.rejected) and the active list is the same
afterwards, no garbage advances acked_seq, no input makes the core fail, a grant only ever
follows a card of its person at that door (or the escort's), and the occupancy the core holds is the
one the journal replays to. Derandomized: the same examples on every run, so a count
asserted below cannot come and go.
"""

from __future__ import annotations

import datetime as dt
import json

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.core.events import CardPresented, KeypadKey
from edged.device.envelope import make_envelope
from edged.device.keys import load_keys
from edged.protocol import topics
from edged.protocol.privacy import CardFingerprinter
from edged.protocol.signed import sign_doc
from tests.conftest import enrol, require_pcscd, size
from tests.helpers.central import held
from tests.helpers.site import Running, Site, acl_for

pytestmark = pytest.mark.integration

SITE, DEVICE = "tokyo-hq", "door-3f-1"
EXAMPLES = settings(
    max_examples=size("daemon_fuzz_examples"),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=6)
    ),
    max_leaves=20,
)


def test_inbound_topics_take_any_garbage(tmp_path, mosquitto):
    """R9, R12: random bytes, random JSON, signed-looking objects and byte-flipped copies
    of a valid envelope on acl, cmd and receipt: every acl message is refused and counted,
    the list and acked_seq do not move, and the agent still takes a valid receipt."""
    require_pcscd()
    site = Site(tmp_path, mosquitto.port)
    run = Running(site.cfg())
    base = topics.base(SITE, DEVICE)
    good = make_envelope(
        acl_for(site, 2),
        site.admin_key,
        device=DEVICE,
        expires=dt.datetime.now(dt.UTC) + dt.timedelta(days=1),
    )
    signed_looking = st.fixed_dictionaries(
        {"key_id": st.text(max_size=20), "sig": st.text(alphabet="0123456789abcdef", max_size=130)},
        optional={"site": st.just(SITE), "device": st.just(DEVICE), "seq": json_values},
    )
    payloads = st.one_of(
        st.binary(min_size=1, max_size=600),
        json_values.map(lambda v: json.dumps(v).encode()),
        signed_looking.map(lambda v: json.dumps(v).encode()),
        st.tuples(st.integers(0, len(good) - 1), st.integers(1, 255)).map(
            lambda t: good[: t[0]] + bytes([good[t[0]] ^ t[1]]) + good[t[0] + 1 :]
        ),
    )
    seen = {"acl": 0, "other": 0}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", site.port)
    pub.loop_start()

    def send(topic: str, payload: bytes) -> None:
        pub.publish(topic, payload, qos=1).wait_for_publish(10)

    try:
        assert run.d.sync.connected_event.wait(10)
        before = run.d.call(lambda: run.d.core.acl.sha256 if run.d.core.acl else None)

        @EXAMPLES
        @given(payload=payloads, kind=st.sampled_from(["acl", "cmd", "receipt"]))
        def one(payload: bytes, kind: str) -> None:
            if kind == "acl":
                n = run.d.observers.refused_total
                send(f"{base}/acl", payload)
                assert run.d.observers.wait_refused(n + 1), "an acl message was not refused"
                seen["acl"] += 1
            else:
                send(f"{base}/{kind}", payload)
                seen["other"] += 1

        one()
        assert seen["acl"] > 5 and seen["other"] > 5
        assert run.d.call(lambda: run.d.core.acl.sha256 if run.d.core.acl else None) == before
        assert run.d.sync.status()["acked_seq"] == 0
        # The agent survived all of it: a real receipt still moves acked_seq.
        head = run.head()
        h = run.d.call(lambda: run.d.journal.head()[1])
        receipt = sign_doc(
            {"site": SITE, "device": DEVICE, "seq": head, "hash": h}, site.collector_key
        )
        send(f"{base}/receipt", json.dumps(receipt).encode())
        assert run.d.sync.wait_for(lambda s: s["acked_seq"] == head, timeout=15)
        assert run.d.sync.status()["connected"]
    finally:
        run.stop()
        pub.loop_stop()
        pub.disconnect()


CARDS = {  # raw UID -> person (config/acl-example.toml); the last is unknown
    "012E4CD9A1B2C3D4": "S1001",
    "04A1B2C3": "S1002",
    "04C5D6E7F80912": "V0042",
    "0123456789ABCDEF": "S0999",
    "04112233": "A0001",
    "DEADBEEF": None,
}


def test_random_keypad_sequences_after_random_cards(tmp_path, mosquitto):
    """R3, R5, Invariant 5: any card at any reader, then any keys on either keypad: no core
    failure, a grant only for a person whose card was presented at that door (or the
    visitor whom such a person escorts), and the core's
    occupancy equals what the journal replays to."""
    require_pcscd()
    site = Site(tmp_path, mosquitto.port)
    enrol(site.state, site.config)  # the example access list
    run = Running(site.cfg())
    fp = CardFingerprinter(load_keys(site.state).fingerprint_secret)
    readers = ["entry", "exit", "server-entry", "server-exit"]
    stats = {"examples": 0, "granted": 0, "denied": 0}
    # Who has presented a card at each door's entry reader: keys may complete the prompt
    # of someone who tapped in an earlier example and is still within its timeout.
    tapped: dict[str, set[str | None]] = {"main": set(), "server": set()}
    try:

        @EXAMPLES
        @given(
            uid=st.sampled_from(sorted(CARDS)),
            # Mostly a reader with its own door's keypad, sometimes the other one.
            where=st.sampled_from(
                [
                    ("entry", "main"),
                    ("exit", "main"),
                    ("server-entry", "server"),
                    ("server-exit", "server"),
                ]
            )
            | st.tuples(st.sampled_from(readers), st.sampled_from(["main", "server"])),
            # The sequences that mean something (purpose and carry-in, PIN first, the
            # admin's reset, the last leaver's confirmation), random keys, and both mixed.
            keys=st.sampled_from(["1#0#", "4821#1#0#", "7350#0#", "0#", "#", ""]).map(list)
            | st.lists(
                st.sampled_from("0123456789#*") | st.sampled_from(["1#0#", "4821#", "0#"]),
                max_size=12,
            ).map(lambda parts: list("".join(parts))),
        )
        def one(uid: str, where: tuple[str, str], keys: list[str]) -> None:
            reader, keypad = where
            card = fp.fingerprint(bytes.fromhex(uid))
            if reader.endswith("entry"):
                tapped["main" if reader == "entry" else "server"].add(CARDS[uid])
            events = [CardPresented(reader=reader, card=card, kind="felica")]
            events += [KeypadKey(keypad=keypad, key=k) for k in keys]
            mark = run.d.observers.processed_count
            for ev in events:
                run.d.queue.put(ev)
            assert run.d.observers.wait_processed(lambda p: p.n >= mark + len(events), after=mark)
            for r in run.d.observers.records_since(mark):
                assert r["type"] != "alarm.internal_error", r
                if r["type"] == "door.granted":
                    # Someone who presented a card at this door, or the visitor whom such
                    # a person came to escort.
                    who = tapped[r["door"]]
                    assert r["person"] in who or r.get("escort") in who - {None}, r
                    stats["granted"] += 1
                stats["denied"] += r["type"] == "door.denied"
            stats["examples"] += 1

        one()
        assert stats["examples"] >= 100 and stats["denied"] > 0 and stats["granted"] > 0
        print(f"keypad fuzz: {stats}")
        live = run.d.call(lambda: run.d.core.snapshot()["occupancy"])
        replayed = run.d.call(lambda: (run.d._restore_state(), run.d.core.snapshot())[1])
        assert replayed["occupancy"] == live
    finally:
        run.stop()


def test_collector_topics_take_any_garbage(tmp_path, mosquitto):
    """R9, R13, Invariant 5: the collector's own inbound topics (event, checkpoint, status,
    heartbeat, the device alarm) through Mosquitto, with random bytes, random JSON and
    byte-flipped copies of genuine records: nothing false is stored, bad events are
    alarms, and the genuine records that follow are stored in order."""
    from edged.clock import SystemClock
    from edged.device.journal import Journal

    site = Site(tmp_path, mosquitto.port)
    with Journal(
        site.state / "journal.db",
        load_keys(site.state),
        SystemClock(),
        site="tokyo-hq",
        device="door-3f-1",
    ) as j:
        j.append_many(("door.exit_request", {"door": "main", "n": i}) for i in range(3))
        wires = [r.wire() for r in j.records(1, 3)]
    col = site.collector()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect("127.0.0.1", site.port)
    pub.loop_start()
    leaves = [
        "event/door.granted",
        "checkpoint",
        "status",
        "heartbeat",
        "alarm/journal.unavailable",
    ]
    base = topics.base(SITE, DEVICE)
    counts = {"sent": 0}

    def send(leaf: str, payload: bytes) -> None:
        pub.publish(f"{base}/{leaf}", payload, qos=1).wait_for_publish(10)

    try:
        assert col.subscribed.wait(15)
        send("event/door.exit_request", wires[0])
        assert col.wait_for(lambda: held(col).seqs(SITE, DEVICE) == [1])

        @EXAMPLES
        @given(
            leaf=st.sampled_from(leaves),
            payload=st.one_of(
                st.binary(min_size=1, max_size=600),
                json_values.map(lambda v: json.dumps(v).encode()),
                st.tuples(st.integers(0, len(wires[1]) - 1), st.integers(1, 255)).map(
                    lambda t: (
                        wires[1][: t[0]] + bytes([wires[1][t[0]] ^ t[1]]) + wires[1][t[0] + 1 :]
                    )
                ),
            ),
        )
        def one(leaf: str, payload: bytes) -> None:
            send(leaf, payload)
            counts["sent"] += 1

        one()
        # The genuine records still go in, in order, after all of it.
        send("event/door.exit_request", wires[1])
        send("event/door.exit_request", wires[2])
        assert col.wait_for(lambda: held(col).seqs(SITE, DEVICE) == [1, 2, 3], timeout=30)
        kinds = {a[0] for a in held(col).alarms()}
        assert kinds <= {"bad_record", "bad_checkpoint", "rewrite", "rollback"}, kinds
        assert "bad_record" in kinds and counts["sent"] >= 100
    finally:
        pub.loop_stop()
        pub.disconnect()
        col.close()
