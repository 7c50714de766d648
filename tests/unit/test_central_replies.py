"""What the collector sends a device is signed with the collector key and scoped to that
device, and a burst of the same request costs one message (R13, R15)."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.central.replies import REPEAT_AFTER, Replies
from edged.protocol import topics
from edged.protocol.signed import Rejected, parse_signed

pytestmark = pytest.mark.unit

DEV = ("hq", "door-1")


def rig():
    key = Ed25519PrivateKey.generate()
    sent: list[tuple[str, bytes]] = []
    now = [100.0]
    r = Replies(key, lambda t, p, **_kw: sent.append((t, p.encode())), monotonic=lambda: now[0])
    return key, r, sent, now


def test_replies_are_signed_and_name_their_device():
    """R13: a receipt, a resend request and a central head verify under the collector
    key (and not another), and each names the device it is for inside what is signed."""
    key, r, sent, _now = rig()
    r.receipts([(DEV, 7, "ab" * 32)])
    r.resend(DEV, 3)
    r.central_head(DEV, lambda: (9, "cd" * 32))
    docs = [parse_signed(p, key.public_key()) for _t, p in sent]
    assert [t for t, _p in sent] == [
        topics.leaf(*DEV, "receipt"), topics.leaf(*DEV, "cmd"), topics.leaf(*DEV, "cmd")
    ]  # fmt: skip
    assert [(d["site"], d["device"]) for d in docs] == [DEV] * 3
    assert (docs[0]["seq"], docs[1]["from_seq"], docs[2]["seq"]) == (7, 3, 9)
    with pytest.raises(Rejected):
        parse_signed(sent[0][1], Ed25519PrivateKey.generate().public_key())
    # Changing what was signed breaks it: the receipt's seq raised by one.
    forged = json.loads(sent[0][1]) | {"seq": 8}
    with pytest.raises(Rejected):
        parse_signed(json.dumps(forged).encode(), key.public_key())


def test_a_burst_of_the_same_request_is_sent_once():
    """R15: a thousand records behind one gap ask for it once within REPEAT_AFTER; a
    different seq, a forced request (after a reconnect) and the same one later are
    sent; a head is told at most once in REPEAT_AFTER, and read only when sent."""
    _key, r, sent, now = rig()
    for _ in range(1000):
        r.resend(DEV, 5)
    assert len(sent) == 1
    r.resend(DEV, 6)
    r.resend(DEV, 6, force=True)
    assert len(sent) == 3
    now[0] += REPEAT_AFTER
    r.resend(DEV, 6)
    assert len(sent) == 4
    r.stored(DEV)  # the gap closed: the next request goes out at once
    r.resend(DEV, 6)
    assert len(sent) == 5
    reads = []
    for _ in range(100):
        r.central_head(DEV, lambda: reads.append(1) or (1, "00" * 32))
    assert len(reads) == 1 and len(sent) == 6
