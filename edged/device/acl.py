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
import secrets
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from edged.core.policy import (
    PIN_SCHEME,
    AccessList,
    Person,
    check_id,
    check_references,
    parse_stored,
    person_error,
    validate_person,
)
from edged.device.paths import StatePaths
from edged.errors import ConfigError
from edged.protocol.privacy import CardFingerprinter

# scrypt: N=2^15, r=8 (32 MiB, ~65 ms here, a few hundred ms on a Pi 4). The parameters
# are stored with each hash so they can be raised without invalidating old ones.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
# A PIN hash is scrypt over HMAC-SHA256(pepper, PIN), the pepper derived from the card
# secret that only the enrolled devices and the administrator hold. A 4-digit PIN has
# 10,000 values: a slow hash alone only slows the guessing down (21 minutes on one core
# for a hash taken from the broker). Without the pepper there is nothing to guess against:
# not even the right PIN can be confirmed (R3, R19).


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


def pin_hasher(card_secret: bytes) -> Callable[[str], str]:
    """``hash_pin`` bound to this device's pepper: for a PIN changed at the door."""
    pepper = pin_pepper(card_secret)
    return lambda pin: hash_pin(pin, pepper)


# -- PINs changed at this door (R19) -------------------------------------------------------
# They stay on this device, as peppered scrypt hashes in a 0600 file: nothing of them is
# published, and the access list from the administrator never carries them. A person with
# several doors changes the initial PIN at each (docs/install.md says so).
def load_local_pins(state_dir: Path) -> dict[str, Any]:
    """person -> LocalPin, from the state directory (empty when none was changed)."""
    from edged.core.state import LocalPin

    path = StatePaths(Path(state_dir)).local_pins
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: not readable as JSON ({e})") from None
    out = {}
    for pid, v in doc.items() if isinstance(doc, dict) else []:
        try:
            out[pid] = LocalPin(
                str(v["hash"]),
                dt.date.fromisoformat(v["set_on"]),
                dt.date.fromisoformat(v["expires"]),
            )
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: {pid}: needs hash, set_on and expires") from None
    return out


def save_local_pin(state_dir: Path, person: str, h: str, set_on: str, expires: str) -> None:
    """Add or replace one person's changed PIN: write, fsync, rename (never half a file)."""
    path = StatePaths(Path(state_dir)).local_pins
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        doc = {}
    doc[person] = {"hash": h, "set_on": set_on, "expires": expires}
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(doc, sort_keys=True).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- the administrator's file --------------------------------------------------------------
def _admin_text(path: Path) -> str:
    """The list's text; ``-`` is standard input (the service user cannot read a file in the
    administrator's home: ``runuser -u edged -- edged acl import - < staff.toml``)."""
    try:
        if str(path) == "-":
            return sys.stdin.buffer.read().decode("utf-8-sig")
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read ({e})") from None


def _read_admin_rows(path: Path, fmt: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    text = _admin_text(path)
    if (fmt or ("csv" if path.suffix.lower() == ".csv" else "toml")) == "csv":
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
    cabinets: set[str] | None = None,
    fmt: str | None = None,
) -> AccessList:
    """Read an administrator's TOML/CSV list and convert raw secrets on the spot
    (``fmt``: "toml" or "csv"; default from the file's name, TOML for standard input).

    Card ids become fingerprints and PINs scrypt hashes; the raw values exist only in this
    function's locals and are never written or logged. Errors name file, entry, field.
    """
    src = str(path)
    people: dict[str, Person] = {}
    seen: dict[str, str] = {}
    for where, raw in _read_admin_rows(Path(path), fmt):
        if not isinstance(raw, dict):
            raise ConfigError(f"{src}: {where}: must be a table")
        rec = dict(raw)
        pid = check_id(src, where, rec.get("id"))
        cards = rec.get("cards", [])
        if isinstance(cards, str):
            cards = [cards]
        if not isinstance(cards, list):
            raise person_error(src, f"{where}[{pid}].cards", "must be a list of hex card ids")
        fps = []
        for c in cards:
            field = f"{where}[{pid}].cards"
            # A PIV card is listed by its Card Authentication public key (public: the
            # list still holds nothing that makes a card); others by their number.
            uid = (
                _piv_key(src, field, str(c))
                if str(c).startswith(PIV_PREFIX)
                else _card_id(src, field, c)
            )
            fp = fingerprinter.fingerprint(uid)
            if fp in seen:
                raise person_error(src, field, f"a card is also listed for {seen[fp]!r}")
            seen[fp] = pid
            fps.append(fp)
        rec["cards"] = fps
        pin = rec.get("pin")
        if pin is not None:
            pin = str(pin)
            if not (pin.isdigit() and 4 <= len(pin) <= 8):
                raise person_error(src, f"{where}[{pid}].pin", "must be 4 to 8 digits")
            rec["pin"] = hash_pin(pin, pin_pepper(fingerprinter.secret))
            # R19: a PIN has a life: issued today unless said, and (unless said) it ends
            # with the person's rights, which last at most a year.
            rec.setdefault("pin_issued", dt.date.today().isoformat())
            rec.setdefault("pin_expires", rec.get("valid_until"))
        p = validate_person(src, where, rec, areas, stored=True, cabinets=cabinets)
        if p.id in people:
            raise person_error(src, f"{where}.id", f"duplicate id {p.id!r}")
        people[p.id] = p
    check_references(src, people)
    return AccessList(version, site, fingerprinter.key_id, people)


# -- storage ------------------------------------------------------------------------------
def acl_path(state_dir: Path) -> Path:
    return StatePaths(Path(state_dir)).access_list


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


PIV_PREFIX = "piv:"


def _card_id(src: str, where: str, c: Any) -> bytes:
    """A card number in hex (separators allowed), of a length cards have."""
    clean = str(c).replace(":", "").replace(" ", "").replace("-", "")
    try:
        uid = bytes.fromhex(clean)
    except ValueError:
        raise person_error(src, where, "a card id is not hexadecimal") from None
    if len(uid) not in (4, 7, 8, 10):
        raise person_error(src, where, f"a card id has {len(uid)} bytes (4, 7, 8 or 10 expected)")
    return uid


def _piv_key(src: str, where: str, text: str) -> bytes:
    """The DER SubjectPublicKeyInfo of ``piv:BASE64``, checked to be a public key."""
    import base64
    import binascii

    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        der = base64.b64decode(text[len(PIV_PREFIX) :], validate=True)
        load_der_public_key(der)
    except (ValueError, binascii.Error):
        raise person_error(
            src, where, "a piv: card is the base64 of a public key (edged card enrol prints it)"
        ) from None
    return der
