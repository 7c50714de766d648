"""Cards that prove themselves, end to end (issue 18, R1, R11, R13): DESFire EV2 cards
with AES keys diversified per card, and PIV cards, through vpcd, a real pcscd and
pyscard to the daemon, on an area that accepts nothing else. Genuine cards open; a copy
(right number, no key), a card keyed by another site, a replayed exchange, a PIV
certificate without its key are refused as card_auth_failed, naming whose card they
claim to be; the same number on an identifier-only card is card_kind_not_allowed; a
card taken away mid-protocol leaves no decision."""

from __future__ import annotations

import base64
import os
import threading
from pathlib import Path

import pytest
from edged.simulators.cards import DesfireCard, PivCard
from edged.simulators.vcard import CardKind

from edged.core.events import CardAuthFailed, CardPresented, CardRemoved, CardUnreadable
from edged.device.config import load_config
from edged.device.daemon import Daemon
from edged.device.keys import init_card_master, init_keys, load_card_master
from tests.conftest import import_acl, require_pcscd
from tests.helpers.examples import example_acl_text

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
AID = bytes.fromhex("E1D6E0")
DESFIRE_UID = bytes.fromhex("04A1D2E3F40506")  # S2001's card


def _config(tmp: Path) -> Path:
    text = (ROOT / "config" / "edged.toml").read_text()
    text = text.replace(
        '[areas.handling]\nkind = "handling"',
        '[areas.handling]\nkind = "handling"\ncards = ["desfire", "piv"]',
        1,
    )
    text += '\n[cards.desfire]\naid = "E1D6E0"\nkey_no = 1\n\n[cards.piv]\nenabled = true\n'
    path = tmp / "edged.toml"
    path.write_text(text)
    return path


def _acl(tmp: Path, piv_spki: bytes) -> Path:
    extra = ""
    for pid, name, card in (
        ("S2001", "Kato DESFire", DESFIRE_UID.hex().upper()),
        ("S2002", "Ito PIV", "piv:" + base64.b64encode(piv_spki).decode()),
    ):
        extra += (
            f'\n[[people]]\nid = "{pid}"\nname = "{name}"\nrole = "staff"\n'
            f'cards = ["{card}"]\nareas = ["handling"]\nvalid_from = 2026-04-01\n'
            "valid_until = 2027-03-31\n"
        )
    path = tmp / "acl.toml"
    path.write_text(example_acl_text(extra))  # the extra people's dates move with it
    return path


@pytest.fixture
def door(tmp_path):
    require_pcscd()
    state = tmp_path / "state"
    init_keys(state)
    init_card_master(state)
    piv = PivCard()
    config = _config(tmp_path)
    p = import_acl(state, _acl(tmp_path, piv.spki), config)
    assert p.returncode == 0, p.stderr
    d = Daemon(load_config(config, state_dir=state), simulate=True, control_socket=False)
    t = threading.Thread(target=lambda: d.run(install_signals=False), daemon=True)
    t.start()
    for _ in range(300):
        if d.running.wait(0.1) or d.stopped.is_set():
            break
    assert d.running.is_set(), "daemon did not start"
    yield d, load_card_master(state / "card_master.key"), piv
    d.request_stop()
    t.join(30)


def tap(d: Daemon, card, event_type=(CardPresented, CardAuthFailed, CardUnreadable)):
    """Put the card on the entry reader, take it away; the event and its records."""
    before = d.observers.processed_count
    card.insert()
    try:
        p = d.observers.wait_processed(
            lambda p: isinstance(p.event, event_type), after=before, timeout=15
        )
    finally:
        card.remove()
    assert p is not None, "the tap was not handled"
    # Gone from the reader before the next tap, as a hand takes it away.
    assert d.observers.wait_processed(
        lambda q: isinstance(q.event, CardRemoved), after=p.n, timeout=15
    )
    return p.event, list(p.records)


def keys(d: Daemon, text: str) -> list[dict]:
    before = d.observers.processed_count
    d.rig.press_keys("main", text)
    p = d.observers.wait_processed(
        lambda p: p.records != () and p.n > before, after=before, timeout=15
    )
    return list(p.records) if p else []


def test_a_genuine_desfire_card_opens_and_its_copies_do_not(door):
    """R1, R11: the enrolled DESFire card proves its key (granted after the keypad's
    questions, recorded as proof "desfire"); a copy with its number and no key, a card
    keyed by another site's master key, and a replay of the genuine card's own exchange
    are card_auth_failed, naming S2001 as the card they claim to be; the number alone on
    an identifier-only card is card_kind_not_allowed."""
    d, master, _piv = door
    genuine = DesfireCard.enrolled(DESFIRE_UID, master, AID)
    ev, recs = tap(d, d.rig.card(DESFIRE_UID, "entry", kind=CardKind.DESFIRE, applet=genuine))
    assert isinstance(ev, CardPresented) and ev.proof == "desfire", ev
    assert recs == []  # the keypad asks first
    out = keys(d, "1#0#")
    grant = [r for r in out if r["type"] == "door.granted"]
    assert grant and grant[0]["person"] == "S2001" and grant[0]["proof"] == "desfire", out
    card_fp = grant[0]["card"]

    impostors = {
        "copy": DesfireCard.copy_of(genuine, AID),
        "another site": DesfireCard.enrolled(DESFIRE_UID, os.urandom(16), AID),
    }
    replay = DesfireCard.copy_of(genuine, AID)
    replay.replay = genuine.recorded[-1]  # a sniffed exchange, played back
    impostors["replay"] = replay
    for name, applet in impostors.items():
        ev, recs = tap(d, d.rig.card(DESFIRE_UID, "entry", kind=CardKind.DESFIRE, applet=applet))
        assert isinstance(ev, CardAuthFailed), (name, ev)
        [r] = recs
        assert r["type"] == "door.denied" and r["reason"] == "card_auth_failed", (name, r)
        assert r["card"] == card_fp and r["person"] == "S2001" and r["card_kind"] == "desfire"
    assert d.rig.gpio.relay_levels("main").count(True) == 1  # only the genuine card opened

    ev, recs = tap(d, d.rig.card(DESFIRE_UID, "entry", kind=CardKind.MIFARE_ULTRALIGHT))
    assert isinstance(ev, CardPresented) and ev.proof == ""
    [r] = recs
    assert r["reason"] == "card_kind_not_allowed" and r["person"] == "S2001"
    assert r["accepted"] == ["desfire", "piv"]


def test_a_piv_card_proves_its_key_and_a_copied_certificate_does_not(door):
    """R1, R11: a PIV card signs the door's fresh challenge with its Card Authentication
    key and is the person whose key the list pins; a card showing that certificate with
    another private key is card_auth_failed, naming S2002."""
    d, _master, piv = door
    ev, recs = tap(d, d.rig.card("04C0FFEE", "entry", kind=CardKind.PIV, applet=piv))
    assert isinstance(ev, CardPresented) and ev.proof == "piv", ev
    out = keys(d, "1#0#")
    assert [r["person"] for r in out if r["type"] == "door.granted"] == ["S2002"], out
    fake = PivCard(certificate_of=piv.key)
    ev, recs = tap(d, d.rig.card("04C0FFEF", "entry", kind=CardKind.PIV, applet=fake))
    assert isinstance(ev, CardAuthFailed) and ev.kind == "piv"
    [r] = recs
    assert r["reason"] == "card_auth_failed" and r["person"] == "S2002"


class _Vanishing:
    """A genuine card taken off the reader right after the door's first answer."""

    def __init__(self, applet: DesfireCard) -> None:
        self.applet = applet
        self.vcard = None

    def answer(self, apdu: bytes) -> bytes | None:
        if apdu[:2] == b"\x90\xaf":
            self.vcard.remove()  # off the field before it answers
            return None
        return self.applet.answer(apdu)


def test_a_card_taken_away_mid_protocol_leaves_no_decision(door):
    """R11, R14: the card leaves the field during authentication: card.unreadable, no
    grant and no denial, the relay untouched; the next tap of the same card opens."""
    d, master, _piv = door
    genuine = DesfireCard.enrolled(DESFIRE_UID, master, AID)
    vanishing = _Vanishing(genuine)
    vcard = d.rig.card(DESFIRE_UID, "entry", kind=CardKind.DESFIRE, applet=vanishing)
    vanishing.vcard = vcard
    ev, recs = tap(d, vcard)
    assert isinstance(ev, CardUnreadable) and ev.reason.startswith("desfire"), ev
    assert [r["type"] for r in recs] == ["card.unreadable"]
    assert d.rig.gpio.relay_levels("main") == []
    assert d.call(lambda: d.core.snapshot()["prompts"].get("main")) is None
    ev, _ = tap(d, d.rig.card(DESFIRE_UID, "entry", kind=CardKind.DESFIRE, applet=genuine))
    assert isinstance(ev, CardPresented) and ev.proof == "desfire"


def test_enrolment_makes_a_factory_card_the_sites_and_prints_its_line(tmp_path):
    """R11, R12: `edged card enrol` personalises a factory-fresh DESFire card through
    pcscd: the site's application, the real UID as card number, key 1 diversified for
    this card and key 0 for its administration, both from the site master key (0600),
    neither printed; the card then proves itself to the door's code. A PIV card's line
    is its Card Authentication public key. A second enrolment of the same card fails
    with a clear line."""
    import subprocess

    from edged.drivers.cards.crypto import card_key
    from edged.drivers.cards.desfire import DesfireSettings, admin_key
    from edged.drivers.pcsc import card_kind
    from edged.simulators.pcscd import PcscdHarness, pcsc_reader_name, reader_ports
    from edged.simulators.vcard import VirtualCard

    from tests.conftest import EDGED

    require_pcscd()
    state = tmp_path / "state"
    init_keys(state)
    init_card_master(state)
    master = load_card_master(state / "card_master.key")
    config = _config(tmp_path)
    ports = reader_ports(["enrol"])
    harness = PcscdHarness(tmp_path / "pcscd", ports)
    harness.start()
    blank = DesfireCard(bytes.fromhex("04112233445566"))
    piv = PivCard()

    def reader_empty() -> None:
        """Until pcscd has seen the last card go: a card swapped within one of its polls
        of vpcd looks like the old one still lying there, and the next connect fails."""
        from smartcard import scard

        rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
        try:
            name, known = pcsc_reader_name("enrol"), scard.SCARD_STATE_UNAWARE
            for _ in range(100):
                rv, got = scard.SCardGetStatusChange(ctx, 200, [(name, known)])
                if rv == 0 and got:
                    known = got[0][1] & ~scard.SCARD_STATE_CHANGED
                    if known & scard.SCARD_STATE_EMPTY:
                        return
            raise AssertionError("pcscd never saw the card go")
        finally:
            scard.SCardReleaseContext(ctx)

    def enrol(kind: str, applet) -> subprocess.CompletedProcess[str]:
        kind_of = CardKind.DESFIRE if kind == "desfire" else CardKind.PIV
        reader_empty()
        with VirtualCard(bytes(7), kind_of, port=ports["enrol"], applet=applet):
            return subprocess.run(
                [EDGED, "card", "enrol", "--kind", kind, "--config", str(config),
                 "--state-dir", str(state), "--reader", pcsc_reader_name("enrol"),
                 "--wait", "10"], capture_output=True, text=True, timeout=60,
            )  # fmt: skip

    try:
        p = enrol("desfire", blank)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.splitlines()[-1] == 'cards = ["04112233445566"]'
        assert master.hex() not in p.stdout + p.stderr
        app = blank.apps[AID]
        assert app.keys[1] == card_key(master, blank.uid, AID, b"edged")
        assert app.keys[0] == admin_key(DesfireSettings(AID, 1, 1, master, b"edged"), blank.uid)
        assert bytes(app.files[1]) == blank.uid and 1 in app.free_read
        again = enrol("desfire", blank)
        assert again.returncode != 0
        assert "already has this site's application" in again.stderr, again.stderr
        p = enrol("piv", piv)
        assert p.returncode == 0, p.stderr
        assert p.stdout.splitlines()[-1] == f'cards = ["piv:{base64.b64encode(piv.spki).decode()}"]'
    finally:
        harness.stop()
    assert card_kind(CardKind.DESFIRE.atr) == "desfire"
