"""The central side's alarm rules, without a broker: the once-a-minute limit with its
count, unknown names sharing one counter, and the watched conditions raised once and
cleared once, on a real SQLite store with the clock injected (R10, R13, R15)."""

from __future__ import annotations

import json

import pytest

from edged.central.alarms import CENTRAL_ALARMS, Alarms
from edged.central.store import open_store
from edged.central.watch import DeviceWatch, Watch

pytestmark = pytest.mark.unit

DEV = ("hq", "door-1")


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def rig(tmp_path):
    store = open_store(tmp_path / "central.db")
    sent: list[tuple[str, dict]] = []
    clock = Clock()
    alarms = Alarms(
        store,
        lambda topic, payload, **_kw: sent.append((topic, json.loads(payload))),
        lambda site, device: (site, device) == DEV,
        interval=60.0,
        monotonic=clock,
    )
    yield store, alarms, sent, clock
    store.close()


def test_the_same_alarm_is_written_once_a_minute_with_the_count_of_the_rest(rig):
    """R15: a device sending a bad record a thousand times writes one alarm row in the
    minute, and the next row says how many were held back; a different kind of alarm is
    not held back by the first."""
    store, alarms, sent, clock = rig
    for _ in range(1000):
        alarms.found(*DEV, "bad_record", "hash mismatch")
    alarms.found(*DEV, "rewrite", "seq 5 differs")
    store.commit()
    assert store.alarms.all() == [("bad_record", "hash mismatch"), ("rewrite", "seq 5 differs")]
    # Published on the device's topic and announced on the central one, once each.
    announced = [m for t, m in sent if t == CENTRAL_ALARMS]
    assert [(m["type"], m["source"]) for m in announced] == [
        ("bad_record", "collector"),
        ("rewrite", "collector"),
    ]
    alarms.flush_suppressed()  # the minute is not over: nothing yet
    assert len(store.alarms.all()) == 2
    clock.t += 60.0
    alarms.flush_suppressed()
    store.commit()
    assert store.alarms.all()[-1] == ("bad_record", "999 more in the last minute")
    # The counter started again: the next one is written at once.
    alarms.found(*DEV, "bad_record", "again")
    assert store.alarms.all()[-1] == ("bad_record", "again")


def test_names_no_device_knows_share_one_counter(rig):
    """R15: garbage under a thousand invented device names writes one row, under
    ``?/?``, not a thousand."""
    store, alarms, _sent, _clock = rig
    for i in range(1000):
        alarms.found("nowhere", f"fake-{i}", "bad_record", "unknown device")
    store.commit()
    assert store.alarms.all() == [("bad_record", "unknown device")]
    assert store.alarms.origins() == {("?", "?")}


def test_watched_conditions_are_raised_once_and_cleared_once(rig):
    """R10, R13: a silent device is one open alarm however often it is checked, cleared
    once when it is heard again; a backlog that does not go down is a stall, one that
    does is not; an access list not applied in time is an alarm until it is."""
    store, alarms, sent, _clock = rig
    w = DeviceWatch(store, alarms, Watch(silent=10, stall=30, clock=60, acl=20), lambda s: True)
    now_ms = 10_000_000
    store.reports.note_status(DEV, now_ms, {"head_seq": 50, "acked_seq": 40, "backlog": 10,
                                    "clock_synced": True})  # fmt: skip
    store.reports.note_acl_published(DEV, 3, now_ms)
    w.check(now_ms, 0.0)
    assert [t for t, _d in store.alarms.all()] == []
    for i in range(5):  # silent for 11..15 s: one alarm, not five
        w.check(now_ms + 11_000 + i * 1000, 11.0 + i)
    store.commit()
    assert [t for t, _d in store.alarms.all()] == ["device_silent"]
    # Heard again with the backlog stuck at the same receipt for 31 s: silence clears,
    # and the stall (counted from when the backlog was first seen) is raised.
    store.reports.note_status(DEV, now_ms + 31_000, {"head_seq": 50, "acked_seq": 40, "backlog": 10,
                                             "clock_synced": True})  # fmt: skip
    w.check(now_ms + 31_000, 31.0)
    store.commit()
    rows = {r["type"]: r for r in store.alarms.rows()}
    assert rows["device_silent"]["cleared_ts"] is not None
    assert rows["sync_stalled"]["cleared_ts"] is None
    assert rows["acl_not_applied"]["cleared_ts"] is None  # published 31 s ago, none applied
    # Receipts move on and the list is applied: both clear.
    store.reports.note_status(DEV, now_ms + 32_000, {"head_seq": 50, "acked_seq": 50, "backlog": 0,
                                             "clock_synced": True})  # fmt: skip
    store.reports.note_acl_applied(DEV, 3, "2026-01-01T00:00:00.000Z")
    w.check(now_ms + 32_000, 32.0)
    store.commit()
    assert all(r["cleared_ts"] is not None for r in store.alarms.rows())
    central = [(m["type"], m.get("cleared", False)) for t, m in sent if t == CENTRAL_ALARMS]
    assert central == [
        ("device_silent", False),
        ("device_silent", True),
        ("sync_stalled", False),
        ("acl_not_applied", False),
        ("sync_stalled", True),
        ("acl_not_applied", True),
    ]
