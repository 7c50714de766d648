"""The collector proves a burst of records with one signature per run, and still checks
every record's own signature afterwards (R9, R12, R13).

A run is the records of one burst that extend the stored chain; the last one's signature
covers the others through ``prev``. These tests feed bursts straight to
``Collector.ingest_batch`` (no broker: the batching must be exact) and forge records the
way an attacker without the device key could: edited bodies with recomputed hashes and a
re-chained tail, signatures swapped, a record appended with a signature that does not hold.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from edged.central.collector import Collector
from edged.protocol.canonical import dumps_checked
from edged.protocol.records import digest
from tests.helpers.central import held

pytestmark = pytest.mark.unit

SITE, DEVICE = "hq", "door-1"


@pytest.fixture
def door(signed_door):
    return signed_door(SITE, DEVICE)


@pytest.fixture
def wires(door) -> list[bytes]:
    """40 genuine wire records of one device."""
    with door.journal() as j:
        j.append_many(
            ("door.granted", {"door": "main", "person": f"S{i:04}", "reason": "ok"})
            for i in range(40)
        )
        return [r.wire() for r in j.records(1, 40)]


@pytest.fixture
def collector(door, wires: list[bytes]):
    c = door.collector()
    yield c
    c.close()


def burst(wires: list[bytes]) -> list[tuple[str, str, bytes]]:
    return [(SITE, DEVICE, w) for w in wires]


def rechain(recs: list[dict], start: int) -> list[bytes]:
    """Recompute hash and prev from ``start`` on, as an attacker without the key can;
    the signatures stay as they were (and so no longer hold)."""
    for i in range(start, len(recs)):
        if i > 0:
            recs[i]["prev"] = recs[i - 1]["hash"]
        body = {k: v for k, v in recs[i].items() if k not in ("hash", "sig")}
        recs[i]["hash"] = digest(dumps_checked(body))
    return [dumps_checked(r) for r in recs]


def checked_column(c: Collector) -> dict[int, int]:
    c.flush()
    with sqlite3.connect(c.db_path) as db:
        return dict(db.execute("SELECT seq, sig_checked FROM records"))


def test_a_genuine_burst_is_stored_on_one_signature_and_audited_after(collector, wires):
    """R9/R13: 40 records stored from one burst; only the run's last signature was needed
    to store them, and the idle-time audit then checks the other 39 with no alarm."""
    collector.ingest_batch(burst(wires))
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 41))
    assert checked_column(collector) == {s: int(s == 40) for s in range(1, 41)}
    assert collector.unchecked() == 39
    while collector.unchecked():
        collector.audit_signatures(limit=16)
    assert set(checked_column(collector).values()) == {1}
    assert held(collector).alarms() == []


def test_an_edited_record_rechained_to_the_end_is_refused(collector, wires):
    """R9/R12: record 20 edited, every hash after it recomputed so the chain holds: the
    run's last signature fails, the records are then checked one by one, 1..19 are stored,
    20 raises a bad_record alarm, and nothing from the forged branch is stored."""
    recs = [json.loads(w) for w in wires]
    recs[19]["person"] = "S9999"
    forged = rechain(recs, 19)
    collector.ingest_batch(burst(forged))
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 20))
    assert ("bad_record", "seq 20: bad signature (epoch 0)") in held(collector).alarms()
    # The genuine records are still welcome afterwards.
    collector.ingest_batch(burst(wires[19:]))
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 41))


def test_a_record_appended_with_a_bad_signature_is_refused(collector, wires):
    """R9/R12: a well-formed 41st record chained onto the genuine 40, with a signature
    copied from another record: the 40 are stored, the 41st is refused."""
    extra = json.loads(wires[-1])
    extra["seq"], extra["person"] = 41, "S7777"
    recs = [*(json.loads(w) for w in wires), extra]
    appended = rechain(recs, 40)
    collector.ingest_batch(burst([*wires, appended[-1]]))
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 41))
    assert [a[0] for a in held(collector).alarms()] == ["bad_record"]


def test_a_swapped_signature_inside_a_run_is_found_by_the_audit(collector, wires):
    """R9/R13: record 10 carries record 11's signature. Its content is authentic (record 40
    is signed and commits to it), so the burst is stored; the audit then finds the
    signature that does not hold, marks it -1 and raises bad_signature."""
    recs = [json.loads(w) for w in wires]
    recs[9]["sig"] = recs[10]["sig"]
    collector.ingest_batch(burst([dumps_checked(r) for r in recs]))
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 41))
    collector.audit_signatures(limit=100)
    assert checked_column(collector)[10] == -1
    assert held(collector).alarms() == [("bad_signature", "seq 10: bad signature (epoch 0)")]


def test_a_forged_duplicate_is_a_bad_record_not_a_rewrite(collector, wires):
    """R9: a record for a seq already stored, with other content and no valid signature,
    is refused as forged; it is not reported as the device rewriting its history."""
    collector.ingest_batch(burst(wires[:10]))
    recs = [json.loads(w) for w in wires[:10]]
    recs[4]["person"] = "S0000"
    forged = rechain(recs, 4)
    collector.ingest_batch(burst(forged[4:5]))
    assert [a[0] for a in held(collector).alarms()] == ["bad_record"]
    assert held(collector).seqs(SITE, DEVICE) == list(range(1, 11))


def test_a_database_from_before_the_audit_is_upgraded(tmp_path, door, wires):
    """Records stored before sig_checked existed were verified one by one: they count as
    checked after the upgrade, and new ones are stored as before."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as c:
        c.execute(
            "CREATE TABLE records (site TEXT, device TEXT, seq INTEGER, type TEXT, ts TEXT,"
            " hash TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (site, device, seq))"
        )
        rec = json.loads(wires[0])
        c.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?)",
            (SITE, DEVICE, 1, rec["type"], rec["ts"], rec["hash"], wires[0].decode()),
        )
        c.execute(
            "CREATE TABLE devices (site TEXT, device TEXT, last_seq INTEGER NOT NULL,"
            " last_hash TEXT NOT NULL, best_checkpoint INTEGER NOT NULL DEFAULT 0,"
            " PRIMARY KEY (site, device))"
        )
        c.execute("INSERT INTO devices VALUES (?,?,1,?,0)", (SITE, DEVICE, rec["hash"]))
    col = door.collector(db=db)
    try:
        assert col.unchecked() == 0
        col.ingest_batch(burst(wires[1:5]))
        assert held(col).seqs(SITE, DEVICE) == [1, 2, 3, 4, 5]
        assert checked_column(col) == {1: 1, 2: 0, 3: 0, 4: 0, 5: 1}
    finally:
        col.close()
