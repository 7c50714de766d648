"""The daemon's configuration (TOML), validated on load.

Every error names the file, the key path and the reason; unknown keys are errors, so a
typo never silently turns a safety feature off (Invariant 5).
"""

from __future__ import annotations

import datetime as dt
import json
import stat
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edged.core.calendar import Calendar, CalendarConfig
from edged.core.closing import parse_closing
from edged.core.options import declared, opt
from edged.core.policy import (
    AreaConfig,
    CabinetConfig,
    ClockConfig,
    DoorConfig,
    KeypadConfig,
    PolicyConfig,
)
from edged.device import backends
from edged.device.config_rules import check_pins_owned_once
from edged.device.paths import CARD_MASTER_FILE
from edged.errors import ConfigError
from edged.protocol.mqtt import Broker, Tls
from edged.protocol.topics import NAME

_REQUIRED = object()
_T = TypeVar("_T")


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

    def fill(self, cls: type[_T], *, choices: dict[str, tuple[str, ...]] | None = None,
             base: Path | None = None, **given: Any) -> _T:  # fmt: skip
        """An instance of ``cls`` with each declared option (:mod:`edged.core.options`)
        read from this table, checked against its type, bounds or choices; ``given``:
        the fields read otherwise; ``choices``: names known only here (backends);
        ``base``: the directory file names are relative to (the config file's)."""
        values = dict(given)
        for d in declared(cls):
            if d.name in values:
                continue
            key, o = d.name, d.option
            default = _REQUIRED if d.required else d.default
            names = (choices or {}).get(key, o.choices)
            if o.pin:
                v: Any = self.pin(key, default)
            elif o.file:
                assert base is not None, f"{cls.__name__}.{key} is a file: fill needs base"
                v = self.existing_file(key, base, secret=o.file == "secret")
            elif names:
                v = self.choice(key, names, default)
            elif d.type in (int, float):
                v = self.number(key, default, lo=o.lo if o.lo is not None else 0,
                                hi=o.hi if o.hi is not None else 1e9)  # fmt: skip
                v = d.type(v) if v is not None else None
            else:
                v = self.get(key, d.type, default)
            values[key] = v
        return cls(**values)

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

    def existing_file(self, key: str, base: Path, *, secret: bool = False) -> Path | None:
        """A file that must exist; a ``secret`` one (a key, a password) readable by its
        owner alone. None when absent."""
        p = self.file_path(key, base)
        if p is None:
            return None
        if not p.is_file():
            raise self.error(key, f"file {p} does not exist")
        if secret and p.stat().st_mode & 0o077:
            raise self.error(key, f"{p} is readable by other users; fix with: chmod 600 {p}")
        return p

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
    tls: bool = opt(False, "TLS to the broker (needs ca_file)")
    ca_file: Path | None = opt(None, "the CA certificate of the broker", file="file")
    cert_file: Path | None = opt(None, "this device's client certificate (with key_file)",
                                 file="file")  # fmt: skip
    key_file: Path | None = opt(None, "its private key", file="secret")
    username: str | None = opt(None, "the broker login (with password_file)")
    password_file: Path | None = opt(None, "the broker password", file="secret")
    collector_pubkey: Path | None = opt(None, "required: the collector's public key; only its"
                                        " receipts and commands count", file="file")  # fmt: skip
    admin_pubkey: Path | None = opt(None, "the administrator's public key: only access lists"
                                    " it signed apply", file="file")  # fmt: skip
    window: int = opt(100, "records in flight (published, no PUBACK yet)", lo=1, hi=10000)
    max_unreceipted: int = opt(
        800, "records published beyond the last receipt (keep below the broker's"
        " max_queued_messages)", lo=1, hi=100000,
    )  # fmt: skip
    heartbeat_seconds: float = opt(60.0, "how often the device reports its state", lo=1,
                                   hi=3600)  # fmt: skip
    keepalive_seconds: float = opt(30.0, "MQTT keepalive: a dead link is found within about"
                                   " twice this", lo=2, hi=3600)  # fmt: skip
    # Refused inbound messages (anyone on the broker can send them) are recorded at most
    # once per interval, with the count refused since: a flood cannot fill the journal.
    refusal_interval_seconds: float = opt(60.0, "refused inbound messages are recorded once"
                                          " per interval, with their count", lo=1,
                                          hi=86400)  # fmt: skip

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

    buzzer_pin: int | None = opt(None, "the buzzer", pin=True)
    green_pin: int | None = opt(None, "the green LED (granted)", pin=True)
    red_pin: int | None = opt(None, "the red LED (denied, alarm)", pin=True)


@dataclass(frozen=True)
class GpioConfig:
    """Pin factory and input conditioning."""

    backend: str = opt("default", "gpiozero's pin factory; default: gpiozero chooses (lgpio"
                       " on a Pi)", choices=backends.names("pin_factory"))  # fmt: skip
    pull_up: bool = opt(True, "switches to ground: a cut wire reads as an open switch")
    debounce_ms: int = opt(20, "input debounce", lo=0, hi=1000)
    tamper_pin: int | None = opt(None, "normally-closed enclosure switch", pin=True)


@dataclass(frozen=True)
class JournalConfig:
    """Checkpoint policy of the journal."""

    checkpoint_every: int = opt(1000, "a signed checkpoint every N records...", lo=1,
                                hi=10**6)  # fmt: skip
    checkpoint_seconds: float = opt(3600.0, "...or every T seconds when anything was"
                                    " recorded", lo=1, hi=86400 * 7)  # fmt: skip
    # Forward-secure signing (docs/proofs.md): a new key every epoch_seconds or
    # epoch_records records, whichever comes first; the previous key is erased.
    epoch_seconds: float = opt(86400.0, "a new signing key this often; the old one is"
                               " erased", lo=60, hi=86400 * 31)  # fmt: skip
    epoch_records: int = opt(100_000, "...or after this many records", lo=10, hi=10**8)
    # Where the head witness lives: outside the state directory, so that restoring an old
    # copy of that directory does not also restore the witness (default: STATE_DIR-witness).
    witness_dir: Path | None = None
    # Pruning (with [sync] only): records the central copy has receipted and that are
    # older than keep_days are dropped, keep_batch or more at a time, after a signed
    # snapshot of what start-up needs; checked every prune_check_seconds.
    keep_days: float = opt(400.0, "receipted records older than this are pruned (0: at"
                           " once)", lo=0, hi=36500)  # fmt: skip
    prune_batch: int = opt(10000, "records pruned at a time", lo=1, hi=10**7)
    prune_check_seconds: float = opt(3600.0, "how often pruning is considered", lo=1,
                                     hi=86400 * 7)  # fmt: skip


@dataclass(frozen=True)
class DisplayConfig:
    """A character LCD at a door (HD44780 on an I2C backpack): what the keypad asks, the
    answer to a card, the cabinets still open; in katakana ("ja") or English."""

    door: str
    backend: str = opt(help="hd44780 (an I2C backpack); sim for a test rig",
                       choices=backends.names("display"))  # fmt: skip
    address: int = opt(0x27, "I2C address (i2cdetect -y 1: 0x27 or 0x3F)", lo=0x03, hi=0x77)
    port: int = opt(1, "I2C bus", lo=0, hi=20)
    cols: int = 16
    rows: int = 2
    language: str = opt("ja", "katakana, as the LCD's ROM has them, or English",
                        choices=("ja", "en"))  # fmt: skip


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


# Each table of the file and the dataclass that declares its options
# (:mod:`edged.core.options`), with the names only the device knows (its backends).
SECTIONS: list[tuple[str, type, dict[str, tuple[str, ...]]]] = [
    ("gpio", GpioConfig, {}),
    ("clock", ClockConfig, {}),
    ("policy", PolicyConfig, {}),
    ("journal", JournalConfig, {}),
    ("areas.NAME", AreaConfig, {}),
    ("doors.NAME", DoorConfig, {}),
    ("cabinets.NAME", CabinetConfig, {}),
    ("keypads.DOOR", KeypadConfig, {"backend": backends.names("keypad")}),
    ("displays.DOOR", DisplayConfig, {}),
    ("indicators", IndicatorConfig, {}),
    ("sync", SyncConfig, {}),
]

# Keys of those sections that are read by hand, because they name other tables or are
# not stored as written (a reference is checked against [areas] and [readers]):
# section -> (key, value, default, meaning), for the reference.
READ_OTHERWISE: dict[str, list[tuple[str, str, str, str]]] = {
    "journal": [
        (
            "witness_dir",
            "directory",
            "STATE_DIR-witness",
            "where the journal's head is"
            " remembered, outside the state directory, so a restored old journal is seen (R9)",
        ),
    ],
    "areas.NAME": [
        ("kind", "`handling` \\| `management`", "required", "取扱区域 or 管理区域"),
        ("title", "text", "the name", "what people read on screens and in the ledger"),
        ("pin_required", "bool", "management areas", "a PIN after the card"),
        ("purposes", "table code -> purpose", "none asked", "入室理由 asked on the keypad"),
        ("carry_in", "bool", "`false`", "ask for a carry-in declaration (R4)"),
        ("carry_out", "bool", "`false`", "ask at exit what is taken out (R18)"),
        ("carry_out_approval", "bool", "`false`", "taking something out needs an approver"),
        ("approver", "a person id", "none", "確認者 of the area's entries"),
        ("lockcheck_pin", "bool", "`false`", "the last leaver confirms with the PIN"),
        ("cards", "list of `id`, `desfire`, `piv`", "any", "the card kinds that open it"),
    ],
    "doors.NAME": [
        ("area", "an `[areas]` name", "required", "the area this door lets into"),
        ("entry_reader", "a `[readers]` name", "required", "the reader outside"),
        ("exit_reader", "a `[readers]` name", "off", "the reader inside, for leaving"),
    ],
    "cabinets.NAME": [
        ("area", "an `[areas]` name", "required", "the area it stands in"),
        ("reader", "a `[readers]` name", "off", "a custodian's card here releases lock_pin"),
    ],
    "keypads.DOOR": [
        ("rows", "4 GPIO pins", "required for matrix", "the matrix keypad's rows"),
        ("cols", "3 or 4 GPIO pins", "required for matrix", "its columns (3x4 or 4x4)"),
    ],
    "displays.DOOR": [("size", "`16x2` \\| `20x4`", '`"16x2"`', "characters x lines")],
    "sync": [("broker", "`HOST:PORT`", "required", "the MQTT broker (8883 with TLS)")],
}


def _toml(v: Any) -> str:
    """A value as it is written in the TOML file (``true``, ``"text"``, ``1.5``)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, tuple | list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return repr(v)


def _num(x: float | None, none: str) -> str:
    """A bound as a reader writes it: 2678400, not 2.6784e+06."""
    if x is None:
        return none
    return str(int(x)) if float(x).is_integer() else str(x)


def option_reference() -> str:
    """The declared options as a Markdown reference (docs/config.md): one table per
    section, each option's type, default or bounds, and help, all from the declarations."""
    out = [
        "# Configuration options",
        "",
        "Generated by `edged config options` from the declarations on the configuration",
        "dataclasses (`edged/core/policy.py`, `edged/device/config.py`): do not edit by hand;",
        "a test keeps this file equal to the command's output. An annotated example is",
        "`config/edged.toml`; areas, readers, the calendar, cards and metrics are described",
        "there and in `docs/door.md`. Unknown keys are errors, a value out of bounds is a",
        "one-line error naming the file, the key and the reason (`edged config check`).",
        "",
    ]
    for section, cls, more in SECTIONS:
        out += [f"### [{section}]", "", "| option | value | default | meaning |",
                "|---|---|---|---|"]  # fmt: skip
        for d in declared(cls):
            o = d.option
            names = more.get(d.name, o.choices)
            if o.pin:
                kind = "GPIO pin 0..27"
            elif o.file:
                kind = "file, 0600" if o.file == "secret" else "file"
            elif names:
                kind = " \\| ".join(f"`{n}`" for n in names)
            elif d.type in (int, float) and (o.lo is not None or o.hi is not None):
                kind = f"{d.type.__name__} {_num(o.lo, 'any')}..{_num(o.hi, 'any')}"
            else:
                kind = d.type.__name__
            if d.required:
                default = "required"
            elif d.default is None:
                default = "off"
            else:
                default = f"`{_toml(d.default)}`"
            out.append(f"| `{d.name}` | {kind} | {default} | {o.help} |")
        for key, kind, default, meaning in READ_OTHERWISE.get(section, []):
            out.append(f"| `{key}` | {kind} | {default} | {meaning} |")
        out.append("")
    return "\n".join(out)


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
    """Validate an already-parsed TOML document: each table by its own reader below,
    then the rules across tables (:mod:`edged.device.config_rules`)."""
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
    gpio = g.fill(GpioConfig)
    g.done()
    journal = _journal(top.table("journal"), sd)
    cards = _parse_cards(top.table("cards"), sd)
    areas = _areas(top, cards)
    p = top.table("policy")
    policy = p.fill(PolicyConfig)
    p.done()
    clock = _clock(top.table("clock"))
    calendar = _calendar(top.table("calendar"))
    readers = _readers(top)
    doors = _doors(top, areas, readers)
    cabinets = _cabinets(top, areas, readers, doors)
    keypads = _keypads(top, doors)
    displays = _displays(top, doors)
    metrics_listen = _metrics(top.table("metrics"), path)
    sync = _parse_sync(top.table("sync"), path) if "sync" in data else None
    if "sync" not in data:
        top.used.add("sync")
    i = top.table("indicators")
    indicators = i.fill(IndicatorConfig)
    i.done()
    top.done()

    cfg = Config(
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
    check_pins_owned_once(cfg)
    return cfg


def _journal(j: _Section, sd: Path) -> JournalConfig:
    journal = j.fill(
        JournalConfig,
        witness_dir=j.directory("witness_dir", str(sd.with_name(sd.name + "-witness"))),
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
    return journal


def _areas(top: _Section, cards: CardsConfig) -> dict[str, AreaConfig]:
    areas: dict[str, AreaConfig] = {}
    for name, a in top.tables("areas").items():
        kind = a.choice("kind", ("handling", "management"))
        purposes_sec = a.table("purposes")
        purposes = {}
        for code in purposes_sec.data:
            if not (code.isdigit() and 1 <= len(code) <= 3):
                raise purposes_sec.error(code, "purpose codes are 1-3 digits")
            purposes[code] = _name(purposes_sec, code)
        areas[name] = a.fill(
            AreaConfig,
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
        for key in ("closing_time", "reset_time"):
            at = getattr(areas[name], key)
            if at is not None:
                try:
                    parse_closing(at)
                except ValueError as e:
                    raise a.error(key, str(e)) from None
        a.done()
    return areas


def _clock(ck: _Section) -> ClockConfig:
    clock = ck.fill(ClockConfig)
    try:
        zoneinfo.ZoneInfo(clock.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ck.error("timezone", f"unknown time zone {clock.timezone!r}") from None
    ck.done()
    return clock


def _calendar(cal: _Section) -> CalendarConfig:
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
    return calendar


def _readers(top: _Section) -> dict[str, ReaderConfig]:
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
    return readers


def _doors(
    top: _Section, areas: dict[str, AreaConfig], readers: dict[str, ReaderConfig]
) -> dict[str, DoorConfig]:
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
        doors[name] = d.fill(
            DoorConfig, name=name, area=area, entry_reader=entry, exit_reader=exit_r
        )
        d.done()
    return doors


def _cabinets(
    top: _Section,
    areas: dict[str, AreaConfig],
    readers: dict[str, ReaderConfig],
    doors: dict[str, DoorConfig],
) -> dict[str, CabinetConfig]:
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
        cabinets[name] = c.fill(
            CabinetConfig, name=name, area=area, lock_pin=lock_pin, reader=reader
        )
        c.done()
    return cabinets


def _keypads(top: _Section, doors: dict[str, DoorConfig]) -> dict[str, KeypadConfig]:
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
        keypad = k.fill(KeypadConfig, backend=backend, rows=rows, cols=cols, door=door_name)
        if backend == "evdev" and not keypad.device:
            raise k.error("device", 'an evdev keypad needs device = "/dev/input/by-id/..."')
        keypads[door_name] = keypad
        k.done()
    return keypads


def _displays(top: _Section, doors: dict[str, DoorConfig]) -> dict[str, DisplayConfig]:
    displays: dict[str, DisplayConfig] = {}
    for door_name, dsec in _per_door(top, "displays", doors, "a display"):
        width, _, height = dsec.choice("size", ("16x2", "20x4"), "16x2").partition("x")
        displays[door_name] = dsec.fill(
            DisplayConfig, door=door_name, cols=int(width), rows=int(height)
        )
        dsec.done()
    return displays


def _metrics(m: _Section, path: Path) -> str | None:
    metrics_listen = m.get("listen", str, None)
    if metrics_listen is not None:
        from edged.device.metrics import parse_listen

        try:
            parse_listen(metrics_listen)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
    m.done()
    return metrics_listen


def _parse_sync(s: _Section, path: Path) -> SyncConfig:
    address = s.get("broker", str)
    try:
        where = Broker.parse(address)  # the one HOST:PORT parser, the collector's too
    except ConfigError:
        raise s.error("broker", f"expected HOST:PORT, got {address!r}") from None
    cfg = s.fill(SyncConfig, base=path.parent, host=where.host, port=where.port)
    tls = cfg.tls
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
