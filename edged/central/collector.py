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

This class is the wiring and the supervision: :mod:`~edged.central.link` (MQTT),
:mod:`~edged.central.keeper` (the chains, over the pure :mod:`~edged.central.ingest`),
:mod:`~edged.central.alarms`, :mod:`~edged.central.watch`, :mod:`~edged.central.witness`
and :mod:`~edged.central.replies`; here are the ingest thread, the receipt timer, and what
devices report besides records (status, checkpoints, access lists, a journal that
cannot record).
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edged.central.alarms import Alarms
from edged.central.keeper import ChainKeeper
from edged.central.link import CollectorLink
from edged.central.notify import Notifier, NotifyConfig
from edged.central.replies import Replies
from edged.central.reported import head_report, journal_unavailable, judge_checkpoint, judge_head
from edged.central.store import CentralStore, PostgresStore, open_store
from edged.central.trust import DeviceEpochs, TrustStore
from edged.central.verify import check_record
from edged.central.watch import DeviceWatch, Watch
from edged.central.witness import Witness
from edged.log import get_logger
from edged.protocol.keys import key_id_of
from edged.protocol.mqtt import Broker
from edged.protocol.records import format_ts
from edged.protocol.signed import Rejected

log = get_logger("collector")
T = TypeVar("T")

# Resend requests after a (re)connect go out at this many per receipt tick.
RESENDS_PER_TICK = 50
# The audit of each record's own signature (a run's last one proves the run already)
# waits for this much quiet, and takes a small slice every AUDIT_EVERY s under load.
AUDIT_IDLE = 0.5
AUDIT_EVERY = 1.0
# A record waiting for the one before it this long: that one is not on its way (another
# collector would have stored it by now): the device is asked to resend.
PENDING_PATIENCE_MS = 2000


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
        notify: NotifyConfig | None = None,
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
        self.epochs = DeviceEpochs(self.trust, self.store.trees.epoch_certs)
        self._next_watch = 0.0
        self._leading = False
        self._next_daily = 0.0
        self._lock = threading.RLock()  # re-entered by a batch's steps
        self._resend_queue: list[tuple[str, str, int]] = []
        self._receipted: dict[tuple[str, str], int] = {}
        # Devices whose status says they hold records we lack, and since when.
        self._lagging: dict[tuple[str, str], float] = {}
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._inbox: queue.Queue[tuple[str, str, bytes] | None] = queue.Queue()
        self._ingest_thread = threading.Thread(target=self._ingest, name="ingest", daemon=True)
        self.link = CollectorLink(
            broker,
            key_id_of(key.public_key()),
            self._on_message,
            share=share,
            sites=self.sites,
            on_connected=self._on_connect,
        )
        self.subscribed = self.link.subscribed
        # Alarms that reach people (edged.central.notify): queued with each alarm,
        # delivered by a thread of its own.
        self.notifier = (
            Notifier(notify, self.store, self._lock) if notify is not None and notify.rules
            else None
        )  # fmt: skip
        self._alarms = Alarms(
            self.store, self.link.publish, lambda s, d: self._trusted(s, d)[0] is not None,
            notify=self.notifier.enqueue if self.notifier is not None else None,
        )  # fmt: skip
        if self.notifier is not None:
            self.notifier.on_failing(self._alarms.condition)
        self.device_watch = DeviceWatch(self.store, self._alarms, self.watch, self._mine)
        self.witness = Witness(key, self.epochs, self._alarms, self.link.publish)
        self.replies = Replies(key, self.link.publish)
        self.keeper = ChainKeeper(
            self.store, self.trust, self.epochs, self._alarms, self.replies, self.witness,
            self.link.publish, self._lock,
        )  # fmt: skip
        self.changed = self.keeper.changed

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self.notifier is not None:
            self.notifier.start()
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
        if self.notifier is not None:
            self.notifier.close()
        with self._lock:
            self.keeper.flush_locked()
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
            self.keeper.flush_locked()
            devices = [d for d in self.store.devices() if self._mine(d[0])]
            self.store.commit()
            random.shuffle(devices)
            self._resend_queue = [(s, d, last + 1) for s, d, last in devices]
            # A receipt for each, once: what was committed before a restart may be unreceipted.
            self.keeper.touch(*((s, d) for s, d, _last in devices))

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
                first = self._inbox.get(timeout=AUDIT_IDLE if self.keeper.audit_due else None)
            except queue.Empty:
                while self.keeper.audit_due and self._inbox.empty():
                    self.audit_signatures()
                continue
            if self.keeper.audit_due and time.monotonic() >= next_slice:
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
        """Store a burst of (site, device, wire record) (:meth:`ChainKeeper.batch`), then
        receipt the devices far enough ahead of their last receipt (the timer sends the
        rest)."""
        for site, device, _p in items:
            self._lagging.pop((site, device), None)  # its records are coming
        due = self.keeper.batch(items)
        self._send_receipts(
            [d for d, seq in due.items() if seq - self._receipted.get(d, 0) >= self._receipt_every]
        )

    def audit_signatures(self, limit: int = 256) -> None:
        """Check the own signature of a few records stored on their run's proof."""
        self.keeper.audit_signatures(limit)

    def unchecked(self) -> int:
        """How many stored records still wait for their own signature check."""
        with self._lock:
            return self.store.count_unchecked()

    def _head_report(self, site: str, device: str, payload: bytes) -> None:
        """A device's live status or heartbeat says where its journal's head is
        (:func:`edged.central.reported.judge_head`). Lagging devices are asked for what
        we lack if none has arrived a second later (during a drain the status always says
        "more", and a resend would only repeat what is on its way)."""
        r = head_report(payload)
        if r is None or self._trusted(site, device)[0] is None:
            return
        dev = (site, device)
        with self._lock:
            if r.heartbeat:
                self.store.reports.note_status(dev, int(time.time() * 1000), r.doc)
            if not r.known:
                return
            last = self.store.head(dev)[0]
            seen = judge_head(r, last, self._receipted.get(dev, 0),
                              lambda seq: self.store.ts_at(dev, seq))  # fmt: skip
            if seen.receipt_from is not None:  # the receipt loop sends it again
                self._receipted[dev] = seen.receipt_from
                self.keeper.touch(dev)
            if seen.lagging:
                self._lagging.setdefault(dev, time.monotonic())
            elif seen.went_back:
                if self.keeper.went_back_to(dev, r.head):
                    self._alarms.found(site, device, "rollback",
                        f"the device reports its journal's head at seq {r.head}, below seq"
                        f" {last} held here: its journal went back")  # fmt: skip
                self.keeper.tell_head(dev)

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
            now_ms = int(time.time() * 1000)
            with self._lock:
                self.store.reports.note_acl_published((site, device), version, now_ms)

    def _journal_unavailable(self, site: str, device: str, payload: bytes) -> None:
        """A device says, signed, that its journal cannot record: a central alarm, since
        the device's own alarm record can only follow once its storage works again."""
        with self._lock:
            chain = self.epochs.chain((site, device))
        keys = {key_id_of(e.key): e.key for e in chain.epochs} if chain else {}
        try:
            detail = journal_unavailable(payload, site, device, keys)
        except Rejected as e:
            log.warning("device_alarm_ignored", site=site, device=device, reason=e.reason)
            return
        except ValueError as e:
            log.warning("device_alarm_ignored", site=site, device=device, reason=str(e))
            return
        with self._lock:
            self._alarms.found(site, device, "journal_unavailable", detail)

    def _ask_resend(self, site: str, device: str, from_seq: int, *, force: bool = False) -> None:
        self.replies.resend((site, device), from_seq, force=force)

    def flush(self) -> None:
        """Commit what is stored so far (otherwise committed at the next receipt)."""
        with self._lock:
            self.keeper.flush_locked()

    @property
    def stored(self) -> int:
        return self.keeper.stored

    @property
    def parked(self) -> int:
        """Records that arrived ahead of their turn."""
        return self.keeper.parked

    def _send_receipts(self, devs: list[tuple[str, str]]) -> None:
        """Receipts for what is committed of ``devs``: their heads read in one query,
        under the lock once (an audit or a batch between would starve a per-device loop)."""
        if not devs:
            return
        with self._lock:
            if self._stop.is_set():
                return
            self.keeper.flush_locked()
            heads = self.store.heads_of(devs)
            self.store.commit()
            due = []
            for dev, (seq, h) in sorted(heads.items()):
                if seq > self._receipted.get(dev, 0):
                    self._receipted[dev] = seq
                    due.append((dev, seq, h))
        self.replies.receipts(due)

    def _receipt_loop(self) -> None:
        """Receipts for whatever was committed since the last one, twice a second; resend
        requests to devices that said they have more and then sent nothing."""
        while not self._stop.wait(self._receipt_seconds):
            with self._lock:
                if self._stop.is_set():
                    return
                self._alarms.flush_suppressed()
                self.keeper.flush_locked()
                devices = self.keeper.take_touched()
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
                        self._ask_resend(site, device, self.keeper.head((site, device))[0] + 1)
                        self.keeper.forget_heads()
                        self.store.commit()
            if now >= self._next_watch:
                self._next_watch = now + self.watch.every
                self.check_devices()

    # -- checkpoints -----------------------------------------------------------------
    def _checkpoint(self, site: str, device: str, payload: bytes) -> None:
        dev = (site, device)
        with self._lock:
            rec = self._verify(site, device, payload)
            if isinstance(rec, str):
                self._alarms.found(site, device, "bad_checkpoint", rec)
                return
            seq = rec["seq"]
            bad = judge_checkpoint(seq, rec["hash"], self.store.best_checkpoint(dev),
                                   self.store.hash_at(dev, seq))  # fmt: skip
            if bad is not None:
                self._alarms.found(site, device, *bad)
                self.keeper.tell_head(dev)
                return
            self.store.note_checkpoint(dev, self.keeper.head(dev), seq)
            self.keeper.forget_heads()

    # -- queries -----------------------------------------------------------------------
    def read(self, query: Callable[[CentralStore], T]) -> T:
        """``query(store)`` under the collector's lock, between its transactions."""
        with self._lock:
            out = query(self.store)
            self.store.commit()
            return out

    def wait_for(self, pred: Any, timeout: float = 30.0) -> bool:
        """Wait until ``pred()`` holds (checked after each stored record)."""
        with self.changed:
            return self.changed.wait_for(pred, timeout)
