"""Device keys and the command line, run as real processes (R9, R12)."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal
from edged.device.keys import init_keys, key_paths, load_keys
from edged.device.paths import PUBLIC_KEY_FILE
from edged.errors import KeyFileError
from tests.conftest import EDGED

pytestmark = pytest.mark.integration


def edged(*args: str, check: bool = False) -> subprocess.CompletedProcess:
    return subprocess.run([EDGED, *args], capture_output=True, text=True, timeout=60, check=check)


def test_keys_init_creates_private_files(tmp_path):
    """R12: key files 0600 in a 0700 directory; key id and public key printed."""
    d = tmp_path / "st"
    p = edged("keys", "init", "--state-dir", str(d))
    assert p.returncode == 0, p.stderr
    sk, pk, fp = key_paths(d)
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE(sk.stat().st_mode) == 0o600
    assert stat.S_IMODE(fp.stat().st_mode) == 0o600
    keys = load_keys(d)
    assert f"key id: {keys.key_id}" in p.stdout
    assert "BEGIN PUBLIC KEY" in p.stdout and "PRIVATE" not in p.stdout
    show = edged("keys", "show", "--state-dir", str(d))
    assert show.returncode == 0 and keys.key_id in show.stdout
    assert pk.read_text() in show.stdout


def test_keys_init_refuses_to_overwrite_unless_forced(tmp_path):
    d = tmp_path / "st"
    first = init_keys(d)
    p = edged("keys", "init", "--state-dir", str(d))
    assert p.returncode == 2 and "refusing to overwrite" in p.stderr and "--force" in p.stderr
    assert load_keys(d).key_id == first.key_id
    p = edged("keys", "init", "--state-dir", str(d), "--force")
    assert p.returncode == 0 and load_keys(d).key_id != first.key_id


@pytest.mark.parametrize("which", [0, 2])
def test_readable_key_file_is_refused_with_the_fix(tmp_path, which):
    """R12: a key others can read is refused, and the message says how to fix it."""
    d = tmp_path / "st"
    init_keys(d)
    path = key_paths(d)[which]
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match=rf"chmod 600 {path}"):
        load_keys(d)
    p = edged("keys", "show", "--state-dir", str(d))
    assert p.returncode == 2 and "chmod 600" in p.stderr and "Traceback" not in p.stderr


def test_symlinked_key_is_refused(tmp_path):
    d = tmp_path / "st"
    init_keys(d)
    sk = key_paths(d)[0]
    real = tmp_path / "elsewhere.key"
    sk.rename(real)
    sk.symlink_to(real)
    with pytest.raises(KeyFileError, match="symlink"):
        load_keys(d)


@pytest.fixture
def journal_dir(state_dir):
    with Journal(state_dir / "journal.db", load_keys(state_dir), FakeClock()) as j:
        for i in range(5):
            j.append("door.granted", person=f"P{i}")
    return state_dir


def test_verify_ok_prints_one_summary_line(journal_dir):
    """R9: exit 0 and `OK: N records, head seq S hash H`; says which key it used."""
    p = edged("verify", "--db", str(journal_dir / "journal.db"))
    assert p.returncode == 0
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("OK: 5 records, head seq 5 hash ")
    assert str(journal_dir / PUBLIC_KEY_FILE) in p.stderr
    j = edged("verify", "--db", str(journal_dir / "journal.db"), "--json")
    res = json.loads(j.stdout)
    assert res["ok"] is True and res["head_seq"] == 5 and len(res["head_hash"]) == 64


def test_verify_names_the_first_bad_seq(journal_dir):
    """R9: exit 1 naming the first bad seq and what is wrong."""
    db = journal_dir / "journal.db"
    c = sqlite3.connect(db)
    c.execute("DROP TRIGGER records_no_update")
    c.execute("UPDATE records SET body = replace(body, '\"P2\"', '\"P7\"') WHERE seq = 3")
    c.commit()
    c.close()
    p = edged("verify", "--db", str(db))
    assert p.returncode == 1 and p.stdout.startswith("FAIL: seq 3 modified")
    res = json.loads(edged("verify", "--db", str(db), "--json").stdout)
    assert (res["ok"], res["first_bad_seq"], res["problem"]) == (False, 3, "modified")


def test_verify_with_another_public_key_fails(journal_dir, tmp_path):
    """R9: a record signed by any key other than the one given fails as unknown key."""
    other = init_keys(tmp_path / "other")
    p = edged(
        "verify",
        "--db",
        str(journal_dir / "journal.db"),
        "--pubkey",
        str(tmp_path / "other" / PUBLIC_KEY_FILE),
    )
    assert p.returncode == 1 and "unknown key" in p.stdout and other.key_id not in p.stdout


@pytest.mark.parametrize(
    "content,reason",
    [
        (b"", "empty file"),
        (b"SQLite format 3\x00" + b"\xff" * 2000, "not a readable"),
        (b"hello world\n" * 50, "not a readable"),
        (None, "no such file"),
    ],
)
def test_verify_of_non_journals_exits_2_with_one_line(tmp_path, state_dir, content, reason):
    db = state_dir / "journal.db"
    if content is not None:
        db.write_bytes(content)
    p = edged("verify", "--db", str(db))
    assert p.returncode == 2
    assert p.stdout.count("\n") == 1 and reason in p.stdout and "Traceback" not in p.stderr


def test_verify_of_other_sqlite_file_exits_2(tmp_path, state_dir):
    db = state_dir / "journal.db"
    c = sqlite3.connect(db)
    c.execute("CREATE TABLE records (x)")
    c.commit()
    c.close()
    p = edged("verify", "--db", str(db), "--json")
    assert p.returncode == 2 and "not an edged journal" in json.loads(p.stdout)["error"]


@pytest.mark.slow
def test_demo_leaves_a_verified_journal_and_runs_twice(tmp_path):
    """The README's first command: the daemon on simulated hardware, a scenario, a verified
    journal; harmless to repeat (R8, R9, R11)."""
    from tests.conftest import require_pcscd

    require_pcscd()
    d = tmp_path / "demo"
    first = edged("demo", "--state-dir", str(d), "--fast")
    assert first.returncode == 0, first.stdout + first.stderr
    for t in (
        "door.granted",
        "door.denied",
        "lockcheck.open",
        "lockcheck.confirmed",
        "alarm.door_held_open",
        "alarm.tamper",
        "alarm.cabinet_unattended",
        "escort=A0001",
        "purpose=payroll",
        "reason=expired",
    ):
        assert t in first.stdout, t
    assert "keypad at main asks for: purpose" in first.stdout
    assert "the ledger (入退室管理表)" in first.stdout
    assert any(p.name.startswith("ledger-") and p.suffix == ".html" for p in d.iterdir())
    assert "expected a" not in first.stdout and "failed:" not in first.stdout
    assert "OK: " in first.stdout and (d / "journal.db").exists()
    second = edged("demo", "--state-dir", str(d), "--fast")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "== device key in" in second.stdout
    assert edged("verify", "--db", str(d / "journal.db")).returncode == 0
    text = (first.stdout + second.stdout + (d / "edged.log").read_text()).lower()
    assert "012e4cd9a1b2c3d4" not in text  # the demo card's raw IDm (R11)
    # Nor the PIN typed in the demo (R3); as a token, since hex hashes may contain "4821".
    from tests.conftest import has_token

    assert not has_token(text, "4821")
    key_pem = (d / "device_ed25519.key").read_text().splitlines()[1].lower()
    assert key_pem not in text  # nor key material (R12)


def test_a_torn_public_key_is_written_again_from_the_identity(tmp_path):
    """R12: a .pub left empty by a power cut is rewritten from the private identity key
    while that still exists (before the first epoch change erases it), so the device's
    identity is never lost to an unsynced file."""
    from edged.device.keys import init_keys, load_keys
    from edged.device.paths import PUBLIC_KEY_FILE

    state = tmp_path / "state"
    keys = init_keys(state)
    (state / PUBLIC_KEY_FILE).write_text("")
    assert load_keys(state).key_id == keys.key_id
    assert "BEGIN PUBLIC KEY" in (state / PUBLIC_KEY_FILE).read_text()
