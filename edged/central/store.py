"""The central store: SQLite (one file, one office) or PostgreSQL (many collectors, a
company). It owns all of the central side's SQL; the collector decides, the store keeps
(records once per (site, device, seq), the head of each device's chain, records that
arrived ahead of their turn, forks, discontinuities, alarms, what devices last said).

One schema for both engines, written once in the SQL they share, created and changed by
numbered migrations (``schema_migrations`` says which ran). The engines differ in a small
hook each: placeholders, how a transaction starts, and how the head rows of a batch are
locked. With several collectors on one PostgreSQL the head rows are the arbiter: a batch
locks its devices' rows (in one order, so two collectors never deadlock) and only the
holder extends a chain, so every record is stored exactly once and in order.

Writes are grouped: :meth:`begin` opens a transaction if none is open, :meth:`commit`
ends it; a receipt is only ever sent for what a commit covered.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edged.central.accounts import Accounts
from edged.central.present import FOLDED, Changes
from edged.central.verify import canonical_body
from edged.errors import ConfigError
from edged.protocol.epochs import CERT
from edged.protocol.records import GENESIS, ROLLBACK
from edged.protocol.tlog import Frontier

Dev = tuple[str, str]  # (site, device)

# Migrations: (version, statements). {int} and {id} are the engine's 64-bit integer and
# auto-numbered key. Version 1 is the schema every SQLite store had before versions (its
# statements are idempotent, so an old file is migrated in place).
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE IF NOT EXISTS devices (site TEXT, device TEXT,
               last_seq {int} NOT NULL, last_hash TEXT NOT NULL,
               best_checkpoint {int} NOT NULL DEFAULT 0, PRIMARY KEY (site, device))""",
            """CREATE TABLE IF NOT EXISTS records (site TEXT, device TEXT, seq {int},
               type TEXT, ts TEXT, hash TEXT NOT NULL, body TEXT NOT NULL,
               sig_checked INTEGER NOT NULL, PRIMARY KEY (site, device, seq))""",
            # Records whose own signature is still to be checked (see audit_signatures).
            """CREATE INDEX IF NOT EXISTS records_unchecked ON records (site, device, seq)
               WHERE sig_checked = 0""",
            """CREATE TABLE IF NOT EXISTS alarms (id {id}, ts TEXT, site TEXT,
               device TEXT, type TEXT, detail TEXT)""",
            # Genuine records of a device that do not lie on its stored chain (its journal
            # went back and grew again): kept, verified, apart.
            """CREATE TABLE IF NOT EXISTS forks (site TEXT, device TEXT, seq {int},
               hash TEXT, prev TEXT NOT NULL, type TEXT, ts TEXT, body TEXT NOT NULL,
               PRIMARY KEY (site, device, seq, hash))""",
            # Where a device's chain skips seqs: its journal went back from known_seq to
            # found_seq and continued at seq; central_seq is what this store held then.
            """CREATE TABLE IF NOT EXISTS discontinuities (site TEXT, device TEXT,
               seq {int}, found_seq {int} NOT NULL, known_seq {int} NOT NULL,
               central_seq {int} NOT NULL, source TEXT, ts TEXT,
               PRIMARY KEY (site, device, seq))""",
        ],
    ),
    (
        2,
        [
            # Verified records that arrived before the one they follow (with several
            # collectors on one shared subscription, a device's records reach them in
            # any order): stored once their turn comes, by whichever collector gets there.
            """CREATE TABLE pending (site TEXT, device TEXT, seq {int}, hash TEXT,
               body TEXT NOT NULL, received_ms {int} NOT NULL,
               PRIMARY KEY (site, device, seq, hash))""",
            # What each device said last (heartbeat), for the central alarms and the
            # console: when it was heard, its head, backlog, clock and journal.
            """CREATE TABLE device_status (site TEXT, device TEXT, heard_ms {int} NOT NULL,
               ts TEXT, head_seq {int}, acked_seq {int}, backlog {int},
               clock_synced INTEGER, journal_ok INTEGER, PRIMARY KEY (site, device))""",
            # Alarms: who raised them (a device's record, or the central side), the
            # record's seq, and when a condition alarm was cleared.
            "ALTER TABLE alarms ADD COLUMN source TEXT NOT NULL DEFAULT 'collector'",
            "ALTER TABLE alarms ADD COLUMN seq {int}",
            "ALTER TABLE alarms ADD COLUMN cleared_ts TEXT",
            "CREATE INDEX alarms_open ON alarms (site, device, type) WHERE cleared_ts IS NULL",
        ],
    ),
]
# Engine-specific steps of a migration, by engine (triggers differ in syntax).
ENGINE_MIGRATIONS: dict[int, dict[str, list[str]]] = {
    3: {
        # The central copy is append-only like the journal: a stored record's content
        # cannot be changed or deleted through SQL without dropping the trigger first
        # (and the ledger's verification still names what was changed).
        "sqlite": [
            """CREATE TRIGGER records_no_update BEFORE UPDATE OF site, device, seq, type, ts,
               hash, body ON records BEGIN
               SELECT RAISE(ABORT, 'edged central store is append-only: UPDATE refused'); END""",
            """CREATE TRIGGER records_no_delete BEFORE DELETE ON records BEGIN
               SELECT RAISE(ABORT, 'edged central store is append-only: DELETE refused'); END""",
        ],
        "postgresql": [
            """CREATE OR REPLACE FUNCTION edged_append_only() RETURNS trigger AS $$
               BEGIN RAISE EXCEPTION 'edged central store is append-only: % refused', TG_OP;
               END $$ LANGUAGE plpgsql""",
            """CREATE TRIGGER records_no_update BEFORE UPDATE OF site, device, seq, type, ts,
               hash, body ON records FOR EACH ROW EXECUTE FUNCTION edged_append_only()""",
            """CREATE TRIGGER records_no_delete BEFORE DELETE ON records
               FOR EACH ROW EXECUTE FUNCTION edged_append_only()""",
        ],
    },
}
MIGRATIONS.append((3, []))
MIGRATIONS.append(
    (
        4,
        [
            # The access list published for each device (its retained, signed envelope)
            # and the one it recorded as applied: a list not applied in time is an alarm.
            """CREATE TABLE acl_state (site TEXT, device TEXT, published_version {int},
               published_ms {int}, applied_version {int}, applied_ts TEXT,
               PRIMARY KEY (site, device))""",
        ],
    )
)
MIGRATIONS.append(
    (
        5,
        [
            # What retention removed, per device: the seqs, how many, and the hash of the
            # last one, so that a later record's link still ties to something on file.
            """CREATE TABLE retention_log (id {id}, run_ts TEXT NOT NULL, cutoff_ts TEXT
               NOT NULL, site TEXT, device TEXT, first_seq {int}, last_seq {int},
               last_hash TEXT, removed {int})""",
        ],
    )
)
# PostgreSQL keeps records in monthly partitions of ts, so that retention drops whole
# months. A partitioned table's unique key must hold the partition key: (site, device,
# seq, ts); uniqueness of (site, device, seq) across months is kept by a trigger (and,
# first of all, by the head rows: only a device's head holder appends to its chain).
ENGINE_MIGRATIONS[5] = {
    "sqlite": ["CREATE INDEX records_site_ts ON records (site, ts)"],
    "postgresql": [
        "ALTER TABLE records RENAME TO records_unpartitioned",
        "DROP INDEX IF EXISTS records_unchecked",
        """CREATE TABLE records (site TEXT NOT NULL, device TEXT NOT NULL, seq BIGINT NOT NULL,
           type TEXT, ts TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
           sig_checked INTEGER NOT NULL, PRIMARY KEY (site, device, seq, ts))
           PARTITION BY RANGE (ts)""",
        "CREATE TABLE records_default PARTITION OF records DEFAULT",
        "CREATE INDEX records_key ON records (site, device, seq)",
        "CREATE INDEX records_site_ts ON records (site, ts)",
        "CREATE INDEX records_unchecked ON records (site, device, seq) WHERE sig_checked = 0",
        """CREATE OR REPLACE FUNCTION edged_one_per_seq() RETURNS trigger AS $$
           BEGIN
             IF EXISTS (SELECT 1 FROM records WHERE site = NEW.site AND device = NEW.device
                        AND seq = NEW.seq) THEN
               RAISE EXCEPTION 'edged central store: seq % of %/% is stored already',
                 NEW.seq, NEW.site, NEW.device USING ERRCODE = 'unique_violation';
             END IF;
             RETURN NEW;
           END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER records_one_per_seq BEFORE INSERT ON records
           FOR EACH ROW EXECUTE FUNCTION edged_one_per_seq()""",
        """CREATE TRIGGER records_no_update BEFORE UPDATE OF site, device, seq, type, ts,
           hash, body ON records FOR EACH ROW EXECUTE FUNCTION edged_append_only()""",
        """CREATE TRIGGER records_no_delete BEFORE DELETE ON records
           FOR EACH ROW EXECUTE FUNCTION edged_append_only()""",
        # Months that hold records get their partitions before the rows move in.
        """DO $$ DECLARE m TEXT; BEGIN
             FOR m IN SELECT DISTINCT substr(ts, 1, 7) FROM records_unpartitioned
                      WHERE ts ~ '^[0-9]{4}-[0-9]{2}' LOOP
               EXECUTE format('CREATE TABLE %I PARTITION OF records FOR VALUES FROM (%L)'
                 ' TO (%L)', 'records_' || replace(m, '-', '_'), m,
                 to_char(to_date(m, 'YYYY-MM') + interval '1 month', 'YYYY-MM'));
             END LOOP; END $$""",
        "ALTER TABLE records DISABLE TRIGGER records_one_per_seq",
        "INSERT INTO records SELECT * FROM records_unpartitioned",
        "ALTER TABLE records ENABLE TRIGGER records_one_per_seq",
        "DROP TABLE records_unpartitioned",
    ],
}
MIGRATIONS.append(
    (
        6,
        [
            # The console's people: a role each, the password under scrypt, failed logins
            # in a row and until when the account is locked after too many.
            """CREATE TABLE console_users (name TEXT PRIMARY KEY, role TEXT NOT NULL,
               pw_hash TEXT NOT NULL, created_ts TEXT NOT NULL, failed INTEGER NOT NULL
               DEFAULT 0, locked_until_ms {int} NOT NULL DEFAULT 0)""",
            # Sessions by the SHA-256 of their token (a stolen table opens nothing), with
            # the CSRF token of their forms.
            """CREATE TABLE console_sessions (token_hash TEXT PRIMARY KEY, name TEXT NOT
               NULL, csrf TEXT NOT NULL, created_ms {int} NOT NULL, seen_ms {int} NOT NULL)""",
            # What people did in the console (R15, R16, R21): append-only, hash-chained.
            """CREATE TABLE console_audit (seq {int} PRIMARY KEY, ts TEXT NOT NULL,
               name TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL,
               prev TEXT NOT NULL, hash TEXT NOT NULL)""",
            "ALTER TABLE alarms ADD COLUMN acked_by TEXT",
            "ALTER TABLE alarms ADD COLUMN acked_ts TEXT",
            "ALTER TABLE alarms ADD COLUMN ack_comment TEXT",
        ],
    )
)
ENGINE_MIGRATIONS[6] = {
    "sqlite": [
        """CREATE TRIGGER console_audit_no_update BEFORE UPDATE ON console_audit BEGIN
           SELECT RAISE(ABORT, 'console audit is append-only'); END""",
        """CREATE TRIGGER console_audit_no_delete BEFORE DELETE ON console_audit BEGIN
           SELECT RAISE(ABORT, 'console audit is append-only'); END""",
    ],
    "postgresql": [
        """CREATE TRIGGER console_audit_no_update BEFORE UPDATE OR DELETE ON console_audit
           FOR EACH ROW EXECUTE FUNCTION edged_append_only()""",
    ],
}
MIGRATIONS.append(
    (
        7,
        [
            # What is true now, folded from the records as they are stored (see
            # edged.central.present): who is inside, and each door's and cabinet's state.
            """CREATE TABLE present_people (site TEXT NOT NULL, device TEXT NOT NULL,
               area TEXT NOT NULL, person TEXT NOT NULL, name TEXT NOT NULL, since_ts TEXT
               NOT NULL, PRIMARY KEY (site, device, area, person))""",
            """CREATE TABLE present_points (site TEXT NOT NULL, device TEXT NOT NULL,
               kind TEXT NOT NULL, name TEXT NOT NULL, state TEXT NOT NULL, area TEXT NOT
               NULL, ts TEXT NOT NULL, PRIMARY KEY (site, device, kind, name))""",
            # The overview's alarms to act on, without reading the acknowledged ones.
            """CREATE INDEX alarms_active ON alarms (id) WHERE cleared_ts IS NULL
               AND acked_by IS NULL""",
        ],
    )
)
MIGRATIONS.append(
    (
        8,
        [
            # Each device's Merkle tree as the central copy grows it (issue 17): its size
            # and frontier (hex hashes, one per one-bit of the size; size -1: unknown, the
            # start of the records is gone), to check the device's signed checkpoints.
            "ALTER TABLE devices ADD COLUMN tree_size {int} NOT NULL DEFAULT 0",
            "ALTER TABLE devices ADD COLUMN tree_frontier TEXT NOT NULL DEFAULT ''",
            # Checkpoints this store checked against its own tree and cosigned.
            """CREATE TABLE cosigned (site TEXT NOT NULL, device TEXT NOT NULL, size {int}
               NOT NULL, note TEXT NOT NULL, ts TEXT NOT NULL,
               PRIMARY KEY (site, device, size))""",
        ],
    )
)
MIGRATIONS.append(
    (
        9,
        [
            # Each device's epoch certificates (issue 17): the links from its pinned
            # identity to the keys that sign its records now. Kept apart from the records
            # so that retention, which removes old months, never cuts the chain.
            """CREATE TABLE device_epochs (site TEXT NOT NULL, device TEXT NOT NULL, epoch
               {int} NOT NULL, seq {int} NOT NULL, wire TEXT NOT NULL,
               PRIMARY KEY (site, device, epoch))""",
        ],
    )
)
# Migrations that also fill what they create from the records already stored.
MIGRATION_FILLS = {7: "_fill_present", 8: "_fill_trees", 9: "_fill_epochs"}
SCHEMA_VERSION = MIGRATIONS[-1][0]

ALARM_COLUMNS = (
    "id", "ts", "site", "device", "type", "detail", "source", "seq", "cleared_ts", "acked_by",
    "acked_ts", "ack_comment",
)  # fmt: skip
# Records kept waiting for their turn, per device: beyond this the device is asked to
# resend instead (nothing from the network writes unbounded rows).
MAX_PENDING = 2000


class CentralStore:
    """The central side's SQL over a DB-API connection; engines supply the hooks."""

    ENGINE = "sqlite"
    INT = "INTEGER"
    AUTO_ID = "INTEGER PRIMARY KEY"
    GREATEST = "max"
    url: str
    # Records of the open transaction not yet sent: written in one executemany before
    # any other statement and before commit, so every read sees them.
    _rows: list[tuple[Any, ...]]
    # Checkpoint records stored in the open transaction, with the tree before each.
    tree_events: list[tuple[Dev, int, str, int, bytes]]
    # Each device's tree (size, frontier) in the open transaction, and which grew.
    _trees: dict[Dev, tuple[int, str]]
    _trees_dirty: set[Dev]

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        raise NotImplementedError

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def _x(self, sql: str, params: Sequence[Any] = ()) -> Any:
        if self._rows:
            self._write_rows()
        return self._exec(sql, params)

    def _many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        if self._rows:
            self._write_rows()
        self._exec_many(sql, list(rows))

    def _write_rows(self) -> None:
        rows, self._rows = self._rows, []
        self._exec_many("INSERT INTO records VALUES (?,?,?,?,?,?,?,?)", rows)
        # In the same transaction: what is true now moves with the records.
        changes = Changes()
        for site, device, _seq, rtype, ts, _h, body, _c in rows:
            changes.add(site, device, rtype, ts, body)
        for sql, args in changes.statements():
            self._exec_many(sql, args)
        self._keep_epochs(rows)
        self._grow_trees(rows)

    def _keep_epochs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        certs = [
            (site, device, json.loads(body).get("next_epoch"), seq, body)
            for site, device, seq, rtype, _ts, _h, body, _c in rows
            if rtype == CERT
        ]
        if certs:
            self._exec_many(
                "INSERT INTO device_epochs VALUES (?,?,?,?,?)"
                " ON CONFLICT (site, device, epoch) DO NOTHING",
                certs,
            )

    def epoch_certs(self, dev: Dev) -> list[str]:
        """A device's stored epoch certificates (wire records), in epoch order."""
        return [
            w
            for (w,) in self._x(
                "SELECT wire FROM device_epochs WHERE site = ? AND device = ? ORDER BY epoch",
                dev,
            ).fetchall()
        ]

    def _fill_epochs(self) -> None:
        """The certificates among the records already stored (migration 9)."""
        rows = self._x(
            "SELECT site, device, seq, type, ts, hash, body, 0 FROM records WHERE type = ?"
            " ORDER BY site, device, seq",
            (CERT,),
        ).fetchall()
        self._keep_epochs(rows)

    def _grow_trees(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Each device's tree grows by its stored records, in order; a checkpoint record
        is compared with the tree before it (see ``tree_events``)."""
        by_dev: dict[Dev, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_dev.setdefault((r[0], r[1]), []).append(r)
        # Known from the batch's head rows, mostly (lock_heads reads them with the heads).
        unknown = [dev for dev in by_dev if dev not in self._trees]
        if unknown:
            for site, device, size, frontier in self._for_keys(
                "SELECT site, device, tree_size, tree_frontier FROM devices WHERE"
                " (site, device) IN (VALUES",
                unknown,
            ):
                self._trees[(site, device)] = (size, frontier)
        for dev, recs in by_dev.items():
            size, text = self._trees.get(dev, (0, ""))
            if size < 0:
                continue  # the start of this device's records is gone: no tree to check
            tree = Frontier(
                size, [bytes.fromhex(text[i : i + 64]) for i in range(0, len(text), 64)]
            )
            for _s, _d, seq, rtype, _ts, h, body, _c in recs:
                if (*dev, seq) in self._no_leaf:
                    continue
                if rtype == "checkpoint":
                    self.tree_events.append((dev, seq, body, tree.size, tree.root()))
                elif rtype == ROLLBACK:
                    # The device went back to an older copy of its journal, and its tree
                    # with it: from here on its tree is the one of the records up to
                    # found_seq, which this copy holds (the rest stays stored, apart).
                    found = json.loads(body).get("found_seq")
                    if type(found) is int:
                        tree = self._tree_upto(dev, found)
                tree.add(canonical_body(body, h))  # a leaf is what the hash is of
            # Written with the head row at the batch's end (save_heads), or at commit.
            self._trees[dev] = (tree.size, _frontier_text(tree))
            self._trees_dirty.add(dev)

    def _flush_trees(self) -> None:
        """The grown trees not yet written with a head row (before every commit)."""
        if self._rows:
            self._write_rows()
        if self._trees_dirty:
            self._exec_many(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                [(*self._trees[d], *d) for d in sorted(self._trees_dirty)],
            )
        self._forget_trees()

    def _forget_trees(self) -> None:
        # Between transactions the rows are the store's: another collector may grow them.
        self._trees, self._trees_dirty = {}, set()
        self._no_leaf: set[tuple[str, str, int]] = set()

    def _tree_upto(self, dev: Dev, seq: int) -> Frontier:
        """The tree of the device's stored records up to ``seq``."""
        tree = Frontier()
        for h, body in self._x(
            "SELECT hash, body FROM records WHERE site = ? AND device = ? AND seq <= ?"
            " ORDER BY seq",
            (*dev, seq),
        ).fetchall():
            tree.add(canonical_body(body, h))
        return tree

    def take_tree_events(self) -> list[tuple[Dev, int, str, int, bytes]]:
        """The checkpoint records stored since the last call: (device, seq, body, the
        central tree's size and root before it)."""
        out, self.tree_events = self.tree_events, []
        return out

    def add_cosigned_many(self, notes: Sequence[tuple[Dev, int, str]], ts: str) -> None:
        """Checkpoints this store cosigned: (device, size, note)."""
        self.begin()
        self._many(
            "INSERT INTO cosigned VALUES (?,?,?,?,?) ON CONFLICT (site, device, size) DO NOTHING",
            [(*dev, size, note, ts) for dev, size, note in notes],
        )

    def cosigned(self, dev: Dev) -> list[tuple[int, str]]:
        return [
            (size, note)
            for size, note in self._x(
                "SELECT size, note FROM cosigned WHERE site = ? AND device = ? ORDER BY size",
                dev,
            ).fetchall()
        ]

    def _fill_trees(self) -> None:
        """Grow every device's tree from the records already stored (migration 8); a
        device whose first records were removed by retention has none (size -1)."""
        firsts = self._x("SELECT site, device, min(seq) FROM records GROUP BY site, device")
        for site, device, first in firsts.fetchall():
            if first != 1:
                self._x(
                    "UPDATE devices SET tree_size = -1 WHERE site = ? AND device = ?",
                    (site, device),
                )
                continue
            tree = self._tree_upto((site, device), 2**62)
            self._x(
                "UPDATE devices SET tree_size = ?, tree_frontier = ? WHERE site = ? AND device = ?",
                (tree.size, _frontier_text(tree), site, device),
            )

    def _fill_present(self) -> None:
        """Fold every stored record into the present tables (once, at migration 7)."""
        marks = ",".join("?" * len(FOLDED))
        changes = Changes()
        cur = self._x(
            f"SELECT site, device, type, ts, body FROM records WHERE type IN ({marks})"  # noqa: S608
            " ORDER BY site, device, seq",
            sorted(FOLDED),
        )
        for site, device, rtype, ts, body in cur.fetchall():
            changes.add(site, device, rtype, ts, body)
        for sql, args in changes.statements():
            self._exec_many(sql, args)

    @property
    def accounts(self) -> Accounts:
        """The console's users, sessions and audit trail, on this connection."""
        return Accounts(self)

    def begin(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _lock_suffix(self) -> str:
        return ""

    def _for_keys(self, sql: str, keys: Iterable[tuple[Any, ...]], tail: str = "") -> list[Any]:
        """Rows of ``sql`` (ending in ``IN (VALUES``) for many keys of one width, 200
        keys a statement: a batch asks about many devices at once."""
        todo = sorted(set(keys))
        rows: list[Any] = []
        for i in range(0, len(todo), 200):
            part = todo[i : i + 200]
            marks = ", ".join(["(" + ",".join("?" * len(part[0])) + ")"] * len(part))
            rows += self._x(f"{sql} {marks}){tail}", [x for k in part for x in k]).fetchall()
        return rows

    def _skip_locked_suffix(self) -> str:
        return ""

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
                getattr(self, MIGRATION_FILLS[version])()
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
        self._trees.update({(s, d): (size, text) for s, d, _q, _h, size, text in rows})
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
        grown = [h for h in heads if (h[0], h[1]) in self._trees_dirty]
        rest = [h for h in heads if (h[0], h[1]) not in self._trees_dirty]
        self._many(
            "INSERT INTO devices (site, device, last_seq, last_hash, tree_size, tree_frontier)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " last_seq=excluded.last_seq, last_hash=excluded.last_hash,"
            " tree_size=excluded.tree_size, tree_frontier=excluded.tree_frontier",
            [(*h, *self._trees[(h[0], h[1])]) for h in grown],
        )
        self._trees_dirty.difference_update((h[0], h[1]) for h in grown)
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
            self._no_leaf.add((*dev, rec["seq"]))

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

    # -- alarms ------------------------------------------------------------------------
    def add_alarm(
        self,
        ts: str,
        dev: Dev,
        atype: str,
        detail: str,
        *,
        source: str = "collector",
        seq: int | None = None,
    ) -> None:
        # Joins the open transaction (a batch), or commits by itself.
        self._x(
            "INSERT INTO alarms (ts, site, device, type, detail, source, seq)"
            " VALUES (?,?,?,?,?,?,?)",
            (ts, *dev, atype, detail, source, seq),
        )

    def raise_condition(self, ts: str, dev: Dev, atype: str, detail: str) -> bool:
        """Open a condition alarm (a silent device, a stalled sync...) unless one of that
        type is open for the device already; True when it was opened now."""
        self.begin()
        if self._x(
            "SELECT 1 FROM alarms WHERE site=? AND device=? AND type=? AND cleared_ts IS NULL"
            " AND source = 'central'",
            (*dev, atype),
        ).fetchone():
            return False
        self.add_alarm(ts, dev, atype, detail, source="central")
        return True

    def clear_condition(self, ts: str, dev: Dev, atype: str) -> bool:
        """Close the open condition alarm of that type; True when one was open."""
        self.begin()
        cur = self._x(
            "UPDATE alarms SET cleared_ts=? WHERE site=? AND device=? AND type=?"
            " AND cleared_ts IS NULL AND source = 'central'",
            (ts, *dev, atype),
        )
        return bool(cur.rowcount)

    def alarms(self) -> list[tuple[str, str]]:
        return [tuple(r) for r in self._x("SELECT type, detail FROM alarms ORDER BY id")]  # type: ignore[misc]

    def alarm_rows(self) -> list[dict[str, Any]]:
        """Every alarm, oldest first."""
        return self.alarm_list(after_id=0, limit=2**62)

    def alarm_origins(self) -> set[tuple[str, str]]:
        """The (site, device) names alarms were raised under."""
        return {(s, d) for s, d in self._x("SELECT site, device FROM alarms")}

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
        return out

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

    # -- what devices said -------------------------------------------------------------
    def note_status(self, dev: Dev, heard_ms: int, doc: dict[str, Any]) -> None:
        self._x(
            "INSERT INTO device_status VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT (site, device)"
            " DO UPDATE SET heard_ms=excluded.heard_ms, ts=excluded.ts,"
            " head_seq=excluded.head_seq, acked_seq=excluded.acked_seq,"
            " backlog=excluded.backlog, clock_synced=excluded.clock_synced,"
            " journal_ok=excluded.journal_ok",
            (
                *dev,
                heard_ms,
                str(doc.get("ts"))[:32],
                _int(doc.get("head_seq")),
                _int(doc.get("acked_seq")),
                _int(doc.get("backlog")),
                _flag(doc.get("clock_synced")),
                _flag(doc.get("journal_ok")),
            ),
        )

    def note_acl_published(self, dev: Dev, version: int, seen_ms: int) -> None:
        """A list for the device was published; only a newer version moves the clock."""
        self._x(
            "INSERT INTO acl_state (site, device, published_version, published_ms)"
            " VALUES (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " published_version=excluded.published_version,"
            " published_ms=excluded.published_ms"
            " WHERE acl_state.published_version IS NULL"
            " OR acl_state.published_version < excluded.published_version",
            (*dev, version, seen_ms),
        )

    def note_acl_applied(self, dev: Dev, version: int, ts: str) -> None:
        self._x(
            "INSERT INTO acl_state (site, device, applied_version, applied_ts)"
            " VALUES (?,?,?,?) ON CONFLICT (site, device) DO UPDATE SET"
            " applied_version=excluded.applied_version, applied_ts=excluded.applied_ts"
            " WHERE acl_state.applied_version IS NULL"
            " OR acl_state.applied_version < excluded.applied_version",
            (*dev, version, ts),
        )

    def acl_states(self) -> list[dict[str, Any]]:
        cols = (
            "site", "device", "published_version", "published_ms", "applied_version", "applied_ts"
        )  # fmt: skip
        rows = self._x(f"SELECT {', '.join(cols)} FROM acl_state").fetchall()  # noqa: S608
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def statuses(self, site: str | None = None) -> list[dict[str, Any]]:
        cols = (
            "site",
            "device",
            "heard_ms",
            "ts",
            "head_seq",
            "acked_seq",
            "backlog",
            "clock_synced",
            "journal_ok",
        )
        return self._select("SELECT {cols} FROM device_status", cols, site, " ORDER BY device")

    def ack_alarm(self, alarm_id: int, name: str, ts: str, comment: str) -> bool:
        cur = self._x(
            "UPDATE alarms SET acked_by = ?, acked_ts = ?, ack_comment = ? WHERE id = ?"
            " AND acked_by IS NULL",
            (name, ts, comment, alarm_id),
        )
        return bool(cur.rowcount)

    def active_alarms(self, limit: int = 50) -> tuple[list[dict[str, Any]], int]:
        """The newest alarms neither cleared nor acknowledged, and the newest alarm id."""
        cols = ALARM_COLUMNS
        rows = self._x(
            f"SELECT {', '.join(cols)} FROM alarms WHERE cleared_ts IS NULL"  # noqa: S608
            " AND acked_by IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        last = self._x("SELECT max(id) FROM alarms").fetchone()[0] or 0
        return [dict(zip(cols, r, strict=True)) for r in rows], last

    def alarm_list(self, after_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """The newest first; with ``after_id`` (0: from the start), those after it, oldest
        first."""
        cols = ALARM_COLUMNS
        sql = f"SELECT {', '.join(cols)} FROM alarms"  # noqa: S608
        if after_id is not None:
            rows = self._x(sql + " WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        else:
            rows = self._x(sql + " ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(zip(cols, r, strict=True)) for r in rows.fetchall()]

    def _select(self, sql: str, cols: Sequence[str], site: str | None, order: str) -> Any:
        where = " WHERE site = ?" if site is not None else ""
        rows = self._x(
            sql.format(cols=", ".join(cols)) + where + order, (site,) if where else ()
        ).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def present_people(self, site: str | None = None) -> list[dict[str, Any]]:
        """Who is inside now, by site, area and person (see edged.central.present)."""
        cols = ("site", "device", "area", "person", "name", "since_ts")
        sql = "SELECT {cols} FROM present_people"
        return self._select(sql, cols, site, " ORDER BY site, area, person")

    def present_points(self, site: str | None = None) -> list[dict[str, Any]]:
        """Each door's and cabinet's last recorded state."""
        cols = ("site", "device", "kind", "name", "state", "area", "ts")
        sql = "SELECT {cols} FROM present_points"
        return self._select(sql, cols, site, " ORDER BY site, area, kind, name")

    def site_summary(self, heard_since_ms: int) -> list[dict[str, Any]]:
        """Per site: people inside, doors and cabinets open, devices, and devices in
        trouble (not heard since ``heard_since_ms``, or their journal down)."""
        out: dict[str, dict[str, Any]] = {}

        def row(site: str) -> dict[str, Any]:
            return out.setdefault(
                site, {"site": site, "inside": 0, "open_doors": 0, "open_cabinets": 0,
                       "devices": 0, "trouble": 0},
            )  # fmt: skip

        for site, n in self._x("SELECT site, count(*) FROM present_people GROUP BY site"):
            row(site)["inside"] = n
        for site, kind, n in self._x(
            "SELECT site, kind, count(*) FROM present_points WHERE state = 'open'"
            " GROUP BY site, kind"
        ):
            row(site)["open_doors" if kind == "door" else "open_cabinets"] = n
        for site, n, bad in self._x(
            "SELECT site, count(*), sum(CASE WHEN heard_ms < ? OR journal_ok = 0 THEN 1"
            " ELSE 0 END) FROM device_status GROUP BY site",
            (heard_since_ms,),
        ):
            row(site).update(devices=n, trouble=int(bad or 0))
        for (site,) in self._x("SELECT DISTINCT site FROM devices"):
            row(site)
        return [out[k] for k in sorted(out)]

    def head_records(self) -> dict[Dev, dict[str, Any]]:
        """Each device's newest stored record (its time, the device's key id and the
        signing epoch) and the newest checkpoint it proved."""
        rows = self._x(
            "SELECT d.site, d.device, d.best_checkpoint, r.ts, r.body FROM devices d LEFT JOIN"
            " records r ON r.site = d.site AND r.device = d.device AND r.seq = d.last_seq"
        ).fetchall()
        out: dict[Dev, dict[str, Any]] = {}
        for site, device, checkpoint, ts, body in rows:
            try:
                rec = json.loads(body or "{}")
                kid, epoch = rec.get("key_id"), rec.get("epoch", 0)
            except (ValueError, AttributeError):
                kid, epoch = None, None
            kid = kid if isinstance(kid, str) else None
            epoch = epoch if type(epoch) is int else None
            # The identity's key id, and the epoch whose key signs now (docs/proofs.md).
            out[(site, device)] = {"ts": ts, "key_id": kid, "epoch": epoch,
                                   "checkpoint": checkpoint}  # fmt: skip
        return out


def _frontier_text(tree: Frontier) -> str:
    """A device's tree frontier as the head row keeps it: its hashes in hex, in order."""
    return "".join(h.hex() for h in tree.hashes)


def _int(v: Any) -> int | None:
    return v if type(v) is int and -(2**62) < v < 2**62 else None


def _flag(v: Any) -> int | None:
    return int(v) if type(v) is bool else None


class SqliteStore(CentralStore):
    """The store in one SQLite file. Several collectors on one file are safe (the write
    lock serialises them) but gain nothing; the default for one office."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.url = str(self.path)
        self._rows = []
        self.tree_events = []
        self._forget_trees()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._migrate()

    def _upgrade_unversioned(self) -> None:
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(records)")]
        if cols and "sig_checked" not in cols:  # a database from before the audit: all were checked
            self._db.execute(
                "ALTER TABLE records ADD COLUMN sig_checked INTEGER NOT NULL DEFAULT 1"
            )

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        return self._db.execute(sql, params)

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._db.executemany(sql, rows)

    def begin(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self._flush_trees()
        if self._db.in_transaction:
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._rows = []
        self.tree_events = []
        self._forget_trees()
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()


class PostgresStore(CentralStore):
    """The store in PostgreSQL (psycopg 3), for many collectors and many sites."""

    ENGINE = "postgresql"
    INT = "BIGINT"
    AUTO_ID = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"
    GREATEST = "GREATEST"

    def __init__(self, url: str) -> None:
        try:
            import psycopg
        except ImportError:
            raise ConfigError(
                "--store postgresql://: psycopg is not installed (pip install edged[central])"
            ) from None
        self.url = url
        self._rows = []
        self.tree_events = []
        self._forget_trees()
        try:
            # Autocommit, with explicit BEGIN/COMMIT: a read outside a batch never leaves
            # a transaction open (and row locks held) behind it.
            self._db = psycopg.connect(url, autocommit=True)
        except psycopg.Error as e:
            raise ConfigError(f"--store {_redact(url)}: {str(e).strip().splitlines()[0]}") from None
        self._in_tx = False
        # Two collectors starting together must not both create the schema.
        self._db.execute("SELECT pg_advisory_lock(7302185)")
        try:
            self._migrate()
        finally:
            self._db.execute("SELECT pg_advisory_unlock(7302185)")

    def _exec(self, sql: str, params: Sequence[Any]) -> Any:
        if not params:  # taken as written: a function body's % is not a placeholder
            return self._db.execute(sql)  # type: ignore[arg-type]
        return self._db.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]

    def _exec_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._db.cursor() as cur:
            cur.executemany(sql.replace("?", "%s"), rows)  # type: ignore[arg-type]

    def _lock_suffix(self) -> str:
        return " FOR UPDATE"

    def _skip_locked_suffix(self) -> str:
        return " FOR UPDATE SKIP LOCKED"

    def begin(self) -> None:
        if not self._in_tx:
            self._db.execute("BEGIN")
            self._in_tx = True

    def commit(self) -> None:
        self._flush_trees()
        if self._in_tx:
            self._in_tx = False
            self._db.execute("COMMIT")

    def rollback(self) -> None:
        self._rows = []
        self.tree_events = []
        self._forget_trees()
        if self._in_tx:
            self._in_tx = False
            self._db.execute("ROLLBACK")

    def close(self) -> None:
        self._db.close()

    def prepare_months(self, now_ms: int) -> None:
        import datetime as dt

        import psycopg

        d = dt.datetime.fromtimestamp(now_ms / 1000, dt.UTC).date().replace(day=1)
        for _ in range(3):
            nxt = (d + dt.timedelta(days=32)).replace(day=1)
            name = f"records_{d:%Y_%m}"
            if not self._x("SELECT 1 FROM pg_class WHERE relname = ?", (name,)).fetchone():
                # Outside any transaction: a failure (another collector made it meanwhile,
                # or rows of that month sit in the default partition) costs nothing else.
                with contextlib.suppress(psycopg.Error):
                    self._x(
                        f"CREATE TABLE {name} PARTITION OF records"
                        f" FOR VALUES FROM ('{d:%Y-%m}') TO ('{nxt:%Y-%m}')"
                    )
            d = nxt

    def _remove_before(self, cutoff_ts: str) -> None:
        # Whole months before the cutoff go as partitions; the rest row by row, with the
        # append-only guard lifted inside this transaction only.
        parts = self._x(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'records'::regclass"
        ).fetchall()
        for name, bound in parts:
            upper = bound.rsplit("TO ('", 1)[-1].split("'")[0] if "TO ('" in bound else None
            if upper is not None and upper <= cutoff_ts[:7] and name.startswith("records_"):
                self._x(f"DROP TABLE {name}")
        self._x("ALTER TABLE records DISABLE TRIGGER records_no_delete")
        self._x("DELETE FROM records WHERE ts < ?", (cutoff_ts,))
        self._x("ALTER TABLE records ENABLE TRIGGER records_no_delete")

    def try_lead(self, name: str) -> bool:
        """Take a session-wide advisory lock: one collector of many runs the central
        alarm checks; another takes over when its session ends."""
        import hashlib

        # A 63-bit key from the whole name: each shard's leader lock is its own.
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1
        row = self._db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        return bool(row and row[0])


def _redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    head, at, tail = url.rpartition("@")
    if not at:
        return url
    scheme, _, cred = head.partition("://")
    return f"{scheme}://{cred.split(':')[0]}:***@{tail}"


def open_store(spec: str | Path) -> CentralStore:
    """``postgresql://…`` (or ``postgres://``) for PostgreSQL, anything else a SQLite file."""
    s = str(spec)
    if s.startswith(("postgresql://", "postgres://")):
        return PostgresStore(s)
    return SqliteStore(Path(s))
