"""The ledger across doors from the central store: `edged report --store … --site S
[--area A] [--door D] [--person P]`, same formats and languages as a door's, with a
verification line that says what was proven (R1, R9, R13, R16)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import subprocess
import zoneinfo

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from edged.simulators.fleet import FleetDevice

from edged.central.collector import Collector
from edged.protocol.keys import init_role_key, public_key_pem
from edged.protocol.mqtt import Broker
from tests.conftest import EDGED

pytestmark = pytest.mark.integration


def visit(d: FleetDevice, person: str, area: str, door: str) -> None:
    d.append("door.granted", {"door": door, "area": area, "person": person, "name": person})
    d.append("door.opened", {"door": door})
    d.append("door.exit", {"door": door, "area": area, "person": person, "name": person})


@pytest.fixture
def central(tmp_path):
    """Two doors of one site and one of another, their records stored centrally."""
    key = init_role_key(tmp_path / "collector", "collector")
    devices = [
        FleetDevice("tokyo", "door-1", Ed25519PrivateKey.generate()),
        FleetDevice("tokyo", "door-2", Ed25519PrivateKey.generate()),
        FleetDevice("osaka", "door-1", Ed25519PrivateKey.generate()),
    ]
    for d in devices:
        p = tmp_path / "trust" / d.site / f"{d.device}.pub"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(public_key_pem(d.key.public_key()))
    a, b, o = devices
    visit(a, "S1001", "handling", "main")
    visit(b, "S1002", "server-room", "server")
    visit(a, "S1003", "handling", "main")
    a.append("door.denied", {"door": "main", "area": "handling", "reason": "expired"})
    b.append("alarm.door_held_open", {"door": "server", "seconds": 60})
    visit(o, "S9009", "handling", "main")  # another site: never in tokyo's ledger
    db = tmp_path / "central.db"
    col = Collector(Broker("127.0.0.1", 1), db, tmp_path / "trust", key)  # never connects
    col.ingest_batch([(d.site, d.device, r.wire()) for d in devices for r in d.records])
    col.close()
    return tmp_path, db, devices


def report(db, *extra: str) -> subprocess.CompletedProcess:
    # The ledger's dates are the site's (Asia/Tokyo); a day either side keeps the records
    # in the period whatever the hour here.
    today = dt.datetime.now(zoneinfo.ZoneInfo("Asia/Tokyo")).date()
    start, end = (
        (today - dt.timedelta(days=1)).isoformat(),
        (today + dt.timedelta(days=1)).isoformat(),
    )
    return subprocess.run(
        [EDGED, "report", "--store", str(db), "--from", start, "--to", end, *extra],
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(text: str) -> list[list[str]]:
    assert text.startswith("\ufeff")  # for Excel (issue 40)
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def test_the_ledger_across_doors_with_what_was_proven(central):
    """R1, R16: every door of the site in one ledger; R13: the verification line names
    what was checked (hashes, links, signatures with --trust) and says OK."""
    tmp, db, _devices = central
    p = report(db, "--site", "tokyo", "--trust", str(tmp / "trust"), "--format", "csv")
    assert p.returncode == 0, p.stderr
    out = rows(p.stdout)
    people = sorted(r[3] for r in out if r[0] == "visit")
    assert people == ["S1001", "S1002", "S1003"], out
    assert any(r[0] == "denied" and r[9] == "expired" for r in out)
    assert any(r[0] == "alarm" and r[9] == "door_held_open" for r in out)
    verdict = next(r for r in out if r[0] == "verify")
    assert verdict[9] == "ok", verdict
    assert "9 records from 2 devices" in verdict[10] or "records from 2 devices" in verdict[10]
    assert "every signature verified again" in verdict[10] and "gaps: none" in verdict[10]

    # Narrowed to an area, a door, a person.
    area = rows(report(db, "--site", "tokyo", "--area", "server-room", "--format", "csv").stdout)
    assert [r[3] for r in area if r[0] == "visit"] == ["S1002"]
    person = rows(report(db, "--site", "tokyo", "--person", "S1003", "--format", "csv").stdout)
    assert [r[3] for r in person if r[0] == "visit"] == ["S1003"]

    # The printable page, in English and Japanese.
    en = report(db, "--site", "tokyo", "--lang", "en", "--out", str(tmp / "l.html"))
    assert en.returncode == 0 and "records intact" in en.stdout, en.stdout + en.stderr
    page = (tmp / "l.html").read_text()
    assert "Entry/exit ledger" in page and "site tokyo" in page and "S1002" in page
    ja = report(db, "--site", "tokyo", "--lang", "ja", "--format", "html")
    assert "入退室管理表" in ja.stdout


def test_a_changed_or_missing_central_record_is_named(central):
    """R9, R10: the central copy refuses UPDATE and DELETE of records; a record altered
    in it anyway, or one missing from it, makes the ledger say NOT OK, naming the device
    and seq; exit code 1."""
    tmp, db, _devices = central
    with sqlite3.connect(db) as c:
        # The store refuses, as the journal does; someone with the file drops the guard.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            c.execute("DELETE FROM records WHERE seq = 1")
        c.execute("DROP TRIGGER records_no_update")
        c.execute("DROP TRIGGER records_no_delete")
        c.execute(
            "UPDATE records SET body = replace(body, 'S1003', 'S1004')"
            " WHERE site='tokyo' AND device='door-1' AND seq=4"
        )
        c.execute("DELETE FROM records WHERE site='tokyo' AND device='door-2' AND seq=2")
    p = report(db, "--site", "tokyo", "--trust", str(tmp / "trust"), "--format", "csv")
    assert p.returncode == 1
    verdict = next(r for r in rows(p.stdout) if r[0] == "verify")
    assert verdict[9] == "FAILED"
    assert "door-1 seq 4: hash does not match the record" in verdict[10], verdict
    assert "door-2 seqs 2..2 missing" in verdict[10], verdict
    # A site with no records, and a missing --site, are said in one line.
    none = report(db, "--site", "nagoya", "--format", "csv")
    assert none.returncode == 0 and "0 records from 0 devices" in none.stdout
    bad = report(db)
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0, bad.stderr
    assert "--site is required" in bad.stderr
