"""Alarms in words: every alarm a device can record has a title and a sentence in both
languages, built from its record's fields (R8, R15)."""

from __future__ import annotations

import pytest

from edged.protocol.records import RECORD_TYPES, is_alarm
from edged.words import ALARMS, alarm_sentence, alarm_title, fields_of_detail

pytestmark = pytest.mark.unit


def test_every_device_alarm_has_words_in_both_languages():
    """R8: a new alarm type cannot reach the console as a bare code."""
    missing = [
        t for t in RECORD_TYPES if is_alarm(t) and t != "alarm.cleared"
        and t.removeprefix("alarm.") not in ALARMS
    ]  # fmt: skip
    assert not missing, missing
    for ja_title, en_title, ja, en in ALARMS.values():
        assert ja_title and en_title and ja.endswith(("。", "}")) and en.endswith((".", "}"))


def test_a_stored_detail_line_becomes_a_sentence():
    """R15: the detail line the collector stores reads back into the record's fields."""
    f = fields_of_detail("door=main seconds=30")
    assert (
        alarm_sentence("door_held_open", f, "en") == "Door main has been open for more than 30 s."
    )
    assert (
        alarm_sentence("alarm.door_held_open", f, "ja")
        == "扉 main が 30 秒を超えて開いたままです。"
    )
    assert alarm_title("door_held_open", "en") == "Door held open"
    f = fields_of_detail("reader=entry reason=usb gone away")
    assert f == {"reader": "entry", "reason": "usb gone away"}
    # A central sentence is kept whole; a missing field shows as "?", not a KeyError.
    assert alarm_sentence("device_silent", fields_of_detail("no heartbeat for 9 s"), "en") == (
        "no heartbeat for 9 s"
    )
    assert (
        alarm_sentence("door_forced", {}, "en") == "Door ? was opened without anyone being let in."
    )
    assert alarm_sentence("something_new", {"a": 1}, "en") == "a=1"


def test_a_list_field_reads_as_a_list():
    """R17: who was inside a cabinet's area is named in the alarm's sentence."""
    f = {"cabinet": "rack-back", "why": "not_released", "inside": ["S1", "S2"]}
    assert alarm_sentence("cabinet_unauthorised", f, "en") == (
        "Cabinet rack-back opened without its custodian (not_released); inside: S1,S2."
    )
    assert fields_of_detail("cabinet=rack-back inside=S1,S2 why=not_released")["inside"] == "S1,S2"
