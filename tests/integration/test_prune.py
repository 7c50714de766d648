"""A device's storage is bounded after years of service: records the central copy has
receipted (and older than keep_days) are dropped after a signed journal.snapshot that
carries what start-up needs; `edged verify`, the start-up replay, the rollback check and
the collector all understand a pruned journal (R9, R10, R13, R20: kept for the set period
centrally)."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import pytest

from edged.clock import FakeClock
from edged.core.replay import REPLAYED, replay, snapshot_state
from edged.core.state import CoreState, Now
from edged.device.journal import Journal, verify_journal
from edged.device.journal.witness import Head
from edged.device.keys import DeviceKeys
from edged.protocol.records import SNAPSHOT
from tests.conftest import EDGED, require_pcscd
from tests.helpers.central import held
from tests.helpers.site import Running, Site

pytestmark = pytest.mark.integration


def trusted(keys: DeviceKeys):
    return {keys.key_id: keys.public_key}


def a_day(j: Journal, clock: FakeClock, day: int) -> None:
    """People in and out, a visitor with an escort, wrong PINs and a lock-out."""
    for i in range(20):
        j.append("door.granted", area="handling", person=f"S{day:02d}{i:02d}", name="n")
        clock.advance(1)
    for i in range(0, 20, 2):  # half of them leave
        j.append("door.exit", area="handling", person=f"S{day:02d}{i:02d}")
    j.append("door.granted", area="handling", person=f"V{day}", escort=f"S{day:02d}01")
    card = f"fp1:{day:032x}"
    for n in (1, 2):
        j.append("door.denied", area="server-room", reason="pin_wrong", card=card, attempt=n)
    j.append("alarm.pin_lockout", card=card, minutes=15)
    for _ in range(30):
        j.append("door.opened", door="main")
    clock.advance(3600)


def state_of(j: Journal, clock: FakeClock) -> tuple:
    s = CoreState()
    now = Now(clock.mono_ns(), clock.wall_ms(), True)
    replay(s, j.bodies(REPLAYED), now, "test-boot", {"handling", "server-room"})
    return (s.occupancy, s.escorts.escorting, s.lockout.failures, s.lockout.until)


def test_a_pruned_journal_verifies_and_replays_as_the_whole_one(tmp_path, keys):
    """R9, R13: prune twice; the journal verifies (naming the pruned seqs and the
    snapshot), start-up replays to the same state as from the unpruned copy, a
    remembered head in the pruned part is not taken for a rollback, and unreceipted
    records are never dropped."""
    clock = FakeClock()
    path = tmp_path / "journal.db"
    j = Journal(path, keys, clock, boot_id="test-boot")
    a_day(j, clock, 1)
    a_day(j, clock, 2)
    src, dst = sqlite3.connect(path), sqlite3.connect(tmp_path / "whole.db")
    src.backup(dst)  # the WAL too (a file copy would miss it)
    src.close()
    dst.close()
    head = j.head()[0]
    assert j.prune(head, receipted=40) is not None
    assert j.first_seq() == 41  # only what was receipted
    whole = Journal(tmp_path / "whole.db", keys, clock, boot_id="test-boot")
    assert state_of(j, clock) == state_of(whole, clock)
    a_day(j, clock, 3)
    a_day(whole, clock, 3)
    want = j.head()[0] - 5
    snap = j.prune(j.first_seq_since("2099-01-01T00:00:00.000Z"), receipted=want - 1)
    assert snap is not None and snap.fields["kept_from_seq"] == want
    assert snap.fields["dropped"] > 100
    assert state_of(j, clock) == state_of(whole, clock)
    occ = snap.fields["occupancy"]["handling"]
    assert "S0201" in occ and "S0200" not in occ  # in, and left
    result = verify_journal(path, trusted(keys))
    assert result.ok and result.pruned_before == j.first_seq(), result
    assert f"PRUNED: seqs 1..{j.first_seq() - 1}" in result.summary()
    # The receipted head the sync state remembers lies in the pruned part: not a rollback.
    assert j.find_rollback([Head(40, "x" * 64, "sync")]) is None
    # Nothing left to prune below what is receipted.
    assert j.prune(j.first_seq(), receipted=j.first_seq() - 1) is None
    j.close()
    whole.close()


def test_a_cut_start_without_its_snapshot_is_caught(tmp_path, keys):
    """R10: records cut from the start of a journal (pruned or not) without the signed
    snapshot that accounts for them fail verification as missing."""
    clock = FakeClock()
    path = tmp_path / "journal.db"
    with Journal(path, keys, clock, boot_id="b") as j:
        a_day(j, clock, 1)
        j.prune(30, receipted=50)
        first = j.first_seq()
    with sqlite3.connect(path) as c:
        c.execute("DROP TRIGGER records_no_delete")
        c.execute("DELETE FROM records WHERE seq = ?", (first,))  # one more than pruned
    result = verify_journal(path, trusted(keys))
    assert not result.ok and result.problem == "missing", result


def test_storage_stays_bounded_over_many_prunes(tmp_path, keys):
    """R14: a year of records in, pruned as they are receipted: the file stops growing
    (freed pages are reused) and the record count stays bounded."""
    clock = FakeClock()
    path = tmp_path / "journal.db"
    sizes = []
    with Journal(path, keys, clock, boot_id="b") as j:
        for _ in range(12):
            for _ in range(10):
                a_day(j, clock, 1)
            j.prune(j.head()[0], receipted=j.head()[0])
            with j.conn:
                j.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes.append(path.stat().st_size)
            count = j.conn.execute("SELECT count(*) FROM records").fetchone()[0]
            assert count < 300, count
    assert sizes[-1] <= sizes[2] * 1.1, sizes
    assert verify_journal(path, trusted(keys)).ok


def test_the_snapshot_carries_what_replay_needs():
    """R3: wrong-PIN counts and a lock-out in force survive pruning: the lock-out as the
    wall time it ends (a 12-digit monotonic time could pass for an Individual Number)."""
    clock = FakeClock()
    now = Now(clock.mono_ns(), clock.wall_ms(), True)
    lock = {"type": "alarm.pin_lockout", "card": "fp1:d", "minutes": 15, "boot_id": "b"}
    lock["mono_us"] = (clock.mono_ns() - 5 * 60 * 10**9) // 1000  # 5 minutes ago
    snap = snapshot_state(
        [
            {"type": "door.granted", "area": "a", "person": "P1", "name": "x", "escort": "E"},
            {"type": "door.denied", "reason": "pin_wrong", "card": "fp1:c", "attempt": 2},
            lock,
        ],
        now,
        "b",
    )
    assert snap["occupancy"] == {"a": {"P1": "x"}} and snap["escorts"] == {"a": {"P1": "E"}}
    assert snap["pin_failures"] == {"fp1:c": 2}
    assert snap["lockouts"] == [
        {"card": "fp1:d", "minutes": 15, "until": "2026-01-01T00:10:00.000Z", "until_synced": True}
    ]
    # Replayed after a reboot 4 minutes later: 6 minutes are left.
    s = CoreState()
    clock.advance(240)
    later = Now(clock.mono_ns(), clock.wall_ms(), True)
    replay(s, [{"type": SNAPSHOT, **snap}], later, "another-boot", {"a"})
    assert s.lockout.until["fp1:d"] - later.mono == 6 * 60 * 10**9
    # Unsynchronised now: the full length again (fail secure).
    s = CoreState()
    replay(s, [{"type": SNAPSHOT, **snap}], Now(later.mono, later.wall_ms, False), "x", {"a"})
    assert s.lockout.until["fp1:d"] - later.mono == 15 * 60 * 10**9


def test_the_daemon_prunes_what_is_receipted_and_the_collector_follows(tmp_path, mosquitto):
    """R9, R13, R20: with keep_days = 0 the daemon drops every receipted record after a
    signed snapshot; the collector stores the snapshot on the chain without an alarm; a
    restart keeps who is inside; `edged verify` says what was pruned and exits 0."""
    require_pcscd()
    site = Site(tmp_path, mosquitto.port)
    text = site.config.read_text().replace(
        "checkpoint_seconds = 3600",
        "checkpoint_seconds = 3600\nkeep_days = 0\nprune_batch = 5\nprune_check_seconds = 1",
    )
    # Pruning by age needs a clock it can trust; this machine's may not say it is synced.
    site.config.write_text(text.replace("[clock]", "[clock]\nassume_synced = true", 1))
    col = site.collector()
    run = Running(site.cfg())
    try:
        assert run.d.sync.connected_event.wait(10)
        after = run.d.observers.processed_count
        run.presses(30)
        head = run.head()
        assert run.d.sync.wait_for(lambda s: s["acked_seq"] >= head, timeout=30)
        pruned = run.d.observers.wait_processed(
            lambda p: any(r.get("type") == SNAPSHOT for r in p.records), after=after, timeout=30
        )
        assert pruned is not None
        first = run.d.call(lambda: run.d.journal.first_seq())
        assert first > head - 5, (first, head)
        snap_head = run.head()
        kept = held(col)
        assert col.wait_for(lambda: snap_head in kept.seqs("tokyo-hq", "door-3f-1"), timeout=30)
    finally:
        run.stop()
    stored = held(col).seqs("tokyo-hq", "door-3f-1")
    alarms = held(col).alarms()
    col.close()
    assert stored == list(range(1, len(stored) + 1)), stored  # nothing lost centrally
    assert not [a for a in alarms if a[0] in ("rewrite", "bad_record", "rollback")], alarms
    out = subprocess.run(
        [EDGED, "verify", "--db", str(site.state / "journal.db")], capture_output=True, text=True
    )
    assert out.returncode == 0 and "PRUNED: seqs 1.." in out.stdout, out.stdout + out.stderr
    # A restart on the pruned journal: no rollback alarm, the chain goes on.
    run = Running(site.cfg())
    try:
        types = run.d.call(lambda: [r.type for r in run.d.journal.records(snap_head + 1)])
        assert "alarm.journal_rollback" not in types and "daemon.started" in types
    finally:
        run.stop()
    body = json.loads(
        sqlite3.connect(site.state / "journal.db")
        .execute("SELECT body FROM records WHERE type = ? ORDER BY seq DESC", (SNAPSHOT,))
        .fetchone()[0]
    )
    assert body["receipted_seq"] >= head and body["kept_from_seq"] <= body["receipted_seq"] + 1


def test_pruned_records_leave_no_readable_copy_in_the_files(tmp_path, keys):
    """R25: disposal that cannot be undone: after a prune, neither the journal's file
    nor its WAL holds the pruned records' text (SQLite's secure_delete overwrites freed
    pages; the WAL is written back and truncated). The central SQLite store's removal
    after its keeping period does the same."""
    clock = FakeClock()
    path = tmp_path / "journal.db"
    j = Journal(path, keys, clock, boot_id="test-boot")
    # Records that leave nothing in the snapshot's lasting state (who is inside, ...).
    for i in range(60):
        j.append("door.opened", door="main", note=f"GONE{i:04d} Disposed")
    j.append("door.opened", door="main", note="KEPT0001")

    def readable(marker: bytes) -> bool:
        return any(marker in p.read_bytes() for p in tmp_path.glob("journal.db*") if p.is_file())

    assert readable(b"GONE0007")
    assert j.prune(61, receipted=61) is not None
    assert not readable(b"GONE0007") and not readable(b"Disposed")
    assert readable(b"KEPT0001")
    j.close()
