"""A full disk under the journal: deny what cannot be recorded, exit still works, the
failure is signalled, and everything recovers when space returns (R14, Invariant 4)."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest

from edged.config import load_config
from edged.daemon import Daemon
from edged.events import CardPresented, ExitButton, KeypadKey
from edged.journal import verify_journal
from edged.keys import load_keys
from edged.privacy import CardFingerprinter
from tests.conftest import enrol, require_pcscd

ROOT = Path(__file__).parent.parent


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.fail(f"cannot mount a small tmpfs for the disk-full test: {r.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(path: Path) -> None:
    """Write until the file system is full, to the last byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for chunk in (65536, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                continue
    finally:
        os.close(fd)


def test_disk_full_denies_keeps_exit_and_recovers(small_disk):
    require_pcscd()
    state = small_disk / "state"
    cfg = load_config(ROOT / "config" / "edged.toml", state_dir=state)
    enrol(state)
    d = Daemon(cfg, simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    while not (d.running.wait(0.1) or d.stopped.is_set()):
        pass
    assert d.running.is_set()
    card = CardFingerprinter(load_keys(state).fingerprint_secret).fingerprint(
        bytes.fromhex("012E4CD9A1B2C3D4")
    )
    gpio = d.rig.gpio

    def step(*events):
        before = d.processed_count
        for ev in events:
            d.queue.put(ev)
        assert d.wait_processed(lambda p: p.n >= before + len(events), after=before)

    entry = [
        CardPresented(reader="entry", card=card, kind="felica"),
        *(KeypadKey(keypad="main", key=k) for k in "1#0#"),
    ]
    try:
        filler = small_disk / "filler"
        fill(filler)
        step(*entry)
        assert gpio.relay_levels("main") == []  # not recorded: not opened
        st = d.call(d.snapshot)
        assert st["hardware"]["indicators"]["red"] == "on"
        assert st["core"]["occupancy"]["handling"] == []  # the grant did not happen
        step(ExitButton(door="main"))
        assert gpio.relay_levels("main") == [True]  # exit is never blocked
        gpio.set_door("main", closed=False)
        gpio.set_door("main", closed=True)
        step()  # the door events are handled
        os.unlink(filler)
        before = len(gpio.relay_levels("main"))
        mark = d.processed_count
        step(*entry)  # space is back: the same card is let in and recorded
        assert [r["type"] for r in d.records_since(mark)] == ["door.granted"]
        assert gpio.relay_levels("main")[before:] == [True]
        assert d.call(d.snapshot)["core"]["occupancy"]["handling"] == ["S1001"]
    finally:
        d.request_stop()
        t.join(30)
    keys = load_keys(state)
    res = verify_journal(state / "journal.db", {keys.key_id: keys.public_key})
    assert res.ok, res.summary()
