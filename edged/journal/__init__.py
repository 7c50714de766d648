"""The signed, hash-chained journal: where every entry, exit, denial and alarm is kept."""

from edged.journal.record import FORMAT, GENESIS, Record
from edged.journal.store import Journal
from edged.journal.verify import VerifyResult, verify_journal

__all__ = ["FORMAT", "GENESIS", "Journal", "Record", "VerifyResult", "verify_journal"]
