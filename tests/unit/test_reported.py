"""What devices report besides records, decided without a broker or a store (R9, R10,
R13): the head a status names, a retained checkpoint, a journal that cannot record."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.central.reported import (
    head_report,
    journal_unavailable,
    judge_checkpoint,
    judge_head,
)
from edged.protocol.keys import key_id_of
from edged.protocol.signed import Rejected, sign_doc

pytestmark = pytest.mark.unit


def report(**doc):
    return head_report(json.dumps({"head_seq": 10, **doc}).encode())


def test_a_status_ahead_is_lagging_and_a_lost_receipt_is_sent_again():
    """R13: a device ahead of the store holds records we lack; one whose receipt is
    below what we receipted lost it (a broker died in between) and gets it again."""
    r = report(acked_seq=3)
    seen = judge_head(r, last=7, receipted=7, ts_at=lambda seq: None)
    assert seen.lagging and seen.receipt_from == 3 and not seen.went_back
    seen = judge_head(report(acked_seq=7), last=7, receipted=7, ts_at=lambda seq: None)
    assert seen.receipt_from is None


def test_a_head_below_ours_is_a_rollback_only_if_reported_after_our_record():
    """R9, R10: a device whose head is below what is stored went back, unless the report
    is older than our next record (several collectors: an old heartbeat, late)."""
    written = {11: "2026-12-01T10:00:00.000Z"}
    late = report(ts="2026-12-01T10:00:05.000Z")
    assert judge_head(late, last=20, receipted=20, ts_at=written.get).went_back
    old = report(ts="2026-12-01T09:59:00.000Z")
    assert not judge_head(old, last=20, receipted=20, ts_at=written.get).went_back
    unknown = report(ts="not a time")
    assert not judge_head(unknown, last=20, receipted=20, ts_at=written.get).went_back


def test_malformed_reports_are_nothing():
    assert head_report(b"{") is None and head_report(b"[]") is None
    assert head_report(json.dumps({"head_seq": "10"}).encode()) is None
    assert report(head_known=False).known is False and report(backlog=0).heartbeat


def test_a_checkpoint_older_than_one_seen_or_differing_is_an_alarm():
    """R10: an older checkpoint than one seen before is a rollback; one whose hash is not
    the stored record's is a rewrite; otherwise it is noted."""
    assert judge_checkpoint(5, "h", best=9, stored=None)[0] == "rollback"
    assert judge_checkpoint(9, "h", best=9, stored="x") == (
        "rewrite", "checkpoint at seq 9 differs")  # fmt: skip
    assert judge_checkpoint(9, "h", best=9, stored="h") is None


def test_a_journal_unavailable_report_is_believed_only_signed_and_in_scope():
    """R14: the device's word that its journal cannot record is signed by its key in
    force and names its own site and device; anything else is ignored with the reason."""
    key = Ed25519PrivateKey.generate()
    keys = {key_id_of(key.public_key()): key.public_key()}
    doc = {"site": "s", "device": "d", "since": "t0", "unrecorded": 4, "error": "EIO",
           "key_id": key_id_of(key.public_key())}  # fmt: skip
    def signed(d, k=key):
        return json.dumps(sign_doc(d, k)).encode()

    detail = journal_unavailable(signed(doc), "s", "d", keys)
    assert detail.startswith("since t0: 4 unrecorded;") and "EIO" in detail
    with pytest.raises(Rejected) as e:
        journal_unavailable(signed(doc), "s", "other", keys)
    assert e.value.reason == "wrong_scope"
    with pytest.raises(Rejected):
        journal_unavailable(signed(doc, Ed25519PrivateKey.generate()), "s", "d", keys)
    with pytest.raises(ValueError, match="malformed"):
        journal_unavailable(b"\xff", "s", "d", keys)
