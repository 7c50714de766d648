"""Sync through a real Mosquitto: every record once and in order, signed ACLs only (R9,
R10, R12, R13, R15)."""

from __future__ import annotations

import datetime as dt
import json
import queue
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edged.device.acl import load_active
from edged.device.envelope import make_envelope
from edged.device.keys import load_keys
from edged.protocol import topics
from edged.protocol.keys import init_role_key
from edged.protocol.signed import sign_doc
from tests.conftest import require_pcscd
from tests.helpers.central import held
from tests.helpers.site import (
    Running,
    Site,
    acl_for,
    next_acl_records,
    publish,
    two_checkpoints,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "config" / "edged.toml"


@pytest.fixture
def site(tmp_path, mosquitto):
    require_pcscd()
    return Site(tmp_path, mosquitto.port, extra="refusal_interval_seconds = 2\n")


@pytest.mark.slow
def test_every_record_once_in_order_across_broker_and_daemon_restarts(site, mosquitto):
    """R13: broker killed and restarted, daemon restarted: the collector ends with every
    seq exactly once, in order; receipts bring acked_seq up to the head."""
    col = site.collector()
    run = Running(site.cfg())
    try:
        run.presses(40)
        for _ in range(3):
            mosquitto.kill()
            run.presses(40)  # recorded while the broker is down: kept in the journal
            mosquitto.start()
            run.presses(20)
            # Both ends reconnect by themselves and the stream catches up mid-run.
            head = run.head()
            assert col.wait_for(
                lambda h=head: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= h, timeout=60
            )
        run.stop()
        run = Running(site.cfg())  # a restart resumes from acked_seq + 1
        run.presses(30)
        head = run.head()
        assert col.wait_for(
            lambda: held(col).seqs("tokyo-hq", "door-3f-1") == list(range(1, head + 1)), timeout=60
        ), f"collector has {len(held(col).seqs('tokyo-hq', 'door-3f-1'))}"
        st = run.d.sync
        assert st.connected_event.wait(10)
        deadline = threading.Event()
        for _ in range(100):
            if st.status()["acked_seq"] == head:
                break
            deadline.wait(0.1)
        assert st.status()["acked_seq"] == head
        assert held(col).alarms() == []
    finally:
        run.stop()
        col.close()


def test_signed_acl_updates_and_every_kind_of_bad_one(site, mosquitto):
    """R5, R9, R12: only the pinned administrator's signed, scoped, newer, unexpired list is
    applied; every other one is rejected, recorded (in full or counted) with an alarm, and
    changes nothing."""
    run = Running(site.cfg())
    topic = topics.leaf("tokyo-hq", "door-3f-1", "acl")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    try:
        assert run.d.sync.connected_event.wait(10)
        good = make_envelope(acl_for(site, 5), site.admin_key, device="door-3f-1", expires=later)
        recs = next_acl_records(run, lambda: publish(site.port, topic, good, retain=True))
        assert recs[0]["type"] == "acl.applied" and recs[0]["version"] == 5
        sha = load_active(site.state).sha256
        assert recs[0]["sha256"] == sha

        from edged.protocol.keys import init_role_key as mk

        stranger = mk(site.tmp / "stranger", "admin")
        tampered = json.loads(good)
        tampered["acl"]["people"][0]["areas"] = ["handling", "server-room"]
        tampered["version"] = 9
        big = json.loads(
            make_envelope(acl_for(site, 8), site.admin_key, device="door-3f-1", expires=later)
        )
        big["padding"] = "x" * (1 << 20)
        cases = {
            "unknown_key": make_envelope(
                acl_for(site, 6), stranger, device="door-3f-1", expires=later
            ),
            "bad_signature": json.dumps(tampered).encode(),
            "wrong_scope": make_envelope(
                acl_for(site, 6), site.admin_key, device="door-9", expires=later
            ),
            "expired": make_envelope(
                acl_for(site, 6),
                site.admin_key,
                device="door-3f-1",
                expires=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1),
            ),
            "not_newer": make_envelope(
                acl_for(site, 4), site.admin_key, device="door-3f-1", expires=later
            ),
            "malformed": b"{not json",
            "oversize": json.dumps(big).encode(),
        }
        # The first refusal is recorded in full; the rest of the interval's are counted,
        # by reason, into one alarm when it ends (a flood cannot fill the journal).
        n0, before = run.d.observers.refused_total, run.d.observers.processed_count
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        c.connect("127.0.0.1", site.port)
        c.loop_start()
        for payload in cases.values():
            c.publish(topic, payload, qos=1).wait_for_publish(10)
        c.loop_stop()
        c.disconnect()
        assert run.d.observers.wait_refused(n0 + len(cases), timeout=30)
        summary = run.d.observers.wait_processed(
            lambda p: any(r.get("refused", 0) > 1 for r in p.records), after=before, timeout=15
        )
        assert summary is not None, "no count of the refused lists was recorded"
        recs = run.d.observers.records_since(before)
        first = [r for r in recs if r["type"] == "acl.rejected"]
        assert [r["reason"] for r in first] == ["unknown_key"]
        [counted] = [r for r in recs if r.get("refused", 0) > 1]
        assert counted["type"] == "alarm.acl_rejected"
        assert counted["reasons"] == {reason: 1 for reason in list(cases)[1:]}
        assert load_active(site.state).sha256 == sha  # the door keeps its list
        assert run.d.call(lambda: run.d.core.acl.version) == 5
        # A replay of the very list in force (as the retained message after a reconnect)
        # is recognised and not recorded as an attack.
        before = run.d.observers.processed_count
        publish(site.port, topic, good)
        run.presses(1)
        recs = run.d.observers.records_since(before)
        assert [r["type"] for r in recs] == ["door.exit_request"]
    finally:
        run.stop()


def test_only_signed_receipts_advance_acked_seq(site, mosquitto):
    """R13: a receipt not signed by the pinned collector key is ignored."""
    run = Running(site.cfg())
    try:
        assert run.d.sync.connected_event.wait(10)
        run.presses(5)
        head = run.head()
        h = run.d.call(lambda: run.d.journal.head()[1])
        from edged.protocol.keys import init_role_key as mk

        forger = mk(site.tmp / "forger", "collector")
        forged = sign_doc(
            {"site": "tokyo-hq", "device": "door-3f-1", "seq": head, "hash": h}, forger
        )
        rtopic = topics.leaf("tokyo-hq", "door-3f-1", "receipt")
        publish(site.port, rtopic, json.dumps(forged).encode())
        publish(site.port, rtopic, b"garbage")
        good = sign_doc(
            {"site": "tokyo-hq", "device": "door-3f-1", "seq": head, "hash": h}, site.collector_key
        )
        assert run.d.sync.status()["acked_seq"] == 0
        publish(site.port, rtopic, json.dumps(good).encode())
        for _ in range(100):
            if run.d.sync.status()["acked_seq"] == head:
                break
            threading.Event().wait(0.05)
        assert run.d.sync.status()["acked_seq"] == head
    finally:
        run.stop()


def test_collector_flags_a_rewritten_record(site, mosquitto):
    """R9: a record re-signed with the stolen device key at a stored seq is a rewrite."""
    col = site.collector()
    run = Running(site.cfg())
    try:
        run.presses(3)
        head = run.head()
        assert col.wait_for(lambda: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= head, 30)
        keys = load_keys(site.state)
        [rec] = run.d.call(lambda: list(run.d.journal.records(2, 2)))
        obj = rec.fields
        obj["reason"] = "edited"
        from edged.protocol.canonical import canonical_bytes
        from edged.protocol.records import digest

        body = canonical_bytes(obj)
        h = digest(body)
        obj.update(hash=h, sig=keys.sign(bytes.fromhex(h)).hex())
        publish(site.port, topics.event("tokyo-hq", "door-3f-1", obj["type"]), canonical_bytes(obj))
        with col.changed:
            col.changed.wait_for(lambda: any(a[0] == "rewrite" for a in held(col).alarms()), 10)
        # Kept apart as a fork (it is validly signed), and alarmed.
        assert any(
            t == "rewrite" and d.startswith("seq 2 differs from the stored record")
            for t, d in held(col).alarms()
        ), held(col).alarms()
        assert held(col).forked("tokyo-hq", "door-3f-1") == [2]
        assert held(col).seqs("tokyo-hq", "door-3f-1")[:3] == [1, 2, 3]
    finally:
        run.stop()
        col.close()


def test_collector_flags_a_rolled_back_checkpoint(site, mosquitto):
    """R9: a device restored from an old copy publishes an older checkpoint: rollback alarm."""
    col = site.collector()
    run = Running(site.cfg())
    try:
        old, new = two_checkpoints(run)
        head = run.head()
        assert col.wait_for(lambda: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= head, 30)
        assert new.seq > old.seq
        # What the old copy of the journal would announce: its (older) signed checkpoint.
        publish(site.port, topics.leaf("tokyo-hq", "door-3f-1", "checkpoint"), old.wire())
        with col.changed:
            col.changed.wait_for(lambda: any(a[0] == "rollback" for a in held(col).alarms()), 10)
        assert any(a[0] == "rollback" and f"seq {old.seq}" in a[1] for a in held(col).alarms())
    finally:
        run.stop()
        col.close()


def test_a_resend_does_not_look_like_a_rollback(site, mosquitto):
    """R9, R13: a resend from seq 1 repeats old checkpoints on the event topic, but the
    retained checkpoint only ever carries the newest one, so the collector raises no
    rollback alarm (it did before: every resend looked like a restored journal)."""
    base = topics.base("tokyo-hq", "door-3f-1")
    seen: queue.Queue[tuple[str, int]] = queue.Queue()
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: seen.put((m.topic, json.loads(m.payload)["seq"]))
    watcher.connect("127.0.0.1", site.port)
    watcher.subscribe([(f"{base}/event/#", 1), (f"{base}/checkpoint", 1)])
    watcher.loop_start()
    col = site.collector()
    run = Running(site.cfg())
    try:
        old, new = two_checkpoints(run)
        assert col.wait_for(lambda: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= new.seq, 30)
        while seen.get(timeout=15) != (f"{base}/checkpoint", new.seq):
            pass  # the first time through
        cmd = sign_doc(
            {"cmd": "resend", "from_seq": 1, "site": "tokyo-hq", "device": "door-3f-1"},
            site.collector_key,
        )
        publish(site.port, f"{base}/cmd", json.dumps(cmd).encode())
        # Everything again, up to the newest checkpoint on both topics.
        resent: list[tuple[str, int]] = []
        while (f"{base}/checkpoint", new.seq) not in resent or not any(
            t.startswith(f"{base}/event/") and s == new.seq for t, s in resent
        ):
            resent.append(seen.get(timeout=15))
        assert any(s == old.seq and "/event/" in t for t, s in resent), "no resend happened"
        assert [s for t, s in resent if t == f"{base}/checkpoint"] == [new.seq]
        run.presses(1)  # the collector has seen the resend once this one is stored
        head = run.head()
        assert col.wait_for(lambda: len(held(col).seqs("tokyo-hq", "door-3f-1")) >= head, 30)
        assert held(col).alarms() == []
    finally:
        run.stop()
        col.close()
        watcher.loop_stop()
        watcher.disconnect()


def test_a_flood_of_refused_lists_writes_a_bounded_number_of_records(site, mosquitto):
    """R9, R10: 400 refused envelopes from anyone on the broker grow the journal by at most
    three records per refusal interval (was: two records each, without limit): the first
    in full, then one alarm with the count."""
    run = Running(site.cfg())
    topic = topics.leaf("tokyo-hq", "door-3f-1", "acl")
    stranger = init_role_key(site.tmp / "stranger", "admin")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=7)
    bad = make_envelope(acl_for(site, 6), stranger, device="door-3f-1", expires=later)
    flood = 400
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect("127.0.0.1", site.port)
    c.loop_start()
    try:
        assert run.d.sync.connected_event.wait(10)
        head0, n0, before = (
            run.head(),
            run.d.observers.refused_total,
            run.d.observers.processed_count,
        )
        for i in range(flood):
            payload = bad if i % 2 else b"garbage %d" % i
            c.publish(topic, payload, qos=1).wait_for_publish(10)
        assert run.d.observers.wait_refused(n0 + flood, timeout=60)
        counted = run.d.observers.wait_processed(
            lambda p: any(r.get("refused", 0) > 1 for r in p.records), after=before, timeout=15
        )
        assert counted is not None
        grown = run.head() - head0
        assert grown <= 3, f"the journal grew by {grown} records for {flood} refused lists"
        recs = run.d.observers.records_since(before)
        total = sum(r.get("refused", 0) for r in recs if r["type"] == "alarm.acl_rejected")
        assert total == flood  # every refusal counted, none lost
    finally:
        run.stop()
        c.loop_stop()
        c.disconnect()
