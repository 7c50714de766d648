"""Decision latency: a card event entering the core -> relay driven, record committed.

The daemon runs in this process on simulated hardware (MockFactory relay pin watched
directly); each grant is a signed, fsynced journal record committed before the relay
moves. Printed next to the floor measured in the same run: one raw SQLite single-row
commit (same pragmas) plus one Ed25519 signature. Target: p99 <= 1.5x the floor.

Usage: python -m benchmarks.decision [--taps N]   (needs pcscd + vsmartcard-vpcd)
"""

from __future__ import annotations

import argparse
import queue
import shutil
import statistics
import sys
import tempfile
import threading
import time
import tomllib
from functools import partial
from pathlib import Path

from benchmarks.journal import pct
from edged.core.events import CardPresented, DoorContact
from edged.device.acl import AccessList, Person, save_active
from edged.device.config import parse_config
from edged.device.daemon import Daemon
from edged.device.journal.schema import connect
from edged.device.keys import init_keys, load_keys
from edged.device.observers import Processed
from edged.log import configure_logging
from edged.protocol.privacy import CardFingerprinter

CONFIG = """
site = "bench"
device = "bench-1"
[areas.office]
kind = "handling"
[readers.entry]
pcsc_name = "edged-sim entry"
[readers.exit]
pcsc_name = "edged-sim exit"
[doors.main]
area = "office"
entry_reader = "entry"
exit_reader = "exit"
relay_pin = 17
contact_pin = 27
"""


def reached(p: Processed, n: int) -> bool:
    """The daemon has handled its n-th event."""
    return p.n >= n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--taps", type=int, default=500)
    ap.add_argument("--quick", action="store_true", help="a few samples: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.taps = 20
    base = Path(tempfile.mkdtemp())
    try:
        return _run(a, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)  # a run leaves nothing behind


def _run(a: argparse.Namespace, base: Path) -> int:
    state = base / "state"
    cfg_path = base / "edged.toml"
    cfg_path.write_text(CONFIG)
    cfg = parse_config(tomllib.loads(CONFIG), cfg_path, state_dir=state)
    keys = init_keys(state)
    fp = CardFingerprinter(keys.fingerprint_secret)
    card = fp.fingerprint(bytes.fromhex("012E4CD9A1B2C3D4"))
    import datetime as dt

    today = dt.date.today()
    p = Person(
        "S1",
        "Bench",
        "staff",
        (card,),
        frozenset({"office"}),
        today - dt.timedelta(days=1),
        today + dt.timedelta(days=300),
    )
    save_active(state, AccessList(1, "bench", fp.key_id, {"S1": p}))

    # Logs as in production (JSON lines), to a file so the terminal is not the bottleneck,
    # and so that a daemon that cannot start says why.
    log_path = base / "daemon.log"
    configure_logging(open(log_path, "a"), json=True)  # noqa: SIM115
    floor_db = connect(base / "raw.db")
    floor_db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    dkeys = load_keys(state)
    floor: list[float] = []

    def floor_sample(i: int) -> None:
        # Interleaved with the grants, so both see the same disk and the same machine load.
        t0 = time.perf_counter_ns()
        dkeys.sign(b"x" * 32)
        floor_db.execute("BEGIN IMMEDIATE")
        floor_db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 280))
        floor_db.execute("COMMIT")
        floor.append((time.perf_counter_ns() - t0) / 1e3)

    d = Daemon(cfg, simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    while not (d.running.wait(0.1) or d.stopped.is_set()):
        pass
    if not d.running.is_set():
        lines = log_path.read_text(errors="replace").splitlines()
        why = [ln for ln in lines if '"error"' in ln or "failed" in ln][-3:] or lines[-3:]
        print("decision benchmark: the daemon on simulated hardware did not start (another"
              " pcscd running? the tests and benchmarks each start their own):", file=sys.stderr)
        for ln in why:
            print("  " + ln, file=sys.stderr)
        return 2
    energised: queue.Queue[int] = queue.Queue()

    def on_relay(level: bool) -> None:
        if level:
            energised.put(time.perf_counter_ns())

    d.rig.gpio.watch_relay("main", on_relay)
    lat = []
    try:
        for i in range(a.taps):
            floor_sample(i)
            t0 = time.perf_counter_ns()
            d.queue.put(CardPresented(reader="entry", card=card, kind="felica"))
            t1 = energised.get(timeout=10)
            lat.append((t1 - t0) / 1e3)
            # Through the door, out again, door shut: the next tap is a fresh entry.
            before = d.observers.processed_count
            for ev in (
                DoorContact(door="main", closed=False),
                DoorContact(door="main", closed=True),
                CardPresented(reader="exit", card=card, kind="felica"),
                DoorContact(door="main", closed=False),
                DoorContact(door="main", closed=True),
            ):
                d.queue.put(ev)
            while d.observers.wait_processed(partial(reached, n=before + 5), after=before) is None:
                pass
            while not energised.empty():
                energised.get()
    finally:
        d.request_stop()
        t.join(30)
    print(f"decision latency ({a.taps} grants: card event -> record committed -> relay)")
    print(f"  edged            p50 {statistics.median(lat):8.0f} us  p99 {pct(lat, 99):8.0f} us")
    print(
        f"  floor commit+sig p50 {statistics.median(floor):8.0f} us  p99 {pct(floor, 99):8.0f} us"
    )
    ratio = pct(lat, 99) / pct(floor, 99)
    print(
        f"  ratio p99 = {ratio:.2f}  (target <= 1.5)   p50 = "
        f"{statistics.median(lat) / statistics.median(floor):.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
