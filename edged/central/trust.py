"""The collector's trust directory: ``TRUST_DIR/SITE/DEVICE.pub``, one key per (site,
device). A key is pinned to exactly one name; one found under two is trusted under
neither, so one device's records can never pass as another's (R9, R13)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol.epochs import CERT, EpochChain
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


class DeviceEpochs:
    """Each device's signing epochs as far as they are proven (issue 17): from its
    pinned identity key through the epoch certificates stored centrally
    (``certs(site, device)`` reads them) and those met on the way in. The one place the
    collector asks which key signed a record."""

    def __init__(self, trust: TrustStore, certs: Callable[[tuple[str, str]], list[str]]) -> None:
        self.trust = trust
        self._certs = certs
        self._chains: dict[tuple[str, str], EpochChain] = {}
        self._ids: dict[tuple[str, str], str] = {}

    def chain(self, dev: tuple[str, str], *, reload: bool = False) -> EpochChain | None:
        pub, kid = self.trust.key(*dev)
        if pub is None:
            return None
        chain = self._chains.get(dev)
        # Rebuilt when the pinned key changed (by id: a re-read directory makes new key
        # objects for the same keys), or when asked to look in the store again.
        if chain is None or self._ids.get(dev) != kid or reload:
            self._ids[dev] = kid
            chain = EpochChain(pub)
            for wire in self._certs(dev):
                why = chain.learn_wire(wire)
                if why is not None:
                    log.error("epoch_certificate_invalid", site=dev[0], device=dev[1], error=why)
                    break
            self._chains[dev] = chain
        return chain

    def problem(self, dev: tuple[str, str], rec: dict[str, Any]) -> str | None:
        """Why ``rec`` (hash checked) is not signed by the key of its epoch, or None. An
        epoch this collector has not seen yet is looked for in the store once (another
        collector of the group may have stored its certificate)."""
        chain = self.chain(dev)
        if chain is None:
            return "device not in the trust directory"
        if not chain.knows(rec):
            chain = self.chain(dev, reload=True)
            if chain is None:
                return "device not in the trust directory"
        return chain.problem(rec)

    def learn(self, dev: tuple[str, str], rec: dict[str, Any]) -> str | None:
        """A ``key.epoch`` record on the device's chain: its next key proven (or why not)."""
        chain = self.chain(dev)
        if chain is None or rec.get("type") != CERT:
            return None
        return chain.learn(rec)

    def knows(self, dev: tuple[str, str], rec: dict[str, Any]) -> bool:
        """Whether the record's epoch is one whose certificate this collector has."""
        chain = self.chain(dev)
        return chain is None or chain.knows(rec)
