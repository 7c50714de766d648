"""The central side at scale: a real PostgreSQL, a real Mosquitto, several collectors (real
processes) on one MQTT shared subscription, and a fleet of simulated devices with their
own keys and journals. Collectors and the broker are killed mid-stream; every record must
be stored exactly once, in order per device, and a receipt must only ever cover what was
committed (R9, R10, R13)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import psycopg
import pytest
from edged.simulators.fleet import Fleet, FleetSettings
from edged.simulators.mosquitto import MosquittoHarness

from edged.protocol.keys import init_role_key
from edged.protocol.mqtt import Broker
from tests.conftest import EDGED, size
from tests.helpers.central import CollectorProc, wait_until

pytestmark = pytest.mark.system

DEVICES = int(os.environ.get("EDGED_FLEET_DEVICES", size("fleet_devices")))
BROKER_CONFIG = "max_queued_messages 100000\nmax_inflight_messages 100\n"


def stored(url: str) -> dict[str, list[tuple[int, str]]]:
    with psycopg.connect(url) as c:
        rows = c.execute("SELECT device, seq, hash FROM records ORDER BY device, seq").fetchall()
    out: dict[str, list[tuple[int, str]]] = {}
    for device, seq, h in rows:
        out.setdefault(device, []).append((seq, h))
    return out


def heads(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        return dict(c.execute("SELECT device, last_seq FROM devices").fetchall())


def test_collectors_share_the_load_and_lose_nothing_when_killed(tmp_path, postgres):
    """R9, R10, R13: three collectors on one shared subscription and one PostgreSQL; one
    collector is killed twice and the broker once while 200 devices send; afterwards
    every device's records are stored exactly once, seq 1..N, with the hashes its journal
    holds, nothing is left waiting, and at each kill every receipted record was already
    committed."""
    key = init_role_key(tmp_path / "collector", "collector")
    with MosquittoHarness(tmp_path / "mq", extra_config=BROKER_CONFIG) as broker:
        fleet = Fleet(
            DEVICES,
            Broker("127.0.0.1", broker.port),
            key.public_key(),
            settings=FleetSettings(rate=300, burst=200, burst_every=3, heartbeat_seconds=2),
        )
        fleet.write_trust(tmp_path / "trust")
        collectors = [
            CollectorProc(tmp_path, i, postgres.url, broker.port, "edged", "--report-every", "0.5")
            for i in range(3)
        ]
        for c in collectors:
            c.start()
        fleet.start()
        try:
            fleet.generate(True)
            wait_until(lambda: fleet.totals()[1] > 500, 60, "first receipts")
            # The load is shared: with all three subscribed and records flowing, each one
            # stores some (its progress lines say so, and they survive a kill).
            wait_until(lambda: all(stored_by(c) > 0 for c in collectors), 60, "each stores")

            def committed_covers_receipts() -> None:
                acked = {d.device: d.acked for d in fleet.devices}
                held = heads(postgres.url)
                short = {k: (v, held.get(k, 0)) for k, v in acked.items() if held.get(k, 0) < v}
                assert not short, f"receipted but not committed: {list(short.items())[:5]}"

            collectors[0].kill()
            committed_covers_receipts()
            wait_until(lambda: fleet.totals()[1] > 1500, 60, "receipts with one collector down")
            collectors[0].start()
            broker.kill()
            committed_covers_receipts()
            broker.start()
            wait_until(lambda: fleet.totals()[1] > 2500, 90, "receipts after the broker")
            collectors[1].kill()
            committed_covers_receipts()
            collectors[1].start()
            fleet.restart(fleet.devices[0].device)
            time.sleep(1)  # keep writing through the restarts for a moment (a load, not a wait)
            fleet.generate(False)
            wait_until(fleet.all_receipted, 180, "every record receipted", every=0.5)
        finally:
            fleet.stop()
            for c in collectors:
                c.stop()
    got = stored(postgres.url)
    written = 0
    for d in fleet.devices:
        want = [(r.seq, r.hash) for r in d.records]
        written += len(want)
        assert got.get(d.device, []) == want, d.device
    assert written >= 2500, written
    with psycopg.connect(postgres.url) as c:
        left = c.execute(
            "SELECT p.device, p.seq, d.last_seq FROM pending p JOIN devices d"
            " ON p.site = d.site AND p.device = d.device"
        ).fetchall()
        assert not left, left
        bad = c.execute(
            "SELECT type, detail FROM alarms WHERE type IN"
            " ('rewrite', 'bad_record', 'rollback', 'bad_signature', 'wrong_origin')"
        ).fetchall()
        assert not bad, bad
    logs = [c.log.read_text() for c in collectors]
    assert not any("Traceback" in x for x in logs)
    # Each collector's last incarnation stopped cleanly (the killed ones wrote nothing).
    stops = [json.loads(ln) for x in logs for ln in x.splitlines() if "collector_stopped" in ln]
    assert len(stops) == 3, stops


def stored_by(c: CollectorProc) -> int:
    """The most that any incarnation of collector ``c`` says it stored, from its progress
    and stop lines (a killed one writes no stop line, but its progress lines stay)."""
    lines = [json.loads(ln) for ln in c.log.read_text().splitlines()
             if '"collector_progress"' in ln or '"collector_stopped"' in ln]  # fmt: skip
    return max((ln["stored"] for ln in lines), default=0)


def test_sites_shard_the_company_between_collector_groups(tmp_path, postgres):
    """R13 at scale: two collector groups on one PostgreSQL, each taking its own sites
    (--sites); every record of both sites stored once, each group stored only its own."""
    key = init_role_key(tmp_path / "collector", "collector")
    with MosquittoHarness(tmp_path / "mq", extra_config=BROKER_CONFIG) as broker:
        fleets = [
            Fleet(40, Broker("127.0.0.1", broker.port), key.public_key(), site=s, seed=i)
            for i, s in enumerate(("osaka", "tokyo"))
        ]
        for f in fleets:
            f.write_trust(tmp_path / "trust")
        groups = [
            CollectorProc(tmp_path, i, postgres.url, broker.port, None, "--sites", s)
            for i, s in enumerate(("osaka", "tokyo"))
        ]
        for c in groups:
            c.start()
        try:
            for f in fleets:
                f.start()
                f.generate(True)
            wait_until(lambda: all(f.totals()[0] > 300 for f in fleets), 60, "records written")
            for f in fleets:
                f.generate(False)
            wait_until(lambda: all(f.all_receipted() for f in fleets), 60, "all receipted")
        finally:
            for f in fleets:
                f.stop()
            for c in groups:
                c.stop()
    with psycopg.connect(postgres.url) as c:
        got = dict(c.execute("SELECT site, count(*) FROM records GROUP BY site").fetchall())
    want = {f.devices[0].site: f.totals()[0] for f in fleets}
    assert got == want, (got, want)
    stops = [
        json.loads(ln)
        for c in groups
        for ln in c.log.read_text().splitlines()
        if "collector_stopped" in ln
    ]
    assert [s["stored"] for s in stops] == [want["osaka"], want["tokyo"]], stops


def test_the_fleet_command_drives_a_collector(tmp_path, postgres):
    """`edged sim fleet` as a person runs it: N devices with their keys written for the
    collector, records at a rate, a restart on request, a line of progress; everything
    it wrote is stored."""
    init_role_key(tmp_path / "collector", "collector")
    with MosquittoHarness(tmp_path / "mq", extra_config=BROKER_CONFIG) as broker:
        col = CollectorProc(tmp_path, 0, postgres.url, broker.port, None)
        args = [
            EDGED, "sim", "fleet", "--devices", "30", "--broker", f"127.0.0.1:{broker.port}",
            "--rate", "100", "--burst", "50", "--burst-every", "1", "--restart-every", "1",
            "--seconds", "4", "--report-every", "1",
            "--collector-pubkey", str(tmp_path / "collector" / "collector_ed25519.pub"),
            "--trust-out", str(tmp_path / "trust"),
        ]  # fmt: skip
        fleet = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert fleet.stdout is not None
        first = fleet.stdout.readline()
        assert "30 device keys in" in first, first
        col.start()  # the keys are there now
        out, _ = fleet.communicate(timeout=60)
        col.stop()
    assert fleet.returncode == 0, out
    lines = [ln for ln in out.splitlines() if ln.startswith("fleet: ") and "written" in ln]
    assert any("30/30 connected" in ln for ln in lines), out
    # The closing line comes after the fleet waited for every receipt: exact counts (the
    # test once allowed "the last second" of records to be missing, a guess at speed).
    done = lines[-1]
    assert done.startswith("fleet: done: "), out
    written, receipted = (int(w) for w in re.findall(r"(\d+) (?:written|receipted)", done))
    with psycopg.connect(postgres.url) as c:
        stored = c.execute("SELECT count(*) FROM records").fetchone()[0]
        restarts = c.execute(
            "SELECT count(*) FROM records WHERE type = 'daemon.started'"
        ).fetchone()[0]
    assert written > 200 and stored == written == receipted, (stored, written, receipted)
    assert restarts >= 2, restarts
