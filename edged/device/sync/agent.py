"""The device's sync agent: the journal is the outbox (R10, R13, R15).

One thread owns the paho client and drives it from its own ``poll`` loop (paho's
external-loop API), woken by the socket, by a pipe when the daemon commits records, or by
the heartbeat timer; nothing polls. Records go out in seq order, QoS 1, with a bounded
window. A PUBACK only advances ``published_seq``: the broker may not have stored the
message. Only a receipt signed by the pinned collector key advances ``acked_seq``, which
is kept on disk; after a reconnect or a restart publishing resumes at ``acked_seq + 1``
(the collector drops the duplicates), so paho's in-memory session is never relied on.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.clock import Clock
from edged.device.config import SyncConfig
from edged.device.journal.reader import JournalReader
from edged.device.paths import StatePaths
from edged.device.sync import beats, inbound
from edged.device.sync.state import SyncState
from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.backoff import Backoff
from edged.protocol.keys import load_public_key
from edged.protocol.mqtt import new_client
from edged.protocol.records import format_ts
from edged.protocol.signed import Rejected

log = get_logger("sync")

Inbound = Callable[[str, bytes], None]  # (kind, payload) handed to the daemon thread


class SyncAgent:
    """Publishes the journal and takes signed messages back. ``close()`` is idempotent."""

    def __init__(
        self,
        cfg: SyncConfig,
        *,
        site: str,
        device: str,
        journal_path: Path,
        state_dir: Path,
        clock: Clock,
        boot_id: str,
        on_inbound: Inbound,
        retry_seconds: float = 1.0,
        retry_cap_seconds: float = 60.0,
        device_key: Callable[[], Ed25519PrivateKey] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.cfg = cfg
        self.site, self.device = site, device
        self._journal_path = Path(journal_path)
        self._clock = clock
        self._boot_id = boot_id
        self._on_inbound = on_inbound
        self._backoff = backoff or Backoff(retry_seconds, max(retry_seconds, retry_cap_seconds))
        self._up_since: float | None = None
        self._collector = load_public_key(cfg.collector_pubkey) if cfg.collector_pubkey else None
        # The key in force (it changes each epoch): signs alarms sent while the journal
        # cannot record.
        self._device_key = device_key
        self._fault: dict[str, Any] | None = None
        self._fault_alarm_due = False
        self._beat_now = False
        self._reader_stale = False
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None
        self._connected = False
        self._inflight: dict[int, int] = {}  # mid -> seq
        # Seqs published since the last receipt, oldest first: flow control counts records,
        # not seq distance, because a rollback record may skip many seqs.
        self._unreceipted: deque[int] = deque()
        self.connected_event = threading.Event()
        self._last_progress = time.monotonic()
        self._lock = threading.Lock()  # guards the counters read by status()
        self._changed = threading.Condition(self._lock)  # connected or acked_seq moved
        self._state = SyncState(StatePaths(Path(state_dir)).sync_state)
        self.acked_seq, self.acked_hash = self._state.acked_seq, self._state.acked_hash
        self.published_seq = self.acked_seq
        self._cursor = self.acked_seq + 1

    # -- durable state ---------------------------------------------------------------
    def _save_ack(self, seq: int, h: str) -> None:
        self._state.save(seq, h)
        with self._lock:
            self.acked_seq, self.acked_hash = seq, h
            self._changed.notify_all()

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sync", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New records were committed (called by the daemon thread; never blocks)."""
        # A full pipe means a wake-up is already pending; a closed one, that we stopped.
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"!")

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.notify()
        if self._thread is not None:
            self._thread.join(timeout=15)
        self._state.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def journal_fault(self, fault: dict[str, Any] | None) -> None:
        """The journal cannot record (``fault``: since, error, unrecorded) or works again
        (None). Sent at once, on the one channel that does not need the journal: a signed
        alarm on ``alarm/journal.unavailable`` and the heartbeat's ``journal_ok``."""
        with self._lock:
            if fault is not None and self._fault is None:
                self._fault_alarm_due = True  # once a fault; heartbeats carry the count
            if fault is None and self._fault is not None:
                # The journal may be a new file system's now (storage repaired and mounted
                # again): an old connection would go on reading the old one's cache.
                self._reader_stale = True
            self._fault = fault
            self._beat_now = True
        self.notify()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status_locked()

    def _status_locked(self) -> dict[str, Any]:
        return {
            "connected": self._connected,
            "acked_seq": self.acked_seq,
            "published_seq": self.published_seq,
        }

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> bool:
        """Wait until ``pred(status())`` holds; checked when the connection comes or goes
        and when a receipt moves acked_seq."""
        with self._changed:
            return self._changed.wait_for(lambda: pred(self._status_locked()), timeout)

    # -- the thread ------------------------------------------------------------------
    def _run(self) -> None:
        self._reader: JournalReader | None = JournalReader(self._journal_path)
        self._read_failing = False
        try:
            while not self._stop.is_set():
                try:
                    self._session()
                except Exception as e:  # never let the sync thread die; the daemon runs on
                    log.error("sync_session_failed", error=repr(e))
                self._set_connected(False)
                lasted = 0.0 if self._up_since is None else time.monotonic() - self._up_since
                self._up_since = None
                self._stop.wait(self._backoff.ended(lasted))
        finally:
            if self._reader is not None:
                self._reader.close()

    def _read_failed(self, e: sqlite3.Error) -> None:
        """The journal cannot be read (a storage fault): keep the session, so heartbeats
        and alarms still go out, and read through a fresh connection next time."""
        if not self._read_failing:
            log.error("journal_unreadable", error=str(e))
        self._read_failing = True
        self._reopen_reader()

    def _reopen_reader(self) -> None:
        """A fresh read connection, or None while the file cannot be opened."""
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.close()
        self._reader = None
        with contextlib.suppress(sqlite3.Error):
            self._reader = JournalReader(self._journal_path)

    def _set_connected(self, up: bool) -> None:
        with self._lock:
            self._connected = up
            self._changed.notify_all()
        if up:
            self.connected_event.set()
        else:
            self.connected_event.clear()

    def _new_client(self) -> mqtt.Client:
        c = new_client(self.cfg.broker, f"edged-{self.device}")
        c.max_inflight_messages_set(self.cfg.window)
        c.max_queued_messages_set(0)
        will = json.dumps(beats.offline(self.device, self._boot_id))  # said by the broker
        c.will_set(topics.leaf(self.site, self.device, "status"), will, qos=1, retain=True)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        return c

    def _session(self) -> None:
        c = self._new_client()
        try:
            c.connect(self.cfg.host, self.cfg.port, keepalive=int(self.cfg.keepalive_seconds))
        except (OSError, ValueError) as e:
            log.warning(
                "broker_unreachable", broker=f"{self.cfg.host}:{self.cfg.port}", error=str(e)
            )
            return
        next_beat = time.monotonic()
        self._last_progress = time.monotonic()
        try:
            while not self._stop.is_set():
                sock = c.socket()
                if sock is None:
                    return
                # Wake in time for paho's keepalive check (loop_misc), which is what finds
                # a half-open connection.
                cap = min(5.0, self.cfg.keepalive_seconds / 2)
                timeout = max(0.0, min(next_beat - time.monotonic(), cap))
                # poll, not select: select() fails on descriptors above 1024, which a
                # process with many connections (a gateway, the tests) reaches.
                fd = sock.fileno()
                poller = select.poll()
                poller.register(self._wake_r, select.POLLIN)
                poller.register(fd, select.POLLIN | (select.POLLOUT if c.want_write() else 0))
                ready = dict(poller.poll(timeout * 1000))
                if ready.get(self._wake_r, 0) & select.POLLIN:
                    os.read(self._wake_r, 4096)
                ev = ready.get(fd, 0)
                if ev & (select.POLLIN | select.POLLERR | select.POLLHUP) and (
                    c.loop_read() != mqtt.MQTT_ERR_SUCCESS
                ):
                    return
                if ev & select.POLLOUT and c.loop_write() != mqtt.MQTT_ERR_SUCCESS:
                    return
                if c.loop_misc() != mqtt.MQTT_ERR_SUCCESS:
                    return
                if self._connected:
                    self._rewind_if_stalled()
                    if self._reader_stale or self._reader is None:
                        self._reader_stale = False
                        self._reopen_reader()
                    if self._reader is not None:
                        try:
                            self._pump(c, self._reader)
                            self._read_failing = False
                        except sqlite3.Error as e:
                            self._read_failed(e)
                    with self._lock:
                        beat_now, self._beat_now = self._beat_now, False
                    if beat_now or time.monotonic() >= next_beat:
                        self._heartbeat(c, self._reader)
                        next_beat = time.monotonic() + self.cfg.heartbeat_seconds
                    if self._fault_alarm_due:
                        self._fault_alarm(c)
        finally:
            if self._connected and self._stop.is_set():
                # A clean stop: say so, rather than leaving it to the will after a timeout.
                bye = json.dumps(beats.offline(self.device, self._boot_id, "stopped"))
                c.publish(topics.leaf(self.site, self.device, "status"), bye, qos=1, retain=True)
                c.loop_write()
            c.disconnect()
            c.loop_write()

    # -- callbacks (run inside loop_read/loop_write on this thread) ------------------
    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("broker_refused", reason=str(rc))
            return
        base = topics.base(self.site, self.device)
        c.subscribe(
            [(f"{base}/acl", 1), (f"{base}/cmd", 1), (f"{base}/receipt", 1),
             (f"{base}/cosigned", 1)]
        )  # fmt: skip
        # Resend everything the collector has not receipted (it drops duplicates).
        self._up_since = time.monotonic()
        self._inflight.clear()
        self._unreceipted.clear()
        with self._lock:
            self.published_seq = self.acked_seq
        self._cursor = self.acked_seq + 1
        self._set_connected(True)
        log.info(
            "broker_connected", broker=f"{self.cfg.host}:{self.cfg.port}", resume_from=self._cursor
        )

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self._set_connected(False)
        log.warning("broker_disconnected", reason=str(rc))

    def _on_publish(self, _c: Any, _u: Any, mid: int, _rc: Any, _p: Any = None) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is None:
            return
        with self._lock:
            # Everything below the oldest message still in flight has been PUBACKed.
            low = min(self._inflight.values(), default=self._cursor) - 1
            self.published_seq = max(self.published_seq, low)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        kind = msg.topic.rsplit("/", 1)[-1]
        try:
            if kind == "receipt":
                self._receipt(bytes(msg.payload))
            elif kind == "cmd":
                self._command(bytes(msg.payload))
            elif kind == "acl" and msg.payload:
                self._on_inbound("acl", bytes(msg.payload))
            elif kind == "cosigned" and msg.payload and len(msg.payload) <= 4096:
                self._on_inbound("cosigned", bytes(msg.payload))
        except Rejected as e:
            log.warning("inbound_ignored", topic=msg.topic, reason=e.reason, detail=e.detail)
        except Exception as e:
            log.error("inbound_failed", topic=msg.topic, error=repr(e))

    # -- work ------------------------------------------------------------------------
    def _pump(self, c: mqtt.Client, reader: JournalReader) -> None:
        # Flow control on receipts as well as PUBACKs: running further ahead of the
        # collector than the broker queues for it (Mosquitto: max_queued_messages, 1000 by
        # default) would only get messages dropped and resent.
        while self._unreceipted and self._unreceipted[0] <= self.acked_seq:
            self._unreceipted.popleft()  # receipted meanwhile (also when republished)
        room = min(
            self.cfg.window - len(self._inflight),
            self.cfg.max_unreceipted - len(self._unreceipted),
        )
        if room <= 0:
            return
        for rec in reader.page(self._cursor, room):
            seq, rtype, wire = rec.seq, rec.type, rec.wire()
            info = c.publish(topics.event(self.site, self.device, rtype), wire, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                return  # connection going down; resume from acked_seq + 1 on reconnect
            self._inflight[info.mid] = seq
            self._unreceipted.append(seq)
            self._cursor = seq + 1
            if rtype.startswith("alarm."):
                c.publish(topics.alarm(self.site, self.device, rtype), wire, qos=1)
            elif rtype == "checkpoint" and reader.newest_checkpoint() == seq:
                # Only the newest: the retained checkpoint must never go backwards, or a
                # resend would look like a rolled-back journal to the collector.
                c.publish(
                    topics.leaf(self.site, self.device, "checkpoint"), wire, qos=1, retain=True
                )

    def _rewind_if_stalled(self) -> None:
        """Everything published but no receipt for a long while: the collector missed the
        messages (it was not subscribed yet, or a broker dropped them). Send them again."""
        with self._lock:
            behind = self.published_seq > self.acked_seq
        stall = max(10.0, 3 * self.cfg.heartbeat_seconds)
        if behind and not self._inflight and time.monotonic() - self._last_progress > stall:
            log.warning("no_receipts_resending", from_seq=self.acked_seq + 1)
            self._cursor = self.acked_seq + 1
            self._unreceipted.clear()
            self._last_progress = time.monotonic()

    def _fault_alarm(self, c: mqtt.Client) -> None:
        with self._lock:
            fault = self._fault
        if fault is None:
            self._fault_alarm_due = False
            return
        ts = format_ts(self._clock.wall_ms())
        doc = beats.journal_unavailable(self.site, self.device, self._boot_id, ts, fault,
                                        self._device_key)  # fmt: skip
        info = c.publish(
            topics.alarm(self.site, self.device, "journal.unavailable"), json.dumps(doc), qos=1
        )
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._fault_alarm_due = False
            log.error("journal_fault_reported", **fault)

    def _heartbeat(self, c: mqtt.Client, reader: JournalReader | None) -> None:
        st = self.status()
        with self._lock:
            fault = self._fault
        # Read what can be read: the heartbeat matters most when storage is failing.
        try:
            if reader is None:
                raise sqlite3.OperationalError("journal not open")
            head = (*reader.head(), True)
        except sqlite3.Error:
            # A guess, marked so: the collector must not take it for a rolled-back journal.
            head = (max(st["acked_seq"], st["published_seq"]), "", False)
        try:
            free = shutil.disk_usage(self._journal_path.parent).free
        except OSError:
            free = 0
        beat = beats.heartbeat(
            self.device, format_ts(self._clock.wall_ms()), self._boot_id, head,
            st["acked_seq"], st["published_seq"], free, self._clock.synced(), fault,
        )  # fmt: skip
        c.publish(topics.leaf(self.site, self.device, "heartbeat"), json.dumps(beat), qos=0)
        status = json.dumps(beats.online(beat))
        c.publish(topics.leaf(self.site, self.device, "status"), status, qos=1, retain=True)

    def _receipt(self, payload: bytes) -> None:
        seq, h = inbound.receipt(payload, self._collector, self.site, self.device)
        if seq <= self.acked_seq:
            return
        if self._reader is None:
            return  # the journal cannot be read now; the collector receipts again later
        if self._reader.hash_at(seq) != h:
            # The collector, signed, holds a record this journal lacks: the daemon checks
            # whether the journal went back (docs/rollback.md).
            self._central_head(seq, h)
            raise Rejected("mismatch", f"receipt for seq {seq} does not match the journal")
        self._save_ack(seq, h)
        while self._unreceipted and self._unreceipted[0] <= seq:
            self._unreceipted.popleft()
        self._last_progress = time.monotonic()

    def _command(self, payload: bytes) -> None:
        cmd = inbound.command(payload, self._collector, self.site, self.device)
        if isinstance(cmd, inbound.CentralHead):
            self._central_head(cmd.seq, cmd.hash)
            return
        # Records up to acked_seq are committed centrally (the receipt says so): a late or
        # stale request never sends the device back below them.
        start = max(1, cmd.from_seq, self.acked_seq + 1)
        if start < self._cursor:
            log.info("resend_requested", from_seq=start)
            self._cursor = start
            while self._unreceipted and self._unreceipted[-1] >= start:
                self._unreceipted.pop()

    def _central_head(self, seq: int, h: str) -> None:
        self._on_inbound("central_head", json.dumps({"seq": seq, "hash": h}).encode())
