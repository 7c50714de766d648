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

from edged.central.store.engines import PostgresStore, SqliteStore, open_store
from edged.central.store.records import MAX_PENDING, CentralStore
from edged.central.store.schema import MIGRATIONS, SCHEMA_VERSION

__all__ = [
    "MAX_PENDING", "MIGRATIONS", "SCHEMA_VERSION", "CentralStore", "PostgresStore",
    "SqliteStore", "open_store",
]  # fmt: skip
