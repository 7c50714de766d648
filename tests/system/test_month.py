"""A month in the life of a door (issue 35): the daemon, syncing to a collector, lives
day after day under libfaketime: stopped each evening or killed at a random moment,
started again each morning, its signing key changing several times a day, checkpoints
made, receipted records pruned from the door, across a year end. After every start it
serves cards; after every day `edged verify` passes and the central copy holds every
record in order, with the hashes the door signed (R9, R10, R12, R13, R14).

The suite runs the short month (a few days, a year end among them); EDGED_LONG=1 runs
30 days in a row (`month_days` in tests/conftest.py's SIZES)."""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import subprocess

import pytest

from tests.conftest import EDGED, require_pcscd, size
from tests.helpers.central import wait_until
from tests.helpers.daemon_proc import DaemonProc
from tests.helpers.examples import SITE_TZ, example_acl_text
from tests.helpers.faketime import faketime
from tests.helpers.site import Site

pytestmark = pytest.mark.system

FELICA = "012E4CD9A1B2C3D4"  # S1001 (Yamada) in the example access list
SITE, DEVICE = "tokyo-hq", "door-3f-1"
# A new key every 10 records, a checkpoint every 8, and a receipted record older than a
# day pruned from the door within a second of being considered.
JOURNAL = ("\n[journal]\ncheckpoint_every = 8\nepoch_records = 10\nkeep_days = 1\n"
           "prune_check_seconds = 1\nprune_batch = 10\n")  # fmt: skip


def _days(first: dt.date) -> list[dt.date]:
    """The short month: two days in a row, the last day of the year and the first of the
    next, and a day a month on; the long one: 30 days in a row over a year end."""
    n = size("month_days")
    if n > 5:
        start = dt.date(first.year, 12, 31) - dt.timedelta(days=n // 2)
        return [start + dt.timedelta(days=i) for i in range(n)]
    eve = dt.date(first.year, 12, 31)
    return [first, first + dt.timedelta(days=1), eve, eve + dt.timedelta(days=1),
            eve + dt.timedelta(days=31)][:n]  # fmt: skip


def _config(site: Site) -> None:
    text = site.config.read_text()
    # Replace the example's [journal] table by the month's.
    head, _, rest = text.partition("\n[journal]\n")
    rest = rest[rest.index("\n[") :] if "\n[" in rest else ""
    # The door's clock counts as synchronised (no NTP here): pruning waits for that.
    text = head + JOURNAL + rest
    site.config.write_text(text.replace("[clock]", "[clock]\nassume_synced = true", 1))


def _central(site: Site) -> list[tuple[int, str]]:
    db = site.tmp / "central.db"
    if not db.exists():
        return []
    with sqlite3.connect(db) as c:
        return c.execute(
            "SELECT seq, hash FROM records WHERE site = ? AND device = ? ORDER BY seq",
            (SITE, DEVICE),
        ).fetchall()


def _journal(site: Site) -> dict[int, str]:
    with sqlite3.connect(site.state / "journal.db") as c:
        return dict(c.execute("SELECT seq, hash FROM records").fetchall())


def _collector(site: Site, day: dt.date) -> subprocess.Popen[bytes]:
    log = open(site.tmp / "collector.log", "ab")  # noqa: SIM115  (the child keeps it)
    p = subprocess.Popen(
        [*faketime(day, dt.time(8, 0)), EDGED, "collect", "--broker", f"127.0.0.1:{site.port}",
         "--store", str(site.tmp / "central.db"), "--trust", str(site.trust),
         "--key", str(site.tmp / "central" / "collector_ed25519.key")],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    wait_until(lambda: b"collector_connected" in (site.tmp / "collector.log").read_bytes(),
               30, "collector up")  # fmt: skip
    return p


def _serve(d: DaemonProc) -> None:
    """A working day in short: Yamada in (purpose, carry-in), the door, out as the last
    leaver confirming the cabinets; then people leaving by the exit button. (Only the
    door's records are compared: a snapshot of a pruning may land in the same answer.)"""

    def door(resp) -> list[dict]:
        return [r for r in resp["records"] if r["type"].startswith(("door.", "lockcheck."))]

    got = door(d.sim(cmd="tap", card=FELICA, reader="entry"))
    assert got == [], [(r["type"], r.get("reason")) for r in got]
    d.sim(cmd="keys", keys="1#")
    [g] = door(d.sim(cmd="keys", keys="0#"))
    assert (g["type"], g["person"]) == ("door.granted", "S1001"), g
    assert [r["type"] for r in door(d.sim(cmd="door", action="open"))] == ["door.opened"]
    assert [r["type"] for r in door(d.sim(cmd="door", action="close"))] == ["door.closed"]
    assert door(d.sim(cmd="tap", card=FELICA, reader="exit")) == []
    out = [r["type"] for r in door(d.sim(cmd="keys", keys="#"))]
    assert out == ["lockcheck.confirmed", "door.exit"], out
    for _ in range(12):
        d.sim(cmd="exit-button")


@pytest.mark.slow
def test_a_month_of_days_restarts_and_power_cuts(tmp_path, mosquitto):
    """R9, R10, R12, R13, R14: every morning the door starts and serves, every evening it
    is stopped or killed, its journal verifies and the central copy is whole and in
    order, though the door has pruned what the centre receipted."""
    require_pcscd()
    days = _days(dt.datetime.now(SITE_TZ).date() + dt.timedelta(days=1))
    site = Site(tmp_path, mosquitto.port)
    _config(site)
    acl = tmp_path / "acl.toml"
    acl.write_text(example_acl_text(today=days[0]))
    imp = subprocess.run(
        [*faketime(days[0], dt.time(7, 0)), EDGED, "acl", "import", str(acl),
         "--config", str(site.config), "--state-dir", str(site.state)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert imp.returncode == 0, imp.stderr
    rng = random.Random(35)
    pruned_seen = False
    # The morning after the month: a last start, so that what was in flight at the last
    # power cut reaches the centre too.
    days.append(days[-1] + dt.timedelta(days=1))
    for day in days:
        col = _collector(site, day)
        d = DaemonProc(site.state, site.config, prefix=faketime(day))
        try:
            try:
                _serve(d)
            except (AssertionError, OSError) as e:
                raise AssertionError(f"{day}: {e}\n" + "\n".join(d.lines[-25:])) from e
            head = d.state()["journal"]["head_seq"]
            # The central copy catches up with the door, receipts and all.
            wait_until(lambda h=head: len(_central(site)) >= h, 60, f"central copy {day}")
            if day != days[-1] and rng.random() < 0.5:
                d.sim(cmd="exit-button")  # records in flight when the power goes
                d.kill()
            else:
                assert d.stop() == 0, d.log
        finally:
            if d.proc.poll() is None:
                d.kill()
            col.terminate()
            col.wait(30)
        out = subprocess.run([*faketime(day, dt.time(20, 0)), EDGED, "verify", "--db",
                              str(site.state / "journal.db")],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert out.returncode == 0, f"{day}: {out.stdout}{out.stderr}"
        central, held = _central(site), _journal(site)
        assert [s for s, _h in central] == list(range(1, len(central) + 1)), day
        assert all(held[s] == h for s, h in central if s in held), day
        pruned_seen |= min(held, default=1) > 1
    # The records the door no longer holds are all kept centrally, and nothing else.
    assert pruned_seen, "nothing was pruned: the month did not exercise pruning"
    central, held = _central(site), _journal(site)
    assert [s for s, _h in central] == list(range(1, max(held) + 1))
