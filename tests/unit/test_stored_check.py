"""The central copy's fast re-check of a stored record (R9, R13): what it returns is
exactly what the device hashed, whatever was done to the stored text; text it cannot
cut cleanly goes the full way and gets the same answer."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.central.verify import check_hash, check_stored
from edged.protocol.records import seal

pytestmark = pytest.mark.unit


def _stored(fields: dict) -> tuple[str, str, dict]:
    obj = {"site": "s", "device": "d", "seq": 1, "ts": "2026-11-27T00:00:00.000Z",
           "type": "door.granted", "prev": "0" * 64, "key_id": "k", **fields}  # fmt: skip
    rec = seal(obj, lambda _b: bytes(64))
    text = rec.wire().decode()
    return text, rec.hash, json.loads(text)


def _unsigned(rec: dict) -> dict:
    return {k: v for k, v in rec.items() if k != "sig"}


def test_a_stored_record_reads_back_by_the_fast_way_and_the_full_way():
    """R13: canonical text is read by the cut; a nested "hash", text with spaces, a
    tampered value and a stored hash that differs are each answered right."""
    text, h, want = _stored({"person": "S1", "name": '山田 "太郎"'})
    assert check_stored(text, h) == want == check_hash(text)
    nested, hn, want_n = _stored({"cabinets": {"hash": "x" * 64}})
    assert check_stored(nested, hn) == want_n  # the cut hits the nested one: full way
    spaced = json.dumps(want, indent=1, ensure_ascii=False)
    assert check_stored(spaced, h) == want  # not canonical, but the same record
    assert check_stored(text.replace("S1", "S2"), h) == "hash does not match the record"
    assert check_stored(text, "f" * 64) == "stored hash differs from the record's"


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=0, max_value=400),
    st.integers(min_value=0, max_value=6),
    st.text(alphabet='",:{}\\ab0f', max_size=70),
)
def test_whatever_is_done_to_the_stored_text_nothing_else_is_read(at, cut, insert):
    """R9: a stored text changed anywhere (cut, insertion of JSON punctuation, a copy of
    the hash member) is either refused or read back as exactly the signed record."""
    text, h, want = _stored({"person": "S1", "name": 'a"b', "cabinets": {"c": "open"}})
    at = at % (len(text) + 1)
    changed = text[:at] + insert + text[at + cut :]
    got = check_stored(changed, h)
    # The signature is not under the hash (it is checked with --trust): all the rest is.
    assert isinstance(got, str) or _unsigned(got) == _unsigned(want), (changed, got)


def test_the_hash_member_moved_into_a_string_is_refused():
    """R9: the trick of splitting a string around a copy of the members (the cut would
    join it again) does not make the record read differently."""
    text, h, want = _stored({"name": "Yamada"})
    member = f'"hash":"{h}",'
    moved = text.replace(member, "").replace('"Yamada"', f'"Yam{member}ada"')
    got = check_stored(moved, h)
    assert isinstance(got, str) or _unsigned(got) == _unsigned(want)
