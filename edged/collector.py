"""The reference collector: the central copy of every device's journal (R9, R10, R13, R15).

``edged collect`` subscribes to all devices, verifies each record (hash, Ed25519
signature with the device key from the trust directory, seq continuity, chain), stores
it once (primary key site+device+seq), asks for a resend when it sees a gap, and
publishes a receipt signed with the collector key after committing, which is what lets a
device consider records safe. Retained checkpoints are compared with what it holds: an
older checkpoint than one seen before is a rollback, a checkpoint or record that does not
match the stored chain is a rewrite; both are alarms.

Trust directory: one ``DEVICE.pub`` (PEM, the device's ``device_ed25519.pub``) per device.
"""

from __future__ import annotations

import json
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from edged.canonical import dumps_checked
from edged.clock import format_ts
from edged.errors import EdgedError
from edged.journal.record import GENESIS, digest
from edged.keys import key_id_of, load_public_key
from edged.log import get_logger
from edged.sync import topics
from edged.sync.signed import sign_doc

log = get_logger("collector")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (site TEXT, device TEXT, last_seq INTEGER NOT NULL,
       last_hash TEXT NOT NULL, best_checkpoint INTEGER NOT NULL DEFAULT 0,
       PRIMARY KEY (site, device))""",
    """CREATE TABLE IF NOT EXISTS records (site TEXT, device TEXT, seq INTEGER, type TEXT,
       ts TEXT, hash TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (site, device, seq))""",
    """CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, ts TEXT, site TEXT,
       device TEXT, type TEXT, detail TEXT)""",
)


def verify_record(payload: bytes, raw_pub: bytes | None) -> dict[str, Any] | str:
    """A wire record checked against the device's raw Ed25519 public key: the record, or
    why it is refused. Module-level and pure, so worker processes can run it."""
    try:
        rec = json.loads(payload)
        h, sig = rec.pop("hash"), rec.pop("sig")
        # Parsed JSON holds only JSON types: no need for the full value check.
        body = dumps_checked(rec)
    except (ValueError, KeyError, TypeError, EdgedError, AttributeError):
        return "malformed record"
    if digest(body) != h:
        return "hash does not match the record"
    if raw_pub is None:
        return "device not in the trust directory"
    key = Ed25519PublicKey.from_public_bytes(raw_pub)
    if rec.get("key_id") != key_id_of(key):
        return f"signed by unknown key {str(rec.get('key_id'))[:16]}"
    try:
        raw_sig = bytes.fromhex(sig)
        key.verify(raw_sig, bytes.fromhex(h))
        if raw_sig.hex() != sig:
            return "signature is not in its canonical form"
    except (InvalidSignature, ValueError):
        return "bad signature"
    if type(rec.get("seq")) is not int or not isinstance(rec.get("prev"), str):
        return "malformed record"
    rec["hash"], rec["sig"] = h, sig
    return rec


def _verify_chunk(items: list[tuple[bytes, bytes | None]]) -> list[dict[str, Any] | str]:
    return [verify_record(p, k) for p, k in items]


class Collector:
    """Central store and verifier. ``start()`` connects; ``close()`` is idempotent."""

    def __init__(
        self,
        host: str,
        port: int,
        db: Path,
        trust_dir: Path,
        key: Ed25519PrivateKey,
        *,
        tls: dict[str, str] | None = None,
        receipt_every: int = 200,
        receipt_seconds: float = 0.5,
        verify_workers: int | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.db_path = Path(db)
        self.trust_dir = Path(trust_dir)
        self._key = key
        self._tls = tls
        self._receipt_every = receipt_every
        self._receipt_seconds = receipt_seconds
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        for sql in SCHEMA:
            self._db.execute(sql)
        self._lock = threading.Lock()
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._receipted: dict[tuple[str, str], int] = {}
        self._gap_asked: dict[tuple[str, str], tuple[int, float]] = {}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.stored = 0
        self._inbox: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self._verify_workers = (
            verify_workers if verify_workers is not None else (os.cpu_count() or 1)
        )
        self._pool: ProcessPoolExecutor | None = None
        self._ingest_thread = threading.Thread(target=self._ingest, name="ingest", daemon=True)
        self._uncommitted = 0
        self.changed = threading.Condition()
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"edged-collector-{key_id_of(key.public_key())}",
        )
        if tls:
            self._client.tls_set(
                ca_certs=tls.get("ca"), certfile=tls.get("cert"), keyfile=tls.get("key")
            )
        self._client.reconnect_delay_set(min_delay=1, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message

    # -- trust -----------------------------------------------------------------------
    def _device_key(self, device: str) -> Ed25519PublicKey | None:
        if device not in self._keys:
            path = self.trust_dir / f"{device}.pub"
            if not path.exists():
                return None
            try:
                self._keys[device] = load_public_key(path)
            except EdgedError as e:
                log.error("trust_key_invalid", device=device, error=str(e))
                return None
        return self._keys[device]

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._ingest_thread.start()
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._timer = threading.Thread(target=self._receipt_loop, name="receipts", daemon=True)
        self._timer.start()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
        if self._ingest_thread.is_alive():
            self._ingest_thread.join(30)
        if self._pool is not None:
            self._pool.shutdown()
        if self._timer:
            self._timer.join(5)
        with self._lock:
            self._flush_locked()
            self._db.close()

    # -- callbacks (paho's thread) ---------------------------------------------------
    def _on_connect(self, c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("broker_refused", reason=str(rc))
            return
        p = topics.PREFIX
        c.subscribe(
            [
                (f"{p}/+/+/event/#", 1),
                (f"{p}/+/+/checkpoint", 1),
                (f"{p}/+/+/status", 1),
                (f"{p}/+/+/heartbeat", 0),
            ]
        )
        log.info("collector_connected", broker=f"{self.host}:{self.port}")
        # After a restart, tell every known device where we are: it resends the rest.
        with self._lock:
            devices = self._db.execute("SELECT site, device, last_seq FROM devices").fetchall()
        for site, device, last in devices:
            self._ask_resend(site, device, last + 1, force=True)

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        parsed = topics.parse(msg.topic)
        if parsed is None:
            return
        site, device, rest = parsed
        try:
            if rest.startswith("event/"):
                # Verified and stored by the ingest thread, in arrival order, in batches.
                self._inbox.put((site, device, bytes(msg.payload)))
            elif rest == "checkpoint" and msg.payload:
                self._checkpoint(site, device, bytes(msg.payload))
                with self.changed:
                    self.changed.notify_all()
            elif rest in ("status", "heartbeat") and msg.payload:
                self._behind(site, device, bytes(msg.payload))
        except Exception as e:  # one bad message never stops the collector
            log.error("collector_message_failed", topic=msg.topic, error=repr(e))

    # -- records ---------------------------------------------------------------------
    def _raw_key(self, device: str) -> bytes | None:
        key = self._device_key(device)
        return key.public_bytes(Encoding.Raw, PublicFormat.Raw) if key is not None else None

    def _verify(self, device: str, payload: bytes) -> dict[str, Any] | str:
        return verify_record(payload, self._raw_key(device))

    def _alarm(self, site: str, device: str, atype: str, detail: str) -> None:
        log.warning("collector_alarm", site=site, device=device, type=atype, detail=detail)
        self._db.execute(
            "INSERT INTO alarms (ts, site, device, type, detail) VALUES (?,?,?,?,?)",
            (format_ts(int(time.time() * 1000)), site, device, atype, detail),
        )
        self._client.publish(
            topics.alarm(site, device, f"collector.{atype}"),
            json.dumps({"type": atype, "detail": detail}),
            qos=1,
        )

    def _ingest(self) -> None:
        """Take records as they arrive, verify a burst in parallel, store in order."""
        while True:
            batch = [self._inbox.get()]
            while len(batch) < 512:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is None for b in batch)
            items = [b for b in batch if b is not None]
            try:
                results = self._verify_batch(items)
                for (site, device, payload), rec in zip(items, results, strict=True):
                    self._record_locked(site, device, payload, rec)
            except Exception as e:  # one bad batch never stops the collector
                log.error("collector_ingest_failed", error=repr(e))
            with self.changed:  # stored, duplicate or alarm: let waiters look again
                self.changed.notify_all()
            if stop:
                return

    def _verify_batch(self, items: list[tuple[str, str, bytes]]) -> list[dict[str, Any] | str]:
        keyed = [(payload, self._raw_key(device)) for _s, device, payload in items]
        workers = self._verify_workers
        if workers < 2 or len(keyed) < 64:
            return _verify_chunk(keyed)
        if self._pool is None:
            # spawn, not fork: this process runs threads (paho's), which fork would copy
            # mid-flight.
            self._pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
        size = -(-len(keyed) // workers)
        chunks = [keyed[i : i + size] for i in range(0, len(keyed), size)]
        return [r for part in self._pool.map(_verify_chunk, chunks) for r in part]

    def _record(self, site: str, device: str, payload: bytes) -> None:
        """Verify and store one record now (tests, tools)."""
        self._record_locked(site, device, payload, self._verify(device, payload))

    def _record_locked(
        self, site: str, device: str, payload: bytes, rec: dict[str, Any] | str
    ) -> None:
        with self._lock:
            if isinstance(rec, str):
                self._alarm(site, device, "bad_record", rec)
                return
            row = self._db.execute(
                "SELECT last_seq, last_hash FROM devices WHERE site=? AND device=?", (site, device)
            ).fetchone()
            last, last_hash = row if row else (0, GENESIS)
            seq = rec["seq"]
            if seq <= last:
                stored = self._db.execute(
                    "SELECT hash FROM records WHERE site=? AND device=? AND seq=?",
                    (site, device, seq),
                ).fetchone()
                if stored and stored[0] != rec["hash"]:
                    self._alarm(
                        site, device, "rewrite", f"seq {seq} differs from the stored record"
                    )
                return  # a duplicate: already stored, once
            if seq > last + 1:
                self._ask_resend(site, device, last + 1)
                return
            if rec["prev"] != last_hash:
                self._alarm(site, device, "rewrite", f"seq {seq} does not extend the chain")
                return
            body = payload.decode("utf-8")  # verified above; kept exactly as the device sent it
            # Group commit: a burst is stored in one transaction; receipts are sent only
            # after _flush() has committed what they cover.
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO records VALUES (?,?,?,?,?,?,?)",
                (site, device, seq, rec.get("type"), rec.get("ts"), rec["hash"], body),
            )
            self._db.execute(
                "INSERT INTO devices (site, device, last_seq, last_hash) VALUES"
                " (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
                " last_seq=excluded.last_seq, last_hash=excluded.last_hash",
                (site, device, seq, rec["hash"]),
            )
            self._uncommitted += 1
            if self._uncommitted >= 500:
                self._flush_locked()
            self.stored += 1
            self._gap_asked.pop((site, device), None)
            due = seq - self._receipted.get((site, device), 0) >= self._receipt_every
        if due:
            self._send_receipt(site, device)

    def _behind(self, site: str, device: str, payload: bytes) -> None:
        """A device's status or heartbeat says it has records we lack (records published
        before we subscribed, or lost with a broker): ask for them."""
        try:
            head = json.loads(payload).get("head_seq")
        except (ValueError, AttributeError):
            return
        if type(head) is not int or self._device_key(device) is None:
            return
        with self._lock:
            row = self._db.execute(
                "SELECT last_seq FROM devices WHERE site=? AND device=?", (site, device)
            ).fetchone()
            last = row[0] if row else 0
            if head > last:
                self._ask_resend(site, device, last + 1)

    def _ask_resend(self, site: str, device: str, from_seq: int, *, force: bool = False) -> None:
        key = (site, device)
        now = time.monotonic()
        asked = self._gap_asked.get(key)
        if not force and asked and asked[0] == from_seq and now - asked[1] < 2.0:
            return  # asked already; the resend is on its way
        self._gap_asked[key] = (from_seq, now)
        cmd = sign_doc(
            {
                "cmd": "resend",
                "from_seq": from_seq,
                "site": site,
                "device": device,
                "ts": format_ts(int(time.time() * 1000)),
            },
            self._key,
        )
        self._client.publish(topics.leaf(site, device, "cmd"), json.dumps(cmd), qos=1)

    def _flush_locked(self) -> None:
        if self._db.in_transaction:
            self._db.execute("COMMIT")
        self._uncommitted = 0

    def _send_receipt(self, site: str, device: str) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._flush_locked()
            row = self._db.execute(
                "SELECT last_seq, last_hash FROM devices WHERE site=? AND device=?", (site, device)
            ).fetchone()
            if not row or row[0] <= self._receipted.get((site, device), 0):
                return
            self._receipted[(site, device)] = row[0]
        receipt = sign_doc(
            {
                "site": site,
                "device": device,
                "seq": row[0],
                "hash": row[1],
                "ts": format_ts(int(time.time() * 1000)),
            },
            self._key,
        )
        self._client.publish(topics.leaf(site, device, "receipt"), json.dumps(receipt), qos=1)

    def _receipt_loop(self) -> None:
        """Receipts for whatever was committed since the last one, twice a second."""
        while not self._stop.wait(self._receipt_seconds):
            with self._lock:
                if self._stop.is_set():
                    return
                devices = self._db.execute("SELECT site, device FROM devices").fetchall()
            for site, device in devices:
                self._send_receipt(site, device)

    # -- checkpoints -----------------------------------------------------------------
    def _checkpoint(self, site: str, device: str, payload: bytes) -> None:
        with self._lock:
            rec = self._verify(device, payload)
            if isinstance(rec, str):
                self._alarm(site, device, "bad_checkpoint", rec)
                return
            seq = rec["seq"]
            row = self._db.execute(
                "SELECT best_checkpoint FROM devices WHERE site=? AND device=?", (site, device)
            ).fetchone()
            best = row[0] if row else 0
            if seq < best:
                self._alarm(
                    site,
                    device,
                    "rollback",
                    f"checkpoint at seq {seq} is older than seq {best} seen before",
                )
                return
            stored = self._db.execute(
                "SELECT hash FROM records WHERE site=? AND device=? AND seq=?", (site, device, seq)
            ).fetchone()
            if stored and stored[0] != rec["hash"]:
                self._alarm(site, device, "rewrite", f"checkpoint at seq {seq} differs")
                return
            if row:
                self._db.execute(
                    "UPDATE devices SET best_checkpoint=? WHERE site=? AND device=?",
                    (max(best, seq), site, device),
                )

    # -- queries ---------------------------------------------------------------------
    def seqs(self, site: str, device: str) -> list[int]:
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT seq FROM records WHERE site=? AND device=? ORDER BY seq", (site, device)
                )
            ]

    def alarms(self) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute("SELECT type, detail FROM alarms ORDER BY id").fetchall()

    def wait_for(self, pred: Any, timeout: float = 30.0) -> bool:
        """Wait until ``pred()`` holds (checked after each stored record)."""
        with self.changed:
            return self.changed.wait_for(pred, timeout)
