"""Canonical encoding: the bytes that are hashed must be unique for a value (R9)."""

from __future__ import annotations

import json

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from edged.errors import JournalError
from edged.protocol.canonical import canonical_bytes

pytestmark = pytest.mark.unit

SAFE = 2**53 - 1
# Keys and strings from all of Unicode, non-BMP included (emoji, extension-B kanji), where
# code-point order and RFC 8785's UTF-16 order differ.
texts = st.text(st.characters(blacklist_categories=("Cs",)))
scalars = st.none() | st.booleans() | st.integers(-SAFE, SAFE) | texts
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(texts, values, max_size=8)


@given(objects)
def test_round_trip_and_compact(obj):
    """R9: encoding is lossless and has no whitespace between tokens."""
    b = canonical_bytes(obj)
    assert json.loads(b) == obj
    assert b"\n" not in b and not b.startswith(b" ")


@given(objects, st.randoms())
def test_key_order_does_not_matter(obj, rnd):
    """R9: the same record built in any key order hashes the same."""
    items = list(obj.items())
    rnd.shuffle(items)
    assert canonical_bytes(dict(items)) == canonical_bytes(obj)


def test_utf8_not_escaped():
    assert canonical_bytes({"name": "山田"}) == '{"name":"山田"}'.encode()


@pytest.mark.parametrize(
    "bad",
    [
        {"x": 1.5},
        {"x": float("nan")},
        {"x": b"raw"},
        {"x": {1: 2}},
        {"x": object()},
        {"x": "\ud800"},
    ],
)
def test_values_without_one_text_form_are_refused(bad):
    with pytest.raises(JournalError):
        canonical_bytes(bad)


@given(objects)
def test_records_are_rfc8785_canonical(obj):
    """R9: edged's canonical form is RFC 8785 (JCS), checked against an independent
    implementation (the rfc8785 package), so any JCS library reproduces a record's bytes
    and hash; keys with non-BMP characters included."""
    assert canonical_bytes(obj) == rfc8785.dumps(obj)


def test_non_bmp_keys_sort_by_utf16_code_units():
    """R9: U+1F600 sorts before U+FF61 in UTF-16 (a surrogate, 0xD83D < 0xFF61), after it by
    code point; JCS wants the UTF-16 order (Python's sort_keys gave the other)."""
    obj = {"\uff61": 1, "\U0001f600": 2, "a": {"\uff61": 3, "\U00020000": 4}}
    assert canonical_bytes(obj) == rfc8785.dumps(obj)
    assert list(json.loads(canonical_bytes(obj))) == ["a", "\U0001f600", "\uff61"]


@pytest.mark.parametrize("n", [SAFE + 1, -(SAFE + 1), 2**63])
def test_integers_beyond_2_53_are_refused(n):
    """R9: JCS implementations refuse them and JavaScript rounds them: never signed."""
    with pytest.raises(JournalError, match="2\\^53"):
        canonical_bytes({"x": n})
    with pytest.raises(rfc8785.IntegerDomainError):
        rfc8785.dumps({"x": n})


def test_the_largest_values_records_reach_stay_exact(journal, clock):
    """R9: mono_ns passed 2^53 after 104 days of uptime; records carry mono_us, exact for
    285 years of uptime. The largest values a record's integers reach round-trip through
    JCS unchanged."""
    clock.mono = 10 * 365 * 86_400 * 10**9  # ten years of uptime
    rec = journal.append("door.closed", door="main", open_ms=SAFE)
    fields = rec.fields
    assert fields["mono_us"] == clock.mono // 1000 and "mono_ns" not in fields
    wire = json.loads(rec.wire())
    assert rfc8785.dumps({k: v for k, v in wire.items() if k not in ("hash", "sig")}) == rec.body
    with pytest.raises(JournalError):
        journal.append("door.closed", door="main", open_ms=SAFE + 1)
