"""Canonical encoding: the bytes that are hashed must be unique for a value (R9)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.canonical import canonical_bytes
from edged.errors import JournalError

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**63) | st.text()
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(st.text(), values, max_size=8)


@given(objects)
def test_round_trip_and_compact(obj):
    """R9: encoding is lossless and has no whitespace between tokens."""
    b = canonical_bytes(obj)
    assert json.loads(b) == obj
    assert (
        b
        == json.dumps(
            json.loads(b), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )


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
