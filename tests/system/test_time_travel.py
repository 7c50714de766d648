"""The demo and the README walk with the clock moved: a day, 400 days and 4,000 days
ahead, to the next 29 February and the next 31 December. Their story must not change with
the calendar (it once did: the example access list had fixed dates and a right ending
"soon" stopped ending soon). libfaketime moves the wall clock of every process started
under it (the CLI, the daemon, its pcscd); the monotonic clock stays real, as the door's
timers need it to be."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LONG, require_pcscd
from tests.helpers.examples import SITE_TZ
from tests.helpers.faketime import faketime
from tests.integration.test_readme import blocks, run_blocks

pytestmark = pytest.mark.system

EDGED = str(Path(sys.executable).with_name("edged"))


def _next(today: dt.date, month: int, day: int) -> dt.date:
    """The first ``month``/``day`` after ``today`` (29 February: the next leap year's)."""
    for year in range(today.year, today.year + 9):
        try:
            d = dt.date(year, month, day)
        except ValueError:
            continue
        if d > today:
            return d
    raise AssertionError("no such day in eight years")


def _days() -> dict[str, dt.date]:
    today = dt.datetime.now(SITE_TZ).date()
    return {
        "+1 day": today + dt.timedelta(days=1),
        "+400 days": today + dt.timedelta(days=400),
        "+4000 days": today + dt.timedelta(days=4000),
        "29 February": _next(today, 2, 29),
        "31 December": _next(today, 12, 31),
    }


DAYS = _days()


def _story(out: str) -> list[tuple[str, str]]:
    """The demo's records as (type, reason): what happened, without its dates and keys."""
    return [
        (m.group(1), (re.search(r"\breason=(\S+)", m.group(0)) or [None, ""])[1])
        for m in re.finditer(r"^   seq +\d+ (\S+).*$", out, re.M)
    ]


_BASELINE: dict[str, list[tuple[str, str]]] = {}


# The demo a day ahead tells what the demo today does (tests/integration/test_keys_cli.py runs it):
# the suite's minutes go to the far days; EDGED_LONG=1 runs it too.
# The demo's whole day under each clock takes 15 s: the leap day, the year's end and the
# far future in every run, the rest with EDGED_LONG=1 (the README's walk covers them all).
DEMO_DAYS = [d for d in DAYS if LONG or d not in ("+1 day", "+400 days")]


@pytest.mark.parametrize("name", DEMO_DAYS)
def test_the_demo_tells_the_same_story_on_any_day(tmp_path, name):
    """R5: on any day the example's visitor's right ends within the warning period, the
    former employee's has ended, a working-hours card is refused on a closed day, and the
    day's ledger is written for the day the clock says."""
    require_pcscd()
    day = DAYS[name]
    p = subprocess.run(
        [*faketime(day), EDGED, "demo", "--fast", "--state-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    out = p.stdout
    assert p.returncode == 0, out[-3000:] + p.stderr[-3000:]
    soon, ended = day + dt.timedelta(days=26), day - dt.timedelta(days=66)
    assert (
        f"rights ending within 30 days (R5: renew them or they end by themselves): V0042 on {soon}"
        in out
    )
    assert f"his rights ended on {ended} (R5)" in out
    assert f"the ledger (入退室管理表) for {day}:" in out, out[-500:]
    assert "6 visits, 3 lock checks, 3 denials, 3 alarms" in out
    assert (tmp_path / "demo" / f"ledger-{day}.html").exists()
    story = _story(out)
    for step in (("door.denied", "expired"), ("door.denied", "holiday"),
                 ("door.denied", "card_auth_failed"), ("lockcheck.confirmed", ""),
                 ("alarm.door_held_open", ""), ("alarm.cabinet_unattended", "")):  # fmt: skip
        assert step in story, (step, story)
    granted = [r for t, r in story if t == "door.granted"]
    assert set(granted) == {"ok", "escorted"}, story  # no right lost to the calendar
    # The same records, in the same order, on every day tried.
    first = _BASELINE.setdefault("demo", story)
    assert story == first, f"{name}: {story} differs from {first}"


@pytest.mark.parametrize("name", list(DAYS))
def test_the_readme_walk_gets_through_the_door_on_any_day(tmp_path, name):
    """R1, R5, R6: the README's walk as written, with the clock moved: the list it imports
    warns of the visitor's right ending soon, Yamada gets in and confirms the lock check,
    and the ledger is the day's."""
    require_pcscd()
    day = DAYS[name]
    state = tmp_path / "edged"
    out = run_blocks(blocks()[0], state, timeout=180, prefix=faketime(day)).stdout
    assert f"wrote the example access list as of {day}" in out
    assert "V0042" in out and str(day + dt.timedelta(days=26)) in out  # acl show's warning
    assert "door.granted" in out and "lockcheck.confirmed" in out and "OK:" in out
    ledger = (state / "ledger.html").read_text(encoding="utf-8")
    assert str(day) in ledger and "Yamada Taro" in ledger
