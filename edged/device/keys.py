"""The device's own keys (R12): its enrolled identity (the Ed25519 key of epoch 0 and its
public half), the key store that holds the signing key in force (:mod:`edged.device.keystore`),
the card-fingerprint secret and the site's DESFire master key. File names are in
:mod:`edged.device.paths`; the rules every key file follows are in :mod:`edged.protocol.keys`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.device.keystore import FileKeyStore, KeyStore, MemoryKeyStore, erase
from edged.device.paths import (
    CARD_MASTER_FILE,
    CERTS_FILE,
    EPOCH_KEY_FILE,
    FINGERPRINT_SECRET_FILE,
    NEXT_KEY_FILE,
    PUBLIC_KEY_FILE,
    SIGNING_KEY_FILE,
)
from edged.errors import KeyFileError
from edged.protocol.keys import (
    check_private_file,
    fsync_dir,
    key_id_of,
    load_private_key,
    load_public_key,
    public_key_pem,
    write_private,
    write_public,
)


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


def has_identity(state_dir: Path) -> bool:
    """The device was given its keys: the identity's private half until the first epoch
    change erases it, its public half (the enrolled identity) for good. Asking only for
    the private half refused every start after day one."""
    sk_path, pk_path, _fp = key_paths(state_dir)
    return sk_path.exists() or pk_path.exists()


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
    for name in (EPOCH_KEY_FILE, NEXT_KEY_FILE):
        erase(state_dir / name)  # a new identity starts at epoch 0
    (state_dir / CERTS_FILE).unlink(missing_ok=True)
    keys = DeviceKeys.generate()
    write_private(
        sk_path,
        keys.store.current().private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    write_private(fp_path, keys.fingerprint_secret.hex().encode("ascii") + b"\n")
    write_public(pk_path, public_key_pem(keys.public_key))
    fsync_dir(state_dir)
    return keys


def load_keys(state_dir: Path) -> DeviceKeys:
    """Load the device's identity and its key store, refusing secret files others can
    read. The identity's private half is gone after the first epoch change: the public
    half in ``device_ed25519.pub`` is the identity from then on."""
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
            write_public(pk_path, public_key_pem(pk))
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


def init_card_master(directory: Path, *, force: bool = False) -> Path:
    """The site's DESFire master key (AES-128, hex, 0600): every door of the site and
    the enrolment station hold the same one; each card's key is derived from it (AN10922)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = directory / CARD_MASTER_FILE
    if path.exists() and not force:
        raise KeyFileError(f"{path}: exists already; refusing to overwrite (use --force)")
    path.unlink(missing_ok=True)
    write_private(path, secrets.token_bytes(16).hex().encode("ascii") + b"\n")
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
