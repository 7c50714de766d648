"""An area's presence sensor end to end (R6, R7, R23; issue 37): the daemon on simulated
hardware, the PIR a MockFactory pin behind gpiozero's MotionSensor, time a fake clock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.core.events import CardPresented, KeypadKey
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.journal import verify_journal
from edged.device.keys import load_keys
from edged.protocol.privacy import CardFingerprinter
from tests.conftest import enrol, require_pcscd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
YAMADA, SUZUKI = "012E4CD9A1B2C3D4", "04A1B2C3"


def config_with_pir(tmp: Path) -> Path:
    text = (ROOT / "config" / "edged.toml").read_text(encoding="utf-8")
    more = 'presence_pin = 11\npresence_empty_minutes = 20\nclosing_time = "19:00"'
    text = text.replace('kind = "handling"        # 取扱区域', f'kind = "handling"\n{more}')
    path = tmp / "edged.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_presence_sensor_empties_a_room_and_sees_someone_after_closing(tmp_path):
    """R6, R7, R23: Yamada and Suzuki go in; Yamada taps out and Suzuki follows on the same
    unlock. Twenty still minutes later the sensor confirms the area empty (a signed
    record). After closing, motion with nobody counted inside is
    alarm.presence_after_closing; the next person in clears it. The journal verifies."""
    require_pcscd()
    state = tmp_path / "state"
    config = config_with_pir(tmp_path)
    enrol(state, config)
    clock = FakeClock()
    clock.wall = int(datetime(2026, 11, 24, 1, 0, tzinfo=UTC).timestamp() * 1000)  # Tue 10:00
    clock.is_synced = True
    cfg = load_config(config, state_dir=state)
    d = Daemon(cfg, simulate=True, clock=clock, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    while not (d.running.wait(0.1) or d.stopped.is_set()):
        pass
    fp = CardFingerprinter(load_keys(state).fingerprint_secret)
    obs = d.observers

    def step(*events):
        mark = obs.processed_count
        for ev in events or (None,):
            d.queue.put(ev)
        assert obs.wait_processed(lambda p: p.n >= mark + max(len(events), 1), after=mark)
        return obs.records_since(mark)

    def card(uid, reader="entry"):
        return CardPresented(reader=reader, card=fp.fingerprint(bytes.fromhex(uid)), kind="felica")

    def keys(text):
        return [KeypadKey(keypad="main", key=k) for k in text]

    def later(seconds):
        clock.advance(seconds)
        return step()

    def motion(moving):
        mark = obs.processed_count
        d.rig.gpio.set_motion("handling", moving)  # the wire, as the sensor sees it
        assert obs.wait_processed(lambda p: type(p.event).__name__ == "Presence", after=mark)
        return obs.records_since(mark)

    try:
        assert d.call(lambda: d.core.snapshot()["motion"]) == {"handling": False}
        for uid in (YAMADA, SUZUKI):
            granted = step(card(uid), *keys("1#0#"))
            assert [r["type"] for r in granted] == ["door.granted"]
        [out] = step(card(YAMADA, "exit"))
        assert out["type"] == "door.exit" and out["was_inside"]
        motion(True)
        later(60)
        motion(False)  # Suzuki follows out; nobody moves from here
        assert not [r for r in later(19 * 60) if r["type"] == "occupancy.confirmed_empty"]
        [empty] = [r for r in later(61) if r["type"] == "occupancy.confirmed_empty"]
        assert empty["removed"] == ["S1002"] and empty["minutes"] == 20
        assert d.call(lambda: d.core.snapshot()["occupancy"]["handling"]) == []
        later(9 * 3600)  # 19:21: closed (no lock check: that alarm is another story)
        alarm = [r for r in motion(True) if r["type"] == "alarm.presence_after_closing"]
        assert alarm and alarm[0]["area"] == "handling"
        assert d.call(lambda: d.rig.gpio.state()["indicators"]["red"]) == "on"
        motion(False)
        assert not [r for r in motion(True) if r["type"].startswith("alarm.presence")]
        cleared = step(card(YAMADA), *keys("1#0#"))
        was = [r["was"] for r in cleared if r["type"] == "alarm.cleared"]
        assert was == ["presence_after_closing"]
    finally:
        d.request_stop()
        t.join(30)
    result = verify_journal(
        state / "journal.db", {load_keys(state).key_id: load_keys(state).public_key}
    )
    assert result.ok, result.summary()
