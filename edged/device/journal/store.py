"""The append-only journal: signed, hash-chained records in SQLite (R9, R13, R14).

Every append is one SQLite transaction in WAL mode with synchronous=FULL, so it returns
only after the record is on disk; a crash mid-transaction is rolled back by SQLite and
never leaves a gap. Triggers refuse UPDATE and DELETE as defence in depth; the hash
chain and signatures are what make tampering detectable (see :mod:`edged.device.journal.verify`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from edged.clock import Clock, read_boot_id
from edged.core.state import Now
from edged.device.journal import prune as pruning
from edged.device.journal import queries, rollback, schema, seal, tree
from edged.device.journal.epochs import Epochs
from edged.device.journal.witness import Head, HeadWitness
from edged.device.keys import DeviceKeys
from edged.device.keystore import EpochKey
from edged.errors import JournalCorruptError, JournalError, PrivacyError
from edged.log import get_logger
from edged.protocol.epochs import CERT, EpochChain
from edged.protocol.privacy import check_fields
from edged.protocol.records import (
    GENESIS,
    SNAPSHOT,
    Record,
    format_ts,
)

log = get_logger("journal")

# SQLite primary result codes that mean the storage failed under the open connection:
# IOERR, READONLY, CANTOPEN, CORRUPT, NOTADB. (FULL is not one: the file is fine.)
_STORAGE_FAULTS = frozenset({10, 8, 14, 11, 26})

class Journal:
    """Append-only, signed, hash-chained record store. Owned by one thread.

    ``append`` and ``append_many`` return only after the records are durably committed.
    A checkpoint record (head seq and hash, signed like any record) is added every
    ``checkpoint_every`` records or ``checkpoint_seconds`` seconds, so that a central
    copy can prove the local file was not truncated or rolled back.
    """

    def __init__(
        self,
        path: Path,
        keys: DeviceKeys,
        clock: Clock,
        *,
        boot_id: str | None = None,
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 3600.0,
        site: str = "",
        device: str = "",
        witness: HeadWitness | None = None,
        epoch_records: int = 100_000,
        epoch_seconds: float = 86400.0,
    ) -> None:
        if checkpoint_every < 1 or checkpoint_seconds <= 0:
            raise ValueError("checkpoint_every must be >= 1 and checkpoint_seconds > 0")
        self.epochs = Epochs(keys, clock, epoch_records, epoch_seconds)
        self.path = Path(path)
        self._keys = keys
        self._clock = clock
        self._boot_id = boot_id or read_boot_id()
        self._cp_every = checkpoint_every
        self._cp_ns = int(checkpoint_seconds * 1_000_000_000)
        # Every record names its site and device inside what is signed, so a record can
        # never be passed off as another site's (R9, R13).
        self._origin = {"site": site, "device": device} if site or device else {}
        self._witness = witness
        # A later certificate the key store holds than the journal: the file went back.
        self._key_store_head: Head | None = None
        self._conn: sqlite3.Connection | None = None
        self._stale = False  # a storage fault: open the file again before the next use
        self._open()

    # -- opening ---------------------------------------------------------------------
    def _open(self, *, create: bool = True) -> None:
        if not self.path.exists():
            if not create:
                # Never start a new journal behind the back of a missing one (an unmounted
                # file system shows the empty directory under it).
                raise JournalError(f"{self.path}: journal file is missing")
            # Created 0600 up front: SQLite gives -wal and -shm the same mode.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        created = format_ts(self._clock.wall_ms())
        conn = schema.open_checked(self.path, self._keys.key_id, created)
        try:
            meta, self._origin = schema.check_meta(conn, self.path, self._origin, self._keys.key_id)
        except (JournalError, JournalCorruptError):
            conn.close()
            raise
        self._conn = conn
        schema.grow_tree_of_old_journal(conn, self.path)
        self._key_store_head = self.epochs.take_up(conn, meta.get("created", ""), self.path)
        self._frontier = tree.load_frontier(conn)
        row = conn.execute("SELECT max(seq) FROM records WHERE type = 'checkpoint'").fetchone()
        self._last_cp_seq = row[0] or 0
        self._last_cp_mono = self._clock.mono_ns()
        if self._key_store_head is not None:
            # The key store saw this journal at a later certificate than it holds: the
            # file went back. Said, signed, before anything else (docs/rollback.md).
            known, self._key_store_head = self._key_store_head, None
            if self.find_rollback([known]) is not None:
                self.append_rollback(known)

    @property
    def epoch(self) -> int:
        return self.epochs.signer.epoch

    @property
    def chain(self) -> EpochChain:
        return self.epochs.chain

    def _checkpoint_fields(
        self, tw: tree.TreeWriter, seq: int, prev: str, signer: EpochKey | None = None
    ) -> dict[str, Any]:
        signer = signer or self.epochs.signer
        return {
            "head_seq": seq,
            "head_hash": prev,
            **tree.checkpoint_fields(
                tw, signer, self._origin.get("site", ""), self._origin.get("device", "")
            ),
        }

    @property
    def tree_size(self) -> int:
        return self._frontier.size

    def contradicts(self, size: int, root: bytes) -> str | None:
        """Whether this journal's tree contradicts a checkpoint of ``size`` and ``root``
        that someone else signed (:func:`edged.device.journal.tree.contradicts`)."""
        return tree.contradicts(self.conn, self._frontier.size, size, root)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._stale:
            self._reopen()
        if self._conn is None:
            raise JournalError(f"{self.path}: journal is closed")
        return self._conn

    def _failed(self, e: sqlite3.Error) -> None:
        """Note a storage fault (I/O error, read-only or vanished file): the connection may
        be bound to a file system that is gone, so the next use opens the file again."""
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _STORAGE_FAULTS:
            self._stale = True

    def _reopen(self) -> None:
        """Open the file again after a storage fault; JournalError while it persists."""
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        self._open(create=False)
        self._stale = False

    # -- state -----------------------------------------------------------------------
    def _head_in_tx(self) -> tuple[int, str]:
        row = self.conn.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last committed record; (0, GENESIS) when empty."""
        try:
            return self._head_in_tx()
        except sqlite3.Error as e:
            self._failed(e)
            raise JournalError(f"{self.path}: cannot read the head ({e})") from None

    @property
    def key_id(self) -> str:
        return self._keys.key_id

    @property
    def boot_id(self) -> str:
        return self._boot_id

    @property
    def witness(self) -> HeadWitness | None:
        return self._witness

    # -- writing ---------------------------------------------------------------------
    def _now(self) -> tuple[str, int, bool]:
        # Read once per transaction: records committed together share their moment.
        return format_ts(self._clock.wall_ms()), self._clock.mono_ns(), self._clock.synced()

    def _build(
        self, seq: int, prev: str, rtype: str, fields: dict[str, Any],
        now: tuple[str, int, bool], signer: EpochKey | None = None,
    ) -> tuple[Record, tuple[Any, ...]]:  # fmt: skip
        """The signed record and its table row, signed by ``signer`` (the key in force)."""
        return seal.build(seq, prev, rtype, fields, now, signer or self.epochs.signer,
                          self._keys.key_id, self._boot_id, self._origin)  # fmt: skip

    def append(self, rtype: str, **fields: Any) -> Record:
        """Append one record; returns after it is durably committed."""
        return self.append_many([(rtype, fields)])[0]

    def append_many(self, items: Iterable[tuple[str, dict[str, Any]]]) -> list[Record]:
        """Append several records in one transaction (group commit); all or none."""
        items = list(items)
        for rtype, fields in items:
            seal.validate(rtype, fields)
        if not items:
            return []
        with self._write() as conn:
            # Head read inside the write lock: correct even if another writer slipped in.
            seq, prev = self._head_in_tx()
            tw = tree.TreeWriter(conn, seq, self._frontier)
            now = self._now()
            out: list[Record] = []
            rows = []
            wrote_cp = False
            signer, cert = self.epochs.signer, None
            if self.epochs.due(seq + 1):
                seq += 1
                fields, signer = self.epochs.prepare_next(tw.size)
                # The certificate of the next key, signed by the key in force.
                rec, row = self._build(seq, prev, CERT, fields, now, self.epochs.signer)
                tw.add(rec)
                prev, cert = rec.hash, rec
                rows.append(row)
                conn.execute(
                    "INSERT INTO epochs (epoch, seq, wire) VALUES (?, ?, ?)",
                    (signer.epoch, seq, rec.wire().decode()),
                )
            for rtype, fields in items:
                seq += 1
                rec, row = self._build(seq, prev, rtype, fields, now, signer)
                tw.add(rec)
                prev = rec.hash
                out.append(rec)
                rows.append(row)
                if self._checkpoint_due(seq):
                    wrote_cp = True
                    seq += 1
                    rec, row = self._build(
                        seq,
                        prev,
                        "checkpoint",
                        self._checkpoint_fields(tw, seq - 1, prev, signer),
                        now,
                        signer,
                    )
                    tw.add(rec)
                    prev = rec.hash
                    rows.append(row)
                    self._last_cp_seq = seq
                    self._last_cp_mono = now[1]
            conn.executemany(schema.INSERT, rows)
            tw.flush()
            if wrote_cp:
                self._mark_head(seq)
        self._frontier = tw.frontier  # committed: the tree has grown
        if cert is not None:
            self.epochs.taken_up(cert, signer)
        self._witnessed(seq, prev)
        return out

    def _witnessed(self, seq: int, h: str) -> None:
        # After the commit returned: the witness may lag the journal, never lead it.
        if self._witness is not None:
            self._witness.update(seq, h)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back with nothing recorded
        (and the checkpoint state read again: a rolled-back checkpoint never happened)."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            self._failed(e)
            self._resync_checkpoint_state()
            raise JournalError(f"{self.path}: append failed, nothing recorded ({e})") from None
        except (PrivacyError, JournalError):
            self._resync_checkpoint_state()
            raise

    def _mark_head(self, seq: int) -> None:
        # The head marker moves with each checkpoint, not each append: one page less to
        # write per commit. A tail cut deeper than the last checkpoint is seen locally;
        # a shallower one by the central copy.
        self.conn.execute("UPDATE meta SET value = ? WHERE key = 'head_seq'", (str(seq),))

    def _resync_checkpoint_state(self) -> None:
        try:
            row = self.conn.execute(
                "SELECT max(seq) FROM records WHERE type = 'checkpoint'"
            ).fetchone()
            self._last_cp_seq = row[0] or 0
        except sqlite3.Error:
            pass

    def _checkpoint_due(self, seq: int) -> bool:
        if seq - self._last_cp_seq >= self._cp_every:
            return True
        return self._clock.mono_ns() - self._last_cp_mono >= self._cp_ns and seq > self._last_cp_seq

    def maybe_checkpoint(self) -> Record | None:
        """Append a checkpoint if records were added and the period has passed (loop tick)."""
        seq, _ = self.head()
        if seq > self._last_cp_seq and self._clock.mono_ns() - self._last_cp_mono >= self._cp_ns:
            return self.checkpoint()
        return None

    def checkpoint(self) -> Record:
        """Append a checkpoint now, whatever the period."""
        rec = self._append_one(
            lambda seq, prev: (
                seq + 1,
                "checkpoint",
                {"head_seq": seq, "head_hash": prev},
            )
        )
        self._last_cp_seq = rec.seq
        self._last_cp_mono = self._clock.mono_ns()
        return rec

    def _append_one(self, make: Callable[[int, str], tuple[int, str, dict[str, Any]]]) -> Record:
        """One record whose seq and fields depend on the head, written in one transaction
        that also moves the head marker: ``make(head_seq, head_hash)`` gives (seq, type,
        fields)."""
        with self._write() as conn:
            seq, prev = self._head_in_tx()
            tw = tree.TreeWriter(conn, seq, self._frontier)
            at, rtype, fields = make(seq, prev)
            if rtype == "checkpoint":
                fields = {**fields, **self._checkpoint_fields(tw, seq, prev)}
            rec, row = self._build(at, prev, rtype, fields, self._now())
            tw.add(rec)
            conn.execute(schema.INSERT, row)
            tw.flush()
            self._mark_head(rec.seq)
        self._frontier = tw.frontier
        self._witnessed(rec.seq, rec.hash)
        return rec

    # -- rollback --------------------------------------------------------------------
    def find_rollback(self, remembered: Iterable[Head]) -> Head | None:
        """The furthest remembered head this journal does not contain, or None
        (:mod:`edged.device.journal.rollback`)."""
        try:
            return rollback.furthest_missing(self.conn, remembered)
        except sqlite3.Error as e:
            self._failed(e)
            raise JournalError(f"{self.path}: cannot read ({e})") from None

    def append_rollback(self, known: Head, **fields: Any) -> Record:
        """Record that the journal went back: a signed ``alarm.journal_rollback``. The
        records in between are the discontinuity: kept centrally if they were synced,
        lost if not (docs/rollback.md)."""
        check_fields(fields)
        return self._append_one(lambda s, h: rollback.rollback_record(known, s, h, fields))

    # -- reading (edged.device.journal.queries) -------------------------------------
    def newest_synced_ts(self, within: int) -> str | None:
        return queries.newest_synced_ts(self.conn, self.head()[0], within)

    def last_of_type(self, rtype: str) -> dict[str, Any] | None:
        return queries.last_of_type(self.conn, rtype)

    def bodies(self, types: Iterable[str]) -> Iterator[dict[str, Any]]:
        return queries.bodies(self.conn, types)

    def records(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Record]:
        return queries.records(self.conn, from_seq, to_seq)

    # -- pruning (edged.device.journal.prune) -----------------------------------------
    def first_seq(self) -> int:
        return pruning.first_seq(self.conn)

    def covering_snapshot(self) -> dict[str, Any] | None:
        return pruning.covering_snapshot(self.conn)

    def first_seq_since(self, ts: str) -> int:
        return pruning.first_seq_since(self.conn, self.head()[0], ts)

    def prune(self, keep_from: int, receipted: int) -> Record | None:
        """Drop the records before seq ``keep_from`` (all receipted by the central copy:
        ``keep_from <= receipted + 1``) after a signed ``journal.snapshot`` that carries
        their lasting state and the hash of the last one dropped. The snapshot, if
        written; None when there is nothing to drop."""
        first = self.first_seq()
        keep_from = min(keep_from, receipted + 1, self.head()[0])
        if keep_from <= max(first, 1):
            return None
        row = self.conn.execute(
            "SELECT hash FROM records WHERE seq = ?", (keep_from - 1,)
        ).fetchone()
        if row is None:
            raise JournalError(f"{self.path}: cannot prune: seq {keep_from - 1} is not held")
        c = self._clock
        now = Now(c.mono_ns(), c.wall_ms(), c.synced())
        state = pruning.dropped_state(self.conn, keep_from, now, self._boot_id)
        snap = self.append(SNAPSHOT, kept_from_seq=keep_from, kept_from_prev=row[0],
                           receipted_seq=receipted, dropped=keep_from - max(first, 1),
                           **state)  # fmt: skip
        with self._write() as conn:
            pruning.delete_below(conn, keep_from)
        # The pages as they were before the DELETE stay in the WAL until it is written
        # back and truncated (R25: nothing readable of what was disposed of); outside the
        # write transaction, where a checkpoint can run.
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return snap

    # -- lifecycle -------------------------------------------------------------------
    def close(self) -> None:
        """Close the file; safe to call more than once."""
        if self._witness is not None:
            self._witness.close()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
