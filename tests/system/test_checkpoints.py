"""Checkpoints that standard tooling reads (issue 17, R9, R10, R13): every checkpoint
record of a journal carries a C2SP checkpoint of its Merkle tree, signed as a note by the
device key; `edged prove` makes inclusion and consistency proofs; `edged verify` checks
the tree and the proofs; and Go's own golang.org/x/mod/sumdb/note and sumdb/tlog, built
here offline, accept them and refuse tampered ones."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal, verify_journal
from edged.device.keys import init_keys, load_keys
from tests.conftest import EDGED

pytestmark = pytest.mark.system


@pytest.fixture
def journal(tmp_path) -> Path:
    state = tmp_path / "state"
    init_keys(state)
    with Journal(state / "journal.db", load_keys(state), FakeClock(), boot_id="b",
                 checkpoint_every=10, site="tokyo", device="door-1") as j:  # fmt: skip
        for i in range(45):
            j.append("door.granted", door="main", area="handling", person=f"S{i % 7}")
    return state / "journal.db"


def _edged(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([EDGED, *args], capture_output=True, text=True)
    if ok:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


def _go(verifier: Path, doc: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(verifier), str(doc)], capture_output=True, text=True)


def test_checkpoints_are_signed_trees_that_go_and_edged_both_accept(journal, go_verifier):
    """R9, R13: each checkpoint's note opens with the device key and names the tree of
    the records before it; an inclusion proof and a consistency proof from `edged prove`
    check with `edged verify --proof` and with Go's note and tlog packages."""
    db = sqlite3.connect(journal)
    cps = [json.loads(b) for (b,) in db.execute(
        "SELECT body FROM records WHERE type = 'checkpoint' ORDER BY seq")]  # fmt: skip
    db.close()
    assert [c["tree_size"] for c in cps] == [10, 21, 32, 43]
    assert cps[0]["note"].startswith("edged/tokyo/door-1\n10\n")
    assert verify_journal(journal, {k.key_id: k.public_key for k in [load_keys(journal.parent)]}).ok
    pub = str(journal.parent / "device_ed25519.pub")
    inc, cons = journal.parent / "inc.json", journal.parent / "cons.json"
    _edged("prove", "--db", str(journal), "--seq", "17", "--out", str(inc))
    _edged("prove", "--db", str(journal), "--consistency", "10", "43", "--out", str(cons))
    doc = json.loads(inc.read_text())
    assert doc["leaf"] == 16 and json.loads(doc["record"])["seq"] == 17
    assert doc["checkpoint"].split("\n")[1] == "43"  # the newest checkpoint
    p = _edged("verify", "--proof", str(inc), "--pubkey", pub)
    assert p.stdout.startswith("OK: record seq 17 is leaf 16 of edged/tokyo/door-1's log of 43")
    assert "extends its log of 10" in _edged("verify", "--proof", str(cons), "--pubkey", pub).stdout
    assert _go(go_verifier, inc).stdout.startswith("OK: leaf 16 in edged/tokyo/door-1's log of 43")
    assert "log of 43 extends its log of 10" in _go(go_verifier, cons).stdout


def test_tampered_proofs_are_refused_by_go_and_by_edged(journal, go_verifier, tmp_path):
    """R9: a record changed in the proof, a proof hash changed, a checkpoint's size
    changed under its signature, another key's verifier: Go and edged both say no."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from edged.protocol.note import verifier_key

    pub = str(journal.parent / "device_ed25519.pub")
    src = tmp_path / "inc.json"
    _edged("prove", "--db", str(journal), "--seq", "5", "--size", "10", "--out", str(src))
    good = json.loads(src.read_text())
    other = verifier_key("edged/tokyo/door-1", Ed25519PrivateKey.generate().public_key())
    flipped = good["proof"][0][:-4] + ("AAA=" if not good["proof"][0].endswith("AAA=") else "BBB=")
    changed = {**json.loads(good["record"]), "person": "S9"}
    bad_docs = {
        "record": {**good, "record": json.dumps(changed, sort_keys=True, separators=(",", ":"))},
        "proof": {**good, "proof": [flipped, *good["proof"][1:]]},
        "size": {**good, "checkpoint": good["checkpoint"].replace("\n10\n", "\n11\n", 1)},
        "key": {**good, "verifier_key": other},
    }
    for name, doc in bad_docs.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        go = _go(go_verifier, path)
        assert go.returncode == 1 and go.stdout.startswith("FAIL"), (name, go.stdout)
        if name != "key":  # edged checks against the enrolled key, not the document's
            p = _edged("verify", "--proof", str(path), "--pubkey", pub, ok=False)
            assert p.returncode == 1 and p.stdout.startswith("FAIL"), (name, p.stdout)


def test_a_pruned_journal_still_proves_what_it_kept(tmp_path, go_verifier):
    """R9, R14: after pruning, the tree keeps only the hashes that stand for the pruned
    records (storage stays bounded), `edged verify` grows the tree again from them and
    the kept records, and a kept record's proof still checks in Go; a changed kept hash
    is caught by verify against the signed checkpoints."""
    state = tmp_path / "state"
    init_keys(state)
    keys = load_keys(state)
    path = state / "journal.db"
    with Journal(path, keys, FakeClock(), boot_id="b", checkpoint_every=10, site="tokyo",
                 device="door-1") as j:  # fmt: skip
        for i in range(60):
            j.append("door.opened", door="main", n=i)
        before = j.conn.execute("SELECT count(*) FROM tree_hashes").fetchone()[0]
        j.prune(40, receipted=j.head()[0])
        for i in range(15):
            j.append("door.closed", door="main", n=i)
        after = j.conn.execute("SELECT count(*) FROM tree_hashes WHERE idx < 70").fetchone()[0]
    assert after < 10 < before  # the pruned part: a handful of hashes, not 2 per record
    trusted = {keys.key_id: keys.public_key}
    assert verify_journal(path, trusted).ok, verify_journal(path, trusted).summary()
    doc = tmp_path / "kept.json"
    _edged("prove", "--db", str(path), "--seq", "70", "--out", str(doc))
    assert _go(go_verifier, doc).returncode == 0
    with sqlite3.connect(path) as c:  # the hashes standing for the pruned records
        idx = c.execute("SELECT min(idx) FROM tree_hashes").fetchone()[0]
        c.execute("UPDATE tree_hashes SET hash = zeroblob(32) WHERE idx = ?", (idx,))
    res = verify_journal(path, trusted)
    assert not res.ok and res.problem == "tree", res.summary()


def test_a_journal_from_before_the_tree_gets_one(tmp_path):
    """R9: a journal written before the Merkle tree existed gets its tree from its records
    when opened; checkpoints from then on are signed trees of every record."""
    state = tmp_path / "state"
    init_keys(state)
    keys = load_keys(state)
    path = state / "journal.db"
    with Journal(path, keys, FakeClock(), boot_id="b", checkpoint_every=1000) as j:
        for i in range(25):
            j.append("door.opened", door="main", n=i)
    with sqlite3.connect(path) as c:
        c.execute("DROP TABLE tree_hashes")
        c.execute("DROP TABLE tree_offsets")
    with Journal(path, keys, FakeClock(), boot_id="b", checkpoint_every=1000) as j:
        cp = j.checkpoint()
    assert json.loads(cp.body)["tree_size"] == 25
    assert verify_journal(path, {keys.key_id: keys.public_key}).ok


def test_a_journal_tells_a_cosigned_checkpoint_it_does_not_hold(tmp_path):
    """R9, R10: against a checkpoint someone else signed, a journal with fewer records is
    a rollback, one with another tree at that size a fork, the same history agrees."""
    from edged.device.journal.tree import stored_reader
    from edged.protocol import tlog

    def journal(path, n, changed_at=None):
        state = path / "state"
        init_keys(state)
        with Journal(state / "journal.db", load_keys(state), FakeClock(), boot_id="b",
                     site="tokyo", device="door-1") as j:  # fmt: skip
            for i in range(n):
                j.append("door.opened", door="main", n=-1 if i == changed_at else i)
        return state / "journal.db"

    seen = journal(tmp_path / "a", 30)
    with Journal(seen, load_keys(seen.parent), FakeClock(), boot_id="b") as j:
        root20 = tlog.tree_hash(20, stored_reader(j.conn))
        assert j.contradicts(20, root20) is None
    other = journal(tmp_path / "b", 25, changed_at=3)  # another history (and key)
    with Journal(other, load_keys(other.parent), FakeClock(), boot_id="b") as j:
        assert j.contradicts(20, root20) == "fork"
        assert j.contradicts(26, root20) == "rollback"
