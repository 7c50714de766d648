"""The collector as a witness of each device's tree (issue 17).

Every stored checkpoint is compared with this store's own tree of the device's records:
the same size and root, under the device's signature. Then the collector cosigns it (a
second note signature, which Go's note package checks too) and publishes it retained;
otherwise the device's signed tree is not the history it sent, and that is an alarm.
"""

from __future__ import annotations

import json
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.central.alarms import Alarms, Publish
from edged.central.trust import DeviceEpochs
from edged.protocol import topics
from edged.protocol.keys import key_id_of
from edged.protocol.note import NoteError, add_signature, origin_of
from edged.protocol.records import format_ts

# What the store hands over after a commit: (device, seq, checkpoint body, tree size, root).
TreeEvent = tuple[tuple[str, str], int, str, int, bytes]


class Witness:
    """Cosigns the checkpoints that match this copy, under the collector key."""

    def __init__(
        self, key: Ed25519PrivateKey, epochs: DeviceEpochs, alarms: Alarms, publish: Publish
    ) -> None:
        self._key, self.epochs, self.alarms, self._publish = key, epochs, alarms, publish

    @property
    def name(self) -> str:
        """The collector's name in the notes it cosigns."""
        return f"edged-collector/{key_id_of(self._key.public_key())}"

    def witness(self, store: Any, events: list[TreeEvent]) -> None:
        """Check, cosign, store (one statement and one commit for all: one each was an
        fsync per checkpoint, a third of a big catch-up's time) and publish the newest
        cosigned note of each device."""
        if not events:
            return
        done = [d for d in (self._one(*e) for e in events) if d is not None]
        if done:
            store.trees.add_cosigned_many(done, format_ts(int(time.time() * 1000)))
        store.commit()  # the cosignatures, and any bad_checkpoint alarm
        newest = {dev: note for dev, _size, note in sorted(done, key=lambda d: d[1])}
        for (site, device), note in newest.items():
            self._publish(topics.leaf(site, device, "cosigned"), note, retain=True)

    def _one(
        self, dev: tuple[str, str], seq: int, body: str, size: int, root: bytes
    ) -> tuple[tuple[str, str], int, str] | None:
        try:
            note = json.loads(body).get("note")
        except (ValueError, AttributeError):
            return None
        chain = self.epochs.chain(dev)
        if not isinstance(note, str) or chain is None:
            return None  # a checkpoint from before the tree
        origin = origin_of(*dev)
        try:
            cp = chain.open_checkpoint(note, origin)
        except NoteError as e:
            self.alarms.found(*dev, "bad_checkpoint", f"seq {seq}: {e}")
            return None
        if (cp.size, cp.root, cp.origin) != (size, root, origin):
            self.alarms.found(
                *dev, "bad_checkpoint",
                f"seq {seq}: the device signed a tree of {cp.size} records that is not"
                f" this copy's tree of {size}: its history is not the one it sent",
            )  # fmt: skip
            return None
        return dev, size, add_signature(note, self.name, self._key.public_key(), self._key.sign)
