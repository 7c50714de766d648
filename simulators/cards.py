"""Simulated cards that prove themselves (issue 18): a MIFARE DESFire EV2 with AES
applications, and a PIV card with a Card Authentication key. They answer the real
commands through vpcd and pcscd, so the door's drivers run unchanged. Each has its
impostors: a copy with the right number and no key, a card with a key of another
site, a replay of a recorded exchange, a PIV certificate without its private key.

The DESFire side speaks the subset edged uses: SelectApplication, ReadData (free-read
file), AuthenticateEV2First, GetCardUID (secure messaging), and for enrolment
CreateApplication, CreateStdDataFile, WriteData and ChangeKey.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils
from cryptography.x509.oid import NameOID
from edged.drivers.cards.crypto import (
    Session,
    aes_cbc,
    card_key,
    crc32_desfire,
    pad,
    rotl,
    session_keys,
    unpad,
)
from edged.drivers.cards.piv import CAK_OBJECT, PIV_AID, parse_tlv, tlv

OK, MORE, AUTH_ERROR, NOT_FOUND, LENGTH, PERMISSION, INTEGRITY = (
    0x00, 0xAF, 0xAE, 0xA0, 0x7E, 0x9D, 0x1E,
)  # fmt: skip


@dataclass
class App:
    keys: list[bytes]
    files: dict[int, bytearray] = field(default_factory=dict)
    free_read: set[int] = field(default_factory=set)


class DesfireCard:
    """A DESFire EV2 chip: its real UID, its applications, and the session state."""

    def __init__(self, uid: bytes) -> None:
        self.uid = uid
        self.apps: dict[bytes, App] = {}
        self.selected: App | None = None
        self._rnd_b: bytes | None = None
        self._auth_key_no = -1
        self._pending_key_no = -1
        self.session: Session | None = None
        self.replay: tuple[bytes, bytes] | None = None  # a recorded (challenge, answer)
        self.recorded: list[tuple[bytes, bytes]] = []  # what a sniffer would have seen

    # -- making cards for tests -------------------------------------------------------
    @classmethod
    def enrolled(
        cls, uid: bytes, master: bytes, aid: bytes, *, key_no: int = 1, file_no: int = 1,
        system: bytes = b"edged",
    ) -> DesfireCard:  # fmt: skip
        """A card as `edged card enrol` leaves it."""
        card = cls(uid)
        keys = [os.urandom(16) for _ in range(key_no + 1)]
        keys[key_no] = card_key(master, uid, aid, system)
        card.apps[aid] = App(keys, {file_no: bytearray(uid)}, {file_no})
        return card

    @classmethod
    def copy_of(cls, genuine: DesfireCard, aid: bytes) -> DesfireCard:
        """A copy: same application and card number, keys the copier could not read."""
        app = genuine.apps[aid]
        card = cls(genuine.uid)
        card.apps[aid] = App(
            [os.urandom(16) for _ in app.keys], dict(app.files), set(app.free_read)
        )
        return card

    # -- the protocol -------------------------------------------------------------------
    def answer(self, apdu: bytes) -> bytes | None:
        """The answer to a wrapped native command (CLA 90); None for other APDUs."""
        if len(apdu) < 5 or apdu[0] != 0x90:
            return None
        cmd = apdu[1]
        data = apdu[5 : 5 + apdu[4]] if len(apdu) > 5 else b""
        status, out = self._native(cmd, data)
        return out + bytes([0x91, status])

    def _native(self, cmd: int, data: bytes) -> tuple[int, bytes]:
        if cmd != MORE:
            self._rnd_b = None  # an authentication left half-way is over
        handler = {
            0x5A: self._select, 0xBD: self._read, 0x71: self._auth1, MORE: self._auth2,
            0x51: self._uid, 0xCA: self._create_app, 0xCD: self._create_file,
            0x3D: self._write, 0xC4: self._change_key,
        }.get(cmd)  # fmt: skip
        if handler is None:
            return 0x1C, b""  # illegal command
        return handler(data)

    def _select(self, data: bytes) -> tuple[int, bytes]:
        self.session = None
        if len(data) != 3:
            return LENGTH, b""
        aid = data[::-1]
        if aid == bytes(3):
            self.selected = None
            return OK, b""
        if aid not in self.apps:
            return NOT_FOUND, b""
        self.selected = self.apps[aid]
        return OK, b""

    def _read(self, data: bytes) -> tuple[int, bytes]:
        if self.selected is None or len(data) != 7:
            return LENGTH if self.selected else PERMISSION, b""
        f = self.selected.files.get(data[0])
        if f is None:
            return 0xF0, b""  # file not found
        if data[0] not in self.selected.free_read and self.session is None:
            return PERMISSION, b""
        off = int.from_bytes(data[1:4], "little")
        n = int.from_bytes(data[4:7], "little") or len(f) - off
        if self.session is not None:
            self.session.ctr += 1
        return OK, bytes(f[off : off + n])

    def _auth1(self, data: bytes) -> tuple[int, bytes]:
        self.session = None
        if self.selected is None or len(data) < 2 or data[0] >= len(self.selected.keys):
            return AUTH_ERROR if self.selected else PERMISSION, b""
        self._pending_key_no = data[0]
        if self.replay is not None:
            return MORE, self.replay[0]
        self._rnd_b = os.urandom(16)
        key = self.selected.keys[data[0]]
        challenge = aes_cbc(key, bytes(16), self._rnd_b)
        self.recorded.append((challenge, b""))
        return MORE, challenge

    def _auth2(self, data: bytes) -> tuple[int, bytes]:
        if self.replay is not None:
            return OK, self.replay[1]
        if self._rnd_b is None or self.selected is None or len(data) != 32:
            return AUTH_ERROR, b""
        key = self.selected.keys[self._pending_key_no]
        plain = aes_cbc(key, bytes(16), data, decrypt=True)
        rnd_a, rnd_b1 = plain[:16], plain[16:]
        rnd_b, self._rnd_b = self._rnd_b, None
        if rnd_b1 != rotl(rnd_b):
            return AUTH_ERROR, b""  # the door does not hold this key
        ti = os.urandom(4)
        answer = aes_cbc(key, bytes(16), ti + rotl(rnd_a) + bytes(12))
        self.recorded[-1] = (self.recorded[-1][0], answer)
        enc, mac = session_keys(key, rnd_a, rnd_b)
        self.session = Session(ti, enc, mac)
        self._auth_key_no = self._pending_key_no
        return OK, answer

    def _uid(self, data: bytes) -> tuple[int, bytes]:
        s = self.session
        if s is None:
            return AUTH_ERROR, b""
        if data != s.command_mac(0x51):
            self.session = None
            return INTEGRITY, b""
        enc = aes_cbc(s.enc, s.iv_response(), pad(self.uid))
        mac = s.response_mac(OK, enc)
        s.ctr += 1
        return OK, enc + mac

    # -- enrolment ----------------------------------------------------------------------
    def _create_app(self, data: bytes) -> tuple[int, bytes]:
        # A factory card lets anyone create applications (PICC key settings 0x0F).
        if self.selected is not None or len(data) != 5:
            return PERMISSION, b""
        aid = data[:3][::-1]
        if aid in self.apps:
            return 0xDE, b""  # duplicate
        if data[4] & 0xC0 != 0x80 or not 1 <= data[4] & 0x0F <= 14:
            return LENGTH, b""  # AES keys only here
        self.apps[aid] = App([bytes(16) for _ in range(data[4] & 0x0F)])
        return OK, b""

    def _macced(self, cmd: int, data: bytes) -> bytes | None:
        """The command's data once its MAC holds (the counter then moves); None if not."""
        s = self.session
        if s is None or len(data) < 8 or s.command_mac(cmd, data[:-8]) != data[-8:]:
            self.session = None
            return None
        return data[:-8]

    def _reply_mac(self) -> bytes:
        assert self.session is not None
        mac = self.session.response_mac(OK, b"")
        self.session.ctr += 1
        return mac

    def _create_file(self, data: bytes) -> tuple[int, bytes]:
        body = self._macced(0xCD, data)
        if body is None or self.selected is None or self._auth_key_no != 0 or len(body) != 7:
            return PERMISSION, b""
        no, rights, size = body[0], body[2:4], int.from_bytes(body[4:7], "little")
        self.selected.files[no] = bytearray(size)
        if rights[1] >> 4 == 0xE:
            self.selected.free_read.add(no)
        return OK, self._reply_mac()

    def _write(self, data: bytes) -> tuple[int, bytes]:
        body = self._macced(0x3D, data)
        if body is None or self.selected is None or self._auth_key_no != 0 or len(body) < 7:
            return PERMISSION, b""
        f = self.selected.files.get(body[0])
        off, n = int.from_bytes(body[1:4], "little"), int.from_bytes(body[4:7], "little")
        if f is None or len(body) - 7 != n or off + n > len(f):
            return LENGTH, b""
        f[off : off + n] = body[7:]
        return OK, self._reply_mac()

    def _change_key(self, data: bytes) -> tuple[int, bytes]:
        s, app = self.session, self.selected
        if s is None or app is None or self._auth_key_no != 0 or len(data) < 1 + 32 + 8:
            return PERMISSION, b""
        key_no, enc, mac = data[0], data[1:-8], data[-8:]
        if s.command_mac(0xC4, bytes([key_no]) + enc) != mac or key_no >= len(app.keys):
            self.session = None
            return INTEGRITY, b""
        plain = unpad(aes_cbc(s.enc, s.iv_command(), enc, decrypt=True))
        if key_no == self._auth_key_no:
            app.keys[key_no] = plain[:16]
            self.session = None  # the key that made the session is gone
            return OK, b""
        new = bytes(a ^ b for a, b in zip(plain[:16], app.keys[key_no], strict=True))
        if plain[17:21] != crc32_desfire(new):
            self.session = None
            return INTEGRITY, b""
        app.keys[key_no] = new
        return OK, self._reply_mac()


class PivCard:
    """A PIV applet with a Card Authentication key (ECC P-256) and its certificate."""

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None, *,
                 certificate_of: ec.EllipticCurvePrivateKey | None = None) -> None:  # fmt: skip
        """``certificate_of``: put another key's certificate on the card (a copy of the
        certificate without the private key that goes with it)."""
        self.key = key or ec.generate_private_key(ec.SECP256R1())
        shown = certificate_of or self.key
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edged test PIV")])
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(shown.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=3650))
            .sign(shown, hashes.SHA256())
        )  # fmt: skip
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.selected = False
        self._out = b""  # the rest of a long answer, for GET RESPONSE

    @property
    def spki(self) -> bytes:
        cert = x509.load_der_x509_certificate(self.cert_der)
        return cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def _chunked(self, data: bytes) -> bytes:
        first, self._out = data[:256], data[256:]
        if self._out:
            return first + bytes([0x61, min(len(self._out), 0xFF) if len(self._out) < 256 else 0])
        return first + b"\x90\x00"

    def answer(self, apdu: bytes) -> bytes | None:
        if len(apdu) < 4 or apdu[0] != 0x00:
            return None
        ins = apdu[1]
        if ins == 0xA4:
            self.selected = apdu[5 : 5 + apdu[4]] == PIV_AID
            return b"\x90\x00" if self.selected else b"\x6a\x82"
        if not self.selected:
            return b"\x69\x85"
        if ins == 0xC0:
            return self._chunked(self._out)
        if ins == 0xCB:
            data = apdu[5 : 5 + apdu[4]]
            if data != tlv(b"\x5c", CAK_OBJECT):
                return b"\x6a\x82"
            obj = tlv(b"\x53", tlv(b"\x70", self.cert_der) + tlv(b"\x71", b"\x00"))
            return self._chunked(obj)
        if ins == 0x87:
            if apdu[2:4] != b"\x11\x9e":
                return b"\x6a\x86"
            try:
                template = parse_tlv(apdu[5 : 5 + apdu[4]], b"\x7c")
                challenge = parse_tlv(template, b"\x81")
            except ValueError:
                return b"\x6a\x80"
            if len(challenge) != 32:
                return b"\x6a\x80"
            sig = self.key.sign(challenge, ec.ECDSA(utils.Prehashed(hashes.SHA256())))
            return self._chunked(tlv(b"\x7c", tlv(b"\x82", sig)))
        return b"\x6d\x00"
