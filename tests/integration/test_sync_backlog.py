"""A large backlog drained while the broker is killed again and again and the device's
sync agent is restarted: the collector ends with every seq exactly once, in order
(R13, R15). 20,000 records by default, 100,000 with EDGED_LONG=1.

The agent and broker run with their production defaults (window 100, 800 unreceipted,
Mosquitto's default queue of 1000), so the flow control is the real one.
"""

from __future__ import annotations

import pytest

from edged.clock import SystemClock
from edged.device.config import SyncConfig
from edged.device.sync.agent import SyncAgent
from edged.protocol.mqtt import Broker
from tests.conftest import size
from tests.helpers.central import held

pytestmark = pytest.mark.integration

SITE, DEVICE = "hq", "door-1"
RECORDS = size("sync_backlog_records")


@pytest.mark.slow
def test_backlog_survives_broker_kills_and_agent_restarts(tmp_path, mosquitto, signed_door):
    """R13: a backlog drained through four broker kills (SIGKILL, no persistence: every
    queued message is lost) and an agent restart: every seq once, in order, receipted."""
    door = signed_door(SITE, DEVICE)
    state = door.state
    with door.journal() as j:
        for start in range(0, RECORDS, 1000):
            j.append_many(
                ("door.granted", {"door": "main", "person": f"S{i:06}", "reason": "ok"})
                for i in range(start, start + 1000)
            )
        head = j.head()[0]  # the records and the checkpoints between them
    cfg = SyncConfig(
        host="127.0.0.1",
        port=mosquitto.port,
        collector_pubkey=tmp_path / "collector" / "collector_ed25519.pub",
        heartbeat_seconds=1,
    )

    def agent() -> SyncAgent:
        a = SyncAgent(
            cfg,
            site=SITE,
            device=DEVICE,
            journal_path=state / "journal.db",
            state_dir=state,
            clock=SystemClock(),
            boot_id="backlog",
            on_inbound=lambda *_: None,
        )
        a.start()
        return a

    col = door.collector(Broker("127.0.0.1", mosquitto.port))
    col.start()
    a = agent()
    try:
        for i, share in enumerate((0.15, 0.3, 0.5, 0.7, 0.85)):
            assert col.wait_for(lambda s=share: col.stored >= s * head, timeout=120), (
                f"stalled at {col.stored} of {head}: agent {a.status()} cursor {a._cursor}"
                f" unreceipted {len(a._unreceipted)} {list(a._unreceipted)[:3]}"
                f" inflight {len(a._inflight)} connected {a.connected_event.is_set()}"
            )
            if i == 2:
                a.close()  # the device restarts: it resumes from acked_seq + 1
                a = agent()
            else:
                mosquitto.kill()
                mosquitto.start()
        # Stored only in order and only once, so the count says all of 1..head are there.
        assert col.wait_for(lambda: col.stored >= head, timeout=300), (
            f"stalled at {col.stored} of {head}: agent {a.status()} cursor {a._cursor}"
            f" unreceipted {len(a._unreceipted)} {list(a._unreceipted)[:3]}"
            f" inflight {len(a._inflight)} connected {a.connected_event.is_set()}"
        )
        assert held(col).seqs(SITE, DEVICE) == list(range(1, head + 1))
        assert held(col).alarms() == []
        assert a.wait_for(lambda s: s["acked_seq"] == head, timeout=60)
    finally:
        a.close()
        col.close()
