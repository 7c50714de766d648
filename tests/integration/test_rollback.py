"""A journal put back to an older copy: seen at start, seen centrally, and sync goes on
(R9, R10, R13). See docs/rollback.md."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edged.protocol.records import ROLLBACK
from tests.conftest import EDGED, require_pcscd
from tests.helpers.central import held
from tests.helpers.site import Running, Site

pytestmark = pytest.mark.integration

SITE, DEVICE = "tokyo-hq", "door-3f-1"


def snapshot(db: Path, to: Path) -> None:
    """A consistent copy of a live SQLite file, as a backup tool would take it."""
    src = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    dst = sqlite3.connect(to)
    src.backup(dst)
    src.close()
    dst.close()


def restore(copy: Path, db: Path) -> None:
    """Put an old copy back the way an operator (or an intruder) would."""
    for suffix in ("-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, db)


def central_seqs(col) -> list[int]:
    return held(col).seqs(SITE, DEVICE)


def receipted(run: Running) -> None:
    head = run.head()
    assert run.d.sync.wait_for(lambda s: s["acked_seq"] >= head, timeout=30)


def verify(state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [EDGED, "verify", "--db", str(state / "journal.db")], capture_output=True, text=True
    )


def started(site: Site, tmp_path: Path):
    """The collector and the daemon running; where saved copies go; the witness dir."""
    saved = tmp_path / "saved"
    saved.mkdir()
    return (
        site.collector(),
        Running(site.cfg()),
        saved,
        site.state.with_name(site.state.name + "-witness"),
    )


def save_at_8(run: Running, site: Site, saved: Path, witness: Path) -> None:
    """At seq 8, receipted: copies of the journal, the sync state and the head witness,
    all that the device itself remembers."""
    assert run.d.sync.connected_event.wait(10)
    run.presses(8 - run.head())
    receipted(run)
    snapshot(site.state / "journal.db", saved / "journal.db")
    snapshot(site.state / "sync.db", saved / "sync.db")
    shutil.copy(witness / "head", saved / "head")


@pytest.fixture
def site(tmp_path, mosquitto):
    require_pcscd()
    return Site(tmp_path, mosquitto.port)


def test_a_restored_old_journal_is_seen_at_start_and_sync_goes_on(site, tmp_path):
    """R9, R10, R13: copy journal.db at seq 8, record past seq 29 (receipted), stop, put the
    copy back: before any door decision the daemon records a signed alarm.journal_rollback
    (found seq 8, the later head it remembered), `edged verify` shows the discontinuity
    and exits 3, the collector keeps every receipted record, records the discontinuity
    with its seqs, and every new record still reaches the central copy (before: the device
    started at 8 silently and the central copy froze for good)."""
    col = site.collector()
    run = Running(site.cfg())
    old = tmp_path / "journal-at-8.db"
    try:
        assert run.d.sync.connected_event.wait(10)
        run.presses(7 - run.head())
        run.d.call(lambda: run.d.journal.checkpoint())  # seq 8: a signed tree of 7
        assert run.head() == 8
        snapshot(site.state / "journal.db", old)
        run.presses(21)
        run.d.call(lambda: run.d.journal.checkpoint())  # seq 30
        receipted(run)
        run.stop()
        stored = central_seqs(col)
        assert stored == list(range(1, len(stored) + 1)) and len(stored) >= 30
        restore(old, site.state / "journal.db")

        run = Running(site.cfg())
        first = run.d.call(lambda: next(run.d.journal.records(9)).fields)
        assert first["type"] == ROLLBACK and first["found_seq"] == 8
        assert first["known_seq"] >= 30 and first["source"] == "witness"
        assert first["seq"] == first["known_seq"] + 1
        started = run.d.call(lambda: [r.type for r in run.d.journal.records(first["seq"] + 1)])
        assert started[0] == "daemon.started"  # the alarm came before anything else

        run.presses(5)
        after = run.d.call(lambda: run.d.journal.checkpoint())  # a tree grown from seq 8 on
        head = run.head()
        receipted(run)  # receipts flow again: the device is not frozen out
        rb = first["seq"]
        assert col.wait_for(lambda: head in central_seqs(col), timeout=30)
        [(seq, found, known, central)] = held(col).discontinuities(SITE, DEVICE)
        assert (seq, found, known) == (rb, 8, first["known_seq"])
        # Every record it had (the receipted ones at least), then the chain from the alarm.
        assert central >= stored[-1]
        have = set(central_seqs(col))
        assert set(range(1, central + 1)) | set(range(rb, head + 1)) <= have
        # Nothing else but an old record that was still on its way (filling the gap).
        assert all(s <= central + 1 or s >= rb for s in have)
        alarms = [a for a in held(col).alarms() if a[0] == "rollback"]
        assert alarms and f"from seq {known} to seq 8" in alarms[0][1]
        bad = ("rewrite", "bad_record", "bad_checkpoint")
        assert not [a for a in held(col).alarms() if a[0] in bad]
        # Issue 17: the checkpoint the collector had cosigned (retained, delivered at the
        # device's connect) names more records than the restored journal holds: an alarm
        # signed by the device itself, once.
        contra = run.d.call(lambda: run.d.journal.last_of_type("alarm.checkpoint_contradicted"))
        assert contra and contra["why"] == "rollback" and contra["size"] > 8, contra
        # The collector's tree followed the device back to seq 8, so the checkpoints
        # before and after the rollback are each cosigned.
        cosigned = {size for size, _n in held(col).store_cosigned(SITE, DEVICE)}
        assert {7, after.fields["tree_size"]} <= cosigned, cosigned
    finally:
        run.stop()
        col.close()
    out = verify(site.state)
    assert out.returncode == 3, out.stdout + out.stderr
    assert "OK:" in out.stdout and f"ROLLBACK at seq {rb}" in out.stdout
    assert f"seqs 9..{rb - 1} are not in this file" in out.stdout


def test_journal_and_sync_state_rolled_back_together_are_caught_centrally(site, tmp_path):
    """R9, R10, R13: journal.db, sync.db and the head witness all put back to seq 8, so the
    device cannot tell. The collector alarms at the first heartbeat that shows a head below
    what it holds, keeps the device's new records (which reuse seqs it holds) apart as a
    fork, and tells the device its head, signed; the device records the rollback past it
    and its records reach the central chain again."""
    col, run, saved, witness = started(site, tmp_path)
    try:
        save_at_8(run, site, saved, witness)
        run.presses(22)
        receipted(run)
        run.stop()
        stored = central_seqs(col)
        restore(saved / "journal.db", site.state / "journal.db")
        restore(saved / "sync.db", site.state / "sync.db")
        shutil.copy(saved / "head", witness / "head")

        run = Running(site.cfg())
        # Nothing local remembers a later head: no alarm at start.
        assert run.d.call(lambda: [r.type for r in run.d.journal.records(9)])[0] != ROLLBACK
        with col.changed:
            assert col.changed.wait_for(
                lambda: any(a[0] == "rollback" for a in held(col).alarms()), timeout=15
            ), held(col).alarms()
        # Its new records went out, were kept apart, and the collector told the device
        # its head: the device records the rollback past it.
        p = run.d.observers.wait_processed(
            lambda p: any(r["type"] == ROLLBACK for r in p.records), after=0, timeout=20
        )
        assert p is not None, held(col).alarms()
        found = [r for r in p.records if r["type"] == ROLLBACK]
        [rb] = found
        assert rb["source"] == "collector" and rb["known_seq"] >= stored[-1]
        run.presses(3)
        head = run.head()
        # Receipts flow again; a receipt covers only what is on the stored chain. (An old
        # record still on its way may make the device record one more rollback past it.)
        assert run.d.sync.wait_for(lambda s: s["acked_seq"] >= head, timeout=30)
        acked = run.d.sync.status()["acked_seq"]
        assert acked in central_seqs(col)
        gaps = held(col).discontinuities(SITE, DEVICE)
        mine = run.d.call(lambda: [r.seq for r in run.d.journal.records(9) if r.type == ROLLBACK])
        assert gaps and {g[0] for g in gaps} <= set(mine) and rb["seq"] in mine
        last_gap = gaps[-1][0]
        assert set(range(last_gap, acked + 1)) <= set(central_seqs(col))
        assert set(range(1, 9)) <= set(central_seqs(col))
        # The records the device made before it knew are kept too, apart, verified.
        forked = held(col).forked(SITE, DEVICE)
        assert forked and forked[0] == 9 and rb["found_seq"] in forked
    finally:
        run.stop()
        col.close()
    out = verify(site.state)
    assert out.returncode == 3 and "ROLLBACK at seq" in out.stdout, out.stdout


def test_a_kept_cosigned_checkpoint_catches_a_put_back_journal_offline(site, tmp_path, mosquitto):
    """R9, R10 (issue 17): journal, sync state and head witness all put back, and the
    broker down at the restart, so neither the device's own memory nor the collector can
    tell. The newest checkpoint the collector cosigned, kept in the witness directory,
    can: signed by someone else, it names more records than the journal holds, and the
    device records alarm.checkpoint_contradicted before any door decision."""
    col, run, saved, witness = started(site, tmp_path)
    try:
        save_at_8(run, site, saved, witness)
        run.presses(10)
        cp = run.d.call(lambda: run.d.journal.checkpoint())
        run.d.sync.notify()
        size = cp.fields["tree_size"]
        # Cosigned by the collector, sent back, checked and kept by the device.
        kept = witness / "cosigned"
        assert run.d.sync.wait_for(lambda s: kept.exists(), timeout=30)
        assert kept.read_text().split("\n")[1] == str(size)
    finally:
        run.stop()
        col.close()
    mosquitto.kill()
    restore(saved / "journal.db", site.state / "journal.db")
    restore(saved / "sync.db", site.state / "sync.db")
    shutil.copy(saved / "head", witness / "head")
    run = Running(site.cfg())
    try:
        types = run.d.call(lambda: [r.fields for r in run.d.journal.records(9)])
        assert types[0]["type"] == "daemon.started"
        contra = types[1]
        assert contra["type"] == "alarm.checkpoint_contradicted", types
        assert contra["why"] == "rollback" and contra["size"] == size
    finally:
        run.stop()
