"""The symmetric cryptography of MIFARE DESFire EV2/EV3 (and NTAG 424, which shares it):
AES-CMAC, AN10922 key diversification, AuthenticateEV2First and EV2 secure messaging.

Checked against NXP's published examples: AN10922 §2.2.1 (diversification) and AN12196
Table 14 (AuthenticateEV2First with key 0: RndB, the PCD's cryptogram, TI and both
session keys); see tests/test_card_crypto.py. Both the door (drivers/cards/desfire.py)
and the simulated card (simulators/cards.py) use these functions, so a simulated card is
only as right as the vectors make them.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

BLOCK = 16
ZERO_IV = bytes(BLOCK)


class CardCryptoError(ValueError):
    """A card's answer that does not hold cryptographically (wrong key, a replay).
    ``claimed``: the identity the card named before it failed, if it named one."""

    claimed: bytes | None = None


class NotThisCard(CardCryptoError):
    """The card does not speak this protocol (another kind of card): not a failure of
    proof, the door goes on to the next way of reading it."""


class CardGone(Exception):
    """The card left the field (or the reader failed) in the middle of a protocol."""


def aes_cbc(key: bytes, iv: bytes, data: bytes, *, decrypt: bool = False) -> bytes:
    c = Cipher(algorithms.AES(key), modes.CBC(iv))
    op = c.decryptor() if decrypt else c.encryptor()
    return op.update(data) + op.finalize()


def aes_ecb(key: bytes, block: bytes) -> bytes:
    op = Cipher(algorithms.AES(key), modes.ECB()).encryptor()  # noqa: S305 (one block: a PRF)
    return op.update(block) + op.finalize()


def aes_cmac(key: bytes, data: bytes) -> bytes:
    c = cmac.CMAC(algorithms.AES(key))
    c.update(data)
    return c.finalize()


def _subkeys(key: bytes) -> tuple[bytes, bytes]:
    """CMAC's K1 and K2 (NIST SP 800-38B)."""

    def dbl(b: bytes) -> bytes:
        n = int.from_bytes(b, "big") << 1
        if n >> 128:
            n = (n & ((1 << 128) - 1)) ^ 0x87
        return n.to_bytes(16, "big")

    k1 = dbl(aes_ecb(key, ZERO_IV))
    return k1, dbl(k1)


def diversify(master: bytes, data: bytes) -> bytes:
    """An AES-128 card key from the site's master key and the diversification input
    (AN10922 §2.2: M = 0x01 || input, padded to 32 bytes with 80 00.., its last block
    XORed with K2 when padded, K1 when not; the key is the CMAC's last block)."""
    if not 1 <= len(data) <= 31:
        raise ValueError("diversification input must be 1..31 bytes")
    m = b"\x01" + data
    k1, k2 = _subkeys(master)
    if len(m) < 32:
        m = m + b"\x80" + bytes(31 - len(m))
        last = k2
    else:
        last = k1
    m = m[:16] + bytes(a ^ b for a, b in zip(m[16:], last, strict=True))
    return aes_cbc(master, ZERO_IV, m)[16:]


def card_key(master: bytes, uid: bytes, aid: bytes, system: bytes) -> bytes:
    """The key of one card: diversified by its UID, the application and the system name
    (AN10922's layout: UID || AID || system identifier)."""
    return diversify(master, uid + aid + system[: 31 - len(uid) - len(aid)])


def crc32_desfire(data: bytes) -> bytes:
    """DESFire's CRC32 over a new key (IEEE 802.3 polynomial, no final inversion),
    little-endian."""
    return ((zlib.crc32(data) ^ 0xFFFFFFFF) & 0xFFFFFFFF).to_bytes(4, "little")


def rotl(b: bytes) -> bytes:
    return b[1:] + b[:1]


def pad(data: bytes) -> bytes:
    """ISO/IEC 9797-1 method 2: 80 then zeros to a whole block (always at least 80)."""
    n = BLOCK - (len(data) % BLOCK)
    return data + b"\x80" + bytes(n - 1)


def unpad(data: bytes) -> bytes:
    i = data.rstrip(b"\x00")
    if not i.endswith(b"\x80"):
        raise CardCryptoError("bad padding")
    return i[:-1]


@dataclass
class Session:
    """An EV2 secure-messaging session: the transaction identifier, the two session
    keys and the command counter."""

    ti: bytes
    enc: bytes
    mac: bytes
    ctr: int = 0

    def _ctr(self, n: int) -> bytes:
        return n.to_bytes(2, "little")

    def mac_t(self, data: bytes) -> bytes:
        """A truncated MAC: the odd bytes of the CMAC (S14, S12, ..., S0)."""
        return aes_cmac(self.mac, data)[1::2]

    def command_mac(self, cmd: int, header: bytes = b"", data: bytes = b"") -> bytes:
        return self.mac_t(bytes([cmd]) + self._ctr(self.ctr) + self.ti + header + data)

    def response_mac(self, rc: int, data: bytes) -> bytes:
        """The MAC a card puts on its answer (the counter already advanced)."""
        return self.mac_t(bytes([rc]) + self._ctr(self.ctr + 1) + self.ti + data)

    def iv_command(self) -> bytes:
        return aes_ecb(self.enc, b"\xa5\x5a" + self.ti + self._ctr(self.ctr) + bytes(8))

    def iv_response(self) -> bytes:
        return aes_ecb(self.enc, b"\x5a\xa5" + self.ti + self._ctr(self.ctr + 1) + bytes(8))


def session_keys(key: bytes, rnd_a: bytes, rnd_b: bytes) -> tuple[bytes, bytes]:
    """SesAuthENCKey and SesAuthMACKey from the two random numbers."""
    mix = rnd_a[0:2] + bytes(a ^ b for a, b in zip(rnd_a[2:8], rnd_b[0:6], strict=True))
    tail = mix + rnd_b[6:16] + rnd_a[8:16]
    enc = aes_cmac(key, b"\xa5\x5a\x00\x01\x00\x80" + tail)
    mac = aes_cmac(key, b"\x5a\xa5\x00\x01\x00\x80" + tail)
    return enc, mac


def pcd_answer(key: bytes, enc_rnd_b: bytes, rnd_a: bytes) -> tuple[bytes, bytes]:
    """The door's second step: (RndB, E(K, RndA || RndB <<< 8))."""
    if len(enc_rnd_b) != BLOCK:
        raise CardCryptoError(f"card challenge of {len(enc_rnd_b)} bytes, not 16")
    rnd_b = aes_cbc(key, ZERO_IV, enc_rnd_b, decrypt=True)
    return rnd_b, aes_cbc(key, ZERO_IV, rnd_a + rotl(rnd_b))


def pcd_finish(key: bytes, rnd_a: bytes, rnd_b: bytes, answer: bytes) -> Session:
    """The card's last answer checked: it must hold RndA <<< 8, which only a card with the
    key can make from this door's fresh RndA. The session, or CardCryptoError."""
    if len(answer) != 2 * BLOCK:
        raise CardCryptoError(f"card answer of {len(answer)} bytes, not 32")
    plain = aes_cbc(key, ZERO_IV, answer, decrypt=True)
    if plain[4:20] != rotl(rnd_a):
        raise CardCryptoError("the card did not prove the key (RndA' does not match)")
    enc, mac = session_keys(key, rnd_a, rnd_b)
    return Session(plain[0:4], enc, mac)
