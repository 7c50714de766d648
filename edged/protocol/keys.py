"""Key files as every role keeps them (R12): Ed25519 keys in PEM, secrets 0600 in a 0700
directory, public halves 0644. Loading refuses a secret file that anyone but its owner can
read: a key others could copy cannot vouch for anything.

The administrator's and the collector's keys are made here (:func:`init_role_key`); the
device's identity, its epoch keys and its card secrets are the device's own
(:mod:`edged.device.keys`, :mod:`edged.device.keystore`), so this module knows nothing of
them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edged.errors import KeyFileError


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


def write_private(path: Path, data: bytes) -> None:
    # O_EXCL + mode at creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_public(path: Path, pem: str) -> None:
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
    write_private(
        sk_path,
        sk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_public(pk_path, public_key_pem(sk.public_key()))
    return sk
