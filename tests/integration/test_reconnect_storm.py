"""A thousand doors reconnecting at once: capped exponential backoff with jitter (R13)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from edged.clock import SystemClock
from edged.device.config import SyncConfig
from edged.device.journal import Journal
from edged.device.keys import init_keys, load_keys
from edged.device.sync.agent import SyncAgent
from edged.protocol.backoff import Backoff

pytestmark = pytest.mark.integration

DEVICES = 200


def test_backoff_grows_spreads_and_caps():
    """R13: each delay lies between the base and three times the last, never above the cap;
    a connection that proved stable starts over with a first window of 5 s."""
    b = Backoff(1.0, 60.0)
    delays = [b.next() for _ in range(40)]
    assert all(1.0 <= d <= 60.0 for d in delays)
    assert max(delays) > 20  # it grows
    assert len({round(d, 6) for d in delays[:4]}) == 4  # and is not one fixed step
    assert b.ended(lasted=31.0) <= 5.0  # stable: a first window of 5 s again
    assert b.next() <= 15.0
    lo = Backoff(1.0, 60.0, uniform=lambda a, _b: a)
    assert [lo.next() for _ in range(3)] == [1.0, 1.0, 1.0]
    hi = Backoff(1.0, 60.0, uniform=lambda _a, b: b)
    assert [hi.next() for _ in range(5)] == [3.0, 9.0, 27.0, 60.0, 60.0]


def test_two_hundred_devices_do_not_reconnect_in_the_same_second(tmp_path, mosquitto):
    """R13: 200 devices' sync agents lose the broker at the same moment; it is back two
    seconds later. Before, all retried every 1 s exactly and came back within one
    second; with jittered backoff no second holds more than half of them."""
    state = tmp_path / "state"
    init_keys(state)
    with Journal(state / "journal.db", load_keys(state), SystemClock(), site="s", device="d"):
        pass
    cfg = SyncConfig(host="127.0.0.1", port=mosquitto.port, heartbeat_seconds=60)
    agents = []
    for i in range(DEVICES):
        sd = tmp_path / f"dev{i}"
        sd.mkdir()
        agents.append(
            SyncAgent(
                cfg,
                site="s",
                device=f"door-{i}",
                journal_path=state / "journal.db",
                state_dir=sd,
                clock=SystemClock(),
                boot_id="b",
                on_inbound=lambda _k, _p: None,
                # As after a long connection: these were up for less than 30 s.
                backoff=Backoff(1.0, 60.0, stable=1.0),
            )
        )
    came_back: dict[int, float] = {}
    lock = threading.Lock()
    went_down = threading.Barrier(DEVICES + 1, timeout=60)

    def watch(i: int, a: SyncAgent) -> None:
        assert a.wait_for(lambda s: not s["connected"], timeout=60)
        went_down.wait()
        if a.wait_for(lambda s: s["connected"], timeout=90):
            with lock:
                came_back[i] = time.monotonic()

    try:
        for a in agents:
            a.start()
        for a in agents:
            assert a.connected_event.wait(30)
        watchers = [
            threading.Thread(target=watch, args=(i, a), daemon=True) for i, a in enumerate(agents)
        ]
        for t in watchers:
            t.start()
        threading.Event().wait(1.0)  # connected for a while (stable=1 s), as in the field
        mosquitto.kill()
        went_down.wait()
        down_at = time.monotonic()
        threading.Event().wait(2.0)  # the broker's outage, not a wait for a result
        mosquitto.start()
        for t in watchers:
            t.join(100)
        assert len(came_back) == DEVICES
        per_second = Counter(int(t - down_at) for t in came_back.values())
        busiest = max(per_second.values())
        spread = max(came_back.values()) - min(came_back.values())
        print(f"reconnects per second after the outage: {sorted(per_second.items())}")
        assert busiest <= DEVICES // 2, per_second
        assert spread > 2.0, spread
        assert max(came_back.values()) - down_at < 30
    finally:
        for a in agents:
            a.close()
