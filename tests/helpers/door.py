"""A door's signing identity and its signed journal, and the central side that trusts it:
the set-up that the sync, collector, epoch, login and site-binding tests share."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.central.collector import Collector
from edged.clock import Clock, SystemClock
from edged.device.journal import Journal
from edged.device.keys import init_keys, load_keys
from edged.device.paths import PUBLIC_KEY_FILE
from edged.protocol.keys import init_role_key, load_private_key
from edged.protocol.mqtt import Broker

# The collector's key, where tests.helpers.central.CollectorProc looks for it.
COLLECTOR_KEY = Path("collector") / "collector_ed25519.key"


class SignedDoor:
    """Under ``tmp``: the door's state directory ``name`` with its keys (0600), its public
    key pinned in ``tmp/trust/SITE/DEVICE.pub``, and one collector key for all doors."""

    def __init__(self, tmp: Path, site: str, device: str, name: str = "state") -> None:
        self.tmp, self.site, self.device = tmp, site, device
        self.state = tmp / name
        init_keys(self.state)
        self.trust = tmp / "trust"
        (self.trust / site).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.state / PUBLIC_KEY_FILE, self.trust / site / f"{device}.pub")
        key_file = tmp / COLLECTOR_KEY
        self.collector_key: Ed25519PrivateKey = (
            load_private_key(key_file) if key_file.exists()
            else init_role_key(key_file.parent, "collector")
        )  # fmt: skip

    def journal(self, clock: Clock | None = None, **kw: Any) -> Journal:
        """The door's journal, signing with its keys as they are now."""
        return Journal(self.state / "journal.db", load_keys(self.state), clock or SystemClock(),
                       site=self.site, device=self.device, **kw)  # fmt: skip

    def collector(self, broker: Broker | None = None, db: Path | None = None, **kw: Any):
        """A collector trusting the doors of ``tmp/trust`` (no broker: batches are fed to
        it); called again, it opens the same store."""
        return Collector(broker or Broker("127.0.0.1", 1), db or self.tmp / "central.db",
                         self.trust, self.collector_key, **kw)  # fmt: skip
