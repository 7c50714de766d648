"""Forward-secure signing (issue 17, R9, R12, R13): the device signs with a new key each
epoch and erases the one before, each key certified by its predecessor back to the
enrolled identity. A key stolen in epoch k signs nothing that passes as an earlier epoch:
``edged verify``, the collector, ``edged verify --proof`` and Go's verifier all refuse,
naming the epoch."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import pytest

from edged.central.collector import Collector
from edged.clock import FakeClock
from edged.device.journal import Journal, verify_journal
from edged.device.journal.reader import JournalReader
from edged.device.keys import load_keys
from edged.device.keystore import FileKeyStore
from edged.device.paths import (
    CERTS_FILE,
    EPOCH_KEY_FILE,
    NEXT_KEY_FILE,
    PUBLIC_KEY_FILE,
    SIGNING_KEY_FILE,
)
from edged.errors import JournalError
from edged.protocol.canonical import dumps_checked
from edged.protocol.keys import load_private_key
from edged.protocol.mqtt import Broker
from edged.protocol.records import digest
from tests.conftest import EDGED
from tests.helpers.central import held
from tests.helpers.door import COLLECTOR_KEY

pytestmark = pytest.mark.integration

SITE, DEVICE = "tokyo", "door-1"


def _open(state: Path, clock: FakeClock | None = None, **kw) -> Journal:
    return Journal(state / "journal.db", load_keys(state), clock or FakeClock(), boot_id="b",
                   site=SITE, device=DEVICE, checkpoint_every=kw.pop("cp", 1000),
                   epoch_records=kw.pop("every", 10), **kw)  # fmt: skip


def _grow(state: Path, n: int, **kw) -> Journal:
    j = _open(state, **kw)
    for i in range(n):
        j.append("door.granted", door="main", area="handling", person=f"S{i % 5}")
    return j


@pytest.fixture
def state(signed_door) -> Path:
    """The door's state directory; its key pinned for the collector (tmp_path/trust)."""
    return signed_door(SITE, DEVICE).state


def _collector(state: Path, tmp_path: Path) -> Collector:
    """A collector (no broker: batches are fed to it) trusting the device of ``state``;
    called again, it opens the same store with the same trust and key."""
    key = load_private_key(tmp_path / COLLECTOR_KEY)
    return Collector(Broker("127.0.0.1", 1), tmp_path / "central.db", tmp_path / "trust", key)


def _verify(db: Path, pub: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = ["--pubkey", str(pub)] if pub else []
    return subprocess.run([EDGED, "verify", "--db", str(db), *args], capture_output=True,
                          text=True)  # fmt: skip


def test_each_epoch_signs_with_its_own_key_and_the_old_key_is_erased(state):
    """R9, R12: every 10 records a `key.epoch` record, signed by the key in force, names
    the next key; once it is committed the old private key is gone from the disk (the
    identity's too), the key in force is 0600, and `edged verify` checks every record
    under the key of its epoch."""
    identity_pem = (state / SIGNING_KEY_FILE).read_bytes()
    with _grow(state, 35) as j:
        assert j.epoch == 3
        recs = [r.fields for r in j.records()]
    certs = [r for r in recs if r["type"] == "key.epoch"]
    assert [(c["seq"], c["epoch"], c["next_epoch"]) for c in certs] == [
        (10, 0, 1), (20, 1, 2), (30, 2, 3)]  # fmt: skip
    assert [r["epoch"] for r in recs if r["seq"] in (9, 10, 11, 21, 31)] == [0, 0, 1, 2, 3]
    assert not (state / SIGNING_KEY_FILE).exists()
    assert not (state / NEXT_KEY_FILE).exists()
    key_file = state / EPOCH_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert json.loads(key_file.read_text())["epoch"] == 3
    assert identity_pem not in key_file.read_bytes()
    assert len((state / CERTS_FILE).read_text().splitlines()) == 3
    # The identity is still the enrolled public key: the daemon loads, keys show works.
    assert load_keys(state).key_id == json.loads(json.dumps(recs[0]))["key_id"]
    p = _verify(state / "journal.db")
    assert p.returncode == 0 and p.stdout.startswith("OK: 38 records"), p.stdout + p.stderr
    shown = subprocess.run([EDGED, "keys", "show", "--state-dir", str(state)],
                           capture_output=True, text=True)  # fmt: skip
    assert shown.returncode == 0 and f"key id: {recs[0]['key_id']}" in shown.stdout


def test_an_epoch_begins_each_day_too(state):
    """R9: with few records, the key still changes when epoch_seconds have passed (wall
    clock, so a restart does not postpone it)."""
    clock = FakeClock()
    with _open(state, clock, every=1000, epoch_seconds=3600) as j:
        j.append("door.opened", door="main")
        clock.advance(3599)
        j.append("door.opened", door="main")
        assert j.epoch == 0
    clock.advance(2)
    with _open(state, clock, every=1000, epoch_seconds=3600) as j:
        j.append("door.opened", door="main")
        assert j.epoch == 1
    keys = load_keys(state)
    assert verify_journal(state / "journal.db", {keys.key_id: keys.public_key}).ok


def _stolen_rewrite(state: Path, tmp_path: Path, *, relabel: bool) -> tuple[Path, list[bytes]]:
    """A thief with the key in force (epoch 3) rewrites record 5 and re-signs and
    re-chains everything after it; the forged journal file and its wire records."""
    stolen = load_keys(state).store.current()
    assert stolen.epoch == 3
    forged_db = tmp_path / f"forged-{relabel}.db"
    shutil.copy(state / "journal.db", forged_db)
    db = sqlite3.connect(forged_db)
    rows = db.execute("SELECT seq, body FROM records ORDER BY seq").fetchall()
    prev, wires = None, []
    db.execute("DROP TRIGGER records_no_update")
    for seq, body in rows:
        rec = json.loads(body)
        if seq >= 5:
            if seq == 5:
                rec["person"] = "S9"
            rec["prev"] = prev
            if relabel:
                rec["epoch"] = 3
            b = dumps_checked(rec)
            h = digest(b)
            sig = stolen.sign(bytes.fromhex(h)).hex()
            db.execute("UPDATE records SET body = ?, hash = ?, sig = ?, prev = ? WHERE seq = ?",
                       (b.decode(), h, sig, rec["prev"], seq))  # fmt: skip
            body = b.decode()
        else:
            h = digest(body.encode())
            sig = db.execute("SELECT sig FROM records WHERE seq = ?", (seq,)).fetchone()[0]
        prev = h
        wires.append(dumps_checked({**json.loads(body), "hash": h, "sig": sig}))
    db.commit()
    db.close()
    return forged_db, wires


@pytest.mark.parametrize("relabel", [False, True], ids=["same-epochs", "relabelled"])
def test_a_key_stolen_in_epoch_3_cannot_rewrite_epoch_0(state, tmp_path, relabel):
    """R9, R13: the thief's rewrite is refused by `edged verify` and by the collector
    (which had received nothing yet), both naming the epoch: a record of epoch 0 does not
    verify under the stolen key, and a record relabelled as epoch 3 lies outside it."""
    _grow(state, 35).close()
    forged_db, wires = _stolen_rewrite(state, tmp_path, relabel=relabel)
    p = _verify(forged_db, state / PUBLIC_KEY_FILE)
    assert p.returncode == 1, p.stdout
    want = ("signed as epoch 3, whose records are seqs 31.." if relabel
            else "bad signature (epoch 0)")  # fmt: skip
    assert p.stdout.startswith("FAIL: seq 5 bad signature:") and want in p.stdout, p.stdout
    col = _collector(state, tmp_path)
    try:
        col.ingest_batch([(SITE, DEVICE, w) for w in wires])
        assert held(col).seqs(SITE, DEVICE) == [1, 2, 3, 4]
        # The collector has seen none of the certificates yet: epoch 3 is unknown to it.
        if relabel:
            want = "signed in epoch 3, which no certificate introduces (newest: 0)"
        alarms = held(col).alarms()
        assert ("bad_record", f"seq 5: {want}") in alarms, alarms
    finally:
        col.close()


def test_the_collector_follows_the_epochs_and_keeps_their_certificates(state, tmp_path):
    """R9, R13, R14: an honest device's records of four epochs are stored, each checked
    under its epoch's key (every run's last record and then the audit of each); the
    checkpoints signed by later keys are cosigned; a collector started afresh on the same
    store knows the epochs from the certificates it kept, even with the records gone."""
    with _grow(state, 35, cp=7) as j:
        wires = [r.wire() for r in j.records()]
    col = _collector(state, tmp_path)
    try:
        for i in range(0, len(wires), 4):  # bursts that cut the epochs' certificates apart
            col.ingest_batch([(SITE, DEVICE, w) for w in wires[i : i + 4]])
        while col.unchecked():
            col.audit_signatures()
        assert held(col).seqs(SITE, DEVICE) == list(range(1, 45))
        assert held(col).alarms() == []
        # Checkpoints signed in epochs 0, 1, 2, 3 and 3 (docs/proofs.md).
        cosigned = [size for size, _n in col.store.trees.cosigned((SITE, DEVICE))]
        assert cosigned == [7, 15, 23, 31, 39]
        assert len(col.store.trees.epoch_certs((SITE, DEVICE))) == 4
        # The console's devices page shows the epoch that signs now.
        assert col.store.reports.head_records()[(SITE, DEVICE)]["epoch"] == 4
    finally:
        col.close()
    with sqlite3.connect(tmp_path / "central.db") as c:
        c.execute("DROP TRIGGER records_no_delete")
        c.execute("DELETE FROM records WHERE seq <= 41")  # as retention would
    col = _collector(state, tmp_path)  # afresh, on the same store and keys
    try:
        chain = col.epochs.chain((SITE, DEVICE))
        assert chain is not None and chain.latest.number == 4
    finally:
        col.close()


def test_an_epoch_change_cut_by_a_crash_is_finished_or_dropped(state, monkeypatch):
    """R9, R14: the certificate committed but the key store not yet told (power lost):
    opening the journal puts the next key in force and erases the old one. A next key
    made but whose certificate never committed is dropped."""

    def lost_power(self, wire):
        raise KeyboardInterrupt("power lost")

    monkeypatch.setattr(FileKeyStore, "commit", lost_power)
    j = _open(state)
    with pytest.raises(KeyboardInterrupt):
        for i in range(12):
            j.append("door.opened", door="main", n=i)
    j.close()
    assert (state / NEXT_KEY_FILE).exists() and (state / SIGNING_KEY_FILE).exists()
    monkeypatch.undo()
    with _open(state) as j:
        assert j.epoch == 1
        j.append("door.opened", door="main")
    assert not (state / NEXT_KEY_FILE).exists() and not (state / SIGNING_KEY_FILE).exists()
    load_keys(state).store.prepare(2)  # made, and then the power went
    with _open(state) as j:
        assert j.epoch == 1 and not (state / NEXT_KEY_FILE).exists()
        j.append("door.opened", door="main")
    keys = load_keys(state)
    assert verify_journal(state / "journal.db", {keys.key_id: keys.public_key}).ok


def test_a_journal_put_back_takes_its_later_epochs_from_the_key_store(state, tmp_path):
    """R9, R10: an older copy of the journal put back under a key store that moved on:
    the journal takes the certificates it lacks from the key store (each checked), and
    since the key store saw the journal at the newest certificate, a signed rollback
    record says so and carries the seqs past it. Everything still verifies."""
    _grow(state, 15).close()  # epoch 1, head 16
    shutil.copy(state / "journal.db", tmp_path / "old.db")
    _grow(state, 20).close()  # epoch 3
    (state / "journal.db").unlink()
    for side in ("-wal", "-shm"):
        Path(f"{state / 'journal.db'}{side}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "old.db", state / "journal.db")
    with _open(state) as j:
        assert j.epoch == 3
        rb = j.last_of_type("alarm.journal_rollback")
        assert rb is not None and rb["found_seq"] == 16 and rb["known_seq"] == 30
        assert rb["source"] == "key store" and rb["seq"] == 31 and rb["epoch"] == 3
        j.append("door.opened", door="main")
    keys = load_keys(state)
    result = verify_journal(state / "journal.db", {keys.key_id: keys.public_key})
    assert result.ok and result.discontinuities[0]["found_seq"] == 16, result.summary()


def test_a_journal_beyond_its_key_store_refuses_to_sign(state, tmp_path):
    """R9, R12: a key store put back to an older epoch than the journal has signed in
    cannot continue it: the key in force is lost, and the error says so and what to do."""
    _grow(state, 15).close()
    shutil.copy(state / EPOCH_KEY_FILE, tmp_path / "old.key")
    _grow(state, 10).close()
    shutil.copy(tmp_path / "old.key", state / EPOCH_KEY_FILE)
    with pytest.raises(JournalError, match="signed up to epoch 2 but the key store holds the key"
                       " of epoch 1; the key in force is lost"):  # fmt: skip
        _open(state)


def test_a_key_store_that_cannot_finish_the_change_does_not_stop_the_door(state, monkeypatch):
    """R9, R14: the certificate is committed but the key store cannot erase or rename
    (a full or failing card): the append still returns, the next key signs from then
    on, and the change is finished when the journal is opened again."""

    def disk_full(self, wire):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(FileKeyStore, "commit", disk_full)
    with _open(state) as j:
        recs = [j.append("door.opened", door="main", n=i) for i in range(12)]
        assert j.epoch == 1 and recs[-1].fields["epoch"] == 1
    monkeypatch.undo()
    with _open(state) as j:
        assert j.epoch == 1
    assert not (state / NEXT_KEY_FILE).exists() and not (state / SIGNING_KEY_FILE).exists()
    keys = load_keys(state)
    assert verify_journal(state / "journal.db", {keys.key_id: keys.public_key}).ok


def _proof(args: list[str], out: Path) -> dict:
    p = subprocess.run([EDGED, "prove", *args, "--out", str(out)], capture_output=True,
                       text=True)  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(out.read_text())


def test_proofs_across_epochs_check_with_go_and_edged(state, tmp_path, go_verifier):
    """R9, R13: a record of epoch 1 proven in a checkpoint signed in epoch 4; the proof
    carries the epoch certificates, and Go (crypto/ed25519, sumdb/note and tlog) and
    `edged verify --proof` accept it from the enrolled identity alone. A forged
    certificate, a record re-signed with a later key, or a checkpoint of a size its
    signing epoch cannot have signed: both refuse."""
    _grow(state, 35, cp=5).close()
    db, pub = state / "journal.db", str(state / PUBLIC_KEY_FILE)
    doc = _proof(["--db", str(db), "--seq", "12"], tmp_path / "inc.json")
    assert len(doc["epochs"]) == 4 and json.loads(doc["record"])["epoch"] == 1
    cons = tmp_path / "cons.json"
    _proof(["--db", str(db), "--consistency", "5", "42"], cons)
    for path in (tmp_path / "inc.json", cons):
        go = subprocess.run([str(go_verifier), str(path)], capture_output=True, text=True)
        assert go.returncode == 0 and go.stdout.startswith("OK"), go.stdout
        mine = subprocess.run([EDGED, "verify", "--proof", str(path), "--pubkey", pub],
                              capture_output=True, text=True)  # fmt: skip
        assert mine.returncode == 0 and mine.stdout.startswith("OK"), mine.stdout
    stolen = load_keys(state).store.current()
    cert = json.loads(doc["epochs"][0]["record"])
    cert["next_key"] = cert["next_key"][::-1]
    forged_cert = dumps_checked(cert).decode()
    resigned = stolen.sign(bytes.fromhex(digest(doc["record"].encode()))).hex()
    bad = {
        "epoch 1 certificate: bad signature (epoch 0)":
            {**doc, "epochs": [{"record": forged_cert, "sig": doc["epochs"][0]["sig"]},
                               *doc["epochs"][1:]]},
        "record seq 12: bad signature (epoch 1)": {**doc, "sig": resigned},
        "not signed by edged/tokyo/door-1 in any of its epochs 0..1":
            {**doc, "epochs": doc["epochs"][:1]},
    }  # fmt: skip
    for n, (name, d) in enumerate(bad.items()):
        path = tmp_path / f"bad{n}.json"
        path.write_text(json.dumps(d))
        go = subprocess.run([str(go_verifier), str(path)], capture_output=True, text=True)
        assert go.returncode == 1 and go.stdout.startswith("FAIL"), (name, go.stdout)
        mine = subprocess.run([EDGED, "verify", "--proof", str(path), "--pubkey", pub],
                              capture_output=True, text=True)  # fmt: skip
        assert mine.returncode == 1 and mine.stdout == f"FAIL: {name}\n", mine.stdout


def test_a_checkpoint_a_later_key_signs_for_an_earlier_size_is_refused(state):
    """R9, R13: the thief's key of epoch 3 signs a checkpoint of a small tree (a history
    rewritten from the start): its size is below the leaf where epoch 3 began, so no
    one takes it, even though the signature is the device's."""
    from edged.protocol.note import Checkpoint, NoteError, origin_of, sign_note

    with _grow(state, 35) as j:
        chain = j.chain
    stolen = load_keys(state).store.current()
    origin = origin_of(SITE, DEVICE)
    note = sign_note(Checkpoint(origin, 12, bytes(32)).text(), origin, stolen.public_key,
                     stolen.sign)  # fmt: skip
    with pytest.raises(NoteError, match="signed in epoch 3, whose checkpoints are of"):
        chain.open_checkpoint(note, origin)
    with JournalReader(state / "journal.db") as r:
        assert r.head()[0] == 38


def test_a_running_door_changes_keys_and_the_central_copy_follows(tmp_path, mosquitto):
    """R9, R13: the daemon on the simulated rig with a new key every 10 records, through
    a real Mosquitto to the collector, across a daemon restart: every record stored once
    and in order, each checked under its epoch's key, no alarm; the old keys are gone
    from the device."""
    from tests.conftest import require_pcscd
    from tests.helpers.site import Running, Site

    require_pcscd()
    site = Site(tmp_path, mosquitto.port)
    text = site.config.read_text()
    assert "\nepoch_records = 100000 " in text
    site.config.write_text(text.replace("\nepoch_records = 100000 ", "\nepoch_records = 10 ", 1))
    col = site.collector()
    run = Running(site.cfg())
    try:
        run.presses(25)
        run.stop()
        run = Running(site.cfg())
        run.presses(25)
        head, epoch = run.d.call(lambda: (run.d.journal.head()[0], run.d.journal.epoch))
        dev = ("tokyo-hq", "door-3f-1")
        assert col.wait_for(lambda: held(col).seqs(*dev)[:head] == list(range(1, head + 1)), 60)
        assert col.wait_for(lambda: col.unchecked() == 0, timeout=30)
        with col._lock:
            certs = [json.loads(w)["seq"] for w in col.store.trees.epoch_certs(dev)]
        assert epoch >= 5 and len([s for s in certs if s <= head]) == epoch
        assert held(col).alarms() == []
    finally:
        run.stop()
        col.close()
    assert not (site.state / SIGNING_KEY_FILE).exists()
    assert json.loads((site.state / EPOCH_KEY_FILE).read_text())["epoch"] >= epoch


def test_a_fault_alarm_signed_with_the_key_in_force_is_taken(state, tmp_path):
    """R8, R9: while its journal cannot record, a device sends its alarm signed with the
    key in force (epoch 3 here, the identity key long erased); the collector knows that
    key from the certificates it stored and raises journal_unavailable. The same alarm
    signed by a key it does not know is ignored."""
    from edged.protocol.signed import sign_doc

    with _grow(state, 35) as j:
        wires = [r.wire() for r in j.records()]
    col = _collector(state, tmp_path)
    try:
        col.ingest_batch([(SITE, DEVICE, w) for w in wires])
        doc = {"type": "journal.unavailable", "site": SITE, "device": DEVICE,
               "since": "2026-11-27T00:00:00.000Z", "unrecorded": 3, "error": "EIO"}  # fmt: skip
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        col._journal_unavailable(
            SITE, DEVICE, json.dumps(sign_doc(doc, Ed25519PrivateKey.generate())).encode()
        )
        assert held(col).alarms() == []
        current = load_keys(state).store.current()
        assert current.epoch == 3
        col._journal_unavailable(SITE, DEVICE, json.dumps(sign_doc(doc, current.private)).encode())
        assert [a[0] for a in held(col).alarms()] == ["journal_unavailable"]
    finally:
        col.close()


def test_a_certificate_that_lies_about_its_leaf_is_refused(tmp_path):
    """R9: an epoch certificate's leaf bounds the checkpoints its key may sign, so it
    must be the certificate's own leaf: one re-signed (with every key, as only the
    device could) to name another leaf fails `edged verify` at that record."""
    from edged.clock import FakeClock as Clock
    from edged.device.keys import DeviceKeys
    from edged.device.keystore import MemoryKeyStore

    kept = {}

    class Keeping(MemoryKeyStore):
        def current(self):
            k = super().current()
            kept[k.epoch] = k
            return k

        def prepare(self, epoch):
            k = super().prepare(epoch)
            kept[epoch] = k
            return k

    base = DeviceKeys.generate()
    keys = DeviceKeys(base.public_key, base.key_id, base.fingerprint_secret,
                      Keeping(base.store.current().private))  # fmt: skip
    db = tmp_path / "j.db"
    with Journal(db, keys, Clock(), boot_id="b", site=SITE, device=DEVICE,
                 checkpoint_every=1000, epoch_records=10) as j:  # fmt: skip
        for i in range(25):
            j.append("door.opened", door="main", n=i)
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER records_no_update")
    prev = None
    for seq, body in conn.execute("SELECT seq, body FROM records ORDER BY seq").fetchall():
        rec = json.loads(body)
        if seq >= 10:
            if seq == 10:
                assert rec["type"] == "key.epoch"
                rec["leaf"] = 3
            rec["prev"] = prev
            b = dumps_checked(rec)
            h = digest(b)
            sig = kept[rec["epoch"]].sign(bytes.fromhex(h)).hex()
            conn.execute("UPDATE records SET body = ?, hash = ?, sig = ?, prev = ? WHERE seq = ?",
                         (b.decode(), h, sig, prev, seq))  # fmt: skip
            prev = h
        else:
            prev = digest(body.encode())
    conn.execute("DROP TRIGGER epochs_no_delete")
    conn.execute("DELETE FROM epochs")  # the copies would disagree: the walk meets the lie
    conn.commit()
    conn.close()
    result = verify_journal(db, {keys.key_id: keys.public_key})
    assert not result.ok and result.first_bad_seq == 10, result.summary()
    assert "names leaf 3, it is 9" in result.detail
