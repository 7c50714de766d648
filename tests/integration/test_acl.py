"""The access list: import, storage, validation (R1-R5, R11, R12)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from edged.core.policy import parse_stored, parse_window
from edged.device.acl import (
    hash_pin,
    import_admin_file,
    load_active,
    pin_pepper,
    save_active,
    verify_pin,
)
from edged.errors import ConfigError
from edged.protocol.privacy import CardFingerprinter
from tests.conftest import EDGED, has_token
from tests.helpers.examples import EXAMPLE_ACL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
CONFIG = ROOT / "config" / "edged.toml"
AREAS = {"handling", "server-room"}
FP = CardFingerprinter(b"f" * 32)
PEPPER = pin_pepper(b"f" * 32)
RAW_IDS = ["012E4CD9A1B2C3D4", "04A1B2C3", "04C5D6E7F80912", "0123456789ABCDEF", "04112233"]
PINS = ["4821", "7350"]


def test_import_stores_fingerprints_and_pin_hashes_only(tmp_path):
    """R3, R11: raw card ids and PINs never reach the stored list."""
    acl = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=1, areas=AREAS)
    path = save_active(tmp_path, acl)
    text = path.read_text()
    for raw in RAW_IDS:
        assert raw.lower() not in text.lower()
    for pin in PINS:
        assert f'"{pin}"' not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    s1 = acl.people["S1001"]
    assert s1.cards == (FP.fingerprint(bytes.fromhex("012E4CD9A1B2C3D4")),)
    assert s1.pin.startswith("scrypt+hmac$32768$8$1$") and verify_pin("4821", s1.pin, PEPPER)
    assert not verify_pin("4822", s1.pin, PEPPER)
    assert acl.by_card(s1.cards[0]) is s1
    assert acl.card_key == FP.key_id


def test_stored_list_survives_reload(tmp_path):
    """R5: the active list survives restarts, byte for byte."""
    acl = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=4, areas=AREAS)
    save_active(tmp_path, acl)
    again = load_active(tmp_path, AREAS)
    assert again is not None and again.sha256 == acl.sha256 and again.version == 4
    assert again.people["V0042"].role == "visitor"


def test_replacement_is_atomic(tmp_path, monkeypatch):
    """R5: a failed write leaves the previous list in force, whole."""
    a1 = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=1, areas=AREAS)
    save_active(tmp_path, a1)
    a2 = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=2, areas=AREAS)

    def boom(*_a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_active(tmp_path, a2)
    monkeypatch.undo()
    assert load_active(tmp_path, AREAS).version == 1


def write(tmp_path, body: str, name="acl.toml") -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


BASE = """[[people]]
id = "S1"
name = "A"
role = "staff"
cards = ["04A1B2C3"]
areas = ["handling"]
valid_from = 2026-04-01
valid_until = 2027-03-31
"""


@pytest.mark.parametrize(
    "edit,where,reason",
    [
        (("2027-03-31", "2027-04-03"), "people[0][S1].valid_until", "366 days"),
        (('id = "S1"', 'id = "123456789018"'), "people[0].id", "Individual Number"),
        (('["handling"]', '["vault"]'), "people[0][S1].areas", "no area 'vault'"),
        (('["04A1B2C3"]', '["XYZ"]'), "people[0][S1].cards", "not hexadecimal"),
        (('["04A1B2C3"]', '["04A1B2"]'), "people[0][S1].cards", "3 bytes"),
        (('["04A1B2C3"]', '["piv:bm90IGEga2V5"]'), "people[0][S1].cards", "base64 of a public"),
        (('["04A1B2C3"]', '["piv:***"]'), "people[0][S1].cards", "base64 of a public key"),
        (('role = "staff"', 'role = "boss"'), "people[0][S1].role", "must be one of"),
        (('role = "staff"', 'role = "staff"\npin = "12"'), "people[0][S1].pin", "4 to 8 digits"),
        (
            ('role = "staff"', 'role = "staff"\nwindows = ["someday 9-5"]'),
            "people[0][S1].windows",
            "not like",
        ),
        (('role = "staff"', 'role = "staff"\nbadge = 1'), "people[0][S1].badge", "unknown key"),
        (('name = "A"', 'name = "番号 1234 5678 9018"'), "people[0][S1].name", "Individual Number"),
        (
            ("valid_until = 2027-03-31", "valid_until = 2026-03-31"),
            "people[0][S1].valid_until",
            "before valid_from",
        ),
    ],
)
def test_admin_file_errors_name_file_entry_field(tmp_path, edit, where, reason):
    """R5, R11: a bad admin file gets an error naming the file, the entry and the field."""
    assert edit[0] in BASE
    path = write(tmp_path, BASE.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as e:
        import_admin_file(path, FP, site="s", version=1, areas=AREAS)
    msg = str(e.value)
    assert msg.startswith(f"{path}: {where}: ") and reason in msg, msg
    assert "1234 5678 9018" not in msg


def test_duplicate_cards_and_ids_are_refused(tmp_path):
    path = write(tmp_path, BASE + BASE.replace('id = "S1"', 'id = "S2"'))
    with pytest.raises(ConfigError, match="also listed for 'S1'"):
        import_admin_file(path, FP, site="s", version=1, areas=AREAS)
    path = write(tmp_path, BASE + BASE.replace('"04A1B2C3"', '"04A1B2C4"'))
    with pytest.raises(ConfigError, match="duplicate id 'S1'"):
        import_admin_file(path, FP, site="s", version=1, areas=AREAS)


def test_csv_import(tmp_path):
    csv_path = write(
        tmp_path,
        "id,name,role,cards,areas,valid_from,valid_until,windows,escort,pin\n"
        "S1,A,staff,04A1B2C3 04A1B2C4,handling server-room,2026-04-01,2027-03-31,"
        "mon-fri 08:00-18:00;sat 09:00-12:00,yes,123456\n"
        "V1,B,visitor,04A1B2C5,handling,2026-11-01,2026-11-30,,no,\n",
        "acl.csv",
    )
    acl = import_admin_file(csv_path, FP, site="s", version=1, areas=AREAS)
    s1 = acl.people["S1"]
    assert len(s1.cards) == 2 and s1.escort and s1.areas == {"handling", "server-room"}
    assert s1.windows == ("mon-fri 08:00-18:00", "sat 09:00-12:00")
    assert verify_pin("123456", s1.pin, PEPPER) and acl.people["V1"].pin is None
    bad = write(tmp_path, "id,name\nS1,A\n", "bad.csv")
    with pytest.raises(ConfigError, match="missing column"):
        import_admin_file(bad, FP, site="s", version=1, areas=AREAS)


@pytest.mark.parametrize(
    "text,days,start,end",
    [
        ("mon-fri 08:00-20:00", {0, 1, 2, 3, 4}, 480, 1200),
        ("sat,sun 00:00-24:00", {5, 6}, 0, 1440),
        ("fri-mon 22:00-23:30", {4, 5, 6, 0}, 1320, 1410),
    ],
)
def test_time_windows(text, days, start, end):
    assert parse_window(text) == (frozenset(days), start, end)


@pytest.mark.parametrize("bad", ["mon 20:00-08:00", "xyz 08:00-09:00", "mon 08:60-09:00", ""])
def test_bad_time_windows(bad):
    with pytest.raises(ValueError):
        parse_window(bad)


def test_stored_list_refuses_raw_values(tmp_path):
    """R11: a stored list with a raw card id or a clear PIN is refused as a whole."""
    acl = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=1, areas=AREAS)
    doc = acl.to_json()
    doc["people"][0]["cards"] = ["012E4CD9A1B2C3D4"]
    with pytest.raises(ConfigError, match="fingerprints only"):
        parse_stored(json.dumps(doc).encode(), "x.json", AREAS)
    doc = acl.to_json()
    doc["people"][0]["pin"] = "4821"
    with pytest.raises(ConfigError, match="hashes only"):
        parse_stored(json.dumps(doc).encode(), "x.json", AREAS)
    with pytest.raises(ConfigError, match="larger than"):
        parse_stored(b" " * (2 << 20), "x.json")


def test_pin_hash_is_salted_and_malformed_hashes_fail_closed():
    a, b = hash_pin("4821", PEPPER), hash_pin("4821", PEPPER)
    assert a != b and verify_pin("4821", a, PEPPER) and verify_pin("4821", b, PEPPER)
    for bad in ("", "scrypt$1$2", "md5$x$y$z$a$b", "scrypt+hmac$99999999$8$1$AA==$AA=="):
        assert verify_pin("4821", bad, PEPPER) is False


def test_a_pin_hash_without_the_card_secret_confirms_nothing():
    """R3, R19: what crosses the network (a signed list's PIN hash) cannot be guessed: the
    same scrypt without the device's pepper does not confirm even the right PIN, so no
    offline search over the 10,000 4-digit PINs can succeed; with the pepper it does."""
    stored = hash_pin("4821", PEPPER)
    _scheme, n, r, p, salt, key = stored.split("$")
    unpeppered = Scrypt(
        salt=base64.b64decode(salt), length=32, n=int(n), r=int(r), p=int(p)
    ).derive(b"4821")
    assert unpeppered != base64.b64decode(key)
    assert not verify_pin("4821", stored, pin_pepper(b"g" * 32))  # another site's secret
    assert verify_pin("4821", stored, PEPPER)


def test_an_unpeppered_stored_hash_is_refused_with_its_reason(tmp_path):
    """R3, R19: a list from before the pepper is refused, saying how to fix it."""
    acl = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=1, areas=AREAS)
    doc = acl.to_json()
    doc["people"][0]["pin"] = "scrypt$32768$8$1$AAAA$BBBB"
    with pytest.raises(ConfigError, match="unpeppered PIN hash"):
        parse_stored(json.dumps(doc).encode(), "acl.json", AREAS)


def test_expiring_lists_people_within_30_days():
    """R5: rights ending within 30 days are listed, ended ones are not."""
    acl = import_admin_file(EXAMPLE_ACL, FP, site="tokyo-hq", version=1, areas=AREAS)
    soon = acl.expiring(dt.date(2026, 12, 5), 30)
    assert [p.id for p in soon] == ["V0042"]
    assert [p.id for p in acl.expiring(dt.date(2027, 3, 10), 30)][:1] == ["A0001"]


def test_acl_cli_import_show_and_version_rule(tmp_path):
    """R5: `edged acl import` / `show`; versions only move forward."""
    state = tmp_path / "st"
    subprocess.run(
        [EDGED, "keys", "init", "--state-dir", str(state)], check=True, capture_output=True
    )
    cmd = [
        EDGED,
        "acl",
        "import",
        str(EXAMPLE_ACL),
        "--config",
        str(CONFIG),
        "--state-dir",
        str(state),
    ]
    first = subprocess.run(cmd, capture_output=True, text=True)
    assert first.returncode == 0 and "version 1 (6 people)" in first.stdout
    show = subprocess.run(
        [EDGED, "acl", "show", "--config", str(CONFIG), "--state-dir", str(state)],
        capture_output=True,
        text=True,
    )
    assert show.returncode == 0 and "S1001" in show.stdout and "Yamada Taro" in show.stdout
    assert not has_token(show.stdout, "4821") and "012E4CD9" not in show.stdout
    old = subprocess.run([*cmd, "--version", "1"], capture_output=True, text=True)
    assert old.returncode == 2 and "must be newer" in old.stderr
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    assert load_active(state, AREAS).version == 2


def test_daemon_refuses_a_list_made_for_another_device(tmp_path):
    """R12: fingerprints made with another device's secret are not accepted (deny all)."""
    from edged.clock import FakeClock
    from edged.device.config import load_config
    from edged.device.daemon import Daemon
    from edged.device.keys import init_keys

    cfg = load_config(CONFIG, state_dir=tmp_path / "st")
    init_keys(cfg.state_dir)
    other = CardFingerprinter(b"o" * 32)
    save_active(
        cfg.state_dir,
        import_admin_file(EXAMPLE_ACL, other, site="tokyo-hq", version=1, areas=AREAS),
    )
    d = Daemon(cfg, clock=FakeClock())
    d._open_journal()
    try:
        assert d._stored_acl() is None
        last = list(d.journal.records())[-1]
        assert last.type == "alarm.acl_invalid" and "card key" in last.fields["error"]
    finally:
        d.journal.close()


def test_every_field_of_a_person_survives_storing(tmp_path):
    """R17, R18, R19, R1: custodianship, the right to approve carry-out, the approver,
    a visitor's company and host, and a PIN's life are kept in the stored list and read
    back the same (a field once fell out of the stored form unseen)."""
    import datetime as dt

    from edged.core.policy import AccessList, Person, parse_stored

    full = Person(
        "S1", "A", "staff", ("fp1:" + "1" * 32,), frozenset({"handling"}), dt.date(2026, 4, 1),
        dt.date(2027, 3, 31), (), True, "scrypt+hmac$1$1$1$AA==$AA==", frozenset({"cab-a"}),
        True, "S2", None, None, dt.date(2026, 4, 1), dt.date(2026, 10, 1), True,
    )  # fmt: skip
    visitor = Person(
        "V1", "B", "visitor", (), frozenset({"handling"}), dt.date(2026, 4, 1),
        dt.date(2026, 5, 1), company="Sato Systems", host="S1",
    )  # fmt: skip
    approver = Person("S2", "C", "staff", (), frozenset(), dt.date(2026, 4, 1),
                      dt.date(2027, 3, 31))  # fmt: skip
    acl = AccessList(1, "site", "k", {p.id: p for p in (full, visitor, approver)})
    again = parse_stored(acl.canonical(), "t")
    assert again.people == acl.people


def test_the_list_is_read_from_standard_input_by_the_service_user(tmp_path):
    """R5, R12 (issue 38, docs/install.md step 4): the service user cannot read a file in
    the administrator's home, so `edged acl import -` reads the list from standard input
    (`runuser -u edged -- edged acl import - < staff.toml`); TOML by default, CSV with
    --format csv; the same one-line errors name "-"."""
    state = tmp_path / "st"
    subprocess.run([EDGED, "keys", "init", "--state-dir", str(state)], check=True,
                   capture_output=True)  # fmt: skip
    cmd = [EDGED, "acl", "import", "-", "--config", str(CONFIG), "--state-dir", str(state)]
    toml = subprocess.run(cmd, input=EXAMPLE_ACL.read_bytes(), capture_output=True)
    assert toml.returncode == 0 and b"version 1 (6 people)" in toml.stdout, toml.stderr
    rows = ("id,name,role,cards,areas,valid_from,valid_until\n"
            "S1,A,staff,04A1B2C3,handling,2026-04-01,2027-03-31\n")  # fmt: skip
    as_csv = subprocess.run([*cmd, "--format", "csv"], input=rows.encode(), capture_output=True)
    assert as_csv.returncode == 0 and b"version 2 (1 people)" in as_csv.stdout, as_csv.stderr
    bad = subprocess.run(cmd, input=b"people = 3", capture_output=True, text=False)
    assert (
        bad.returncode == 2
        and bad.stderr.decode() == "edged: error: -: people: use [[people]] tables\n"
    )
