"""The ledger's rows from records, without a journal (R1, R6): resets end the visits
they name, and the page stays what it was."""

from __future__ import annotations

import datetime as dt

import pytest

from edged.ledger import Ledger, add_records, finish, to_html

pytestmark = pytest.mark.unit


def rec(t, ts, **f):
    return {"type": t, "ts": ts, "clock_synced": True, **f}


def test_a_scheduled_reset_ends_only_the_visits_it_names_and_an_administrators_all():
    """R1 (issue 37): the daily reset counted out who went in before it; whoever came in
    after stays in the ledger as inside; an administrator's reset ends every visit."""
    led = Ledger(dt.date(2026, 11, 24), dt.date(2026, 11, 25), "Asia/Tokyo")
    day = [
        rec("door.granted", "2026-11-24T01:00:00Z", person="S1", name="Yamada", area="handling"),
        rec("occupancy.reset", "2026-11-24T18:00:00Z", area="handling", by="schedule",
            at="03:00", removed=["S1"]),
        rec("door.granted", "2026-11-25T00:30:00Z", person="S2", name="Suzuki", area="handling"),
        rec("door.granted", "2026-11-25T00:40:00Z", person="S3", name="Sato", area="handling"),
        rec("occupancy.reset", "2026-11-25T01:00:00Z", area="handling", by="schedule",
            at="10:00", removed=["S3"]),
    ]  # fmt: skip
    add_records(led, day, {})
    exits = {v.person: v.exit for v in finish(led).visits}
    assert exits == {"S1": "2026-11-25 03:00:00 (reset)", "S2": "",
                     "S3": "2026-11-25 10:00:00 (reset)"}  # fmt: skip
    assert "Suzuki" in to_html(led, lang="en")
    admin = Ledger(dt.date(2026, 11, 24), dt.date(2026, 11, 25), "Asia/Tokyo")
    add_records(admin, [*day, rec("occupancy.reset", "2026-11-25T02:00:00Z", area="handling",
                                  by="A1", by_name="Admin", removed=["S2"])], {})  # fmt: skip
    assert {v.person: v.exit for v in admin.visits}["S2"] == "2026-11-25 11:00:00 (reset)"


def test_a_cabinet_left_open_too_long_stands_with_the_lock_checks():
    """R7, R17 (issue 37): the ledger's lock-check section shows a cabinet left open too
    long beside the last leavers' checks, in Japanese and English, and the alarm stays in
    the alarms section; a missed check is not listed twice."""
    led = Ledger(dt.date(2026, 11, 24), dt.date(2026, 11, 24), "Asia/Tokyo")
    add_records(led, [
        rec("alarm.cabinet_open_too_long", "2026-11-24T05:00:00Z", cabinet="cab-a",
            area="handling", door="main", minutes=60, inside=["S1"]),
        rec("alarm.lockcheck_missed", "2026-11-24T10:00:00Z", area="handling", person="S2",
            name="Suzuki", cabinets={"cab-a": "locked"}, method="timeout"),
    ], {})  # fmt: skip
    assert [c["result"] for c in led.lockchecks] == ["open_too_long", "missed"]
    assert [a["type"] for a in led.alarms] == ["cabinet_open_too_long"]
    assert "開放放置(警報)" in to_html(led, lang="ja")
    assert "LEFT OPEN (alarm)" in to_html(led, lang="en")
