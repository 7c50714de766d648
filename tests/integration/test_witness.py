"""The collector as a witness of each device's Merkle tree (issue 17, R9, R13): a
checkpoint the device signed is checked against the central copy's own tree of the
records it stored; when they agree the collector cosigns it (a second note signature),
keeps it and publishes it; when the device's signed tree is not the history it sent,
that is an alarm and nothing is cosigned."""

from __future__ import annotations

import sqlite3

import pytest

from edged.central.collector import Collector
from edged.central.store import open_store
from edged.clock import FakeClock
from edged.device.journal import Journal
from edged.device.journal.reader import JournalReader
from edged.device.keys import init_keys, load_keys
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker
from edged.protocol.note import Checkpoint, open_note, origin_of
from tests.helpers.central import held

pytestmark = pytest.mark.integration


def _journal(tmp_path, n: int, *, corrupt_after: int | None = None):
    state = tmp_path / "state"
    init_keys(state)
    keys = load_keys(state)
    path = state / "journal.db"
    with Journal(path, keys, FakeClock(), boot_id="b", checkpoint_every=5, site="tokyo",
                 device="door-1") as j:  # fmt: skip
        for i in range(n):
            if corrupt_after is not None and i == corrupt_after:
                # The device's own tree goes wrong (a bad SD card, or a forger who kept
                # the records and changed the tree): its next checkpoint signs a root
                # that is not the tree of the records it sends.
                j._frontier.hashes[0] = bytes(32)
            j.append("door.opened", door="main", n=i)
    with JournalReader(path) as r:
        wire = [rec.wire() for rec in r.page(1, 10_000)]
    return keys, wire


def _collector(tmp_path, keys):
    (tmp_path / "trust" / "tokyo").mkdir(parents=True, exist_ok=True)
    (tmp_path / "trust" / "tokyo" / "door-1.pub").write_text(public_key_pem(keys.public_key))
    key = init_role_key(tmp_path / "collector", "collector")
    return key, Collector(Broker("127.0.0.1", 1), tmp_path / "central.db", tmp_path / "trust", key)


def test_the_collector_cosigns_the_checkpoints_of_the_history_it_holds(tmp_path):
    """R9, R13: every checkpoint of an honest device is cosigned: the note opens with
    the device's key and with the collector's, and names the central copy's tree."""
    keys, wire = _journal(tmp_path, 22)
    key, col = _collector(tmp_path, keys)
    col.ingest_batch([("tokyo", "door-1", w) for w in wire])
    col.flush()
    cosigned = col.store.trees.cosigned(("tokyo", "door-1"))
    col.close()
    assert [size for size, _n in cosigned] == [5, 11, 17, 23]
    origin = origin_of("tokyo", "door-1")
    for size, note in cosigned:
        text = open_note(note, origin, keys.public_key)
        assert open_note(note, col.witness.name, key.public_key()) == text
        assert Checkpoint.parse(text).size == size
    with sqlite3.connect(tmp_path / "central.db") as c:
        assert c.execute("SELECT count(*) FROM alarms").fetchone()[0] == 0


def test_a_signed_tree_that_is_not_the_history_sent_is_an_alarm(tmp_path):
    """R9, R10: a device whose signed checkpoint names another tree than the records it
    sent gets `bad_checkpoint` from that checkpoint on, and no cosignature for it."""
    keys, wire = _journal(tmp_path, 12, corrupt_after=7)
    _key, col = _collector(tmp_path, keys)
    col.ingest_batch([("tokyo", "door-1", w) for w in wire])
    col.flush()
    cosigned = [size for size, _n in col.store.trees.cosigned(("tokyo", "door-1"))]
    col.close()
    store = open_store(tmp_path / "central.db")
    alarms = [a for a in store.alarms.after() if a["type"] == "bad_checkpoint"]
    store.close()
    assert cosigned == [5]  # the checkpoint before the tree went wrong
    assert alarms and "is not this copy's tree" in alarms[0]["detail"], alarms


def test_a_late_record_of_the_old_chain_is_kept_but_is_no_leaf(tmp_path):
    """R9, R10, R13: a device went back to seq 8 and said so (a rollback record past seq
    12); records 9 and 10 of the chain it left arrive late, after that record. They are
    kept (they fill the declared gap), but they are not in the device's tree any more:
    the central tree must not grow by them, or every later checkpoint of the device
    would be `bad_checkpoint`."""
    import shutil

    from edged.device.journal.witness import Head

    state = tmp_path / "state"
    init_keys(state)
    keys = load_keys(state)
    path = state / "journal.db"
    clock = FakeClock()

    def journal():
        return Journal(path, keys, clock, boot_id="b", checkpoint_every=1000, site="tokyo",
                       device="door-1")  # fmt: skip

    with journal() as j:
        for i in range(8):
            j.append("door.opened", door="main", n=i)
        j.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the copy is then the file alone
        shutil.copy(path, tmp_path / "at-8.db")
        for i in range(4):
            j.append("door.opened", door="main", n=8 + i)
        old_chain = {r.seq: r.wire() for r in j.records(1)}
        head12 = j.head()
    path.unlink()
    for side in ("-wal", "-shm"):
        path.with_name(path.name + side).unlink(missing_ok=True)
    shutil.copy(tmp_path / "at-8.db", path)
    with journal() as j:
        rb = j.append_rollback(Head(head12[0], head12[1], "witness"))
        for i in range(3):
            j.append("door.opened", door="main", n=100 + i)
        cp = j.checkpoint()
        after = [r.wire() for r in j.records(rb.seq)]
    _key, col = _collector(tmp_path, keys)
    try:
        col.ingest_batch([("tokyo", "door-1", old_chain[s]) for s in range(1, 9)])
        col.flush()
        col.ingest_batch([("tokyo", "door-1", after[0]), ("tokyo", "door-1", old_chain[9]),
                          ("tokyo", "door-1", old_chain[10]),
                          *[("tokyo", "door-1", w) for w in after[1:]]])  # fmt: skip
        col.flush()
        seqs = held(col).seqs("tokyo", "door-1")
        cosigned = [size for size, _n in col.store.trees.cosigned(("tokyo", "door-1"))]
        alarms = held(col).alarms()
    finally:
        col.close()
    assert {9, 10} <= set(seqs) and cp.seq in seqs
    assert not [a for a in alarms if a[0] == "bad_checkpoint"], alarms
    assert cosigned == [cp.fields["tree_size"]]
