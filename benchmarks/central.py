"""Central ingest on PostgreSQL: records per second verified, committed and receipted, from
a fleet of devices with a backlog each, by one collector and by two on one MQTT shared
subscription (issue 14).

Floors measured in the same run: a bare PostgreSQL batch insert of the same rows (same
table shape, same batch size, one transaction a batch, fsync on), and the broker's own
QoS 1 throughput (one paho client, publish -> PUBACK, same payload size and window). The
target is one collector >= 0.5x the smaller floor. Also the CPU per 1,000 records of each
process (collectors, broker, PostgreSQL, the fleet), and from the measured rates, on paper,
how many collectors and broker nodes 1,000 doors need at their busiest minute. Rounds
alternate floors and ingest; the best of each is compared (this machine is shared).

Usage: python -m benchmarks.central [--devices N] [--per-device K] [--rounds R] [--quick]
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from edged.simulators.fleet import Fleet, FleetSettings
from edged.simulators.mosquitto import MosquittoHarness
from edged.simulators.postgres import PostgresHarness

from benchmarks.sync import cpu_seconds, device_cpu, raw_paho
from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker

BATCH = 512  # the collector's largest batch


def pg_floor(url: str, rows: list[tuple]) -> float:
    """Rows per second of a bare batch insert of the same rows, a transaction a batch."""
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS floor_records")
        c.execute(
            "CREATE TABLE floor_records (site TEXT, device TEXT, seq BIGINT, type TEXT,"
            " ts TEXT, hash TEXT NOT NULL, body TEXT NOT NULL, sig_checked INTEGER NOT NULL,"
            " PRIMARY KEY (site, device, seq))"
        )
        t0 = time.perf_counter()
        for i in range(0, len(rows), BATCH):
            with c.transaction(), c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO floor_records VALUES (%s,%s,%s,%s,%s,%s,%s,%s)",
                    rows[i : i + BATCH],
                )
        dt = time.perf_counter() - t0
        c.execute("DROP TABLE floor_records")
    return len(rows) / dt


def pg_cpu(pg: PostgresHarness) -> float:
    return cpu_seconds(pg.pid or 0)


class Ingest:
    """One run: a fresh database, ``n`` collector processes, the fleet draining."""

    def __init__(
        self, base: Path, pg: PostgresHarness, port: int, n: int, a: argparse.Namespace
    ) -> None:
        db = f"ingest_{base.name}"
        with psycopg.connect(pg.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {db}")
        url = pg.url.rsplit("/", 1)[0] + "/" + db
        key = init_role_key(base / "collector", "collector")
        fleet = Fleet(
            a.devices,
            Broker("127.0.0.1", port),
            key.public_key(),
            site="bench",
            settings=FleetSettings(rate=0, window=a.window, heartbeat_seconds=30),
        )
        for d in fleet.devices:
            for _ in range(a.per_device):
                d.append(
                    "door.granted",
                    {
                        "area": "handling",
                        "door": "main",
                        "person": "S1001",
                        "card": "fp1:" + "ab" * 16,
                    },
                )
        self.records = sum(len(d.records) for d in fleet.devices)
        self.size = len(fleet.devices[0].records[0].wire())
        fleet.write_trust(base / "trust")
        procs, logs = [], []
        for i in range(n):
            log = base / f"collector-{i}.log"
            logs.append(log)
            with open(log, "ab") as out:
                procs.append(
                    subprocess.Popen(
                        [
                            str(Path(sys.executable).with_name("edged")),
                            "collect",
                            "--broker",
                            f"127.0.0.1:{port}",
                            "--store",
                            url,
                            "--trust",
                            str(base / "trust"),
                            "--key",
                            str(base / "collector" / "collector_ed25519.key"),
                            "--share",
                            "bench",
                        ],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        for log in logs:  # subscribed: the clock starts at the fleet, not at Python's start
            while b"collector_connected" not in log.read_bytes():
                time.sleep(0.05)
        cpu0 = {
            "collectors": sum(cpu_seconds(p.pid) for p in procs),
            "broker": cpu_seconds(a.mq_pid),
            "postgres": pg_cpu(pg),
            "fleet": device_cpu(),
        }
        t0 = time.perf_counter()
        fleet.start()
        while not fleet.all_receipted():
            time.sleep(0.02)
            if time.perf_counter() - t0 > 900:
                break
        self.seconds = time.perf_counter() - t0
        # Each record's own signature is audited once the collectors are idle: report when
        # that is through too (the CPU figures include it).
        with psycopg.connect(url, autocommit=True) as c:
            while c.execute("SELECT 1 FROM records WHERE sig_checked = 0 LIMIT 1").fetchone():
                time.sleep(0.05)
                if time.perf_counter() - t0 > 900:
                    break
        self.audit_seconds = time.perf_counter() - t0
        self.cpu = {
            "collectors": sum(cpu_seconds(p.pid) for p in procs) - cpu0["collectors"],
            "broker": cpu_seconds(a.mq_pid) - cpu0["broker"],
            "postgres": pg_cpu(pg) - cpu0["postgres"],
            "fleet": device_cpu() - cpu0["fleet"],
        }
        fleet.stop()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        with psycopg.connect(url) as c:
            self.stored = len(c.execute("SELECT seq FROM records").fetchall())
            self.rows = c.execute(
                "SELECT site, device, seq, type, ts, hash, body, sig_checked FROM records"
            ).fetchall()
        self.rate = self.records / self.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--per-device", type=int, default=30)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--busiest", type=float, default=120.0, help="records per door per minute")
    ap.add_argument("--quick", action="store_true", help="a few samples: proves it runs (CI)")
    a = ap.parse_args()
    if a.quick:
        a.devices, a.per_device, a.rounds = 50, 20, 1
    base = Path(tempfile.mkdtemp())
    pg = PostgresHarness()
    pg.start()
    try:
        with MosquittoHarness(
            base / "mq", extra_config="max_queued_messages 100000\nmax_inflight_messages 1000\n"
        ) as mq:
            a.mq_pid = mq.pid or 0
            pg_floors, mq_floors, ones, twos = [], [], [], []
            for r in range(a.rounds):
                one = Ingest(base / f"r{r}one", pg, mq.port, 1, a)
                ones.append(one)
                twos.append(Ingest(base / f"r{r}two", pg, mq.port, 2, a))
                pg_floors.append(pg_floor(pg.url, one.rows))
                mq_floors.append(raw_paho(mq.port, one.records, one.size, 100))
    finally:
        pg.remove()
        shutil.rmtree(base, ignore_errors=True)  # the collectors' stores and logs
    best1, best2 = max(ones, key=lambda x: x.rate), max(twos, key=lambda x: x.rate)
    floor_pg, floor_mq = max(pg_floors), max(mq_floors)
    floor = min(floor_pg, floor_mq)
    n = best1.records
    print(
        f"central ingest of {n} records ({a.devices} devices x {a.per_device}, {best1.size}"
        f" bytes each) into PostgreSQL, best of {a.rounds} rounds"
    )
    print(
        f"  one collector   {best1.rate:9.0f} rec/s (verified, committed, receipted); all: "
        + ", ".join(f"{x.rate:.0f}" for x in ones)
    )
    print(
        f"  two collectors  {best2.rate:9.0f} rec/s (one shared subscription); all: "
        + ", ".join(f"{x.rate:.0f}" for x in twos)
    )
    print(
        f"  every record's own signature audited as well after {best1.audit_seconds:.1f} s"
        f" (one collector; ingest took {best1.seconds:.1f} s)"
    )
    print(
        f"  floor PostgreSQL batch insert {floor_pg:9.0f} rows/s (same rows, {BATCH} a"
        " transaction, fsync on); all: " + ", ".join(f"{x:.0f}" for x in pg_floors)
    )
    print(
        f"  floor broker QoS 1            {floor_mq:9.0f} msg/s (one paho client, publish ->"
        " PUBACK); all: " + ", ".join(f"{x:.0f}" for x in mq_floors)
    )
    print(f"  ratio one collector / smaller floor = {best1.rate / floor:.2f}  (target >= 0.5)")
    print(
        f"  ratio two collectors / one = {best2.rate / best1.rate:.2f}  ({os.cpu_count()} cores"
        " shared by collectors, broker, PostgreSQL and the fleet: a second collector adds"
        " little where the cores are already busy)"
    )
    for label, x in (("one collector", best1), ("two collectors", best2)):
        print(
            f"  CPU per 1,000 records, {label}: "
            + ", ".join(f"{k} {1000 * v / x.records * 1000:.0f} ms" for k, v in x.cpu.items())
        )
    need = 1000 * a.busiest / 60
    # Each record crosses the broker twice (in, and the receipt out is 1 per 250).
    print(
        f"  on paper, 1,000 doors at their busiest minute ({a.busiest:.0f} records a door):"
        f" {need:.0f} rec/s -> {math.ceil(need / best1.rate)} collector(s) at the measured"
        f" rate, {math.ceil(need / floor_mq)} broker node(s) at the measured QoS 1 rate;"
        " with headroom x2 for catch-up after an outage: "
        f"{math.ceil(2 * need / best1.rate)} collector(s), {math.ceil(2 * need / floor_mq)}"
        " broker node(s)"
    )
    ok = all(x.stored == x.records for x in (*ones, *twos))
    if not ok:
        print("  ERROR: not every record was stored")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
