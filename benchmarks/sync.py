"""Drain a journal backlog to the collector through Mosquitto (sync issue).

Prints the drain rate (records stored centrally per second, proven signed, stored once,
receipted) next to a floor measured in the same run on the same broker: a bare paho
client publishing the same number of messages of the same size at QoS 1 with the same
in-flight window (time until every PUBACK). Target: >= 0.5x. Floor and drain alternate
for a few rounds and the best of each is compared. Also: when the collector's idle-time
audit of every record's own signature is through, the CPU each process spent per 1,000
records, and the RSS of the device side (this process: sync agent + journal reader)
while draining; the collector runs as a separate `edged collect` process. All three
share this machine's cores, as they would not in the field.

Usage: python -m benchmarks.sync [--records N] [--window W] [--rounds R]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from edged.simulators.mosquitto import MosquittoHarness

from edged.clock import SystemClock
from edged.device.config import SyncConfig
from edged.device.journal import Journal
from edged.device.keys import init_keys, load_keys
from edged.device.sync.agent import SyncAgent
from edged.protocol.keys import init_role_key


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live children (the collector's verify
    workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def device_cpu() -> float:
    """This process alone (the broker and the collector are its children)."""
    t = os.times()
    return t.user + t.system


def raw_paho(port: int, n: int, size: int, window: int) -> float:
    done = threading.Event()
    acked = [0]
    # The same flow control the agent uses: at most `window` unacknowledged. (Handing paho
    # the whole backlog at once is quadratic in its queue handling.)
    slots = threading.Semaphore(window)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.max_inflight_messages_set(window)
    c.max_queued_messages_set(0)

    def on_publish(*_a: object) -> None:
        slots.release()
        acked[0] += 1
        if acked[0] == n:
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    payload = b"x" * size
    t0 = time.perf_counter()
    for i in range(n):
        slots.acquire()
        c.publish(f"edged/v1/bench/raw/event/{i % 8}", payload, qos=1)
    done.wait(600)
    dt = time.perf_counter() - t0
    c.loop_stop()
    c.disconnect()
    return n / dt


class Drain:
    """One drain of the backlog: a fresh copy of the device state, a fresh central
    database and its own `edged collect` process."""

    def __init__(self, base: Path, template: Path, port: int, a: argparse.Namespace) -> None:
        self.dir = base
        state = base / "state"
        shutil.copytree(template, state)
        self.head = 0
        with Journal(state / "journal.db", load_keys(state), SystemClock()) as j:
            self.head = j.head()[0]
        col = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("edged")),
                "collect",
                "--broker",
                f"127.0.0.1:{port}",
                "--db",
                str(base / "central.db"),
                "--trust",
                str(template.parent / "trust"),
                "--key",
                str(template.parent / "central" / "collector_ed25519.key"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Start the clock once the collector is subscribed: the figure is the drain rate,
        # not Python's start-up time (records published before that would only be resent).
        assert col.stdout is not None
        with open(base / "collector.log", "wb") as out:
            for line in col.stdout:
                out.write(line)
                if b"collector_connected" in line:
                    break
        copier = threading.Thread(
            target=shutil.copyfileobj,
            args=(col.stdout, open(base / "collector.log", "ab")),  # noqa: SIM115
            daemon=True,
        )
        copier.start()
        cfg = SyncConfig(
            host="127.0.0.1",
            port=port,
            collector_pubkey=template.parent / "central" / "collector_ed25519.pub",
            window=a.window,
            max_unreceipted=a.unreceipted,
            heartbeat_seconds=5,
        )
        self.rss0 = rss_kib()
        self.peak = self.rss0
        agent = SyncAgent(
            cfg,
            site="bench",
            device="bench-1",
            journal_path=state / "journal.db",
            state_dir=state,
            clock=SystemClock(),
            boot_id="bench",
            on_inbound=lambda *_: None,
        )
        cpu0 = {
            "device": device_cpu(),
            "broker": cpu_seconds(a.mq_pid),
            "collector": cpu_seconds(col.pid),
        }
        t0 = time.perf_counter()
        agent.start()
        tick = threading.Event()
        while not tick.wait(0.05):  # sample RSS while draining
            self.peak = max(self.peak, rss_kib())
            if agent.status()["acked_seq"] >= self.head or time.perf_counter() - t0 > 900:
                break
        self.seconds = time.perf_counter() - t0
        self.acked = agent.status()["acked_seq"]
        # The collector checks the own signature of every record its run's proof covered
        # once it is idle; report when that audit is through as well.
        audit = sqlite3.connect(f"file:{base / 'central.db'}?mode=ro", uri=True)
        while not tick.wait(0.05):
            if not audit.execute("SELECT 1 FROM records WHERE sig_checked = 0").fetchone():
                break
            if time.perf_counter() - t0 > 900:
                break
        self.audit_seconds = time.perf_counter() - t0
        audit.close()
        self.cpu = {
            "device": device_cpu() - cpu0["device"],
            "broker": cpu_seconds(a.mq_pid) - cpu0["broker"],
            "collector": cpu_seconds(col.pid) - cpu0["collector"],
        }
        agent.close()
        col.send_signal(signal.SIGTERM)
        col.wait(30)
        copier.join(10)
        with sqlite3.connect(base / "central.db") as c:
            self.stored = c.execute("SELECT count(*) FROM records").fetchone()[0]
        self.rate = self.head / self.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--window", type=int, default=100)
    ap.add_argument("--unreceipted", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=2, help="floor and drain, alternately")
    ap.add_argument("--quick", action="store_true", help="a few samples: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.records, a.rounds = 2000, 1
    base = Path(tempfile.mkdtemp())
    template, central, trust = base / "template", base / "central", base / "trust"
    init_keys(template)
    init_role_key(central, "collector")
    (trust / "bench").mkdir(parents=True)
    shutil.copy(template / "device_ed25519.pub", trust / "bench" / "bench-1.pub")
    with Journal(
        template / "journal.db", load_keys(template), SystemClock(), site="bench", device="bench-1"
    ) as j:
        batch = [
            (
                "door.granted",
                {
                    "area": "handling",
                    "door": "main",
                    "person": "S1001",
                    "card": "fp1:" + "ab" * 16,
                    "reason": "ok",
                },
            )
        ] * 1000
        for _ in range(a.records // 1000):
            j.append_many(batch)
        head = j.head()[0]
        size = len(next(j.records(head, head)).wire())
    # As docs/install.md advises for a central broker: room for the devices' unreceipted
    # records, so the pipeline is bounded by receipts, not by drops.
    with MosquittoHarness(base / "mq", extra_config="max_queued_messages 20000\n") as mq:
        a.mq_pid = mq.pid or 0
        # Alternate floor and drain, and keep the best of each: the machine's noise
        # then weighs on both sides alike.
        floors, drains = [], []
        for i in range(a.rounds):
            floors.append(raw_paho(mq.port, head, size, a.window))
            drains.append(Drain(base / f"round{i}", template, mq.port, a))
    raw_rate = max(floors)
    d = max(drains, key=lambda x: x.rate)
    print(
        f"sync drain of {head} records ({size} bytes each, window {a.window}),"
        f" best of {a.rounds}: {d.seconds:.1f} s, stored {d.stored}, receipted up to {d.acked}"
    )
    print(
        f"  edged drain     {d.rate:9.0f} rec/s (device -> broker -> collector, verified,"
        " stored, receipted); all rounds: " + ", ".join(f"{x.rate:.0f}" for x in drains)
    )
    print(f"  every record's own signature checked as well after {d.audit_seconds:.1f} s")
    print(
        f"  floor raw paho  {raw_rate:9.0f} msg/s (QoS 1 publish -> PUBACK, same broker);"
        " all rounds: " + ", ".join(f"{x:.0f}" for x in floors)
    )
    print(f"  ratio = {d.rate / raw_rate:.2f}  (target >= 0.5)")
    print(
        "  CPU per 1,000 records: "
        + ", ".join(f"{k} {1000 * v / head * 1000:.0f} ms" for k, v in d.cpu.items())
        + f" ({os.cpu_count()} cores; collector includes its audit)"
    )
    print(f"  device RSS while draining: {d.rss0 // 1024} MiB before, peak {d.peak // 1024} MiB")
    return 0 if all(x.stored == head for x in drains) else 1


if __name__ == "__main__":
    sys.exit(main())
