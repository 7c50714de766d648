"""Every file a device keeps in its state directory, named in one place.

The head witness lives outside, in ``journal.witness_dir`` (:mod:`edged.device.journal.witness`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

JOURNAL = "journal.db"  # the signed, hash-chained records
SYNC_STATE = "sync.db"  # the last receipted seq and hash
ACCESS_LIST = "acl.json"  # the stored access list (fingerprints, PIN hashes), 0600
LOCAL_PINS = "pins.json"  # PINs changed at this door (hashes only), 0600; never sent
CONTROL_SOCKET = "control.sock"  # edged status / edged sim
PID = "edged.pid"
LOCK = "edged.lock"  # held (flock) by the one daemon that uses this state directory
SIM = "sim"  # simulated hardware's own files (vpcd config, pcscd)

# Keys (edged.device.keys, edged.device.keystore); all 0600 but the public key.
SIGNING_KEY_FILE = "device_ed25519.key"  # the identity, epoch 0's key; erased at epoch 1
PUBLIC_KEY_FILE = "device_ed25519.pub"  # its public half: the enrolled identity
FINGERPRINT_SECRET_FILE = "card_fingerprint.key"  # noqa: S105 (a file name)
EPOCH_KEY_FILE = "epoch_ed25519.key"  # the key in force from epoch 1 on
NEXT_KEY_FILE = "epoch_ed25519.next"  # the next key, between prepare and commit
CERTS_FILE = "epochs.jsonl"  # every epoch certificate (public)
CARD_MASTER_FILE = "card_master.key"  # the site's DESFire master key


@dataclass(frozen=True)
class StatePaths:
    """The files of one state directory."""

    root: Path

    @property
    def journal(self) -> Path:
        return self.root / JOURNAL

    @property
    def sync_state(self) -> Path:
        return self.root / SYNC_STATE

    @property
    def access_list(self) -> Path:
        return self.root / ACCESS_LIST

    @property
    def local_pins(self) -> Path:
        return self.root / LOCAL_PINS

    @property
    def control_socket(self) -> Path:
        return self.root / CONTROL_SOCKET

    @property
    def pid(self) -> Path:
        return self.root / PID

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    @property
    def sim(self) -> Path:
        return self.root / SIM
