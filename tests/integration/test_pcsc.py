"""The PC/SC driver against a real pcscd through the vpcd virtual reader (R1, R8, R11)."""

from __future__ import annotations

import pytest
from edged.drivers.pcsc import PcscCardReader, card_kind, parse_uid_response
from edged.simulators.pcscd import pcsc_reader_name
from edged.simulators.vcard import Behaviour, CardKind, VirtualCard

from edged.core.events import CardPresented, CardRemoved, CardUnreadable, ReaderFound, ReaderLost
from edged.protocol.privacy import CardFingerprinter

pytestmark = pytest.mark.integration

FP = CardFingerprinter(b"s" * 32)
FELICA = bytes.fromhex("012E4CD9A1B2C3D4")


@pytest.fixture
def reader(pcscd, events):
    r = PcscCardReader(
        {"entry": pcsc_reader_name("entry"), "exit": "edged-sim exit"},
        FP.fingerprint,
        retry_seconds=0.2,
    )
    r.start(events)
    events.wait_for(lambda e: isinstance(e, ReaderFound) and e.reader == "exit")
    events.wait_for(lambda e: isinstance(e, ReaderFound) and e.reader == "entry")
    yield r
    r.close()


def present(pcscd, events, uid, reader="entry", **kw):
    """Insert, wait for the driver's verdict, remove, wait for removal; returns the verdict."""
    mark = events.mark()
    card = VirtualCard(uid, port=pcscd.port(reader), **kw)
    card.insert()
    verdict = events.wait_for(
        lambda e: isinstance(e, CardPresented | CardUnreadable) and e.reader == reader, start=mark
    )
    card.remove()
    events.wait_for(lambda e: isinstance(e, CardRemoved) and e.reader == reader, start=mark)
    return verdict, card, mark


@pytest.mark.parametrize(
    "uid,kind,expected",
    [
        (FELICA, CardKind.FELICA, "felica"),
        (bytes.fromhex("04A1B2C3"), CardKind.MIFARE_CLASSIC, "mifare-classic"),
        (bytes.fromhex("04A1B2C3D4E5F6"), CardKind.MIFARE_ULTRALIGHT, "mifare-ultralight"),
        (bytes.fromhex("5A1B2C3D"), CardKind.ISO14443B, "iso14443-4"),
    ],
)
def test_card_arrives_as_fingerprint_only(pcscd, reader, events, uid, kind, expected):
    """R1, R11: a tapped card reaches the core through pyscard and pcscd as a keyed
    fingerprint; the raw identifier appears nowhere in the event."""
    ev, card, mark = present(pcscd, events, uid, kind=kind)
    assert isinstance(ev, CardPresented)
    assert ev.card == FP.fingerprint(uid) and ev.kind == expected
    assert uid.hex() not in repr(ev).lower()
    # A card left on the reader is read once, not again and again.
    assert card.apdus_seen == 1
    assert len(events.of(CardPresented, mark)) == 1


@pytest.mark.parametrize(
    "behaviour,reason",
    [
        (Behaviour.ERROR, "status 6A81"),
        (Behaviour.GARBAGE, "no status word"),
        (Behaviour.LONG_UID, "identifier of 64 bytes"),
        (Behaviour.EMPTY_UID, "identifier of 0"),
    ],
)
def test_bad_card_answers_are_reported_not_crashed_on(pcscd, reader, events, behaviour, reason):
    """Invariant 5: a card that answers with an error or garbage is an event, not a crash."""
    ev, _card, mark = present(pcscd, events, FELICA, behaviour=behaviour)
    assert isinstance(ev, CardUnreadable) and reason in ev.reason
    assert not events.of(CardPresented, mark)
    ok, _c, _m = present(pcscd, events, FELICA)  # the driver carries on
    assert isinstance(ok, CardPresented)


def test_random_uid_cards_are_refused(pcscd, reader, events):
    ev, _c, _m = present(pcscd, events, bytes.fromhex("08123456"), kind=CardKind.MIFARE_CLASSIC)
    assert isinstance(ev, CardUnreadable) and "random" in ev.reason


def test_entry_and_exit_readers_at_once(pcscd, reader, events):
    """R1: two readers are watched together; each event names its logical reader."""
    mark = events.mark()
    a = VirtualCard(FELICA, port=pcscd.port("entry"))
    b = VirtualCard(bytes.fromhex("04A1B2C3"), CardKind.MIFARE_CLASSIC, port=pcscd.port("exit"))
    with a, b:
        ea = events.wait_for(
            lambda e: isinstance(e, CardPresented) and e.reader == "entry", start=mark
        )
        eb = events.wait_for(
            lambda e: isinstance(e, CardPresented) and e.reader == "exit", start=mark
        )
    assert ea.card == FP.fingerprint(FELICA) and eb.card != ea.card
    events.wait_for(lambda e: isinstance(e, CardRemoved) and e.reader == "exit", start=mark)


def _wait_pcscd_sees_card(reader_name: str) -> None:
    """Block until pcscd itself reports a card in the reader (plain pyscard, no edged)."""
    from smartcard import scard

    _, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    try:
        states = [(reader_name, scard.SCARD_STATE_UNAWARE)]
        for _ in range(20):
            rv, new = scard.SCardGetStatusChange(ctx, 1000, states)
            if rv == scard.SCARD_S_SUCCESS and new[0][1] & scard.SCARD_STATE_PRESENT:
                return
            states = [(n, s & ~scard.SCARD_STATE_CHANGED) for n, s, _ in new] if rv == 0 else states
        raise AssertionError("pcscd never saw the card")
    finally:
        scard.SCardReleaseContext(ctx)


def test_card_lying_on_reader_at_start_is_not_read(pcscd, events):
    """A card left on a reader across a restart must not open the door by itself."""
    card = VirtualCard(FELICA, port=pcscd.port("entry"))
    card.insert()
    try:
        _wait_pcscd_sees_card(pcsc_reader_name("entry"))
        with PcscCardReader({"entry": pcsc_reader_name("entry")}, FP.fingerprint) as r:
            r.start(events)
            assert r.ready.wait(10)
            assert events.wait_for(lambda e: isinstance(e, ReaderFound))
            card.remove()
            events.wait_for(lambda e: isinstance(e, CardRemoved))
            assert not events.of(CardPresented)
            mark = events.mark()
            card.insert()
            events.wait_for(lambda e: isinstance(e, CardPresented), start=mark)
    finally:
        card.remove()


def test_close_is_idempotent_and_prompt(pcscd, events):
    r = PcscCardReader({"entry": pcsc_reader_name("entry")}, FP.fingerprint)
    r.start(events)
    assert r.ready.wait(10)
    r.close()
    r.close()
    assert r._thread is not None and not r._thread.is_alive()
    assert not events.of(ReaderLost)  # stopping is not a lost reader


def test_reader_unplugged_and_back(pcscd, events):
    """R8: pulling a reader is an event (the core turns it into an alarm); so is its return."""
    with PcscCardReader(
        {"entry": pcsc_reader_name("entry"), "exit": pcsc_reader_name("exit")},
        FP.fingerprint,
        retry_seconds=0.2,
    ) as r:
        r.start(events)
        events.wait_for(lambda e: isinstance(e, ReaderFound) and e.reader == "exit")
        mark = events.mark()
        try:
            pcscd.unplug("exit")
            lost = events.wait_for(
                lambda e: isinstance(e, ReaderLost) and e.reader == "exit", start=mark
            )
            assert "pcsc" in lost.reason
            events.wait_for(
                lambda e: isinstance(e, ReaderFound) and e.reader == "entry", start=mark
            )
            assert not [e for e in events.of(ReaderFound, mark) if e.reader == "exit"]
        finally:
            mark = events.mark()
            pcscd.plug("exit")
        events.wait_for(lambda e: isinstance(e, ReaderFound) and e.reader == "exit", start=mark)
        # The returned reader reads cards again.
        mark = events.mark()
        with VirtualCard(FELICA, port=pcscd.port("exit")):
            ev = events.wait_for(lambda e: isinstance(e, CardPresented), start=mark)
        assert ev.reader == "exit"


def test_pcscd_absent_at_start_then_arrives(pcscd, events):
    """R8, R10: no pcscd is reported as lost readers, and the driver recovers by itself."""
    pcscd.stop()
    try:
        with PcscCardReader(
            {"entry": pcsc_reader_name("entry")}, FP.fingerprint, retry_seconds=0.2
        ) as r:
            r.start(events)
            lost = events.wait_for(lambda e: isinstance(e, ReaderLost))
            assert lost.reader == "entry" and "pcscd" in lost.reason
            pcscd.start()
            events.wait_for(lambda e: isinstance(e, ReaderFound))
    finally:
        if not pcscd.running:
            pcscd.start()


def test_configured_reader_missing_is_reported(pcscd, events):
    with PcscCardReader({"lobby": "No Such Reader"}, FP.fingerprint) as r:
        r.start(events)
        lost = events.wait_for(lambda e: isinstance(e, ReaderLost))
        assert lost.reader == "lobby" and lost.reason == "not connected"


@pytest.mark.parametrize(
    "resp,ok",
    [
        (bytes.fromhex("012E4CD9A1B2C3D49000"), True),
        (b"\x90\x00", False),
        (b"\x6a\x81", False),
        (b"", False),
        (bytes(11) + b"\x90\x00", False),
        (bytes.fromhex("04A1B2C3D4E5F6A1B2C39000"), True),
    ],
)
def test_uid_response_parsing(resp, ok):
    if ok:
        assert parse_uid_response(resp) == resp[:-2]
    else:
        with pytest.raises(ValueError):
            parse_uid_response(resp)


def test_card_kind_from_atr():
    assert card_kind(CardKind.FELICA.atr) == "felica"
    assert card_kind(CardKind.MIFARE_CLASSIC.atr) == "mifare-classic"
    assert card_kind(CardKind.ISO14443B.atr) == "iso14443-4"
    assert card_kind(b"\x3b\x00") == "unknown"
    assert card_kind(b"") == "unknown"


def test_every_running_harness_is_known_until_it_stops():
    """The registry behind conftest's clean-up: a harness with a process is in
    ServiceProcess.live until it stops, so a test that failed half-way cannot leave a
    pcscd behind to break every later one."""
    from edged.simulators.process import ServiceProcess, spawn

    class Sleeper(ServiceProcess):
        def start(self) -> None:
            self._proc = spawn(["sleep", "30"])

    s = Sleeper()
    s.start()
    assert s in ServiceProcess.live and s.running
    s.stop()
    assert s not in ServiceProcess.live and not s.running
