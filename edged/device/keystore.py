"""Where the device's signing keys live: the key of the epoch in force, the next one
while an epoch change is being committed, and the certificates that link them to the
enrolled identity (issue 17, docs/proofs.md).

The journal needs four things of a key store, :class:`KeyStore`: the key in force
(:meth:`~KeyStore.current`), a next key made and kept durably but not yet used
(:meth:`~KeyStore.prepare`), making it the key in force and erasing its predecessor once
the certificate is committed (:meth:`~KeyStore.commit`), and the certificates so far
(:meth:`~KeyStore.certs`). :class:`FileKeyStore` keeps them as files in the state
directory; a secure element (ATECC608, a TPM) would keep the private halves inside the
chip and plug in here. :class:`MemoryKeyStore` is for tests and simulations.

Files (all 0600 but the public key):
- ``device_ed25519.key``: the identity key, epoch 0's; erased when epoch 1 begins;
- ``device_ed25519.pub``: its public half, the device's enrolled identity;
- ``epoch_ed25519.key``: the key in force from epoch 1 on (epoch number and raw key);
- ``epoch_ed25519.next``: the next key, between prepare and commit;
- ``epochs.jsonl``: every epoch certificate, one wire record a line (public).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edged.device.paths import CERTS_FILE, EPOCH_KEY_FILE, NEXT_KEY_FILE
from edged.errors import KeyFileError
from edged.protocol.keys import check_private_file, fsync_dir, load_private_key

_FORMAT = "edged-epoch-key/1"


@dataclass(frozen=True)
class EpochKey:
    """A signing key and the epoch it signs for."""

    epoch: int
    private: Ed25519PrivateKey

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def __repr__(self) -> str:
        return f"EpochKey(epoch={self.epoch})"


class KeyStore(Protocol):
    def current(self) -> EpochKey: ...
    def pending(self) -> EpochKey | None: ...
    def prepare(self, epoch: int) -> EpochKey: ...
    def commit(self, cert_wire: str) -> None: ...
    def discard(self) -> None: ...
    def certs(self) -> list[str]: ...


class MemoryKeyStore:
    """Keys in memory only (tests, simulations, benchmarks)."""

    def __init__(self, identity: Ed25519PrivateKey) -> None:
        self._current = EpochKey(0, identity)
        self._next: EpochKey | None = None
        self._certs: list[str] = []

    def current(self) -> EpochKey:
        return self._current

    def pending(self) -> EpochKey | None:
        return self._next

    def prepare(self, epoch: int) -> EpochKey:
        self._next = EpochKey(epoch, Ed25519PrivateKey.generate())
        return self._next

    def commit(self, cert_wire: str) -> None:
        if self._next is None:
            raise KeyFileError("no next key to put in force")
        if cert_wire not in self._certs:
            self._certs.append(cert_wire)
        self._current, self._next = self._next, None

    def discard(self) -> None:
        self._next = None

    def certs(self) -> list[str]:
        return list(self._certs)


def _raw_private(sk: Ed25519PrivateKey) -> bytes:
    return sk.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def _overwrite(path: Path) -> bool:
    """Overwrite a file in place with random bytes and sync it; False if there is none.
    A rename or unlink alone would leave the key's bytes in a freed block."""
    try:
        size = path.lstat().st_size
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    try:
        os.pwrite(fd, os.urandom(max(size, 1)), 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def erase(path: Path) -> None:
    """Overwrite a key file in place with random bytes, sync, and unlink it. On a plain
    disk the key's blocks are then gone; on an SD card or eMMC the flash translation
    layer may keep the old page until it is reused (docs/proofs.md says what that means)."""
    if _overwrite(path):
        path.unlink()
        fsync_dir(path.parent)


class FileKeyStore:
    """Epoch keys as files in the state directory (see the module's docstring)."""

    def __init__(self, state_dir: Path, identity_file: Path) -> None:
        self.dir = Path(state_dir)
        self.identity_file = identity_file
        self._current: EpochKey | None = None

    def _read(self, path: Path) -> EpochKey:
        check_private_file(path)
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != _FORMAT or type(doc.get("epoch")) is not int:
                raise ValueError("not an epoch key")
            sk = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(doc["key"]))
        except (ValueError, KeyError, TypeError, OSError, AttributeError) as e:
            raise KeyFileError(f"{path}: not an edged epoch key ({e})") from None
        return EpochKey(doc["epoch"], sk)

    def _write(self, path: Path, key: EpochKey) -> None:
        doc = {"format": _FORMAT, "epoch": key.epoch, "key": _raw_private(key.private).hex()}
        erase(path)  # a stale next key from a change that never committed
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, json.dumps(doc).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_dir(self.dir)

    def current(self) -> EpochKey:
        if self._current is None:
            path = self.dir / EPOCH_KEY_FILE
            if path.exists() or path.is_symlink():
                self._current = self._read(path)
            else:
                self._current = EpochKey(0, load_private_key(self.identity_file))
        return self._current

    def pending(self) -> EpochKey | None:
        path = self.dir / NEXT_KEY_FILE
        return self._read(path) if path.exists() else None

    def prepare(self, epoch: int) -> EpochKey:
        key = EpochKey(epoch, Ed25519PrivateKey.generate())
        self._write(self.dir / NEXT_KEY_FILE, key)
        return key

    def commit(self, cert_wire: str) -> None:
        """The next key in force: the certificate kept, the old key erased, the next key
        renamed into place. Each step is safe to repeat after a crash."""
        if cert_wire not in self.certs():
            with open(self.dir / CERTS_FILE, "a", encoding="utf-8") as f:
                f.write(cert_wire + "\n")
                f.flush()
                os.fsync(f.fileno())
        old = self.dir / EPOCH_KEY_FILE
        _overwrite(old)  # before the rename replaces it
        os.replace(self.dir / NEXT_KEY_FILE, old)
        fsync_dir(self.dir)
        erase(self.identity_file)  # epoch 0's key, once (a no-op later)
        self._current = None

    def discard(self) -> None:
        erase(self.dir / NEXT_KEY_FILE)

    def certs(self) -> list[str]:
        try:
            text = (self.dir / CERTS_FILE).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"{self.dir / CERTS_FILE}: unreadable ({e})") from None
        return [line for line in text.split("\n") if line.strip()]
