"""The central store's one schema for both engines, as numbered migrations
(``schema_migrations`` says which ran)."""

from __future__ import annotations

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
MIGRATIONS.append(
    (
        10,
        [
            # Notifications (issue 39): one row per alarm and channel, written in the
            # transaction that stores the alarm, delivered after it (at least once,
            # across restarts), retried with backoff; a delivery and each failure stay
            # on the row. ``rule`` and ``channel`` index the notify file (URLs hold
            # credentials, so they stay in that file, not in the database).
            """CREATE TABLE notify_outbox (id {id}, created_ts TEXT NOT NULL, site TEXT NOT
               NULL, device TEXT NOT NULL, type TEXT NOT NULL, rule TEXT NOT NULL, channel
               {int} NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, attempts {int} NOT
               NULL DEFAULT 0, next_ms {int} NOT NULL, delivered_ts TEXT, last_error TEXT)""",
            "CREATE INDEX notify_due ON notify_outbox (next_ms) WHERE delivered_ts IS NULL",
        ],
    )
)
# Migrations that also fill what they create from the records already stored: the part of
# the store and its method.
MIGRATION_FILLS = {
    7: ("reports", "fill_present"), 8: ("trees", "fill_trees"), 9: ("trees", "fill_epochs"),
}  # fmt: skip
SCHEMA_VERSION = MIGRATIONS[-1][0]
