"""MIFARE DESFire EV2/EV3 at the door: the card proves it holds its own AES key.

Native DESFire commands wrapped in ISO 7816-4 (CLA 90, INS = the command, the status in
SW2 after 91). The door:

1. selects the site's application (``aid``);
2. reads the card number the application holds in a free-read file (``file_no``): the
   card's real UID, written at enrolment. Random-UID cards are fine: this number does not
   change;
3. derives that card's key from the site master key (AN10922: UID || AID || system
   name) and runs AuthenticateEV2First with key ``key_no``: only a card with that key
   answers the door's fresh random number;
4. asks for the real UID under the session (GetCardUID, encrypted and MACed) and
   requires it to be the number read in step 2.

A copied card number without the key fails at 3 (``card_auth_failed``), a replayed
transcript too (the door's random number is new each time), and a genuine key moved to
another chip fails at 4.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from edged.drivers.cards.crypto import (
    CardCryptoError,
    NotThisCard,
    Session,
    aes_cbc,
    card_key,
    crc32_desfire,
    pad,
    pcd_answer,
    pcd_finish,
    unpad,
)

Transmit = Callable[[bytes], bytes]

SELECT_APPLICATION = 0x5A
READ_DATA = 0xBD
AUTH_EV2_FIRST = 0x71
ADDITIONAL_FRAME = 0xAF
GET_CARD_UID = 0x51
OK = 0x00
UID_LENGTHS = (7, 10)  # DESFire UIDs: 7 bytes (10 on some newer parts)


class DesfireError(CardCryptoError):
    """The card is not the site's DESFire card, or did not prove its key."""


@dataclass(frozen=True)
class DesfireSettings:
    aid: bytes  # 3 bytes, as written (most significant first)
    key_no: int
    file_no: int
    master_key: bytes  # the site's AES-128 master key: never logged, never in a record
    system: bytes  # the diversification system identifier (the same at every door)

    def __repr__(self) -> str:
        return f"DesfireSettings(aid={self.aid.hex()}, key_no={self.key_no})"


def command(transmit: Transmit, cmd: int, data: bytes = b"") -> tuple[int, bytes]:
    """One wrapped native command: (status, data); DesfireError on a malformed answer."""
    apdu = bytes([0x90, cmd, 0x00, 0x00]) + (bytes([len(data)]) + data if data else b"") + b"\x00"
    resp = transmit(apdu)
    if len(resp) < 2 or resp[-2] != 0x91:
        # Mid-protocol this is a failure; on the first command, another kind of card.
        raise DesfireError(f"not a DESFire answer (status {resp[-2:].hex().upper() or 'none'})")
    return resp[-1], resp[:-2]


def _expect(status: int, what: str) -> None:
    if status != OK:
        raise DesfireError(f"{what}: card status {status:02X}")


def read_card_number(transmit: Transmit, s: DesfireSettings) -> bytes:
    try:
        status, _ = command(transmit, SELECT_APPLICATION, s.aid[::-1])  # AIDs go LSB first
    except DesfireError as e:
        raise NotThisCard(str(e)) from None
    if status == 0xA0:
        raise NotThisCard("a DESFire card without this site's application")
    _expect(status, "select application")
    status, number = command(
        transmit,
        READ_DATA,
        bytes([s.file_no]) + (0).to_bytes(3, "little") + (7).to_bytes(3, "little"),
    )
    _expect(status, "read card number")
    if len(number) not in UID_LENGTHS:
        raise DesfireError(f"card number of {len(number)} bytes")
    return number


def authenticate_ev2(transmit: Transmit, key_no: int, key: bytes) -> Session:
    """AuthenticateEV2First with ``key``: the session, or DesfireError."""
    rnd_a = os.urandom(16)
    status, challenge = command(transmit, AUTH_EV2_FIRST, bytes([key_no, 0x00]))
    if status != ADDITIONAL_FRAME:
        raise DesfireError(f"authenticate: card status {status:02X}")
    rnd_b, cryptogram = pcd_answer(key, challenge, rnd_a)
    status, answer = command(transmit, ADDITIONAL_FRAME, cryptogram)
    if status != OK:
        # 0xAE: the card found the door's cryptogram wrong (the keys differ).
        raise DesfireError(f"authentication refused by the card (status {status:02X})")
    try:
        return pcd_finish(key, rnd_a, rnd_b, answer)
    except CardCryptoError as e:
        raise DesfireError(str(e)) from None


def get_card_uid(transmit: Transmit, session: Session) -> bytes:
    """The real UID, asked and answered under secure messaging (full mode)."""
    mac = session.command_mac(GET_CARD_UID)
    status, answer = command(transmit, GET_CARD_UID, mac)
    _expect(status, "get card UID")
    if len(answer) < 16 + 8 or (len(answer) - 8) % 16:
        raise DesfireError("get card UID: malformed answer")
    enc, their_mac = answer[:-8], answer[-8:]
    if session.response_mac(OK, enc) != their_mac:
        raise DesfireError("get card UID: the answer's MAC does not hold")
    uid = unpad(aes_cbc(session.enc, session.iv_response(), enc, decrypt=True))
    session.ctr += 1
    if len(uid) not in UID_LENGTHS:
        raise DesfireError(f"get card UID: {len(uid)} bytes")
    return uid


def authenticate(transmit: Transmit, s: DesfireSettings) -> bytes:
    """The card's real UID once it has proved its key; DesfireError otherwise."""
    number = read_card_number(transmit, s)
    try:
        key = card_key(s.master_key, number, s.aid, s.system)
        uid = get_card_uid(transmit, authenticate_ev2(transmit, s.key_no, key))
        if uid != number:
            raise DesfireError("the card's real UID is not the card number it holds")
    except CardCryptoError as e:
        e.claimed = number  # whose card this copy claims to be
        raise
    return uid


# -- enrolment -------------------------------------------------------------------------
CREATE_APPLICATION = 0xCA
CREATE_STD_DATA_FILE = 0xCD
WRITE_DATA = 0x3D
CHANGE_KEY = 0xC4


def admin_key(s: DesfireSettings, uid: bytes) -> bytes:
    """The application's master key (key 0) of one card: only enrolment holds it."""
    return card_key(s.master_key, uid, s.aid, s.system + b"/admin")


def _macced(transmit: Transmit, session: Session, cmd: int, body: bytes, what: str) -> None:
    """A command in MAC mode: its MAC sent, the card's MAC checked, the counter moved."""
    status, answer = command(transmit, cmd, body + session.command_mac(cmd, body))
    _expect(status, what)
    if answer != session.response_mac(OK, b""):
        raise DesfireError(f"{what}: the answer's MAC does not hold")
    session.ctr += 1


def _change_key(
    transmit: Transmit, session: Session, key_no: int, new: bytes, old: bytes, *, own: bool
) -> None:
    """ChangeKey in full mode. The key that opened the session (``own``) goes as itself;
    another goes XORed with its old value, with the new key's CRC32."""
    if own:
        plain = new + b"\x01"
    else:
        plain = bytes(a ^ b for a, b in zip(new, old, strict=True)) + b"\x01" + crc32_desfire(new)
    enc = aes_cbc(session.enc, session.iv_command(), pad(plain))
    body = bytes([key_no]) + enc
    status, answer = command(transmit, CHANGE_KEY, body + session.command_mac(CHANGE_KEY, body))
    _expect(status, f"change key {key_no}")
    if not own:
        if answer != session.response_mac(OK, b""):
            raise DesfireError("change key: the answer's MAC does not hold")
        session.ctr += 1


def personalise(transmit: Transmit, s: DesfireSettings) -> bytes:
    """Make a factory-fresh DESFire EV2/EV3 card the site's: the application with AES
    keys, the card number (its real UID) in a free-read file, key ``key_no`` the card's
    diversified key and key 0 its diversified application master key. The real UID."""
    status, _ = command(transmit, SELECT_APPLICATION, bytes(3))
    _expect(status, "select the card level")
    settings = bytes([0x0B, 0x80 | (s.key_no + 1)])  # AES, key_no + 1 keys
    status, _ = command(transmit, CREATE_APPLICATION, s.aid[::-1] + settings)
    if status == 0xDE:
        raise DesfireError("the card already has this site's application (enrolled before)")
    _expect(status, "create the application")
    status, _ = command(transmit, SELECT_APPLICATION, s.aid[::-1])
    _expect(status, "select the application")
    zero = bytes(16)
    session = authenticate_ev2(transmit, 0, zero)
    uid = get_card_uid(transmit, session)
    size = len(uid).to_bytes(3, "little")
    # Read: free (E); write, read-write, change: key 0.
    _macced(transmit, session, CREATE_STD_DATA_FILE,
            bytes([s.file_no, 0x00, 0x00, 0xE0]) + size, "create the card number file")  # fmt: skip
    _macced(transmit, session, WRITE_DATA,
            bytes([s.file_no]) + bytes(3) + size + uid, "write the card number")  # fmt: skip
    key = card_key(s.master_key, uid, s.aid, s.system)
    _change_key(transmit, session, s.key_no, key, zero, own=False)
    _change_key(transmit, session, 0, admin_key(s, uid), zero, own=True)
    return uid
