"""The composition root: the one place that knows which backends make up an installation.

An installation is chosen by name, as gpiozero chooses a pin factory: ``hardware`` builds
the GPIO drivers, keypads and PC/SC readers of the configuration; ``sim`` builds the
simulated installation (MockFactory pins with physical controls, virtual cards through a
real pcscd and vpcd) with the same drivers above it. The daemon asks for one by name and
never looks inside.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.clock import Clock
from edged.device import backends
from edged.device.config import Config
from edged.device.hardware import (
    CabinetSensors,
    Device,
    Display,
    DoorIO,
    Indicators,
    make_device,
)
from edged.device.paths import StatePaths
from edged.errors import DriverInitError


@dataclass
class Installation:
    """The devices the daemon drives. ``rig``: a simulated installation's controls."""

    doors: DoorIO
    cabinets: CabinetSensors
    indicators: Indicators
    keypads: list[Device] = field(default_factory=list)
    card_reader: Any = None
    rig: Any = None
    displays: dict[str, Display] = field(default_factory=dict)  # door -> its display

    @property
    def devices(self) -> list[Device]:
        """In start order; closed in reverse (relays drop first)."""
        out: list[Device] = [self.doors, self.cabinets, self.indicators, *self.keypads]
        out += list(self.displays.values())
        return [*out, self.card_reader] if self.card_reader is not None else out


Fingerprint = Callable[[bytes], str]


def card_readers(
    cfg: Config, bindings: dict[str, str], fingerprint: Fingerprint, clock: Clock
) -> Any:
    if not bindings:
        return None
    return make_device(
        "card_reader", "pcsc", readers=bindings, fingerprint=fingerprint, clock=clock,
        proofs=card_proofs(cfg),
    )  # fmt: skip


def card_proofs(cfg: Config) -> Any:
    """What the readers ask cards to prove, with the site master key read (0600) here,
    the one place that knows where it lives."""
    from edged.device.keys import load_card_master
    from edged.drivers.cards.desfire import DesfireSettings
    from edged.drivers.pcsc import CardProofs

    c = cfg.cards
    settings = None
    if c.desfire_aid is not None:
        assert c.master_key_file is not None  # the config gives a default
        settings = DesfireSettings(
            aid=c.desfire_aid,
            key_no=c.desfire_key_no,
            file_no=c.desfire_file_no,
            master_key=load_card_master(c.master_key_file),
            system=c.system.encode(),
        )
    return CardProofs(settings, c.piv)


def displays(cfg: Config, *, simulated: bool) -> dict[str, Display]:
    """Each door's display; simulated ones keep their text (edged sim lcd)."""
    out: dict[str, Display] = {}
    for door, d in cfg.displays.items():
        backend = "sim" if simulated else d.backend
        kw: dict[str, Any] = {"name": door, "cols": d.cols, "rows": d.rows}
        if backend == "hd44780":
            kw.update(address=d.address, port=d.port)
        dev = make_device("display", backend, **kw)
        assert isinstance(dev, Display)
        out[door] = dev
    return out


def hardware_installation(
    cfg: Config, paths: StatePaths, clock: Clock, fp: Fingerprint, **_: Any
) -> Installation:
    try:
        from edged.drivers.gpio import GpioCabinets, GpioDoors, GpioIndicators, make_pin_factory
    except ImportError as e:
        # The base install has no device drivers: say which extra brings them.
        raise DriverInitError(
            f"the hardware installation cannot load {e.name or e}: install edged[device]"
        ) from None

    pf = make_pin_factory(cfg.gpio.backend)
    keypads = []
    for door, k in cfg.keypads.items():
        kw: dict[str, Any] = {"clock": clock, "name": door}
        if k.backend == "matrix":
            kw.update(rows=k.rows, cols=k.cols, pin_factory=pf)
        elif k.backend == "evdev":
            kw["device"] = k.device
        keypads.append(make_device("keypad", k.backend, **kw))
    return Installation(
        doors=GpioDoors(cfg.doors, cfg.gpio, pin_factory=pf, clock=clock),
        cabinets=GpioCabinets(cfg.cabinets, cfg.gpio, pin_factory=pf, clock=clock),
        indicators=GpioIndicators(cfg.indicators, pin_factory=pf),
        keypads=keypads,
        card_reader=card_readers(cfg, {n: r.pcsc_name for n, r in cfg.readers.items()}, fp, clock),
        displays=displays(cfg, simulated=False),
    )


def build_installation(
    name: str, cfg: Config, paths: StatePaths, clock: Clock, fingerprint: Fingerprint, **opts: Any
) -> Installation:
    """The installation ``name`` for ``cfg``; DriverInitError names what failed."""
    make: Callable[..., Installation] = backends.load("installation", name)
    return make(cfg, paths, clock, fingerprint, **opts)
