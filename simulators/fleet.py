"""A fleet of simulated devices in one process and one event loop: N identities, each
with its own Ed25519 key, its own hash-chained journal and its own MQTT connection to a
real broker, speaking the device's sync protocol (records at QoS 1 in a window, signed
receipts, resend commands, heartbeats). For the central side's tests and benchmarks: a
thousand devices fit on two cores, where a thousand daemons would not.

The journals live in memory: a restart (``restart()``) keeps them, as a disk would, and
starts a new boot with a ``daemon.started`` record. Records are made by the journal's own
:func:`~edged.protocol.records.seal`, so the collector cannot tell them from a daemon's.

paho's clients run on an asyncio loop through their socket callbacks (as aiomqtt does):
no thread per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.keys import key_id_of, public_key_pem
from edged.protocol.mqtt import Broker, new_client
from edged.protocol.records import GENESIS, Record, format_ts, seal
from edged.protocol.signed import Rejected, parse_signed

log = get_logger("simulators.fleet")

# What a door writes, in the proportions of a working day (alarms are rare).
_EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("door.granted", {"door": "main", "area": "handling", "person": "S1001", "direction": "entry"}),
    ("door.opened", {"door": "main"}),
    ("door.closed", {"door": "main"}),
    ("door.exit", {"door": "main", "area": "handling", "person": "S1001"}),
    ("cabinet.unlocked", {"cabinet": "cab-a", "area": "handling"}),
    ("cabinet.locked", {"cabinet": "cab-a", "area": "handling"}),
]


@dataclass
class FleetDevice:
    """One simulated device: identity, journal, and its sync state."""

    site: str
    device: str
    key: Ed25519PrivateKey
    records: list[Record] = field(default_factory=list)
    acked: int = 0
    cursor: int = 1  # next seq to publish
    inflight: int = 0
    boot_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    clock_synced: bool = True
    heartbeats: bool = True  # False: silent (a device off the network)
    take_receipts: bool = True  # False: ignores receipts (its sync stalls)
    connected: bool = False
    last_progress: float = field(default_factory=time.monotonic)
    client: mqtt.Client | None = None
    receipts: int = 0

    @property
    def key_id(self) -> str:
        return key_id_of(self.key.public_key())

    @property
    def head(self) -> tuple[int, str]:
        return (len(self.records), self.records[-1].hash) if self.records else (0, GENESIS)

    def append(self, rtype: str, fields: dict[str, Any], *, wall_ms: int | None = None) -> Record:
        """A record; ``wall_ms`` backdates it (retention tests)."""
        seq, prev = self.head
        wall = int(time.time() * 1000) if wall_ms is None else wall_ms
        obj = dict(fields)
        obj.update(
            site=self.site,
            device=self.device,
            seq=seq + 1,
            ts=format_ts(wall),
            mono_us=time.monotonic_ns() // 1000,
            boot_id=self.boot_id,
            clock_synced=self.clock_synced,
            type=rtype,
            prev=prev,
            key_id=self.key_id,
        )
        rec = seal(obj, self.key.sign)
        self.records.append(rec)
        return rec


@dataclass(frozen=True)
class FleetSettings:
    """``rate``: records per second over the whole fleet; every ``burst_every`` seconds a
    burst of ``burst`` records at once. ``window``: records awaiting PUBACK per device;
    ``max_unreceipted``: records ahead of the last receipt (as the daemon's [sync])."""

    rate: float = 100.0
    burst: int = 0
    burst_every: float = 10.0
    window: int = 20
    max_unreceipted: int = 800
    heartbeat_seconds: float = 5.0
    stall_seconds: float = 10.0  # as the agent: max(10 s, 3 heartbeats)
    alarm_share: float = 0.0  # share of records that are alarm.door_held_open


class Fleet:
    """N devices of one site on one broker. ``start()`` runs them on a thread of their
    own; ``stop()`` ends it. Counters and journals may be read from any thread."""

    def __init__(
        self,
        n: int,
        broker: Broker,
        collector_key: Ed25519PublicKey,
        *,
        site: str = "fleet",
        settings: FleetSettings | None = None,
        seed: int = 1,
    ) -> None:
        self.broker = broker
        self.collector_key = collector_key
        self.settings = settings or FleetSettings()
        self.devices = [
            FleetDevice(site, f"door-{i:04d}", Ed25519PrivateKey.generate()) for i in range(n)
        ]
        self._by_name = {d.device: d for d in self.devices}
        self._rng = random.Random(seed)  # noqa: S311 (a load pattern, not a secret)
        self._generating = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()
        self._misc: list[Callable[[], None]] = []

    # -- identities --------------------------------------------------------------------
    def write_trust(self, trust_dir: Path) -> None:
        """Each device's public key as ``trust_dir/SITE/DEVICE.pub``, as an installer
        copies them to the collector."""
        for d in self.devices:
            p = Path(trust_dir) / d.site / f"{d.device}.pub"
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(public_key_pem(d.key.public_key()))

    # -- control (any thread) ----------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._main, name="fleet", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("fleet: devices did not connect")

    def stop(self) -> None:
        if self._loop is not None and not self._stopped.is_set():
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(30)

    def generate(self, on: bool) -> None:
        """Start or stop writing records at the configured rate."""
        self._generating = on

    def call(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on the fleet's loop (to change a device's behaviour safely)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn)

    def restart(self, name: str) -> None:
        """The device restarts: it drops its connection, boots anew, writes
        ``daemon.started`` and resends what is unreceipted."""

        def go() -> None:
            d = self._by_name[name]
            if d.client is not None:
                d.client.disconnect()
            d.boot_id = uuid.uuid4().hex
            d.append("daemon.started", {"version": "fleet"})

        self.call(go)

    def totals(self) -> tuple[int, int]:
        """(records written, records receipted) over the fleet."""
        return sum(len(d.records) for d in self.devices), sum(d.acked for d in self.devices)

    def all_receipted(self) -> bool:
        return all(d.acked == len(d.records) for d in self.devices)

    # -- the loop ------------------------------------------------------------------------
    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._run())
        finally:
            loop.close()

    async def _run(self) -> None:
        assert self._loop is not None
        for d in self.devices:
            self._connect(d)
        tasks = [
            asyncio.ensure_future(self._misc_loop()),
            asyncio.ensure_future(self._generate_loop()),
            asyncio.ensure_future(self._heartbeat_loop()),
        ]
        while not self._stopped.is_set():
            if not self._ready.is_set() and all(d.connected for d in self.devices):
                self._ready.set()
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        for d in self.devices:
            if d.client is not None:
                d.client.disconnect()
                with contextlib.suppress(Exception):
                    d.client.loop_write()

    def _connect(self, d: FleetDevice) -> None:
        loop = self._loop
        assert loop is not None
        c = new_client(self.broker, f"fleet-{d.site}-{d.device}")
        c.max_inflight_messages_set(self.settings.window)
        c.max_queued_messages_set(0)
        c.user_data_set(d)
        c.on_socket_open = lambda cl, _u, sock: loop.add_reader(sock, cl.loop_read)
        c.on_socket_close = lambda _cl, _u, sock: self._forget(sock)
        c.on_socket_register_write = lambda cl, _u, sock: loop.add_writer(sock, cl.loop_write)
        c.on_socket_unregister_write = lambda _cl, _u, sock: self._unwrite(sock)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        d.client = c
        self._try_connect(d)

    def _unwrite(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)

    def _forget(self, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _try_connect(self, d: FleetDevice) -> None:
        assert self._loop is not None and d.client is not None
        try:
            if d.client.host:  # connected once: the same broker again
                d.client.reconnect()
            else:
                d.client.connect(self.broker.host, self.broker.port, keepalive=30)
            sock = d.client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        except OSError:
            # The broker is away: try again in a moment, with jitter so a thousand devices
            # do not come back in one instant.
            self._loop.call_later(0.5 + self._rng.random(), self._try_connect, d)

    def _on_connect(self, c: mqtt.Client, d: FleetDevice, _f: Any, rc: Any, _p: Any) -> None:
        if rc.is_failure:
            return
        base = topics.base(d.site, d.device)
        c.subscribe([(f"{base}/receipt", 1), (f"{base}/cmd", 1)])
        d.connected = True
        d.inflight = 0
        d.cursor = d.acked + 1  # what the broker held for us may be gone: send it again
        self._pump(d)

    def _on_disconnect(self, _c: mqtt.Client, d: FleetDevice, _f: Any, _rc: Any, _p: Any) -> None:
        d.connected = False
        if not self._stopped.is_set():
            assert self._loop is not None
            self._loop.call_later(0.2 + self._rng.random(), self._try_connect, d)

    def _on_publish(self, _c: mqtt.Client, d: FleetDevice, _mid: int, _rc: Any, _p: Any) -> None:
        if d.inflight > 0:
            d.inflight -= 1
        self._pump(d)

    def _on_message(self, _c: mqtt.Client, d: FleetDevice, msg: mqtt.MQTTMessage) -> None:
        try:
            doc = parse_signed(bytes(msg.payload), self.collector_key, max_bytes=4096)
        except Rejected:
            return
        if doc.get("site") != d.site or doc.get("device") != d.device:
            return
        if msg.topic.endswith("/receipt"):
            seq, h = doc.get("seq"), doc.get("hash")
            if not d.take_receipts or type(seq) is not int or not 0 < seq <= len(d.records):
                return
            if d.records[seq - 1].hash != h or seq <= d.acked:
                return
            d.acked = seq
            d.receipts += 1
            d.last_progress = time.monotonic()
            d.cursor = max(d.cursor, seq + 1)
        elif doc.get("cmd") == "resend" and type(doc.get("from_seq")) is int:
            start = max(1, doc["from_seq"], d.acked + 1)
            d.cursor = min(d.cursor, start)
        self._pump(d)

    def _pump(self, d: FleetDevice) -> None:
        """Publish what is due, within the window and the unreceipted limit."""
        if not d.connected or d.client is None:
            return
        s = self.settings
        while (
            d.cursor <= len(d.records)
            and d.inflight < s.window
            and d.cursor - d.acked <= s.max_unreceipted
        ):
            rec = d.records[d.cursor - 1]
            info = d.client.publish(topics.event(d.site, d.device, rec.type), rec.wire(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return
            d.inflight += 1
            d.cursor += 1

    async def _misc_loop(self) -> None:
        while True:
            now = time.monotonic()
            for d in self.devices:
                if d.client is not None:
                    d.client.loop_misc()
                # No receipt for a while with records out: send them again (the daemon's
                # sync agent does the same).
                if (
                    d.connected
                    and d.inflight == 0
                    and d.acked < d.cursor - 1
                    and now - d.last_progress > self.settings.stall_seconds
                ):
                    d.last_progress = now
                    d.cursor = d.acked + 1
                    self._pump(d)
            await asyncio.sleep(0.5)

    async def _generate_loop(self) -> None:
        s = self.settings
        owed = 0.0
        last = time.monotonic()
        next_burst = last + s.burst_every
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            if not self._generating:
                last, owed = now, 0.0
                continue
            owed += s.rate * (now - last)
            last = now
            n = int(owed)
            owed -= n
            if s.burst and now >= next_burst:
                n += s.burst
                next_burst = now + s.burst_every
            for _ in range(n):
                d = self.devices[self._rng.randrange(len(self.devices))]
                if self._rng.random() < s.alarm_share:
                    d.append("alarm.door_held_open", {"door": "main", "seconds": 30})
                else:
                    rtype, fields = _EVENTS[len(d.records) % len(_EVENTS)]
                    d.append(rtype, fields)
                self._pump(d)

    async def _heartbeat_loop(self) -> None:
        while True:
            # Spread over the interval, as real devices started at different moments are.
            step = self.settings.heartbeat_seconds / max(1, len(self.devices))
            for d in self.devices:
                if d.connected and d.heartbeats and d.client is not None:
                    self._heartbeat(d)
                await asyncio.sleep(step)

    def _heartbeat(self, d: FleetDevice) -> None:
        assert d.client is not None
        head, head_hash = d.head
        ts = format_ts(int(time.time() * 1000))
        beat = {
            "device": d.device,
            "ts": ts,
            "boot_id": d.boot_id,
            "head_seq": head,
            "head_hash": head_hash,
            "head_known": True,
            "acked_seq": d.acked,
            "published_seq": d.cursor - 1,
            "backlog": head - d.acked,
            "disk_free_bytes": 1 << 30,
            "clock_synced": d.clock_synced,
            "journal_ok": True,
        }
        d.client.publish(topics.leaf(d.site, d.device, "heartbeat"), json.dumps(beat), qos=0)
