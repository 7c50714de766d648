"""PC/SC card readers through pyscard and pcscd (FeliCa, MIFARE, ISO 14443 A/B).

One thread per driver waits in ``SCardGetStatusChange`` with an infinite timeout on every
bound reader and on the PnP pseudo-reader, so nothing is polled from here (pcscd itself
polls serial drivers; CCID readers report by interrupt). ``close()`` wakes it with
``SCardCancel``.

The card identifier is read with GET DATA (FF CA 00 00 00), turned into a keyed
fingerprint at once and dropped: the raw identifier never leaves this module (R11).
A card already lying on a reader when watching starts is not read: it must be taken
away and presented again, so a card left on a reader cannot open a door after a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edged.drivers.cards import desfire, piv
from edged.drivers.cards.crypto import CardCryptoError, CardGone, NotThisCard
from edged.drivers.cards.desfire import DesfireSettings
from smartcard import scard

from edged.clock import Clock, SystemClock
from edged.core.events import (
    CardAuthFailed,
    CardPresented,
    CardRemoved,
    CardUnreadable,
    DriverFault,
    ReaderFound,
    ReaderLost,
)
from edged.device.hardware import CardReader
from edged.errors import DriverInitError
from edged.log import get_logger

log = get_logger("drivers.pcsc")

PNP = "\\\\?PnP?\\Notification"
GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
UID_LENGTHS = (4, 7, 8, 10)  # ISO 14443-A single/double/triple, FeliCa IDm; B PUPI is 4
_RID = bytes.fromhex("A000000306")  # PC/SC registered application provider id in ATRs
_SERVICE_GONE = {
    scard.SCARD_E_NO_SERVICE,
    scard.SCARD_E_SERVICE_STOPPED,
    scard.SCARD_F_COMM_ERROR,
    scard.SCARD_E_INVALID_HANDLE,
}
_GONE_STATES = scard.SCARD_STATE_UNKNOWN | scard.SCARD_STATE_UNAVAILABLE | scard.SCARD_STATE_IGNORE


def card_kind(atr: bytes) -> str:
    """Card technology from the ATR a contactless PC/SC reader synthesises (PC/SC Part 3)."""
    i = atr.find(_RID)
    if i >= 0 and len(atr) >= i + 8:
        standard, name = atr[i + 5], int.from_bytes(atr[i + 6 : i + 8], "big")
        if standard == 0x11:
            return "felica"
        if standard == 0x03:
            return {
                0x0001: "mifare-classic",
                0x0002: "mifare-classic",
                0x0003: "mifare-ultralight",
                0x0026: "mifare-mini",
            }.get(name, "iso14443a")
        return f"pcsc-standard-{standard:02x}"
    if len(atr) >= 4 and atr[0] == 0x3B and atr[1] & 0xF0 == 0x80 and atr[2:4] == b"\x80\x01":
        # DESFire's ATS carries one historical byte, 80 (PC/SC Part 3, 3.1.3.2.3.1).
        return "desfire" if atr[4:-1] == b"\x80" else "iso14443-4"
    return "unknown"


def parse_uid_response(resp: bytes) -> bytes:
    """The identifier from a GET DATA answer; ValueError with a reason for anything else."""
    if len(resp) < 2:
        raise ValueError(f"response of {len(resp)} byte(s) has no status word")
    sw, uid = resp[-2:], resp[:-2]
    if sw != b"\x90\x00":
        raise ValueError(f"card answered status {sw.hex().upper()}")
    if len(uid) not in UID_LENGTHS:
        raise ValueError(f"identifier of {len(uid)} bytes (expected {UID_LENGTHS})")
    if len(uid) == 4 and uid[0] == 0x08:
        # ISO 14443-3 random UID: a new number at every tap, cannot be enrolled.
        raise ValueError("card uses a random identifier")
    return uid


@dataclass(frozen=True)
class CardProofs:
    """What the readers ask a card to prove (issue 18): its DESFire AES key, its PIV Card
    Authentication key. Neither: identifiers only."""

    desfire: DesfireSettings | None = None
    piv: bool = False

    def __bool__(self) -> bool:
        return self.desfire is not None or self.piv


class PcscCardReader(CardReader):
    """Watches the PC/SC readers bound to logical names ("entry", "exit").

    ``readers`` maps a logical name to a PC/SC reader name or its prefix (reader names
    end in slot numbers that vary with the USB port). ``fingerprint`` turns an identifier
    into the form the core sees. ``retry_seconds`` is how long to wait before
    reconnecting to pcscd after it went away. ``proofs``: the cards asked to prove
    themselves; the rest are read by their identifier.
    """

    def __init__(
        self,
        readers: Mapping[str, str],
        fingerprint: Callable[[bytes], str],
        *,
        clock: Clock | None = None,
        retry_seconds: float = 2.0,
        name: str = "pcsc",
        proofs: CardProofs | None = None,
    ) -> None:
        super().__init__(name)
        if not readers:
            raise DriverInitError(f"{name}: no readers configured")
        self._wanted = dict(readers)
        self._fingerprint = fingerprint
        self._proofs = proofs or CardProofs()
        self._clock = clock or SystemClock()
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._ctx_lock = threading.Lock()
        self._ctx: int | None = None
        self._thread: threading.Thread | None = None
        self._online: set[str] | None = None  # logical readers in service; None: not yet known
        self.ready = threading.Event()  # set once the first reader listing is done

    # -- lifecycle -------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-watch", daemon=True)
        self._thread.start()

    def _close(self) -> None:
        self._stop.set()
        if self._thread is None:
            return
        # SCardCancel only wakes a wait already in progress; a thread that was between two
        # waits would miss it, so cancel again until the thread has gone.
        for _ in range(100):
            with self._ctx_lock:
                if self._ctx is not None:
                    scard.SCardCancel(self._ctx)
            self._thread.join(timeout=0.1)
            if not self._thread.is_alive():
                return
        log.error("pcsc_watcher_did_not_stop")

    def _describe(self) -> dict[str, object]:
        return {"readers": self._wanted}

    @property
    def online(self) -> frozenset[str]:
        """Logical readers currently in service."""
        return frozenset(self._online or ())

    # -- watching --------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                reason = self._session()
            except Exception as e:  # never let the watcher die: report and reconnect
                log.error("pcsc_watch_failed", error=repr(e))
                self._emit(
                    DriverFault(
                        device=self.name,
                        reason=f"watcher error: {e!r}",
                        mono_ns=self._clock.mono_ns(),
                    )
                )
                reason = "watcher error"
            if self._stop.is_set():
                return  # shutting down is not a lost reader
            self._set_online(set(), reason)
            self.ready.set()
            self._stop.wait(self._retry)

    def _session(self) -> str:
        rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        if rv != scard.SCARD_S_SUCCESS:
            return f"pcscd unavailable ({scard.SCardGetErrorMessage(rv).strip()})"
        with self._ctx_lock:
            self._ctx = ctx
        try:
            while not self._stop.is_set():
                reason = self._watch(ctx)
                if reason is not None:
                    return reason
            return "stopped"
        finally:
            with self._ctx_lock:
                self._ctx = None
            scard.SCardReleaseContext(ctx)

    def _bind(self, ctx: int) -> dict[str, str] | str:
        """logical -> PC/SC name for readers present now, or a reason string on failure."""
        rv, names = scard.SCardListReaders(ctx, [])
        if rv in _SERVICE_GONE:
            return f"pcscd unavailable ({scard.SCardGetErrorMessage(rv).strip()})"
        if rv != scard.SCARD_S_SUCCESS:
            names = []  # SCARD_E_NO_READERS_AVAILABLE and friends: nothing plugged in
        bound = {}
        for logical, want in self._wanted.items():
            match = [n for n in names if n == want] or sorted(
                n for n in names if n.startswith(want)
            )
            if match:
                bound[logical] = match[0]
        return bound

    def _set_online(self, now: set[str], reason: str) -> None:
        mono = self._clock.mono_ns()
        # At the first listing every configured reader counts as "was online", so one that
        # is missing from the start is reported lost like one unplugged later.
        before = set(self._wanted) if self._online is None else self._online
        for logical in sorted(before - now):
            log.warning("reader_lost", reader=logical, reason=reason)
            self._emit(ReaderLost(reader=logical, reason=reason, mono_ns=mono))
        for logical in sorted(now - before if self._online is not None else now):
            log.info("reader_found", reader=logical)
            self._emit(ReaderFound(reader=logical, mono_ns=mono))
        self._online = set(now)

    def _watch(self, ctx: int) -> str | None:
        """Watch until the reader set changes (None: rebind) or pcscd goes (reason)."""
        bound = self._bind(ctx)
        if isinstance(bound, str):
            return bound
        self._set_online(set(bound), "not connected")
        by_pcsc = {v: k for k, v in bound.items()}
        states = [(name, scard.SCARD_STATE_UNAWARE) for name in by_pcsc]
        states.append((PNP, scard.SCARD_STATE_UNAWARE))
        present: dict[str, bool] = {}
        first = True
        while not self._stop.is_set():
            rv, new = scard.SCardGetStatusChange(ctx, 0 if first else scard.INFINITE, states)
            if rv == scard.SCARD_E_CANCELLED or self._stop.is_set():
                return "stopped"
            if rv in _SERVICE_GONE:
                return f"pcscd unavailable ({scard.SCardGetErrorMessage(rv).strip()})"
            if rv == scard.SCARD_E_UNKNOWN_READER:
                return None  # a reader vanished between listing and waiting: rebind
            if rv == scard.SCARD_E_TIMEOUT:
                first = False
                self.ready.set()
                continue
            if rv != scard.SCARD_S_SUCCESS:
                # pcscd going away mid-wait surfaces as assorted codes (seen: "Access
                # denied"); all of them mean the session is gone.
                return f"pcsc session lost ({scard.SCardGetErrorMessage(rv).strip()})"
            rebind = False
            for name, state, atr in new:
                if name == PNP:
                    if not first and state & scard.SCARD_STATE_CHANGED:
                        rebind = True
                    continue
                if state & _GONE_STATES:
                    rebind = True
                    continue
                is_present = bool(state & scard.SCARD_STATE_PRESENT) and not (
                    state & scard.SCARD_STATE_MUTE
                )
                was = present.get(name, False)
                present[name] = is_present
                logical = by_pcsc[name]
                if first:
                    if is_present:
                        log.warning("card_left_on_reader_ignored", reader=logical)
                    continue
                if is_present and not was:
                    self._read_card(ctx, name, logical, bytes(atr))
                elif was and not is_present:
                    self._emit(CardRemoved(reader=logical, mono_ns=self._clock.mono_ns()))
            states = [(n, s & ~scard.SCARD_STATE_CHANGED) for n, s, _ in new]
            first = False
            # Ready once each reader's card is known: a card lying there at start, and
            # taken away right after, is then seen leaving (not missed as never there).
            self.ready.set()
            if rebind:
                return None
        return "stopped"

    def _read_card(self, ctx: int, pcsc_name: str, logical: str, atr: bytes) -> None:
        seen = self._clock.mono_ns()
        kind = card_kind(atr)
        rv, hcard, proto = scard.SCardConnect(
            ctx,
            pcsc_name,
            scard.SCARD_SHARE_SHARED,
            scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
        )
        if rv != scard.SCARD_S_SUCCESS:
            self._unreadable(
                logical, f"connect failed ({scard.SCardGetErrorMessage(rv).strip()})", seen
            )
            return
        try:
            if self._proofs and kind in ("desfire", "iso14443-4"):
                ev = self._prove(hcard, proto, logical, kind, seen)
                if ev is not None:
                    self._emit(ev)
                    return
            rv, resp = scard.SCardTransmit(hcard, proto, GET_UID)
        finally:
            scard.SCardDisconnect(hcard, scard.SCARD_LEAVE_CARD)
        if rv != scard.SCARD_S_SUCCESS:
            self._unreadable(
                logical, f"transmit failed ({scard.SCardGetErrorMessage(rv).strip()})", seen
            )
            return
        try:
            uid = parse_uid_response(bytes(resp))
        except ValueError as e:
            self._unreadable(logical, str(e), seen)
            return
        card = self._fingerprint(uid)
        del uid, resp
        log.info("card_presented", reader=logical, card=card, kind=kind)
        self._emit(CardPresented(reader=logical, card=card, kind=kind, mono_ns=seen))

    def _prove(
        self, hcard: int, proto: int, logical: str, kind: str, seen: int
    ) -> CardPresented | CardAuthFailed | CardUnreadable | None:
        """Ask the card to prove itself, each configured way in turn: the event, or None
        for a card that speaks neither protocol (then its identifier is read)."""

        def transmit(apdu: bytes) -> bytes:
            rv, resp = scard.SCardTransmit(hcard, proto, list(apdu))
            if rv != scard.SCARD_S_SUCCESS:
                raise CardGone(f"transmit failed ({scard.SCardGetErrorMessage(rv).strip()})")
            if len(resp) < 2:
                # Every card answer ends in a status word: none means the card left.
                raise CardGone("no answer from the card (taken away?)")
            return bytes(resp)

        ways: list[tuple[str, Callable[[], bytes]]] = []
        if self._proofs.desfire is not None:
            settings = self._proofs.desfire
            ways.append(("desfire", lambda: desfire.authenticate(transmit, settings)))
        if self._proofs.piv:
            ways.append(("piv", lambda: piv.authenticate(transmit)))
        for proof, run in ways:
            try:
                ident = run()
            except NotThisCard:
                continue
            except CardCryptoError as e:
                claimed = self._fingerprint(e.claimed) if e.claimed else ""
                log.warning("card_auth_failed", reader=logical, kind=proof, reason=str(e))
                return CardAuthFailed(reader=logical, kind=proof, reason=str(e), card=claimed,
                                      mono_ns=seen)  # fmt: skip
            except CardGone as e:
                # Taken away mid-protocol: nothing was decided, nothing half-done.
                log.warning("card_unreadable", reader=logical, reason=str(e))
                return CardUnreadable(reader=logical, reason=f"{proof}: {e}", mono_ns=seen)
            card = self._fingerprint(ident)
            del ident
            log.info("card_presented", reader=logical, card=card, kind=proof, proof=proof)
            return CardPresented(reader=logical, card=card, kind=proof, proof=proof, mono_ns=seen)
        return None

    def _unreadable(self, logical: str, reason: str, seen: int) -> None:
        log.warning("card_unreadable", reader=logical, reason=reason)
        self._emit(CardUnreadable(reader=logical, reason=reason, mono_ns=seen))
