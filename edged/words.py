"""Alarms in words a person at the office reads: a title and a sentence in Japanese or
English, from the alarm's type and its record's fields. The console, the ledger and the
door's display all say the same thing the same way (R8, R15)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# type (without "alarm.") -> (title ja, title en, sentence ja, sentence en). Sentences
# name record fields in braces; a field the record lacks prints as "?".
ALARMS: dict[str, tuple[str, str, str, str]] = {
    "door_forced": (
        "扉のこじ開け", "Door forced",
        "扉 {door} が入室許可なしに開けられました。",
        "Door {door} was opened without anyone being let in.",
    ),
    "door_held_open": (
        "扉の開放放置", "Door held open",
        "扉 {door} が {seconds} 秒を超えて開いたままです。",
        "Door {door} has been open for more than {seconds} s.",
    ),
    "tamper": (
        "筐体開放", "Tamper",
        "制御装置の筐体が開けられました。",
        "The controller's case was opened.",
    ),
    "reader_lost": (
        "読取機の取外し", "Reader lost",
        "カード読取機 {reader} が応答しません({reason})。",
        "Card reader {reader} stopped answering ({reason}).",
    ),
    "driver_fault": (
        "機器異常", "Device fault",
        "{device} が故障しています({reason})。",
        "{device} has failed ({reason}).",
    ),
    "cabinet_unattended": (
        "無人時の書庫開錠", "Cabinet opened with nobody inside",
        "区域 {area} に誰もいない間に書庫 {cabinet} が開きました。",
        "Cabinet {cabinet} opened while nobody was inside {area}.",
    ),
    "area_not_closed": (
        "閉室時の未確認", "Area not closed",
        "区域 {area} が閉室時刻に閉じていません({day})。在室: {inside}、開いている書庫:"
        " {open_cabinets}、施錠確認: {lockcheck_today}",
        "{area} was not closed at closing time on {day}: inside {inside}, cabinets open"
        " {open_cabinets}, lock check done {lockcheck_today}.",
    ),
    "exit_without_tap": (
        "カードなしの退室", "Left without tapping out",
        "扉 {door} から退室ボタンで出た人がカードをタッチしませんでした。"
        "在室とされていた人: {may_have_left}",
        "Someone left {area} by the exit button at {door} without tapping out; counted"
        " inside then: {may_have_left}.",
    ),
    "presence_after_closing": (
        "閉室後の人の動き", "Someone in a closed area",
        "閉室後、誰も在室していないはずの区域 {area} で人の動きを検知しました。",
        "Motion in {area} after closing, with nobody counted inside.",
    ),
    "cabinet_open_too_long": (
        "書庫の開放放置", "Cabinet left open",
        "書庫 {cabinet} が {minutes} 分を超えて開いたままです。在室: {inside}",
        "Cabinet {cabinet} has been open for more than {minutes} minutes; inside: {inside}.",
    ),
    "cabinet_unauthorised": (
        "権限のない書庫開放", "Cabinet opened without its custodian",
        "書庫 {cabinet} が管理者の立会いなしに開きました({why})。在室: {inside}",
        "Cabinet {cabinet} opened without its custodian ({why}); inside: {inside}.",
    ),
    "carry_out_unapproved": (
        "未承認の持出", "Carry-out not approved",
        "{name} が {item} の持出を承認なしで退室しました({why})。",
        "{name} left with {item} that nobody approved ({why}).",
    ),
    "lockcheck_missed": (
        "施錠確認なし", "Lock check missed",
        "区域 {area} の最後の退室者 {name} が書庫の施錠を確認しませんでした。",
        "{name}, the last to leave {area}, did not confirm the cabinets were locked.",
    ),
    "pin_lockout": (
        "暗証番号ロック", "PIN lock-out",
        "{name} のカードは暗証番号を {attempts} 回誤ったため {minutes} 分間使えません。",
        "{name}'s card is locked for {minutes} min after {attempts} wrong PINs.",
    ),
    "visitor_unescorted": (
        "立会者なしの来訪者", "Visitor left unescorted",
        "立会者 {name} が退室し、来訪者が区域 {area} に残っています。",
        "Escort {name} left {area} while visitors were still inside.",
    ),
    "acl_rejected": (
        "権限表の拒否", "Access list refused",
        "届いた権限表を受け付けませんでした({reason})。",
        "An access list that arrived was refused ({reason}).",
    ),
    "acl_invalid": (
        "権限表の異常", "Access list unusable",
        "権限表を読めません({error})。",
        "The access list cannot be used ({error}).",
    ),
    "journal_unavailable": (
        "記録不能", "Journal unavailable",
        "記録を書き込めません。扉は閉じたままです。",
        "Records cannot be written; the door stays locked.",
    ),
    "checkpoint_contradicted": (
        "記録の不一致", "Journal contradicts a cosigned checkpoint",
        "集中側が確認した {size} 件の記録と装置の記録が一致しません({why})。",
        "The journal does not hold the {size} records the collector cosigned ({why}).",
    ),
    "journal_rollback": (
        "記録の巻き戻し", "Journal rolled back",
        "装置の記録が以前の状態に戻されました。",
        "The device's journal was put back to an earlier state.",
    ),
    "internal_error": (
        "内部エラー", "Internal error",
        "装置の内部エラー({where})。",
        "Internal error in the device ({where}).",
    ),
    # Raised by the central side; their detail is already a sentence (in English).
    "device_silent": ("装置の応答なし", "Device silent", "{detail}", "{detail}"),
    "sync_stalled": ("送信停滞", "Sync stalled", "{detail}", "{detail}"),
    "clock_unsynced": ("時刻未同期", "Clock not synchronised", "{detail}", "{detail}"),
    "acl_not_applied": ("権限表の未適用", "Access list not applied", "{detail}", "{detail}"),
    "bad_signature": ("署名不正", "Bad signature", "{detail}", "{detail}"),
    "bad_record": ("不正な記録", "Malformed record", "{detail}", "{detail}"),
    "rewrite": ("記録の改ざん", "Record rewritten", "{detail}", "{detail}"),
    "rollback": ("記録の巻き戻し", "Journal rolled back", "{detail}", "{detail}"),
    "bad_checkpoint": ("チェックポイント不正", "Bad checkpoint", "{detail}", "{detail}"),
}  # fmt: skip


def _text(v: Any) -> str | int | float | None:
    """A field as it reads in a sentence: scalars as they are, a list of them joined."""
    if isinstance(v, str | int | float) and not isinstance(v, bool):
        return v
    if isinstance(v, list) and all(isinstance(x, str | int) for x in v):
        return ",".join(map(str, v)) or "-"
    return None


class _Fields(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def alarm_title(atype: str, lang: str = "ja") -> str:
    """``door_held_open`` (or ``alarm.door_held_open``) -> 扉の開放放置 / Door held open."""
    words = ALARMS.get(atype.removeprefix("alarm."))
    if words is None:
        return atype.removeprefix("alarm.")
    return words[0] if lang == "ja" else words[1]


def alarm_sentence(atype: str, fields: Mapping[str, Any], lang: str = "ja") -> str:
    """What happened, from the alarm record's fields."""
    words = ALARMS.get(atype.removeprefix("alarm."))
    shown = _Fields({k: _text(v) for k, v in fields.items() if _text(v) is not None})
    if words is None:
        return " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    return (words[2] if lang == "ja" else words[3]).format_map(shown)


_PAIR = re.compile(r"(\w+)=(.*?)(?= \w+=|$)")


def fields_of_detail(detail: str) -> dict[str, str]:
    """The fields of a stored alarm's detail line (``door=main seconds=30``); a line
    that is not in that form is the ``detail`` itself (the central side's sentences)."""
    pairs = dict(_PAIR.findall(detail or ""))
    return (
        pairs
        if pairs and (detail or "").split("=", 1)[0].isidentifier()
        else {"detail": detail or ""}
    )
