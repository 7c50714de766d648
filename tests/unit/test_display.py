"""The door's character display (R1, R6): the HD44780 ROM's bytes for katakana and
ASCII, and what the screen says for each question, answer and open cabinet."""

from __future__ import annotations

from pathlib import Path

import pytest
from edged.drivers.hd44780 import decode, encode, fit

from edged.device.config import load_config
from edged.device.display import RESULT_SECONDS, Presenter

pytestmark = pytest.mark.unit

NS = 1_000_000_000
CFG = load_config(Path(__file__).parents[2] / "config" / "edged.toml")


def test_kana_become_the_roms_bytes():
    """R1: katakana and hiragana map to the A00 ROM's half-width cells, voicing marks as
    cells of their own; full-width ASCII folds to ASCII; what the ROM lacks is "?"."""
    assert encode("ガ") == bytes([0xB6, 0xDE])  # ｶ + ﾞ
    assert encode("ぱ") == bytes([0xCA, 0xDF])  # ﾊ + ﾟ (hiragana as katakana)
    assert encode("アンショウバンゴウ") == bytes.fromhex("b1 dd bc ae b3 ca de dd ba de b3")
    assert encode("ー。「」、・") == bytes.fromhex("b0 a1 a2 a3 a4 a5")
    assert encode("ＰＩＮ　１２") == b"PIN 12"
    assert encode("山田 Taro ¥\\") == b"?? Taro ??"  # kanji; 0x5C is a yen sign in A00
    assert decode(encode("ドウゾ S1001")) == "ﾄﾞｳｿﾞ S1001"
    assert fit(["ABCDEFGHIJKLMNOPQRS", "ｱ"], 16, 2) == [b"ABCDEFGHIJKLMNOP", b"\xb1" + b" " * 15]
    assert fit([], 16, 2) == [b" " * 16] * 2


def _screen(language="ja"):
    return Presenter({"main": "main"}, {"main": CFG.areas["handling"]}, language)


def test_the_screen_asks_answers_and_names_open_cabinets():
    """R1, R6: the question and what to press; a grant; a denial's reason in words; the
    last leaver's open cabinets by name; a result gives way to the open question."""
    p = _screen("en")
    snap = {"prompts": {"main": {"step": "purpose"}}}
    assert p.step([], snap, 0)["main"] == ["Purpose", "1/2/3 then #"]
    granted = {"type": "door.granted", "door": "main", "person": "S1001"}
    assert p.step([granted], {"prompts": {}}, 1)["main"] == ["Welcome S1001", ""]
    # Still shown while it is read, then the resting text.
    assert p.step([], {"prompts": {}}, 2)["main"] == ["Welcome S1001", ""]
    later = 1 + int(RESULT_SECONDS * NS)
    assert p.next_deadline() == later
    assert p.step([], {"prompts": {}}, later)["main"] == ["Tap your card"]
    denied = {"type": "door.denied", "door": "main", "reason": "holiday"}
    assert p.step([denied], {"prompts": {}}, later)["main"] == ["Access denied", "Closed today"]
    still_open = {"type": "lockcheck.open", "door": "main", "open": ["cab-b", "rack-back"]}
    assert p.step([still_open], {"prompts": {}}, later)["main"] == [
        "Still open:",
        "cab-b rack-back",
    ]
    warned = {**granted, "pin_expires_in_days": 9}
    assert p.step([warned], {}, later)["main"] == ["Welcome S1001", "PIN ends in 9d"]


def test_japanese_in_katakana_that_the_rom_shows():
    """R1: every Japanese text the display can show is within the ROM (no "?")."""
    from edged.device.display import REASONS, TEXTS

    for ja, _en in [*TEXTS.values(), *REASONS.values()]:
        assert b"?" not in encode(ja.replace("{", "").replace("}", "")), ja
    p = _screen("ja")
    denied = {"type": "door.denied", "door": "main", "reason": "pin_wrong"}
    lines = p.step([denied], {}, 0)["main"]
    cells = fit(lines, 16, 2)
    assert [len(c) for c in cells] == [16, 16]
    assert [decode(c).rstrip() for c in cells] == ["ﾆｭｳｼﾂ ﾃﾞｷﾏｾﾝ", "ﾊﾞﾝｺﾞｳ ﾁｶﾞｲ"]


def test_the_simulated_display_keeps_what_the_rom_would_show():
    """R1: the simulated LCD holds the cells as bytes and reads them back as text; an
    unchanged screen is not sent again."""
    from edged.device.hardware import make_device

    d = make_device("display", "sim", name="main", cols=16, rows=2)
    d.show(["ドウゾ S1001", "PIN アト9ニチ"])
    assert [r.rstrip() for r in d.text()] == ["ﾄﾞｳｿﾞ S1001", "PIN ｱﾄ9ﾆﾁ"]
    assert d.cells[0] == encode("ドウゾ S1001").ljust(16, b" ")
    d.cells = []
    d.show(["ドウゾ S1001", "PIN アト9ニチ"])
    assert d.cells == []  # the same screen: nothing written
    d.close()


def test_after_an_exit_by_the_button_the_screen_asks_the_last_one_out_to_tap():
    """R6 (issue 37): while the door offers the last-out check, its screen says so, in
    text the ROM shows and a 16-column screen holds; then it rests again."""
    offer = {"prompts": {}, "last_out_offers": {"main": "handling"}}
    assert _screen("en").step([], offer, 0)["main"] == ["Last out? Tap", "card to check"]
    ja = _screen("ja").step([], offer, 0)["main"]
    assert all(len(line) <= 16 and b"?" not in encode(line) for line in ja), ja
    assert _screen("en").step([], {"prompts": {}, "last_out_offers": {}}, 0)["main"] == [
        "Tap your card"
    ]


def test_a_cabinet_left_open_is_named_on_the_screen():
    """R7 (issue 37): the reminder of a cabinet left open shows at the area's door."""
    rec = {"type": "cabinet.open_reminder", "door": "main", "cabinet": "cab-a"}
    assert _screen("en").step([rec], {"prompts": {}}, 0)["main"] == ["Cabinet open:", "cab-a"]
    ja = _screen("ja").step([rec], {"prompts": {}}, 0)["main"]
    assert all(len(line) <= 16 and b"?" not in encode(line) for line in ja), ja


def test_an_area_not_closed_or_moving_after_closing_stays_on_its_doors_screen():
    """R6, R7 (issue 37): alarm.area_not_closed stands on the area's doors' displays until
    a last leaver checks (the core's snapshot clears it); motion after closing likewise,
    until someone goes in; a question asked at the door comes first; in katakana too."""
    p = _screen("en")
    closed = {"prompts": {}, "not_closed": {"handling": "2026-11-24"}}
    assert p.step([], closed, 0)["main"] == ["Area not closed", "Last out: check"]
    moving = {**closed, "presence_alarm": ["handling"]}
    assert p.step([], moving, 1)["main"] == ["Motion after close", "Please check"]
    asking = {**moving, "prompts": {"main": {"step": "lockcheck"}}}
    assert p.step([], asking, 2)["main"][0] == "Cabinets locked?"
    assert p.step([], {"prompts": {}}, 3)["main"] == ["Tap your card"]
    other = {"prompts": {}, "not_closed": {"server-room": "2026-11-24"}}
    assert p.step([], other, 4)["main"] == ["Tap your card"]
    ja = _screen("ja")
    assert ja.step([], closed, 0)["main"][0] == "ヘイシツ ミカクニン"
    assert encode(ja.step([], moving, 0)["main"][0]).find(b"?") == -1  # all in the ROM
