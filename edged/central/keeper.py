"""Every device's chain in the central store, kept by one collector (R9, R13).

:func:`edged.central.ingest.decide` says what a record is to the stored chain; the keeper
carries it out inside one transaction per burst: it locks the burst's device heads,
proves each run with one signature, stores, parks what came early, keeps forks apart,
commits, and only then lets the collector receipt. Called with the collector's lock
held where a name ends in ``_locked``; the rest take it.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from edged.central import ingest
from edged.central.alarms import Alarms, Publish
from edged.central.ingest import decide
from edged.central.replies import Replies
from edged.central.store import CentralStore
from edged.central.trust import DeviceEpochs, TrustStore
from edged.central.verify import WRONG_ORIGIN, check_record
from edged.central.witness import Witness
from edged.log import get_logger
from edged.protocol.epochs import CERT
from edged.protocol.records import CLEARED, CLEARS, is_alarm

log = get_logger("collector")

Dev = tuple[str, str]


class _StoredChain:
    """One device's chain as the store (and the keeper's caches) hold it: the
    :class:`edged.central.ingest.ChainView` the decisions ask."""

    def __init__(self, keeper: ChainKeeper, dev: Dev) -> None:
        self.keeper, self.dev = keeper, dev

    def head(self) -> tuple[int, str]:
        return self.keeper.head(self.dev)

    def stored_hash(self, seq: int) -> str | None:
        return self.keeper._stored_hash(self.dev, seq)

    def in_fork(self, seq: int, h: str) -> bool:
        return self.keeper.store.in_fork(self.dev, seq, h)

    def in_gap(self, seq: int) -> bool:
        return self.keeper.store.in_gap(self.dev, seq)

    def epoch_problem(self, rec: dict[str, Any]) -> str | None:
        return self.keeper.epochs.problem(self.dev, rec)

    def knows_epoch(self, rec: dict[str, Any]) -> bool:
        return self.keeper.epochs.knows(self.dev, rec)


class ChainKeeper:
    def __init__(
        self,
        store: CentralStore,
        trust: TrustStore,
        epochs: DeviceEpochs,
        alarms: Alarms,
        replies: Replies,
        witness: Witness,
        publish: Publish,
        lock: threading.RLock,
    ) -> None:
        self.store, self.trust, self.epochs = store, trust, epochs
        self._alarms, self.replies, self._witness, self._publish = alarms, replies, witness, publish
        self._lock = lock
        self.audit_due = store.any_unchecked()
        # Each device's (last_seq, last_hash) within the open transaction: locked in the
        # store at a batch's start, written back and forgotten at its commit (another
        # collector may extend the chain next).
        self._heads: dict[Dev, tuple[int, str]] = {}
        self._dirty: set[Dev] = set()
        # Stored hashes of a batch's resent records, fetched at its start.
        self._known: dict[tuple[str, str, int], str] = {}
        # Devices whose chain this collector extended since its last receipts.
        self._touched: set[Dev] = set()
        # Devices alarmed for a journal that went back to that head (once each).
        self._went_back: dict[Dev, int] = {}
        # Announcements held until the commit that covers them.
        self._announce: list[tuple[str, bytes]] = []
        self._uncommitted = 0
        self.stored = 0
        self.parked = 0  # records that arrived ahead of their turn
        # Notified after each batch and audit: stored, duplicate or alarm.
        self.changed = threading.Condition()

    def touch(self, *devs: Dev) -> None:
        """These devices are due a receipt at the next tick."""
        self._touched.update(devs)

    def take_touched(self) -> list[Dev]:
        """The devices due a receipt, in order; none are due after."""
        out, self._touched = sorted(self._touched), set()
        return out

    def went_back_to(self, dev: Dev, head: int) -> bool:
        """The device's journal went back to ``head``: whether that is news (the alarm
        is raised once per head; a stored record of the device forgets it)."""
        if self._went_back.get(dev) == head:
            return False
        self._went_back[dev] = head
        return True

    def forget_heads(self) -> None:
        """The heads are the store's again (another collector may move them)."""
        self._heads.clear()

    def tell_head(self, dev: Dev) -> None:
        """Send the device, signed, the head this store holds for it."""
        self.replies.central_head(dev, lambda: self.head(dev))

    def batch(self, items: list[tuple[str, str, bytes]]) -> dict[Dev, int]:
        """Check and store a burst of (site, device, wire record) in arrival order, in one
        transaction that holds the burst's device heads: records that arrived ahead of
        their turn wait in the store until the one before them is stored (here or by
        another collector of the group). The committed head seq of each device."""
        checked = [
            check_record(p, *self.trust.key(site, device), origin=(site, device))
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
                self.flush_locked()
            except Exception:
                # Nothing of a failed batch is half-stored: the devices resend it.
                self._abort_locked()
                raise
        return due

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
        heads = {key: self.head(key) for key in {(s, d) for s, d, _p in items}}
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
            self.flush_locked()
            self.audit_due = len(rows) == limit
        with self.changed:
            self.changed.notify_all()

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
                    self.replies.resend(dev, d.resend_from)
            elif act == ingest.LATE:
                self._insert_locked(dev, payload, rec, d.checked, leaf=False)
            elif act == ingest.RESEND:
                self.replies.resend(dev, d.resend_from)
            elif act == ingest.ROLLBACK_STORE:
                last, _h = self.head(dev)
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
        self.audit_due |= not checked

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
            self.store.reports.note_acl_applied(dev, rec["version"], str(rec.get("ts")))
        if is_alarm(rtype):
            # A device's alarm: stored with the record, announced once committed.
            self._announce.append(self._alarms.of_record(dev, rec))
        elif rtype == CLEARED and rec.get("was") in CLEARS:
            # The device says its alarm ended: the open one it names is cleared.
            where = {
                k: rec[k] for k in ("door", "area", "cabinet") if isinstance(rec.get(k), str)
            }
            self.store.alarms.clear_device(dev, CLEARS[rec["was"]], where, str(rec.get("ts")))
        self._uncommitted += 1
        self.stored += 1
        self.replies.stored(dev)
        self._went_back.pop(dev, None)

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
        self.tell_head(dev)

    def head(self, key: tuple[str, str]) -> tuple[int, str]:
        if key not in self._heads:
            self._heads[key] = self.store.head(key)
        return self._heads[key]

    def flush_locked(self) -> None:
        if self._dirty:
            self.store.save_heads([(*key, *self._heads[key]) for key in self._dirty])
            self._dirty.clear()
        self.store.commit()
        self._witness.witness(self.store, self.store.trees.take_events())
        # Heads are the store's between transactions: another collector may move them.
        self._heads.clear()
        self._known = {}
        self._uncommitted = 0
        announce, self._announce = self._announce, []
        for topic, payload in announce:
            self._publish(topic, payload)
