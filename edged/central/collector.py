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
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.central import ingest
from edged.central.alarms import Alarms
from edged.central.ingest import decide
from edged.central.link import CollectorLink
from edged.central.store import CentralStore, PostgresStore, open_store
from edged.central.trust import DeviceEpochs, TrustStore
from edged.central.verify import WRONG_ORIGIN, check_record
from edged.central.watch import DeviceWatch, Watch
from edged.central.witness import Witness
from edged.log import get_logger
from edged.protocol import topics
from edged.protocol.epochs import CERT
from edged.protocol.keys import key_id_of
from edged.protocol.mqtt import Broker
from edged.protocol.records import (
    format_ts,
    is_alarm,
    parse_ts,
)
from edged.protocol.signed import Rejected, parse_signed, sign_doc

log = get_logger("collector")

# Resend requests after a (re)connect go out at this many per receipt tick.
RESENDS_PER_TICK = 50
# The audit of each record's own signature (a run's last one proves the run already)
# waits for this much quiet, and takes a small slice every AUDIT_EVERY s under load.
AUDIT_IDLE = 0.5
AUDIT_EVERY = 1.0
# A record waiting for the one before it this long: that one is not on its way (another
# collector would have stored it by now): the device is asked to resend.
PENDING_PATIENCE_MS = 2000


class _StoredChain:
    """One device's chain as the store (and the collector's caches) hold it: the
    :class:`edged.central.ingest.ChainView` the decisions ask."""

    def __init__(self, col: Collector, dev: tuple[str, str]) -> None:
        self.col, self.dev = col, dev

    def head(self) -> tuple[int, str]:
        return self.col._head_locked(self.dev)

    def stored_hash(self, seq: int) -> str | None:
        return self.col._stored_hash(self.dev, seq)

    def in_fork(self, seq: int, h: str) -> bool:
        return self.col.store.in_fork(self.dev, seq, h)

    def in_gap(self, seq: int) -> bool:
        return self.col.store.in_gap(self.dev, seq)

    def epoch_problem(self, rec: dict[str, Any]) -> str | None:
        return self.col.epochs.problem(self.dev, rec)

    def knows_epoch(self, rec: dict[str, Any]) -> bool:
        return self.col.epochs.knows(self.dev, rec)


class Collector:
    """Central store and verifier. ``start()`` connects; ``close()`` is idempotent."""

    def __init__(
        self,
        broker: Broker,
        db: Path | str | CentralStore,
        trust_dir: Path,
        key: Ed25519PrivateKey,
        *,
        share: str | None = None,
        sites: tuple[str, ...] = (),
        watch: Watch | None = None,
        # Well under a device's default max_unreceipted (800), so a draining device is
        # never left waiting for the timer's receipt; each receipt costs a commit.
        receipt_every: int = 250,
        receipt_seconds: float = 0.5,
    ) -> None:
        self.broker = broker
        # The store: a SQLite file, a postgresql:// URL, or one made by the caller.
        self.store = db if isinstance(db, CentralStore) else open_store(db)
        self.db_path = Path(self.store.url) if not self.store.url.startswith("postgres") else None
        # With a share group, collectors of one group split the devices' messages (MQTT
        # shared subscription): the store arbitrates.
        self.share = share
        # Only these sites' topics (a shard of the company: a device's records then stay
        # with one collector group); empty: every site.
        self.sites = tuple(sites)
        self.watch = watch or Watch()
        self.trust_dir = Path(trust_dir)
        self._key = key
        self._receipt_every = receipt_every
        self._receipt_seconds = receipt_seconds
        self.trust = TrustStore(self.trust_dir)
        # Which key signed a record: the device's epochs, from its pinned identity on.
        self.epochs = DeviceEpochs(self.trust, self.store.epoch_certs)
        self._audit_due = self.store.any_unchecked()
        # Each device's (last_seq, last_hash) within the open transaction: locked in the
        # store at a batch's start, written back and forgotten at its commit (another
        # collector may extend the chain next).
        self._heads: dict[tuple[str, str], tuple[int, str]] = {}
        self._dirty: set[tuple[str, str]] = set()
        # Stored hashes of a batch's resent records, fetched at its start.
        self._known: dict[tuple[str, str, int], str] = {}
        # Devices whose chain this collector extended since its last receipts.
        self._touched: set[tuple[str, str]] = set()
        # Announcements held until the commit that covers them.
        self._announce: list[tuple[str, bytes]] = []
        self._next_watch = 0.0
        self._leading = False
        self._next_daily = 0.0
        self._lock = threading.RLock()  # re-entered by a batch's steps
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
        self.parked = 0  # records that arrived ahead of their turn
        self._inbox: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self._ingest_thread = threading.Thread(target=self._ingest, name="ingest", daemon=True)
        self._uncommitted = 0
        self.changed = threading.Condition()
        self.link = CollectorLink(
            broker,
            key_id_of(key.public_key()),
            self._on_message,
            share=share,
            sites=self.sites,
            on_connected=self._on_connect,
        )
        self.subscribed = self.link.subscribed
        self._alarms = Alarms(
            self.store, self.link.publish, lambda s, d: self._trusted(s, d)[0] is not None
        )
        self.device_watch = DeviceWatch(self.store, self._alarms, self.watch, self._mine)
        self.witness = Witness(key, self.epochs, self._alarms, self.link.publish)

    # -- trust -----------------------------------------------------------------------
    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        self._ingest_thread.start()
        self.link.start()
        self._timer = threading.Thread(target=self._receipt_loop, name="receipts", daemon=True)
        self._timer.start()

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self.link.close()
        self._inbox.put(None)
        if self._ingest_thread.is_alive():
            self._ingest_thread.join(30)
        if self._timer:
            self._timer.join(5)
        with self._lock:
            self._flush_locked()
            self.store.close()
        log.info("collector_stopped", stored=self.stored, parked=self.parked)

    def _mine(self, site: str) -> bool:
        return not self.sites or site in self.sites

    # -- callbacks (paho's thread) ---------------------------------------------------
    def _on_connect(self) -> None:
        """After a restart, tell every known device where we are: it resends the rest. A
        thousand requests at once would make a thousand devices resend at once: they go
        out in random order, RESENDS_PER_TICK at each receipt tick."""
        with self._lock:
            self._flush_locked()
            devices = [d for d in self.store.devices() if self._mine(d[0])]
            self.store.commit()
            random.shuffle(devices)
            self._resend_queue = [(s, d, last + 1) for s, d, last in devices]
            # A receipt for each, once: what was committed before a restart may be unreceipted.
            self._touched.update((s, d) for s, d, _last in devices)

    def _on_message(self, kind: str, site: str, device: str, payload: bytes) -> None:
        """What the link received (paho's thread)."""
        if kind == "event":
            # Verified and stored by the ingest thread, in arrival order, in batches.
            self._inbox.put((site, device, payload))
        elif kind == "checkpoint":
            self._checkpoint(site, device, payload)
            with self.changed:
                self.changed.notify_all()
        elif kind == "status":
            self._head_report(site, device, payload)
        elif kind == "journal_unavailable":
            self._journal_unavailable(site, device, payload)
        elif kind == "acl":
            self._acl_published(site, device, payload)

    # -- records ---------------------------------------------------------------------
    def _trusted(self, site: str, device: str) -> tuple[Ed25519PublicKey | None, str]:
        return self.trust.key(site, device)

    def _verify(self, site: str, device: str, payload: bytes) -> dict[str, Any] | str:
        rec = check_record(payload, *self._trusted(site, device), origin=(site, device))
        if isinstance(rec, str):
            return rec
        return self.epochs.problem((site, device), rec) or rec

    # -- the central side's own alarms -------------------------------------------------
    def check_devices(self) -> None:
        """Raise and clear the central side's own alarms (:mod:`edged.central.watch`).
        With several collectors on one PostgreSQL, one of them (an advisory lock) does it."""
        if isinstance(self.store, PostgresStore) and not self._leading:
            with self._lock:
                # One leader per shard: a group of other sites has its own.
                self._leading = self.store.try_lead("edged-watch:" + ",".join(self.sites))
            if not self._leading:
                return
        now_ms, now = int(time.time() * 1000), time.monotonic()
        if now >= self._next_daily:
            self._next_daily = now + 86400
            self.daily(now_ms)
        with self._lock:
            self.device_watch.check(now_ms, now)
            self.store.commit()

    def daily(self, now_ms: int) -> list[dict[str, Any]]:
        """Partitions for the coming months; records past the keeping period removed
        (logged per device in retention_log). What was removed."""
        with self._lock:
            self.store.commit()
            self.store.prepare_months(now_ms)
            if self.watch.retention_days <= 0:
                return []
            cutoff = format_ts(now_ms - int(self.watch.retention_days * 86_400_000))
            removed = self.store.apply_retention(cutoff, format_ts(now_ms))
        for r in removed:
            log.info("retention_removed", cutoff=cutoff, **r)
        return removed

    def _ingest(self) -> None:
        """Take records as they arrive, check a burst, store in order; audit signatures
        once nothing has arrived for half a second (after a backlog has drained, not
        between its bursts), and a slice every AUDIT_EVERY seconds under steady load, so
        that a busy collector still gets through its audit."""
        next_slice = time.monotonic() + AUDIT_EVERY
        while True:
            try:
                first = self._inbox.get(timeout=AUDIT_IDLE if self._audit_due else None)
            except queue.Empty:
                while self._audit_due and self._inbox.empty():
                    self.audit_signatures()
                continue
            if self._audit_due and time.monotonic() >= next_slice:
                next_slice = time.monotonic() + AUDIT_EVERY
                self.audit_signatures(64)
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
        """Check and store a burst of (site, device, wire record) in arrival order, in one
        transaction that holds the burst's device heads: records that arrived ahead of
        their turn wait in the store until the one before them is stored (here or by
        another collector of the group)."""
        for site, device, _p in items:
            self._lagging.pop((site, device), None)  # its records are coming
        checked = [
            check_record(p, *self._trusted(site, device), origin=(site, device))
            for site, device, p in items
        ]
        devs = {
            (s, d)
            for (s, d, _p), rec in zip(items, checked, strict=True)
            if not isinstance(rec, str)
        }
        with self._lock:
            try:
                self._heads.update(self.store.lock_heads(devs))
                # Records at or below the head are resent copies, mostly: their stored
                # hashes in one query rather than one each.
                again = {
                    (s, d, rec["seq"])
                    for (s, d, _p), rec in zip(items, checked, strict=True)
                    if not isinstance(rec, str) and rec["seq"] <= self._heads[(s, d)][0]
                }
                self._known = self.store.hashes_at(again)
                proven, tails = self._authenticate_runs(items, checked)
                for i, ((site, device, payload), rec) in enumerate(
                    zip(items, checked, strict=True)
                ):
                    self._record_locked(
                        site, device, payload, rec, authentic=i in proven, checked=i in tails
                    )
                self._drain_pending_locked(devs)
                due = {d: self._heads[d][0] for d in devs if d in self._heads}
                self._flush_locked()
            except Exception:
                # Nothing of a failed batch is half-stored: the devices resend it.
                self._abort_locked()
                raise
        # Receipts for what this commit covered, for devices far enough ahead of their
        # last one (the timer sends the rest).
        self._send_receipts(
            [d for d, seq in due.items() if seq - self._receipted.get(d, 0) >= self._receipt_every]
        )

    def _drain_pending_locked(self, devs: set[tuple[str, str]]) -> None:
        """Store the waiting records that now extend each chain, in seq order."""
        for dev in sorted(self.store.waiting(devs)):
            last = self._heads[dev][0]
            for body in self.store.take_pending(dev, last):
                rec = json.loads(body)
                if rec.get("seq") != self._heads[dev][0] + 1:
                    break  # still a gap: they wait on
                # Verified in full when it was parked.
                self._record_locked(*dev, body.encode(), rec, authentic=True, checked=True)
            if self._heads[dev][0] > last:
                self.store.drop_pending(dev, self._heads[dev][0])

    def _abort_locked(self) -> None:
        self.store.rollback()
        self._heads.clear()
        self._known = {}
        self._dirty.clear()
        self._announce.clear()
        self._uncommitted = 0

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
        for dev, run in runs.items():
            for i in run:
                rec = checked[i]
                assert not isinstance(rec, str)  # checked above
                # An epoch certificate in the run: checked on its own against the key
                # before it, so the run's last record may be of the epoch it begins.
                if rec.get("type") == CERT and self.epochs.problem(dev, rec) is None:
                    self.epochs.learn(dev, rec)
            tail = checked[run[-1]]
            assert not isinstance(tail, str)
            if self.epochs.problem(dev, tail) is None:
                proven.update(run)
                tails.add(run[-1])
        return proven, tails

    def audit_signatures(self, limit: int = 256) -> None:
        """Check the own signature of a few records stored on their run's proof.

        Their content is authentic already (a later signed record commits to it), but a
        signature altered on the way, or one the device got wrong, would otherwise sit in
        the central copy unnoticed. Done in small steps while the inbox is empty, so a
        backlog drains first; ``sig_checked`` becomes 1, or -1 with a ``bad_signature``
        alarm.
        """
        with self._lock:
            rows = self.store.unchecked(limit)
            marks = []
            for site, device, seq, body in rows:
                # Parsed, hashed and matched to the device's key when it was stored: only
                # the signature is left to check, under the key of its epoch.
                why = self.epochs.problem((site, device), json.loads(body))
                bad = why is not None
                if bad:
                    self._alarms.found(site, device, "bad_signature", f"seq {seq}: {why}")
                marks.append(((site, device), seq, not bad))
            self.store.mark_checked_many(marks)
            self._flush_locked()
            self._audit_due = len(rows) == limit
        with self.changed:
            self.changed.notify_all()

    def unchecked(self) -> int:
        """How many stored records still wait for their own signature check."""
        with self._lock:
            return self.store.count_unchecked()

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
        """Do what :func:`edged.central.ingest.decide` says for ``rec``. ``authentic``:
        it is proven signed (by its run); ``checked``: its own signature was verified."""
        with self._lock:
            if isinstance(rec, str):
                kind = "wrong_origin" if rec.startswith(WRONG_ORIGIN) else "bad_record"
                self._alarms.found(site, device, kind, rec)
                return
            dev = (site, device)
            d = decide(_StoredChain(self, dev), rec, authentic=authentic, checked=checked)
            act = d.action
            if act == ingest.STORE:
                self._store_locked(dev, payload, rec, d.checked)
            elif act == ingest.ALARM:
                self._alarms.found(site, device, d.alarm, d.detail)
            elif act == ingest.FORK:
                self._keep_fork_locked(dev, payload, rec)
            elif act == ingest.PARK:
                self.parked += 1
                if not self.store.add_pending(dev, rec, payload.decode("utf-8")):
                    log.info("gap_detected", site=site, device=device, got=rec["seq"],
                             expected=d.resend_from)  # fmt: skip
                    self._ask_resend(site, device, d.resend_from)
            elif act == ingest.LATE:
                self._insert_locked(dev, payload, rec, d.checked, leaf=False)
            elif act == ingest.RESEND:
                self._ask_resend(site, device, d.resend_from)
            elif act == ingest.ROLLBACK_STORE:
                last, _h = self._head_locked(dev)
                self._store_locked(dev, payload, rec, d.checked)
                self.store.add_discontinuity(
                    dev, rec["seq"], rec["found_seq"], rec["known_seq"], last,
                    str(rec.get("source")), rec.get("ts"),
                )  # fmt: skip
                self._alarms.found(site, device, d.alarm, d.detail)
            elif act == ingest.WAIT_EPOCH:
                log.info("epoch_not_yet_known", site=site, device=device, seq=rec["seq"])
            # DUPLICATE: nothing to do

    def _insert_locked(
        self,
        dev: tuple[str, str],
        payload: bytes,
        rec: dict[str, Any],
        checked: bool,
        *,
        leaf: bool = True,
    ) -> None:
        # Group commit: a burst is stored in one transaction; receipts are sent only
        # after _flush() has committed what they cover. Kept as the device sent it.
        self.store.insert(dev, rec, payload.decode("utf-8"), checked, leaf=leaf)
        self._audit_due |= not checked

    def _store_locked(
        self, dev: tuple[str, str], payload: bytes, rec: dict[str, Any], checked: bool
    ) -> None:
        """Append ``rec`` to the device's stored chain (verified by the caller)."""
        self._insert_locked(dev, payload, rec, checked)
        self._heads[dev] = (rec["seq"], rec["hash"])
        self._dirty.add(dev)
        self._touched.add(dev)
        rtype = str(rec.get("type"))
        if rtype == CERT:
            why = self.epochs.learn(dev, rec)
            if why is not None:
                self._alarms.found(*dev, "epoch_conflict", f"seq {rec['seq']}: {why}")
        if rtype == "acl.applied" and type(rec.get("version")) is int:
            self.store.note_acl_applied(dev, rec["version"], str(rec.get("ts")))
        if is_alarm(rtype):
            # A device's alarm: stored with the record, announced once committed.
            self._announce.append(self._alarms.of_record(dev, rec))
        self._uncommitted += 1
        self.stored += 1
        self._gap_asked.pop(dev, None)
        self._went_back_alarmed.pop(dev, None)

    # -- a journal that went back ----------------------------------------------------
    def _stored_hash(self, dev: tuple[str, str], seq: int) -> str | None:
        known = self._known.get((*dev, seq))
        return known if known is not None else self.store.hash_at(dev, seq)

    def _in_fork(self, dev: tuple[str, str], seq: int, h: str) -> bool:
        return self.store.in_fork(dev, seq, h)

    def _keep_fork_locked(self, dev: tuple[str, str], payload: bytes, rec: dict[str, Any]) -> None:
        """A genuine record that is not on the stored chain: the device's journal went
        back and grew again. Nothing it signed is dropped: kept apart, one alarm where the
        fork leaves the chain, and the device is told what this store holds."""
        new = self.store.add_fork(dev, rec, payload.decode("utf-8"))
        if new and not self._in_fork(dev, rec["seq"] - 1, rec["prev"]):
            self._alarms.found(
                *dev,
                "rewrite",
                f"seq {rec['seq']} differs from the stored record: the device's journal"
                f" forks from the stored chain after seq {rec['seq'] - 1}; kept apart",
            )
        self._tell_head_locked(dev)

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
        self.link.publish(topics.leaf(*dev, "cmd"), json.dumps(cmd), qos=1)

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
        if type(head) is not int or self._trusted(site, device)[0] is None:
            return
        dev = (site, device)
        with self._lock:
            if "backlog" in doc:  # a heartbeat: what the central alarms look at
                self.store.note_status(dev, int(time.time() * 1000), doc)
            if known is not True:
                return
            last = self.store.head(dev)[0]
            if type(acked) is int and acked < min(last, self._receipted.get(dev, 0)):
                # Our receipt was lost (a broker dies between taking and delivering it):
                # the device waits for one. The receipt loop sends it again.
                self._receipted[dev] = acked
                self._touched.add(dev)
            if head > last:
                self._lagging.setdefault(dev, time.monotonic())
            elif head < last and self._reported_after(dev, head + 1, doc.get("ts")):
                if self._went_back_alarmed.get(dev) != head:
                    self._went_back_alarmed[dev] = head
                    self._alarms.found(
                        site,
                        device,
                        "rollback",
                        f"the device reports its journal's head at seq {head}, below seq"
                        f" {last} held here: its journal went back",
                    )
                self._tell_head_locked(dev)

    def _acl_published(self, site: str, device: str, payload: bytes) -> None:
        """An access list (signed envelope) published for a device: from now on it has
        ``watch.acl`` seconds to apply it. Only its version is read here: the device checks
        the admin's signature, and a forged list can at worst raise this alarm."""
        if self._trusted(site, device)[0] is None or len(payload) > 4 << 20:
            return
        try:
            doc = json.loads(payload)
            version = doc.get("version") if isinstance(doc, dict) else None
        except ValueError:
            return
        if type(version) is int and 0 < version < 2**62:
            with self._lock:
                self.store.note_acl_published((site, device), version, int(time.time() * 1000))

    def _reported_after(self, dev: tuple[str, str], seq: int, ts: Any) -> bool:
        """Was record ``seq`` written before the device reported a head below it? Only
        then did its journal go back: with several collectors, a heartbeat can be handled
        after records the device wrote later, and such a report is merely old."""
        if not isinstance(ts, str):
            return False
        written = self.store.ts_at(dev, seq)
        try:
            return written is not None and parse_ts(written) < parse_ts(ts)
        except ValueError:
            return False

    def _journal_unavailable(self, site: str, device: str, payload: bytes) -> None:
        """A device says, signed, that its journal cannot record: a central alarm, since
        the device's own alarm record can only follow once its storage works again."""
        try:
            # Signed by the key in force at the device: one of its known epochs'.
            with self._lock:
                chain = self.epochs.chain((site, device))
            kid = str(json.loads(payload).get("key_id")) if len(payload) <= 4096 else ""
            keys = {key_id_of(e.key): e.key for e in chain.epochs} if chain else {}
            doc = parse_signed(payload, keys.get(kid), max_bytes=4096)
        except (ValueError, AttributeError):
            log.warning("device_alarm_ignored", site=site, device=device, reason="malformed")
            return
        except Rejected as e:
            log.warning("device_alarm_ignored", site=site, device=device, reason=e.reason)
            return
        if doc.get("site") != site or doc.get("device") != device:
            log.warning("device_alarm_ignored", site=site, device=device, reason="wrong_scope")
            return
        with self._lock:
            self._alarms.found(
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
        self.link.publish(topics.leaf(site, device, "cmd"), json.dumps(cmd), qos=1)

    def flush(self) -> None:
        """Commit what is stored so far (otherwise committed at the next receipt)."""
        with self._lock:
            self._flush_locked()

    def _head_locked(self, key: tuple[str, str]) -> tuple[int, str]:
        if key not in self._heads:
            self._heads[key] = self.store.head(key)
        return self._heads[key]

    def _flush_locked(self) -> None:
        if self._dirty:
            self.store.save_heads([(*key, *self._heads[key]) for key in self._dirty])
            self._dirty.clear()
        self.store.commit()
        self.witness.witness(self.store, self.store.take_tree_events())
        # Heads are the store's between transactions: another collector may move them.
        self._heads.clear()
        self._known = {}
        self._uncommitted = 0
        announce, self._announce = self._announce, []
        for topic, payload in announce:
            self.link.publish(topic, payload, qos=1)

    @property
    def witness_name(self) -> str:
        """The collector's name in the notes it cosigns."""
        return self.witness.name

    def _send_receipts(self, devs: list[tuple[str, str]]) -> None:
        """Receipts for what is committed of ``devs``: their heads read in one query,
        under the lock once (an audit or a batch between would starve a per-device loop)."""
        if not devs:
            return
        with self._lock:
            if self._stop.is_set():
                return
            self._flush_locked()
            heads = self.store.heads_of(devs)
            self.store.commit()
            due = []
            for dev, (seq, h) in sorted(heads.items()):
                if seq > self._receipted.get(dev, 0):
                    self._receipted[dev] = seq
                    due.append((dev, seq, h))
        now = format_ts(int(time.time() * 1000))
        for (site, device), seq, h in due:
            receipt = sign_doc(
                {"site": site, "device": device, "seq": seq, "hash": h, "ts": now}, self._key
            )
            self.link.publish(topics.leaf(site, device, "receipt"), json.dumps(receipt), qos=1)

    def _receipt_loop(self) -> None:
        """Receipts for whatever was committed since the last one, twice a second; resend
        requests to devices that said they have more and then sent nothing."""
        while not self._stop.wait(self._receipt_seconds):
            with self._lock:
                if self._stop.is_set():
                    return
                self._alarms.flush_suppressed()
                self._flush_locked()
                devices, self._touched = sorted(self._touched), set()
                ask, self._resend_queue = (
                    self._resend_queue[:RESENDS_PER_TICK],
                    self._resend_queue[RESENDS_PER_TICK:],
                )
                # Records waiting for one that is not coming: ask for it.
                stuck = self.store.pending_devices(int(time.time() * 1000) - PENDING_PATIENCE_MS)
                self.store.commit()
            for site, device, from_seq in ask:
                self._ask_resend(site, device, from_seq, force=True)
            self._send_receipts(devices)
            for site, device, _first in stuck:
                with self._lock:
                    self._ask_resend(site, device, self.store.head((site, device))[0] + 1)
                    self.store.commit()
            now = time.monotonic()
            for (site, device), since in list(self._lagging.items()):
                if now - since >= 1.0 and self._lagging.pop((site, device), None) is not None:
                    with self._lock:
                        self._ask_resend(site, device, self._head_locked((site, device))[0] + 1)
                        self._heads.clear()
                        self.store.commit()
            if now >= self._next_watch:
                self._next_watch = now + self.watch.every
                self.check_devices()

    # -- checkpoints -----------------------------------------------------------------
    def _checkpoint(self, site: str, device: str, payload: bytes) -> None:
        with self._lock:
            rec = self._verify(site, device, payload)
            if isinstance(rec, str):
                self._alarms.found(site, device, "bad_checkpoint", rec)
                return
            seq = rec["seq"]
            best = self.store.best_checkpoint((site, device))
            if seq < best:
                self._alarms.found(
                    site,
                    device,
                    "rollback",
                    f"checkpoint at seq {seq} is older than seq {best} seen before",
                )
                self._tell_head_locked((site, device))
                return
            stored = self.store.hash_at((site, device), seq)
            if stored is not None and stored != rec["hash"]:
                self._alarms.found(site, device, "rewrite", f"checkpoint at seq {seq} differs")
                self._tell_head_locked((site, device))
                return
            self.store.note_checkpoint((site, device), self._head_locked((site, device)), seq)
            self._heads.clear()

    # -- queries ---------------------------------------------------------------------
    def seqs(self, site: str, device: str) -> list[int]:
        with self._lock:
            return self.store.seqs((site, device))

    def discontinuities(self, site: str, device: str) -> list[tuple[int, int, int, int]]:
        """Where the device's chain skips: (seq, found_seq, known_seq, central_seq)."""
        with self._lock:
            return self.store.discontinuities((site, device))

    def forked(self, site: str, device: str) -> list[int]:
        """The seqs of the device's records kept apart from its chain."""
        with self._lock:
            return self.store.forked((site, device))

    def alarms(self) -> list[tuple[str, str]]:
        with self._lock:
            return self.store.alarms()

    def store_cosigned(self, site: str, device: str) -> list[tuple[int, str]]:
        """The device's checkpoints this collector cosigned: (tree size, note)."""
        with self._lock:
            out = self.store.cosigned((site, device))
            self.store.commit()
            return out

    def alarm_origins(self) -> set[tuple[str, str]]:
        with self._lock:
            return self.store.alarm_origins()

    def hashes(self, site: str, device: str) -> list[str]:
        with self._lock:
            return self.store.hashes((site, device))

    def wait_for(self, pred: Any, timeout: float = 30.0) -> bool:
        """Wait until ``pred()`` holds (checked after each stored record)."""
        with self.changed:
            return self.changed.wait_for(pred, timeout)
