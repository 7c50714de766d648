"""The daemon's configuration (TOML), validated on load.

Every error names the file, the key path and the reason; unknown keys are errors, so a
typo never silently turns a safety feature off (Invariant 5).
"""

from __future__ import annotations

import datetime as dt
import stat
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.core.calendar import Calendar, CalendarConfig
from edged.core.policy import (
    AreaConfig,
    CabinetConfig,
    ClockConfig,
    DoorConfig,
    KeypadConfig,
    PolicyConfig,
)
from edged.device import backends
from edged.device.paths import CARD_MASTER_FILE
from edged.errors import ConfigError
from edged.protocol.mqtt import Broker, Tls
from edged.protocol.topics import NAME

_REQUIRED = object()


class _Section:
    """A TOML table being read: tracks used keys so leftovers can be reported."""

    def __init__(self, data: dict[str, Any], path: str, file: Path) -> None:
        self.data, self.path, self.file = data, path, file
        self.used: set[str] = set()

    def where(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, key: str, reason: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.where(key)}: {reason}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(key, "required key is missing")
            return default
        value = self.data[key]
        if (
            isinstance(value, bool)
            and kind is not bool
            and bool not in (kind if isinstance(kind, tuple) else (kind,))
        ):
            raise self.error(key, f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def number(
        self, key: str, default: Any = _REQUIRED, *, lo: float = 0, hi: float = 1e9
    ) -> float:
        v = self.get(key, (int, float), default)
        if v is not None and not lo <= v <= hi:
            raise self.error(key, f"must be between {lo:g} and {hi:g}, got {v}")
        return v

    def pin(self, key: str, default: Any = _REQUIRED) -> int | None:
        v = self.get(key, int, default)
        if v is not None and not 0 <= v <= 27:
            raise self.error(key, f"GPIO pin must be 0..27 (BCM numbering), got {v}")
        return v

    def required_pin(self, key: str) -> int:
        v = self.pin(key)
        assert v is not None  # no default: pin() raised if it was missing
        return v

    def choice(self, key: str, choices: tuple[str, ...], default: Any = _REQUIRED) -> str:
        v = self.get(key, str, default)
        if v not in choices:
            raise self.error(key, f"must be one of {list(choices)}, got {v!r}")
        return v

    def directory(self, key: str, default: str) -> Path:
        """A directory the daemon keeps files in: it may not exist yet (it is made), but
        the name must be usable: not empty, no NUL, not "." or "/" (a state dir's files
        beside everything else), and nothing there but a directory."""
        v = self.get(key, str, default)
        reason = path_problem(v, want="directory")
        if reason:
            raise self.error(key, reason)
        if not Path(v).is_absolute():
            # The service runs in "/": a relative name would depend on who started it.
            raise self.error(key, f"must be an absolute path, got {v!r}")
        return Path(v)

    def file_path(self, key: str, base: Path, default: str | None = None) -> Path | None:
        """A file named in the config, relative to ``base``; None when absent."""
        v = self.get(key, str, default)
        if v is None:
            return None
        reason = path_problem(v, want="file")
        if reason:
            raise self.error(key, reason)
        return Path(v) if Path(v).is_absolute() else base / v

    def table(self, key: str, required: bool = False) -> _Section:
        self.used.add(key)
        if key not in self.data:
            if required:
                raise self.error(key, "required table is missing")
            return _Section({}, self.where(key), self.file)
        v = self.data[key]
        if not isinstance(v, dict):
            raise self.error(key, f"expected a table, got {type(v).__name__}")
        return _Section(v, self.where(key), self.file)

    def tables(self, key: str) -> dict[str, _Section]:
        outer = self.table(key)
        out = {}
        for name in outer.data:
            if not NAME.fullmatch(name):
                raise outer.error(
                    name, "names are 1-32 of a-z 0-9 _ - (starting with a letter or digit)"
                )
            out[name] = outer.table(name)
        return out

    def done(self) -> None:
        extra = sorted(set(self.data) - self.used)
        if extra:
            raise self.error(extra[0], "unknown key")


def path_problem(text: str, *, want: str) -> str | None:
    """Why ``text`` cannot name a ``want`` ("directory" or "file"), or None. Only what
    is there now is judged; a missing path is fine (the daemon or the installer makes it)."""
    if not text.strip():
        return f"must name a {want}, got an empty string"
    if "\0" in text:
        return f"contains a NUL character: {text!r}"
    p = Path(text)
    if p.name in ("", "..") or text.rstrip("/").endswith("/."):
        return f"must name a {want} of its own, not {text!r}"
    try:
        st = p.stat()
    except FileNotFoundError:
        return None
    except OSError as e:  # ELOOP (a symlink loop), ENAMETOOLONG, EACCES, ENOTDIR
        return f"{text}: {e.strerror or e}"
    is_dir = stat.S_ISDIR(st.st_mode)
    if want == "directory" and not is_dir:
        return f"{text} exists and is not a directory"
    if want == "file" and is_dir:
        return f"{text} is a directory, not a file"
    return None


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


@dataclass(frozen=True)
class SyncConfig:
    """The central broker and the keys this device trusts for inbound messages."""

    host: str
    port: int
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    collector_pubkey: Path | None = None  # verifies receipts and commands
    admin_pubkey: Path | None = None  # verifies access-list envelopes
    window: int = 100  # records in flight (published, no PUBACK yet)
    max_unreceipted: int = 800  # records published beyond the last receipt
    heartbeat_seconds: float = 60.0
    keepalive_seconds: float = 30.0  # MQTT keepalive: a dead link is found within ~2x
    # Refused inbound messages (anyone on the broker can send them) are recorded at most
    # once per interval, with the count refused since: a flood cannot fill the journal.
    refusal_interval_seconds: float = 60.0

    @property
    def broker(self) -> Broker:
        tls = (
            Tls(self.ca_file, self.cert_file, self.key_file) if self.tls and self.ca_file else None
        )
        return Broker(self.host, self.port, tls, self.username, self.password_file)


@dataclass(frozen=True)
class ReaderConfig:
    """A logical reader and the PC/SC reader name (exact, or a prefix) it is bound to."""

    name: str
    pcsc_name: str


@dataclass(frozen=True)
class IndicatorConfig:
    """Buzzer and LED pins (any may be absent)."""

    buzzer_pin: int | None = None
    green_pin: int | None = None
    red_pin: int | None = None


@dataclass(frozen=True)
class GpioConfig:
    """Pin factory and input conditioning."""

    backend: str = "default"  # gpiozero's choice; "mock" for simulation
    pull_up: bool = True
    debounce_ms: int = 20
    tamper_pin: int | None = None


@dataclass(frozen=True)
class JournalConfig:
    """Checkpoint policy of the journal."""

    checkpoint_every: int = 1000
    checkpoint_seconds: float = 3600.0
    # Forward-secure signing (docs/proofs.md): a new key every epoch_seconds or
    # epoch_records records, whichever comes first; the previous key is erased.
    epoch_seconds: float = 86400.0
    epoch_records: int = 100_000
    # Where the head witness lives: outside the state directory, so that restoring an old
    # copy of that directory does not also restore the witness (default: STATE_DIR-witness).
    witness_dir: Path | None = None
    # Pruning (with [sync] only): records the central copy has receipted and that are
    # older than keep_days are dropped, keep_batch or more at a time, after a signed
    # snapshot of what start-up needs; checked every prune_check_seconds.
    keep_days: float = 400.0
    prune_batch: int = 10000
    prune_check_seconds: float = 3600.0


@dataclass(frozen=True)
class DisplayConfig:
    """A character LCD at a door (HD44780 on an I2C backpack): what the keypad asks, the
    answer to a card, the cabinets still open; in katakana ("ja") or English."""

    door: str
    backend: str = "hd44780"  # "sim" with --simulate, or for a test rig
    address: int = 0x27
    port: int = 1
    cols: int = 16
    rows: int = 2
    language: str = "ja"


@dataclass(frozen=True)
class CardsConfig:
    """Cards that prove themselves (docs/door.md): a DESFire EV2/EV3 application whose
    AES key is diversified per card from the site master key, and PIV cards' Card
    Authentication key. Without either, readers take identifiers only."""

    desfire_aid: bytes | None = None  # 3 bytes; None: DESFire authentication off
    desfire_key_no: int = 1
    desfire_file_no: int = 1
    master_key_file: Path | None = None  # the site master key (AES-128 hex, 0600)
    system: str = "edged"  # diversification system identifier (the same at every door)
    piv: bool = False

    @property
    def kinds(self) -> frozenset[str]:
        """The proofs the readers can ask for."""
        return frozenset(
            k for k, on in (("desfire", self.desfire_aid is not None), ("piv", self.piv)) if on
        )


@dataclass(frozen=True)
class Config:
    """The whole daemon configuration."""

    file: Path
    site: str
    device: str
    state_dir: Path
    readers: dict[str, ReaderConfig]
    doors: dict[str, DoorConfig]
    cabinets: dict[str, CabinetConfig]
    keypads: dict[str, KeypadConfig]
    indicators: IndicatorConfig
    gpio: GpioConfig
    journal: JournalConfig
    areas: dict[str, AreaConfig] = field(default_factory=dict)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    clock: ClockConfig = field(default_factory=ClockConfig)
    calendar: CalendarConfig = field(default_factory=CalendarConfig)
    sync: SyncConfig | None = None  # None: offline, everything stays in the journal
    metrics_listen: str | None = None  # "127.0.0.1:9108": Prometheus text on loopback
    displays: dict[str, DisplayConfig] = field(default_factory=dict)
    cards: CardsConfig = field(default_factory=CardsConfig)


def load_config(path: Path, *, state_dir: Path | None = None) -> Config:
    """Read and validate a config file; raises :class:`ConfigError` naming file, key, reason."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    except ValueError as e:  # a NUL in the name (TOMLDecodeError is a ValueError too)
        raise ConfigError(f"{str(path)!r}: not a usable file name ({e})") from None
    return parse_config(data, path, state_dir=state_dir)


CARD_KINDS = ("id", "desfire", "piv")


def _parse_cards(c: _Section, sd: Path) -> CardsConfig:
    d, piv = c.table("desfire"), c.table("piv")
    out = CardsConfig(piv=piv.get("enabled", bool, False))
    piv.done()
    if d.data:
        aid = d.get("aid", str)
        try:
            raw = bytes.fromhex(aid)
        except ValueError:
            raw = b""
        if len(raw) != 3 or raw == bytes(3):
            raise d.error("aid", f"a DESFire application id is 6 hex digits, not 000000: {aid!r}")
        system = d.get("system", str, "edged")
        if not 1 <= len(system.encode()) <= 16 or not system.isascii():
            raise d.error("system", "1-16 ASCII characters")
        key = d.file_path("master_key", sd, str(sd / CARD_MASTER_FILE))
        out = CardsConfig(
            desfire_aid=raw,
            desfire_key_no=int(d.number("key_no", 1, lo=1, hi=13)),
            desfire_file_no=int(d.number("file_no", 1, lo=0, hi=31)),
            master_key_file=key,
            system=system,
            piv=out.piv,
        )
    d.done()
    c.done()
    return out


def _card_kinds(a: _Section, cards: CardsConfig) -> frozenset[str]:
    kinds = a.get("cards", list, [])
    for k in kinds:
        if k not in CARD_KINDS:
            raise a.error("cards", f"card kinds are {list(CARD_KINDS)}, got {k!r}")
        if k != "id" and k not in cards.kinds:
            raise a.error("cards", f"{k!r} cards need [cards.{k}] configured")
    return frozenset(kinds)


def _name(sec: _Section, key: str, default: Any = _REQUIRED) -> str:
    v = sec.get(key, str, default)
    if v is not None and not NAME.fullmatch(v):
        raise sec.error(key, "must be 1-32 of a-z 0-9 _ -")
    return v


def _per_door(
    top: _Section, key: str, doors: dict[str, DoorConfig], what: str
) -> list[tuple[str, _Section]]:
    """The tables of ``key`` (keypads, displays), each named after an existing door."""
    out = []
    for door_name, sec in top.tables(key).items():
        if door_name not in doors:
            raise ConfigError(
                f"{top.file}: {key}.{door_name}: no door {door_name!r} is defined under"
                f" [doors] ({what} is named after the door it serves)"
            )
        out.append((door_name, sec))
    return out


def parse_config(data: dict[str, Any], path: Path, *, state_dir: Path | None = None) -> Config:
    """Validate an already-parsed TOML document."""
    top = _Section(data, "", path)
    site = _name(top, "site")
    device = _name(top, "device")
    configured_sd = top.directory("state_dir", "/var/lib/edged")
    if state_dir is not None:
        reason = path_problem(str(state_dir), want="directory")
        if reason:
            raise ConfigError(f"--state-dir: {reason}")
    sd = Path(state_dir) if state_dir else configured_sd

    g = top.table("gpio")
    gpio = GpioConfig(
        backend=g.choice("backend", backends.names("pin_factory"), "default"),
        pull_up=g.get("pull_up", bool, True),
        debounce_ms=int(g.number("debounce_ms", 20, lo=0, hi=1000)),
        tamper_pin=g.pin("tamper_pin", None),
    )
    g.done()

    j = top.table("journal")
    journal = JournalConfig(
        checkpoint_every=int(j.number("checkpoint_every", 1000, lo=1, hi=10**6)),
        checkpoint_seconds=float(j.number("checkpoint_seconds", 3600, lo=1, hi=86400 * 7)),
        epoch_seconds=float(j.number("epoch_seconds", 86400, lo=60, hi=86400 * 31)),
        epoch_records=int(j.number("epoch_records", 100_000, lo=10, hi=10**8)),
        witness_dir=j.directory("witness_dir", str(sd.with_name(sd.name + "-witness"))),
        keep_days=float(j.number("keep_days", 400, lo=0, hi=36500)),
        prune_batch=int(j.number("prune_batch", 10000, lo=1, hi=10**7)),
        prune_check_seconds=float(j.number("prune_check_seconds", 3600, lo=1, hi=86400 * 7)),
    )
    wd = journal.witness_dir
    assert wd is not None
    if wd.resolve() == sd.resolve() or sd.resolve() in wd.resolve().parents:
        raise j.error(
            "witness_dir",
            "must lie outside the state directory (a restored copy"
            " of it would restore the witness too)",
        )
    j.done()

    cards = _parse_cards(top.table("cards"), sd)
    areas: dict[str, AreaConfig] = {}
    for name, a in top.tables("areas").items():
        kind = a.choice("kind", ("handling", "management"))
        purposes_sec = a.table("purposes")
        purposes = {}
        for code in purposes_sec.data:
            if not (code.isdigit() and 1 <= len(code) <= 3):
                raise purposes_sec.error(code, "purpose codes are 1-3 digits")
            purposes[code] = _name(purposes_sec, code)
        areas[name] = AreaConfig(
            name=name,
            kind=kind,
            title=a.get("title", str, name),
            pin_required=a.get("pin_required", bool, kind == "management"),
            purposes=purposes,
            carry_in=a.get("carry_in", bool, False),
            carry_out=a.get("carry_out", bool, False),
            carry_out_approval=a.get("carry_out_approval", bool, False),
            approver=a.get("approver", str, None),
            lockcheck_pin=a.get("lockcheck_pin", bool, False),
            cards=_card_kinds(a, cards),
        )
        a.done()

    p = top.table("policy")
    policy = PolicyConfig(
        pin_attempts=int(p.number("pin_attempts", 5, lo=1, hi=20)),
        lockout_minutes=float(p.number("lockout_minutes", 15, lo=1, hi=24 * 60)),
        escort_seconds=float(p.number("escort_seconds", 30, lo=5, hi=300)),
        lockcheck_seconds=float(p.number("lockcheck_seconds", 60, lo=10, hi=600)),
        expiry_warning_days=int(p.number("expiry_warning_days", 30, lo=1, hi=180)),
        pin_warning_days=int(p.number("pin_warning_days", 14, lo=0, hi=90)),
        pin_max_age_days=int(p.number("pin_max_age_days", 180, lo=1, hi=366)),
    )
    p.done()

    ck = top.table("clock")
    tz = ck.get("timezone", str, "Asia/Tokyo")
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ck.error("timezone", f"unknown time zone {tz!r}") from None
    clock = ClockConfig(
        timezone=tz,
        when_unsynced=ck.choice(
            "when_unsynced", ("deny_windowed", "deny_all", "trust"), "deny_windowed"
        ),
        assume_synced=ck.get("assume_synced", bool, None),
    )
    ck.done()

    cal = top.table("calendar")
    closed_sec = cal.table("closed_days")
    closed: dict[dt.date, str] = {}
    for key in closed_sec.data:
        try:
            day = dt.date.fromisoformat(key)
        except ValueError:
            raise closed_sec.error(key, "closed days are dates YYYY-MM-DD") from None
        closed[day] = closed_sec.get(key, str)
    calendar = CalendarConfig(country=cal.get("country", str, "JP"), closed=closed)
    try:
        Calendar(calendar)
    except ConfigError as e:
        raise cal.error("country", str(e).split(": ", 1)[-1]) from None
    cal.done()

    readers: dict[str, ReaderConfig] = {}
    for name, r in top.tables("readers").items():
        pcsc = r.get("pcsc_name", str)
        # Names match by prefix: one that is a prefix of another would bind both logical
        # readers to one physical reader (an entry reader answering as the exit).
        for other in readers.values():
            if pcsc.startswith(other.pcsc_name) or other.pcsc_name.startswith(pcsc):
                raise r.error(
                    "pcsc_name",
                    f"{pcsc!r} and readers.{other.name}.pcsc_name {other.pcsc_name!r} could"
                    " name the same reader: give each reader's full name (with its serial)",
                )
        readers[name] = ReaderConfig(name, pcsc)
        r.done()

    doors: dict[str, DoorConfig] = {}
    for name, d in top.tables("doors").items():
        area = _name(d, "area")
        if areas and area not in areas:
            raise d.error("area", f"no area {area!r} is defined under [areas]")
        entry = _name(d, "entry_reader")
        exit_r = _name(d, "exit_reader", None)
        for key, rname in (("entry_reader", entry), ("exit_reader", exit_r)):
            if rname is not None and rname not in readers:
                raise d.error(key, f"no reader {rname!r} is defined under [readers]")
        doors[name] = DoorConfig(
            name=name,
            area=area,
            entry_reader=entry,
            exit_reader=exit_r,
            relay_pin=d.required_pin("relay_pin"),
            relay_active_high=d.get("relay_active_high", bool, True),
            contact_pin=d.required_pin("contact_pin"),
            contact_closed_when=d.choice(
                "contact_closed_when", ("switch_closed", "switch_open"), "switch_closed"
            ),
            exit_button_pin=d.pin("exit_button_pin", None),
            unlock_seconds=float(d.number("unlock_seconds", 5, lo=1, hi=60)),
            held_open_seconds=float(d.number("held_open_seconds", 30, lo=5, hi=600)),
            mode=d.choice("mode", ("fail_secure", "fail_safe"), "fail_secure"),
        )
        d.done()

    cabinets: dict[str, CabinetConfig] = {}
    for name, c in top.tables("cabinets").items():
        area = _name(c, "area")
        if areas and area not in areas:
            raise c.error("area", f"no area {area!r} is defined under [areas]")
        reader = _name(c, "reader", None)
        lock_pin = c.pin("lock_pin", None)
        if reader is not None:
            if reader not in readers:
                raise c.error("reader", f"no reader {reader!r} is defined under [readers]")
            if lock_pin is None:
                raise c.error(
                    "reader", "a cabinet's reader releases its electric lock: set lock_pin"
                )
            used = [d.name for d in doors.values() if reader in (d.entry_reader, d.exit_reader)]
            if used:
                raise c.error("reader", f"reader {reader!r} is already doors.{used[0]}'s")
        cabinets[name] = CabinetConfig(
            name=name,
            area=area,
            pin=c.required_pin("pin"),
            locked_when=c.choice("locked_when", ("switch_closed", "switch_open"), "switch_closed"),
            custodians_only=c.get("custodians_only", bool, False),
            lock_pin=lock_pin,
            lock_active_high=c.get("lock_active_high", bool, True),
            reader=reader,
            unlock_seconds=float(c.number("unlock_seconds", 5, lo=1, hi=60)),
        )
        c.done()

    keypads: dict[str, KeypadConfig] = {}
    for door_name, k in _per_door(top, "keypads", doors, "a keypad"):
        backend = k.choice("backend", backends.names("keypad"))
        rows = tuple(k.get("rows", list, []))
        cols = tuple(k.get("cols", list, []))
        for key, pins in (("rows", rows), ("cols", cols)):
            if any(type(p) is not int or not 0 <= p <= 27 for p in pins):
                raise k.error(key, "must be a list of GPIO pins 0..27")
        if backend == "matrix" and (len(rows) != 4 or len(cols) not in (3, 4)):
            raise k.error("rows", "a matrix keypad needs 4 rows and 3 or 4 cols (3x4 or 4x4)")
        keypad = KeypadConfig(
            backend=backend,
            rows=rows,
            cols=cols,
            device=k.get("device", str, None),
            timeout_seconds=float(k.number("timeout_seconds", 15, lo=3, hi=120)),
            door=door_name,
        )
        if backend == "evdev" and not keypad.device:
            raise k.error("device", 'an evdev keypad needs device = "/dev/input/by-id/..."')
        keypads[door_name] = keypad
        k.done()

    displays: dict[str, DisplayConfig] = {}
    for door_name, dsec in _per_door(top, "displays", doors, "a display"):
        width, _, height = dsec.choice("size", ("16x2", "20x4"), "16x2").partition("x")
        displays[door_name] = DisplayConfig(
            door=door_name,
            backend=dsec.choice("backend", backends.names("display")),
            address=int(dsec.number("address", 0x27, lo=0x03, hi=0x77)),
            port=int(dsec.number("port", 1, lo=0, hi=20)),
            cols=int(width),
            rows=int(height),
            language=dsec.choice("language", ("ja", "en"), "ja"),
        )
        dsec.done()

    m = top.table("metrics")
    metrics_listen = m.get("listen", str, None)
    if metrics_listen is not None:
        from edged.device.metrics import parse_listen

        try:
            parse_listen(metrics_listen)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    m.done()

    sync = _parse_sync(top.table("sync"), path) if "sync" in data else None
    if "sync" not in data:
        top.used.add("sync")

    i = top.table("indicators")
    indicators = IndicatorConfig(
        buzzer_pin=i.pin("buzzer_pin", None),
        green_pin=i.pin("green_pin", None),
        red_pin=i.pin("red_pin", None),
    )
    i.done()
    top.done()

    # One pin, one job: a shared pin would make a reed switch read as a door contact.
    owners: dict[int, str] = {}
    claims: list[tuple[int | None, str]] = [(gpio.tamper_pin, "gpio.tamper_pin")]
    for door in doors.values():
        claims += [
            (door.relay_pin, f"doors.{door.name}.relay_pin"),
            (door.contact_pin, f"doors.{door.name}.contact_pin"),
            (door.exit_button_pin, f"doors.{door.name}.exit_button_pin"),
        ]
    claims += [(c.pin, f"cabinets.{c.name}.pin") for c in cabinets.values()]
    claims += [(c.lock_pin, f"cabinets.{c.name}.lock_pin") for c in cabinets.values()]
    for kp in keypads.values():
        claims += [(p, f"keypads.{kp.door}.rows") for p in kp.rows]
        claims += [(p, f"keypads.{kp.door}.cols") for p in kp.cols]
    claims += [
        (indicators.buzzer_pin, "indicators.buzzer_pin"),
        (indicators.green_pin, "indicators.green_pin"),
        (indicators.red_pin, "indicators.red_pin"),
    ]
    for pin, where in claims:
        if pin is None:
            continue
        if pin in owners:
            raise ConfigError(f"{path}: {where}: GPIO {pin} is already used by {owners[pin]}")
        owners[pin] = where

    return Config(
        file=path,
        site=site,
        device=device,
        state_dir=sd,
        readers=readers,
        doors=doors,
        cabinets=cabinets,
        keypads=keypads,
        indicators=indicators,
        gpio=gpio,
        journal=journal,
        areas=areas,
        policy=policy,
        clock=clock,
        calendar=calendar,
        sync=sync,
        metrics_listen=metrics_listen,
        displays=displays,
        cards=cards,
    )


def _parse_sync(s: _Section, path: Path) -> SyncConfig:
    broker = s.get("broker", str)
    host, _, port_s = broker.rpartition(":")
    if not host or not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise s.error("broker", f"expected HOST:PORT, got {broker!r}")

    def file(key: str, *, secret: bool = False) -> Path | None:
        p = s.file_path(key, path.parent)
        if p is None:
            return None
        if not p.is_file():
            raise s.error(key, f"file {p} does not exist")
        if secret and p.stat().st_mode & 0o077:
            raise s.error(key, f"{p} is readable by other users; fix with: chmod 600 {p}")
        return p

    tls = s.get("tls", bool, False)
    cfg = SyncConfig(
        host=host,
        port=int(port_s),
        tls=tls,
        ca_file=file("ca_file"),
        cert_file=file("cert_file"),
        key_file=file("key_file", secret=True),
        username=s.get("username", str, None),
        password_file=file("password_file", secret=True),
        collector_pubkey=file("collector_pubkey"),
        admin_pubkey=file("admin_pubkey"),
        window=int(s.number("window", 100, lo=1, hi=10000)),
        max_unreceipted=int(s.number("max_unreceipted", 800, lo=1, hi=100000)),
        heartbeat_seconds=float(s.number("heartbeat_seconds", 60, lo=1, hi=3600)),
        keepalive_seconds=float(s.number("keepalive_seconds", 30, lo=2, hi=3600)),
        refusal_interval_seconds=float(s.number("refusal_interval_seconds", 60, lo=1, hi=86400)),
    )
    if tls and cfg.ca_file is None:
        raise s.error("ca_file", "tls = true needs the CA certificate of the broker")
    if (cfg.cert_file is None) != (cfg.key_file is None):
        raise s.error(
            "key_file" if cfg.key_file is None else "cert_file",
            "a client certificate needs both cert_file and key_file",
        )
    if cfg.cert_file is not None and not tls:
        raise s.error("tls", "client certificates need tls = true")
    if cfg.collector_pubkey is None:
        raise s.error("collector_pubkey", "needed: only signed receipts may advance acked_seq")
    s.done()
    return cfg
