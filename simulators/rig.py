"""The whole simulated installation: pcscd with virtual readers, virtual cards, MockFactory GPIO.

The daemon's ``--simulate`` mode and the test fixtures use this same object.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edged.simulators.gpio import SimGpio
from edged.simulators.keypad import SimKeypad
from edged.simulators.pcscd import PcscdHarness, pcsc_reader_name, reader_ports
from edged.simulators.vcard import Behaviour, CardKind, VirtualCard

from edged.clock import Clock
from edged.device.config import Config
from edged.device.hardware import Keypad
from edged.device.paths import StatePaths
from edged.device.wiring import Fingerprint, Installation, card_readers, displays

KIND_BY_LENGTH = {8: CardKind.FELICA, 4: CardKind.MIFARE_CLASSIC, 7: CardKind.MIFARE_ULTRALIGHT}


def parse_card_id(text: str) -> bytes:
    """A card identifier typed by a person: hex, with optional spaces or colons."""
    clean = text.replace(":", "").replace(" ", "").replace("-", "")
    try:
        uid = bytes.fromhex(clean)
    except ValueError:
        raise ValueError(f"card id {text!r} is not hexadecimal") from None
    if not 1 <= len(uid) <= 64:
        raise ValueError("card id must be 1..64 bytes")
    return uid


class SimRig:
    """Simulated hardware for one config: ``start()`` brings up pcscd, ``close()`` ends all."""

    def __init__(self, config: Config, workdir: Path, *, clock: Clock | None = None) -> None:
        self.config = config
        self.gpio = SimGpio(config, clock=clock)
        # A matrix keypad is simulated at the pin level (its real driver runs); any other
        # keypad backend becomes a keypad that takes typed keys.
        self.keypads: dict[str, Keypad] = dict(self.gpio.keypads)
        for door in config.keypads:
            if door not in self.keypads:
                self.keypads[door] = SimKeypad(clock=clock, name=door)
        self.pcscd = PcscdHarness(Path(workdir) / "pcscd", reader_ports(config.readers))
        self.reader_bindings = {name: pcsc_reader_name(name) for name in config.readers}
        self._cards: list[VirtualCard] = []

    def start(self, *, pcscd: bool = True) -> None:
        """Bring up pcscd, unless one with the same readers is already run by the caller
        (crash tests keep one pcscd across many killed daemons)."""
        if pcscd:
            self.pcscd.start()

    def card(
        self,
        card_id: str | bytes,
        reader: str,
        *,
        kind: CardKind | None = None,
        behaviour: Behaviour = Behaviour.OK,
        applet: Any = None,
    ) -> VirtualCard:
        """A virtual card for ``reader`` (not yet inserted); ``applet``: a DESFire or PIV
        application (simulators/cards.py) that answers the proving protocols."""
        uid = parse_card_id(card_id) if isinstance(card_id, str) else card_id
        if reader not in self.config.readers:
            raise ValueError(f"no reader {reader!r}; have {sorted(self.config.readers)}")
        kind = kind or KIND_BY_LENGTH.get(len(uid), CardKind.ISO14443B)
        card = VirtualCard(uid, kind, behaviour, port=self.pcscd.port(reader), applet=applet)
        self._cards.append(card)
        return card

    def card_as_asked(
        self, card_id: str, reader: str, *, kind: str = "", behaviour: str = "ok",
        proof: str = "",
    ) -> VirtualCard:
        """A card as ``edged sim tap`` names it (strings from the control socket; a
        ValueError says what is wrong). ``proof``: "desfire", a DESFire card as the
        site's enrolment made it, or "desfire-copy", its number on a card without its
        key. The simulation plays the enrolment station: it holds the master key."""
        applet = None
        card_kind = CardKind(kind) if kind else None
        if proof:
            from edged.simulators.cards import DesfireCard

            from edged.device.wiring import card_proofs

            settings = card_proofs(self.config).desfire
            if settings is None or proof not in ("desfire", "desfire-copy"):
                raise ValueError(f"proof {proof!r}: needs [cards.desfire]; desfire or desfire-copy")
            genuine = DesfireCard.enrolled(
                parse_card_id(card_id), settings.master_key, settings.aid,
                key_no=settings.key_no, file_no=settings.file_no, system=settings.system,
            )  # fmt: skip
            applet = genuine if proof == "desfire" else DesfireCard.copy_of(genuine, settings.aid)
            card_kind = CardKind.DESFIRE
        return self.card(card_id, reader, kind=card_kind, behaviour=Behaviour(behaviour),
                         applet=applet)  # fmt: skip

    def press_keys(self, door: str, keys: str) -> None:
        """Type keys on the keypad of ``door``, whatever kind it is."""
        kp = self.keypads.get(door)
        if kp is None:
            raise ValueError(f"no keypad at door {door!r}; have {sorted(self.keypads)}")
        if isinstance(kp, SimKeypad):
            kp.press(keys)
        else:
            self.gpio.press_keys(door, keys)

    def close(self) -> None:
        """Remove cards, stop pcscd, release pins; idempotent."""
        for c in self._cards:
            c.remove()
        self._cards.clear()
        self.pcscd.stop()
        for kp in self.keypads.values():
            kp.close()
        self.gpio.close()

    def __enter__(self) -> SimRig:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sim_installation(
    cfg: Config, paths: StatePaths, clock: Clock, fp: Fingerprint, *, pcscd: bool = True
) -> Installation:
    """The installation ``sim`` (edged.device.backends): the daemon's own drivers over
    this rig, chosen by name like the Pi's, so that device code imports no simulator."""
    rig = SimRig(cfg, paths.sim, clock=clock)
    rig.start(pcscd=pcscd)
    g = rig.gpio
    return Installation(
        doors=g.doors,
        cabinets=g.cabinets,
        indicators=g.indicators,
        presence=g.presence,
        keypads=list(rig.keypads.values()),
        card_reader=card_readers(cfg, rig.reader_bindings, fp, clock),
        rig=rig,
        displays=displays(cfg, simulated=True),
    )
