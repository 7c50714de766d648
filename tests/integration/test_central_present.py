"""Who is inside and each door's and cabinet's state, folded centrally from the stored
records as they are stored: on both engines, from the whole history (not a recent
window), never misled by a device's pruning snapshot, and filled in once for a store
that had records before the fold existed (R1, R6)."""

from __future__ import annotations

import sqlite3
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice

from edged.central.collector import Collector
from edged.central.present import Changes
from edged.central.store import SCHEMA_VERSION, open_store
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker

pytestmark = pytest.mark.integration

DAY_MS = 86_400_000


def _collector(tmp_path, store: str, *devices: FleetDevice) -> Collector:
    for d in devices:
        (tmp_path / "trust" / d.site).mkdir(parents=True, exist_ok=True)
        (tmp_path / "trust" / d.site / f"{d.device}.pub").write_text(
            public_key_pem(d.key.public_key())
        )
    key = init_role_key(tmp_path / "collector", "collector")
    return Collector(Broker("127.0.0.1", 1), store, tmp_path / "trust", key)


def _ingest(col: Collector, *devices: FleetDevice) -> None:
    batch = []
    for d in devices:
        done = set(col.store.seqs((d.site, d.device)))
        batch += [(d.site, d.device, r.wire()) for r in d.records if r.seq not in done]
    col.ingest_batch(batch)


def _who(store) -> list[tuple[str, str, str, str]]:
    return [
        (p["site"], p["device"], p["area"], p["person"]) for p in store.reports.present_people()
    ]


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_who_is_inside_comes_from_the_whole_history_and_ignores_snapshots(
    tmp_path, request, engine
):
    """R1: a person who went in a month ago and has not left is inside; a device's
    pruning snapshot (which stands for records before its kept_from_seq) does not make
    the central side forget an entry recorded after that seq; exits, an area reset, door
    and cabinet states; two sites with the same device and area names stay apart."""
    url = str(tmp_path / "c.db") if engine == "sqlite" else request.getfixturevalue("postgres").url
    a = FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate())
    b = FleetDevice("osaka", "door-1", Ed25519PrivateKey.generate())
    col = _collector(tmp_path, url, a, b)
    month_ago = int(time.time() * 1000) - 30 * DAY_MS
    a.append("door.granted", {"door": "main", "area": "handling", "person": "S1",
                              "name": "Aoki"}, wall_ms=month_ago)  # fmt: skip
    a.append("door.granted", {"door": "main", "area": "handling", "person": "S2",
                              "name": "Baba"})  # fmt: skip
    # The device pruned seq 1 only: its snapshot knows S1, not S2 (entered at seq 2).
    a.append("journal.snapshot", {"kept_from_seq": 2, "occupancy": {"handling": {"S1": "Aoki"}},
                                  "escorts": {}, "unescorted": {}, "pin_failures": {},
                                  "lockouts": []})  # fmt: skip
    a.append("door.opened", {"door": "main"})
    a.append("cabinet.unlocked", {"cabinet": "cab-a", "area": "handling"})
    b.append("door.granted", {"door": "main", "area": "handling", "person": "S9",
                              "name": "Chiba"})  # fmt: skip
    _ingest(col, a, b)
    assert _who(col.store) == [
        ("osaka", "door-1", "handling", "S9"),
        ("tokyo", "door-1", "handling", "S1"),
        ("tokyo", "door-1", "handling", "S2"),
    ]
    points = {
        (p["site"], p["kind"], p["name"]): p["state"] for p in col.store.reports.present_points()
    }
    assert points == {("tokyo", "door", "main"): "open", ("tokyo", "cabinet", "cab-a"): "open"}
    # Next batch: S1 leaves, the door closes, the cabinet is locked; then the area is
    # reset and S3 goes in, all in one batch (order within the batch matters).
    a.append("door.exit", {"door": "main", "area": "handling", "person": "S1"})
    a.append("door.closed", {"door": "main"})
    a.append("cabinet.locked", {"cabinet": "cab-a", "area": "handling"})
    _ingest(col, a)
    assert _who(col.store)[1:] == [("tokyo", "door-1", "handling", "S2")]
    a.append("occupancy.reset", {"area": "handling"})
    a.append("door.granted", {"door": "main", "area": "handling", "person": "S3", "name": "Doi"})
    _ingest(col, a)
    assert _who(col.store) == [
        ("osaka", "door-1", "handling", "S9"),
        ("tokyo", "door-1", "handling", "S3"),
    ]
    points = {
        (p["site"], p["kind"], p["name"]): p["state"] for p in col.store.reports.present_points()
    }
    assert points == {("tokyo", "door", "main"): "closed", ("tokyo", "cabinet", "cab-a"): "locked"}
    # Per site, for a company's overview: counts, and every site with a device listed.
    a.append("door.opened", {"door": "side"})
    _ingest(col, a)
    summary = {r["site"]: r for r in col.store.reports.site_summary(0)}
    assert sorted(summary) == ["osaka", "tokyo"]
    assert (summary["tokyo"]["inside"], summary["tokyo"]["open_doors"]) == (1, 1)
    assert summary["tokyo"]["open_cabinets"] == 0 and summary["osaka"]["inside"] == 1
    assert [p["person"] for p in col.store.reports.present_people("osaka")] == ["S9"]
    col.close()


def test_a_store_from_before_the_fold_is_filled_once(tmp_path):
    """R1: a store migrated to the fold's schema version learns who is inside from the
    records it already held."""
    a = FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate())
    db = tmp_path / "c.db"
    col = _collector(tmp_path, str(db), a)
    a.append("door.granted", {"door": "main", "area": "handling", "person": "S1", "name": "A"})
    a.append("door.granted", {"door": "main", "area": "handling", "person": "S2", "name": "B"})
    a.append("door.exit", {"door": "main", "area": "handling", "person": "S2"})
    _ingest(col, a)
    col.close()
    with sqlite3.connect(db) as c:  # back to version 6: the fold's tables gone
        c.execute("DROP TABLE present_people")
        c.execute("DROP TABLE present_points")
        c.execute("DROP INDEX alarms_active")
        c.execute("DELETE FROM schema_migrations WHERE version = 7")
    store = open_store(str(db))
    assert store.schema_version() == SCHEMA_VERSION
    assert _who(store) == [("tokyo", "door-1", "handling", "S1")]
    store.close()


def test_the_fold_of_a_batch_is_its_net_effect():
    """R1: within one batch the last word about a person wins; a reset empties what came
    before it in the area, not what came after; malformed bodies are passed by."""
    ch = Changes()
    ch.add("s", "d", "door.granted", "t1", '{"area": "x", "person": "P", "name": "n"}')
    ch.add("s", "d", "door.exit", "t2", '{"area": "x", "person": "P"}')
    ch.add("s", "d", "door.granted", "t3", '{"area": "y", "person": "Q", "name": "m"}')
    ch.add("s", "d", "occupancy.reset", "t4", '{"area": "y"}')
    ch.add("s", "d", "door.granted", "t5", '{"area": "y", "person": "R", "name": "r"}')
    ch.add("s", "d", "door.granted", "t6", "not json")
    ch.add("s", "d", "door.granted", "t7", '["a list"]')
    ch.add("s", "d", "door.opened", "t8", '{"door": 5}')
    assert ch.people == {("s", "d", "x", "P"): None, ("s", "d", "y", "R"): ("r", "t5")}
    assert ch.resets == {("s", "d", "y")} and ch.points == {}
