"""Tampering with a real journal file is caught, with the exact seq (R9)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal, verify_journal
from edged.device.keys import DeviceKeys
from edged.protocol.canonical import canonical_bytes
from edged.protocol.records import digest

pytestmark = pytest.mark.unit

N = 20


@pytest.fixture
def written(tmp_path: Path, keys: DeviceKeys):
    path = tmp_path / "journal.db"
    clock = FakeClock()
    with Journal(path, keys, clock, checkpoint_every=10_000) as j:
        for i in range(N):
            clock.advance(1)
            j.append("door.granted", area="handling", person=f"P{i:04d}", reason="ok")
    return path


def raw(path: Path) -> sqlite3.Connection:
    """An attacker's connection: triggers dropped, direct SQL."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("DROP TRIGGER records_no_update")
    conn.execute("DROP TRIGGER records_no_delete")
    return conn


def row(conn, seq):
    return conn.execute(
        "SELECT seq, type, ts, prev, hash, sig, key_id, body FROM records WHERE seq=?", (seq,)
    ).fetchone()


def forge(body_obj: dict, key: DeviceKeys) -> tuple[str, str, str]:
    body = canonical_bytes(body_obj).decode()
    h = digest(body.encode())
    return body, h, key.sign(bytes.fromhex(h)).hex()


def check(path, keys, seq, problem):
    res = verify_journal(path, {keys.key_id: keys.public_key})
    assert not res.ok
    assert (res.first_bad_seq, res.problem) == (seq, problem), res.summary()
    assert res.records == seq - 1
    return res


def test_intact_file_verifies(written, keys):
    res = verify_journal(written, {keys.key_id: keys.public_key})
    assert res.ok and res.records == N and res.head_seq == N


def test_changed_field_is_modified(written, keys):
    """R9: changing one field of record 7 is caught at seq 7."""
    c = raw(written)
    body = row(c, 7)[7].replace('"P0006"', '"P9999"')
    c.execute("UPDATE records SET body=? WHERE seq=7", (body,))
    c.close()
    check(written, keys, 7, "modified")


def test_changed_index_column_is_modified(written, keys):
    """R9: the ts column that reports are built from cannot drift from the signed body."""
    c = raw(written)
    c.execute("UPDATE records SET ts='2020-01-01T00:00:00.000Z' WHERE seq=11")
    c.close()
    check(written, keys, 11, "modified")


def test_deleted_row_is_missing(written, keys):
    """R9: deleting record 5 is caught at seq 5."""
    c = raw(written)
    c.execute("DELETE FROM records WHERE seq=5")
    c.close()
    check(written, keys, 5, "missing")


def test_swapped_rows_are_reordered(written, keys):
    """R9: swapping records 5 and 6 is caught at seq 5."""
    c = raw(written)
    r5, r6 = row(c, 5), row(c, 6)
    c.execute("DELETE FROM records WHERE seq IN (5, 6)")
    c.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", (5, *r6[1:]))
    c.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", (6, *r5[1:]))
    c.close()
    check(written, keys, 5, "reordered")


def _insert_at(c, seq, body, h, sig, key_id, rtype="door.granted", ts="x", prev="x"):
    # Shift seq..N up by one (descending, so the primary key never collides).
    for s in range(N, seq - 1, -1):
        c.execute("UPDATE records SET seq=? WHERE seq=?", (s + 1, s))
    c.execute(
        "INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", (seq, rtype, ts, prev, h, sig, key_id, body)
    )


def test_forged_row_with_attacker_key_is_unknown_key(written, keys):
    """R9: a row forged with the attacker's own key is caught at its seq."""
    c = raw(written)
    template = json.loads(row(c, 4)[7])
    attacker = DeviceKeys.generate()
    template.update(person="INTRUDER", key_id=attacker.key_id, prev=row(c, 3)[4])
    body, h, sig = forge(template, attacker)
    _insert_at(c, 4, body, h, sig, attacker.key_id)
    c.close()
    check(written, keys, 4, "unknown key")


def test_forged_row_claiming_the_device_key_is_bad_signature(written, keys):
    """R9: a row that names the device key but is signed by another is caught."""
    c = raw(written)
    template = json.loads(row(c, 4)[7])
    template.update(person="INTRUDER", prev=row(c, 3)[4])
    body, h, sig = forge(template, DeviceKeys.generate())
    _insert_at(c, 4, body, h, sig, keys.key_id)
    c.close()
    check(written, keys, 4, "bad signature")


def test_row_inserted_with_the_stolen_key_is_inserted(written, keys):
    """R9: even a correctly signed insertion shows: the original record 4 no longer fits."""
    c = raw(written)
    template = json.loads(row(c, 4)[7])
    template.update(person="INTRUDER", prev=row(c, 3)[4])
    body, h, sig = forge(template, keys)
    _insert_at(c, 4, body, h, sig, keys.key_id, ts=template["ts"], prev=template["prev"])
    c.close()
    check(written, keys, 5, "inserted")


def test_resigned_with_another_key_is_caught(written, keys):
    """R9: re-signing record 3 with another key is caught at seq 3."""
    c = raw(written)
    obj = json.loads(row(c, 3)[7])
    other = DeviceKeys.generate()
    obj["key_id"] = other.key_id
    body, h, sig = forge(obj, other)
    c.execute(
        "UPDATE records SET body=?, hash=?, sig=?, key_id=? WHERE seq=3",
        (body, h, sig, other.key_id),
    )
    c.close()
    check(written, keys, 3, "unknown key")


def test_duplicate_appended_is_inserted(written, keys):
    """R9: replaying an old record at the end is caught where it stands."""
    c = raw(written)
    r3 = row(c, 3)
    c.execute("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", (N + 1, *r3[1:]))
    c.close()
    check(written, keys, N + 1, "inserted")


def test_tail_cut_below_the_head_marker_is_missing(written, keys):
    """R9: cutting records 12..N away is caught at seq 12 when a checkpoint came after
    them (the head marker moves with every checkpoint)."""
    with Journal(written, keys, FakeClock()) as j:
        j.checkpoint()  # seq N+1
    c = raw(written)
    c.execute("DELETE FROM records WHERE seq >= 12")
    c.close()
    res = check(written, keys, 12, "missing")
    assert "truncated" in res.detail


def test_shallow_tail_cut_is_left_to_the_central_copy(written, keys):
    """R9 (documented limit): records after the last checkpoint can be cut without a local
    trace; the collector's copy and the signed checkpoints catch that (issue: sync)."""
    c = raw(written)
    c.execute(f"DELETE FROM records WHERE seq >= {N - 2}")
    c.close()
    res = verify_journal(written, {keys.key_id: keys.public_key})
    assert res.ok and res.head_seq == N - 3


def test_file_truncated_in_the_middle(tmp_path, keys):
    """R9: a file cut in half is reported at the first seq it can no longer prove."""
    path = tmp_path / "journal.db"
    with Journal(path, keys, FakeClock(), checkpoint_every=10_000) as j:
        j.append_many(
            [("door.granted", {"person": f"P{i:04d}", "pad": "x" * 300}) for i in range(400)]
        )
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    try:
        res = verify_journal(path, {keys.key_id: keys.public_key})
    except Exception as e:  # a damaged schema page may make the file unopenable instead
        from edged.errors import JournalCorruptError

        assert isinstance(e, JournalCorruptError)
        return
    assert not res.ok
    assert res.problem in ("unreadable", "missing")
    assert 1 <= res.first_bad_seq <= 400 and res.records == res.first_bad_seq - 1
