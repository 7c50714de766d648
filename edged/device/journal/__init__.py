"""The signed, hash-chained journal: where every entry, exit, denial and alarm is kept."""

from edged.device.journal.store import Journal
from edged.device.journal.verify import VerifyResult, verify_journal
from edged.protocol.records import FORMAT, GENESIS, Record

__all__ = ["FORMAT", "GENESIS", "Journal", "Record", "VerifyResult", "verify_journal"]
