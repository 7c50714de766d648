"""The daemon in this process, so the relay pin itself can be watched (Invariant 2, R14)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from edged.core.events import ExitButton
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.keys import init_keys
from tests.conftest import require_pcscd

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "config" / "edged.toml"


def start(cfg) -> tuple[Daemon, threading.Thread]:
    """The daemon on its own thread, once it is ready (or has given up)."""
    d = Daemon(cfg, simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    for _ in range(300):  # until ready, or until it has given up
        if d.running.wait(0.1) or d.stopped.is_set():
            break
    assert d.running.is_set(), "daemon did not start (see its log above)"
    return d, t


@pytest.fixture
def running(tmp_path):
    require_pcscd()
    cfg = load_config(EXAMPLE, state_dir=tmp_path / "state")
    init_keys(cfg.state_dir)
    seen: list[tuple[bool, str | None]] = []
    d, t = start(cfg)
    yield d, seen, t
    d.request_stop()
    t.join(30)


def last_type(db: Path) -> str | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT type FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def test_relay_moves_only_after_its_record_is_committed(running):
    """Invariant 2: at the instant the relay is energised, the reason is already on disk."""
    d, seen, t = running
    gpio = d.rig.gpio
    assert gpio.relay_levels("main") == []  # start-up never touched the relay (R14)
    db = d.state_dir / "journal.db"
    gpio.watch_relay("main", lambda level: seen.append((level, last_type(db))))
    before = d.observers.processed_count
    gpio.press_exit("main")
    assert d.observers.wait_processed(lambda p: isinstance(p.event, ExitButton), after=before)
    assert seen == [(True, "door.exit_request")]
    gpio.set_door("main", closed=False)
    gpio.set_door("main", closed=True)
    assert d.observers.wait_processed(
        lambda p: any(r["type"] == "door.closed" for r in p.records), after=before
    )
    assert seen[-1] == (False, "door.closed")
    d.request_stop()
    t.join(30)
    # Stopping released nothing: the only energised level is the one for the exit.
    assert gpio.relay_levels("main") == [True, False]


def test_journal_failure_never_blocks_exit(running):
    """Invariant 4: with the journal unwritable, the exit button still opens the door."""
    d, _seen, _t = running
    blocker = sqlite3.connect(d.state_dir / "journal.db", timeout=0)
    d.call(lambda: d.journal.conn.execute("PRAGMA busy_timeout=0"))
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock: appends fail
    try:
        before = d.observers.processed_count
        d.rig.gpio.press_exit("main")
        assert d.observers.wait_processed(lambda p: isinstance(p.event, ExitButton), after=before)
        assert d.rig.gpio.relay_levels("main") == [True]
        st = d.call(d.snapshot)
        assert st["hardware"]["indicators"]["red"] == "on"  # the failure is signalled
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_hardware_path_builds_every_configured_device(tmp_path):
    """The non-simulated start-up path: drivers chosen from the config by name (gpiozero's
    mock pin factory stands in for the Pi's GPIO chip; pcscd is real)."""
    from dataclasses import replace

    require_pcscd()
    from edged.simulators.pcscd import PcscdHarness, pcsc_reader_name, reader_ports

    cfg = load_config(EXAMPLE, state_dir=tmp_path / "state")
    readers = {n: replace(r, pcsc_name=pcsc_reader_name(n)) for n, r in cfg.readers.items()}
    keypads = {
        n: replace(k, backend="sim") if k.backend == "evdev" else k for n, k in cfg.keypads.items()
    }
    # No I2C bus here: the LCD's place is taken by the simulated display, chosen by name.
    displays = {n: replace(d, backend="sim") for n, d in cfg.displays.items()}
    cfg = replace(
        cfg, gpio=replace(cfg.gpio, backend="mock"), readers=readers, keypads=keypads,
        displays=displays,
    )  # fmt: skip
    init_keys(cfg.state_dir)
    with PcscdHarness(tmp_path / "pcscd", reader_ports(cfg.readers)):
        d = Daemon(cfg, control_socket=False)
        t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
        t.start()
        for _ in range(300):
            if d.running.wait(0.1) or d.stopped.is_set():
                break
        assert d.running.is_set()
        names = sorted(type(x).__name__ for x in d.devices)
        assert names == [
            "GpioCabinets",
            "GpioDoors",
            "GpioIndicators",
            "MatrixKeypad",
            "PcscCardReader",
            "SimDisplay",
            "SimKeypad",
        ]
        assert d.rig is None and sorted(d.card_reader.online) == sorted(cfg.readers)
        d.request_stop()
        t.join(30)
    assert d.stopped.is_set()


def test_an_upgrade_or_a_changed_config_is_a_record(tmp_path, monkeypatch):
    """R22: every start records the running version and configuration hash; when either
    differs from the last start's, a system.changed record says from what to what (and
    goes to the central copy with every other record). An unchanged restart says none."""
    require_pcscd()
    config = tmp_path / "edged.toml"
    config.write_text(EXAMPLE.read_text())
    state = tmp_path / "state"
    init_keys(state)

    def start_records() -> list[dict]:
        d, t = start(load_config(config, state_dir=state))
        recs = d.observers.records_since(0)
        d.request_stop()
        t.join(30)
        return [r for r in recs if r["type"] in ("daemon.started", "system.changed")]

    first = start_records()
    assert [r["type"] for r in first] == ["daemon.started"]
    assert [r["type"] for r in start_records()] == ["daemon.started"]  # nothing changed
    config.write_text(config.read_text() + "\n# edited by an administrator\n")
    monkeypatch.setattr("edged.device.history.__version__", "9.9.9")
    changed, started = start_records()
    assert changed["type"] == "system.changed"
    assert changed["changed"]["version"] == {"was": first[0]["version"], "now": "9.9.9"}
    cfg = changed["changed"]["config_sha256"]
    assert cfg["was"] == first[0]["config_sha256"] and cfg["now"] == started["config_sha256"]
    assert cfg["was"] != cfg["now"]
