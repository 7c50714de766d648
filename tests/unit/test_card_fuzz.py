"""Malformed card answers (issue 18, R11): whatever a card (or something pretending to
be one) answers, the door's DESFire and PIV code ends in a card error it reports as a
refusal, never in another exception (which would stop the reader's watcher) and never
in a proof."""

from __future__ import annotations

import pytest
from edged.drivers.cards import desfire, piv
from edged.drivers.cards.crypto import CardCryptoError
from edged.drivers.cards.desfire import DesfireSettings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.unit

SETTINGS = DesfireSettings(bytes.fromhex("E1D6E0"), 1, 1, bytes(range(16)), b"edged")

# Answers that look like a card's: random data with the status words the protocols
# branch on, so the fuzzing reaches past the first exchange.
STATUS = st.sampled_from(
    [b"\x91\x00", b"\x91\xaf", b"\x91\xae", b"\x91\xa0", b"\x90\x00", b"\x61\x10",
     b"\x61\x00", b"\x6a\x82", b"", b"\x91"]
)  # fmt: skip
ANSWER = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda d, s: d + s, st.binary(max_size=300), STATUS),
    st.builds(lambda n, s: bytes(7) if n else bytes(32), st.booleans(), STATUS).map(
        lambda b: b + b"\x91\x00"
    ),
)


def _transmit(answers: list[bytes]):
    it = iter(answers)

    def transmit(apdu: bytes) -> bytes:
        return next(it, b"\x91\x00")

    return transmit


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ANSWER, max_size=8))
def test_desfire_never_proves_and_never_crashes_on_garbage(answers):
    """R11: every outcome is a CardCryptoError (NotThisCard included)."""
    with pytest.raises(CardCryptoError):
        desfire.authenticate(_transmit(answers), SETTINGS)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ANSWER, max_size=8))
def test_piv_never_proves_and_never_crashes_on_garbage(answers):
    """R11: every outcome is a CardCryptoError (NotThisCard included)."""
    with pytest.raises(CardCryptoError):
        piv.authenticate(_transmit(answers))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.binary(min_size=1, max_size=3))
def test_tlv_parsing_refuses_garbage_with_a_card_error(data, tag):
    """R11: a certificate object or a signature template of any shape: a value that
    lies inside the data, or a card error."""
    try:
        value = piv.parse_tlv(data, tag)
    except CardCryptoError:
        return
    assert value in data
