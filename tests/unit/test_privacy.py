"""No Individual Number and no raw card number is ever recorded (R11)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.errors import PrivacyError
from edged.protocol.privacy import (
    CardFingerprinter,
    check_fields,
    contains_individual_number,
    is_individual_number,
    my_number_check_digit,
)

pytestmark = pytest.mark.unit

eleven = st.text(alphabet="0123456789", min_size=11, max_size=11)


def valid_number(first11: str) -> str:
    return first11 + str(my_number_check_digit(first11))


def test_known_sample_number():
    """R11: 1234 5678 9018 carries a valid check digit; 1234 5678 9012 does not."""
    assert is_individual_number("123456789018")
    assert not is_individual_number("123456789012")


@given(eleven)
def test_every_valid_number_is_refused_in_any_common_spelling(first11):
    """R11: a valid number is refused bare, grouped, inside text and as an integer."""
    n = valid_number(first11)
    spellings = [n, f"{n[:4]} {n[4:8]} {n[8:]}", f"{n[:4]}-{n[4:8]}-{n[8:]}", f"番号:{n}です"]
    for s in spellings:
        with pytest.raises(PrivacyError) as e:
            check_fields({"note": s})
        assert n not in str(e.value)  # the error never repeats the value
    if n[0] != "0":
        with pytest.raises(PrivacyError):
            check_fields({"nested": {"list": [int(n)]}})


@given(eleven)
def test_wrong_check_digit_is_not_flagged(first11):
    good = my_number_check_digit(first11)
    wrong = (good + 1) % 10
    assert not contains_individual_number(first11 + str(wrong))


@given(st.binary(min_size=32, max_size=32))
def test_hex_digests_are_never_mistaken(raw):
    """Hashes in records contain digit runs; they must not trip the detector."""
    assert not contains_individual_number(raw.hex())
    assert not contains_individual_number("0" * 64)


@pytest.mark.parametrize("field", ["pin", "uid", "IDm", "card_uid", "my_number", "password"])
def test_secret_field_names_are_refused(field):
    """R3, R11: fields that would hold a PIN or raw card id are refused by name."""
    with pytest.raises(PrivacyError):
        check_fields({"x": {field: "anything"}})


def test_fingerprint_is_keyed_and_stable():
    """R11: a card is known by a keyed fingerprint that reveals nothing of the uid."""
    a = CardFingerprinter(b"a" * 32)
    b = CardFingerprinter(b"b" * 32)
    uid = bytes.fromhex("012E4CD9A1B2C3D4")
    assert a.fingerprint(uid) == a.fingerprint(uid)
    assert a.fingerprint(uid) != b.fingerprint(uid)
    assert a.fingerprint(uid) != a.fingerprint(uid[:-1])
    assert uid.hex().lower() not in a.fingerprint(uid).lower()
    assert "aaaa" not in repr(a) and "6161" not in repr(a)
    with pytest.raises(ValueError):
        CardFingerprinter(b"short")
