"""A virtual contactless card that speaks the vpcd protocol to pcscd's vsmartcard driver.

pyscard, pcscd and edged's PC/SC driver run for real; only the card is simulated.
vpcd protocol: each message is a 2-byte big-endian length and a payload. A 1-byte
payload is a control code (0 power off, 1 power on, 2 reset, 4 get ATR); anything
longer is a command APDU to answer. Closing the socket removes the card.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass
from enum import Enum
from typing import Any

from edged.log import get_logger

log = get_logger("simulators.vcard")

VPCD_HOST = "127.0.0.1"
# vpcd listens here for its first reader (the next ones two apart). Not vpcd's own
# default, 35963: that lies in Linux's ephemeral range (32768-60999), where a broker
# started on a free port, or any outgoing connection, could hold it when pcscd starts,
# and the reader then never appeared (seen in CI as "pcscd did not list … within 15 s").
VPCD_PORT = 30963

GET_UID = bytes.fromhex("FFCA000000")
SW_OK = b"\x90\x00"
SW_FUNC_NOT_SUPPORTED = b"\x6a\x81"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"


def _pcsc_atr(standard: int, name: int) -> bytes:
    """PC/SC Part 3 ATR of a storage card: RID A0 00 00 03 06, standard, card name."""
    body = bytes([0x8F, 0x80, 0x01, 0x80, 0x4F, 0x0C, 0xA0, 0x00, 0x00, 0x03, 0x06, standard])
    body += name.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    return b"\x3b" + body + bytes([_tck(body)])


def _iso14443_4_atr(historical: bytes) -> bytes:
    """ATR that PC/SC readers build for an ISO 14443-4 (type A with ATS, or type B) card."""
    body = bytes([0x80 | len(historical), 0x80, 0x01]) + historical
    return b"\x3b" + body + bytes([_tck(body)])


def _tck(body: bytes) -> int:
    t = 0
    for b in body:
        t ^= b
    return t


class CardKind(Enum):
    """Card technologies a door reader meets, with the ATR a PC/SC reader reports for each."""

    FELICA = "felica"  # IDm, 8 bytes
    MIFARE_CLASSIC = "mifare"  # UID, 4 bytes
    MIFARE_ULTRALIGHT = "mifare-ul"  # UID, 7 bytes
    ISO14443B = "iso14443b"  # PUPI, 4 bytes
    DESFIRE = "desfire"  # ISO 14443-4 A, historical byte 80: DESFire EV1/EV2/EV3
    PIV = "piv"  # ISO 14443-4 A with a PIV applet (a YubiKey 5 NFC, a PIV card)

    @property
    def atr(self) -> bytes:
        return {
            CardKind.FELICA: _pcsc_atr(0x11, 0x003B),
            CardKind.MIFARE_CLASSIC: _pcsc_atr(0x03, 0x0001),
            CardKind.MIFARE_ULTRALIGHT: _pcsc_atr(0x03, 0x0003),
            CardKind.ISO14443B: _iso14443_4_atr(b"\x00\x00\x00\x00\x00\x00\x00\x00"),
            CardKind.DESFIRE: _iso14443_4_atr(b"\x80"),
            CardKind.PIV: _iso14443_4_atr(b"YubiKey"),
        }[self]


class Behaviour(Enum):
    """How the card answers GET DATA: correctly, or in the ways real cards fail."""

    OK = "ok"
    ERROR = "error"  # status word 6A 81
    GARBAGE = "garbage"  # one byte, no status word
    LONG_UID = "long"  # a 64-byte "identifier" with 90 00
    EMPTY_UID = "empty"  # 90 00 and no identifier


@dataclass
class VirtualCard:
    """One card on one vpcd reader slot. ``insert()`` places it, ``remove()`` takes it away."""

    uid: bytes
    kind: CardKind = CardKind.FELICA
    behaviour: Behaviour = Behaviour.OK
    port: int = VPCD_PORT
    host: str = VPCD_HOST
    # The card's application (simulators/cards.py): answers what GET DATA does not.
    applet: Any = None

    def __post_init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.apdus_seen = 0

    # -- test controls ---------------------------------------------------------------
    def insert(self, timeout: float = 5.0) -> None:
        """Connect to vpcd, i.e. put the card on the reader."""
        with self._lock:
            if self._sock is not None:
                return
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
            sock.settimeout(None)
            self._sock = sock
            self._thread = threading.Thread(
                target=self._serve, args=(sock,), name=f"vcard-{self.port}", daemon=True
            )
            self._thread.start()

    def remove(self) -> None:
        """Close the connection, i.e. take the card off the reader. Idempotent."""
        with self._lock:
            sock, self._sock = self._sock, None
            thread, self._thread = self._thread, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    close = remove

    @property
    def inserted(self) -> bool:
        return self._sock is not None

    def __enter__(self) -> VirtualCard:
        self.insert()
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    # -- protocol --------------------------------------------------------------------
    def answer(self, apdu: bytes) -> bytes:
        """Response APDU for a command APDU."""
        self.apdus_seen += 1
        if apdu[:4] == GET_UID[:4]:
            match self.behaviour:
                case Behaviour.OK:
                    return self.uid + SW_OK
                case Behaviour.ERROR:
                    return SW_FUNC_NOT_SUPPORTED
                case Behaviour.GARBAGE:
                    return b"\x42"
                case Behaviour.LONG_UID:
                    return bytes(range(64)) + SW_OK
                case Behaviour.EMPTY_UID:
                    return SW_OK
        if self.applet is not None:
            out = self.applet.answer(apdu)
            if out is not None:
                return bytes(out)
        return SW_INS_NOT_SUPPORTED

    def _serve(self, sock: socket.socket) -> None:
        try:
            while True:
                header = _recv_exact(sock, 2)
                if header is None:
                    return
                (size,) = struct.unpack(">H", header)
                payload = _recv_exact(sock, size) if size else b""
                if payload is None:
                    return
                if len(payload) == 1:
                    if payload[0] == 4:  # get ATR
                        _send(sock, self.kind.atr)
                    continue  # power on/off and reset need no answer
                _send(sock, self.answer(payload))
        except OSError as e:
            if self._sock is sock:
                log.warning("vcard_connection_lost", port=self.port, error=str(e))
        finally:
            with self._lock:
                if self._sock is sock:
                    self._sock = None
            sock.close()


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _send(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(struct.pack(">H", len(payload)) + payload)
