"""The wall clock starting in 1970, synchronising with a jump, stepping forward and back,
and a restart without RTC: records stay ordered by seq and carry the clock state, each
step is itself recorded, time-window decisions follow the configured policy, and timers
run on the monotonic clock (R1, R3, R9).

The daemon runs in this process on simulated hardware with a FakeClock, whose wall and
monotonic readings the test moves independently, as NTP and a missing RTC do.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.core.events import CardPresented, DoorContact, KeypadKey
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.journal import verify_journal
from edged.device.keys import load_keys
from edged.protocol.privacy import CardFingerprinter
from edged.protocol.records import parse_ts
from tests.conftest import enrol, require_pcscd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
YAMADA, SUZUKI = "012E4CD9A1B2C3D4", "04A1B2C3"  # no time window; mon-fri 07:00-22:00
HOUR = 3_600_000


def wall(iso: str) -> int:
    return int(datetime.fromisoformat(iso).astimezone(UTC).timestamp() * 1000)


class Door:
    """An in-process daemon with the given clock, and the steps a person takes."""

    def __init__(self, state: Path, clock: FakeClock) -> None:
        self.fp = CardFingerprinter(load_keys(state).fingerprint_secret)
        cfg = load_config(ROOT / "config" / "edged.toml", state_dir=state)
        self.d = Daemon(cfg, simulate=True, clock=clock, control_socket=False)
        self.t = threading.Thread(target=lambda: self.d.run(install_signals=False), daemon=True)
        self.t.start()
        while not (self.d.running.wait(0.1) or self.d.stopped.is_set()):
            pass
        assert self.d.running.is_set()

    def step(self, *events) -> list[dict]:
        """Handle ``events``; with none, one tick of the loop (None wakes it at once)."""
        events = events or (None,)
        mark = self.d.observers.processed_count
        for ev in events:
            self.d.queue.put(ev)
        assert self.d.observers.wait_processed(lambda p: p.n >= mark + len(events), after=mark)
        return self.d.observers.records_since(mark)

    def tap(self, uid: str, reader: str = "entry") -> list[dict]:
        card = self.fp.fingerprint(bytes.fromhex(uid))
        return self.step(CardPresented(reader=reader, card=card, kind="felica"))

    def keys(self, keys: str) -> list[dict]:
        return self.step(*(KeypadKey(keypad="main", key=k) for k in keys))

    def set_door(self, closed: bool) -> list[dict]:
        """Move the door contact (a GPIO edge, delivered by the driver's thread) and wait
        until the daemon has handled it."""
        mark = self.d.observers.processed_count
        self.d.rig.gpio.set_door("main", closed=closed)
        p = self.d.observers.wait_processed(lambda p: isinstance(p.event, DoorContact), after=mark)
        assert p is not None
        return self.d.observers.records_since(mark)

    def stop(self) -> None:
        self.d.request_stop()
        self.t.join(30)


def test_clock_from_1970_to_ntp_steps_and_a_restart_without_rtc(tmp_path):
    """R1, R3, R9: see the module docstring; each step is checked where it happens."""
    require_pcscd()
    state = tmp_path / "state"
    enrol(state)
    clock = FakeClock()
    clock.wall, clock.is_synced = 42_000, False  # a Pi without RTC, just booted
    door = Door(state, clock)
    try:
        # Unsynchronised, in 1970, on a new device (nothing recorded under a synchronised
        # clock yet): by that clock, nobody's rights have begun.
        [r] = door.tap(YAMADA)
        assert (r["reason"], r["clock_synced"], r["ts"][:4]) == ("not_yet_valid", False, "1970")

        # NTP synchronises: one step of 56 years forward, recorded before anything that
        # is decided with the new time.
        clock.wall, clock.is_synced = wall("2026-11-24T10:00:00+09:00"), True  # a Tuesday
        recs = door.tap(SUZUKI)
        assert recs[0]["type"] == "clock.changed" and recs[0]["synced"] is True
        assert recs[0]["stepped_ms"] > 50 * 365 * 24 * HOUR
        assert [r["type"] for r in recs[1:]] == []  # inside her window: asked for a purpose
        [granted] = door.keys("1#0#")
        assert (granted["type"], granted["person"], granted["clock_synced"]) == (
            "door.granted",
            "S1002",
            True,
        )

        # The clock steps forward past her window: refused, and the step is recorded.
        clock.wall += 13 * HOUR  # 23:00
        recs = door.tap(SUZUKI)
        assert [(r["type"], r.get("reason")) for r in recs] == [
            ("clock.changed", None),
            ("door.denied", "outside_window"),
        ]
        assert recs[0]["stepped_ms"] == 13 * HOUR

        # Timers follow the monotonic clock: Yamada opens the door, the wall clock steps
        # two hours back (a bad NTP server), and the held-open alarm waits its 30 s.
        door.tap(YAMADA)
        door.keys("1#0#")
        [opened] = door.set_door(closed=False)
        clock.wall -= 2 * HOUR
        after_step = door.step()
        assert [r["type"] for r in after_step] == ["clock.changed"]
        assert after_step[0]["stepped_ms"] == -2 * HOUR
        assert parse_ts(after_step[0]["ts"]) < parse_ts(opened["ts"])  # ts ran back
        clock.advance(29)  # time passes: both clocks move
        assert [r["type"] for r in door.step()] == []
        clock.advance(2)
        assert [r["type"] for r in door.step()] == ["alarm.door_held_open"]
        door.set_door(closed=True)
        assert [r["type"] for r in door.tap(YAMADA, reader="exit")] == ["door.exit"]
        last_synced = door.d.call(lambda: door.d.journal.head()[0])
    finally:
        door.stop()

    # A restart without RTC: the clock is back in 1970 and not synchronised. Decisions
    # take the time as no earlier than what the synchronised clock last showed, so
    # Yamada's rights (from 2026-04-01) hold; the window-bound right is refused by the
    # policy; the records keep the raw clock and say it is not synchronised.
    clock.wall, clock.is_synced = 7_000, False
    clock.mono = 1_000_000_000
    door = Door(state, clock)
    try:
        assert door.tap(YAMADA) == []  # asked for a purpose, not refused
        [r] = door.keys("1#0#")
        assert (r["type"], r["clock_synced"], r["ts"][:4]) == ("door.granted", False, "1970")
        [r] = door.tap(SUZUKI)
        assert r["reason"] == "clock_untrusted"
        head = door.d.call(lambda: door.d.journal.head()[0])
    finally:
        door.stop()
    assert head > last_synced
    keys = load_keys(state)
    res = verify_journal(state / "journal.db", {keys.key_id: keys.public_key})
    assert res.ok, res.summary()  # seq order holds though ts ran back twice
