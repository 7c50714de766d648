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
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.clock import Clock
from edged.core import Core
from edged.core.actions import Action
from edged.core.events import DoorContact, Presence, Tamper
from edged.core.state import Now
from edged.device import backends
from edged.device.acl import load_local_pins, pin_checker, pin_hasher
from edged.device.config import Config
from edged.device.hardware import (
    CabinetSensors,
    Device,
    Display,
    DoorIO,
    Indicators,
    PresenceSensors,
    make_device,
)
from edged.device.journal import Journal
from edged.device.journal.witness import HeadWitness
from edged.device.keys import DeviceKeys
from edged.device.paths import StatePaths
from edged.errors import DriverInitError

if TYPE_CHECKING:
    from edged.device.sync.agent import SyncAgent


@dataclass
class Installation:
    """The devices the daemon drives. ``rig``: a simulated installation's controls."""

    doors: DoorIO
    cabinets: CabinetSensors
    indicators: Indicators
    presence: PresenceSensors | None = None
    keypads: list[Device] = field(default_factory=list)
    card_reader: Any = None
    rig: Any = None
    displays: dict[str, Display] = field(default_factory=dict)  # door -> its display

    @property
    def devices(self) -> list[Device]:
        """In start order; closed in reverse (relays drop first)."""
        out: list[Device] = [self.doors, self.cabinets, self.indicators, *self.keypads]
        out += [self.presence] if self.presence is not None else []
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
        from edged.drivers.gpio import (
            GpioCabinets,
            GpioDoors,
            GpioIndicators,
            GpioPresence,
            make_pin_factory,
        )
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
        presence=GpioPresence(cfg.areas, cfg.gpio, pin_factory=pf, clock=clock)
        if any(a.presence_pin is not None for a in cfg.areas.values())
        else None,
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


def device_journal(cfg: Config, paths: StatePaths, keys: DeviceKeys, clock: Clock) -> Journal:
    """The journal as the configuration asks: checkpoints, epochs, the head witness."""
    j, wd = cfg.journal, cfg.journal.witness_dir
    return Journal(
        paths.journal, keys, clock, site=cfg.site, device=cfg.device,
        checkpoint_every=j.checkpoint_every, checkpoint_seconds=j.checkpoint_seconds,
        witness=HeadWitness(wd, keys.key_id) if wd else None,
        epoch_records=j.epoch_records, epoch_seconds=j.epoch_seconds,
    )  # fmt: skip


def device_core(cfg: Config, keys: DeviceKeys, paths: StatePaths) -> Core:
    """The core with this device's PIN pepper (it gets the secret only now) and the PINs
    changed at this door."""
    core = Core(
        cfg,
        pin_check=pin_checker(keys.fingerprint_secret),
        pin_hash=pin_hasher(keys.fingerprint_secret),
    )
    core.load_local_pins(load_local_pins(paths.root))
    return core


def seed_readings(
    core: Core, cfg: Config, inst: Installation, now: Now
) -> list[Action]:
    """The inputs as read at start become core state; abnormal ones become records at once."""
    doors, cabinets = inst.doors, inst.cabinets
    out: list[Action] = []
    for name in cfg.doors:
        if not doors.door_closed(name):
            out += core.handle(DoorContact(door=name, closed=False, mono_ns=now.mono), now)
    out += core.seed_cabinets(cabinets.read_all(), now)
    if doors.tamper_active():
        out += core.handle(Tamper(active=True, mono_ns=now.mono), now)
    for area, moving in (inst.presence.moving() if inst.presence else {}).items():
        out += core.handle(Presence(area=area, motion=moving, mono_ns=now.mono), now)
    return out


def device_sync(
    cfg: Config, journal: Journal, paths: StatePaths, clock: Clock,
    on_inbound: Callable[[str, bytes], None], key: Callable[[], Ed25519PrivateKey],
) -> SyncAgent:  # fmt: skip
    """The sync agent (paho imported only when sync is configured); ``key`` the key in
    force, which signs what is sent while the journal cannot record."""
    from edged.clock import read_boot_id
    from edged.device.sync.agent import SyncAgent

    assert cfg.sync is not None
    return SyncAgent(
        cfg.sync, site=cfg.site, device=cfg.device, journal_path=journal.path,
        state_dir=paths.root, clock=clock, boot_id=read_boot_id(), on_inbound=on_inbound,
        device_key=key,
    )  # fmt: skip
