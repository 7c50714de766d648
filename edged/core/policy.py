"""The core's policy model: areas, doors, cabinets, keypads, timing rules, and the access
list (people, cards, rights, time windows), with the validation of its stored form.

Pure data and pure checks, no I/O: the device's configuration (TOML) and access-list
files build these, the core decides with them, and the signed envelope carries the
stored form (``edged-acl/1``) between the administrator and the device.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from edged.core.calendar import CalendarConfig
from edged.core.options import opt
from edged.errors import ConfigError
from edged.protocol.canonical import canonical_bytes
from edged.protocol.privacy import (
    CardFingerprinter,
    contains_individual_number,
    is_individual_number,
)

FORMAT = "edged-acl/1"
ROLES = ("staff", "visitor", "admin")
MAX_SPAN_DAYS = 366
# Stored PIN hashes: scrypt over HMAC-SHA256(pepper, PIN) (edged.device.acl makes them).
PIN_SCHEME = "scrypt+hmac"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_WINDOW = re.compile(
    r"^(?P<days>[a-z,-]+)\s+(?P<f>\d{2}):(?P<fm>\d{2})-(?P<t>\d{2}):(?P<tm>\d{2})$"
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# In a window's days: the closed days (holidays and the site's own), as day 7.
HOL = 7


CARRY_IN = {"0": "none", "1": "approved_pc", "2": "approved_media"}


@dataclass(frozen=True)
class AreaConfig:
    """An area and its entry rules."""

    name: str
    kind: str  # "handling" (取扱区域) | "management" (管理区域)
    title: str
    pin_required: bool  # default: management areas
    purposes: dict[str, str]  # keypad code -> purpose; empty: no purpose asked
    carry_in: bool  # ask for a carry-in declaration (R4)
    lockcheck_pin: bool  # last leaver confirms with the PIN instead of "#"
    carry_out: bool = False  # ask at exit what is taken out (R18)
    carry_out_approval: bool = False  # taking something out needs an approver's card
    approver: str | None = None  # 確認者 of the area's entries (a person id of the list)
    # Which cards open it: "id" (an identifier only), "desfire", "piv"; empty: any.
    cards: frozenset[str] = frozenset()
    anti_passback: str = opt(
        "hard",
        "a tap in by someone counted inside: hard refuses it (already_inside) unless an"
        " exit without a tap left the count uncertain; soft lets them in and records it",
        choices=("hard", "soft"),
    )
    max_stay_hours: float = opt(
        18.0,
        "someone counted inside this long (who left without being counted, following"
        " another out) is no longer counted, recorded as occupancy.expired; 0: never",
        lo=0,
        hi=168,
    )
    closing_time: str | None = opt(
        None,
        "HH:MM local: at closing on a day the calendar keeps open, anyone counted inside, a"
        " cabinet open, or no confirmed lock check after the area was used that day is"
        " alarm.area_not_closed, until a confirmed lock check clears it; off when absent",
    )
    presence_pin: int | None = opt(
        None,
        "a PIR's normally-closed alarm contact, to ground (opens on motion; a cut wire reads"
        " as motion, never as empty, R23): no motion for presence_empty_minutes after an"
        " exit confirms the area empty; motion while it is counted empty after closing is"
        " alarm.presence_after_closing",
        pin=True,
    )
    presence_empty_minutes: float = opt(
        30.0, "no motion this long after the last exit: the area is empty", lo=1, hi=1440
    )
    reset_time: str | None = opt(
        None,
        "HH:MM local, every day: whoever is still counted inside is no longer counted,"
        " recorded as occupancy.reset by the schedule (a signed record, as an"
        " administrator's reset); off when absent",
    )
    tap_out: str = opt(
        "optional",
        "required: leaving by the exit button without tapping out at the offer is"
        " alarm.exit_without_tap (the door still opens)",
        choices=("optional", "required"),
    )


@dataclass(frozen=True)
class PolicyConfig:
    """Timing and lock-out rules of the decisions."""

    pin_attempts: int = opt(5, "wrong PINs in a row before the card is locked out (R3)",
                            lo=1, hi=20)  # fmt: skip
    lockout_minutes: float = opt(15.0, "how long a locked-out card stays refused", lo=1,
                                 hi=24 * 60)  # fmt: skip
    escort_seconds: float = opt(30.0, "a visitor and the escort tap within this time (R2)",
                                lo=5, hi=300)  # fmt: skip
    lockcheck_seconds: float = opt(60.0, "the last leaver's time to confirm the cabinet"
                                   " check (R6)", lo=10, hi=600)  # fmt: skip
    expiry_warning_days: int = opt(30, "warn of rights ending within this many days (R5)",
                                   lo=1, hi=180)  # fmt: skip
    pin_warning_days: int = opt(14, "warn this long before a PIN expires (R19)", lo=0, hi=90)
    pin_max_age_days: int = opt(180, "life of a PIN changed at the door", lo=1, hi=366)


@dataclass(frozen=True)
class ClockConfig:
    """Local time zone and what to do while the clock is not synchronised."""

    timezone: str = opt("Asia/Tokyo", "time windows and validity dates are local to it")
    when_unsynced: str = opt(
        "deny_windowed",
        "before NTP sync: deny window-bound rights (validity dates use the clock as it is),"
        " deny every card, or trust the clock",
        choices=("deny_windowed", "deny_all", "trust"),
    )
    assume_synced: bool | None = opt(None, "override the kernel's NTP state (no-NTP sites)")


@dataclass(frozen=True)
class DoorConfig:
    """One door: readers, GPIO pins and timing."""

    name: str
    area: str
    entry_reader: str
    relay_pin: int = opt(help="the strike's relay", pin=True)
    contact_pin: int = opt(help="the door contact (reed switch)", pin=True)
    exit_reader: str | None = None
    relay_active_high: bool = opt(True, "the relay is energised by a high output")
    contact_closed_when: str = opt(
        "switch_closed", "which switch state is a closed door",
        choices=("switch_closed", "switch_open"),
    )  # fmt: skip
    exit_button_pin: int | None = opt(None, "request-to-exit button", pin=True)
    unlock_seconds: float = opt(5.0, "how long a granted card releases the strike", lo=1, hi=60)
    held_open_seconds: float = opt(30.0, "open longer than this is an alarm", lo=5, hi=600)
    mode: str = opt(
        "fail_secure", "fail_secure: strike energised to unlock, power loss keeps it locked",
        choices=("fail_secure", "fail_safe"),
    )  # fmt: skip


@dataclass(frozen=True)
class CabinetConfig:
    """A monitored cabinet, rack door or archive: its reed switch and which state is
    locked; optionally an electric lock with its own card reader, and whether only its
    custodians (the access list's ``cabinets`` of each person) may open it (R17)."""

    name: str
    area: str
    pin: int = opt(help="its reed switch", pin=True)
    locked_when: str = opt(
        "switch_closed", "which switch state is locked (the bolt's magnet closes the reed)",
        choices=("switch_closed", "switch_open"),
    )  # fmt: skip
    custodians_only: bool = opt(False, "opened with none of its custodians inside: an alarm")
    lock_pin: int | None = opt(None, "relay of an electric lock (energised: released)",
                               pin=True)  # fmt: skip
    lock_active_high: bool = opt(True, "the lock's relay is energised by a high output")
    reader: str | None = None  # the card reader on the cabinet (electric lock only)
    unlock_seconds: float = opt(5.0, "how long a custodian's card releases the lock", lo=1,
                                hi=60)  # fmt: skip
    max_open_minutes: float = opt(
        0.0,
        "open this long: cabinet.open_reminder (the door's display says so), and at twice"
        " as long alarm.cabinet_open_too_long until it is locked (the rules ask that"
        " cabinets be locked as soon as the work no longer needs them); 0: off",
        lo=0,
        hi=1440,
    )

    @property
    def guarded(self) -> bool:
        """Only custodians may open it: said so, or it has an electric lock."""
        return self.custodians_only or self.lock_pin is not None


@dataclass(frozen=True)
class KeypadConfig:
    """Keypad backend and, for a matrix keypad, its wiring."""

    backend: str = opt(help="matrix (GPIO 3x4 or 4x4), evdev (a USB keypad) or sim")
    rows: tuple[int, ...] = ()
    cols: tuple[int, ...] = ()
    device: str | None = opt(None, "an evdev keypad's device (/dev/input/by-id/...)")
    timeout_seconds: float = opt(15.0, "time for each prompt (PIN, purpose, carry-in)", lo=3,
                                 hi=120)  # fmt: skip
    door: str = ""  # the door whose prompts it answers (its table name)


class SitePolicy(Protocol):
    """What the core reads of a configuration (the device's ``Config`` is one)."""

    @property
    def areas(self) -> dict[str, AreaConfig]: ...
    @property
    def doors(self) -> dict[str, DoorConfig]: ...
    @property
    def cabinets(self) -> dict[str, CabinetConfig]: ...
    @property
    def keypads(self) -> dict[str, KeypadConfig]: ...
    @property
    def policy(self) -> PolicyConfig: ...
    @property
    def clock(self) -> ClockConfig: ...
    @property
    def calendar(self) -> CalendarConfig: ...


# -- the access list ----------------------------------------------------------------------
def parse_window(text: str) -> tuple[frozenset[int], int, int]:
    """``"mon-fri 08:00-20:00"`` -> (weekdays 0=Mon.., start minute, end minute).
    ``hol`` among the days (never in a range) is :data:`HOL`: the window applies on
    closed days too; without it, a closed day closes the window (edged.core.calendar)."""
    m = _WINDOW.match(text.strip().lower())
    if not m:
        raise ValueError(f"time window {text!r} is not like 'mon-fri 08:00-20:00'")
    days: set[int] = set()
    for part in m["days"].split(","):
        if part == "hol":
            days.add(HOL)
            continue
        a, _, b = part.partition("-")
        if a not in _DAYS or (b and b not in _DAYS):
            raise ValueError(f"time window {text!r}: unknown day in {part!r}")
        i, j = _DAYS.index(a), _DAYS.index(b or a)
        days.update(range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)])
    start = int(m["f"]) * 60 + int(m["fm"])
    end = int(m["t"]) * 60 + int(m["tm"])
    if not (0 <= start < end <= 24 * 60) or int(m["fm"]) > 59 or int(m["tm"]) > 59:
        raise ValueError(f"time window {text!r}: times must be 00:00-24:00 with start < end")
    return frozenset(days), start, end


@dataclass(frozen=True)
class Person:
    """One entry of the stored list."""

    id: str
    name: str
    role: str
    cards: tuple[str, ...]
    areas: frozenset[str]
    valid_from: dt.date
    valid_until: dt.date
    windows: tuple[str, ...] = ()
    escort: bool = False
    pin: str | None = None  # scrypt hash
    cabinets: frozenset[str] = frozenset()  # the cabinets this person may open (R17)
    approves_carry_out: bool = False  # may approve taking media or terminals out (R18)
    approver: str | None = None  # 確認者: the id of who answers for this person's entries
    company: str | None = None  # a visitor's company
    host: str | None = None  # the id of the person a visitor comes to see
    pin_issued: dt.date | None = None  # when the list's PIN was issued (R19)
    pin_expires: dt.date | None = None  # after this day it opens nothing
    pin_initial: bool = False  # issued by the administrator: changed at the door first

    def in_window(self, weekday: int, minute: int, *, closed: bool = False) -> bool:
        """Whether a window lets the person in at this weekday and minute; on a closed
        day only windows that name ``hol``."""
        if not self.windows:
            return True
        for w in self.windows:
            days, start, end = parse_window(w)
            if (HOL if closed else weekday) in days and start <= minute < end:
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "role": self.role,
            "cards": list(self.cards),
            "areas": sorted(self.areas),
            "valid_from": self.valid_from.isoformat(),
            "valid_until": self.valid_until.isoformat(),
            "windows": list(self.windows),
            "escort": self.escort,
            "pin": self.pin,
            # Only when set: lists from before custodians keep their canonical form.
            **({"cabinets": sorted(self.cabinets)} if self.cabinets else {}),
            **({"approves_carry_out": True} if self.approves_carry_out else {}),
            **{
                k: v
                for k, v in (
                    ("approver", self.approver),
                    ("company", self.company),
                    ("host", self.host),
                )
                if v is not None
            },
            **{
                k: v.isoformat()
                for k, v in (("pin_issued", self.pin_issued), ("pin_expires", self.pin_expires))
                if v is not None
            },
            **({"pin_initial": True} if self.pin_initial else {}),
        }


@dataclass(frozen=True)
class AccessList:
    """A validated, versioned access list."""

    version: int
    site: str
    card_key: str  # which fingerprint secret the card fingerprints were made with
    people: dict[str, Person] = field(default_factory=dict)

    def __post_init__(self) -> None:
        index: dict[str, Person] = {}
        for p in self.people.values():
            for c in p.cards:
                index[c] = p
        object.__setattr__(self, "_by_card", index)

    def by_card(self, fingerprint: str) -> Person | None:
        return self._by_card.get(fingerprint)  # type: ignore[attr-defined]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": self.version,
            "site": self.site,
            "card_key": self.card_key,
            "people": [self.people[k].to_json() for k in sorted(self.people)],
        }

    def canonical(self) -> bytes:
        return canonical_bytes(self.to_json())

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()

    def expiring(self, today: dt.date, days: int = 30) -> list[Person]:
        """People whose rights end within ``days`` (and have not ended yet)."""
        horizon = today + dt.timedelta(days=days)
        return sorted(
            (p for p in self.people.values() if today <= p.valid_until <= horizon),
            key=lambda p: (p.valid_until, p.id),
        )


# -- validation -------------------------------------------------------------------------
def person_error(src: str, where: str, reason: str) -> ConfigError:
    return ConfigError(f"{src}: {where}: {reason}")


def check_id(src: str, where: str, pid: Any) -> str:
    if not isinstance(pid, str) or not _ID.match(pid):
        raise person_error(src, f"{where}.id", "must be 1-32 of A-Z a-z 0-9 _ . -")
    if is_individual_number(pid.replace("-", "")) or contains_individual_number(pid):
        raise person_error(
            src, f"{where}.id", "looks like an Individual Number (個人番号); use a staff number"
        )
    return pid


def parse_date(src: str, where: str, v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            pass
    raise person_error(src, where, f"expected a date YYYY-MM-DD, got {v!r}")


PERSON_KEYS = frozenset({
    "id", "name", "role", "cards", "areas", "valid_from", "valid_until", "windows", "escort",
    "pin", "cabinets", "approves_carry_out", "approver", "company", "host", "pin_issued",
    "pin_expires", "pin_initial",
})  # fmt: skip


def validate_person(
    src: str,
    where: str,
    raw: dict[str, Any],
    areas: set[str] | None,
    *,
    stored: bool,
    cabinets: set[str] | None = None,
) -> Person:
    """One person from a stored list (fingerprints, hashes) or, with ``stored=False``, the
    already-converted admin record. Errors name the source, the entry and the field."""
    pid = check_id(src, where, raw.get("id"))
    where = f"{where}[{pid}]"
    extra = sorted(set(raw) - PERSON_KEYS)
    if extra:
        raise person_error(src, f"{where}.{extra[0]}", "unknown key")
    name, role, company = _who(src, where, raw)
    cards, person_areas = _cards_and_areas(src, where, raw, areas, stored=stored)
    vf, vu, windows = _when(src, where, raw)
    escort, person_cabinets, approves, refs = _duties(src, where, raw, pid, role, cabinets)
    pin, issued, expires, initial = _pin(src, where, raw)
    return Person(
        pid, name, role, cards, person_areas, vf, vu, windows, escort, pin, person_cabinets,
        approves, refs["approver"], company, refs["host"], issued, expires, initial,
    )  # fmt: skip


def _text(src: str, where: str, v: Any) -> str:
    if not isinstance(v, str) or not 1 <= len(v) <= 64:
        raise person_error(src, where, "must be a string of 1..64 characters")
    if contains_individual_number(v):
        raise person_error(src, where, "looks like it holds an Individual Number")
    return v


def _who(src: str, where: str, raw: dict[str, Any]) -> tuple[str, str, str | None]:
    """Name, role, and a visitor's company: never an Individual Number (R20)."""
    name = _text(src, f"{where}.name", raw.get("name"))
    role = raw.get("role", "staff")
    if role not in ROLES:
        raise person_error(src, f"{where}.role", f"must be one of {list(ROLES)}")
    company = raw.get("company")
    if company is not None:
        company = _text(src, f"{where}.company", company)
    return name, role, company


def _strings(src: str, where: str, v: Any, what: str) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise person_error(src, where, f"must be a list of {what}")
    return v


def _cards_and_areas(
    src: str, where: str, raw: dict[str, Any], areas: set[str] | None, *, stored: bool
) -> tuple[tuple[str, ...], frozenset[str]]:
    cards = _strings(src, f"{where}.cards", raw.get("cards", []), "strings")
    if stored and not all(c.startswith(CardFingerprinter.PREFIX) for c in cards):
        raise person_error(src, f"{where}.cards", "stored lists hold fingerprints only")
    person_areas = _strings(src, f"{where}.areas", raw.get("areas", []), "area names")
    unknown = sorted(set(person_areas) - areas) if areas is not None else []
    if unknown:
        raise person_error(src, f"{where}.areas", f"no area {unknown[0]!r} in the config")
    return tuple(cards), frozenset(person_areas)


def _when(
    src: str, where: str, raw: dict[str, Any]
) -> tuple[dt.date, dt.date, tuple[str, ...]]:
    """Valid from and until (renewed at least yearly), and the weekly windows."""
    vf = parse_date(src, f"{where}.valid_from", raw.get("valid_from"))
    vu = parse_date(src, f"{where}.valid_until", raw.get("valid_until"))
    if vu < vf:
        raise person_error(src, f"{where}.valid_until", "is before valid_from")
    if (vu - vf).days > MAX_SPAN_DAYS:
        raise person_error(
            src,
            f"{where}.valid_until",
            f"more than {MAX_SPAN_DAYS} days after valid_from: every right must"
            " be renewed at least yearly",
        )
    windows = raw.get("windows", [])
    if not isinstance(windows, list):
        raise person_error(src, f"{where}.windows", "must be a list like ['mon-fri 08:00-20:00']")
    for w in windows:
        try:
            parse_window(w if isinstance(w, str) else "")
        except ValueError as e:
            raise person_error(src, f"{where}.windows", str(e)) from None
    return vf, vu, tuple(windows)


def _flag(src: str, where: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise person_error(src, where, "must be true or false")
    return v


def _duties(
    src: str, where: str, raw: dict[str, Any], pid: str, role: str, cabinets: set[str] | None
) -> tuple[bool, frozenset[str], bool, dict[str, str | None]]:
    """What a person answers for: escorting, cabinets, approving carry-out (never a
    visitor), and who approves their entries or hosts them (never themself)."""
    visitor = role == "visitor"
    escort = _flag(src, f"{where}.escort", raw.get("escort", False))
    if escort and visitor:
        raise person_error(src, f"{where}.escort", "a visitor cannot escort")
    person_cabinets = _strings(src, f"{where}.cabinets", raw.get("cabinets", []),
                               "cabinet names")  # fmt: skip
    unknown = sorted(set(person_cabinets) - cabinets) if cabinets is not None else []
    if unknown:
        raise person_error(src, f"{where}.cabinets", f"no cabinet {unknown[0]!r} in the config")
    if person_cabinets and visitor:
        raise person_error(src, f"{where}.cabinets", "a visitor cannot be a cabinet's custodian")
    approves = _flag(src, f"{where}.approves_carry_out", raw.get("approves_carry_out", False))
    if approves and visitor:
        raise person_error(src, f"{where}.approves_carry_out", "a visitor cannot approve")
    refs: dict[str, str | None] = {}
    for key in ("approver", "host"):
        v = raw.get(key)
        if v is not None:
            check_id(src, f"{where}.{key}", v)
            if v == pid:
                raise person_error(src, f"{where}.{key}", "cannot be the person themself")
        refs[key] = v
    return escort, frozenset(person_cabinets), approves, refs


def _pin(
    src: str, where: str, raw: dict[str, Any]
) -> tuple[str | None, dt.date | None, dt.date | None, bool]:
    """The PIN's hash (peppered only) and its life: issued, expires, initial (R19)."""
    pin = raw.get("pin")
    if pin is not None and (not isinstance(pin, str) or not pin.startswith(PIN_SCHEME + "$")):
        if isinstance(pin, str) and pin.startswith("scrypt$"):
            raise person_error(
                src,
                f"{where}.pin",
                "an unpeppered PIN hash (made before edged 0.2) can be guessed offline;"
                " import the administrator's list again",
            )
        raise person_error(src, f"{where}.pin", "stored lists hold PIN hashes only")
    life: dict[str, dt.date | None] = {}
    for key in ("pin_issued", "pin_expires"):
        v = raw.get(key)
        life[key] = None if v is None else parse_date(src, f"{where}.{key}", v)
        if v is not None and pin is None:
            raise person_error(src, f"{where}.{key}", "only a person with a PIN has one")
    issued, expires = life["pin_issued"], life["pin_expires"]
    if issued and expires and expires < issued:
        raise person_error(src, f"{where}.pin_expires", "is before pin_issued")
    initial = _flag(src, f"{where}.pin_initial", raw.get("pin_initial", False))
    return pin, issued, expires, initial


def check_references(src: str, people: dict[str, Person]) -> None:
    """Each approver and host names a person of the same list."""
    for i, p in enumerate(people.values()):
        for key, ref in (("approver", p.approver), ("host", p.host)):
            if ref is not None and ref not in people:
                raise ConfigError(
                    f"{src}: people[{i}][{p.id}].{key}: no person {ref!r} in the list"
                )


def parse_stored(
    data: bytes,
    src: str,
    areas: set[str] | None = None,
    *,
    max_bytes: int = 1 << 20,
    cabinets: set[str] | None = None,
) -> AccessList:
    """Validate a stored (fingerprinted) list; raises ConfigError naming src/field/reason."""
    if len(data) > max_bytes:
        raise ConfigError(f"{src}: access list larger than {max_bytes} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{src}: not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ConfigError(f"{src}: format: not an {FORMAT} document")
    extra = sorted(set(doc) - {"format", "version", "site", "card_key", "people"})
    if extra:
        raise ConfigError(f"{src}: {extra[0]}: unknown key")
    version = doc.get("version")
    if type(version) is not int or version < 1:
        raise ConfigError(f"{src}: version: must be a positive integer")
    site, card_key = doc.get("site"), doc.get("card_key")
    if not isinstance(site, str) or not isinstance(card_key, str):
        raise ConfigError(f"{src}: site/card_key: must be strings")
    people_raw = doc.get("people")
    if not isinstance(people_raw, list):
        raise ConfigError(f"{src}: people: must be a list")
    people: dict[str, Person] = {}
    seen_cards: dict[str, str] = {}
    for i, raw in enumerate(people_raw):
        if not isinstance(raw, dict):
            raise ConfigError(f"{src}: people[{i}]: must be an object")
        p = validate_person(src, f"people[{i}]", raw, areas, stored=True, cabinets=cabinets)
        if p.id in people:
            raise ConfigError(f"{src}: people[{i}].id: duplicate id {p.id!r}")
        for c in p.cards:
            if c in seen_cards:
                raise ConfigError(
                    f"{src}: people[{i}][{p.id}].cards: a card is also listed for {seen_cards[c]!r}"
                )
            seen_cards[c] = p.id
        people[p.id] = p
    check_references(src, people)
    return AccessList(version, site, card_key, people)
