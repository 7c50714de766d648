"""The entry/exit ledger (入退室管理表) for a period, from signed records (R1, R16): one
door's journal (:mod:`edged.device.report`) or the central copy of many
(:mod:`edged.central.ledger`), in the same formats and languages.

One row per visit (entry time, person, purpose, carry-in, escort, exit time), the
last-leaver confirmations per day, denied attempts, alarms and missed lock checks, and
the journal's verification result with its head hash, so that a filed paper copy is tied
to the signed log. CSV for tools, HTML that prints on A4 (Japanese by default).
"""

from __future__ import annotations

import csv
import datetime as dt
import html
import io
import json
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from edged.core.replay import mono_of
from edged.protocol.records import ENVELOPE_FIELDS, format_ts, parse_ts


class Verdict(Protocol):
    """What was proven about the records a ledger is built from."""

    @property
    def ok(self) -> bool: ...

    def summary(self) -> str: ...


LABELS = {
    "ja": {
        "title": "入退室管理表",
        "period": "期間",
        "device": "装置",
        "visits": "入退室記録",
        "entry": "入室日時",
        "exit": "退室日時",
        "person": "氏名",
        "id": "ID",
        "area": "区域",
        "purpose": "入室理由",
        "carry_in": "持込申告",
        "escort": "立会者",
        "approver": "確認者",
        "carry_out": "持出",
        "company": "会社",
        "host": "訪問先",
        "unknown_person": "(不明)",
        "exit_button": "退室ボタン",
        "may_have_left": "在室とされていた人",
        "open_visits": "退室が記録されていない入室",
        "reviews": "記録の点検",
        "reviewed_at": "点検日時",
        "reviewer": "点検者",
        "method": "点検方法",
        "findings": "結果",
        "approved_by": "承認",
        "lockchecks": "最終退室者による施錠確認",
        "time": "日時",
        "confirmer": "確認者",
        "result": "結果",
        "cabinets": "施錠状態",
        "denied": "入室拒否",
        "reason": "理由",
        "alarms": "警報",
        "type": "種別",
        "detail": "内容",
        "verify": "記録の検証",
        "head": "最終記録",
        "ok": "改ざんなし",
        "bad": "異常あり",
        "none": "該当なし",
        "still_inside": "(在室中)",
        "confirmed": "確認済",
        "missed": "未確認(警報)",
        "open_too_long": "開放放置(警報)",
        "generated": "作成日時",
        "signature": "確認印",
        "legend": "≈: 時刻同期前の記録。同じ起動中の単調時計から算出した時刻。"
        " ?: 時刻未同期の記録。装置の時計のままの時刻。",
    },
    "en": {
        "title": "Entry/exit ledger",
        "period": "Period",
        "device": "Device",
        "visits": "Visits",
        "entry": "Entry",
        "exit": "Exit",
        "person": "Name",
        "id": "ID",
        "area": "Area",
        "purpose": "Purpose",
        "carry_in": "Carry-in",
        "escort": "Escort",
        "approver": "Approver",
        "carry_out": "Carried out",
        "company": "Company",
        "host": "Visiting",
        "unknown_person": "(unknown)",
        "exit_button": "exit button",
        "may_have_left": "counted inside then",
        "open_visits": "Entries with no exit recorded",
        "reviews": "Reviews of the records",
        "reviewed_at": "Reviewed at",
        "reviewer": "Reviewer",
        "method": "How",
        "findings": "Result",
        "approved_by": "approved by",
        "lockchecks": "Last-leaver lock checks",
        "time": "Time",
        "confirmer": "Confirmed by",
        "result": "Result",
        "cabinets": "Cabinets",
        "denied": "Denied attempts",
        "reason": "Reason",
        "alarms": "Alarms",
        "type": "Type",
        "detail": "Detail",
        "verify": "Journal verification",
        "head": "Head",
        "ok": "intact",
        "bad": "NOT intact",
        "none": "none",
        "still_inside": "(inside)",
        "confirmed": "confirmed",
        "missed": "MISSED (alarm)",
        "open_too_long": "LEFT OPEN (alarm)",
        "generated": "Generated",
        "signature": "Reviewed by",
        "legend": "≈: recorded before the clock was synchronised; the time is placed by"
        " the monotonic clock of the same boot. ?: clock not synchronised; the device's"
        " time as it was.",
    },
}


# Codes as recorded, shown in Japanese on the ja report (the CSV keeps the codes).
CODES_JA = {
    "unknown_card": "未登録カード",
    "expired": "有効期限切れ",
    "not_yet_valid": "有効期間前",
    "outside_window": "許可時間外",
    "holiday": "休業日",
    "not_custodian": "書庫の管理者でない",
    "card_auth_failed": "カード認証失敗(複製の疑い)",
    "card_kind_not_allowed": "認証できないカード種別",
    "not_inside": "在室記録なし",
    "area_not_allowed": "区域の権限なし",
    "already_inside": "入室中(アンチパスバック)",
    "pin_wrong": "暗証番号誤り",
    "pin_locked_out": "暗証番号ロック中",
    "pin_not_enrolled": "暗証番号未登録",
    "escort_needed": "立会者なし",
    "purpose_invalid": "入室理由が不正",
    "carry_in_invalid": "持込申告が不正",
    "prompt_timeout": "入力時間切れ",
    "prompt_cancelled": "入力中断",
    "clock_untrusted": "時刻未同期",
    "no_access_list": "権限表なし",
    "no_keypad": "テンキーなし",
    "none": "持込なし",
    "approved_pc": "許可PC",
    "approved_media": "許可媒体",
    "door_forced": "こじ開け",
    "door_held_open": "扉の開放放置",
    "tamper": "筐体開放",
    "reader_lost": "読取機の取外し",
    "cabinet_unattended": "無人時の書庫開錠",
    "cabinet_unauthorised": "管理者不在の書庫開放",
    "lockcheck_missed": "施錠確認なし",
    "pin_lockout": "暗証番号ロック",
    "acl_rejected": "権限表の拒否",
    "acl_invalid": "権限表の異常",
    "driver_fault": "機器異常",
    "undeclared": "申告なし",
    "locked": "施錠",
    "open": "開",
    "payroll": "給与計算",
    "year-end-adjustment": "年末調整",
    "audit": "監査",
    "maintenance": "保守",
}


@dataclass
class Visit:
    """One stay in an area: from a grant to the exit that ended it."""

    entry: str
    person: str
    name: str
    area: str
    purpose: str = ""
    carry_in: str = ""
    escort: str = ""
    exit: str = ""
    approver: str = ""  # 確認者: who answers for the entry (the list's, at the time)
    company: str = ""
    host: str = ""
    carry_out: str = ""  # what was declared taken out at exit, and who approved it
    carry_out_approver: str = ""
    how: str = ""  # an exit with no known person: "exit_button", "unknown_card"
    may_have_left: str = ""  # an exit by the button: who was counted inside then


@dataclass
class Ledger:
    """Everything a report shows, already in local time."""

    start: dt.date
    end: dt.date
    tz: str
    visits: list[Visit] = field(default_factory=list)
    lockchecks: list[dict[str, Any]] = field(default_factory=list)
    denied: list[dict[str, Any]] = field(default_factory=list)
    alarms: list[dict[str, Any]] = field(default_factory=list)
    reviews: list[dict[str, Any]] = field(default_factory=list)
    verify: Verdict | None = None
    source: str = ""  # whose records: site/device and key id, or a site's devices

    @property
    def open_visits(self) -> list[Visit]:
        """Entries of the period with no exit recorded (still inside, or left unseen)."""
        return [v for v in self.visits if v.entry and not v.exit]


def _local(ts: str, tz: zoneinfo.ZoneInfo) -> dt.datetime:
    # fromisoformat (C, 3.11+) reads "…Z"; strptime cost a ledger of a month 40x more.
    t = dt.datetime.fromisoformat(ts)
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).astimezone(tz)


# Marks after a time that did not come from a synchronised clock (legend in the report).
RECONSTRUCTED, UNSYNCED = " ≈", " ?"


def _when(r: dict[str, Any], anchors: dict[str, tuple[int, int]]) -> tuple[str, str]:
    """The record's time as ts, and the mark to show after it."""
    if r.get("clock_synced", True):
        return r["ts"], ""
    anchor = anchors.get(r.get("boot_id", ""))
    mono = mono_of(r)
    if anchor is None or not isinstance(mono, int) or mono > anchor[0]:
        return r["ts"], UNSYNCED  # nothing to place it by: the raw clock, marked
    return format_ts(anchor[1] - (anchor[0] - mono) // 1_000_000), RECONSTRUCTED


@dataclass(frozen=True)
class Scope:
    """Which records a ledger shows: an area, a door, a person (all when None)."""

    area: str | None = None
    door: str | None = None
    person: str | None = None

    def keeps(self, r: dict[str, Any]) -> bool:
        return all(
            want is None or r.get(key) == want
            for key, want in (("area", self.area), ("door", self.door), ("person", self.person))
        )


def anchors_of(records: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """Per boot, its first record made under a synchronised clock: (mono ns, wall ms)."""
    out: dict[str, tuple[int, int]] = {}
    for r in records:
        mono = mono_of(r)
        if r.get("clock_synced") and r.get("boot_id") not in out and isinstance(mono, int):
            out[str(r.get("boot_id"))] = (mono, parse_ts(r["ts"]))
    return out


def new_ledger(start: dt.date, end: dt.date, tz_name: str, verify: Verdict | None) -> Ledger:
    return Ledger(start, end, tz_name, verify=verify)


# The record types a ledger reads (and every alarm.*).
LEDGER_TYPES = frozenset(
    {
        "door.granted",
        "door.exit",
        "door.exit_request",
        "occupancy.reset",
        "occupancy.expired",
        "occupancy.confirmed_empty",
        "lockcheck.confirmed",
        "door.denied",
        "ledger.reviewed",
    }
)


# What a review record says (R20): the period, who, how, with what result.
REVIEW_FIELDS = ("from", "to", "reviewer", "method", "result")


def _overlaps(r: dict[str, Any], start: dt.date, end: dt.date) -> bool:
    try:
        lo, hi = dt.date.fromisoformat(str(r.get("from"))), dt.date.fromisoformat(str(r.get("to")))
    except ValueError:
        return False
    return lo <= end and hi >= start


def add_records(
    led: Ledger,
    records: Iterable[dict[str, Any]],
    anchors: dict[str, tuple[int, int]],
    scope: Scope = Scope(),
) -> None:
    """Add one device's records, read in seq order, to the ledger's period."""
    tz = zoneinfo.ZoneInfo(led.tz)
    start, end = led.start, led.end
    open_visits: dict[tuple[str, str], Visit] = {}
    for r in records:
        rtype = r["type"]
        # Most of a door's records (doors opening and closing, cabinets) are not in the
        # ledger: passed by before their time is worked out.
        if rtype not in LEDGER_TYPES and not rtype.startswith("alarm."):
            continue
        if not scope.keeps(r):
            continue
        ts, mark = _when(r, anchors)
        t = _local(ts, tz)
        when = t.isoformat(" ", "seconds")[:19] + mark  # strftime's format, 4x faster
        in_period = start <= t.date() <= end
        _visit(led, open_visits, r, rtype, when, in_period)
        if in_period:
            _section(led, r, rtype, when)


def _visit(
    led: Ledger, open_visits: dict[tuple[str, str], Visit], r: dict[str, Any], rtype: str,
    when: str, in_period: bool,
) -> None:  # fmt: skip
    """Entries and the exits that end them (a visit that began before the period still
    ends in it), and exits whose person the records cannot name."""
    if rtype == "door.granted" and r.get("person"):
        v = Visit(
            when,
            r["person"],
            r.get("name", ""),
            r.get("area", ""),
            r.get("purpose", ""),
            r.get("carry_in", ""),
            r.get("escort_name") or r.get("escort") or "",
            approver=r.get("approver_name") or r.get("approver") or "",
            company=r.get("company", ""),
            host=r.get("host_name") or r.get("host") or "",
        )
        open_visits[(r["person"], v.area)] = v
        if in_period:
            led.visits.append(v)
    elif rtype == "door.exit" and r.get("person") and r.get("was_inside", True):
        left = open_visits.pop((r["person"], r.get("area", "")), None)
        if left is not None:
            left.exit = when
            left.carry_out = r.get("carry_out", "")
            left.carry_out_approver = (
                r.get("carry_out_approver_name") or r.get("carry_out_approver") or ""
            )
    elif rtype in ("door.exit_request", "door.exit") and in_period:
        # Out by the exit button, or a card the list does not know (or of someone not
        # counted inside): an exit whose person the records cannot name.
        how = "exit_button" if rtype == "door.exit_request" else r.get("reason", "")
        led.visits.append(
            Visit("", r.get("person") or "", r.get("name") or "", r.get("area", ""),
                  exit=when, how=how, may_have_left=", ".join(r.get("may_have_left") or []))
        )  # fmt: skip
    elif rtype == "ledger.reviewed":
        if _overlaps(r, led.start, led.end):
            led.reviews.append({"time": when, **{k: str(r.get(k, "")) for k in REVIEW_FIELDS}})
    elif rtype == "occupancy.reset":
        # An administrator's reset empties the area; the daily one, who it names.
        named = r.get("removed") if r.get("by") == "schedule" else None
        for key in [k for k in open_visits if k[1] == r.get("area")]:
            if named is None or key[0] in named:
                open_visits.pop(key).exit = f"{when} (reset)"
    elif rtype == "occupancy.confirmed_empty":
        # The area's presence sensor saw nobody for a while after an exit.
        for key in [k for k in open_visits if k[1] == r.get("area")]:
            if key[0] in (r.get("removed") or []):
                open_visits.pop(key).exit = f"{when} (empty)"
    elif rtype == "occupancy.expired" and r.get("person"):
        # Counted inside past the area's longest stay: no longer counted; when they left
        # is not known.
        left = open_visits.pop((r["person"], r.get("area", "")), None)
        if left is not None:
            left.exit = f"{when} (max stay)"


def _section(led: Ledger, r: dict[str, Any], rtype: str, when: str) -> None:
    """Lock checks, refusals and alarms of the period."""
    if rtype in ("lockcheck.confirmed", "alarm.lockcheck_missed"):
        led.lockchecks.append(
            {
                "time": when,
                "area": r.get("area", ""),
                "confirmer": r.get("name", ""),
                "id": r.get("person", ""),
                "result": "confirmed" if rtype == "lockcheck.confirmed" else "missed",
                "cabinets": r.get("cabinets", {}),
            }
        )
        return
    if rtype == "alarm.cabinet_open_too_long":
        # The rules ask that cabinets be locked as soon as the work no longer needs them:
        # one left open too long stands with the checks of the locks (R7, R17), and
        # with the alarms below.
        led.lockchecks.append({"time": when, "area": r.get("area", ""), "confirmer": "",
                               "id": "", "result": "open_too_long",
                               "cabinets": {str(r.get("cabinet", "")): "open"}})  # fmt: skip
    if rtype == "door.denied":
        led.denied.append(
            {
                "time": when,
                "area": r.get("area", ""),
                "name": r.get("name", ""),
                "id": r.get("person", ""),
                "reason": r.get("reason", ""),
            }
        )
    elif rtype.startswith("alarm.") and rtype != "alarm.cleared":
        fields = {k: v for k, v in r.items() if k not in ENVELOPE_FIELDS}
        led.alarms.append({"time": when, "type": rtype.removeprefix("alarm."), "fields": fields})


def finish(led: Ledger) -> Ledger:
    """Several devices' rows in time order."""
    led.visits.sort(key=lambda v: v.entry)
    for rows in (led.lockchecks, led.denied, led.alarms):
        rows.sort(key=lambda x: x["time"])
    return led


def _alarm_text(a: dict[str, Any], lang: str) -> str:
    from edged.words import alarm_sentence

    return alarm_sentence(a["type"], a["fields"], lang)


CSV_COLUMNS = ["section", "time", "exit", "id", "name", "area", "purpose", "carry_in",
               "escort", "result", "detail", "approver", "carry_out", "carry_out_approver",
               "company", "host", "how"]  # fmt: skip


class _Rectangular:
    """Every row as long as the header (Excel and most tools want a rectangle; the rows
    of the shorter sections were ragged: 11, 12 or 17 fields)."""

    def __init__(self, out: io.StringIO) -> None:
        self._w = csv.writer(out)

    def writerow(self, row: list[str]) -> None:
        self._w.writerow([*row, *[""] * (len(CSV_COLUMNS) - len(row))])


def to_csv(led: Ledger, *, lang: str = "ja") -> str:
    """One table: a ``section`` column says which part of the ledger a row belongs to;
    codes stay codes (for tools), alarm details are sentences in ``lang``. It starts
    with a byte-order mark, so that Excel on Japanese Windows reads it as UTF-8 (without
    one it garbles every Japanese name)."""
    out = io.StringIO()
    out.write("\ufeff")
    w = _Rectangular(out)
    w.writerow(CSV_COLUMNS)
    for v in led.visits:
        w.writerow(
            ["visit", v.entry, v.exit, v.person, v.name, v.area, v.purpose, v.carry_in,
             v.escort, "", "", v.approver, v.carry_out, v.carry_out_approver, v.company,
             v.host, v.how]
        )  # fmt: skip
    for c in led.lockchecks:
        w.writerow(
            ["lockcheck", c["time"], "", c["id"], c["confirmer"], c["area"], "", "", "",
             c["result"], json.dumps(c["cabinets"], ensure_ascii=False)]
        )  # fmt: skip
    for d in led.denied:
        w.writerow(
            ["denied", d["time"], "", d["id"], d["name"], d["area"], "", "", "", d["reason"], ""]
        )
    for a in led.alarms:
        w.writerow(
            ["alarm", a["time"], "", "", "", "", "", "", "", a["type"], _alarm_text(a, lang)]
        )
    for r in led.reviews:
        w.writerow(
            ["review", r["time"], "", "", r["reviewer"], "", "", "", "", r["result"],
             f"{r['from']}..{r['to']}: {r['method']}"]
        )  # fmt: skip
    res = led.verify
    w.writerow(
        ["verify", "", "", "", "", "", "", "", "", "ok" if res and res.ok else "FAILED",
         res.summary() if res else "not verified"]
    )  # fmt: skip
    return out.getvalue()


# The printed page: A4 landscape, Japanese fonts first; a visit's row never splits.
_CSS = """
@page { size: A4 landscape; margin: 10mm 10mm; }
body { font-family: "Noto Sans CJK JP", "IPAexGothic", sans-serif; font-size: 8.5pt; }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 10.5pt; margin: 4mm 0 1.5mm; }
table { border-collapse: collapse; width: 100%; page-break-inside: auto; }
tr { page-break-inside: avoid; } thead { display: table-header-group; }
th, td { border: 0.4pt solid #444; padding: 0.6mm 1mm; text-align: left; vertical-align: top; }
th { background: #eee; } .meta td { border: none; padding: 0 3mm 0 0; }
table.visits { table-layout: fixed; }
table.visits th:nth-child(1), table.visits th:nth-child(2) { width: 11%; }
table.visits th:nth-child(3) { width: 15%; } table.visits th:nth-child(4) { width: 6%; }
table.visits th:nth-child(5) { width: 12%; } table.visits th:nth-child(8) { width: 12%; }
.ok { font-weight: bold; } .bad { font-weight: bold; color: #b00; }
.hash { font-family: monospace; font-size: 7pt; word-break: break-all; }
.sign { margin-top: 6mm; float: right; border: 0.4pt solid #444; width: 30mm; height: 20mm; }
.none { color: #555; } .open { color: #333; font-size: 8pt; }
"""


class _Page:
    """The ledger's rows as a page shows them: codes in words, areas by title."""

    def __init__(self, led: Ledger, lang: str, titles: dict[str, str]) -> None:
        self.led, self.lang, self.titles, self.L = led, lang, titles, LABELS[lang]

    def code(self, c: str) -> str:
        return CODES_JA.get(c, c) if self.lang == "ja" else c.replace("_", " ")

    def area(self, a: str) -> str:
        return self.titles.get(a) or a

    def table(self, headers: list[str], rows: list[list[str]], cls: str = "") -> str:
        e = html.escape
        if not rows:
            return f'<p class="none">{e(self.L["none"])}</p>'
        head = "".join(f"<th>{e(h)}</th>" for h in headers)
        body = "".join(
            "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows
        )
        return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _carried(self, v: Visit) -> str:
        if not v.carry_out or v.carry_out == "none":
            return self.code(v.carry_out) if v.carry_out else ""
        by = f" ({self.L['approved_by']} {v.carry_out_approver})" if v.carry_out_approver else ""
        return self.code(v.carry_out) + by

    def _person(self, v: Visit) -> str:
        L = self.L
        visitor = " / ".join(x for x in (v.company, v.host and f"{L['host']}: {v.host}") if x)
        if v.name or v.person:
            return v.name + (f" ({visitor})" if visitor else "")
        how = self.code(v.how) if v.how != "exit_button" else L["exit_button"]
        who = f" ({L['may_have_left']}: {v.may_have_left})" if v.may_have_left else ""
        return f"{L['unknown_person']} {how}{who}"

    def visits(self) -> list[list[str]]:
        c = self.code
        return [
            [v.entry or "-", v.exit or self.L["still_inside"], self._person(v), v.person,
             self.area(v.area), c(v.purpose), c(v.carry_in), self._carried(v), v.escort,
             v.approver]
            for v in self.led.visits
        ]  # fmt: skip

    def checks(self) -> list[list[str]]:
        cabinets = lambda c: ", ".join(f"{k}: {self.code(s)}" for k, s in c["cabinets"].items())  # noqa: E731
        return [
            [c["time"], self.area(c["area"]), c["confirmer"], self.L[c["result"]], cabinets(c)]
            for c in self.led.lockchecks
        ]

    def denied(self) -> list[list[str]]:
        return [
            [d["time"], self.area(d["area"]), d["name"] or "-", d["id"] or "-",
             self.code(d["reason"])]
            for d in self.led.denied
        ]  # fmt: skip

    def alarms(self) -> list[list[str]]:
        from edged.words import alarm_title

        def titled(a: dict[str, Any]) -> dict[str, Any]:
            f = a["fields"]
            return {**a, "fields": {**f, "area": self.area(f["area"])}} if "area" in f else a

        return [
            [a["time"], alarm_title(a["type"], self.lang), _alarm_text(titled(a), self.lang)]
            for a in self.led.alarms
        ]

    def reviews(self) -> list[list[str]]:
        return [
            [r["time"], r["reviewer"], f"{r['from']} – {r['to']}", r["method"], r["result"]]
            for r in self.led.reviews
        ]

    def open_line(self) -> str:
        left = self.led.open_visits
        if not left:
            return ""
        names = ", ".join(f"{v.name or v.person} {v.entry}" for v in left[:20])
        more = " …" if len(left) > 20 else ""
        return f'<p class="open">{html.escape(self.L["open_visits"])}: {len(left)} (' + (
            html.escape(names) + more + ")</p>")  # fmt: skip

    def verdict(self) -> tuple[str, str]:
        v, e = self.led.verify, html.escape
        if v and v.ok:
            return f'<span class="ok">{e(self.L["ok"])}</span>', e(v.summary())
        return f'<span class="bad">{e(self.L["bad"])}</span>', e(v.summary()) if v else ""


def to_html(
    led: Ledger,
    *,
    lang: str = "ja",
    device: str = "",
    generated: str = "",
    titles: dict[str, str] | None = None,
) -> str:
    """A printable A4 page (one or more), Japanese labels by default. ``titles``: the
    areas' titles from the configuration (else their names)."""
    pg = _Page(led, lang, titles or {})
    L, e, table = pg.L, html.escape, pg.table
    device = device or led.source
    visits, checks, denied, alarms = pg.visits(), pg.checks(), pg.denied(), pg.alarms()
    times = [r[0] for r in (*visits, *checks, *denied, *alarms)] + [r[1] for r in visits]
    marked = any(t.endswith((RECONSTRUCTED, UNSYNCED)) for t in times)
    legend = f'<p class="none">{e(L["legend"])}</p>' if marked else ""
    verdict, vline = pg.verdict()
    visit_heads = [L["entry"], L["exit"], L["person"], L["id"], L["area"], L["purpose"],
                   L["carry_in"], L["carry_out"], L["escort"], L["approver"]]  # fmt: skip
    return f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{e(L["title"])}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<style>{_CSS}</style></head><body>
<h1>{e(L["title"])}</h1>
<table class="meta"><tr><td>{e(L["period"])}: {led.start} – {led.end} ({e(led.tz)})</td>
<td>{e(L["device"])}: {e(device)}</td><td>{e(L["generated"])}: {e(generated)}</td></tr></table>
<h2>{e(L["visits"])}</h2>
{table(visit_heads, visits, "visits")}
{pg.open_line()}
<h2>{e(L["lockchecks"])}</h2>
{table([L["time"], L["area"], L["confirmer"], L["result"], L["cabinets"]], checks)}
<h2>{e(L["denied"])}</h2>
{table([L["time"], L["area"], L["person"], L["id"], L["reason"]], denied)}
<h2>{e(L["alarms"])}</h2>
{table([L["time"], L["type"], L["detail"]], alarms)}
{legend}
<h2>{e(L["verify"])}</h2>
<p>{verdict}</p><p class="hash">{vline}</p>
<h2>{e(L["reviews"])}</h2>
{table([L["reviewed_at"], L["reviewer"], L["period"], L["method"], L["findings"]],
       pg.reviews())}
<div class="sign">{e(L["signature"])}</div>
</body></html>
"""


class PdfUnavailable(RuntimeError):
    """No browser engine to print with: the ledger is still there as HTML and CSV."""


def to_pdf(page_html: str, *, chromium: str | None = None, timeout: float = 60) -> bytes:
    """The printable page as an A4 PDF, printed by headless Chromium: the same page as
    the HTML download, so what is filed on paper and what is read on screen cannot
    differ. Scripts and the network are off (the page has neither, and a name in it
    must not be able to fetch anything)."""
    import os
    import shutil
    import subprocess
    import tempfile

    exe = chromium or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p),
        None,
    )
    if not exe:
        raise PdfUnavailable("PDF needs Chromium: apt install chromium fonts-noto-cjk")
    with tempfile.TemporaryDirectory(prefix="edged-pdf-") as tmp:
        src, out = os.path.join(tmp, "ledger.html"), os.path.join(tmp, "ledger.pdf")
        with open(src, "w", encoding="utf-8") as f:
            f.write(page_html)
        args = [
            exe, "--headless", "--disable-gpu", "--disable-javascript",
            "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--no-pdf-header-footer", "--proxy-server=127.0.0.1:9",
            f"--user-data-dir={tmp}/profile", f"--print-to-pdf={out}", f"file://{src}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium's sandbox refuses root
        try:
            subprocess.run(args, capture_output=True, timeout=timeout, check=False)
            with open(out, "rb") as f:
                pdf = f.read()
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PdfUnavailable(f"Chromium did not print the ledger: {e}") from None
    if not pdf.startswith(b"%PDF"):
        raise PdfUnavailable("Chromium did not print the ledger")
    return pdf
