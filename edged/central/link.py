"""The collector's MQTT side, and nothing else: one client from the shared factory
(:func:`edged.protocol.mqtt.new_client`, so TLS, client certificates and the broker login
are applied as on a device), the subscriptions of a collector group, and publishing.

What arrives is handed on by kind (``event``, ``checkpoint``, ``status``, ``alarm``,
``acl``) to one handler; a handler that raises never stops the link.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.backoff import jitter_paho
from edged.protocol.mqtt import Broker, new_client

log = get_logger("collector")

# What a handler is given: (kind, site, device, payload). Kinds: the topic's leaf.
Handler = Callable[[str, str, str, bytes], None]

# Topic leaves a collector takes, with their QoS; ``acl`` is retained and reaches only
# plain subscriptions (not shared ones): every collector sees it, one row per device.
_SHARED = (("event/#", 1), ("checkpoint", 1), ("status", 1), ("heartbeat", 0),
           ("alarm/journal.unavailable", 1))  # fmt: skip
_PLAIN = (("acl", 1),)


def subscriptions(share: str | None, sites: tuple[str, ...]) -> list[tuple[str, int]]:
    """The topic filters of a collector of group ``share`` (none: alone) for ``sites``
    (none: every site)."""
    p = f"$share/{share}/{topics.PREFIX}" if share else topics.PREFIX
    subs = []
    for site in sites or ("+",):
        subs += [(f"{p}/{site}/+/{leaf}", q) for leaf, q in _SHARED]
        subs += [(f"{topics.PREFIX}/{site}/+/{leaf}", q) for leaf, q in _PLAIN]
    return subs


def kind_of(rest: str, retained: bool) -> str | None:
    """What a message under a device's topic is to the collector, or None to ignore it.
    A retained status is as old as the device's last heartbeat: it says nothing about
    where its journal is now."""
    if rest.startswith("event/"):
        return "event"
    if rest in ("status", "heartbeat"):
        return None if retained else "status"
    if rest == "alarm/journal.unavailable":
        return "journal_unavailable"
    return rest if rest in ("checkpoint", "acl") else None


class CollectorLink:
    """One collector's connection: ``start()`` connects (and reconnects, with jittered
    backoff), ``publish()`` sends, ``close()`` disconnects. ``on_connected`` runs after
    each (re)connect, once the subscriptions are asked for."""

    def __init__(
        self,
        broker: Broker,
        name: str,
        handler: Handler,
        *,
        share: str | None = None,
        sites: tuple[str, ...] = (),
        on_connected: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self.share, self.sites = share, tuple(sites)
        self._handler, self._on_connected = handler, on_connected
        self.subscribed = threading.Event()  # set once the broker took the subscriptions
        self.connected = threading.Event()
        self.refused = threading.Event()  # the broker said no (login, certificate, ACL)
        # Collectors of one group share the collector key: the client id names the host
        # and process too, or the broker would keep only one of them connected.
        cid = f"edged-collector-{name}-{socket.gethostname()[:20]}-{os.getpid()}"
        c = self._client = new_client(broker, cid, reconnect_on_failure=True)
        # Receipts and resend requests to hundreds of devices at once: paho's default of
        # 20 unacknowledged publishes would queue them behind the PUBACKs.
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        jitter_paho(c, 1.0, 30.0)
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_message = self._message
        c.on_subscribe = lambda *_a: self.subscribed.set()

    def start(self) -> None:
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(
        self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False
    ) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    # -- paho's thread ---------------------------------------------------------------
    def _connected(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            # A wrong login or certificate: said once per attempt, and tried again later.
            log.error("broker_refused", broker=str(self.broker), reason=str(rc))
            self.refused.set()
            return
        c.subscribe(subscriptions(self.share, self.sites))
        self.connected.set()
        log.info("collector_connected", broker=str(self.broker))
        self._on_connected()

    def _disconnected(self, c: mqtt.Client, *_a: Any) -> None:
        self.connected.clear()
        jitter_paho(c, 1.0, 30.0)

    def _message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(msg.topic)
        if parsed is None:
            return
        site, device, rest = parsed
        kind = kind_of(rest, bool(msg.retain))
        # An empty event is a bad record (an alarm); any other empty message is a
        # retained one cleared.
        if kind is None or (not msg.payload and kind != "event"):
            return
        try:
            self._handler(kind, site, device, bytes(msg.payload))
        except Exception as e:  # one bad message never stops the collector
            log.error("collector_message_failed", topic=msg.topic, error=repr(e))
