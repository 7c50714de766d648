"""Device keys: the Ed25519 signing key and the card-fingerprint secret (R12).

Files are 0600 in a 0700 directory. Loading refuses a key file that anyone but its
owner can read: a key others could copy cannot vouch for anything.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edged.errors import KeyFileError

if TYPE_CHECKING:
    from edged.device.keystore import KeyStore

SIGNING_KEY_FILE = "device_ed25519.key"
PUBLIC_KEY_FILE = "device_ed25519.pub"
FINGERPRINT_SECRET_FILE = "card_fingerprint.key"  # noqa: S105 (a file name)


def key_id_of(public_key: Ed25519PublicKey) -> str:
    """Short stable name of a public key: the first 16 hex digits of SHA-256 of its raw bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """PEM (SubjectPublicKeyInfo) text of a public key."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def check_private_file(path: Path) -> None:
    """Refuse a secret file that group or others may read or write, or that is not a file."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        raise KeyFileError(
            f"{path}: key file not found (create keys with: edged keys init)"
        ) from None
    except OSError as e:
        raise KeyFileError(f"{path}: cannot read key file ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file (symlinks are refused for key files)")
    if st.st_mode & 0o077:
        raise KeyFileError(
            f"{path}: key file is accessible to other users (mode {stat.S_IMODE(st.st_mode):04o});"
            f" fix with: chmod 600 {path}"
        )
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise KeyFileError(
            f"{path}: key file is owned by uid {st.st_uid}, not by this user ({os.getuid()});"
            f" fix with: chown $(id -un) {path}"
        )


def _write_private(path: Path, data: bytes) -> None:
    # O_EXCL + mode at creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_public(path: Path, pem: str) -> None:
    # Synced like the private half: the identity is what the journal is bound to, and a
    # power cut (or a card going read-only) must not leave an empty .pub behind.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, pem.encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(path, 0o644)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read a PEM Ed25519 public key, with an error naming the file."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except FileNotFoundError:
        raise KeyFileError(f"{path}: public key file not found") from None
    except (ValueError, OSError) as e:
        raise KeyFileError(f"{path}: not a PEM public key ({e})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key after checking its permissions."""
    check_private_file(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError, OSError) as e:
        raise KeyFileError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    return key


@dataclass(frozen=True)
class DeviceKeys:
    """The device's enrolled identity (public key and id), the key store that holds the
    signing key of the epoch in force (edged.device.keystore), and the card-fingerprint
    secret."""

    public_key: Ed25519PublicKey
    key_id: str
    fingerprint_secret: bytes
    store: KeyStore

    def sign(self, digest: bytes) -> bytes:
        """Signed with the key in force (epoch 0's is the identity key)."""
        return self.store.current().sign(digest)

    def __repr__(self) -> str:
        return f"DeviceKeys(key_id={self.key_id!r})"

    @classmethod
    def generate(cls) -> DeviceKeys:
        """Fresh keys in memory (tests, simulations); use :func:`init_keys` for files."""
        from edged.device.keystore import MemoryKeyStore

        sk = Ed25519PrivateKey.generate()
        pk = sk.public_key()
        return cls(pk, key_id_of(pk), secrets.token_bytes(32), MemoryKeyStore(sk))


def key_paths(state_dir: Path) -> tuple[Path, Path, Path]:
    """(signing key, public key, fingerprint secret) paths in a state directory."""
    return (
        state_dir / SIGNING_KEY_FILE,
        state_dir / PUBLIC_KEY_FILE,
        state_dir / FINGERPRINT_SECRET_FILE,
    )


def init_keys(state_dir: Path, *, force: bool = False) -> DeviceKeys:
    """Create the device keys in ``state_dir`` (made 0700); refuse to overwrite unless forced."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)
    sk_path, pk_path, fp_path = key_paths(state_dir)
    existing = [p for p in (sk_path, pk_path, fp_path) if p.exists()]
    if existing and not force:
        names = ", ".join(str(p) for p in existing)
        raise KeyFileError(
            f"{names}: keys exist already; refusing to overwrite them (records signed with"
            " them could no longer be attributed). Use --force to replace them."
        )
    for p in existing:
        p.unlink()
    from edged.device.keystore import CERTS_FILE, EPOCH_KEY_FILE, NEXT_KEY_FILE, erase

    for name in (EPOCH_KEY_FILE, NEXT_KEY_FILE):
        erase(state_dir / name)  # a new identity starts at epoch 0
    (state_dir / CERTS_FILE).unlink(missing_ok=True)
    keys = DeviceKeys.generate()
    _write_private(
        sk_path,
        keys.store.current().private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_private(fp_path, keys.fingerprint_secret.hex().encode("ascii") + b"\n")
    _write_public(pk_path, public_key_pem(keys.public_key))
    fsync_dir(state_dir)
    return keys


def load_keys(state_dir: Path) -> DeviceKeys:
    """Load the device's identity and its key store, refusing secret files others can
    read. The identity's private half is gone after the first epoch change: the public
    half in ``device_ed25519.pub`` is the identity from then on."""
    from edged.device.keystore import FileKeyStore

    sk_path, pk_path, fp_path = key_paths(state_dir)
    store = FileKeyStore(state_dir, sk_path)
    if sk_path.exists() or not pk_path.exists():
        pk = load_private_key(sk_path).public_key()
        try:
            written = key_id_of(load_public_key(pk_path))
        except KeyFileError:
            # Missing or torn (a card that failed before it was synced): the identity's
            # private half is still here, so the public half is written again from it,
            # before the first epoch change erases the private half.
            _write_public(pk_path, public_key_pem(pk))
            written = key_id_of(pk)
        if written != key_id_of(pk):
            raise KeyFileError(f"{pk_path}: is not the public half of {sk_path}")
    else:
        pk = load_public_key(pk_path)
        store.current()  # the key in force must be there: say so now, not at the first record
    check_private_file(fp_path)
    try:
        secret = bytes.fromhex(fp_path.read_text().strip())
    except (ValueError, OSError) as e:
        raise KeyFileError(f"{fp_path}: fingerprint secret is not hex ({e})") from None
    if len(secret) < 32:
        raise KeyFileError(f"{fp_path}: fingerprint secret shorter than 32 bytes")
    return DeviceKeys(pk, key_id_of(pk), secret, store)


CARD_MASTER_FILE = "card_master.key"


def init_card_master(directory: Path, *, force: bool = False) -> Path:
    """The site's DESFire master key (AES-128, hex, 0600): every door of the site and
    the enrolment station hold the same one; each card's key is derived from it (AN10922)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / CARD_MASTER_FILE
    if path.exists() and not force:
        raise KeyFileError(f"{path}: exists already; refusing to overwrite (use --force)")
    path.unlink(missing_ok=True)
    _write_private(path, secrets.token_bytes(16).hex().encode("ascii") + b"\n")
    return path


def load_card_master(path: Path) -> bytes:
    """The site's DESFire master key, refusing a file others can read."""
    check_private_file(path)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except (ValueError, OSError) as e:
        raise KeyFileError(f"{path}: card master key is not hex ({e})") from None
    if len(key) != 16:
        raise KeyFileError(f"{path}: card master key must be 16 bytes (32 hex digits)")
    return key


def init_role_key(directory: Path, role: str, *, force: bool = False) -> Ed25519PrivateKey:
    """An administrator's or collector's signing key: ``{role}_ed25519.key`` (0600) and ``.pub``.

    Devices pin the public halves in their config (``sync.admin_pubkey``,
    ``sync.collector_pubkey``) and accept inbound messages only with those signatures.
    """
    if role not in ("admin", "collector"):
        raise KeyFileError(f"unknown key role {role!r}")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    sk_path, pk_path = directory / f"{role}_ed25519.key", directory / f"{role}_ed25519.pub"
    if (sk_path.exists() or pk_path.exists()) and not force:
        raise KeyFileError(f"{sk_path}: exists already; refusing to overwrite (use --force)")
    for p in (sk_path, pk_path):
        if p.exists():
            p.unlink()
    sk = Ed25519PrivateKey.generate()
    _write_private(
        sk_path,
        sk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    _write_public(pk_path, public_key_pem(sk.public_key()))
    return sk
