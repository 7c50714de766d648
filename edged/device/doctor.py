"""``edged doctor``: check an installation and say how to fix what is wrong.

Each check prints one line, ``OK``, ``WARN`` or ``FAIL``, and a fix for anything not OK.
Exit status 1 when any check fails (warnings do not fail).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from edged.device import backends
from edged.device.config import Config, load_config
from edged.device.paths import StatePaths
from edged.errors import EdgedError


@dataclass
class Check:
    """The outcome of one check."""

    name: str
    status: str  # OK | WARN | FAIL
    detail: str
    fix: str = ""

    def line(self) -> str:
        out = f"{self.status:<4} {self.name}: {self.detail}"
        return out + (f"\n     fix: {self.fix}" if self.fix else "")


def _keys(cfg: Config) -> Check:
    from edged.device.keys import load_keys

    try:
        k = load_keys(cfg.state_dir)
    except EdgedError as e:
        return Check(
            "keys",
            "FAIL",
            str(e),
            f"edged keys init --state-dir {cfg.state_dir}"
            if "not found" in str(e)
            else "see the message above",
        )
    return Check("keys", "OK", f"device key {k.key_id}, files private")


def _cards(cfg: Config) -> Check:
    """The proofs readers ask of cards, and the site master key they need (issue 18)."""
    from edged.device.keys import load_card_master

    c = cfg.cards
    if c.desfire_aid is None and not c.piv:
        proven = [n for n, a in cfg.areas.items() if a.cards and "id" not in a.cards]
        return Check("cards", "OK", "identifiers only" + (f" ({proven})" if proven else ""))
    if c.desfire_aid is not None:
        assert c.master_key_file is not None
        try:
            load_card_master(c.master_key_file)
        except EdgedError as e:
            return Check(
                "cards", "FAIL", str(e),
                "copy the site's card_master.key here, mode 0600 (edged keys init --card-master"
                " makes a new one for a new site)",
            )  # fmt: skip
    kinds = sorted(c.kinds)
    return Check("cards", "OK", f"cards prove themselves: {', '.join(kinds)}")


def _journal(cfg: Config) -> Check:
    from edged.device.journal import verify_journal
    from edged.device.keys import load_keys

    db = StatePaths(cfg.state_dir).journal
    if not db.exists():
        return Check("journal", "WARN", f"{db} does not exist yet", "start the daemon once")
    try:
        k = load_keys(cfg.state_dir)
        res = verify_journal(db, {k.key_id: k.public_key})
    except EdgedError as e:
        return Check("journal", "FAIL", str(e), "keep the file for investigation; report it")
    if not res.ok:
        return Check(
            "journal",
            "FAIL",
            res.summary(),
            "the journal was altered: keep the file,"
            " compare with the central copy (edged collect), report the incident",
        )
    return Check("journal", "OK", res.summary())


def _acl(cfg: Config) -> Check:
    import datetime as dt
    import zoneinfo

    from edged.device.acl import load_active
    from edged.device.keys import load_keys
    from edged.protocol.privacy import CardFingerprinter

    try:
        acl = load_active(cfg.state_dir, set(cfg.areas))
    except EdgedError as e:
        return Check("access list", "FAIL", str(e), "import a valid list: edged acl import FILE")
    if acl is None:
        return Check(
            "access list",
            "FAIL",
            "none imported: every card is refused",
            "edged acl import FILE --config CONFIG",
        )
    try:
        fp = CardFingerprinter(load_keys(cfg.state_dir).fingerprint_secret)
        if acl.card_key != fp.key_id:
            return Check(
                "access list",
                "FAIL",
                "made with another device's card secret",
                "re-import it on this device",
            )
    except EdgedError:
        pass
    today = dt.datetime.now(zoneinfo.ZoneInfo(cfg.clock.timezone)).date()
    soon = acl.expiring(today, cfg.policy.expiry_warning_days)
    if soon:
        return Check(
            "access list",
            "WARN",
            f"version {acl.version}: rights of "
            f"{', '.join(p.id for p in soon)} end within "
            f"{cfg.policy.expiry_warning_days} days",
            "renew them (R5)",
        )
    return Check("access list", "OK", f"version {acl.version}, {len(acl.people)} people")


def _readers(cfg: Config) -> Check:
    try:
        from smartcard import scard
    except ImportError as e:
        return Check("card readers", "FAIL", f"pyscard missing: {e}", "pip install pyscard")
    rv, ctx = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if rv != scard.SCARD_S_SUCCESS:
        return Check(
            "card readers",
            "FAIL",
            "pcscd does not answer",
            "systemctl enable --now pcscd.socket; check the polkit rule for edged",
        )
    try:
        rv, names = scard.SCardListReaders(ctx, [])
        names = names if rv == scard.SCARD_S_SUCCESS else []
    finally:
        scard.SCardReleaseContext(ctx)
    missing = [
        n
        for n, r in cfg.readers.items()
        if not any(x == r.pcsc_name or x.startswith(r.pcsc_name) for x in names)
    ]
    if missing:
        return Check(
            "card readers",
            "FAIL",
            f"not found: {', '.join(missing)}; pcscd sees {names or 'no reader'}",
            "plug them in, or fix readers.*.pcsc_name",
        )
    return Check("card readers", "OK", f"{len(cfg.readers)} bound ({', '.join(cfg.readers)})")


def _gpio(cfg: Config) -> Check:
    import warnings

    from edged.drivers.gpio import make_pin_factory

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # gpiozero warns for each factory it falls past
            pf = make_pin_factory(cfg.gpio.backend)
            if pf is None:
                from gpiozero import Device

                Device._default_pin_factory()
    except Exception as e:
        return Check(
            "gpio",
            "FAIL",
            f"pin factory {cfg.gpio.backend!r}: {e}",
            "on a Pi: apt install python3-lgpio, and add edged to the gpio group",
        )
    return Check("gpio", "OK", f"pin factory {cfg.gpio.backend!r} available")


def _broker(cfg: Config) -> Check:
    if cfg.sync is None:
        return Check(
            "broker",
            "WARN",
            "no [sync]: records stay on this device only",
            "configure [sync] so records are backed up centrally (R13)",
        )
    import threading

    s = cfg.sync
    ok = threading.Event()
    from edged.protocol.mqtt import new_client

    try:
        c = new_client(s.broker, f"edged-doctor-{cfg.device}")
        c.on_connect = lambda *_a: ok.set() if not _a[3].is_failure else None
        c.connect(s.host, s.port, keepalive=10)
        c.loop_start()
        connected = ok.wait(5)
        c.loop_stop()
        c.disconnect()
    except (OSError, ValueError) as e:
        return Check(
            "broker",
            "FAIL",
            f"{s.host}:{s.port}: {e}",
            "check the address, the firewall and the TLS files",
        )
    if not connected:
        return Check(
            "broker",
            "FAIL",
            f"{s.host}:{s.port} did not accept the connection",
            "check credentials and certificates",
        )
    if not s.tls:
        # Receipts and lists are signed either way, but the records (who entered when)
        # and the access lists cross the network readable by anyone on the path (R12).
        return Check(
            "broker",
            "WARN",
            f"{s.host}:{s.port} reached in plaintext: records and access lists are readable"
            " on the network",
            "set tls = true and ca_file in [sync] (R12)",
        )
    return Check("broker", "OK", f"{s.host}:{s.port} over TLS")


def _clock(cfg: Config) -> Check:
    from edged.clock import kernel_clock_synced

    if cfg.clock.assume_synced is not None or kernel_clock_synced():
        return Check("clock", "OK", "synchronised")
    return Check(
        "clock",
        "WARN",
        f"not synchronised: time windows follow when_unsynced={cfg.clock.when_unsynced!r}",
        "enable NTP (timedatectl set-ntp true); a Pi has no real-time clock",
    )


def _disk(cfg: Config) -> Check:
    path = cfg.state_dir if cfg.state_dir.exists() else cfg.state_dir.parent
    u = shutil.disk_usage(path)
    free_mib = u.free // (1 << 20)
    if u.free < 100 << 20 or u.free / u.total < 0.05:
        return Check(
            "disk",
            "FAIL",
            f"{free_mib} MiB free on {path}",
            "free space: a full disk means entries can no longer be recorded",
        )
    return Check("disk", "OK", f"{free_mib} MiB free on {path}")


# Kernel NFC drivers that take contactless readers away from pcscd.
NFC_MODULES = ("port100", "pn533_usb", "pn533")


def nfc_kernel_drivers(sys_module: Path = Path("/sys/module")) -> Check:
    """A kernel NFC driver holding a reader hides it from PC/SC (the reader never appears
    in ``pcsc_scan``, and nothing says why)."""
    loaded = [m for m in NFC_MODULES if (sys_module / m).exists()]
    if loaded:
        return Check(
            "nfc drivers",
            "WARN",
            f"kernel NFC driver(s) loaded: {', '.join(loaded)}; they claim readers before pcscd",
            "install config/blacklist-edged-nfc.conf as /etc/modprobe.d/edged-nfc.conf,"
            f" then `sudo modprobe -r {' '.join(loaded)}` and plug the reader in again",
        )
    return Check("nfc drivers", "OK", "no kernel NFC driver claims the readers")


def _nfc_drivers(_cfg: Config) -> Check:
    return nfc_kernel_drivers()


CHECKS: list[Callable[[Config], Check]] = [
    _nfc_drivers,
    _keys,
    _cards,
    _journal,
    _acl,
    _readers,
    _gpio,
    _broker,
    _clock,
    _disk,
]


def _sim_gpio(cfg: Config) -> Check:
    try:
        from gpiozero.pins.mock import MockFactory

        MockFactory().close()
    except Exception as e:
        return Check("gpio", "FAIL", f"gpiozero's MockFactory: {e}", "pip install 'edged[sim]'")
    return Check("gpio", "OK", "simulated: gpiozero's MockFactory")


def _sim_readers(cfg: Config) -> Check:
    missing = backends.load("preflight", "sim")()
    if missing:
        return Check("card readers", "FAIL", f"simulated readers: {missing}", missing)
    return Check(
        "card readers", "OK", f"simulated: {len(cfg.readers)} virtual readers through pcscd + vpcd"
    )


# A simulated rig (``edged run --simulate``, the demo, a developer's machine) has no GPIO
# chips, no reader and no kernel NFC driver to worry about: its own checks instead.
SIM_CHECKS: dict[Callable[[Config], Check], Callable[[Config], Check] | None] = {
    _gpio: _sim_gpio,
    _readers: _sim_readers,
    _nfc_drivers: None,
}


def run_doctor(
    config: Path, state_dir: Path | None = None, *, simulate: bool = False
) -> tuple[int, list[Check]]:
    """All checks, or with ``simulate`` those of a simulated rig; (exit code, results)."""
    try:
        cfg = load_config(config, state_dir=state_dir)
    except EdgedError as e:
        return 1, [Check("config", "FAIL", str(e), "edged config check FILE shows the same")]
    results = [Check("config", "OK", f"{config}: site {cfg.site}, device {cfg.device}")]
    checks = [SIM_CHECKS.get(c, c) for c in CHECKS] if simulate else list(CHECKS)
    for check in (c for c in checks if c is not None):
        try:
            results.append(check(cfg))
        except Exception as e:  # a check that breaks is itself a finding, not a crash
            results.append(Check(check.__name__.strip("_"), "FAIL", repr(e)))
    return (1 if any(r.status == "FAIL" for r in results) else 0), results
