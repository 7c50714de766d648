"""The central store's schema: numbered migrations on both engines, an old unversioned
SQLite file migrated in place with its records kept, several collectors starting on one
PostgreSQL at once, and the head rows that make one collector at a time extend a chain
(R9, R10, R13)."""

from __future__ import annotations

import sqlite3
import threading

import psycopg
import pytest

from edged.central.store import SCHEMA_VERSION, PostgresStore, open_store
from edged.errors import ConfigError
from edged.protocol.records import GENESIS

pytestmark = pytest.mark.integration


def test_an_unversioned_sqlite_store_is_migrated_in_place(tmp_path):
    """R9: a central.db from before schema versions (no sig_checked column, no
    migrations table) keeps every record and gains the new tables."""
    db = tmp_path / "central.db"
    with sqlite3.connect(db) as c:
        c.execute(
            "CREATE TABLE records (site TEXT, device TEXT, seq INTEGER, type TEXT, ts TEXT,"
            " hash TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (site, device, seq))"
        )
        c.execute("INSERT INTO records VALUES ('s', 'd', 1, 'x', 't', 'h', '{}')")
    store = open_store(db)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.seqs(("s", "d")) == [1] and store.count_unchecked() == 0
    assert store.reports.statuses() == [] and store.take_pending(("s", "d"), 0) == []
    store.close()
    again = open_store(db)  # a second open runs nothing twice
    assert again.schema_version() == SCHEMA_VERSION
    again.close()


def test_collectors_starting_together_migrate_once(postgres):
    """Four stores opened at once on an empty PostgreSQL: one creates the schema (an
    advisory lock), the others find it; every migration is recorded once."""
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            open_store(postgres.url).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    with psycopg.connect(postgres.url) as c:
        versions = [r[0] for r in c.execute("SELECT version FROM schema_migrations ORDER BY 1")]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_device_head_is_held_by_one_collector_at_a_time(postgres):
    """R10: while one store holds a device's head row in its transaction, another waits
    for it and then sees what the first committed, never the head before."""
    a, b = PostgresStore(postgres.url), PostgresStore(postgres.url)
    dev = ("s", "d")
    assert a.lock_heads([dev]) == {dev: (0, GENESIS)}
    seen: list[tuple[int, str]] = []
    t = threading.Thread(target=lambda: seen.append(b.lock_heads([dev])[dev]))
    t.start()
    t.join(0.5)
    assert t.is_alive() and not seen  # b waits for a's row
    a.save_heads([(*dev, 1, "h1")])
    a.commit()
    t.join(10)
    assert seen == [(1, "h1")]
    b.commit()
    a.close()
    b.close()


def test_a_wrong_store_url_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"^--store postgresql://edged:\*\*\*@127\.0\.0\.1:1/x: "):
        open_store("postgresql://edged:secret@127.0.0.1:1/x")


def test_records_out_of_order_across_two_collectors_wait_their_turn(tmp_path, postgres):
    """R10: one device's records reach two collectors in reverse order (as a shared
    subscription may deliver them): each waits in the store until its predecessor is
    stored, by whichever collector; all end up once, in order, nothing left waiting."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from edged.simulators.fleet import FleetDevice

    from edged.central.collector import Collector
    from edged.protocol.keys import init_role_key, public_key_pem
    from edged.protocol.mqtt import Broker

    key = init_role_key(tmp_path / "collector", "collector")
    d = FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate())
    (tmp_path / "trust" / "tokyo").mkdir(parents=True)
    (tmp_path / "trust" / "tokyo" / "door-1.pub").write_text(public_key_pem(d.key.public_key()))
    for _ in range(6):
        d.append("door.opened", {"door": "main"})
    wire = [(d.site, d.device, r.wire()) for r in d.records]
    one, two = (
        Collector(Broker("127.0.0.1", 1), postgres.url, tmp_path / "trust", key) for _ in "ab"
    )
    try:
        one.ingest_batch([wire[5], wire[3]])  # 6 and 4: nothing to extend yet
        two.ingest_batch([wire[4], wire[2]])  # 5 and 3
        assert one.store.seqs(("tokyo", "door-1")) == []
        assert one.parked + two.parked == 4
        one.ingest_batch([wire[1]])  # 2: still waits for 1
        two.ingest_batch([wire[0]])  # 1: and with it 2..6, drained in order
        seqs = two.store.seqs(("tokyo", "door-1"))
        assert seqs == [1, 2, 3, 4, 5, 6], seqs
        assert two.store.hashes(("tokyo", "door-1")) == [r.hash for r in d.records]
        assert two.store.take_pending(("tokyo", "door-1"), 6) == []
        assert two.store.head(("tokyo", "door-1")) == (6, d.records[5].hash)
    finally:
        one.close()
        two.close()
