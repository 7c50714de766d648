"""What the collector sends a device, each signed with the collector key (docs/mqtt.md):
a ``receipt`` for what is committed, a ``resend`` request for what is missing, and the
``central_head`` this store holds when the device's journal went back. Repeats are held
back here, so a burst of gaps or forks costs one message, not one per record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.central.alarms import Publish
from edged.protocol import topics
from edged.protocol.records import format_ts
from edged.protocol.signed import sign_doc

Dev = tuple[str, str]

# The same resend request, or a central_head to the same device, at most this often (s):
# the first one's answer is on its way.
REPEAT_AFTER = 2.0


class Replies:
    def __init__(
        self,
        key: Ed25519PrivateKey,
        publish: Publish,
        *,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._key, self._publish, self._now = key, publish, monotonic
        self._asked: dict[Dev, tuple[int, float]] = {}  # resend: from which seq, when
        self._told: dict[Dev, float] = {}  # central_head: when

    def _send(self, dev: Dev, leaf: str, doc: dict[str, object]) -> None:
        doc = {**doc, "site": dev[0], "device": dev[1], "ts": format_ts(int(time.time() * 1000))}
        self._publish(topics.leaf(*dev, leaf), json.dumps(sign_doc(doc, self._key)))

    def resend(self, dev: Dev, from_seq: int, *, force: bool = False) -> None:
        """Ask the device for its records from ``from_seq`` on; the same request again
        only after REPEAT_AFTER, unless ``force``d (after a reconnect)."""
        now = self._now()
        asked = self._asked.get(dev)
        if not force and asked and asked[0] == from_seq and now - asked[1] < REPEAT_AFTER:
            return
        self._asked[dev] = (from_seq, now)
        self._send(dev, "cmd", {"cmd": "resend", "from_seq": from_seq})

    def stored(self, dev: Dev) -> None:
        """A record of ``dev`` was stored: a gap asked about is closing."""
        self._asked.pop(dev, None)

    def central_head(self, dev: Dev, head: Callable[[], tuple[int, str]]) -> None:
        """Tell the device the head this store holds for it (``head()``, read only when
        sent): a device whose journal lacks it records the rollback and continues past it."""
        now = self._now()
        if now - self._told.get(dev, float("-inf")) < REPEAT_AFTER:
            return
        self._told[dev] = now
        seq, h = head()
        self._send(dev, "cmd", {"cmd": "central_head", "seq": seq, "hash": h})

    def receipts(self, due: list[tuple[Dev, int, str]]) -> None:
        """Receipts for (device, seq, hash) committed: the device may forget up to seq."""
        for dev, seq, h in due:
            self._send(dev, "receipt", {"seq": seq, "hash": h})
