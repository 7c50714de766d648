"""The journal: append-only, chained, signed, durable, private (R9, R11, R13, R14)."""

from __future__ import annotations

import itertools
import json
import sqlite3
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged.clock import FakeClock
from edged.device.journal import GENESIS, Journal, verify_journal
from edged.device.keys import DeviceKeys
from edged.errors import JournalCorruptError, JournalError, PrivacyError
from edged.protocol.records import digest

pytestmark = pytest.mark.unit


def trusted(keys: DeviceKeys):
    return {keys.key_id: keys.public_key}


def test_records_carry_the_envelope_and_chain(journal, keys, clock):
    """R9: every record has seq, ts, mono_us, boot_id, clock_synced, prev, hash, sig, key_id."""
    r1 = journal.append("door.granted", area="handling", person="P0001")
    clock.advance(1.5)
    clock.is_synced = False
    r2 = journal.append("door.denied", area="handling", reason="unknown_card")
    f1, f2 = r1.fields, r2.fields
    assert (f1["seq"], f2["seq"]) == (1, 2)
    assert f1["prev"] == GENESIS and f2["prev"] == r1.hash
    assert f1["ts"] == "2026-01-01T00:00:00.000Z" and f2["ts"] == "2026-01-01T00:00:01.500Z"
    assert f2["mono_us"] - f1["mono_us"] == 1_500_000
    assert f1["clock_synced"] is True and f2["clock_synced"] is False
    assert f1["boot_id"] == "test-boot" and f1["key_id"] == keys.key_id
    assert r1.hash == digest(r1.body)
    keys.public_key.verify(bytes.fromhex(r1.sig), bytes.fromhex(r1.hash))
    wire = json.loads(r2.wire())
    assert wire["hash"] == r2.hash and wire["sig"] == r2.sig
    assert journal.head() == (2, r2.hash)


def test_batch_is_one_transaction_all_or_none(journal, keys):
    """R13: a burst commits together; one bad record in it leaves nothing half-written."""
    recs = journal.append_many([("door.granted", {"n": i}) for i in range(10)])
    assert [r.seq for r in recs] == list(range(1, 11))
    with pytest.raises(PrivacyError):
        journal.append_many([("ok", {"n": 1}), ("bad", {"note": "123456789018"})])
    assert journal.head()[0] == 10
    assert verify_journal(journal.path, trusted(keys)).ok


def test_reopen_continues_the_chain(tmp_path, keys, clock):
    """R14: after a restart the chain continues from the committed head."""
    path = tmp_path / "j.db"
    with Journal(path, keys, clock, boot_id="boot-1") as j:
        j.append("a")
        last = j.append("b")
    with Journal(path, keys, clock, boot_id="boot-2") as j:
        r = j.append("c")
    assert r.seq == 3 and r.fields["prev"] == last.hash and r.fields["boot_id"] == "boot-2"
    res = verify_journal(path, trusted(keys))
    assert res.ok and res.records == 3 and res.head_hash == r.hash


def test_sql_update_and_delete_are_refused(journal):
    """R9: triggers refuse UPDATE and DELETE, even through a second connection."""
    journal.append("a")
    other = sqlite3.connect(journal.path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("UPDATE records SET type='x'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        other.execute("DELETE FROM records")
    other.close()


def test_checkpoint_every_n_records(tmp_path, keys, clock):
    """R9: a signed checkpoint of the head follows every N records."""
    with Journal(tmp_path / "j.db", keys, clock, checkpoint_every=5) as j:
        j.append_many([("e", {"i": i}) for i in range(12)])
        cps = [r for r in j.records() if r.type == "checkpoint"]
        assert [c.seq for c in cps] == [6, 12]
        assert cps[0].fields["head_seq"] == 5
        assert cps[0].fields["head_hash"] == next(j.records(5, 5)).hash
    assert verify_journal(tmp_path / "j.db", trusted(keys)).ok


def test_checkpoint_after_t_seconds(tmp_path, keys, clock):
    """R9: a checkpoint is written when the period has passed and there is news."""
    with Journal(tmp_path / "j.db", keys, clock, checkpoint_seconds=60) as j:
        j.append("a")
        assert j.maybe_checkpoint() is None
        clock.advance(61)
        cp = j.maybe_checkpoint()
        assert cp is not None and cp.fields["head_seq"] == 1
        clock.advance(61)
        assert j.maybe_checkpoint() is None  # nothing new since the last checkpoint
        # The period passed while idle, so the next append is followed by a checkpoint.
        assert j.append("b").seq == 3
        head_seq, _ = j.head()
        last = next(j.records(head_seq))
        assert head_seq == 4 and last.type == "checkpoint" and last.fields["head_seq"] == 3
        assert j.append("c").seq == 5 and j.head()[0] == 5  # period not passed again


def test_individual_number_is_refused_with_a_clear_error(journal):
    """R11: the journal refuses a value shaped like an Individual Number, and says which field."""
    with pytest.raises(PrivacyError, match=r"'visitor\.note'") as e:
        journal.append("visitor.registered", visitor={"note": "1234-5678-9018"})
    assert "9018" not in str(e.value)
    assert journal.head()[0] == 0


def test_reserved_and_unrecordable_fields_are_refused(journal):
    with pytest.raises(JournalError, match="reserved"):
        journal.append("x", seq=5)
    with pytest.raises(JournalError, match="float"):
        journal.append("x", temp=21.5)
    with pytest.raises(JournalError, match="type"):
        journal.append("")
    with pytest.raises(PrivacyError):
        journal.append("x", pin="1234")
    assert journal.head()[0] == 0


def test_journal_file_is_private(journal):
    """R12: the journal file is readable by the daemon alone."""
    journal.append("a")
    assert stat.S_IMODE(journal.path.stat().st_mode) == 0o600


def test_opening_with_another_key_is_refused(tmp_path, keys, clock):
    """R9: one journal, one device key; a different key cannot continue the chain."""
    path = tmp_path / "j.db"
    Journal(path, keys, clock).close()
    with pytest.raises(JournalError, match="belongs to device key"):
        Journal(path, DeviceKeys.generate(), clock)


def test_a_file_that_is_not_a_journal_is_refused(tmp_path, keys, clock):
    garbage = tmp_path / "g.db"
    garbage.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JournalCorruptError, match=str(garbage)):
        Journal(garbage, keys, clock)
    other = tmp_path / "other.db"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    with pytest.raises(JournalCorruptError, match="not an edged journal"):
        Journal(other, keys, clock)


def test_failed_commit_leaves_head_unchanged(journal, keys):
    """R14: a write that cannot commit records nothing and leaves no gap behind."""
    journal.append("a")
    blocker = sqlite3.connect(journal.path, timeout=0)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    journal.conn.execute("PRAGMA busy_timeout=0")
    with pytest.raises(JournalError, match="nothing recorded"):
        journal.append("b")
    blocker.execute("ROLLBACK")
    blocker.close()
    assert journal.append("c").seq == 2
    assert verify_journal(journal.path, trusted(keys)).ok


payloads = st.dictionaries(
    st.sampled_from(["area", "door", "person", "reason", "n", "flag", "names"]),
    st.integers(0, 10**6)
    | st.booleans()
    | st.text(max_size=20)
    | st.lists(st.text(max_size=5), max_size=3),
    max_size=5,
)


@settings(
    max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["door.granted", "door.denied", "alarm.x"]), payloads),
        min_size=1,
        max_size=15,
    )
)
def test_any_sequence_of_appends_verifies(tmp_path_factory, keys, items):
    """R9 (property): whatever is appended, in singles or batches, the file verifies."""
    from edged.protocol.privacy import contains_individual_number

    items = [(t, p) for t, p in items if not contains_individual_number(json.dumps(p))]
    path = tmp_path_factory.mktemp("prop") / "j.db"
    with Journal(path, keys, FakeClock()) as j:
        half = len(items) // 2
        for t, p in items[:half]:
            j.append(t, **p)
        j.append_many(items[half:])
        recs = list(j.records())
    assert [r.seq for r in recs] == list(range(1, len(recs) + 1))
    for a, b in itertools.pairwise(recs):
        assert b.fields["prev"] == a.hash
    res = verify_journal(path, trusted(keys))
    assert res.ok and res.records == len(recs)
