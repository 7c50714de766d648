"""The collector's trust directory: ``TRUST_DIR/SITE/DEVICE.pub``, one key per (site,
device). A key is pinned to exactly one name; one found under two is trusted under
neither, so one device's records can never pass as another's (R9, R13)."""

from __future__ import annotations

import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.keys import key_id_of, load_public_key

log = get_logger("collector")


class TrustStore:
    """Device keys by (site, device), read from a directory, re-read for unknown names."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self._keys: dict[tuple[str, str], tuple[Ed25519PublicKey, str]] = {}
        self._loaded = float("-inf")

    def load(self) -> None:
        """Read ``TRUST_DIR/SITE/DEVICE.pub``. A key listed under two names is trusted under
        neither: a key is one device at one site, so its records cannot pass as another's."""
        found: dict[tuple[str, str], tuple[Ed25519PublicKey, str]] = {}
        for path in sorted(self.dir.glob("*.pub")):
            log.error(
                "trust_key_ignored",
                path=str(path),
                reason="keys are pinned to a site: move it to SITE/DEVICE.pub",
            )
        for path in sorted(self.dir.glob("*/*.pub")):
            try:
                key = load_public_key(path)
            except EdgedError as e:
                log.error("trust_key_invalid", path=str(path), error=str(e))
                continue
            found[(path.parent.name, path.stem)] = (key, key_id_of(key))
        names: dict[str, list[tuple[str, str]]] = {}
        for name, (_k, kid) in found.items():
            names.setdefault(kid, []).append(name)
        for kid, where in names.items():
            if len(where) > 1:
                log.error(
                    "trust_key_reused",
                    key_id=kid,
                    names=[f"{s}/{d}" for s, d in where],
                    action="trusted under none of them",
                )
                for name in where:
                    del found[name]
        self._keys = found
        self._loaded = time.monotonic()

    def key(self, site: str, device: str) -> tuple[Ed25519PublicKey | None, str]:
        """The device's public key and key id from the trust directory, or (None, "").
        An unknown name reads the directory again, at most every 5 seconds."""
        if (site, device) not in self._keys and time.monotonic() - self._loaded > 5.0:
            self.load()
        return self._keys.get((site, device), (None, ""))
