"""Storage that fails under the journal: a full disk, failing writes (EIO) and a file
system the kernel turned read-only (R9, R10, R14, R15, Invariant 4).

The state directory lives on a real ext4 file system in a loop-mounted image, broken the
way storage breaks: filled to the last byte, shut down (every I/O then fails with EIO, as
a dying SD card does), or forced read-only by an error (errors=remount-ro). The daemon
must deny the entries it cannot record (relay untouched), keep the exit working, raise
the alarm on every channel it still has (red LED and buzzer; a signed MQTT alarm that the
collector records; the heartbeat's journal_ok), keep answering status, and once the
storage is back, record first what it could not (alarm.journal_unavailable, with the
count), then the next entry, with no seq gap.

A shut-down or emergency read-only ext4 stays so until it is unmounted: the repair
detaches it, checks the image with e2fsck and mounts it again (a new loop device, as a
new card would be); the daemon, which opens its files again after a storage fault,
carries on in the same process.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edged.core.events import CardPresented, ExitButton, KeypadKey
from edged.device.journal import verify_journal
from edged.device.keys import load_keys
from edged.protocol import topics
from edged.protocol.privacy import CardFingerprinter
from tests.conftest import enrol, require_pcscd
from tests.helpers.central import held
from tests.helpers.schemas import validators
from tests.helpers.site import Running, Site

pytestmark = pytest.mark.system

ROOT = Path(__file__).parents[2]
SITE, DEVICE = "tokyo-hq", "door-3f-1"
EXT4_IOC_SHUTDOWN = 0x8004587D  # _IOR('X', 125, __u32)
NOLOGFLUSH = 2


def run(*cmd: str, ok: tuple[int, ...] = (0,)) -> str:
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode not in ok:
        pytest.fail(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}")
    return p.stdout


class Disk:
    """A 32 MiB ext4 image mounted on ``mnt`` (errors=remount-ro), and ways to break it."""

    def __init__(self, tmp: Path) -> None:
        self.image = tmp / "disk.img"
        self.mnt = tmp / "disk"
        self.mnt.mkdir()
        with open(self.image, "wb") as f:
            f.truncate(32 << 20)
        run("mkfs.ext4", "-q", "-F", str(self.image))
        self.mount()

    def mount(self) -> None:
        # A loop device of its own each time: mount's "-o loop" would reuse the one still
        # held by the broken mount, and with it the broken superblock.
        dev = run("losetup", "-f", "--show", str(self.image)).strip()
        run("mount", "-o", "errors=remount-ro", dev, str(self.mnt))

    def device(self) -> str:
        return run("findmnt", "-n", "-o", "SOURCE", str(self.mnt)).strip()

    def fill(self) -> Path:
        """Write until the file system is full, to the last byte."""
        path = self.mnt / "filler"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for chunk in (1 << 20, 4096, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError:
                    continue
        finally:
            os.close(fd)
        return path

    def shut_down(self) -> None:
        """Every later read and write fails with EIO (the ioctl xfstests uses)."""
        fd = os.open(self.mnt, os.O_RDONLY)
        try:
            fcntl.ioctl(fd, EXT4_IOC_SHUTDOWN, struct.pack("I", NOLOGFLUSH))
        finally:
            os.close(fd)

    def error_read_only(self) -> None:
        """An ext4 error: with errors=remount-ro the kernel makes the file system
        read-only at once, open files and all."""
        name = Path(self.device()).name
        Path(f"/sys/fs/ext4/{name}/trigger_fs_error").write_text("1")

    def repair(self) -> None:
        """Detach the broken mount, check the image, mount it afresh."""
        run("umount", "-l", str(self.mnt))
        run("e2fsck", "-f", "-y", str(self.image), ok=(0, 1, 2))
        self.mount()

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True)
        for line in run("losetup", "-j", str(self.image)).splitlines():
            subprocess.run(["losetup", "-d", line.split(":", 1)[0]], capture_output=True)


@pytest.fixture
def disk(tmp_path):
    for tool in ("mkfs.ext4", "e2fsck", "losetup", "findmnt"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing (e2fsprogs, util-linux)")
    d = Disk(tmp_path)
    yield d
    d.close()


WATCHED = {"heartbeat": "heartbeat", "alarm/journal.unavailable": "device-alarm"}  # -> schema


class Watch:
    """The device's heartbeats and its out-of-band alarms, as they arrive, each checked
    against its JSON Schema in docs/schemas."""

    def __init__(self, port: int) -> None:
        self.schemas = validators()
        self.seen: dict[str, list[dict]] = {leaf: [] for leaf in WATCHED}
        self.q: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = lambda _c, _u, m: self.q.put(
            (topics.parse(m.topic)[2], json.loads(m.payload))
        )
        self.c.connect("127.0.0.1", port)
        self.c.subscribe([(topics.leaf(SITE, DEVICE, leaf), 1) for leaf in WATCHED])
        self.c.loop_start()

    def until(self, leaf: str, pred) -> dict:
        """The next message on ``leaf`` that satisfies ``pred`` (those on ``leaf`` before it
        are passed over), waiting for it if need be; every message read is checked
        against its schema."""
        mine = self.seen[leaf]
        while True:
            while mine:
                doc = mine.pop(0)
                if pred(doc):
                    return doc
            got, doc = self.q.get(timeout=20)
            errors = list(self.schemas[WATCHED[got]].iter_errors(doc))
            assert not errors, f"{got}: {errors[0].message}"
            self.seen[got].append(doc)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.mark.parametrize("fault", ["full", "eio", "read-only"])
def test_storage_fault_denies_alarms_everywhere_and_recovers(
    fault, disk, tmp_path, mosquitto, monkeypatch
):
    """R9, R10, R14, R15: the entry that cannot be recorded is refused, the exit opens, the
    alarm reaches the LED, the buzzer, the collector, the heartbeat and systemd's status
    line (with the watchdog still fed); after the repair the gap is recorded with its
    count and the same card is let in, with no seq gap."""
    require_pcscd()
    # systemd's side of Type=notify with WatchdogSec: a datagram socket of our own.
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")  # a ping every 0.1 s
    state = disk.mnt / "state"
    enrol(state)
    site = Site(tmp_path, mosquitto.port, state=state)
    col = site.collector()
    beats = Watch(mosquitto.port)
    run = Running(site.cfg())
    d = run.d
    card = CardFingerprinter(load_keys(state).fingerprint_secret).fingerprint(
        bytes.fromhex("012E4CD9A1B2C3D4")
    )
    gpio = d.rig.gpio

    def step(*events):
        before = d.observers.processed_count
        for ev in events:
            d.queue.put(ev)
        assert d.observers.wait_processed(lambda p: p.n >= before + len(events), after=before)

    entry = [
        CardPresented(reader="entry", card=card, kind="felica"),
        *(KeypadKey(keypad="main", key=k) for k in "1#0#"),
    ]
    try:
        assert d.sync.connected_event.wait(10)
        beats.until("heartbeat", lambda b: b["journal_ok"])
        filler = None
        if fault == "full":
            filler = disk.fill()
        elif fault == "eio":
            disk.shut_down()
        else:
            disk.error_read_only()

        step(*entry)
        assert gpio.relay_levels("main") == []  # not recorded: not opened
        st = d.call(d.snapshot)
        assert st["hardware"]["indicators"]["red"] == "on"
        assert st["hardware"]["indicators"]["buzzer"] == "on"
        assert st["core"]["occupancy"]["handling"] == []  # the grant did not happen
        assert st["journal"]["ok"] is False
        assert st["journal"]["fault"]["unrecorded"] >= 1
        # The channels that do not need the journal.
        while True:  # the watchdog is still fed, and the status line says why
            msg = notify.recv(4096).decode()
            if "WATCHDOG=1" in msg and "JOURNAL DOWN" in msg:
                break
        beat = beats.until("heartbeat", lambda b: not b["journal_ok"])
        alarm = beats.until("alarm/journal.unavailable", lambda a: True)
        assert alarm["unrecorded"] >= 1 and alarm["site"] == SITE
        assert beat["unrecorded"] >= 1 and beat["journal_error"]
        assert col.wait_for(lambda: any(a[0] == "journal_unavailable" for a in held(col).alarms()))
        step(ExitButton(door="main"))
        assert gpio.relay_levels("main") == [True]  # exit is never blocked
        gpio.set_door("main", closed=False)
        gpio.set_door("main", closed=True)
        step()  # the door events are handled (and refused by the journal)
        lost = d.call(lambda: d.journal_fault["unrecorded"])

        if filler is not None:
            filler.unlink()
        else:
            disk.repair()
        before = len(gpio.relay_levels("main"))
        mark = d.observers.processed_count
        step(*entry)  # storage is back: the gap is recorded, then the same card let in
        written = d.observers.records_since(mark)
        assert [r["type"] for r in written] == ["alarm.journal_unavailable", "door.granted"]
        assert written[0]["unrecorded"] == lost
        assert gpio.relay_levels("main")[before:] == [True]
        assert d.call(d.snapshot)["core"]["occupancy"]["handling"] == ["S1001"]
        assert d.call(d.snapshot)["journal"]["ok"] is True
        beats.until("heartbeat", lambda b: b["journal_ok"])
        head = d.call(lambda: d.journal.head()[0])
        assert col.wait_for(lambda: held(col).seqs(SITE, DEVICE) == list(range(1, head + 1)))
    finally:
        run.stop()
        beats.close()
        col.close()
        notify.close()
    assert not run.t.is_alive()
    keys = load_keys(state)
    res = verify_journal(state / "journal.db", {keys.key_id: keys.public_key})
    assert res.ok, res.summary()
