"""The access list: who may enter which area, when, with which card and PIN (R1-R5).

Two forms:

- the **administrator's file** (TOML or CSV) with raw card ids and PINs, read once by
  ``edged acl import`` and never stored;
- the **stored list** (canonical JSON, ``acl.json`` in the state directory, 0600) with
  card fingerprints and scrypt PIN hashes only, replaced atomically.

Every right expires within 366 days of its start, so each is renewed at least yearly
(R5: one office deletes every ID once a year and reissues).
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import hmac
import io
import json
import os
import re
import secrets
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from edged.canonical import canonical_bytes
from edged.errors import ConfigError
from edged.privacy import CardFingerprinter, contains_individual_number, is_individual_number

FORMAT = "edged-acl/1"
ROLES = ("staff", "visitor", "admin")
MAX_SPAN_DAYS = 366
ACL_FILE = "acl.json"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")
_WINDOW = re.compile(
    r"^(?P<days>[a-z,-]+)\s+(?P<f>\d{2}):(?P<fm>\d{2})-(?P<t>\d{2}):(?P<tm>\d{2})$"
)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

# scrypt: N=2^15, r=8 (32 MiB, ~65 ms here, a few hundred ms on a Pi 4). The parameters
# are stored with each hash so they can be raised without invalidating old ones.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# A PIN hash is scrypt over HMAC-SHA256(pepper, PIN), the pepper derived from the card
# secret that only the enrolled devices and the administrator hold. A 4-digit PIN has
# 10,000 values: a slow hash alone only slows the guessing down (21 minutes on one core
# for a hash taken from the broker). Without the pepper there is nothing to guess against:
# not even the right PIN can be confirmed (R3, R19).
PIN_SCHEME = "scrypt+hmac"


def pin_pepper(card_secret: bytes) -> bytes:
    """The PIN pepper of a card secret (a separate key from the card fingerprints')."""
    return hmac.new(card_secret, b"edged/pin-pepper/v1", hashlib.sha256).digest()


def _pin_key(pin: str, pepper: bytes, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    peppered = hmac.new(pepper, pin.encode(), hashlib.sha256).digest()
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(peppered)


def hash_pin(pin: str, pepper: bytes) -> str:
    """Slow, salted, peppered hash of a PIN: ``scrypt+hmac$N$r$p$salt$hash`` (base64)."""
    salt = secrets.token_bytes(16)
    key = _pin_key(pin, pepper, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, 32)
    b64 = base64.b64encode
    return f"{PIN_SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def verify_pin(pin: str, stored: str, pepper: bytes) -> bool:
    """Constant-time check of a PIN against :func:`hash_pin` output; False for malformed."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != PIN_SCHEME or int(n) > 2**20 or int(r) > 32 or int(p) > 4:
            return False
        want = base64.b64decode(key)
        got = _pin_key(pin, pepper, base64.b64decode(salt), int(n), int(r), int(p), len(want))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def pin_checker(card_secret: bytes) -> Callable[[str, str], bool]:
    """``verify_pin`` bound to this device's pepper, for the core."""
    pepper = pin_pepper(card_secret)
    return lambda pin, stored: verify_pin(pin, stored, pepper)


def parse_window(text: str) -> tuple[frozenset[int], int, int]:
    """``"mon-fri 08:00-20:00"`` -> (weekdays 0=Mon.., start minute, end minute)."""
    m = _WINDOW.match(text.strip().lower())
    if not m:
        raise ValueError(f"time window {text!r} is not like 'mon-fri 08:00-20:00'")
    days: set[int] = set()
    for part in m["days"].split(","):
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

    def in_window(self, weekday: int, minute: int) -> bool:
        if not self.windows:
            return True
        for w in self.windows:
            days, start, end = parse_window(w)
            if weekday in days and start <= minute < end:
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
def _person_error(src: str, where: str, reason: str) -> ConfigError:
    return ConfigError(f"{src}: {where}: {reason}")


def _check_id(src: str, where: str, pid: Any) -> str:
    if not isinstance(pid, str) or not _ID.match(pid):
        raise _person_error(src, f"{where}.id", "must be 1-32 of A-Z a-z 0-9 _ . -")
    if is_individual_number(pid.replace("-", "")) or contains_individual_number(pid):
        raise _person_error(
            src, f"{where}.id", "looks like an Individual Number (個人番号); use a staff number"
        )
    return pid


def _date(src: str, where: str, v: Any) -> dt.date:
    if isinstance(v, dt.datetime):
        return v.date()
    if isinstance(v, dt.date):
        return v
    if isinstance(v, str):
        try:
            return dt.date.fromisoformat(v)
        except ValueError:
            pass
    raise _person_error(src, where, f"expected a date YYYY-MM-DD, got {v!r}")


def validate_person(
    src: str, where: str, raw: dict[str, Any], areas: set[str] | None, *, stored: bool
) -> Person:
    """One person from a stored list (fingerprints, hashes) or, with ``stored=False``, the
    already-converted admin record. Errors name the source, the entry and the field."""
    allowed = {
        "id",
        "name",
        "role",
        "cards",
        "areas",
        "valid_from",
        "valid_until",
        "windows",
        "escort",
        "pin",
    }
    pid = _check_id(src, where, raw.get("id"))
    where = f"{where}[{pid}]"
    extra = sorted(set(raw) - allowed)
    if extra:
        raise _person_error(src, f"{where}.{extra[0]}", "unknown key")
    name = raw.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 64:
        raise _person_error(src, f"{where}.name", "must be a string of 1..64 characters")
    if contains_individual_number(name):
        raise _person_error(src, f"{where}.name", "looks like it holds an Individual Number")
    role = raw.get("role", "staff")
    if role not in ROLES:
        raise _person_error(src, f"{where}.role", f"must be one of {list(ROLES)}")
    cards = raw.get("cards", [])
    if not isinstance(cards, list) or not all(isinstance(c, str) for c in cards):
        raise _person_error(src, f"{where}.cards", "must be a list of strings")
    if stored and not all(c.startswith(CardFingerprinter.PREFIX) for c in cards):
        raise _person_error(src, f"{where}.cards", "stored lists hold fingerprints only")
    person_areas = raw.get("areas", [])
    if not isinstance(person_areas, list) or not all(isinstance(a, str) for a in person_areas):
        raise _person_error(src, f"{where}.areas", "must be a list of area names")
    if areas is not None:
        unknown = sorted(set(person_areas) - areas)
        if unknown:
            raise _person_error(src, f"{where}.areas", f"no area {unknown[0]!r} in the config")
    vf = _date(src, f"{where}.valid_from", raw.get("valid_from"))
    vu = _date(src, f"{where}.valid_until", raw.get("valid_until"))
    if vu < vf:
        raise _person_error(src, f"{where}.valid_until", "is before valid_from")
    if (vu - vf).days > MAX_SPAN_DAYS:
        raise _person_error(
            src,
            f"{where}.valid_until",
            f"more than {MAX_SPAN_DAYS} days after valid_from: every right must"
            " be renewed at least yearly",
        )
    windows = raw.get("windows", [])
    if not isinstance(windows, list):
        raise _person_error(src, f"{where}.windows", "must be a list like ['mon-fri 08:00-20:00']")
    for w in windows:
        try:
            parse_window(w if isinstance(w, str) else "")
        except ValueError as e:
            raise _person_error(src, f"{where}.windows", str(e)) from None
    escort = raw.get("escort", False)
    if not isinstance(escort, bool):
        raise _person_error(src, f"{where}.escort", "must be true or false")
    if escort and role == "visitor":
        raise _person_error(src, f"{where}.escort", "a visitor cannot escort")
    pin = raw.get("pin")
    if pin is not None and (not isinstance(pin, str) or not pin.startswith(PIN_SCHEME + "$")):
        if isinstance(pin, str) and pin.startswith("scrypt$"):
            raise _person_error(
                src,
                f"{where}.pin",
                "an unpeppered PIN hash (made before edged 0.2) can be guessed offline;"
                " import the administrator's list again",
            )
        raise _person_error(src, f"{where}.pin", "stored lists hold PIN hashes only")
    return Person(
        pid, name, role, tuple(cards), frozenset(person_areas), vf, vu, tuple(windows), escort, pin
    )


def parse_stored(
    data: bytes, src: str, areas: set[str] | None = None, *, max_bytes: int = 1 << 20
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
        p = validate_person(src, f"people[{i}]", raw, areas, stored=True)
        if p.id in people:
            raise ConfigError(f"{src}: people[{i}].id: duplicate id {p.id!r}")
        for c in p.cards:
            if c in seen_cards:
                raise ConfigError(
                    f"{src}: people[{i}][{p.id}].cards: a card is also listed for {seen_cards[c]!r}"
                )
            seen_cards[c] = p.id
        people[p.id] = p
    return AccessList(version, site, card_key, people)


# -- the administrator's file --------------------------------------------------------------
def _read_admin_rows(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None
    if path.suffix.lower() == ".csv":
        rows = []
        reader = csv.DictReader(io.StringIO(text))
        need = {"id", "name", "role", "cards", "areas", "valid_from", "valid_until"}
        missing = need - set(reader.fieldnames or [])
        if missing:
            raise ConfigError(f"{path}: header: missing column(s) {sorted(missing)}")
        for n, r in enumerate(reader, start=2):
            if None in r:
                raise ConfigError(f"{path}: line {n}: more fields than the header has")
            rec: dict[str, Any] = {k: (v or "").strip() for k, v in r.items()}
            for key, sep in (("cards", None), ("areas", None), ("windows", ";")):
                rec[key] = [x.strip() for x in (rec.get(key) or "").split(sep) if x.strip()]
            esc = str(rec.get("escort", "")).lower()
            if esc not in ("", "yes", "no", "true", "false", "1", "0"):
                raise ConfigError(f"{path}: line {n}: escort: use yes or no")
            rec["escort"] = esc in ("yes", "true", "1")
            if not rec.get("pin"):
                rec.pop("pin", None)
            rows.append((f"line {n}", rec))
        return rows
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    extra = sorted(set(doc) - {"people"})
    if extra:
        raise ConfigError(f"{path}: {extra[0]}: unknown key")
    people = doc.get("people", [])
    if not isinstance(people, list):
        raise ConfigError(f"{path}: people: use [[people]] tables")
    return [(f"people[{i}]", p) for i, p in enumerate(people)]


def import_admin_file(
    path: Path,
    fingerprinter: CardFingerprinter,
    *,
    site: str,
    version: int,
    areas: set[str] | None = None,
) -> AccessList:
    """Read an administrator's TOML/CSV list and convert raw secrets on the spot.

    Card ids become fingerprints and PINs scrypt hashes; the raw values exist only in this
    function's locals and are never written or logged. Errors name file, entry, field.
    """
    src = str(path)
    people: dict[str, Person] = {}
    seen: dict[str, str] = {}
    for where, raw in _read_admin_rows(Path(path)):
        if not isinstance(raw, dict):
            raise ConfigError(f"{src}: {where}: must be a table")
        rec = dict(raw)
        pid = _check_id(src, where, rec.get("id"))
        cards = rec.get("cards", [])
        if isinstance(cards, str):
            cards = [cards]
        if not isinstance(cards, list):
            raise _person_error(src, f"{where}[{pid}].cards", "must be a list of hex card ids")
        fps = []
        for c in cards:
            clean = str(c).replace(":", "").replace(" ", "").replace("-", "")
            try:
                uid = bytes.fromhex(clean)
            except ValueError:
                raise _person_error(
                    src, f"{where}[{pid}].cards", "a card id is not hexadecimal"
                ) from None
            if len(uid) not in (4, 7, 8, 10):
                raise _person_error(
                    src,
                    f"{where}[{pid}].cards",
                    f"a card id has {len(uid)} bytes (4, 7, 8 or 10 expected)",
                )
            fp = fingerprinter.fingerprint(uid)
            if fp in seen:
                raise _person_error(
                    src, f"{where}[{pid}].cards", f"a card is also listed for {seen[fp]!r}"
                )
            seen[fp] = pid
            fps.append(fp)
        rec["cards"] = fps
        pin = rec.get("pin")
        if pin is not None:
            pin = str(pin)
            if not (pin.isdigit() and 4 <= len(pin) <= 8):
                raise _person_error(src, f"{where}[{pid}].pin", "must be 4 to 8 digits")
            rec["pin"] = hash_pin(pin, pin_pepper(fingerprinter.secret))
        p = validate_person(src, where, rec, areas, stored=True)
        if p.id in people:
            raise _person_error(src, f"{where}.id", f"duplicate id {p.id!r}")
        people[p.id] = p
    return AccessList(version, site, fingerprinter.key_id, people)


# -- storage ------------------------------------------------------------------------------
def acl_path(state_dir: Path) -> Path:
    return Path(state_dir) / ACL_FILE


def load_active(state_dir: Path, areas: set[str] | None = None) -> AccessList | None:
    """The stored list, or None when none was ever imported."""
    path = acl_path(state_dir)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return parse_stored(data, str(path), areas)


def save_active(state_dir: Path, acl: AccessList) -> Path:
    """Replace the stored list atomically: write, fsync, rename, fsync the directory."""
    path = acl_path(state_dir)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, acl.canonical())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return path
