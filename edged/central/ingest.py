"""What to do with one record a device sent: the collector's decision, pure.

Given what the store holds for the device (its head, the hash at a seq, its forks and
declared gaps: a :class:`ChainView`) and what is known of its signing keys, a record is
stored, kept late, kept apart as a fork, parked for its turn, answered with a resend,
taken as a declared rollback, waited for (its epoch's certificate is on its way), dropped
as a duplicate, or refused with an alarm. No broker, no SQL, no clock: the collector
asks, then does what the :class:`Decision` says (the device's ``edged/core`` is the same
split). ``tests/test_ingest.py`` goes through every branch with a chain held in a dict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from edged.protocol.records import GENESIS, ROLLBACK

# The actions, as the collector carries them out.
DUPLICATE = "duplicate"  # the same hash is the same record: nothing to do
STORE = "store"  # extends the stored chain
LATE = "late"  # of the chain a device went back from, arriving after: kept, no tree leaf
FORK = "fork"  # genuine, off the stored chain: kept apart, the device told our head
PARK = "park"  # ahead of its turn: waits in the store (or the device is asked to resend)
RESEND = "resend"  # the store lacks what it continues from: ask from ``resend_from``
ROLLBACK_STORE = "rollback"  # a signed rollback onto a record held: stored, gap recorded
WAIT_EPOCH = "wait_epoch"  # signed by an epoch whose certificate has not arrived yet
ALARM = "alarm"  # refused: ``alarm`` names the kind, ``detail`` says why


@dataclass(frozen=True)
class Decision:
    action: str
    # Whether the record's own signature has been verified (by the caller or here).
    checked: bool = False
    alarm: str = ""
    detail: str = ""
    resend_from: int = 0


class ChainView(Protocol):
    """What the store holds for one device, asked lazily (most records need only the
    head)."""

    def head(self) -> tuple[int, str]: ...
    def stored_hash(self, seq: int) -> str | None: ...
    def in_fork(self, seq: int, h: str) -> bool: ...
    def in_gap(self, seq: int) -> bool: ...
    def epoch_problem(self, rec: dict[str, Any]) -> str | None: ...
    def knows_epoch(self, rec: dict[str, Any]) -> bool: ...


def holds(view: ChainView, seq: int, h: str) -> bool:
    """Is (seq, hash) a record the store holds, on the chain or in a fork?"""
    if seq == 0:
        return h == GENESIS
    return view.stored_hash(seq) == h or view.in_fork(seq, h)


def decide(
    view: ChainView, rec: dict[str, Any], *, authentic: bool = False, checked: bool = False
) -> Decision:
    """The decision for ``rec`` (its hash checked, its origin the device's).
    ``authentic``: proven signed by its run; ``checked``: its own signature verified. A
    record that is neither has its signature checked here, only once it matters (a
    duplicate is a duplicate whatever its signature)."""
    last, last_hash = view.head()
    seq = rec["seq"]
    verified = authentic or checked

    def forged() -> Decision | None:
        """None when the signature holds (checking it if not done); else what to do."""
        if verified:
            return None
        why = view.epoch_problem(rec)
        if why is None:
            return None
        if not view.knows_epoch(rec) and seq > last + 1:
            # Ahead of the certificate of its epoch, which is on its way: not stored,
            # not an alarm; the device sends it again with the rest.
            return Decision(WAIT_EPOCH, True)
        return Decision(ALARM, True, "bad_record", f"seq {seq}: {why}")

    done = checked or not authentic  # after forged() ran: verified one way or another

    if rec.get("type") == ROLLBACK:
        return _rollback(view, rec, last, forged, done)
    if seq <= last:
        stored = view.stored_hash(seq)
        if stored == rec["hash"]:
            return Decision(DUPLICATE, checked)
        if (f := forged()) is not None:
            return f
        if stored is None and view.stored_hash(seq - 1) == rec["prev"] and view.in_gap(seq):
            # Late, on the chain the device went back from (it was still on its way).
            return Decision(LATE, done)
        if holds(view, seq - 1, rec["prev"]):
            return Decision(FORK, done)
        return Decision(ALARM, done, "rewrite", f"seq {seq} differs from the stored record")
    if (f := forged()) is not None:
        return f
    if seq == last + 1 and rec["prev"] == last_hash:
        return Decision(STORE, done)  # the common case
    if view.in_fork(seq - 1, rec["prev"]):
        return Decision(FORK, done)
    if seq > last + 1:
        # Ahead of its turn: the records before it may be on their way through another
        # collector. Verified, it waits in the store; when it waits too long (or too many
        # wait) the device is asked to resend from ``resend_from``.
        return Decision(PARK, done, resend_from=last + 1)
    return Decision(ALARM, done, "rewrite", f"seq {seq} does not extend the chain")


def _rollback(view: ChainView, rec: dict[str, Any], last: int, forged: Any, done: bool) -> Decision:
    """The device says, signed, that its journal went back from ``known_seq`` to
    ``found_seq`` and continues its chain from there at a seq past both. Taken onto the
    stored chain when it links to a record the store holds; the seqs in between stay as
    they are (kept here if synced) and the discontinuity is recorded."""
    seq, found, known = rec["seq"], rec.get("found_seq"), rec.get("known_seq")
    if view.stored_hash(seq) == rec["hash"]:
        return Decision(DUPLICATE)
    if (f := forged()) is not None:
        return f
    if (
        type(found) is not int
        or type(known) is not int
        or rec.get("found_hash") != rec["prev"]
        or seq != max(found, known) + 1
    ):
        return Decision(ALARM, done, "bad_record", f"seq {seq}: malformed rollback record")
    if not holds(view, found, rec["prev"]):
        if found > last:
            return Decision(RESEND, done, resend_from=last + 1)  # we lack what it continues
        return Decision(ALARM, done, "rewrite", f"seq {seq}: rollback record links to nothing held")
    if seq <= last:
        # It could not know how far this store is: kept apart; told our head, the device
        # records again past it.
        return Decision(FORK, done)
    lost = f"; seqs {last + 1}..{seq - 1} never reached this store" if seq > last + 1 else ""
    return Decision(
        ROLLBACK_STORE,
        done,
        "rollback",
        f"the device's journal went back from seq {known} to seq {found}; seqs"
        f" {found + 1}..{min(last, seq - 1)} are kept here only{lost}; the chain goes on"
        f" at seq {seq}",
    )
