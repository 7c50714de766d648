"""Every file a device keeps in its state directory, named in one place.

The keys (``device_ed25519.key``/``.pub``, ``card_fingerprint.key``) are named in
:mod:`edged.protocol.keys`, since the admin and collector keys follow the same rules.
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
