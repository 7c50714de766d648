"""The card cryptography against published vectors (issue 18, R11): NIST/RFC 4493
AES-CMAC, NXP AN10922 §2.2.1 key diversification, NXP AN12196 Table 14
AuthenticateEV2First (every intermediate value), and a PIV ECDSA signature made the way
a card makes it, verified with `cryptography`."""

from __future__ import annotations

import pytest
from edged.drivers.cards.crypto import (
    CardCryptoError,
    aes_cbc,
    aes_cmac,
    diversify,
    pad,
    pcd_answer,
    pcd_finish,
    session_keys,
    unpad,
)

pytestmark = pytest.mark.unit

H = bytes.fromhex


def test_aes_cmac_rfc4493():
    """R11: AES-CMAC, RFC 4493 examples 1 and 2."""
    key = H("2b7e151628aed2a6abf7158809cf4f3c")
    assert aes_cmac(key, b"") == H("bb1d6929e95937287fa37d129b756746")
    assert aes_cmac(key, H("6bc1bee22e409f96e93d7e117393172a")) == H(
        "070a16b46b4d4144f79bdd9dd04a287c"
    )


def test_an10922_aes128_diversification():
    """R11: AN10922 §2.2.1: master key 00..FF, UID 04782E21801D80, AID 3042F5, system
    identifier "NXP Abu" gives the published AES-128 card key."""
    master = H("00112233445566778899AABBCCDDEEFF")
    data = H("04782E21801D80") + H("3042F5") + b"NXP Abu"
    assert diversify(master, data) == H("A8DD63A3B89D54B37CA802473FDA9175")
    # One bit of input, a different key; input beyond 31 bytes is refused.
    assert diversify(master, H("04782E21801D81") + H("3042F5") + b"NXP Abu") != diversify(
        master, data
    )
    with pytest.raises(ValueError, match=r"1\.\.31 bytes"):
        diversify(master, bytes(32))


def test_an12196_authenticate_ev2_first():
    """R11: AN12196 Table 14 (key 0 = 00..00): RndB from the card's challenge, the door's
    cryptogram, then TI and both session keys from the card's answer; a changed answer,
    or the same answer to another RndA (a replay), is refused."""
    key = bytes(16)
    rnd_a = H("13C5DB8A5930439FC3DEF9A4C675360F")
    rnd_b, cryptogram = pcd_answer(key, H("A04C124213C186F22399D33AC2A30215"), rnd_a)
    assert rnd_b == H("B9E2FC789B64BF237CCCAA20EC7E6E48")
    assert cryptogram == H("35C3E05A752E0144BAC0DE51C1F22C56B34408A23D8AEA266CAB947EA8E0118D")
    answer = H("3FA64DB5446D1F34CD6EA311167F5E4985B89690C04A05F17FA7AB2F08120663")
    s = pcd_finish(key, rnd_a, rnd_b, answer)
    assert s.ti == H("9D00C4DF")
    assert s.enc == H("1309C877509E5A215007FF0ED19CA564")
    assert s.mac == H("4C6626F5E72EA694202139295C7A7FC7")
    assert session_keys(key, rnd_a, rnd_b) == (s.enc, s.mac)
    with pytest.raises(CardCryptoError, match="did not prove the key"):
        pcd_finish(key, rnd_a, rnd_b, answer[:-1] + b"\x00")
    with pytest.raises(CardCryptoError, match="did not prove the key"):
        pcd_finish(key, bytes(16), rnd_b, answer)  # a recorded answer, a new RndA
    with pytest.raises(CardCryptoError, match="did not prove the key"):
        pcd_finish(H("01" * 16), rnd_a, rnd_b, answer)  # another key


def test_padding_round_trip_and_garbage():
    """R11: ISO 9797-1 method 2 padding, including data ending in zeros."""
    for data in (b"", b"\x00", bytes(15), b"\x04\x78\x2e\x21\x80\x1d\x00"):
        assert unpad(pad(data)) == data
    with pytest.raises(CardCryptoError):
        unpad(bytes(16))
    key = bytes(range(16))
    assert aes_cbc(key, bytes(16), aes_cbc(key, bytes(16), pad(b"x")), decrypt=True) == pad(b"x")


def test_a_piv_signature_as_a_card_makes_it_verifies():
    """R11: a PIV card signs the 32-byte challenge itself as the digest (SP 800-73-4
    GENERAL AUTHENTICATE, ECC P-256, key 9E): `cryptography` verifies it as prehashed;
    another challenge does not verify."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, utils
    from edged.drivers.cards.piv import verify_challenge

    key = ec.generate_private_key(ec.SECP256R1())
    challenge = bytes(range(32))
    sig = key.sign(challenge, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    verify_challenge(key.public_key(), challenge, sig)
    with pytest.raises(InvalidSignature):
        verify_challenge(key.public_key(), bytes(32), sig)
