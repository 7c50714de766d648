"""Central retention: records are kept for the set period, then removed as a logged act
(per device: seqs, count, hash of the last one); on PostgreSQL whole months go as
partitions. The append-only guard is back afterwards and (site, device, seq) stays unique
across partitions (R9, R20)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice

from edged.central.collector import Collector
from edged.central.store import open_store
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker
from tests.conftest import EDGED

pytestmark = pytest.mark.integration

OLD = int(dt.datetime(2024, 1, 15, tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_spec(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "central.db")
    return request.getfixturevalue("postgres").url


def test_records_past_the_keeping_period_are_removed_and_logged(tmp_path, store_spec):
    """R20: five records of January 2024 and five of today; retention of a year removes
    the five old ones (their month's partition on PostgreSQL), logs seqs 1..5 with the
    hash of seq 5, keeps seqs 6..10, and the store refuses deletions again. R25: on
    SQLite no readable copy of the removed records stays in the files."""
    key = init_role_key(tmp_path / "collector", "collector")
    d = FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate())
    (tmp_path / "trust" / "tokyo").mkdir(parents=True)
    (tmp_path / "trust" / "tokyo" / "door-1.pub").write_text(public_key_pem(d.key.public_key()))
    for i in range(5):
        d.append("door.opened", {"door": "main", "note": f"GONE{i:04d}"}, wall_ms=OLD + i * 1000)
    for _ in range(5):
        d.append("door.opened", {"door": "main"})
    store = open_store(store_spec)
    store.prepare_months(OLD)  # PostgreSQL: January 2024 has its own partition
    col = Collector(Broker("127.0.0.1", 1), store, tmp_path / "trust", key)  # never connects
    col.ingest_batch([(d.site, d.device, r.wire()) for r in d.records])
    col.close()

    p = subprocess.run(
        [EDGED, "retention", "--store", store_spec, "--keep-days", "365"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr
    assert "tokyo/door-1: removed seqs 1..5 (5 records" in p.stdout, p.stdout
    if not store_spec.startswith("postgres"):
        # R25: nothing of a removed record is readable in the files (secure_delete, the
        # WAL written back and truncated); before, it stayed in free pages.
        files = [f for f in tmp_path.glob("central.db*") if f.is_file()]
        assert files and not any(b"GONE000" in f.read_bytes() for f in files)
    store = open_store(store_spec)
    try:
        assert store.seqs(("tokyo", "door-1")) == [6, 7, 8, 9, 10]
        [row] = store.retention_rows("tokyo")
        assert (row["first_seq"], row["last_seq"], row["removed"]) == (1, 5, 5)
        # The hash of seq 5 is on file: seq 6 still links to something kept.
        with_hash = store._x("SELECT last_hash FROM retention_log").fetchone()[0]
        assert with_hash == d.records[4].hash
        assert store.head(("tokyo", "door-1"))[0] == 10
    finally:
        store.close()
    if store_spec.startswith("postgres"):
        with psycopg.connect(store_spec, autocommit=True) as c:
            parts = {
                r[0]
                for r in c.execute("SELECT relname FROM pg_class WHERE relname LIKE 'records_2%'")
            }
            assert "records_2024_01" not in parts, parts
            with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                c.execute("DELETE FROM records WHERE seq = 6")
            # Another record at seq 6 in another month: refused across partitions.
            with pytest.raises(psycopg.errors.UniqueViolation):
                c.execute(
                    "INSERT INTO records SELECT site, device, seq, type,"
                    " '2024-01-20T00:00:00.000Z', hash, body, sig_checked FROM records"
                    " WHERE seq = 6"
                )
    else:
        with sqlite3.connect(store_spec) as c, pytest.raises(sqlite3.IntegrityError):
            c.execute("DELETE FROM records WHERE seq = 6")
    # Nothing more to remove: said so, nothing logged twice.
    again = subprocess.run(
        [EDGED, "retention", "--store", store_spec, "--keep-days", "365"],
        capture_output=True,
        text=True,
    )
    assert "retention: 0 records removed" in again.stdout
