"""The reference collector: the central copy of every device's journal (R9, R10, R13, R15).

``edged collect`` subscribes to all devices, verifies each record (hash, seq continuity,
chain, and Ed25519 with the device key from the trust directory: one signature proves a
run, each record's own is audited when idle), stores it once (primary key
site+device+seq), asks for a resend when it sees a gap, and
publishes a receipt signed with the collector key after committing, which is what lets a
device consider records safe. Retained checkpoints are compared with what it holds: an
older checkpoint than one seen before is a rollback, a checkpoint or record that does not
match the stored chain is a rewrite; both are alarms.

Trust directory: ``SITE/DEVICE.pub`` (PEM, the device's ``device_ed25519.pub``) per device.
Each key is pinned to exactly one (site, device): a key found under two names is trusted
under neither, and every record names its site and device inside what it signs, so a
record republished under another site or device is refused with an alarm.

A device whose journal went back to an older copy is not frozen out: its signed
``alarm.journal_rollback`` record continues the chain past the seqs it lost, genuine
records that diverge from the stored chain are kept apart as a fork, and the collector
tells the device (signed ``central_head``) what it holds (docs/rollback.md).
"""

from __future__ import annotations

import json
import queue
import random
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.errors import EdgedError
from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.backoff import jitter_paho
from edged.protocol.canonical import dumps_checked
from edged.protocol.keys import key_id_of, load_public_key
from edged.protocol.mqtt import Broker, Tls, new_client
from edged.protocol.records import GENESIS, ROLLBACK, digest, format_ts
from edged.protocol.signatures import record_signature_problem
from edged.protocol.signed import Rejected, parse_signed, sign_doc

log = get_logger("collector")

WRONG_ORIGIN = "record of another site or device"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS devices (site TEXT, device TEXT, last_seq INTEGER NOT NULL,
       last_hash TEXT NOT NULL, best_checkpoint INTEGER NOT NULL DEFAULT 0,
       PRIMARY KEY (site, device))""",
    """CREATE TABLE IF NOT EXISTS records (site TEXT, device TEXT, seq INTEGER, type TEXT,
       ts TEXT, hash TEXT NOT NULL, body TEXT NOT NULL, sig_checked INTEGER NOT NULL,
       PRIMARY KEY (site, device, seq))""",
    # Records whose own signature is still to be checked (see audit_signatures).
    """CREATE INDEX IF NOT EXISTS records_unchecked ON records (site, device, seq)
       WHERE sig_checked = 0""",
    """CREATE TABLE IF NOT EXISTS alarms (id INTEGER PRIMARY KEY, ts TEXT, site TEXT,
       device TEXT, type TEXT, detail TEXT)""",
    # Genuine records of a device that do not lie on its stored chain (its journal went
    # back and grew again): kept, verified, apart.
    """CREATE TABLE IF NOT EXISTS forks (site TEXT, device TEXT, seq INTEGER, hash TEXT,
       prev TEXT NOT NULL, type TEXT, ts TEXT, body TEXT NOT NULL,
       PRIMARY KEY (site, device, seq, hash))""",
    # Where a device's chain skips seqs: its journal went back from known_seq to found_seq
    # and continued at seq; central_seq is what this store held then.
    """CREATE TABLE IF NOT EXISTS discontinuities (site TEXT, device TEXT, seq INTEGER,
       found_seq INTEGER NOT NULL, known_seq INTEGER NOT NULL, central_seq INTEGER NOT NULL,
       source TEXT, ts TEXT, PRIMARY KEY (site, device, seq))""",
)

# The same alarm for the same device at most once a minute; the rest are counted and
# the count is written with the next one (nothing from the network writes unbounded rows).
ALARM_INTERVAL = 60.0
# Resend requests after a (re)connect go out at this many per receipt tick.
RESENDS_PER_TICK = 50


def check_record(
    payload: bytes,
    key: Ed25519PublicKey | None,
    key_id: str = "",
    origin: tuple[str, str] | None = None,
) -> dict[str, Any] | str:
    """Everything about a wire record but its signature: it parses, is canonical, its hash
    matches, it names the device's key (``key_id``, computed from ``key`` if not given)
    and, given ``origin``, the (site, device) it arrived under. The record, or why it is
    refused."""
    try:
        rec = json.loads(payload)
        h, sig = rec.pop("hash"), rec.pop("sig")
        # Parsed JSON holds only JSON types: no need for the full value check.
        body = dumps_checked(rec)
    except (ValueError, KeyError, TypeError, EdgedError, AttributeError):
        return "malformed record"
    if digest(body) != h:
        return "hash does not match the record"
    if key is None:
        return "device not in the trust directory"
    if rec.get("key_id") != (key_id or key_id_of(key)):
        return f"signed by unknown key {str(rec.get('key_id'))[:16]}"
    if type(rec.get("seq")) is not int or not isinstance(rec.get("prev"), str):
        return "malformed record"
    if origin is not None and (rec.get("site"), rec.get("device")) != origin:
        return (
            f"{WRONG_ORIGIN}: signed for {str(rec.get('site'))[:32]}/"
            f"{str(rec.get('device'))[:32]}, arrived as {origin[0]}/{origin[1]}"
        )
    if not isinstance(sig, str):
        return "bad signature"
    rec["hash"], rec["sig"] = h, sig
    return rec


def signature_problem(rec: dict[str, Any], key: Ed25519PublicKey) -> str | None:
    """Why the signature of a checked record does not hold, or None."""
    return record_signature_problem(rec, key)


def verify_record(
    payload: bytes, key: Ed25519PublicKey | None, origin: tuple[str, str] | None = None
) -> dict[str, Any] | str:
    """A wire record checked in full against the device's public key: the record, or why
    it is refused."""
    rec = check_record(payload, key, origin=origin)
    if isinstance(rec, str):
        return rec
    assert key is not None  # check_record refuses records of unknown devices
    return signature_problem(rec, key) or rec


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
        tls: Tls | None = None,
        # Well under a device's default max_unreceipted (800), so a draining device is
        # never left waiting for the timer's receipt; each receipt costs a commit.
        receipt_every: int = 250,
        receipt_seconds: float = 0.5,
    ) -> None:
        self.host, self.port = host, port
        self.db_path = Path(db)
        self.trust_dir = Path(trust_dir)
        self._key = key
        self._receipt_every = receipt_every
        self._receipt_seconds = receipt_seconds
        self._db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(SCHEMA[0])
        self._db.execute(SCHEMA[1])
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(records)")]
        if "sig_checked" not in cols:  # a database from before the audit: all were checked
            self._db.execute(
                "ALTER TABLE records ADD COLUMN sig_checked INTEGER NOT NULL DEFAULT 1"
            )
        for sql in SCHEMA[2:]:
            self._db.execute(sql)
        self._audit_due = (
            self._db.execute("SELECT 1 FROM records WHERE sig_checked = 0 LIMIT 1").fetchone()
            is not None
        )
        # Each device's (last_seq, last_hash), kept here and written to `devices` with each
        # commit: two statements less per record.
        self._heads: dict[tuple[str, str], tuple[int, str]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        # (site, device) -> key, key id; rebuilt from the trust directory (_load_trust)
        self._keys: dict[tuple[str, str], tuple[Ed25519PublicKey, str]] = {}
        self._trust_loaded = float("-inf")
        # Alarm rate limit: (site, device, type) -> (last written, suppressed since)
        self._alarm_seen: dict[tuple[str, str, str], tuple[float, int]] = {}
        # Devices told what this store holds for them (central_head), and when.
        self._told_head: dict[tuple[str, str], float] = {}
        self._went_back_alarmed: dict[tuple[str, str], int] = {}
        self._resend_queue: list[tuple[str, str, int]] = []
        self._receipted: dict[tuple[str, str], int] = {}
        self._gap_asked: dict[tuple[str, str], tuple[int, float]] = {}
        # Devices whose status says they hold records we lack, and since when.
        self._lagging: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self.stored = 0
        self._inbox: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self._ingest_thread = threading.Thread(target=self._ingest, name="ingest", daemon=True)
        self._uncommitted = 0
        self.changed = threading.Condition()
        self._client = new_client(
            Broker(host, port, tls),
            f"edged-collector-{key_id_of(key.public_key())}",
            reconnect_on_failure=True,
        )
        jitter_paho(self._client, 1.0, 30.0)
        self._client.on_disconnect = lambda c, *_a: jitter_paho(c, 1.0, 30.0)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self.subscribed = threading.Event()  # set once the broker has taken the subscriptions
        self._client.on_subscribe = lambda *_a: self.subscribed.set()

    # -- trust -----------------------------------------------------------------------
    def _load_trust(self) -> None:
        """Read ``TRUST_DIR/SITE/DEVICE.pub``. A key listed under two names is trusted under
        neither: a key is one device at one site, so its records cannot pass as another's."""
        found: dict[tuple[str, str], tuple[Ed25519PublicKey, str]] = {}
        for path in sorted(self.trust_dir.glob("*.pub")):
            log.error(
                "trust_key_ignored",
                path=str(path),
                reason="keys are pinned to a site: move it to SITE/DEVICE.pub",
            )
        for path in sorted(self.trust_dir.glob("*/*.pub")):
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
        self._trust_loaded = time.monotonic()

    def _trusted(self, site: str, device: str) -> tuple[Ed25519PublicKey | None, str]:
        """The device's public key and key id from the trust directory, or (None, "").
        An unknown name reads the directory again, at most every 5 seconds."""
        if (site, device) not in self._keys and time.monotonic() - self._trust_loaded > 5.0:
            self._load_trust()
        return self._keys.get((site, device), (None, ""))

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
                (f"{p}/+/+/alarm/journal.unavailable", 1),
            ]
        )
        log.info("collector_connected", broker=f"{self.host}:{self.port}")
        # After a restart, tell every known device where we are: it resends the rest. A
        # thousand requests at once would make a thousand devices resend at once: they go
        # out in random order, RESENDS_PER_TICK at each receipt tick.
        with self._lock:
            self._flush_locked()
            devices = self._db.execute("SELECT site, device, last_seq FROM devices").fetchall()
            random.shuffle(devices)
            self._resend_queue = [(s, d, last + 1) for s, d, last in devices]

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
            elif rest in ("status", "heartbeat") and msg.payload and not msg.retain:
                # A retained status is as old as the device's last heartbeat: it says
                # nothing about where its journal is now.
                self._head_report(site, device, bytes(msg.payload))
            elif rest == "alarm/journal.unavailable" and msg.payload:
                self._journal_unavailable(site, device, bytes(msg.payload))
        except Exception as e:  # one bad message never stops the collector
            log.error("collector_message_failed", topic=msg.topic, error=repr(e))

    # -- records ---------------------------------------------------------------------
    def _verify(self, site: str, device: str, payload: bytes) -> dict[str, Any] | str:
        return verify_record(payload, self._trusted(site, device)[0], (site, device))

    def _alarm(self, site: str, device: str, atype: str, detail: str) -> None:
        """Store and announce an alarm, at most once a minute per (device, type): the
        rest are counted into the next one. Names no device knows share one counter, so
        garbage under random topics cannot write unbounded rows."""
        if self._trusted(site, device)[0] is None:
            site, device = "?", "?"
        key = (site, device, atype)
        now = time.monotonic()
        last, suppressed = self._alarm_seen.get(key, (float("-inf"), 0))
        if now - last < ALARM_INTERVAL:
            self._alarm_seen[key] = (last, suppressed + 1)
            return
        self._alarm_seen[key] = (now, 0)
        if suppressed:
            detail = f"{detail} (and {suppressed} more like it before this)"
        self._write_alarm(site, device, atype, detail)

    def _write_alarm(self, site: str, device: str, atype: str, detail: str) -> None:
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

    def _flush_suppressed_locked(self) -> None:
        """Counts of alarms held back, written once their minute is over."""
        now = time.monotonic()
        for key, (last, suppressed) in list(self._alarm_seen.items()):
            if now - last >= ALARM_INTERVAL:
                del self._alarm_seen[key]
                if suppressed:
                    site, device, atype = key
                    self._write_alarm(site, device, atype, f"{suppressed} more in the last minute")

    def _ingest(self) -> None:
        """Take records as they arrive, check a burst, store in order; audit signatures
        once nothing has arrived for a moment (after a backlog has drained, not between
        its bursts)."""
        while True:
            try:
                first = self._inbox.get(timeout=0.1 if self._audit_due else None)
            except queue.Empty:
                while self._audit_due and self._inbox.empty():
                    self.audit_signatures()
                continue
            batch = [first]
            while len(batch) < 512:
                try:
                    batch.append(self._inbox.get_nowait())
                except queue.Empty:
                    break
            stop = any(b is None for b in batch)
            items = [b for b in batch if b is not None]
            try:
                self.ingest_batch(items)
            except Exception as e:  # one bad batch never stops the collector
                log.error("collector_ingest_failed", error=repr(e))
            with self.changed:  # stored, duplicate or alarm: let waiters look again
                self.changed.notify_all()
            if stop:
                return

    def ingest_batch(self, items: list[tuple[str, str, bytes]]) -> None:
        """Check and store a burst of (site, device, wire record) in arrival order."""
        for site, device, _p in items:
            self._lagging.pop((site, device), None)  # its records are coming
        checked = [
            check_record(p, *self._trusted(site, device), origin=(site, device))
            for site, device, p in items
        ]
        proven, tails = self._authenticate_runs(items, checked)
        for i, ((site, device, payload), rec) in enumerate(zip(items, checked, strict=True)):
            self._record_locked(
                site, device, payload, rec, authentic=i in proven, checked=i in tails
            )

    def _authenticate_runs(
        self, items: list[tuple[str, str, bytes]], checked: list[dict[str, Any] | str]
    ) -> tuple[set[int], set[int]]:
        """Which records of a burst are proven signed, with one signature per device; and
        which of them had that signature checked (each run's last).

        The records that extend a device's stored chain form a run, each one's ``prev``
        the hash of the one before. The run's last record is signed, and its hash commits
        to every record before it, so a forged record anywhere in the run would take a
        SHA-256 collision: verifying that one signature authenticates the whole run (the
        way a signed tree head covers a transparency log). A run whose last signature
        fails is left out and checked record by record in :meth:`_record_locked`, which
        also checks every record that is not part of a run.
        """
        with self._lock:
            heads = {key: self._head_locked(key) for key in {(s, d) for s, d, _p in items}}
        runs: dict[tuple[str, str], list[int]] = {}
        for i, ((site, device, _p), rec) in enumerate(zip(items, checked, strict=True)):
            if isinstance(rec, str):
                continue
            last, last_hash = heads[(site, device)]
            if rec["seq"] == last + 1 and rec["prev"] == last_hash:
                runs.setdefault((site, device), []).append(i)
                heads[(site, device)] = (rec["seq"], rec["hash"])
        proven: set[int] = set()
        tails: set[int] = set()
        for (site, device), run in runs.items():
            key = self._trusted(site, device)[0]
            tail = checked[run[-1]]
            assert key is not None and not isinstance(tail, str)  # checked above
            if signature_problem(tail, key) is None:
                proven.update(run)
                tails.add(run[-1])
        return proven, tails

    def audit_signatures(self, limit: int = 64) -> None:
        """Check the own signature of a few records stored on their run's proof.

        Their content is authentic already (a later signed record commits to it), but a
        signature altered on the way, or one the device got wrong, would otherwise sit in
        the central copy unnoticed. Done in small steps while the inbox is empty, so a
        backlog drains first; ``sig_checked`` becomes 1, or -1 with a ``bad_signature``
        alarm.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT site, device, seq, body FROM records WHERE sig_checked = 0 LIMIT ?",
                (limit,),
            ).fetchall()
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            for site, device, seq, body in rows:
                # Parsed, hashed and matched to the device's key when it was stored: only
                # the signature is left to check.
                key = self._trusted(site, device)[0]
                why = signature_problem(json.loads(body), key) if key else "unknown device"
                bad = why is not None
                if bad:
                    self._alarm(site, device, "bad_signature", f"seq {seq}: {why}")
                self._db.execute(
                    "UPDATE records SET sig_checked = ? WHERE site=? AND device=? AND seq=?",
                    (-1 if bad else 1, site, device, seq),
                )
            self._flush_locked()
            self._audit_due = len(rows) == limit
        with self.changed:
            self.changed.notify_all()

    def unchecked(self) -> int:
        """How many stored records still wait for their own signature check."""
        with self._lock:
            return self._db.execute(
                "SELECT count(*) FROM records WHERE sig_checked = 0"
            ).fetchone()[0]

    def _record_locked(
        self,
        site: str,
        device: str,
        payload: bytes,
        rec: dict[str, Any] | str,
        *,
        authentic: bool = False,
        checked: bool = False,
    ) -> None:
        """Store ``rec`` if it extends the device's chain, or keep it apart if it is a
        genuine record off the chain. ``authentic``: it is proven signed (by its run);
        ``checked``: its own signature was verified too. A record that is neither is
        verified here before any use."""
        with self._lock:
            if isinstance(rec, str):
                kind = "wrong_origin" if rec.startswith(WRONG_ORIGIN) else "bad_record"
                self._alarm(site, device, kind, rec)
                return

            def forged() -> bool:
                nonlocal checked
                if authentic or checked:
                    return False
                checked = True
                key = self._trusted(site, device)[0]
                why = signature_problem(rec, key) if key is not None else "unknown device"
                if why is not None:
                    self._alarm(site, device, "bad_record", why)
                return why is not None

            dev = (site, device)
            last, last_hash = self._head_locked(dev)
            seq = rec["seq"]
            if rec.get("type") == ROLLBACK:
                self._rollback_record_locked(dev, payload, rec, forged, checked)
                return
            if seq <= last:
                stored = self._stored_hash(dev, seq)
                # The same hash is the same record: a duplicate, whatever its signature.
                if stored == rec["hash"] or forged():
                    return
                if stored is None and self._fills_gap(dev, seq, rec["prev"]):
                    self._insert_locked(dev, payload, rec, checked)  # late, on the old chain
                    return
                if self._holds(dev, seq - 1, rec["prev"]):
                    self._keep_fork_locked(dev, payload, rec)
                    return
                self._alarm(site, device, "rewrite", f"seq {seq} differs from the stored record")
                return
            if forged():
                return
            if self._in_fork(dev, seq - 1, rec["prev"]):
                self._keep_fork_locked(dev, payload, rec)
                return
            if seq > last + 1:
                log.info("gap_detected", site=site, device=device, got=seq, expected=last + 1)
                self._ask_resend(site, device, last + 1)
                return
            if rec["prev"] != last_hash:
                self._alarm(site, device, "rewrite", f"seq {seq} does not extend the chain")
                return
            self._store_locked(dev, payload, rec, checked)
        if due := self._receipt_due(dev):
            self._send_receipt(*due)

    def _receipt_due(self, dev: tuple[str, str]) -> tuple[str, str] | None:
        with self._lock:
            seq = self._heads.get(dev, (0, ""))[0]
            return dev if seq - self._receipted.get(dev, 0) >= self._receipt_every else None

    def _insert_locked(
        self, dev: tuple[str, str], payload: bytes, rec: dict[str, Any], checked: bool
    ) -> None:
        body = payload.decode("utf-8")  # verified: kept exactly as the device sent it
        # Group commit: a burst is stored in one transaction; receipts are sent only
        # after _flush() has committed what they cover.
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
        self._db.execute(
            "INSERT INTO records VALUES (?,?,?,?,?,?,?,?)",
            (*dev, rec["seq"], rec.get("type"), rec.get("ts"), rec["hash"], body, checked),
        )
        self._audit_due |= not checked

    def _fills_gap(self, dev: tuple[str, str], seq: int, prev: str) -> bool:
        """A record of the chain before a rollback, arriving after the rollback record
        (it was still on its way): it links to the stored record before it and its seq
        lies in a declared discontinuity."""
        return (
            self._stored_hash(dev, seq - 1) == prev
            and self._db.execute(
                "SELECT 1 FROM discontinuities WHERE site=? AND device=? AND central_seq < ?"
                " AND seq > ?",
                (*dev, seq, seq),
            ).fetchone()
            is not None
        )

    def _store_locked(
        self, dev: tuple[str, str], payload: bytes, rec: dict[str, Any], checked: bool
    ) -> None:
        """Append ``rec`` to the device's stored chain (verified by the caller)."""
        self._insert_locked(dev, payload, rec, checked)
        self._heads[dev] = (rec["seq"], rec["hash"])
        self._dirty.add(dev)
        self._uncommitted += 1
        if self._uncommitted >= 1000:
            self._flush_locked()
        self.stored += 1
        self._gap_asked.pop(dev, None)
        self._went_back_alarmed.pop(dev, None)

    # -- a journal that went back ----------------------------------------------------
    def _stored_hash(self, dev: tuple[str, str], seq: int) -> str | None:
        row = self._db.execute(
            "SELECT hash FROM records WHERE site=? AND device=? AND seq=?", (*dev, seq)
        ).fetchone()
        return row[0] if row else None

    def _in_fork(self, dev: tuple[str, str], seq: int, h: str) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM forks WHERE site=? AND device=? AND seq=? AND hash=?", (*dev, seq, h)
            ).fetchone()
            is not None
        )

    def _holds(self, dev: tuple[str, str], seq: int, h: str) -> bool:
        """Is (seq, hash) a record this store holds, on the chain or in a fork?"""
        if seq == 0:
            return h == GENESIS
        return self._stored_hash(dev, seq) == h or self._in_fork(dev, seq, h)

    def _keep_fork_locked(self, dev: tuple[str, str], payload: bytes, rec: dict[str, Any]) -> None:
        """A genuine record that is not on the stored chain: the device's journal went
        back and grew again. Nothing it signed is dropped: kept apart, one alarm where the
        fork leaves the chain, and the device is told what this store holds."""
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
        cur = self._db.execute(
            "INSERT OR IGNORE INTO forks VALUES (?,?,?,?,?,?,?,?)",
            (
                *dev,
                rec["seq"],
                rec["hash"],
                rec["prev"],
                rec.get("type"),
                rec.get("ts"),
                payload.decode("utf-8"),
            ),
        )
        if cur.rowcount and not self._in_fork(dev, rec["seq"] - 1, rec["prev"]):
            self._alarm(
                *dev,
                "rewrite",
                f"seq {rec['seq']} differs from the stored record: the device's journal"
                f" forks from the stored chain after seq {rec['seq'] - 1}; kept apart",
            )
        self._tell_head_locked(dev)

    def _rollback_record_locked(
        self,
        dev: tuple[str, str],
        payload: bytes,
        rec: dict[str, Any],
        forged: Any,
        checked: bool,
    ) -> None:
        """The device says, signed, that its journal went back from ``known_seq`` to
        ``found_seq``, and continues its chain from there at a seq past both. Accepted
        onto the stored chain when it links to a record this store holds; the seqs in
        between stay as they are (kept here if synced) and the discontinuity is a row."""
        last, _h = self._head_locked(dev)
        seq, found, known = rec["seq"], rec.get("found_seq"), rec.get("known_seq")
        if self._stored_hash(dev, seq) == rec["hash"] or forged():
            return  # a duplicate, or already alarmed as forged
        if (
            type(found) is not int
            or type(known) is not int
            or rec.get("found_hash") != rec["prev"]
            or seq != max(found, known) + 1
        ):
            self._alarm(*dev, "bad_record", f"seq {seq}: malformed rollback record")
            return
        if not self._holds(dev, found, rec["prev"]):
            if found > last:
                self._ask_resend(*dev, last + 1)  # we lack what it continues from
            else:
                self._alarm(*dev, "rewrite", f"seq {seq}: rollback record links to nothing held")
            return
        if seq <= last:
            # It could not know how far this store is: keep it apart; told our head, the
            # device records again past it.
            self._keep_fork_locked(dev, payload, rec)
            return
        self._store_locked(dev, payload, rec, checked)
        self._db.execute(
            "INSERT OR IGNORE INTO discontinuities VALUES (?,?,?,?,?,?,?,?)",
            (*dev, seq, found, known, last, str(rec.get("source")), rec.get("ts")),
        )
        lost = f"; seqs {last + 1}..{seq - 1} never reached this store" if seq > last + 1 else ""
        self._alarm(
            *dev,
            "rollback",
            f"the device's journal went back from seq {known} to seq {found}; seqs"
            f" {found + 1}..{min(last, seq - 1)} are kept here only{lost}; the chain goes on"
            f" at seq {seq}",
        )

    def _tell_head_locked(self, dev: tuple[str, str]) -> None:
        """Send the device, signed, the head this store holds for it (at most every 2 s):
        a device whose journal lacks it records the rollback and continues past it."""
        now = time.monotonic()
        if now - self._told_head.get(dev, float("-inf")) < 2.0:
            return
        self._told_head[dev] = now
        seq, h = self._head_locked(dev)
        cmd = sign_doc(
            {
                "cmd": "central_head",
                "seq": seq,
                "hash": h,
                "site": dev[0],
                "device": dev[1],
                "ts": format_ts(int(time.time() * 1000)),
            },
            self._key,
        )
        self._client.publish(topics.leaf(*dev, "cmd"), json.dumps(cmd), qos=1)

    def _head_report(self, site: str, device: str, payload: bytes) -> None:
        """A device's live status or heartbeat says where its journal's head is.

        Ahead of us: it holds records we lack (published before we subscribed, or lost
        with a broker): ask for them if none has arrived a second later (during a drain
        the status always says "more", and a resend would only repeat what is on its
        way). Behind us: its journal went back; an alarm now, and the device is told
        what we hold."""
        try:
            doc = json.loads(payload)
            head, known = doc.get("head_seq"), doc.get("head_known", True)
            acked = doc.get("acked_seq")
        except (ValueError, AttributeError):
            return
        if type(head) is not int or known is not True or self._trusted(site, device)[0] is None:
            return
        dev = (site, device)
        with self._lock:
            last = self._head_locked(dev)[0]
            if type(acked) is int and acked < min(last, self._receipted.get(dev, 0)):
                # Our receipt was lost (a broker dies between taking and delivering it):
                # the device waits for one. The receipt loop sends it again.
                self._receipted[dev] = acked
            if head > last:
                self._lagging.setdefault(dev, time.monotonic())
            elif head < last:
                if self._went_back_alarmed.get(dev) != head:
                    self._went_back_alarmed[dev] = head
                    self._alarm(
                        site,
                        device,
                        "rollback",
                        f"the device reports its journal's head at seq {head}, below seq"
                        f" {last} held here: its journal went back",
                    )
                self._tell_head_locked(dev)

    def _journal_unavailable(self, site: str, device: str, payload: bytes) -> None:
        """A device says, signed, that its journal cannot record: a central alarm, since
        the device's own alarm record can only follow once its storage works again."""
        try:
            doc = parse_signed(payload, self._trusted(site, device)[0], max_bytes=4096)
        except Rejected as e:
            log.warning("device_alarm_ignored", site=site, device=device, reason=e.reason)
            return
        if doc.get("site") != site or doc.get("device") != device:
            log.warning("device_alarm_ignored", site=site, device=device, reason="wrong_scope")
            return
        with self._lock:
            self._alarm(
                site,
                device,
                "journal_unavailable",
                f"since {doc.get('since')}: {doc.get('unrecorded')} unrecorded;"
                f" {str(doc.get('error'))[:200]}",
            )

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

    def flush(self) -> None:
        """Commit what is stored so far (otherwise committed at the next receipt)."""
        with self._lock:
            self._flush_locked()

    def _head_locked(self, key: tuple[str, str]) -> tuple[int, str]:
        if key not in self._heads:
            row = self._db.execute(
                "SELECT last_seq, last_hash FROM devices WHERE site=? AND device=?", key
            ).fetchone()
            self._heads[key] = (row[0], row[1]) if row else (0, GENESIS)
        return self._heads[key]

    def _flush_locked(self) -> None:
        if self._dirty:
            if not self._db.in_transaction:
                self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO devices (site, device, last_seq, last_hash) VALUES"
                " (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
                " last_seq=excluded.last_seq, last_hash=excluded.last_hash",
                [(*key, *self._heads[key]) for key in self._dirty],
            )
            self._dirty.clear()
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
        """Receipts for whatever was committed since the last one, twice a second; resend
        requests to devices that said they have more and then sent nothing."""
        while not self._stop.wait(self._receipt_seconds):
            with self._lock:
                if self._stop.is_set():
                    return
                self._flush_suppressed_locked()
                self._flush_locked()
                devices = self._db.execute("SELECT site, device FROM devices").fetchall()
                ask, self._resend_queue = (
                    self._resend_queue[:RESENDS_PER_TICK],
                    self._resend_queue[RESENDS_PER_TICK:],
                )
            for site, device, from_seq in ask:
                self._ask_resend(site, device, from_seq, force=True)
            for site, device in devices:
                self._send_receipt(site, device)
            now = time.monotonic()
            for (site, device), since in list(self._lagging.items()):
                if now - since >= 1.0 and self._lagging.pop((site, device), None) is not None:
                    with self._lock:
                        self._ask_resend(site, device, self._head_locked((site, device))[0] + 1)

    # -- checkpoints -----------------------------------------------------------------
    def _checkpoint(self, site: str, device: str, payload: bytes) -> None:
        with self._lock:
            rec = self._verify(site, device, payload)
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
                self._tell_head_locked((site, device))
                return
            stored = self._db.execute(
                "SELECT hash FROM records WHERE site=? AND device=? AND seq=?", (site, device, seq)
            ).fetchone()
            if stored and stored[0] != rec["hash"]:
                self._alarm(site, device, "rewrite", f"checkpoint at seq {seq} differs")
                self._tell_head_locked((site, device))
                return
            self._db.execute(
                "INSERT INTO devices (site, device, last_seq, last_hash, best_checkpoint)"
                " VALUES (?,?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
                " best_checkpoint=max(best_checkpoint, excluded.best_checkpoint)",
                (site, device, *self._head_locked((site, device)), seq),
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

    def discontinuities(self, site: str, device: str) -> list[tuple[int, int, int, int]]:
        """Where the device's chain skips: (seq, found_seq, known_seq, central_seq)."""
        with self._lock:
            return self._db.execute(
                "SELECT seq, found_seq, known_seq, central_seq FROM discontinuities"
                " WHERE site=? AND device=? ORDER BY seq",
                (site, device),
            ).fetchall()

    def forked(self, site: str, device: str) -> list[int]:
        """The seqs of the device's records kept apart from its chain."""
        with self._lock:
            return [
                r[0]
                for r in self._db.execute(
                    "SELECT seq FROM forks WHERE site=? AND device=? ORDER BY seq", (site, device)
                )
            ]

    def alarms(self) -> list[tuple[str, str]]:
        with self._lock:
            return self._db.execute("SELECT type, detail FROM alarms ORDER BY id").fetchall()

    def wait_for(self, pred: Any, timeout: float = 30.0) -> bool:
        """Wait until ``pred()`` holds (checked after each stored record)."""
        with self.changed:
            return self.changed.wait_for(pred, timeout)
