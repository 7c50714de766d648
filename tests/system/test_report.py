"""The entry/exit ledger (入退室管理表): visits, lock checks, denials, alarms, verification
(R1, R6, R9, R16)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edged.clock import FakeClock
from edged.device.journal import Journal
from tests.conftest import EDGED

pytestmark = pytest.mark.system

# 2026-11-24 09:00 JST = 00:00 UTC
T0 = 1_763_942_400_000 + 365 * 86_400_000


@pytest.fixture
def day(state_dir):
    from edged.device.keys import load_keys

    clock = FakeClock(wall=T0)
    with Journal(state_dir / "journal.db", load_keys(state_dir), clock) as j:

        def at(minutes, rtype, **f):
            clock.wall = T0 + minutes * 60_000
            j.append(rtype, **f)

        at(
            0,
            "door.granted",
            door="main",
            area="handling",
            direction="entry",
            person="S1",
            name="山田 太郎",
            role="staff",
            purpose="payroll",
            carry_in="none",
            reason="ok",
            approver="A1",
            approver_name="小林 管理者",
        )
        at(
            5,
            "door.denied",
            door="main",
            area="handling",
            direction="entry",
            person="S9",
            name="伊藤",
            reason="expired",
        )
        at(
            60,
            "door.granted",
            door="main",
            area="handling",
            direction="entry",
            person="V1",
            name="佐藤 (来訪者)",
            role="visitor",
            purpose="audit",
            carry_in="approved_pc",
            escort="S1",
            escort_name="山田 太郎",
            reason="escorted",
            company="佐藤システム",
            host="S1",
            host_name="山田 太郎",
        )
        at(
            90,
            "door.exit",
            door="main",
            area="handling",
            direction="exit",
            person="V1",
            name="佐藤 (来訪者)",
            was_inside=True,
            carry_out="approved_pc",
            carry_out_approver="A1",
            carry_out_approver_name="小林 管理者",
        )
        at(95, "door.exit_request", door="main", area="handling", person=None,
           may_have_left=["V1"], last_out_offered=True)  # fmt: skip
        at(100, "alarm.door_held_open", door="main", seconds=30)
        at(101, "alarm.cleared", door="main", was="held_open")
        at(
            540,
            "lockcheck.confirmed",
            area="handling",
            door="main",
            person="S1",
            name="山田 太郎",
            cabinets={"cab-a": "locked"},
            method="key",
        )
        at(
            540,
            "door.exit",
            door="main",
            area="handling",
            direction="exit",
            person="S1",
            name="山田 太郎",
            was_inside=True,
            last_leaver=True,
        )
        at(
            60 * 24 + 1,
            "door.granted",
            door="main",
            area="handling",
            person="S1",
            name="山田 太郎",
            reason="ok",
        )  # the next day: outside the period
        at(
            60 * 24 + 60,
            "ledger.reviewed",
            **{"from": "2026-11-24", "to": "2026-11-24"},
            reviewer="監査 彩子",
            method="入退室管理表を権限表と照合",
            result="指摘なし",
        )  # reviewed the next day: printed on the ledger of the day it reviews
    return state_dir / "journal.db"


def report(db, *extra):
    return subprocess.run(
        [EDGED, "report", "--db", str(db), "--from", "2026-11-24", "--to", "2026-11-24", *extra],
        capture_output=True,
        text=True,
    )


def test_csv_ledger_has_every_part(day):
    """R1, R16: one row per visit with entry/exit, purpose, carry-in and escort; lock checks,
    denials and alarms; and the verification line. Issue 40: a BOM and rectangular rows."""
    p = report(day, "--format", "csv")
    assert p.returncode == 0, p.stderr
    # Excel on Japanese Windows: a byte-order mark, and every row as wide as the header.
    assert p.stdout.startswith("\ufeffsection,time,")
    widths = {len(r) for r in csv.reader(io.StringIO(p.stdout))}
    assert widths == {17}, widths
    rows = list(csv.DictReader(io.StringIO(p.stdout.removeprefix("\ufeff"))))
    visits = [r for r in rows if r["section"] == "visit" and r["id"]]
    assert [(v["id"], v["time"], v["exit"]) for v in visits] == [
        ("S1", "2026-11-24 09:00:00", "2026-11-24 18:00:00"),
        ("V1", "2026-11-24 10:00:00", "2026-11-24 10:30:00"),
    ]
    assert visits[1]["escort"] == "山田 太郎" and visits[1]["carry_in"] == "approved_pc"
    assert visits[0]["purpose"] == "payroll" and visits[0]["approver"] == "小林 管理者"
    assert (visits[1]["company"], visits[1]["host"]) == ("佐藤システム", "山田 太郎")
    assert (visits[1]["carry_out"], visits[1]["carry_out_approver"]) == (
        "approved_pc",
        "小林 管理者",
    )
    [button] = [r for r in rows if r["section"] == "visit" and r["how"] == "exit_button"]
    assert button["id"] == "" and button["exit"] == "2026-11-24 10:35:00"
    [review] = [r for r in rows if r["section"] == "review"]
    assert review["name"] == "監査 彩子" and review["result"] == "指摘なし"
    [lc] = [r for r in rows if r["section"] == "lockcheck"]
    assert lc["name"] == "山田 太郎" and lc["result"] == "confirmed" and "cab-a" in lc["detail"]
    assert [r["result"] for r in rows if r["section"] == "denied"] == ["expired"]
    assert [r["result"] for r in rows if r["section"] == "alarm"] == ["door_held_open"]
    [v] = [r for r in rows if r["section"] == "verify"]
    # 12: the review the next day began a new signing epoch (a key.epoch record).
    assert v["result"] == "ok" and v["detail"].startswith("OK: 12 records, head seq 12 hash ")


def test_html_ledger_is_japanese_printable_and_tied_to_the_log(day, tmp_path):
    """R16: the HTML ledger is in Japanese by default, sized for A4, with the head hash."""
    out = tmp_path / "ledger.html"
    p = report(day, "--out", str(out), "--device", "tokyo-hq/door-3f-1")
    assert p.returncode == 0 and "3 visits" in p.stdout
    page = out.read_text()
    for text in (
        "入退室管理表",
        "入室日時",
        "退室日時",
        "入室理由",
        "最終退室者による施錠確認",
        "入室拒否",
        "警報",
        "改ざんなし",
        "size: A4",
        "山田 太郎",
        "tokyo-hq/door-3f-1",
    ):
        assert text in page, text
    head = sqlite3.connect(day).execute("SELECT hash FROM records ORDER BY seq DESC").fetchone()
    assert head[0] in page
    assert "有効期限切れ" in page and "扉の開放放置" in page and "許可PC" in page
    # An exit by the button names who was counted inside then (issue 37).
    assert "(不明) 退室ボタン (在室とされていた人: V1)" in page
    en = report(day, "--lang", "en")
    assert "Entry/exit ledger" in en.stdout and "intact" in en.stdout
    assert "(unknown) exit button (counted inside then: V1)" in en.stdout


def test_a_tampered_journal_says_so_on_the_report(day):
    """R9, R16: a filed report of a tampered log shows it, and the command exits 1."""
    c = sqlite3.connect(day)
    c.execute("DROP TRIGGER records_no_update")
    c.execute("UPDATE records SET body = replace(body, 'expired', 'ok') WHERE seq = 2")
    c.commit()
    c.close()
    p = report(day)
    assert p.returncode == 1 and "異常あり" in p.stdout and "FAIL: seq 2 modified" in p.stdout


def test_printed_ledger_in_headless_chromium(day, tmp_path):
    """R16: the HTML ledger printed to A4 by a real browser shows what an auditor files:
    the title, the visits, the lock check with the confirmer, the denial, and the hash."""
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    pdftotext = shutil.which("pdftotext")
    if not chromium or not pdftotext:
        pytest.fail("chromium and poppler-utils are needed (scripts/test.sh installs them)")
    html_path = tmp_path / "ledger.html"
    example = Path(__file__).parents[2] / "config" / "edged.toml"
    assert report(day, "--out", str(html_path), "--config", str(example)).returncode == 0
    pdf = tmp_path / "ledger.pdf"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--no-pdf-header-footer",
            f"--print-to-pdf={pdf}",
            html_path.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True).stdout
    assert "595.92 x 842.88 pts (A4)" in info or "A4" in info, info
    text = subprocess.run(
        [pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True
    ).stdout
    head = sqlite3.connect(day).execute("SELECT hash FROM records ORDER BY seq DESC").fetchone()
    for shown in (
        "入退室管理表",
        "山田 太郎",
        "佐藤 (来訪者)",
        "2026-11-24 09:00:00",
        "2026-11-24 18:00:00",
        "確認済",
        "有効期限切れ",
        "改ざんなし",
        head[0][:32],
        # R1: escort and approver apart; the visitor's company and host; what was taken
        # out and who approved it; the exit-button exit; areas by title; alarms in words.
        "立会者",
        "確認者",
        "小林 管理者",
        "佐藤システム",
        "許可PC (承認 小林 管理",  # the cell wraps before 者)
        "(不明) 退室ボタン",
        "Payroll handling area",
        "扉 main が 30 秒を超えて開いたままです。",
        # R20: the review of the period, printed on it.
        "記録の点検",
        "監査 彩子",
        "入退室管理表を権限表と照合",
        # Device identity and local creation time in the header.
        "(key ",
        "JST",
    ):
        # Narrow cells wrap in print: compare without any whitespace.
        assert "".join(shown.split()) in "".join(text.split()), shown


def test_times_recorded_before_ntp_are_placed_by_the_monotonic_clock(state_dir):
    """R1, R9: a Pi without RTC records an entry in "1970" before NTP; the ledger places
    it by the monotonic clock from the boot's first synchronised record (marked ≈), and a
    boot that never synchronised keeps its raw time, marked ?."""
    from edged.device.keys import load_keys
    from edged.device.report import build_ledger, to_html

    keys = load_keys(state_dir)
    clock = FakeClock(wall=42_000, mono=10_000_000_000, is_synced=False)
    visit = {"door": "main", "area": "handling", "direction": "entry", "person": "S1"}
    with Journal(state_dir / "journal.db", keys, clock, boot_id="boot-1") as j:
        j.append("door.granted", **visit, name="山田 太郎", reason="ok")
        clock.mono += 90 * 1_000_000_000  # 90 s later NTP sets the clock to T0 (09:00 JST)
        clock.wall, clock.is_synced = T0, True
        j.append("clock.changed", stepped_ms=T0 - 42_000 - 90_000, synced=True)
        j.append("door.exit", **{**visit, "direction": "exit"}, reason="ok")
    clock.is_synced, clock.wall = False, 7_000  # the next boot never synchronises
    with Journal(state_dir / "journal.db", keys, clock, boot_id="boot-2") as j:
        j.append("door.denied", **visit, name="山田 太郎", reason="expired")

    day = build_ledger(
        state_dir / "journal.db", dt.date(2026, 11, 24), dt.date(2026, 11, 24), "Asia/Tokyo", None
    )
    [v] = day.visits
    assert (v.entry, v.exit) == ("2026-11-24 08:58:30 ≈", "2026-11-24 09:00:00")
    assert "時刻同期前の記録" in to_html(day)
    old = build_ledger(
        state_dir / "journal.db", dt.date(1970, 1, 1), dt.date(1970, 1, 1), "Asia/Tokyo", None
    )
    assert [d["time"] for d in old.denied] == ["1970-01-01 09:00:07 ?"]
    assert old.visits == []  # the entry is on the day it really happened
