"""Messages from the collector, opened without a broker (R13): signed by the pinned key,
scoped to this device, well formed, or refused with the reason."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edged.device.sync import beats, inbound
from edged.protocol.signed import Rejected, sign_doc

pytestmark = pytest.mark.unit

KEY = Ed25519PrivateKey.generate()


def msg(key=KEY, **doc):
    return json.dumps(sign_doc({"site": "s", "device": "d", **doc}, key)).encode()


def test_a_receipt_is_believed_only_from_the_collector_and_for_this_device():
    assert inbound.receipt(msg(seq=7, hash="h"), KEY.public_key(), "s", "d") == (7, "h")
    cases = [
        (msg(Ed25519PrivateKey.generate(), seq=7, hash="h"), None),  # another key
        (msg(seq=7, hash="h"), "wrong_scope"),  # asked as another device
        (msg(seq="7", hash="h"), "malformed"),
    ]
    for payload, reason in cases:
        with pytest.raises(Rejected) as e:
            inbound.receipt(payload, KEY.public_key(), "s", "other" if reason == "wrong_scope"
                            else "d")  # fmt: skip
        if reason is not None:
            assert e.value.reason == reason


def test_commands_are_a_central_head_or_a_resend():
    h = "ab" * 32
    got = inbound.command(msg(cmd="central_head", seq=3, hash=h), KEY.public_key(), "s", "d")
    assert got == inbound.CentralHead(3, h)
    assert inbound.command(msg(cmd="resend", from_seq=5), KEY.public_key(), "s", "d") == (
        inbound.Resend(5))  # fmt: skip
    for bad in (msg(cmd="central_head", seq=3, hash="short"), msg(cmd="reboot"),
                msg(cmd="resend", from_seq="5")):  # fmt: skip
        with pytest.raises(Rejected, match="malformed"):
            inbound.command(bad, KEY.public_key(), "s", "d")


def test_a_heartbeat_with_an_unknown_head_says_so_and_the_status_keeps_it():
    """R14: a head read from a failing journal is a guess marked ``head_known: false``;
    the retained status carries it, so the collector never takes it for a rollback."""
    fault = {"error": "EIO", "unrecorded": 3, "since": "t"}
    beat = beats.heartbeat("d", "ts", "b", (9, "", False), 4, 6, 0, True, fault)
    assert beat["backlog"] == 5 and beat["journal_ok"] is False and beat["unrecorded"] == 3
    status = beats.online(beat)
    assert status["state"] == "online" and status["head_known"] is False
    assert "reason" not in beats.offline("d", "b") and beats.offline("d", "b", "stopped")[
        "reason"] == "stopped"  # fmt: skip
