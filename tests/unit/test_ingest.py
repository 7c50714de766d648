"""The collector's decisions on their own (edged/central/ingest.py): a device's chain
held in a dict, every branch, no broker and no database (R9, R13, R14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from edged.central import ingest
from edged.central.ingest import decide
from edged.protocol.records import GENESIS, ROLLBACK

pytestmark = pytest.mark.unit


def h(n: int | str) -> str:
    return f"{n}".rjust(64, "a") if isinstance(n, str) else f"{n:064x}"


@dataclass
class Chain:
    """A stored chain 1..head with hashes h(seq), forks and gaps as sets, and a set of
    seqs whose signatures are bad; ``unknown_epoch``: seqs of an epoch not seen yet."""

    head_seq: int = 5
    forks: set[tuple[int, str]] = field(default_factory=set)
    gaps: set[int] = field(default_factory=set)
    missing: set[int] = field(default_factory=set)
    bad_sig: set[int] = field(default_factory=set)
    unknown_epoch: set[int] = field(default_factory=set)
    asked: list[int] = field(default_factory=list)

    def head(self) -> tuple[int, str]:
        return self.head_seq, h(self.head_seq) if self.head_seq else GENESIS

    def stored_hash(self, seq: int) -> str | None:
        if seq == 0:
            return GENESIS
        return h(seq) if 1 <= seq <= self.head_seq and seq not in self.missing else None

    def in_fork(self, seq: int, hh: str) -> bool:
        return (seq, hh) in self.forks

    def in_gap(self, seq: int) -> bool:
        return seq in self.gaps

    def epoch_problem(self, rec: dict[str, Any]) -> str | None:
        self.asked.append(rec["seq"])
        if rec["seq"] in self.unknown_epoch:
            return "epoch 3 is not known yet"
        return "bad signature" if rec["seq"] in self.bad_sig else None

    def knows_epoch(self, rec: dict[str, Any]) -> bool:
        return rec["seq"] not in self.unknown_epoch


def rec(seq: int, prev: str | None = None, hh: str | None = None, **kw: Any) -> dict[str, Any]:
    return {"seq": seq, "prev": h(seq - 1) if prev is None else prev,
            "hash": h(seq) if hh is None else hh, "type": "door.granted", **kw}  # fmt: skip


def test_the_next_record_is_stored_and_its_signature_checked_once():
    """R9: the record after the head, linking to it, is stored; its signature was
    checked here (it was neither proven by a run nor checked by the caller)."""
    c = Chain()
    d = decide(c, rec(6))
    assert (d.action, d.checked, c.asked) == (ingest.STORE, True, [6])
    # Proven by its run: stored without a check of its own, and marked unchecked.
    c.asked.clear()
    d = decide(c, rec(6), authentic=True)
    assert (d.action, d.checked, c.asked) == (ingest.STORE, False, [])
    d = decide(c, rec(6), authentic=True, checked=True)
    assert (d.action, d.checked, c.asked) == (ingest.STORE, True, [])


def test_a_duplicate_is_a_duplicate_whatever_its_signature():
    """R13: the same hash at a stored seq is the record already kept: no check, no alarm."""
    c = Chain(bad_sig={3})
    assert decide(c, rec(3)).action == ingest.DUPLICATE and c.asked == []


def test_forged_records_raise_bad_record_and_are_not_stored():
    """R9, R14: a bad signature anywhere is an alarm naming the seq, never stored."""
    for r in (rec(6), rec(3, hh=h("x"))):
        c = Chain(bad_sig={r["seq"]})
        d = decide(c, r)
        assert (d.action, d.alarm) == (ingest.ALARM, "bad_record")
        assert d.detail == f"seq {r['seq']}: bad signature"


def test_a_record_of_an_epoch_not_yet_known_waits_when_ahead_only():
    """R13: ahead of the head, a record whose epoch certificate has not arrived waits
    (no alarm: the device sends it again); at the head's turn it is an alarm."""
    c = Chain(unknown_epoch={9, 6})
    assert decide(c, rec(9)).action == ingest.WAIT_EPOCH
    d = decide(c, rec(6))
    assert (d.action, d.alarm) == (ingest.ALARM, "bad_record") and "epoch 3" in d.detail


def test_ahead_of_its_turn_it_is_parked_with_where_to_resend_from():
    """R13: a gap: parked, and if it cannot wait, the resend starts after the head."""
    d = decide(Chain(), rec(8))
    assert (d.action, d.resend_from) == (ingest.PARK, 6)


def test_a_different_record_at_a_stored_seq_is_a_fork_or_a_rewrite():
    """R14: a genuine record linking to a held record but differing from the stored one
    is kept apart (fork); one linking to nothing held is a rewrite alarm."""
    c = Chain()
    d = decide(c, rec(4, hh=h("other")))
    assert d.action == ingest.FORK
    d = decide(c, rec(4, prev=h("nothing"), hh=h("other")))
    assert (d.action, d.alarm) == (ingest.ALARM, "rewrite")
    assert d.detail == "seq 4 differs from the stored record"
    # Growing the fork: its next record links into the fork, past our head.
    c = Chain(forks={(6, h("f6"))})
    assert decide(c, rec(7, prev=h("f6"), hh=h("f7"))).action == ingest.FORK
    # At the head's turn but not linking to the head, nor into a fork: a rewrite.
    d = decide(Chain(), rec(6, prev=h("zz")))
    assert (d.action, d.detail) == (ingest.ALARM, "seq 6 does not extend the chain")


def test_a_late_record_of_the_chain_gone_back_from_is_kept_without_a_leaf():
    """R14: after a rollback record, a record of the abandoned chain still on its way
    fills the declared gap."""
    c = Chain(head_seq=10, missing={6}, gaps={6, 7})
    assert decide(c, rec(6)).action == ingest.LATE
    c = Chain(head_seq=10, missing={6})  # no declared gap there: it forks instead
    assert decide(c, rec(6, hh=h("y"))).action == ingest.FORK


def _rollback(seq: int, found: int, known: int, prev: str | None = None) -> dict[str, Any]:
    p = h(found) if prev is None else prev
    return rec(seq, prev=p, hh=h(f"r{seq}"), type=ROLLBACK, found_seq=found, known_seq=known,
               found_hash=p)  # fmt: skip


def test_rollback_records():
    """R14: a signed rollback onto a held record past the head is stored with its alarm
    saying which seqs are kept here only; malformed, linking to nothing, or at a seq the
    store passed already, it is refused, resent for, or kept apart."""
    d = decide(Chain(head_seq=5), _rollback(9, found=3, known=8))
    assert (d.action, d.alarm) == (ingest.ROLLBACK_STORE, "rollback")
    assert d.detail == (
        "the device's journal went back from seq 8 to seq 3; seqs 4..5 are kept here"
        " only; seqs 6..8 never reached this store; the chain goes on at seq 9"
    )
    bad = _rollback(9, found=3, known=7)  # seq must be max(found, known) + 1
    assert decide(Chain(), bad).detail == "seq 9: malformed rollback record"
    d = decide(Chain(head_seq=5), _rollback(12, found=8, known=11))  # we lack seq 8
    assert (d.action, d.resend_from) == (ingest.RESEND, 6)
    d = decide(Chain(head_seq=5), _rollback(9, found=3, known=8, prev=h("q")))
    assert d.detail == "seq 9: rollback record links to nothing held"
    assert decide(Chain(head_seq=12), _rollback(9, found=3, known=8)).action == ingest.FORK
    # Its own duplicate, and a forged one.
    c = Chain(head_seq=9)
    r = _rollback(9, found=3, known=8)
    c.stored_hash = lambda seq: r["hash"] if seq == 9 else h(seq)  # type: ignore[method-assign]
    assert decide(c, r).action == ingest.DUPLICATE
    d = decide(Chain(bad_sig={9}), _rollback(9, found=3, known=8))
    assert (d.action, d.alarm) == (ingest.ALARM, "bad_record")


def test_genesis_links_the_first_record():
    """R9: an empty store takes seq 1 linking to GENESIS, and a rollback onto seq 0."""
    assert decide(Chain(head_seq=0), rec(1, prev=GENESIS)).action == ingest.STORE
    r = _rollback(4, found=0, known=3, prev=GENESIS)
    assert decide(Chain(head_seq=0), r).action == ingest.ROLLBACK_STORE
