"""PIV card authentication at the door (NIST SP 800-73-4, SP 800-116 PKI-CAK).

The door selects the PIV application, reads the Card Authentication certificate
(key 9E, which needs no PIN), sends a fresh random challenge in GENERAL AUTHENTICATE and
checks the card's signature with the certificate's public key. The card is then named by
its public key (the fingerprint of its SubjectPublicKeyInfo): a copy of the certificate
without the private key cannot answer a new challenge, and another key is another card.
The certificate's chain is not followed: the access list pins the key itself, which is
stronger than any issuer, and needs nothing online.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from edged.drivers.cards.crypto import CardCryptoError, NotThisCard

PIV_AID = bytes.fromhex("A000000308000010000100")
CAK_OBJECT = bytes.fromhex("5FC101")  # X.509 certificate for Card Authentication
KEY_CAK = 0x9E
ALG = {"P-256": 0x11, "P-384": 0x14, "RSA-2048": 0x07}
MAX_OBJECT = 4096  # a certificate object larger than this is not read

Transmit = Callable[[bytes], bytes]  # command APDU -> response with status word


class PivError(CardCryptoError):
    """The card is not a PIV card, or did not prove its Card Authentication key."""


def tlv(tag: bytes, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        size = bytes([n])
    elif n < 0x100:
        size = b"\x81" + bytes([n])
    else:
        size = b"\x82" + n.to_bytes(2, "big")
    return tag + size + value


def parse_tlv(data: bytes, tag: bytes) -> bytes:
    """The value of the first ``tag`` at the top level of ``data``; PivError if absent."""
    i = 0
    while i < len(data):
        t = data[i : i + 1]
        if t and t[0] & 0x1F == 0x1F:  # multi-byte tag
            j = i + 1
            while j < len(data) and data[j] & 0x80:
                j += 1
            t = data[i : j + 1]
        i += len(t)
        if i >= len(data):
            break
        first = data[i]
        if first < 0x80:
            n, i = first, i + 1
        elif first == 0x81 and i + 1 < len(data):
            n, i = data[i + 1], i + 2
        elif first == 0x82 and i + 2 < len(data):
            n, i = int.from_bytes(data[i + 1 : i + 3], "big"), i + 3
        else:
            raise PivError("malformed length in the card's answer")
        if i + n > len(data):
            raise PivError("the card's answer is shorter than its lengths say")
        if t == tag:
            return data[i : i + n]
        i += n
    raise PivError(f"tag {tag.hex().upper()} missing from the card's answer")


def exchange(transmit: Transmit, apdu: bytes) -> bytes:
    """Send one command, follow 61xx with GET RESPONSE; the data, or PivError naming the
    status word."""
    out = b""
    resp = transmit(apdu)
    for _ in range(64):
        if len(resp) < 2:
            raise PivError("card answered without a status word")
        out += resp[:-2]
        if len(out) > MAX_OBJECT:
            raise PivError("card answer too long")
        sw1, sw2 = resp[-2], resp[-1]
        if sw1 == 0x61:
            resp = transmit(bytes([0x00, 0xC0, 0x00, 0x00, sw2]))
            continue
        if (sw1, sw2) != (0x90, 0x00):
            raise PivError(f"card answered status {sw1:02X}{sw2:02X}")
        return out
    raise PivError("card kept answering 61xx")


def select(transmit: Transmit) -> None:
    try:
        exchange(transmit, b"\x00\xa4\x04\x00" + bytes([len(PIV_AID)]) + PIV_AID + b"\x00")
    except PivError as e:
        raise NotThisCard(f"no PIV application ({e})") from None


def read_cak_key(transmit: Transmit) -> tuple[object, bytes]:
    """The Card Authentication public key and its SubjectPublicKeyInfo (DER)."""
    data = tlv(b"\x5c", CAK_OBJECT)
    obj = exchange(transmit, b"\x00\xcb\x3f\xff" + bytes([len(data)]) + data + b"\x00")
    der = parse_tlv(parse_tlv(obj, b"\x53"), b"\x70")
    try:
        cert = x509.load_der_x509_certificate(der)
        pub = cert.public_key()
    except ValueError as e:
        raise PivError(f"the Card Authentication certificate does not parse ({e})") from None
    if not isinstance(pub, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise PivError("the Card Authentication key is neither ECC nor RSA")
    spki = pub.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pub, spki


def _algorithm(pub: object) -> tuple[int, int]:
    """(PIV algorithm id, challenge length) for a key."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        if pub.curve.name == "secp256r1":
            return ALG["P-256"], 32
        if pub.curve.name == "secp384r1":
            return ALG["P-384"], 48
    if isinstance(pub, rsa.RSAPublicKey) and pub.key_size == 2048:
        return ALG["RSA-2048"], 256
    raise PivError("unsupported Card Authentication key (P-256, P-384 or RSA-2048)")


def _rsa_block(nonce: bytes) -> bytes:
    """EMSA-PKCS1-v1_5 of SHA-256(nonce) for a 2048-bit key: the card signs it raw."""
    digest_info = bytes.fromhex("3031300d060960864801650304020105000420")
    h = hashes.Hash(hashes.SHA256())
    h.update(nonce)
    t = digest_info + h.finalize()
    return b"\x00\x01" + b"\xff" * (256 - len(t) - 3) + b"\x00" + t


def verify_challenge(pub: object, challenge: bytes, sig: bytes) -> None:
    """InvalidSignature unless ``sig`` is the card's signature of ``challenge``."""
    if isinstance(pub, ec.EllipticCurvePublicKey):
        algo = hashes.SHA256() if pub.curve.name == "secp256r1" else hashes.SHA384()
        pub.verify(sig, challenge, ec.ECDSA(utils.Prehashed(algo)))
    elif isinstance(pub, rsa.RSAPublicKey):
        pub.verify(sig, challenge, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise PivError("unsupported key")


def authenticate(transmit: Transmit) -> bytes:
    """Run PKI-CAK with a fresh challenge; the card's SubjectPublicKeyInfo (DER) when it
    proved its key, PivError otherwise."""
    select(transmit)
    pub, spki = read_cak_key(transmit)
    try:
        return _challenge(transmit, pub, spki)
    except CardCryptoError as e:
        e.claimed = spki  # whose card this copy claims to be
        raise


def _challenge(transmit: Transmit, pub: object, spki: bytes) -> bytes:
    from cryptography.exceptions import InvalidSignature

    alg, size = _algorithm(pub)
    nonce = os.urandom(32)
    challenge = _rsa_block(nonce) if alg == ALG["RSA-2048"] else os.urandom(size)
    template = tlv(b"\x7c", tlv(b"\x82", b"") + tlv(b"\x81", challenge))
    lc = len(template)
    head = bytes([0x00, 0x87, alg, KEY_CAK])
    apdu = head + (bytes([lc]) if lc < 256 else b"\x00" + lc.to_bytes(2, "big")) + template
    answer = exchange(transmit, apdu + (b"\x00" if lc < 256 else b"\x00\x00"))
    sig = parse_tlv(parse_tlv(answer, b"\x7c"), b"\x82")
    try:
        verify_challenge(pub, nonce if alg == ALG["RSA-2048"] else challenge, sig)
    except InvalidSignature:
        raise PivError("the card did not prove its Card Authentication key") from None
    return spki
