"""Records once per (site, device, seq), the head of each device's chain, records that
arrived ahead of their turn, forks, discontinuities and retention: the core of the central
store, and :class:`CentralStore`, which joins it with the other parts over one connection
(a batch commits its records, heads, tree, alarms and present state together)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from edged.central.accounts import Accounts
from edged.central.present import Changes
from edged.central.store.alarms import AlarmTable
from edged.central.store.outbox import Outbox
from edged.central.store.reports import ReportTable
from edged.central.store.schema import ENGINE_MIGRATIONS, MIGRATION_FILLS, MIGRATIONS
from edged.central.store.sql import Dev, Sql
from edged.central.store.trees import TreeTable
from edged.protocol.records import GENESIS

# Records kept waiting for their turn, per device: beyond this the device is asked to
# resend instead (nothing from the network writes unbounded rows).
MAX_PENDING = 2000


class CentralStore(Sql):
    """The central side's SQL over a DB-API connection; engines supply the hooks."""

    def _write_rows(self) -> None:
        rows, self._rows = self._rows, []
        self._exec_many("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", rows)
        # In the same transaction: what is true now moves with the records.
        changes = Changes()
        for site, device, _seq, rtype, ts, _h, body, _c in rows:
            changes.add(site, device, rtype, ts, body)
        for sql, args in changes.statements():
            self._exec_many(sql, args)
        self.trees.keep_epochs(rows)
        self.trees.grow(rows)

    @property
    def accounts(self) -> Accounts:
        """The console's users, sessions and audit trail, on this connection."""
        return Accounts(self)

    @property
    def trees(self) -> TreeTable:
        """Each device's tree, epochs and cosigned checkpoints; it keeps what the open
        transaction grew, so it is one per store."""
        t: TreeTable | None = self.__dict__.get("_tree_table")
        if t is None:
            t = self._tree_table = TreeTable(self)
        return t

    @property
    def alarms(self) -> AlarmTable:
        """Device alarms, what the collector found, and watched conditions."""
        return AlarmTable(self)

    @property
    def reports(self) -> ReportTable:
        """What devices said (status, access lists), who is inside, summaries."""
        return ReportTable(self)

    @property
    def outbox(self) -> Outbox:
        """Notifications of alarms waiting for delivery, on this connection."""
        return Outbox(self)

    # -- schema ------------------------------------------------------------------------
    def _migrate(self) -> None:
        self.begin()
        self._x(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
            " applied_ts TEXT NOT NULL)"
        )
        done = {r[0] for r in self._x("SELECT version FROM schema_migrations").fetchall()}
        for version, statements in MIGRATIONS:
            if version in done:
                continue
            if version == 1:
                self._upgrade_unversioned()
            for sql in statements:
                self._x(sql.format(int=self.INT, id=self.AUTO_ID))
            for sql in ENGINE_MIGRATIONS.get(version, {}).get(self.ENGINE, []):
                self._x(sql)
            if version in MIGRATION_FILLS:
                part, fill = MIGRATION_FILLS[version]
                getattr(getattr(self, part), fill)()
            self._x(
                "INSERT INTO schema_migrations VALUES (?, ?)",
                (version, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())),
            )
        self.commit()

    def _upgrade_unversioned(self) -> None:
        """A store from before versions may lack columns added later to version 1."""

    def schema_version(self) -> int:
        return self._x("SELECT max(version) FROM schema_migrations").fetchone()[0]

    # -- devices -----------------------------------------------------------------------
    def head(self, dev: Dev) -> tuple[int, str]:
        """(last seq, its hash) of the device's stored chain; (0, GENESIS) if none."""
        row = self._x(
            "SELECT last_seq, last_hash FROM devices WHERE site=? AND device=?", dev
        ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def lock_heads(self, devs: Iterable[Dev]) -> dict[Dev, tuple[int, str]]:
        """The heads of ``devs``, locked until commit (in the caller's transaction): only
        the holder of a device's row extends its chain. Rows are made and locked in sorted
        order, so two collectors with overlapping batches wait, never deadlock."""
        self.begin()
        todo = sorted(set(devs))
        self._many(
            "INSERT INTO devices (site, device, last_seq, last_hash) VALUES (?,?,0,?)"
            " ON CONFLICT (site, device) DO NOTHING",
            [(*dev, GENESIS) for dev in todo],
        )
        rows = self._for_keys(
            "SELECT site, device, last_seq, last_hash, tree_size, tree_frontier FROM devices"
            " WHERE (site, device) IN (VALUES",
            todo,
            " ORDER BY site, device" + self._lock_suffix(),
        )
        # The trees come with the heads, locked with them: no second read per batch.
        self.trees.sizes.update({(s, d): (size, text) for s, d, _q, _h, size, text in rows})
        return {(s, d): (seq, h) for s, d, seq, h, _z, _t in rows}

    def heads_of(self, devs: Iterable[Dev]) -> dict[Dev, tuple[int, str]]:
        """The stored heads of many devices (those with one), in one query a 200."""
        rows = self._for_keys(
            "SELECT site, device, last_seq, last_hash FROM devices WHERE (site, device) IN (VALUES",
            devs,
        )
        return {(s, d): (seq, h) for s, d, seq, h in rows}

    def save_heads(self, heads: list[tuple[str, str, int, str]]) -> None:
        """The batch's heads, and the trees grown with them, in one statement a device."""
        self.begin()
        if self._rows:
            self._write_rows()
        grown = [h for h in heads if (h[0], h[1]) in self.trees.dirty]
        rest = [h for h in heads if (h[0], h[1]) not in self.trees.dirty]
        self._many(
            "INSERT INTO devices (site, device, last_seq, last_hash, tree_size, tree_frontier)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " last_seq=excluded.last_seq, last_hash=excluded.last_hash,"
            " tree_size=excluded.tree_size, tree_frontier=excluded.tree_frontier",
            [(*h, *self.trees.sizes[(h[0], h[1])]) for h in grown],
        )
        self.trees.dirty.difference_update((h[0], h[1]) for h in grown)
        if rest:
            self._many(
                "INSERT INTO devices (site, device, last_seq, last_hash) VALUES"
                " (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
                " last_seq=excluded.last_seq, last_hash=excluded.last_hash",
                rest,
            )

    def devices(self) -> list[tuple[str, str, int]]:
        """Every known device: (site, device, last seq)."""
        return [tuple(r) for r in self._x("SELECT site, device, last_seq FROM devices")]  # type: ignore[misc]

    def best_checkpoint(self, dev: Dev) -> int:
        row = self._x(
            "SELECT best_checkpoint FROM devices WHERE site=? AND device=?", dev
        ).fetchone()
        return row[0] if row else 0

    def note_checkpoint(self, dev: Dev, head: tuple[int, str], seq: int) -> None:
        sql = (
            "INSERT INTO devices (site, device, last_seq, last_hash, best_checkpoint)"
            " VALUES (?,?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " best_checkpoint=GREATEST(devices.best_checkpoint, excluded.best_checkpoint)"
        )
        self._x(sql.replace("GREATEST", self.GREATEST), (*dev, *head, seq))

    # -- records -----------------------------------------------------------------------
    def insert(
        self, dev: Dev, rec: dict[str, Any], body: str, checked: bool, *, leaf: bool = True
    ) -> None:
        """Store a record. ``leaf=False``: a late record of a chain the device went back
        from (it fills a declared gap): kept, but not in the device's tree any more."""
        self.begin()
        self._rows.append(
            (*dev, rec["seq"], rec.get("type"), rec.get("ts"), rec["hash"], body, int(checked))
        )
        if not leaf:
            self.trees.no_leaf.add((*dev, rec["seq"]))

    def hash_at(self, dev: Dev, seq: int) -> str | None:
        row = self._x(
            "SELECT hash FROM records WHERE site=? AND device=? AND seq=?", (*dev, seq)
        ).fetchone()
        return row[0] if row else None

    def hashes_at(self, keys: Iterable[tuple[str, str, int]]) -> dict[tuple[str, str, int], str]:
        """Stored hashes of many (site, device, seq) at once."""
        rows = self._for_keys(
            "SELECT site, device, seq, hash FROM records WHERE (site, device, seq) IN (VALUES",
            keys,
        )
        return {(s, d, q): h for s, d, q, h in rows}

    def ts_at(self, dev: Dev, seq: int) -> str | None:
        row = self._x(
            "SELECT ts FROM records WHERE site=? AND device=? AND seq=?", (*dev, seq)
        ).fetchone()
        return row[0] if row else None

    def any_unchecked(self) -> bool:
        return self._x("SELECT 1 FROM records WHERE sig_checked = 0 LIMIT 1").fetchone() is not None

    def unchecked(self, limit: int) -> list[tuple[str, str, int, str]]:
        """Records stored on their run's proof whose own signature is still unchecked,
        locked for this transaction; rows another collector is auditing are skipped."""
        self.begin()
        return [
            tuple(r)  # type: ignore[misc]
            for r in self._x(
                "SELECT site, device, seq, body FROM records WHERE sig_checked = 0 LIMIT ?"  # noqa: S608
                + self._skip_locked_suffix(),
                (limit,),
            )
        ]

    def count_unchecked(self) -> int:
        return self._x("SELECT count(*) FROM records WHERE sig_checked = 0").fetchone()[0]

    def mark_checked_many(self, marks: Iterable[tuple[Dev, int, bool]]) -> None:
        """Record the outcome of each record's own signature check."""
        self.begin()
        self._many(
            "UPDATE records SET sig_checked = ? WHERE site=? AND device=? AND seq=?",
            [(1 if ok else -1, *dev, seq) for dev, seq, ok in marks],
        )

    def seqs(self, dev: Dev) -> list[int]:
        return [
            r[0]
            for r in self._x("SELECT seq FROM records WHERE site=? AND device=? ORDER BY seq", dev)
        ]

    def count_records(self) -> int:
        return self._x("SELECT count(*) FROM records").fetchone()[0]

    def records_between(
        self, site: str, start_ts: str, end_ts: str
    ) -> list[tuple[str, int, str, str]]:
        """(device, seq, hash, body) of a site's stored records with start <= ts < end,
        by device and seq: what a ledger is built from."""
        rows: list[tuple[str, int, str, str]] = self._x(
            "SELECT device, seq, hash, body FROM records WHERE site=? AND ts >= ?"
            " AND ts < ? ORDER BY device, seq",
            (site, start_ts, end_ts),
        ).fetchall()
        return rows

    # -- records ahead of their turn ---------------------------------------------------
    def add_pending(self, dev: Dev, rec: dict[str, Any], body: str) -> bool:
        """Park a verified record that does not yet extend the chain; False when the
        device has too many waiting already (it is asked to resend instead)."""
        self.begin()
        n = self._x("SELECT count(*) FROM pending WHERE site=? AND device=?", dev).fetchone()[0]
        if n >= MAX_PENDING:
            return False
        self._x(
            "INSERT INTO pending VALUES (?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (*dev, rec["seq"], rec["hash"], body, int(time.time() * 1000)),
        )
        return True

    def drop_pending(self, dev: Dev, upto: int) -> None:
        """Forget waiting records of ``dev`` up to seq ``upto``: they are stored."""
        self.begin()
        self._x("DELETE FROM pending WHERE site=? AND device=? AND seq <= ?", (*dev, upto))

    def take_pending(self, dev: Dev, after: int) -> list[str]:
        """Bodies of waiting records of ``dev`` from seq ``after + 1`` on, in seq order;
        those at or below ``after`` are dropped (stored meanwhile)."""
        self.drop_pending(dev, after)
        rows = self._x(
            "SELECT seq, body FROM pending WHERE site=? AND device=? ORDER BY seq", dev
        ).fetchall()
        return [body for _seq, body in rows]

    def waiting(self, devs: Iterable[Dev]) -> set[Dev]:
        """Which of ``devs`` have records waiting (usually none: one query a batch)."""
        if self._x("SELECT 1 FROM pending LIMIT 1").fetchone() is None:
            return set()
        rows = self._for_keys(
            "SELECT DISTINCT site, device FROM pending WHERE (site, device) IN (VALUES", devs
        )
        return {(s, d) for s, d in rows}

    def pending_devices(self, older_than_ms: int) -> list[tuple[str, str, int]]:
        """Devices with a record waiting since before ``older_than_ms``: (site, device,
        lowest waiting seq). Their gap is not filling by itself; they are asked to resend."""
        return [
            tuple(r)  # type: ignore[misc]
            for r in self._x(
                "SELECT site, device, min(seq) FROM pending GROUP BY site, device"
                " HAVING min(received_ms) < ?",
                (older_than_ms,),
            )
        ]

    # -- forks and discontinuities -----------------------------------------------------
    def in_fork(self, dev: Dev, seq: int, h: str) -> bool:
        return (
            self._x(
                "SELECT 1 FROM forks WHERE site=? AND device=? AND seq=? AND hash=?", (*dev, seq, h)
            ).fetchone()
            is not None
        )

    def add_fork(self, dev: Dev, rec: dict[str, Any], body: str) -> bool:
        """Keep a record off the chain; False if it was kept already."""
        self.begin()
        cur = self._x(
            "INSERT INTO forks VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (*dev, rec["seq"], rec["hash"], rec["prev"], rec.get("type"), rec.get("ts"), body),
        )
        return bool(cur.rowcount)

    def forked(self, dev: Dev) -> list[int]:
        return [
            r[0]
            for r in self._x("SELECT seq FROM forks WHERE site=? AND device=? ORDER BY seq", dev)
        ]

    def in_gap(self, dev: Dev, seq: int) -> bool:
        """Does a declared discontinuity cover ``seq`` (between what the store held then
        and the rollback record)?"""
        return (
            self._x(
                "SELECT 1 FROM discontinuities WHERE site=? AND device=? AND central_seq < ?"
                " AND seq > ?",
                (*dev, seq, seq),
            ).fetchone()
            is not None
        )

    def add_discontinuity(
        self, dev: Dev, seq: int, found: int, known: int, central: int, source: str, ts: Any
    ) -> None:
        self.begin()
        self._x(
            "INSERT INTO discontinuities VALUES (?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
            (*dev, seq, found, known, central, source, ts),
        )

    def discontinuities(self, dev: Dev) -> list[tuple[int, int, int, int]]:
        return [
            tuple(r)  # type: ignore[misc]
            for r in self._x(
                "SELECT seq, found_seq, known_seq, central_seq FROM discontinuities"
                " WHERE site=? AND device=? ORDER BY seq",
                dev,
            )
        ]

    def hashes(self, dev: Dev) -> list[str]:
        """The stored chain's hashes, in seq order."""
        return [
            r[0]
            for r in self._x("SELECT hash FROM records WHERE site=? AND device=? ORDER BY seq", dev)
        ]

    # -- retention -----------------------------------------------------------------------
    def prepare_months(self, now_ms: int) -> None:
        """Have the partitions of this month and the next two ready (PostgreSQL)."""

    def apply_retention(self, cutoff_ts: str, run_ts: str) -> list[dict[str, Any]]:
        """Remove the records older than ``cutoff_ts`` (the set keeping period is over),
        logging per device what went: seqs, count and the hash of the last one. The one
        deletion the central store ever does, in one transaction."""
        self.begin()
        rows = self._x(
            "SELECT site, device, min(seq), max(seq), count(*) FROM records WHERE ts < ?"
            " GROUP BY site, device ORDER BY site, device",
            (cutoff_ts,),
        ).fetchall()
        out = []
        for site, device, first, last, n in rows:
            h = self.hash_at((site, device), last)
            out.append(
                {"site": site, "device": device, "first_seq": first, "last_seq": last,
                 "last_hash": h, "removed": n}
            )  # fmt: skip
            self._x(
                "INSERT INTO retention_log (run_ts, cutoff_ts, site, device, first_seq,"
                " last_seq, last_hash, removed) VALUES (?,?,?,?,?,?,?,?)",
                (run_ts, cutoff_ts, site, device, first, last, h, n),
            )
        if out:
            self._remove_before(cutoff_ts)
        self.commit()
        if out:
            self.disposed()
        return out

    def disposed(self) -> None:
        """Hook after a removal (SQLite: the WAL truncated). PostgreSQL keeps removed rows
        in dead tuples until VACUUM and in its WAL and backups for their own keeping
        periods: docs/central.md says what to set."""

    def _remove_before(self, cutoff_ts: str) -> None:
        self._x("DROP TRIGGER records_no_delete")
        self._x("DELETE FROM records WHERE ts < ?", (cutoff_ts,))
        self._x(ENGINE_MIGRATIONS[3]["sqlite"][1])

    def retention_rows(self, site: str) -> list[dict[str, Any]]:
        cols = ("run_ts", "cutoff_ts", "device", "first_seq", "last_seq", "removed")
        rows = self._x(
            f"SELECT {', '.join(cols)} FROM retention_log WHERE site = ? ORDER BY id",  # noqa: S608
            (site,),
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]
